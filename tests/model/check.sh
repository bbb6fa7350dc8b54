#!/usr/bin/env bash
# Checks one Promela model exhaustively with spin: generates the verifier,
# compiles it, runs a full state-space search.
#   usage: check.sh [--expect-error] MODEL.pml [-DNAME ...]
# Default: passes only if spin reports zero errors with the search complete.
# --expect-error (for the -DBUG_* variants): passes only if spin reports an
# error (an assertion, or an invalid end state = someone blocked forever);
# the trail's last steps are printed. Either way, a model that does not
# translate or compile, or a search cut short (depth or memory), fails.
set -euo pipefail
expect_error=false
if [ "${1:-}" = "--expect-error" ]; then
  expect_error=true
  shift
fi
[ $# -ge 1 ] || { echo "usage: check.sh [--expect-error] MODEL.pml [-DNAME ...]"; exit 2; }
model=$(readlink -f "$1")
shift
command -v spin >/dev/null || { echo "FAIL: spin is not installed (tools/deps.sh installs it)"; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
cp "$(dirname "$model")"/*.pml .
name=$(basename "$model")
spin -a "$@" "$name" > spin.log 2>&1 || { echo "FAIL: spin could not translate the model:"; cat spin.log; exit 1; }
# -w: the generated verifier trips compiler warnings that are not ours.
# COLLAPSE: compressed state vectors, so the larger configurations fit in memory.
cc -O2 -w -DSAFETY -DCOLLAPSE -DMEMLIM=6144 -o pan pan.c ||
  { echo "FAIL: the verifier did not compile"; exit 1; }
start=$(date +%s%N)
./pan -m200000 > pan.log 2>&1 || true
ms=$(( ($(date +%s%N) - start) / 1000000 ))
grep -E "errors:|states, stored|depth reached" pan.log || true
printf "time: %d.%03d s\n" $((ms / 1000)) $((ms % 1000))
if grep -q "max search depth too small" pan.log; then
  echo "FAIL: search depth exceeded: the search was not complete"
  exit 1
fi
if grep -qE "out of memory|reached -DMEMLIM bound" pan.log; then
  echo "FAIL: the verifier ran out of memory: the search was not complete"
  grep -vE "^Depth=" pan.log
  exit 1
fi
errors=$(sed -n 's/.*errors: \([0-9][0-9]*\).*/\1/p' pan.log | head -1)
[ -n "$errors" ] || { echo "FAIL: the verifier did not finish:"; cat pan.log; exit 1; }
if $expect_error; then
  if [ "$errors" -eq 0 ]; then
    echo "FAIL: spin found no error, but this variant must be rejected"
    exit 1
  fi
  grep -E "^pan:" pan.log | head -3
  if [ -f "$name.trail" ]; then
    echo "last steps of the counterexample:"
    spin -t "$@" "$name" 2>&1 | grep -vE "^\s*$" | tail -12 || true
  fi
  echo "$name $*: rejected, as it must be"
  exit 0
fi
[ "$errors" -eq 0 ] || { echo "FAIL: spin found an error:"; cat pan.log; exit 1; }
if grep -q "Search not completed" pan.log; then
  echo "FAIL: the search was not complete:"
  grep -vE "^Depth=" pan.log
  exit 1
fi
echo "$name $*: 1 passed, 0 failed"
