#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test suite.
#   tools/test.sh                          release build in build/
#   tools/test.sh --sanitize=address,undefined   ASan+UBSan build in build-asan/
#   tools/test.sh --sanitize=thread        TSan build in build-tsan/
#   tools/test.sh [...] --suite ceq        one module's suite
set -euo pipefail
cd "$(dirname "$0")/.."
dir=build
opts=()
test_args=()
for a in "$@"; do
  case "$a" in
    --sanitize=thread) dir=build-tsan; opts+=(-Db_sanitize=thread) ;;
    --sanitize=*) dir=build-asan; opts+=("-Db_sanitize=${a#--sanitize=}") ;;
    *) test_args+=("$a") ;;
  esac
done
# The real-program tests of the epoll suite need nginx, memcached, curl and
# wrk: install them too, so every suite runs rather than skipping.
bash tools/deps.sh --programs
bash tools/build.sh "$dir" "${opts[@]}"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}
meson test -C "$dir" --print-errorlogs "${test_args[@]}"
