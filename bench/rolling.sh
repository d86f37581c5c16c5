#!/usr/bin/env bash
# Rolling restart under load: two gateway replicas on loopback behind bench/balancer.go, a
# balancer that follows /readyz with the readiness probe of k8s/gateway-deployment.yaml
# (period, timeout, failure threshold), like a Service in front of the Deployment. While wrk
# puts load through the balancer, each replica in turn gets SIGTERM, is waited for, started
# again, and waited for until the balancer sends it traffic again. Prints the requests lost:
# answers other than 2xx, socket errors, and the balancer's own count of requests that found
# no backend or got no response. Traffic stays on 127.0.0.1; the run is bounded in time.
#
# Usage: bash bench/rolling.sh
#   The replicas run with the gateway's defaults. GATEWAY_DRAIN_DELAY (and other GATEWAY_*
#   settings) in the environment override them, e.g. GATEWAY_DRAIN_DELAY=2s shows what a
#   drain shorter than the probe's detection loses. PROBE_PERIOD, PROBE_TIMEOUT and
#   PROBE_FAILURES (seconds, seconds, count) replace the Deployment's probe, e.g. the former
#   one: PROBE_PERIOD=5 PROBE_TIMEOUT=3 PROBE_FAILURES=2 GATEWAY_DRAIN_DELAY=5s.
#   ROLLING_CONNS (64) wrk connections; BENCH_PORT_BASE (18200) and BENCH_DB (atenex_rolling)
#   keep parallel runs on one machine apart. Needs PostgreSQL on 127.0.0.1:5432 (trust),
#   wrk and nginx (installed when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"

