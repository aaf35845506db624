#!/usr/bin/env bash
# The whole suite, on SQLite and on PostgreSQL, with Chromium for the browser tests.
# Installs Chromium (and an emoji font for its screenshots) from Debian's packages when
# missing; scripts/with-redis.sh and scripts/with-postgres.sh provide the throw-away Redis
# and PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/apt.sh

if ! command -v chromium >/dev/null; then
  echo "Installing Chromium from Debian's packages…"
  apt_install chromium fonts-dejavu-core
fi
# The SMTP TLS tests make a throw-away certificate with openssl.
if ! command -v openssl >/dev/null; then
  apt_install openssl
fi
# The widget's reactions are emoji; without a colour emoji font the screenshots show boxes.
if ! fc-list 2>/dev/null | grep -qi "emoji"; then
  apt_install fonts-noto-color-emoji
fi

# The nginx site in deploy/ is tested in front of gunicorn: nginx unpacked into the
# virtualenv, never installed as the machine's web server.
if ! command -v nginx >/dev/null; then
  if [ ! -x .venv/nginx/usr/sbin/nginx ]; then
    echo "Unpacking nginx from Debian's packages…"
    apt_unpack .venv/nginx nginx
  fi
  export PATH="$PATH:$PWD/.venv/nginx/usr/sbin"
fi

# The single sign-on tests sign in at a real OpenID Connect provider: the certified
# oidc-provider package from the npm registry, run under Node.js on loopback.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "Installing Node.js from Debian's packages…"
  apt_install nodejs npm
fi
if [ ! -d tests/oidc/node_modules ] || [ tests/oidc/package-lock.json -nt tests/oidc/node_modules ]; then
  npm ci --prefix tests/oidc --no-audit --no-fund --loglevel=error
fi

# One pytest worker per core (pytest-xdist), each with its own databases, servers and
# browser; a test file stays on one worker, so its SQLite and PostgreSQL runs, and the
# Redis tests that empty Redis, never run beside each other. Serially the suite took 20
# minutes on two cores, in two workers 12.
exec scripts/with-redis.sh scripts/with-postgres.sh .venv/bin/python -m pytest -n auto --dist loadfile "$@"
