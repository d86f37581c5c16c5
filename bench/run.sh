#!/usr/bin/env bash
# Load test: the gateway against nginx as a plain reverse proxy, side by side in one run on
# this machine. Prints req/s, p50 and p99 of each and the ratio, login throughput against the
# bcrypt bound, p99 of proxied requests during a login flood, peak RSS and RSS growth for a
# 512 MiB streamed upload. Traffic stays on 127.0.0.1; every run is bounded in time.
#
# Usage: bash bench/run.sh [rounds] [seconds]     (defaults: 3 rounds of 10 s)
#        BENCH_BASELINE=<git revision> bash bench/run.sh   also runs that revision's gateway,
#        built from `git archive`, in the same rounds, to compare a change against it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"

ROUNDS=${1:-3}
SECONDS_PER_RUN=${2:-10}
CONNS=64
# BENCH_PORT_OFFSET and BENCH_DB let two checkouts on one machine run this side by side.
P=$((18080 + ${BENCH_PORT_OFFSET:-0}))
GW_PORT=$P UP_PORT=$((P + 1)) NGINX_PORT=$((P + 2)) SINK_PORT=$((P + 3)) BARE_PORT=$((P + 4)) BASE_PORT=$((P + 5)) ADMIN_PORT=$((P + 10))
BASELINE=${BENCH_BASELINE:-}
DB=${BENCH_DB:-atenex_bench}
PGURL="postgres://postgres@127.0.0.1:5432"
OUT=bench/out
mkdir -p "$OUT"

need() { command -v "$1" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq "$2" >/dev/null; }; }
need wrk wrk
need nginx nginx
[ -x /usr/sbin/nginx ] && NGINX=/usr/sbin/nginx || NGINX=$(command -v nginx)

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$OUT/nginx.pid" ] && kill "$(cat "$OUT/nginx.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT

echo "== build"
go build -trimpath -o "$OUT/gateway" .
if [ -n "$BASELINE" ]; then
  echo "== build baseline $BASELINE"
  rm -rf "$OUT/baseline-src" && mkdir -p "$OUT/baseline-src"
  git archive "$BASELINE" | tar -x -C "$OUT/baseline-src"
  (cd "$OUT/baseline-src" && go build -trimpath -o ../gateway-baseline .)
fi
# The ceiling of the design: httputil.ReverseProxy alone, with the gateway's transport
# settings and no auth, logging or headers. Built from here, outside the module.
mkdir -p "$OUT/bare"
cat >"$OUT/bare/main.go" <<'GO'
package main

import (
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"runtime/debug"
)

func main() {
	debug.SetGCPercent(400)
	debug.SetMemoryLimit(32 << 20)
	target, _ := url.Parse(os.Args[2])
	transport := &http.Transport{MaxConnsPerHost: 200, MaxIdleConnsPerHost: 100, DisableCompression: true}
	proxy := &httputil.ReverseProxy{Transport: transport, Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(target)
		pr.Out.URL.Path = "/api/v1/chats"
	}}
	http.ListenAndServe("127.0.0.1:"+os.Args[1], proxy)
}
GO
printf 'module bare\ngo 1.22\n' >"$OUT/bare/go.mod"
(cd "$OUT/bare" && go build -o ../bare-proxy .)

echo "== database $DB"
psql "$PGURL/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" >/dev/null
export GATEWAY_POSTGRES_SERVER=127.0.0.1 GATEWAY_POSTGRES_USER=postgres GATEWAY_POSTGRES_PASSWORD=trust GATEWAY_POSTGRES_DB=$DB
"$OUT/gateway" migrate >/dev/null
COMPANY=$("$OUT/gateway" company create -name "Bench Co")
export BENCH_PASSWORD=bench-password-123
"$OUT/gateway" user create -email bench@example.com -name Bench -company "$COMPANY" -password-env BENCH_PASSWORD >/dev/null

