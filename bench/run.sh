#!/usr/bin/env bash
# Load test: the gateway against nginx as a plain reverse proxy and a bare
# httputil.ReverseProxy, side by side in one run on this machine. Prints, per connection
# count, req/s, p50 and p99 of each and the ratios, garbage collections per second (from
# GODEBUG=gctrace=1) and peak RSS; then login throughput against the bcrypt bound, p99 of
# proxied requests during a login flood and RSS growth for a 512 MiB streamed upload; and
# the same gateway with span export on (to a local OTLP sink) against export off, in CPU
# time per request (BENCH_TRACE=0 skips it).
# Traffic stays on 127.0.0.1; every run is bounded in time.
#
# Usage: bash bench/run.sh [rounds] [seconds] [connections...]
#   defaults: 3 rounds of 10 s at 64 connections. Several connection counts are measured in
#   the same run, each with its own rounds:   bash bench/run.sh 3 10 64 190 400 1000
#   The connection counts may also come from CONNS (spaces or commas): CONNS=400 bash bench/run.sh
#   BENCH_EXTRAS=0 skips the login, login-flood and upload measurements.
#   BENCH_PORT_BASE (18080) and BENCH_DB (atenex_bench) keep parallel runs on one machine apart.
#   BENCH_BASELINE=<git revision> also runs that revision's gateway, built from `git archive`,
#   in the same rounds, to compare a change against it (before/after in one run).
# The gateway runs with its default memory and GC settings unless GATEWAY_MEMORY_LIMIT /
# GATEWAY_GC_PERCENT are set in the environment; the bare ReverseProxy gets the same ones.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"

ROUNDS=${1:-3}
SECONDS_PER_RUN=${2:-10}
if [ $# -gt 2 ]; then shift 2; CONNS_LIST="$*"; else CONNS_LIST=${CONNS:-64}; fi
CONNS_LIST=$(echo "$CONNS_LIST" | tr ',' ' ')
for c in $CONNS_LIST; do
  case $c in ''|*[!0-9]*) echo "connections must be whole numbers, got \"$c\"" >&2; exit 2;; esac
done
EXTRAS=${BENCH_EXTRAS:-1}
BASE=${BENCH_PORT_BASE:-18080}
GW_PORT=$BASE UP_PORT=$((BASE + 1)) NGINX_PORT=$((BASE + 2)) SINK_PORT=$((BASE + 3)) BARE_PORT=$((BASE + 4)) ADMIN_PORT=$((BASE + 10))
OTLP_PORT=$((BASE + 5)) GWT_PORT=$((BASE + 6)) GWT_ADMIN_PORT=$((BASE + 11))
TRACE=${BENCH_TRACE:-1}
BASELINE=${BENCH_BASELINE:-} BASE_GW_PORT=$((BASE + 7))
DB=${BENCH_DB:-atenex_bench}
ulimit -n 65536 2>/dev/null || true # 1000 connections are 1000 descriptors in wrk and in each proxy
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
# settings and no auth, logging or headers. Built from here, outside the module. It runs with
# the gateway's effective GOGC and GOMEMLIMIT (read from the gateway's start-up log).
mkdir -p "$OUT/bare"
cat >"$OUT/bare/main.go" <<'GO'
package main

import (
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
)

func main() {
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
# A local OTLP/HTTP sink for the gateway with span export on: it reads each export and
# answers success, so what is measured is the gateway's own cost of tracing.
mkdir -p "$OUT/otlpsink"
cat >"$OUT/otlpsink/main.go" <<'GO'
package main

import (
	"io"
	"net/http"
	"os"
)

func main() {
	http.ListenAndServe("127.0.0.1:"+os.Args[1], http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, "{}")
	}))
}
GO
printf 'module otlpsink\ngo 1.22\n' >"$OUT/otlpsink/go.mod"
(cd "$OUT/otlpsink" && go build -o ../otlp-sink .)

. bench/seed.sh
seed_bench_db

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

echo "== upload sink on :$SINK_PORT"
python3 bench/sink.py "$SINK_PORT" &
pids+=("$!")

