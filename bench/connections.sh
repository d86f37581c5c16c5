#!/usr/bin/env bash
# Connections: the memory one open client connection costs the gateway, and whether the
# connection cap (GATEWAY_MAX_CONNECTIONS) keeps a flood of them under the Deployment's
# memory limit while real requests are still served. Runs the gateway with the shipped
# ConfigMap's memory settings; traffic stays on 127.0.0.1; every step is bounded in time.
#
# Usage: bash bench/connections.sh [connections to measure] [flood attempts]
#        (defaults: 4000 and 10000; needs PostgreSQL on 127.0.0.1:5432 and ulimit -n > 2 x flood)
#        BENCH_BASELINE=<git revision> also floods that revision's gateway, for comparison.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"

MEASURE=${1:-4000}
FLOOD=${2:-10000}
GW_PORT=18180 UP_PORT=18181
DB=atenex_bench_conns
PGURL="postgres://postgres@127.0.0.1:5432"
OUT=bench/out
mkdir -p "$OUT/connflood"
LIMIT_MIB=128 # resources.limits.memory of k8s/gateway-deployment.yaml

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

echo "== build"
go build -trimpath -o "$OUT/gateway" .
# The load generator and the upstream, built outside the module so the gateway keeps its
# two dependencies.
cat >"$OUT/connflood/main.go" <<'GO'
// connflood: "upstream ADDR" answers every request with a small JSON document;
// "hold ADDR N MODE SECONDS" opens N connections (MODE idle: one request each, then kept
// open; MODE silent: connected, nothing sent), keeps them for SECONDS and prints how many
// the server closed.
package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"time"
)

