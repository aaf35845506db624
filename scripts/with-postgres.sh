#!/usr/bin/env bash
# Run a command beside a throw-away PostgreSQL: installs it from Debian's packages when it
# is missing, starts it on a free loopback port, exports TIDINGS_TEST_POSTGRES_URL (and
# TIDINGS_TEST_POSTGRES_SOCKET, the folder of its Unix socket), runs the command, and
# stops the server again however the command ends.
#
# The suite's server trades durability for speed (fsync off); PG_DURABLE=1 keeps
# PostgreSQL's defaults, as the benchmark needs for honest write figures.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/apt.sh

find_pg_bin() {
  local found
  found=$(command -v pg_ctl || true)
  if [ -z "$found" ]; then
    found=$(ls -d /usr/lib/postgresql/*/bin/pg_ctl 2>/dev/null | sort -V | tail -n 1 || true)
  fi
  [ -n "$found" ] && dirname "$(readlink -f "$found")"
}

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
OPTIONS="-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1"
if [ -z "${PG_DURABLE:-}" ]; then
  OPTIONS="$OPTIONS -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
fi
as_pg "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres --auth=trust -E UTF8 --no-locale >/dev/null
as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -o "$OPTIONS" start >/dev/null
echo "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT"

export TIDINGS_TEST_POSTGRES_URL="postgresql+psycopg://postgres@127.0.0.1:$PG_PORT/postgres"
export TIDINGS_TEST_POSTGRES_SOCKET="$PG_DIR"
"$@"