echo "== nginx: upstream on :$UP_PORT, reference proxy on :$NGINX_PORT"
cat > "$OUT/nginx.conf" <<NGINX
worker_processes auto;
pid $PWD/$OUT/nginx.pid;
error_log $PWD/$OUT/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $PWD/$OUT/nginx-body;
  proxy_temp_path $PWD/$OUT/nginx-proxy;
  upstream backend { server 127.0.0.1:$UP_PORT; keepalive 128; }
  server {
    listen 127.0.0.1:$UP_PORT;
    client_max_body_size 0;
    location / { default_type application/json; return 200 '{"chats":[{"id":"1","title":"hello"}]}'; }
  }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location /api/v1/query/ {
      proxy_pass http://backend/api/v1/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For \$remote_addr;
    }
  }
}
NGINX
[ -f "$OUT/nginx.pid" ] && kill "$(cat "$OUT/nginx.pid")" 2>/dev/null && sleep 0.5 # a previous run's
"$NGINX" -c "$PWD/$OUT/nginx.conf"
sleep 0.5

"$OUT/bare-proxy" $BARE_PORT "http://127.0.0.1:$UP_PORT" &
pids+=("$!")

echo "== upload sink on :$SINK_PORT"
python3 bench/sink.py "$SINK_PORT" &
pids+=("$!")

echo "== gateway on :$GW_PORT"
# Login limits off: the login measurements below want every attempt to reach bcrypt.
export GATEWAY_JWT_SECRET=$(head -c 32 /dev/urandom | base64)
PORT=$GW_PORT GATEWAY_ADMIN_PORT=$ADMIN_PORT GATEWAY_LOG_LEVEL=${BENCH_LOG_LEVEL:-INFO} \
GATEWAY_QUERY_SERVICE_URL=http://127.0.0.1:$UP_PORT GATEWAY_INGEST_SERVICE_URL=http://127.0.0.1:$SINK_PORT \
GATEWAY_LOGIN_IP_BURST=0 GATEWAY_LOGIN_EMAIL_BURST=0 GATEWAY_LOGIN_GLOBAL_BURST=0 GATEWAY_DRAIN_DELAY=0s \
  "$OUT/gateway" >"$OUT/gateway.log" 2>&1 &
GW_PID=$!
pids+=("$GW_PID")
for _ in $(seq 1 50); do curl -fsS "http://127.0.0.1:$GW_PORT/health" >/dev/null 2>&1 && break; sleep 0.2; done
if [ -n "$BASELINE" ]; then
  echo "== baseline gateway ($BASELINE) on :$BASE_PORT"
  PORT=$BASE_PORT GATEWAY_ADMIN_PORT=0 GATEWAY_LOG_LEVEL=${BENCH_LOG_LEVEL:-INFO} \
  GATEWAY_QUERY_SERVICE_URL=http://127.0.0.1:$UP_PORT GATEWAY_INGEST_SERVICE_URL=http://127.0.0.1:$SINK_PORT \
  GATEWAY_LOGIN_IP_BURST=0 GATEWAY_LOGIN_EMAIL_BURST=0 GATEWAY_DRAIN_DELAY=0s \
    "$OUT/gateway-baseline" >"$OUT/gateway-baseline.log" 2>&1 &
  pids+=("$!")
  for _ in $(seq 1 50); do curl -fsS "http://127.0.0.1:$BASE_PORT/health" >/dev/null 2>&1 && break; sleep 0.2; done
fi
TOKEN=$(curl -fsS -H 'Content-Type: application/json' \
  -d '{"email":"bench@example.com","password":"bench-password-123"}' \
  "http://127.0.0.1:$GW_PORT/api/v1/users/login" | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
curl -fsS -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$GW_PORT/api/v1/query/chats" >/dev/null

# wrk's latency lines are like "50%  1.23ms"; convert to milliseconds.
to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; printf "%.3f", v}'; }
wrk_run() { # name url conns seconds [extra wrk args...]
  local name=$1 url=$2 conns=$3 secs=$4; shift 4
  wrk -t2 -c"$conns" -d"${secs}s" --latency "$@" "$url" >"$OUT/wrk-$name.txt"
  local rps p50 p99
  rps=$(awk '/^Requests\/sec/ {print $2}' "$OUT/wrk-$name.txt")
  p50=$(awk '$1=="50%" {print $2}' "$OUT/wrk-$name.txt" | to_ms)
  p99=$(awk '$1=="99%" {print $2}' "$OUT/wrk-$name.txt" | to_ms)
  echo "$rps $p50 $p99"
}
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

