#!/usr/bin/env bash
# Suite lab: the commands docs/guide.md shows run and succeed — the
# examples, the green-thread server tutorial (echo_server driven by
# echo_client, every byte checked), and the lab's worked experiments (in
# --quick mode, so the suite stays short).
#   guide_examples.sh BUILD_DIR
set -euo pipefail
build=$1
out=$(mktemp -d)
server=
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$out"
}
trap cleanup EXIT

step() { echo "== $*"; }

step "examples"
"$build"/examples/ceq_demo --seconds 0.5
"$build"/examples/evq_two_queues
"$build"/examples/uthread_demo
"$build"/examples/epoll_c_api

step "tutorial: echo_server with one uthread per connection, echo_client against it"
"$build"/examples/echo_server --port 0 --vcores 2 --seconds 30 > "$out/server.txt" &
server=$!
port=
for _ in $(seq 1 200); do   # bounded: up to 10 s for the server to listen
  port=$(sed -n 's/^listening on \([0-9]*\)$/\1/p' "$out/server.txt")
  [ -n "$port" ] && break
  sleep 0.05
done
[ -n "$port" ] || { echo "echo_server did not start"; exit 1; }
"$build"/examples/echo_client --port "$port" --connections 20 --seconds 1 | tee "$out/client.txt"
grep -q "errors: 0" "$out/client.txt"
kill -INT "$server"
wait "$server"
server=

step "lab: the worked experiments (quick)"
"$build"/tools/ueq-lab list
"$build"/tools/ueq-lab run coalescing --seed 1 --quick --out "$out/coalescing"
"$build"/tools/ueq-lab run wake_policy --seed 1 --quick --out "$out/wake_policy"
"$build"/tools/ueq-lab run backends --seed 1 --quick --trace --param backend=epoll \
  --out "$out/backends"
for f in coalescing/coalescing-ratio.svg coalescing/coalescing-overflow.svg \
         wake_policy/wake_policy-wakeups.svg wake_policy/wake_policy-latency.svg \
         backends/backends-stages.svg; do
  [ -s "$out/$f" ] || { echo "missing $f"; exit 1; }
done
echo "1 passed, 0 failed"