# start_gateway NAME BINARY PORT ADMIN_PORT [VAR=value...]: one gateway in front of the bench
# upstreams, logging to $OUT/NAME.log and $OUT/NAME.stderr, with the login limits off (the
# login measurements want every attempt to reach bcrypt) and the per-company in-flight cap
# off (one bench user stands for every tenant: the cap, default 100, would answer most of
# 400 connections with 429). Sets PID once /health answers.
start_gateway() {
  local name=$1 bin=$2 port=$3 admin=$4; shift 4
  env GATEWAY_JWT_SECRET="$(head -c 32 /dev/urandom | base64)" \
    PORT="$port" GATEWAY_ADMIN_PORT="$admin" GATEWAY_LOG_LEVEL="${BENCH_LOG_LEVEL:-INFO}" \
    GATEWAY_QUERY_SERVICE_URL="http://127.0.0.1:$UP_PORT" GATEWAY_INGEST_SERVICE_URL="http://127.0.0.1:$SINK_PORT" \
    GATEWAY_LOGIN_IP_BURST=0 GATEWAY_LOGIN_EMAIL_BURST=0 GATEWAY_LOGIN_GLOBAL_BURST=0 GATEWAY_DRAIN_DELAY=0s \
    GATEWAY_COMPANY_MAX_INFLIGHT=0 "$@" "$bin" >"$OUT/$name.log" 2>"$OUT/$name.stderr" &
  PID=$!
  pids+=("$PID")
  for _ in $(seq 1 50); do curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break; sleep 0.2; done
}
# login_token PORT: the bench user's access token from the gateway on PORT.
login_token() {
  curl -fsS -H 'Content-Type: application/json' \
    -d '{"email":"bench@example.com","password":"bench-password-123"}' \
    "http://127.0.0.1:$1/api/v1/users/login" | sed -E 's/.*"access_token":"([^"]+)".*/\1/'
}

echo "== gateway on :$GW_PORT"
start_gateway gateway "$OUT/gateway" "$GW_PORT" "$ADMIN_PORT" GODEBUG=gctrace=1
GW_PID=$PID
if [ -n "$BASELINE" ]; then
  # The earlier revision with its own defaults, on the same (expand-only migrated) database.
  echo "== baseline gateway ($BASELINE) on :$BASE_GW_PORT"
  start_gateway gateway-baseline "$OUT/gateway-baseline" "$BASE_GW_PORT" 0
  BASE_GW_PID=$PID
  TOKEN_B=$(login_token "$BASE_GW_PORT")
fi
# The garbage collector settings the gateway chose (its "runtime" start-up line).
GC_PERCENT=$(sed -nE 's/.*"msg":"runtime".*"gc_percent":(-?[0-9]+).*/\1/p' "$OUT/gateway.log" | head -1)
MEMORY_LIMIT=$(sed -nE 's/.*"msg":"runtime".*"memory_limit":([0-9]+).*/\1/p' "$OUT/gateway.log" | head -1)
MEMORY_SOURCE=$(sed -nE 's/.*"msg":"runtime".*"memory_limit_source":"([^"]*)".*/\1/p' "$OUT/gateway.log" | head -1)
echo "   gateway GC: percent ${GC_PERCENT:-?}, memory limit ${MEMORY_LIMIT:-?} bytes (${MEMORY_SOURCE:-?})"

echo "== bare ReverseProxy on :$BARE_PORT"
BARE_ENV=()
[ -n "$GC_PERCENT" ] && BARE_ENV+=("GOGC=$([ "$GC_PERCENT" = -1 ] && echo off || echo "$GC_PERCENT")")
[ -n "$MEMORY_LIMIT" ] && [ "$MEMORY_LIMIT" != 0 ] && BARE_ENV+=("GOMEMLIMIT=$MEMORY_LIMIT")
env "${BARE_ENV[@]}" GODEBUG=gctrace=1 "$OUT/bare-proxy" $BARE_PORT "http://127.0.0.1:$UP_PORT" 2>"$OUT/bare-gc.log" &
BARE_PID=$!
pids+=("$BARE_PID")
for _ in $(seq 1 50); do curl -fsS -o /dev/null "http://127.0.0.1:$BARE_PORT/" 2>/dev/null && break; sleep 0.2; done

echo "== gateway with span export on :$GWT_PORT, OTLP sink on :$OTLP_PORT"
"$OUT/otlp-sink" $OTLP_PORT &
pids+=("$!")
start_gateway gateway-traced "$OUT/gateway" "$GWT_PORT" "$GWT_ADMIN_PORT" \
  GATEWAY_OTLP_ENDPOINT="http://127.0.0.1:$OTLP_PORT" GATEWAY_TRACE_SAMPLE_RATIO=1
GWT_PID=$PID
TOKEN=$(login_token "$GW_PORT")
curl -fsS -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$GW_PORT/api/v1/query/chats" >/dev/null
TOKEN_T=$(login_token "$GWT_PORT")
curl -fsS -H "Authorization: Bearer $TOKEN_T" "http://127.0.0.1:$GWT_PORT/api/v1/query/chats" >/dev/null

