#!/usr/bin/env bash
# Checks one Promela model exhaustively with spin: generates the verifier,
# compiles it, runs a full state-space search, and fails unless spin reports
# zero errors with the search complete.
#   usage: check.sh MODEL.pml [-DNAME ...]
set -euo pipefail
model=$(readlink -f "$1")
shift
command -v spin >/dev/null || { echo "FAIL: spin is not installed (tools/deps.sh installs it)"; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
spin -a "$@" "$model" > spin.log
# -w: the generated verifier trips compiler warnings that are not ours.
cc -O2 -w -DSAFETY -o pan pan.c
./pan -m10000000 > pan.log 2>&1 || true
grep -E "errors:|states, stored|depth reached" pan.log
if grep -q "max search depth too small" pan.log; then
  echo "FAIL: search depth exceeded: the search was not complete"
  exit 1
fi
grep -q "errors: 0" pan.log || { echo "FAIL: spin found an error:"; cat pan.log; exit 1; }
echo "$(basename "$model") $*: 1 passed, 0 failed"
