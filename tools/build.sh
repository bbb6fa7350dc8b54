#!/usr/bin/env bash
# Configures (once) and builds ueq into a build directory: everything, or
# only the ninja targets given after "--" (the demo builds just what it runs).
#   tools/build.sh [BUILD_DIR] [meson options...] [-- TARGET...]
# The sanitizer builds use their own directories, e.g.
#   tools/build.sh build-asan -Db_sanitize=address,undefined
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}
shift || true
options=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
  options+=("$1")
  shift
done
[ $# -gt 0 ] && shift  # the "--"
bash tools/deps.sh
if [ ! -f "$dir/build.ninja" ]; then
  extra=()
  case " ${options[*]} " in
    *b_sanitize=*) extra+=(-Dbuildtype=debugoptimized -Db_lundef=false) ;;
  esac
  meson setup "$dir" "${extra[@]}" "${options[@]}"
fi
ninja -C "$dir" "$@"
