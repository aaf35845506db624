#!/usr/bin/env bash
# The whole suite, on SQLite and on PostgreSQL, with Chromium for the browser tests.
# Installs PostgreSQL and Chromium from Debian's packages when they are missing, starts a
# throw-away PostgreSQL on a free loopback port, and stops it again however the run ends.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then as_root apt-get update -qq; apt_updated=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

find_pg_bin() {
  local found
  found=$(command -v pg_ctl || true)
  if [ -z "$found" ]; then
    found=$(ls -d /usr/lib/postgresql/*/bin/pg_ctl 2>/dev/null | sort -V | tail -n 1 || true)
  fi
  [ -n "$found" ] && dirname "$(readlink -f "$found")"
}

if ! command -v chromium >/dev/null; then
  echo "Installing Chromium from Debian's packages…"
  apt_install chromium fonts-dejavu-core
fi
# The widget's reactions are emoji; without a colour emoji font the screenshots show boxes.
if ! fc-list 2>/dev/null | grep -qi "emoji"; then
  apt_install fonts-noto-color-emoji
fi
PG_BIN=$(find_pg_bin || true)
if [ -z "$PG_BIN" ]; then
  echo "Installing PostgreSQL from Debian's packages…"
  apt_install postgresql
  PG_BIN=$(find_pg_bin)
fi

PG_DIR=$(mktemp -d -t tidings-pg.XXXXXX)
PG_PORT=$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# PostgreSQL refuses to run as root: as root, run it as the postgres user.
if [ "$(id -u)" = 0 ]; then
  chown postgres "$PG_DIR"
  as_pg() { runuser -u postgres -- "$@"; }
else
  as_pg() { "$@"; }
fi
stop_pg() {
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$PG_DIR"
}
trap stop_pg EXIT
as_pg "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres --auth=trust -E UTF8 --no-locale >/dev/null
as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -o \
  "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
  start >/dev/null
echo "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT"

export TIDINGS_TEST_POSTGRES_URL="postgresql+psycopg://postgres@127.0.0.1:$PG_PORT/postgres"
.venv/bin/python -m pytest "$@"