func main() {
	switch os.Args[1] {
	case "upstream":
		http.ListenAndServe(os.Args[2], http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"chats":[{"id":"1","title":"hello"}]}`))
		}))
	case "hold":
		addr, mode := os.Args[2], os.Args[4]
		n, _ := strconv.Atoi(os.Args[3])
		secs, _ := strconv.Atoi(os.Args[5])
		var closed, failed atomic.Int64
		conns := make([]net.Conn, 0, n)
		for i := 0; i < n; i++ {
			c, err := net.DialTimeout("tcp", addr, 2*time.Second)
			if err != nil {
				failed.Add(1)
				continue
			}
			if mode == "idle" {
				fmt.Fprint(c, "GET /livez HTTP/1.1\r\nHost: gw\r\n\r\n")
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				res, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					failed.Add(1)
					c.Close()
					continue
				}
				res.Body.Close()
			}
			conns = append(conns, c)
			go func() { // notices the server closing it
				c.SetReadDeadline(time.Time{})
				var b [1]byte
				if _, err := c.Read(b[:]); err != nil {
					closed.Add(1)
				}
			}()
		}
		fmt.Printf("opened %d failed %d\n", len(conns), failed.Load())
		os.Stdout.Sync()
		time.Sleep(time.Duration(secs) * time.Second)
		fmt.Printf("closed_by_server %d of %d\n", closed.Load(), len(conns))
	}
}
GO
printf 'module connflood\ngo 1.22\n' >"$OUT/connflood/go.mod"
(cd "$OUT/connflood" && go build -o ../connflood-bin .)

. bench/seed.sh
seed_bench_db

"$OUT/connflood-bin" upstream "127.0.0.1:$UP_PORT" &
pids+=("$!")

rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
# Kernel memory of a socket (its struct, not buffers: idle sockets hold none) is slab. Both
# ends of every loopback connection are on this machine, so half the growth is the server's.
slab_kb() { awk '/^SUnreclaim:/ {print $2}' /proc/meminfo; }

# start_gateway MAX_CONNECTIONS [BINARY]: the gateway with the ConfigMap's memory settings.
start_gateway() {
  local bin=${2:-$OUT/gateway}
  GATEWAY_JWT_SECRET=$(head -c 32 /dev/urandom | base64) \
  PORT=$GW_PORT GATEWAY_ADMIN_PORT=0 GATEWAY_LOG_LEVEL=WARN GATEWAY_DRAIN_DELAY=0s \
  GATEWAY_MEMORY_LIMIT=100MiB GATEWAY_MAX_CONNECTIONS="$1" \
  GATEWAY_READ_HEADER_TIMEOUT=60s GATEWAY_IDLE_TIMEOUT=120s \
  GATEWAY_QUERY_SERVICE_URL=http://127.0.0.1:$UP_PORT GATEWAY_INGEST_SERVICE_URL=http://127.0.0.1:$UP_PORT \
    "$bin" >"$OUT/gateway-conns.log" 2>&1 &
  GW_PID=$!
  pids+=("$GW_PID")
  for _ in $(seq 1 50); do curl -fsS "http://127.0.0.1:$GW_PORT/livez" >/dev/null 2>&1 && break; sleep 0.2; done
  TOKEN=$(curl -fsS -H 'Content-Type: application/json' \
    -d '{"email":"bench@example.com","password":"bench-password-123"}' \
    "http://127.0.0.1:$GW_PORT/api/v1/users/login" | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
  # Warm up: the pools, buffers and heap a serving gateway has anyway.
  wrk -t2 -c64 -d3s -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$GW_PORT/api/v1/query/chats" >/dev/null
  sleep 1
}
stop_gateway() { kill "$GW_PID"; wait "$GW_PID" 2>/dev/null || true; }

echo "== bytes per open connection (no cap, $MEASURE connections of each kind, a fresh gateway each)"
: >"$OUT/connections.txt"
for mode in idle silent; do
  start_gateway 0
  before=$(rss_kb "$GW_PID"); slab_before=$(slab_kb)
  "$OUT/connflood-bin" hold "127.0.0.1:$GW_PORT" "$MEASURE" "$mode" 6 >"$OUT/hold-$mode.txt" &
  HOLD=$!
  sleep 5 # all open, none timed out yet (header 60 s, idle 120 s)
  after=$(rss_kb "$GW_PID"); slab_after=$(slab_kb)
  wait $HOLD
  stop_gateway
  per=$(( (after - before) * 1024 / MEASURE ))
  kern=$(( (slab_after - slab_before) * 1024 / MEASURE / 2 ))
  echo "$mode: RSS $((before / 1024)) -> $((after / 1024)) MiB = $per bytes per connection; kernel slab about $kern bytes per connection; $(head -1 "$OUT/hold-$mode.txt")" | tee -a "$OUT/connections.txt"
  eval "PER_$mode=$per KERN_$mode=$kern"
done

CAP=$(awk -F'"' '/GATEWAY_MAX_CONNECTIONS:/ {print $2}' k8s/gateway-configmap.yaml)
# flood NAME: FLOOD connection attempts (half idle keep-alive, half silent) held 15 s while
# real proxied requests run every 100 ms on new connections; sets base, peak, ok, total, worst.
flood() {
  base=$(rss_kb "$GW_PID")
  : >"$OUT/real-requests-$1.txt"
  (
    end=$((SECONDS + 25))
    while [ $SECONDS -lt $end ]; do
      code=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' --max-time 5 \
        -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$GW_PORT/api/v1/query/chats" || echo "000 5")
      echo "$code" >>"$OUT/real-requests-$1.txt"
      sleep 0.1
    done
  ) &
  local real=$! half=$((FLOOD / 2))
  "$OUT/connflood-bin" hold "127.0.0.1:$GW_PORT" "$half" idle 15 >"$OUT/flood-idle-$1.txt" &
  local f1=$!
  "$OUT/connflood-bin" hold "127.0.0.1:$GW_PORT" "$((FLOOD - half))" silent 15 >"$OUT/flood-silent-$1.txt" &
  local f2=$!
  wait $f1 $f2 $real
  peak=$(hwm_kb "$GW_PID")
  ok=$(awk '$1 == 200' "$OUT/real-requests-$1.txt" | wc -l)
  total=$(wc -l <"$OUT/real-requests-$1.txt")
  worst=$(awk '$1 == 200 {print $2}' "$OUT/real-requests-$1.txt" | sort -g | tail -1)
}

echo "== flood: $FLOOD connection attempts against GATEWAY_MAX_CONNECTIONS=$CAP, real requests every 100 ms"
start_gateway "$CAP"
flood capped
stop_gateway
BASELINE_ROW=""
if [ -n "${BENCH_BASELINE:-}" ]; then
  echo "== the same flood against $BENCH_BASELINE"
  rm -rf "$OUT/baseline-src" && mkdir -p "$OUT/baseline-src"
  git archive "$BENCH_BASELINE" | tar -x -C "$OUT/baseline-src"
  (cd "$OUT/baseline-src" && go build -trimpath -o ../gateway-baseline .)
  cap_base=$base cap_peak=$peak cap_ok=$ok cap_total=$total cap_worst=$worst
  start_gateway 0 "$OUT/gateway-baseline"
  flood baseline
  stop_gateway
  BASELINE_ROW="| the same flood against $BENCH_BASELINE (no cap): RSS before / peak; real requests answered 200 | $((base / 1024)) MiB / $((peak / 1024)) MiB; $ok of $total (slowest ${worst:-none} s) |"
  base=$cap_base peak=$cap_peak ok=$cap_ok total=$cap_total worst=$cap_worst
fi

cat <<REPORT | tee "$OUT/connections-report.md"

| measurement | value |
|---|---|
| RSS per idle keep-alive connection (one request served, then idle) | ${PER_idle} bytes (+ about ${KERN_idle} bytes of kernel slab) |
| RSS per connection that never sent a byte | ${PER_silent} bytes (+ about ${KERN_silent} bytes of kernel slab) |
| gateway RSS before the flood / peak (VmHWM) during $FLOOD attempts, cap $CAP | $((base / 1024)) MiB / $((peak / 1024)) MiB (limit ${LIMIT_MIB} MiB) |
| real proxied requests answered 200 during the flood | $ok of $total (slowest $worst s) |
| flood connections, idle half | $(tr '\n' ' ' <"$OUT/flood-idle-capped.txt") |
| flood connections, silent half | $(tr '\n' ' ' <"$OUT/flood-silent-capped.txt") |
$BASELINE_ROW
REPORT