# CPU seconds (user + system) a process has used so far, from /proc/PID/stat, and the CPU
# microseconds per request of a run from two such readings and its req/s.
cpu_secs() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"; }
cpu_per_req() { awk -v a="$1" -v b="$2" -v rps="$3" -v s="$SECONDS_PER_RUN" 'BEGIN {printf "%.1f", (b - a) * 1e6 / (rps * s)}'; }

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

# Garbage collections so far, from the gctrace lines ("gc 12 @3.4s ...").
gc_count() { local n; n=$(grep -oE '^gc [0-9]+' "$1" | tail -1 | cut -d' ' -f2); echo "${n:-0}"; }
# Peak RSS (VmHWM) of a process in KiB; writing 5 to clear_refs starts a new peak.
peak_kb() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
reset_peak() { echo 5 >"/proc/$1/clear_refs" 2>/dev/null || true; }
nginx_peak_kb() { # the largest worker's peak
  local m=0 k p
  for p in $(pgrep -P "$(cat "$OUT/nginx.pid")"); do
    k=$(awk '/VmHWM/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0); [ "${k:-0}" -gt "$m" ] && m=$k
  done
  echo "$m"
}
# wrk_gc name url conns seconds pid gclog [extra wrk args...] → "rps p50 p99 gc_per_s errors"
wrk_gc() {
  local name=$1 url=$2 conns=$3 secs=$4 pid=$5 gclog=$6; shift 6
  local before after start end r
  before=$( [ -n "$gclog" ] && gc_count "$gclog" || echo 0)
  start=$(date +%s.%N)
  r=$(wrk_run "$name" "$url" "$conns" "$secs" --timeout 10s "$@")
  end=$(date +%s.%N)
  after=$( [ -n "$gclog" ] && gc_count "$gclog" || echo 0)
  local errs
  errs=$(awk '/Non-2xx/ {s+=$NF} /Socket errors/ {gsub(",", ""); s+=$4+$6+$8+$10} END {print s+0}' "$OUT/wrk-$name.txt")
  echo "$r $(awk -v a="$before" -v b="$after" -v s="$start" -v e="$end" 'BEGIN {printf "%.1f", (b - a) / (e - s)}') $errs"
}

: >"$OUT/rounds.txt"
: >"$OUT/levels.txt"
GW_ERRORS=0
for CONNS in $CONNS_LIST; do
  echo "== proxied GET /api/v1/query/chats: $ROUNDS rounds x ${SECONDS_PER_RUN}s, $CONNS connections, alternating"
  SAMPLES="$OUT/samples.txt.$$"
  : >"$SAMPLES"
  reset_peak "$GW_PID"; reset_peak "$BARE_PID"; [ -n "$BASELINE" ] && reset_peak "$BASE_GW_PID"
  for p in $(pgrep -P "$(cat "$OUT/nginx.pid")"); do reset_peak "$p"; done
  for round in $(seq 1 "$ROUNDS"); do
    n=$(wrk_gc "nginx-$CONNS-$round" "http://127.0.0.1:$NGINX_PORT/api/v1/query/chats" "$CONNS" "$SECONDS_PER_RUN" "" "")
    g=$(wrk_gc "gateway-$CONNS-$round" "http://127.0.0.1:$GW_PORT/api/v1/query/chats" "$CONNS" "$SECONDS_PER_RUN" "$GW_PID" "$OUT/gateway.stderr" -H "Authorization: Bearer $TOKEN")
    b=$(wrk_gc "bare-$CONNS-$round" "http://127.0.0.1:$BARE_PORT/api/v1/query/chats" "$CONNS" "$SECONDS_PER_RUN" "$BARE_PID" "$OUT/bare-gc.log")
    echo "c=$CONNS round $round  nginx: $n   gateway: $g   bare ReverseProxy: $b   (req/s p50 p99 gc/s errors)" | tee -a "$OUT/rounds.txt"
    echo "nginx $n" >>"$SAMPLES"; echo "gateway $g" >>"$SAMPLES"; echo "bare $b" >>"$SAMPLES"
    # Ratios within the round, whose runs are seconds apart: other load on the machine
    # shifts both sides of a ratio alike, so its median is steadier than a ratio of medians.
    echo "$n $g" | awk '{printf "rgateway %s %.4f %.4f %.4f\n", "-", $6 / $1, $7 / $2, $8 / $3}' >>"$SAMPLES"
    echo "$n $b" | awk '{printf "rbare %s %.4f %.4f %.4f\n", "-", $6 / $1, $7 / $2, $8 / $3}' >>"$SAMPLES"
    if [ -n "$BASELINE" ]; then
      p=$(wrk_gc "baseline-$CONNS-$round" "http://127.0.0.1:$BASE_GW_PORT/api/v1/query/chats" "$CONNS" "$SECONDS_PER_RUN" "" "" -H "Authorization: Bearer $TOKEN_B")
      echo "c=$CONNS round $round  baseline gateway ($BASELINE): $p" | tee -a "$OUT/rounds.txt"
      echo "baseline $p" >>"$SAMPLES"
      echo "$p $g" | awk '{printf "rbaseline %s %.4f %.4f %.4f\n", "-", $6 / $1, $7 / $2, $8 / $3}' >>"$SAMPLES"
    fi
  done
  col() { awk -v who="$1" -v c="$2" '$1==who {print $c}' "$SAMPLES" | median; }
  sum() { awk -v who="$1" -v c="$2" '$1==who {s+=$c} END {print s+0}' "$SAMPLES"; }
  echo "$CONNS nginx $(col nginx 2) $(col nginx 3) $(col nginx 4) - $(( $(nginx_peak_kb) / 1024 )) $(sum nginx 6)" >>"$OUT/levels.txt"
  echo "$CONNS gateway $(col gateway 2) $(col gateway 3) $(col gateway 4) $(col gateway 5) $(( $(peak_kb "$GW_PID") / 1024 )) $(sum gateway 6)" >>"$OUT/levels.txt"
  echo "$CONNS bare $(col bare 2) $(col bare 3) $(col bare 4) $(col bare 5) $(( $(peak_kb "$BARE_PID") / 1024 )) $(sum bare 6)" >>"$OUT/levels.txt"
  echo "$CONNS rgateway $(col rgateway 3) $(col rgateway 4) $(col rgateway 5) - - -" >>"$OUT/levels.txt"
  echo "$CONNS rbare $(col rbare 3) $(col rbare 4) $(col rbare 5) - - -" >>"$OUT/levels.txt"
  if [ -n "$BASELINE" ]; then
    echo "$CONNS baseline $(col baseline 2) $(col baseline 3) $(col baseline 4) - $(( $(peak_kb "$BASE_GW_PID") / 1024 )) $(sum baseline 6)" >>"$OUT/levels.txt"
    echo "$CONNS rbaseline $(col rbaseline 3) $(col rbaseline 4) $(col rbaseline 5) - - -" >>"$OUT/levels.txt"
  fi
  GW_ERRORS=$((GW_ERRORS + $(sum gateway 6)))
  rm -f "$SAMPLES"
done
# Over the whole run: the largest of the per-level peaks.
PEAK_RSS_KB=$(awk '$2=="gateway" && $7>m {m=$7} END {print m*1024}' "$OUT/levels.txt")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }

