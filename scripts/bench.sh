#!/usr/bin/env bash
# A benchmark on SQLite and PostgreSQL: the widget's (bench/widget_bench.py) unless the
# first argument names another (`scripts/bench.sh insights` runs bench/insights_bench.py);
# the other arguments go to the benchmark. Installs wrk from Debian's packages when the
# widget's needs it. PostgreSQL keeps its durable defaults here (fsync on), so the write
# figures are honest.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/apt.sh
name=widget
if [ $# -gt 0 ] && [ -f "bench/${1}_bench.py" ]; then
  name=$1
  shift
fi
if [ "$name" = widget ] && ! command -v wrk >/dev/null; then
  echo "Installing wrk from Debian's packages…"
  apt_install wrk
fi
PG_DURABLE=1 exec scripts/with-postgres.sh .venv/bin/python "bench/${name}_bench.py" "$@"
