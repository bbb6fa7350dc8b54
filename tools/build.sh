#!/usr/bin/env bash
# Configures (once) and builds ueq into a build directory.
#   tools/build.sh [BUILD_DIR] [meson options...]
# The sanitizer builds use their own directories, e.g.
#   tools/build.sh build-asan -Db_sanitize=address,undefined
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}
shift || true
bash tools/deps.sh
if [ ! -f "$dir/build.ninja" ]; then
  extra=()
  case " $* " in
    *b_sanitize=*) extra+=(-Dbuildtype=debugoptimized -Db_lundef=false) ;;
  esac
  meson setup "$dir" "${extra[@]}" "$@"
fi
ninja -C "$dir"
