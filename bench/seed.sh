# Sourced by the bench and end-to-end scripts: seed_bench_db [GATEWAY] creates database $DB on
# $PGURL, migrates it with the gateway binary (default $OUT/gateway) and adds one company and
# the user bench@example.com (password $BENCH_PASSWORD), leaving the GATEWAY_POSTGRES_*
# settings exported for the gateways the script starts.
seed_bench_db() {
  local gateway=${1:-$OUT/gateway}
  echo "== database $DB"
  psql "$PGURL/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" >/dev/null
  export GATEWAY_POSTGRES_SERVER=127.0.0.1 GATEWAY_POSTGRES_USER=postgres GATEWAY_POSTGRES_PASSWORD=trust GATEWAY_POSTGRES_DB=$DB
  "$gateway" migrate >/dev/null
  COMPANY=$("$gateway" company create -name "Bench Co")
  export BENCH_PASSWORD=bench-password-123
  "$gateway" user create -email bench@example.com -name Bench -company "$COMPANY" -password-env BENCH_PASSWORD >/dev/null
}
