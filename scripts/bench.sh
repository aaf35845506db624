#!/usr/bin/env bash
# The widget benchmark on SQLite and PostgreSQL; arguments go to bench/widget_bench.py.
# Installs wrk from Debian's packages when missing. PostgreSQL keeps its durable
# defaults here (fsync on), so the write figures are honest.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/apt.sh
if ! command -v wrk >/dev/null; then
  echo "Installing wrk from Debian's packages…"
  apt_install wrk
fi
PG_DURABLE=1 exec scripts/with-postgres.sh .venv/bin/python bench/widget_bench.py "$@"
