#!/usr/bin/env bash
# The main job: installs what is missing, builds, and shows the runtime
# delivering events, with figures:
#   1. the green-thread echo pair: examples/echo_server (one uthread per
#      connection on ueq::io; host readiness -> taps -> event queues ->
#      parked uthreads) driven by examples/echo_client, which checks every
#      byte and prints requests/s, MB/s and latency percentiles;
#   2. examples/ceq_demo: producer threads posting into a CEQ, a consumer
#      draining it, with what was posted, coalesced and delivered.
#   tools/demo.sh [--seconds S]     seconds per run (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=3
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    *) echo "usage: tools/demo.sh [--seconds S]" >&2; exit 2 ;;
  esac
done
# Only what the demo runs (tools/test.sh builds the rest).
bash tools/build.sh build -- examples/echo_server examples/echo_client examples/ceq_demo
ex=./build/examples

echo
echo "== echo pair: examples/echo_server (uthreads on ueq::io) + examples/echo_client"
out=$(mktemp)
trap 'kill "$server" 2>/dev/null || true; rm -f "$out"' EXIT
"$ex/echo_server" --port 0 > "$out" &
server=$!
for _ in $(seq 100); do
  grep -q '^listening on' "$out" && break
  kill -0 "$server" 2>/dev/null || { echo "echo_server did not start" >&2; exit 1; }
  sleep 0.05
done
port=$(awk '/^listening on/ {print $3}' "$out")
[ -n "$port" ] || { echo "echo_server did not report its port" >&2; exit 1; }
echo "-- ping-pong, 100 connections x 64 bytes"
"$ex/echo_client" --port "$port" --connections 100 --message 64 --seconds "$seconds"
echo "-- ping-pong, 1000 connections x 512 bytes"
"$ex/echo_client" --port "$port" --connections 1000 --message 512 --seconds "$seconds"
echo "-- streaming, 4 connections x 512-byte writes"
"$ex/echo_client" --port "$port" --connections 4 --message 512 --streaming --seconds "$seconds"
kill -TERM "$server"
wait "$server"

echo
echo "== CEQ: examples/ceq_demo"
"$ex/ceq_demo" --seconds 1
