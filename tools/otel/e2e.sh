#!/usr/bin/env bash
# End-to-end tracing check against a real OpenTelemetry-compatible receiver: builds Jaeger
# all-in-one (v1.76.0, pinned in this tools module's go.mod, so the gateway's own go.mod keeps
# its two dependencies), starts it on loopback with in-memory storage, starts the gateway in
# -dev mode exporting to it (on PostgreSQL when 127.0.0.1:5432 answers, so database spans are
# checked too), sends requests with known trace ids, stops the gateway (its spans are flushed
# at shutdown), reads the traces back from Jaeger's query API and checks the spans and their
# parent links. Every wait is bounded; everything started is stopped and removed on exit.
#
# Usage: bash tools/otel/e2e.sh      (first run builds Jaeger: several minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")"
TOOLS=$PWD
ROOT=$(cd ../.. && pwd)
export PATH="$PATH:/usr/local/go/bin"

OTLP_PORT=${E2E_OTLP_PORT:-14318}
QUERY_PORT=${E2E_QUERY_PORT:-14686}
GW_PORT=${E2E_GATEWAY_PORT:-14480}
UP_PORT=${E2E_UPSTREAM_PORT:-14481}
export E2E_OTLP_PORT=$OTLP_PORT E2E_QUERY_PORT=$QUERY_PORT
export E2E_QUERY_GRPC_PORT=${E2E_QUERY_GRPC_PORT:-14685} E2E_HEALTH_PORT=${E2E_HEALTH_PORT:-14133}
DB=atenex_otel_e2e
PGURL="postgres://postgres@127.0.0.1:5432"
export PGOPTIONS="--client-min-messages=warning"
JAEGER=$TOOLS/bin/jaeger

WORK=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ "${USE_PG:-0}" = 1 ] && psql "$PGURL/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "e2e: FAIL: $*" >&2; for f in "$WORK"/*.log; do echo "--- $f" >&2; tail -20 "$f" >&2; done; exit 1; }
# wait_for URL TRIES: poll every 0.2 s, at most TRIES times.
wait_for() { for _ in $(seq 1 "$2"); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.2; done; return 1; }

for port in "$OTLP_PORT" "$QUERY_PORT" "$E2E_QUERY_GRPC_PORT" "$E2E_HEALTH_PORT" "$GW_PORT" "$UP_PORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then fail "port $port is in use (set E2E_*_PORT)"; fi
done

echo "== build Jaeger all-in-one (tools/otel/go.mod)"
if [ ! -x "$JAEGER" ] || [ go.mod -nt "$JAEGER" ]; then
  timeout 1800 go build -o "$JAEGER" github.com/jaegertracing/jaeger/cmd/jaeger
fi
echo "== build the gateway"
(cd "$ROOT" && go build -o "$WORK/gateway" .)

echo "== Jaeger: OTLP/HTTP on 127.0.0.1:$OTLP_PORT, query API on 127.0.0.1:$QUERY_PORT"
"$JAEGER" --config "$TOOLS/jaeger-e2e.yaml" >"$WORK/jaeger.log" 2>&1 &
pids+=("$!")
wait_for "http://127.0.0.1:$E2E_HEALTH_PORT/status" 300 || fail "Jaeger did not become healthy"

echo "== echo upstream on 127.0.0.1:$UP_PORT (answers with the traceparent it received)"
python3 - "$UP_PORT" >"$WORK/upstream.log" 2>&1 <<'PY' &
import http.server, json, sys
class Echo(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = json.dumps({"path": self.path, "traceparent": self.headers.get("traceparent", "")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Echo).serve_forever()
PY
pids+=("$!")
wait_for "http://127.0.0.1:$UP_PORT/" 50 || fail "echo upstream did not start"

USE_PG=0
if psql "$PGURL/postgres" -qAtc "SELECT 1" >/dev/null 2>&1; then
  USE_PG=1
  . "$ROOT/bench/seed.sh"
  seed_bench_db "$WORK/gateway"
else
  echo "== no PostgreSQL on 127.0.0.1:5432: in-memory store (database spans not checked)"
fi

echo "== gateway on 127.0.0.1:$GW_PORT exporting to Jaeger"
PORT=$GW_PORT GATEWAY_ADMIN_PORT=0 GATEWAY_DRAIN_DELAY=0s GATEWAY_LOG_LEVEL=INFO \
GATEWAY_AUTH_SERVICE_URL=http://127.0.0.1:$UP_PORT \
GATEWAY_OTLP_ENDPOINT=http://127.0.0.1:$OTLP_PORT GATEWAY_OTLP_HEADERS="x-e2e-check=1" \
  "$WORK/gateway" -dev >"$WORK/gateway.log" 2>&1 &
GW_PID=$!
pids+=("$GW_PID")
wait_for "http://127.0.0.1:$GW_PORT/livez" 100 || fail "gateway did not start"

hex() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }
LOGIN_TRACE=$(hex 16) LOGIN_PARENT=$(hex 8) PROXY_TRACE=$(hex 16) PROXY_PARENT=$(hex 8)

echo "== requests: a failed login (trace $LOGIN_TRACE), a proxied call (trace $PROXY_TRACE)"
status=$(curl -sS -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
  -H "traceparent: 00-$LOGIN_TRACE-$LOGIN_PARENT-01" \
  -d '{"email":"bench@example.com","password":"not-the-password"}' "http://127.0.0.1:$GW_PORT/api/v1/users/login")
[ "$status" = 401 ] || fail "login answered $status, want 401"
curl -fsS -H "traceparent: 00-$PROXY_TRACE-$PROXY_PARENT-01" \
  "http://127.0.0.1:$GW_PORT/api/v1/auth/e2e/check?secret=in-query" >"$WORK/echo.json" || fail "proxied call failed"

echo "== stop the gateway (SIGTERM: pending spans are flushed)"
kill -TERM "$GW_PID"
for _ in $(seq 1 100); do kill -0 "$GW_PID" 2>/dev/null || break; sleep 0.2; done
kill -0 "$GW_PID" 2>/dev/null && fail "gateway still running 20 s after SIGTERM"
grep -q '"trace export failed\|trace collector rejected' "$WORK/gateway.log" && fail "the gateway reports export failures"

echo "== read the traces back from Jaeger"
for trace in "$LOGIN_TRACE" "$PROXY_TRACE"; do
  ok=0
  for _ in $(seq 1 50); do
    if curl -fsS -o "$WORK/$trace.json" "http://127.0.0.1:$QUERY_PORT/api/traces/$trace" 2>/dev/null &&
      python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))["data"]; sys.exit(0 if d and len(d[0]["spans"]) >= int(sys.argv[2]) else 1)' \
        "$WORK/$trace.json" 2; then ok=1; break; fi
    sleep 0.2
  done
  [ $ok = 1 ] || fail "trace $trace not found in Jaeger"