echo "== proxied GET /api/v1/query/chats: $ROUNDS rounds x ${SECONDS_PER_RUN}s, $CONNS connections, alternating"
rm -f "$OUT"/samples.txt.*
: >"$OUT/rounds.txt"
for round in $(seq 1 "$ROUNDS"); do
  n=$(wrk_run "nginx-$round" "http://127.0.0.1:$NGINX_PORT/api/v1/query/chats" $CONNS "$SECONDS_PER_RUN")
  g=$(wrk_run "gateway-$round" "http://127.0.0.1:$GW_PORT/api/v1/query/chats" $CONNS "$SECONDS_PER_RUN" -H "Authorization: Bearer $TOKEN")
  b=$(wrk_run "bare-$round" "http://127.0.0.1:$BARE_PORT/api/v1/query/chats" $CONNS "$SECONDS_PER_RUN")
  echo "round $round  nginx: $n   gateway: $g   bare ReverseProxy: $b" | tee -a "$OUT/rounds.txt"
  echo "nginx $n" >>"$OUT/samples.txt.$$"; echo "gateway $g" >>"$OUT/samples.txt.$$"; echo "bare $b" >>"$OUT/samples.txt.$$"
  if [ -n "$BASELINE" ]; then
    p=$(wrk_run "baseline-$round" "http://127.0.0.1:$BASE_PORT/api/v1/query/chats" $CONNS "$SECONDS_PER_RUN" -H "Authorization: Bearer $TOKEN")
    echo "round $round  baseline gateway ($BASELINE): $p" | tee -a "$OUT/rounds.txt"
    echo "baseline $p" >>"$OUT/samples.txt.$$"
  fi
done
col() { awk -v who="$1" -v c="$2" '$1==who {print $c}' "$OUT/samples.txt.$$" | median; }
N_RPS=$(col nginx 2) N_P50=$(col nginx 3) N_P99=$(col nginx 4)
G_RPS=$(col gateway 2) G_P50=$(col gateway 3) G_P99=$(col gateway 4)
B_RPS=$(col bare 2) B_P50=$(col bare 3) B_P99=$(col bare 4)
[ -n "$BASELINE" ] && { P_RPS=$(col baseline 2) P_P50=$(col baseline 3) P_P99=$(col baseline 4); }
rm -f "$OUT/samples.txt.$$"
GW_ERRORS=$(cat "$OUT"/wrk-gateway-*.txt | awk '/Non-2xx/ {s+=$NF} /Socket errors/ {s+=0} END {print s+0}')
PEAK_RSS_KB=$(awk '/VmHWM/ {print $2}' "/proc/$GW_PID/status")

echo "== login throughput against the bcrypt bound"
BCRYPT_NS=$(go test -run '^$' -bench '^BenchmarkBcryptCompare$' -benchtime 8x . | awk '/^BenchmarkBcryptCompare/ {print $3}')
CPUS=$(nproc)
BOUND=$(awk -v c="$CPUS" -v ns="$BCRYPT_NS" 'BEGIN {printf "%.2f", c * 1e9 / ns}')
cat >"$OUT/login.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"email":"bench@example.com","password":"bench-password-123"}'
LUA
read -r L_RPS _ _ < <(wrk_run login "http://127.0.0.1:$GW_PORT/api/v1/users/login" $((CPUS * 2)) 10 -s "$OUT/login.lua")
LOGIN_RATIO=$(awk -v a="$L_RPS" -v b="$BOUND" 'BEGIN {printf "%.2f", a / b}')

echo "== proxied p99 while 32 clients flood the login with wrong passwords"
sed 's/bench-password-123/wrong-password/' "$OUT/login.lua" >"$OUT/flood.lua"
read -r _ _ IDLE_P99 < <(wrk_run idle "http://127.0.0.1:$GW_PORT/api/v1/query/chats" 8 10 -H "Authorization: Bearer $TOKEN")
wrk -t1 -c32 -d14s -s "$OUT/flood.lua" "http://127.0.0.1:$GW_PORT/api/v1/users/login" >"$OUT/wrk-flood.txt" &
FLOOD=$!
sleep 2
read -r _ _ FLOOD_P99 < <(wrk_run during-flood "http://127.0.0.1:$GW_PORT/api/v1/query/chats" 8 10 -H "Authorization: Bearer $TOKEN")
wait $FLOOD

