#!/usr/bin/env bash
# ueq-run says what it did: --help, the --stats summary at exit (and its
# "nothing reached ueq" line for a program that only uses poll), and its
# own usage errors.
#   usage: ueq_run.sh UEQ_RUN PROBE_PROGRAM
set -uo pipefail
run=$1
probe=$2
fail() {
  echo "FAIL: $*"
  exit 1
}

help=$("$run" --help) || fail "--help exited $?"
for want in "usage: ueq-run" "Not intercepted: poll, select" "UEQ_STATS" "UEQ_LOG_LEVEL" \
  "UEQ_BACKEND" "UEQ_PRELOAD_DIR"; do
  grep -qF -- "$want" <<<"$help" || fail "--help does not mention '$want'"
done

out=$("$run" --stats "$probe" 2>&1) || fail "poll-only program exited $?"
echo "$out"
grep -q "no epoll call reached ueq" <<<"$out" || fail "no 'nothing intercepted' line"
grep -q "^done$" <<<"$out" || fail "the program's own output is missing"

out=$("$run" --stats -- "$probe" epoll 2>&1) || fail "epoll program exited $?"
echo "$out"
grep -qF "sets made 1; ctl calls 4 (ADD 1, MOD 1, DEL 2; failed 1); waits 1, events returned 1" \
  <<<"$out" || fail "the summary does not count the program's calls"

out=$(UEQ_LOG=stderr UEQ_LOG_LEVEL=2 "$run" "$probe" epoll 2>&1) || fail "verbose log run exited $?"
grep -q "ctl MOD epfd=[0-9]* fd=[0-9]* -> 0" <<<"$out" || fail "UEQ_LOG_LEVEL=2 does not log MOD"
grep -q "wait epfd=[0-9]* maxevents=1 -> 1" <<<"$out" || fail "UEQ_LOG_LEVEL=2 does not log waits"
native=$("$probe" epoll 2>&1) || fail "native run exited $?"
out=$("$run" "$probe" epoll 2>&1) || fail "plain run exited $?"
[ "$out" = "$native" ] || fail "without --stats or UEQ_LOG ueq-run changes the output: $out"

# UEQ_STATS=PATH: the file is opened at exit, so the program's fd numbers
# are its own, and the line is appended there.
stats=$(mktemp)
trap 'rm -f "$stats"' EXIT
out=$(UEQ_STATS=$stats "$run" "$probe" epoll 2>&1) || fail "UEQ_STATS=PATH run exited $?"
[ "$out" = "$native" ] || fail "UEQ_STATS=PATH changes the program's output (fd numbers?): $out"
grep -q "sets made 1; ctl calls 4" "$stats" || fail "UEQ_STATS=PATH: no summary in the file"

# A fork()ed child counts its own calls: one line with the parent's, one
# saying none reached ueq.
: > "$stats"
UEQ_STATS=$stats "$run" "$probe" fork > /dev/null 2>&1 || fail "fork run exited $?"
cat "$stats"
[ "$(grep -c "sets made 1; ctl calls 4" "$stats")" = 1 ] || fail "fork: the parent's line"
[ "$(grep -c "no epoll call reached ueq" "$stats")" = 1 ] || fail "fork: the child's line"

"$run" --no-such-option "$probe" 2>/dev/null
[ $? -eq 2 ] || fail "an unknown option does not exit 2"
"$run" 2>/dev/null
[ $? -eq 2 ] || fail "no program does not exit 2"
"$run" /nonexistent/program 2>/dev/null
[ $? -eq 127 ] || fail "a missing program does not exit 127"
echo "ueq-run: help, stats, verbose log and usage errors as documented"