if [ "$TRACE" != 0 ]; then
TCONNS=${CONNS_LIST%% *}
echo "== span export: off against on (every request sampled, local OTLP sink), $ROUNDS rounds x ${SECONDS_PER_RUN}s, $TCONNS connections"
: >"$OUT/trace-samples.txt"
for round in $(seq 1 "$ROUNDS"); do
  g0=$(cpu_secs "$GW_PID")
  g=$(wrk_run "export-off-$round" "http://127.0.0.1:$GW_PORT/api/v1/query/chats" "$TCONNS" "$SECONDS_PER_RUN" -H "Authorization: Bearer $TOKEN")
  g1=$(cpu_secs "$GW_PID")
  t0=$(cpu_secs "$GWT_PID")
  tr=$(wrk_run "export-on-$round" "http://127.0.0.1:$GWT_PORT/api/v1/query/chats" "$TCONNS" "$SECONDS_PER_RUN" -H "Authorization: Bearer $TOKEN_T")
  t1=$(cpu_secs "$GWT_PID")
  g_us=$(cpu_per_req "$g0" "$g1" "${g%% *}") tr_us=$(cpu_per_req "$t0" "$t1" "${tr%% *}")
  echo "round $round  export off: $g ($g_us us CPU/req)   export on: $tr ($tr_us us CPU/req)" | tee -a "$OUT/rounds.txt"
  echo "off $g $g_us" >>"$OUT/trace-samples.txt"; echo "on $tr $tr_us" >>"$OUT/trace-samples.txt"
done
tcol() { awk -v who="$1" -v c="$2" '$1==who {print $c}' "$OUT/trace-samples.txt" | median; }
OFF_RPS=$(tcol off 2) OFF_P99=$(tcol off 4) OFF_CPU=$(tcol off 5)
ON_RPS=$(tcol on 2) ON_P99=$(tcol on 4) ON_CPU=$(tcol on 5)
T_DROPPED=$(curl -fsS "http://127.0.0.1:$GWT_ADMIN_PORT/metrics" | awk '/^gateway_trace_spans_dropped_total/ {s+=$NF} END {print s+0}')
fi