echo "== RSS growth for a 512 MiB streamed upload"
RSS_BEFORE=$(awk '/VmRSS/ {print $2}' "/proc/$GW_PID/status")
MAX_RSS=$RSS_BEFORE
UPLOAD_START=$(date +%s.%N)
head -c $((512 << 20)) /dev/zero | curl -fsS -o "$OUT/upload.json" -T - -H "Authorization: Bearer $TOKEN" \
  -H 'Content-Type: application/octet-stream' "http://127.0.0.1:$GW_PORT/api/v1/ingest/upload" &
UPLOAD=$!
while kill -0 $UPLOAD 2>/dev/null; do
  r=$(awk '/VmRSS/ {print $2}' "/proc/$GW_PID/status"); [ "$r" -gt "$MAX_RSS" ] && MAX_RSS=$r
  sleep 0.05
done
wait $UPLOAD
UPLOAD_SECS=$(awk -v s="$UPLOAD_START" -v e="$(date +%s.%N)" 'BEGIN {printf "%.1f", e - s}')
UPLOAD_RECEIVED=$(sed -E 's/.*"received_bytes": ([0-9]+).*/\1/' "$OUT/upload.json")
UPLOAD_GROWTH_KB=$((MAX_RSS - RSS_BEFORE))

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
cat <<REPORT | tee "$OUT/report.md"

Machine: $(nproc) cores ($(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2 | sed "s/^ //")), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(go version | awk '{print $3}'), nginx $("$NGINX" -v 2>&1 | sed 's/.*nginx\///'), wrk -t2 -c$CONNS, ${ROUNDS} rounds x ${SECONDS_PER_RUN}s (medians)

| proxy (GET /api/v1/query/chats) | req/s | p50 ms | p99 ms |
|---|---|---|---|
| nginx (plain reverse proxy, no auth) | $N_RPS | $N_P50 | $N_P99 |
| gateway (JWT + user check + identity headers) | $G_RPS | $G_P50 | $G_P99 |
| ratio gateway / nginx | $(ratio "$G_RPS" "$N_RPS") | $(ratio "$G_P50" "$N_P50") | $(ratio "$G_P99" "$N_P99") |
| bare httputil.ReverseProxy (same transport settings, no auth, no logging) | $B_RPS | $B_P50 | $B_P99 |
| ratio bare ReverseProxy / nginx | $(ratio "$B_RPS" "$N_RPS") | $(ratio "$B_P50" "$N_P50") | $(ratio "$B_P99" "$N_P99") |
$([ -n "$BASELINE" ] && printf '| baseline gateway (%s) | %s | %s | %s |\n| ratio gateway / baseline | %s | %s | %s |' \
  "$BASELINE" "$P_RPS" "$P_P50" "$P_P99" "$(ratio "$G_RPS" "$P_RPS")" "$(ratio "$G_P50" "$P_P50")" "$(ratio "$G_P99" "$P_P99")")

| measurement | value |
|---|---|
| gateway non-2xx responses during the load test | ${GW_ERRORS:-0} |
| gateway peak RSS (VmHWM) | $((PEAK_RSS_KB / 1024)) MiB |
| bcrypt cost-12 verify | $(awk -v ns="$BCRYPT_NS" 'BEGIN {printf "%.0f ms", ns / 1e6}') |
| bcrypt bound ($CPUS CPUs / one verify) | $BOUND logins/s |
| login throughput ($((CPUS * 2)) clients, right password) | $L_RPS logins/s ($LOGIN_RATIO of the bound) |
| proxied p99, 8 clients, idle | $IDLE_P99 ms |
| proxied p99, 8 clients, during a 32-client wrong-password flood | $FLOOD_P99 ms ($(ratio "$FLOOD_P99" "$IDLE_P99") x idle) |
| RSS growth during a 512 MiB streamed upload (upstream received $UPLOAD_RECEIVED bytes in $UPLOAD_SECS s) | $((UPLOAD_GROWTH_KB / 1024)) MiB |
REPORT
