#!/usr/bin/env bash
# Unmodified programs from Debian packages on ueq's epoll facade (ueq-run):
#   nginx      (its own epoll event loop; a master and two forked workers),
#              driven by curl (content checked) and wrk (no errors allowed);
#   memcached  (libevent, one event base per worker thread), driven over
#              bash's /dev/tcp: set, get, check the value;
#   redis      (its own epoll loop; BGSAVE forks a child that closes the
#              listening sockets): after a BGSAVE, new connections are
#              still accepted and served.
# .ci/run installs nginx-light, curl, wrk, memcached and redis-server. Where one is missing
# the test says so and exits 77 (meson's "skipped").
#   usage: real_programs.sh UEQ_RUN
set -euo pipefail
ueq_run=$(readlink -f "$1")
missing=""
for tool in nginx curl wrk memcached redis-server redis-cli; do
  command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
if [ -n "$missing" ]; then
  echo "SKIP: not installed:$missing (.ci/run installs them)"
  exit 77
fi

tmp=$(mktemp -d)
chmod 755 "$tmp"  # nginx workers run as an unprivileged user
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Polls until `cmd` succeeds, for at most 10 seconds (of wall time: a try
# may itself take a while).
wait_for() {
  local end=$((SECONDS + 10))
  while [ "$SECONDS" -lt "$end" ]; do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.05  # polling a server that is starting; bounded
  done
  echo "FAIL: timed out waiting for: $*"
  return 1
}

echo "== nginx under ueq-run"
port=$(free_port)
mkdir -p "$tmp/www" "$tmp/logs"
head -c 20000 /dev/urandom | base64 > "$tmp/www/index.html"
cat > "$tmp/nginx.conf" <<CONF
daemon off;
master_process on;
worker_processes 2;
pid $tmp/nginx.pid;
error_log $tmp/logs/error.log warn;
events { use epoll; worker_connections 1024; }
http {
  access_log off;
  server { listen 127.0.0.1:$port; root $tmp/www; }
}
CONF
"$ueq_run" nginx -p "$tmp" -c "$tmp/nginx.conf" &
pids+=($!)
wait_for curl -sf "http://127.0.0.1:$port/index.html"
for i in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$port/index.html" -o "$tmp/got.html"
  cmp -s "$tmp/got.html" "$tmp/www/index.html" || { echo "FAIL: nginx served wrong content"; exit 1; }
done
wrk -t2 -c50 -d2s "http://127.0.0.1:$port/index.html" > "$tmp/wrk.txt"
cat "$tmp/wrk.txt"
if grep -q "Non-2xx\|Socket errors" "$tmp/wrk.txt"; then echo "FAIL: wrk saw errors"; exit 1; fi
requests=$(awk '/requests in/ {print $1}' "$tmp/wrk.txt")
[ "${requests:-0}" -gt 100 ] || { echo "FAIL: too few requests ($requests)"; exit 1; }
echo "nginx: 100 checked fetches, $requests requests under wrk, no errors"

echo "== memcached under ueq-run"
mport=$(free_port)
"$ueq_run" memcached -l 127.0.0.1 -p "$mport" -U 0 -t 2 -u nobody &
pids+=($!)
wait_for bash -c "exec 3<>/dev/tcp/127.0.0.1/$mport"
exec 3<>"/dev/tcp/127.0.0.1/$mport"
for i in $(seq 1 50); do
  printf 'set key%d 0 0 %d\r\nvalue%d\r\n' "$i" $((5 + ${#i})) "$i" >&3
  read -r -t 10 reply <&3
  [ "${reply%$'\r'}" = "STORED" ] || { echo "FAIL: set key$i: $reply"; exit 1; }
done
for i in $(seq 1 50); do
  printf 'get key%d\r\n' "$i" >&3
  read -r -t 10 header <&3
  read -r -t 10 value <&3
  read -r -t 10 end <&3
  [ "${value%$'\r'}" = "value$i" ] && [ "${end%$'\r'}" = "END" ] ||
    { echo "FAIL: get key$i: $header / $value / $end"; exit 1; }
done
exec 3>&-
echo "memcached: 50 sets and 50 gets checked"

echo "== redis under ueq-run"
rport=$(free_port)
"$ueq_run" redis-server --port "$rport" --bind 127.0.0.1 --dir "$tmp" --dbfilename dump.rdb \
  --save "" --appendonly no --daemonize no --logfile "$tmp/redis.log" &
pids+=($!)
rcli() { timeout 5 redis-cli -h 127.0.0.1 -p "$rport" "$@"; }
wait_for rcli ping
[ "$(rcli set before-save 1)" = "OK" ] || { echo "FAIL: redis set"; exit 1; }
rcli bgsave
# The save is done when the child has exited and the file is there.
wait_for bash -c "timeout 2 redis-cli -h 127.0.0.1 -p $rport info persistence | grep -q 'rdb_bgsave_in_progress:0' && test -s $tmp/dump.rdb"
for i in $(seq 1 20); do  # each a new connection, accepted after the fork
  [ "$(rcli set "after-save-$i" "$i")" = "OK" ] || { echo "FAIL: redis set after BGSAVE ($i)"; exit 1; }
  [ "$(rcli get "after-save-$i")" = "$i" ] || { echo "FAIL: redis get after BGSAVE ($i)"; exit 1; }
done
[ "$(rcli get before-save)" = "1" ] || { echo "FAIL: redis lost a key"; exit 1; }
echo "redis: BGSAVE done, then 20 new connections set and got their keys"
echo "real programs: 3 passed, 0 failed"