if [ "$EXTRAS" != 0 ]; then
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
fi

{
cat <<REPORT

Machine: $(nproc) cores ($(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2 | sed "s/^ //")), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(go version | awk '{print $3}'), nginx $("$NGINX" -v 2>&1 | sed 's/.*nginx\///'), wrk -t2, ${ROUNDS} rounds x ${SECONDS_PER_RUN}s per connection count (medians; ratios are medians of each round's ratio); gateway GC percent ${GC_PERCENT:-?}, memory limit $(awk -v b="${MEMORY_LIMIT:-0}" 'BEGIN {printf "%.0f MiB", b / 1048576}') (${MEMORY_SOURCE:-?}), the bare ReverseProxy the same

| connections | proxy (GET /api/v1/query/chats) | req/s | p50 ms | p99 ms | GC cycles/s | peak RSS MiB | errors |
|---|---|---|---|---|---|---|---|
REPORT
# Rows in the order nginx, gateway, its ratio, bare, its ratio; a ratio is the median of the
# rounds' ratios.
while read -r c who rps p50 p99 gcs rss errs; do
  r2() { awk -v v="$1" 'BEGIN {printf "%.2f", v}'; }
  case $who in
    nginx) echo "| $c | nginx (plain reverse proxy, no auth) | $rps | $p50 | $p99 | $gcs | $rss | $errs |" ;;
    gateway) G_ROW="| $c | **gateway** (JWT + user check + identity headers + access log) | $rps | $p50 | $p99 | $gcs | $rss | $errs |" ;;
    bare) B_ROW="| $c | bare httputil.ReverseProxy (same transport, no auth, no log) | $rps | $p50 | $p99 | $gcs | $rss | $errs |" ;;
    rgateway) echo "$G_ROW"; echo "| $c | ratio gateway / nginx | $(r2 "$rps") | $(r2 "$p50") | $(r2 "$p99") | | | |" ;;
    rbare) echo "$B_ROW"; echo "| $c | ratio bare / nginx | $(r2 "$rps") | $(r2 "$p50") | $(r2 "$p99") | | | |" ;;
    baseline) P_ROW="| $c | baseline gateway ($BASELINE, its own defaults) | $rps | $p50 | $p99 | $gcs | $rss | $errs |" ;;
    rbaseline) echo "$P_ROW"; echo "| $c | **ratio gateway / baseline** | $(r2 "$rps") | $(r2 "$p50") | $(r2 "$p99") | | | |" ;;
  esac
done <"$OUT/levels.txt"
cat <<REPORT

| measurement | value |
|---|---|
| gateway non-2xx responses and socket errors during the load test | ${GW_ERRORS:-0} |
| gateway peak RSS (VmHWM, largest of the connection counts) | $((PEAK_RSS_KB / 1024)) MiB |
REPORT
if [ "$EXTRAS" != 0 ]; then
cat <<REPORT
| bcrypt cost-12 verify | $(awk -v ns="$BCRYPT_NS" 'BEGIN {printf "%.0f ms", ns / 1e6}') |
| bcrypt bound ($CPUS CPUs / one verify) | $BOUND logins/s |
| login throughput ($((CPUS * 2)) clients, right password) | $L_RPS logins/s ($LOGIN_RATIO of the bound) |
| proxied p99, 8 clients, idle | $IDLE_P99 ms |
| proxied p99, 8 clients, during a 32-client wrong-password flood | $FLOOD_P99 ms ($(ratio "$FLOOD_P99" "$IDLE_P99") x idle) |
| RSS growth during a 512 MiB streamed upload (upstream received $UPLOAD_RECEIVED bytes in $UPLOAD_SECS s) | $((UPLOAD_GROWTH_KB / 1024)) MiB |
REPORT
fi
if [ "$TRACE" != 0 ]; then
cat <<REPORT

| span export ($TCONNS connections, medians) | req/s | p99 ms | gateway CPU per request | spans dropped |
|---|---|---|---|---|
| off | $OFF_RPS | $OFF_P99 | $OFF_CPU us | — |
| on, every request sampled, local OTLP sink | $ON_RPS | $ON_P99 | $ON_CPU us | $T_DROPPED |
| ratio on / off | $(ratio "$ON_RPS" "$OFF_RPS") | $(ratio "$ON_P99" "$OFF_P99") | $(ratio "$ON_CPU" "$OFF_CPU") | |
REPORT
fi
} | tee "$OUT/report.md"
