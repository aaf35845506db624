#!/usr/bin/env bash
# Run a command beside a throw-away Redis: installs Debian's redis-server when it is
# missing, starts it on a free loopback port with no persistence, exports
# TIDINGS_TEST_REDIS_URL, runs the command, and stops the server however the command ends.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/apt.sh

if ! command -v redis-server >/dev/null; then
  echo "Installing Redis from Debian's packages…"
  apt_install redis-server
fi

REDIS_DIR=$(mktemp -d -t tidings-redis.XXXXXX)
REDIS_PORT=$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
  --dir "$REDIS_DIR" --daemonize no >"$REDIS_DIR/server.log" 2>&1 &
REDIS_PID=$!
stop_redis() {
  kill "$REDIS_PID" 2>/dev/null || true
  wait "$REDIS_PID" 2>/dev/null || true
  rm -rf "$REDIS_DIR"
}
trap stop_redis EXIT
for _ in $(seq 1 50); do
  if .venv/bin/python -c "import redis, sys; redis.Redis(port=$REDIS_PORT).ping()" 2>/dev/null; then
    break
  fi
  sleep 0.1
done
echo "Redis $(redis-server --version | awk '{print $3}' | cut -d= -f2) on 127.0.0.1:$REDIS_PORT"

export TIDINGS_TEST_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
"$@"
