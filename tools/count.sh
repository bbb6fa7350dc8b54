#!/usr/bin/env bash
# Instructions (callgrind) and system calls (strace -c) per operation of a
# program that takes the operation count as its last argument: it runs at
# N and at 2N and divides the difference by N, so set-up and exit cancel.
#   usage: tools/count.sh [-n N] PROGRAM ARGS...   (N defaults to 10000)
#   e.g.   tools/count.sh build/bench/epoll-ops 0
#          tools/count.sh build/bench/epoll-ops-static 1
# Needs valgrind and strace (apt-get install -y valgrind strace). The
# counts do not move with the machine's load, unlike times.
set -euo pipefail
n=10000
if [ "${1:-}" = "-n" ]; then
  n=$2
  shift 2
fi
[ $# -ge 1 ] || { echo "usage: tools/count.sh [-n N] PROGRAM ARGS..."; exit 2; }
for t in valgrind strace; do
  command -v $t >/dev/null || { echo "count.sh: $t is not installed (apt-get install -y $t)"; exit 2; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Each prints one number on stdout; failures go to stderr (the callers
# capture stdout) and end the script.
instr() {
  valgrind --tool=callgrind --callgrind-out-file="$work/cg" "$@" >/dev/null 2>"$work/vg" ||
    { echo "count.sh: $* failed under valgrind:" >&2; tail -5 "$work/vg" >&2; exit 1; }
  awk '/^summary:|^totals:/ {print $2; exit}' "$work/cg"
}
calls() {
  # -U calls: the one column, so a summary without an errors column reads
  # the same.
  strace -f -c -U calls -o "$work/st" "$@" >/dev/null 2>&1 ||
    { echo "count.sh: $* failed under strace" >&2; exit 1; }
  awk '$NF == "total" {print $1}' "$work/st"
}
need() {
  [[ "$1" =~ ^[0-9]+$ ]] || { echo "count.sh: no $2 count for: $3" >&2; exit 1; }
}
a=$(instr "$@" "$n")
need "$a" instruction "$*"
b=$(instr "$@" $((2 * n)))
need "$b" instruction "$*"
c=$(calls "$@" "$n")
need "$c" "system call" "$*"
d=$(calls "$@" $((2 * n)))
need "$d" "system call" "$*"
awk -v a="$a" -v b="$b" -v c="$c" -v d="$d" -v n="$n" -v what="$*" 'BEGIN {
  printf "%s: %.0f instructions, %.2f system calls per operation\n", what, (b - a) / n, (d - c) / n }'
