#!/usr/bin/env bash
# Runs Herald on this machine: installs redis-server if missing, builds the
# release binaries (the three services and the herald CLI), starts Redis (data in .herald/redis, AOF on) and the
# registry, dispatcher and gateway, and waits until all answer /readyz.
# Ctrl-C (or SIGTERM) stops everything. Logs: .herald/logs/.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$herald_root"
ensure_cargo
ensure_packages redis-server redis-server curl curl

state="$herald_root/.herald"
mkdir -p "$state/redis" "$state/logs"
redis_port="${HERALD_REDIS_PORT:-6379}"

# Secrets persist across runs so stored endpoint secrets stay readable.
[ -s "$state/secret.key" ] || head -c 32 /dev/urandom | base64 > "$state/secret.key"
[ -s "$state/admin.token" ] || head -c 24 /dev/urandom | base64 | tr -d '/+=' > "$state/admin.token"
chmod 600 "$state/secret.key" "$state/admin.token"
export HERALD_SECRET_KEY="${HERALD_SECRET_KEY:-$(cat "$state/secret.key")}"
export HERALD_ADMIN_TOKEN="${HERALD_ADMIN_TOKEN:-$(cat "$state/admin.token")}"
export HERALD_REDIS_URL="${HERALD_REDIS_URL:-redis://127.0.0.1:$redis_port}"
# Local development sends to local receivers; production leaves these off.
export HERALD_ALLOW_HTTP="${HERALD_ALLOW_HTTP:-true}"
export HERALD_ALLOW_PRIVATE_NETWORKS="${HERALD_ALLOW_PRIVATE_NETWORKS:-true}"
export HERALD_CATALOG_DIR="${HERALD_CATALOG_DIR:-$herald_root/deploy/catalog}"

cargo build --release --bins

pids=()
stop() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop INT TERM EXIT

redis_bin="$(command -v redis-server || echo /usr/bin/redis-server)"
"$redis_bin" --port "$redis_port" --bind 127.0.0.1 --dir "$state/redis" --appendonly yes \
  --appendfsync everysec --daemonize no --loglevel warning >"$state/logs/redis.log" 2>&1 &
pids+=($!)

for service in registry dispatch gateway; do
  "target/release/herald-$service" >"$state/logs/$service.log" 2>&1 &
  pids+=($!)
done

gateway_listen="${HERALD_GATEWAY_LISTEN:-0.0.0.0:8080}"
gateway="http://127.0.0.1:${gateway_listen##*:}"
for url in "http://127.0.0.1:9101/readyz" "http://127.0.0.1:9102/readyz" "$gateway/readyz"; do
  for _ in $(seq 1 150); do
    curl -fsS -o /dev/null "$url" 2>/dev/null && break
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null || { echo "a process exited; see $state/logs" >&2; exit 1; }; done
    sleep 0.2
  done
  curl -fsS -o /dev/null "$url" || { echo "$url is not ready; see $state/logs" >&2; exit 1; }
done

cat <<MSG
Herald is ready.
  REST gateway   $gateway   (OpenAPI: $gateway/openapi.json)
  gRPC registry  127.0.0.1:50051    gRPC dispatch 127.0.0.1:50052
  admin token    export HERALD_ADMIN_TOKEN=$HERALD_ADMIN_TOKEN
  command line   $herald_root/target/release/herald  (HERALD_URL=$gateway HERALD_TOKEN=\$HERALD_ADMIN_TOKEN)
  logs           $state/logs/
Ctrl-C stops everything.
MSG
wait -n "${pids[@]}"
echo "a Herald process exited; stopping" >&2