CONNS=${ROLLING_CONNS:-64}
BASE=${BENCH_PORT_BASE:-18200}
BAL_PORT=$BASE UP_PORT=$((BASE + 3))
PORTS=($((BASE + 1)) $((BASE + 2)))
ADMIN_PORTS=($((BASE + 11)) $((BASE + 12)))
DB=${BENCH_DB:-atenex_rolling}
PGURL="postgres://postgres@127.0.0.1:5432"
OUT=bench/out/rolling
mkdir -p "$OUT"
rm -f "$OUT"/*.log

need() { command -v "$1" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq "$2" >/dev/null; }; }
need wrk wrk
need nginx nginx
[ -x /usr/sbin/nginx ] && NGINX=/usr/sbin/nginx || NGINX=$(command -v nginx)

# The readiness probe as shipped; Kubernetes' defaults for fields it leaves out.
probe_field() {
  awk -v f="$1:" '
    /^ *readinessProbe:/ { p = 1; match($0, /^ */); indent = RLENGTH; next }
    p { match($0, /^ */); if (RLENGTH <= indent && $1 !~ /^#/) p = 0 }
    p && $1 == f { print $2; exit }' k8s/gateway-deployment.yaml
}
PERIOD=${PROBE_PERIOD:-$(probe_field periodSeconds)}; PERIOD=${PERIOD:-10}
TIMEOUT=${PROBE_TIMEOUT:-$(probe_field timeoutSeconds)}; TIMEOUT=${TIMEOUT:-1}
FAILURES=${PROBE_FAILURES:-$(probe_field failureThreshold)}; FAILURES=${FAILURES:-3}
echo "== readiness probe (k8s/gateway-deployment.yaml unless PROBE_* are set): period ${PERIOD}s, timeout ${TIMEOUT}s, failure threshold $FAILURES"

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$OUT/nginx.pid" ] && kill "$(cat "$OUT/nginx.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
  psql "$PGURL/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT

echo "== build"
go build -trimpath -o bench/out/gateway .
go build -o bench/out/balancer bench/balancer.go

. bench/seed.sh
seed_bench_db bench/out/gateway

echo "== upstream (nginx) on :$UP_PORT"
cat >"$OUT/nginx.conf" <<NGINX
worker_processes 1;
pid $PWD/$OUT/nginx.pid;
error_log $PWD/$OUT/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $PWD/$OUT/nginx-body;
  server {
    listen 127.0.0.1:$UP_PORT;
    location / { default_type application/json; return 200 '{"chats":[{"id":"1","title":"hello"}]}'; }
  }
}
NGINX
[ -f "$OUT/nginx.pid" ] && kill "$(cat "$OUT/nginx.pid")" 2>/dev/null && sleep 0.5 # a previous run's
"$NGINX" -c "$PWD/$OUT/nginx.conf"

# Both replicas share the secret, so a token from one is good on the other.
export GATEWAY_JWT_SECRET
GATEWAY_JWT_SECRET=$(head -c 48 /dev/urandom | base64)
export GATEWAY_QUERY_SERVICE_URL=http://127.0.0.1:$UP_PORT GATEWAY_INGEST_SERVICE_URL=http://127.0.0.1:$UP_PORT
replica_pids=("" "")
start_replica() { # index generation
  local i=$1 gen=$2
  PORT=${PORTS[$i]} GATEWAY_ADMIN_PORT=${ADMIN_PORTS[$i]} \
    bench/out/gateway >"$OUT/replica-$i-$gen.log" 2>&1 &
  replica_pids[$i]=$!
  pids+=("$!")
}
start_replica 0 1
start_replica 1 1

BAL="http://127.0.0.1:$BAL_PORT"
bench/out/balancer -listen "127.0.0.1:$BAL_PORT" -backends "127.0.0.1:${PORTS[0]},127.0.0.1:${PORTS[1]}" \
  -probe-path /readyz -period "${PERIOD}s" -timeout "${TIMEOUT}s" -failure-threshold "$FAILURES" \
  >"$OUT/balancer.json" 2>"$OUT/balancer.log" &
BAL_PID=$!
pids+=("$BAL_PID")

exited() { # pid: gone, or a zombie waiting to be reaped
  local state
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 0
  [ -z "$state" ] || [ "$state" = Z ]
}
in_rotation() { curl -fsS "$BAL/__balancer" 2>/dev/null | grep -q "\"backend\":\"127.0.0.1:$1\",\"ready\":true"; }
wait_in_rotation() { # port seconds
  local deadline=$((SECONDS + $2))
  until in_rotation "$1"; do
    [ $SECONDS -ge $deadline ] && { echo "replica on :$1 not back in rotation after $2 s" >&2; exit 1; }
    sleep 0.1
  done
}
wait_in_rotation "${PORTS[0]}" 30
wait_in_rotation "${PORTS[1]}" 30

DRAIN=$(sed -nE 's/.*"GATEWAY_DRAIN_DELAY":"([^"]+)".*/\1/p' "$OUT/replica-0-1.log" | head -1)
GRACE=$(sed -nE 's/.*"GATEWAY_SHUTDOWN_GRACE":"([^"]+)".*/\1/p' "$OUT/replica-0-1.log" | head -1)
DRAIN_S=$(awk -v d="$DRAIN" 'BEGIN { if (d ~ /ms$/) { sub(/ms/, "", d); d /= 1000 } else if (d ~ /m[0-9.]*s$/) { split(d, a, "m"); sub(/s/, "", a[2]); d = a[1] * 60 + a[2] } else sub(/s/, "", d); printf "%d", d + 0.999 }')
echo "== two replicas on :${PORTS[0]} and :${PORTS[1]} (drain $DRAIN, shutdown grace $GRACE), balancer on :$BAL_PORT"

TOKEN=$(curl -fsS -H 'Content-Type: application/json' \
  -d '{"email":"bench@example.com","password":"bench-password-123"}' \
  "$BAL/api/v1/users/login" | sed -E 's/.*"access_token":"([^"]+)".*/\1/')

# Load for the whole sequence: per replica the drain, a start, a probe period or two to be
# back in rotation and a few seconds of two replicas; plus a lead and a tail.
LOAD_S=$((2 * (DRAIN_S + 3 * PERIOD + 8) + 10))
echo "== load: wrk -c$CONNS for ${LOAD_S}s through the balancer, restarting each replica in turn"
wrk -t2 -c"$CONNS" -d"${LOAD_S}s" --timeout 10s --latency -H "Authorization: Bearer $TOKEN" \
  "$BAL/api/v1/query/chats" >"$OUT/wrk.txt" &
WRK=$!
START=$SECONDS
sleep 5
: >"$OUT/timeline.txt"
for i in 0 1; do
  port=${PORTS[$i]}
  t0=$(date +%s.%N) t_out="" t_exit=""
  kill -TERM "${replica_pids[$i]}"
  # Which comes first, the balancer taking the replica out or the replica exiting, is the
  # point of the exercise: note each when it happens.
  while [ -z "$t_out" ] || [ -z "$t_exit" ]; do
    now=$(date +%s.%N)
    [ -z "$t_out" ] && ! in_rotation "$port" && t_out=$now
    [ -z "$t_exit" ] && exited "${replica_pids[$i]}" && t_exit=$now
    sleep 0.1
  done
  wait "${replica_pids[$i]}" || { echo "replica on :$port exited with an error" >&2; exit 1; }
  start_replica "$i" 2
  wait_in_rotation "$port" 30
  t_back=$(date +%s.%N)
  awk -v p="$port" -v a="$t0" -v o="$t_out" -v e="$t_exit" -v b="$t_back" 'BEGIN {
    printf "replica :%s  after SIGTERM: out of rotation at %.1f s, exited at %.1f s, back in rotation at %.1f s\n", p, o - a, e - a, b - a }' |
    tee -a "$OUT/timeline.txt"
  sleep 3
