#!/usr/bin/env bash
# Benchmarks on SQLite and PostgreSQL, beside a throw-away Redis. With no name, the
# widget's (bench/widget_bench.py), then the live stream's (bench/live_bench.py); a first
# argument naming another runs that one alone (`scripts/bench.sh insights` runs
# bench/insights_bench.py, `scripts/bench.sh live` the live stream's). The other
# arguments go to the named benchmark, or with no name to the widget's (the live one then
# runs with its defaults). Installs wrk from Debian's packages when the widget's needs
# it. PostgreSQL keeps its durable defaults here (fsync on), so the write figures are
# honest.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${TIDINGS_BENCH_SERVERS:-}" ]; then
  . scripts/apt.sh
  if { [ $# -eq 0 ] || [ ! -f "bench/${1}_bench.py" ] || [ "$1" = widget ]; } \
    && ! command -v wrk >/dev/null; then
    echo "Installing wrk from Debian's packages…"
    apt_install wrk
  fi
  # Again inside the servers, which stop when the benchmarks end, however they end.
  export TIDINGS_BENCH_SERVERS=1
  PG_DURABLE=1 exec scripts/with-redis.sh scripts/with-postgres.sh "$0" "$@"
fi
if [ $# -gt 0 ] && [ -f "bench/${1}_bench.py" ]; then
  name=$1
  shift
  exec .venv/bin/python "bench/${name}_bench.py" "$@"
fi
.venv/bin/python bench/widget_bench.py "$@"
exec .venv/bin/python bench/live_bench.py