done

python3 - "$WORK" "$LOGIN_TRACE" "$LOGIN_PARENT" "$PROXY_TRACE" "$PROXY_PARENT" "$USE_PG" <<'PY' || fail "span checks"
import json, sys
work, login_trace, login_parent, proxy_trace, proxy_parent, use_pg = sys.argv[1:]
problems = []
def check(cond, what):
    if not cond:
        problems.append(what)

def load(trace):
    data = json.load(open(f"{work}/{trace}.json"))["data"][0]
    spans = {s["spanID"]: s for s in data["spans"]}
    for s in spans.values():
        proc = data["processes"][s["processID"]]
        check(proc["serviceName"] == "atenex-api-gateway", f"{s['operationName']}: service {proc['serviceName']}")
        check(any(t["key"] == "service.version" for t in proc.get("tags", [])), "service.version missing from the process")
        check(s["traceID"] == trace, f"{s['operationName']}: trace id {s['traceID']}")
    return spans

def named(spans, name):
    found = [s for s in spans.values() if s["operationName"] == name]
    check(len(found) == 1, f"want one span {name!r}, got {[s['operationName'] for s in spans.values()]}")
    return found[0] if found else {"spanID": "", "references": [], "tags": []}

def parent(s):
    refs = [r for r in s.get("references", []) if r["refType"] == "CHILD_OF"]
    return refs[0]["spanID"] if refs else ""

def tag(s, key):
    for t in s.get("tags", []):
        if t["key"] == key:
            return t["value"]
    return None

login = load(login_trace)
server = named(login, "POST /api/v1/users/login")
check(parent(server) == login_parent, f"login server span's parent {parent(server)}, want the client's {login_parent}")
check(tag(server, "http.response.status_code") == 401, f"login status tag {tag(server, 'http.response.status_code')}")
check(tag(server, "span.kind") == "server", "login span kind")
bcrypt = named(login, "bcrypt")
check(parent(bcrypt) == server["spanID"], "bcrypt span is not a child of the login span")
if use_pg == "1":
    db = named(login, "UserByEmail")
    check(parent(db) == server["spanID"], "database span is not a child of the login span")
    check(tag(db, "db.system.name") == "postgresql", "database span lacks db.system.name")

proxy = load(proxy_trace)
server = named(proxy, "/api/v1/auth/{path...}")
check(parent(server) == proxy_parent, f"proxy server span's parent {parent(server)}, want the client's {proxy_parent}")
check(tag(server, "url.path") == "/api/v1/auth/e2e/check", f"url.path {tag(server, 'url.path')}")
client = named(proxy, "GET auth")
check(parent(client) == server["spanID"], "client span is not a child of the server span")
check(tag(client, "span.kind") == "client", "client span kind")
echo = json.load(open(f"{work}/echo.json"))
check(echo["traceparent"] == f"00-{proxy_trace}-{client['spanID']}-01",
      f"upstream received {echo['traceparent']}, want the client span {client['spanID']} as parent")
conn = named(proxy, "upstream connection")
check(parent(conn) == client["spanID"], "connection wait is not a child of the client span")
raw = open(f"{work}/{proxy_trace}.json").read() + open(f"{work}/{login_trace}.json").read()
check("in-query" not in raw and "bench@example.com" not in raw, "a query string or an email reached the traces")

if problems:
    print("\n".join(problems))
    sys.exit(1)
print(f"e2e: OK: {len(login)} spans in the login trace, {len(proxy)} in the proxied trace; "
      "parent links: client -> gateway server span -> children, client span -> upstream traceparent")
PY