done
if ! kill -0 $WRK 2>/dev/null; then
  echo "the load ended before the restarts did (after $((SECONDS - START)) s); the figures below miss the end" >&2
fi
wait $WRK
kill -TERM "$BAL_PID"
wait "$BAL_PID" || true

TOTAL=$(awk '/requests in/ {print $1}' "$OUT/wrk.txt")
NON2XX=$(awk '/Non-2xx/ {print $NF}' "$OUT/wrk.txt")
SOCKET=$(awk '/Socket errors/ {gsub(",", ""); print $4 + $6 + $8 + $10}' "$OUT/wrk.txt")
RPS=$(awk '/^Requests\/sec/ {print $2}' "$OUT/wrk.txt")
P99=$(awk '$1=="99%" {print $2}' "$OUT/wrk.txt")
json() { sed -nE "s/^  \"$1\": ([0-9]+),?$/\1/p" "$OUT/balancer.json"; }
LOST=$((${NON2XX:-0} + ${SOCKET:-0}))

cat <<REPORT | tee "$OUT/report.md"

Rolling restart of 2 replicas under load: $(nproc) cores, $(go version | awk '{print $3}'), wrk -t2 -c$CONNS for ${LOAD_S}s,
readiness probe period ${PERIOD}s x $FAILURES failures + ${TIMEOUT}s timeout, GATEWAY_DRAIN_DELAY $DRAIN, GATEWAY_SHUTDOWN_GRACE $GRACE

$(cat "$OUT/timeline.txt")

| measurement | value |
|---|---|
| requests sent through the balancer (wrk) | ${TOTAL:-?} (${RPS:-?} req/s, p99 ${P99:-?}) |
| **lost**: non-2xx answers + socket errors (wrk) | **$LOST** (${NON2XX:-0} + ${SOCKET:-0}) |
| balancer: requests with no response from a replica / with no replica in rotation | $(json failed) / $(json no_backend) |
| balancer: requests its transport re-sent by itself on a fresh connection | $(json retried_by_transport) |
REPORT
[ "$LOST" -eq 0 ]
