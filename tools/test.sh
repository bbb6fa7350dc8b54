#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test suite.
#   tools/test.sh                          release build in build/
#   tools/test.sh --sanitize=address,undefined   ASan+UBSan build in build-asan/
#   tools/test.sh --sanitize=thread        TSan build in build-tsan/
#   tools/test.sh [...] --suite ceq        one module's suite
#   tools/test.sh --no-programs            without installing nginx, memcached,
#                                          redis, curl and wrk (their test skips)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=build
opts=()
test_args=()
programs=1
for a in "$@"; do
  case "$a" in
    --no-programs) programs=0 ;;
    --sanitize=thread) dir=build-tsan; opts+=(-Db_sanitize=thread) ;;
    --sanitize=*) dir=build-asan; opts+=("-Db_sanitize=${a#--sanitize=}") ;;
    *) test_args+=("$a") ;;
  esac
done
# The real-program tests of the epoll suite need nginx, memcached, curl and
# wrk: install them too, so every suite runs rather than skipping.
if [ "$programs" = 1 ]; then
  bash tools/deps.sh --programs
fi
bash tools/build.sh "$dir" "${opts[@]}"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}
meson test -C "$dir" --print-errorlogs "${test_args[@]}"
