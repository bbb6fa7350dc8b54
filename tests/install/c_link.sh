#!/usr/bin/env bash
# A C program builds against an installed ueq with the documented line,
# `cc prog.c $(pkg-config --cflags --libs ueq)`, and runs: the build is
# installed into a staging directory (meson install --destdir), whose
# ueq.pc is used where it lies (it is relocatable).
#   usage: c_link.sh BUILD_DIR PROGRAM.c
set -euo pipefail
build=$(readlink -f "$1")
src=$(readlink -f "$2")
for tool in cc pkg-config meson; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool not installed"; exit 77; }
done
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
meson install -C "$build" --destdir "$stage" --no-rebuild --quiet >/dev/null
pc=$(find "$stage" -name ueq.pc -print -quit)
[ -n "$pc" ] || { echo "FAIL: no ueq.pc installed"; exit 1; }
echo "ueq.pc: ${pc#"$stage"}"
flags=$(PKG_CONFIG_PATH=$(dirname "$pc") pkg-config --cflags --libs ueq)
echo "cc $(basename "$src") $flags"
# shellcheck disable=SC2086  # the flags are words
cc "$src" -o "$stage/prog" $flags
"$stage/prog"
echo "built outside meson with the documented line and ran"
