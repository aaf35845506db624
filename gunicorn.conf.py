"""gunicorn's settings for Tidings; gunicorn reads ./gunicorn.conf.py by itself, and flags
given on its command line win over what is set here.

Two kinds of process, chosen by ``TIDINGS_PROCESS``:

- ``web`` (the default): ``gunicorn`` serves ``wsgi:app`` with threads (gthread), a
  process per core.
- ``live``: ``TIDINGS_PROCESS=live gunicorn`` serves ``app.live:create_live_app()``, the
  widgets' event streams, with gevent: each open stream is a greenlet, never one of the
  web's threads, up to ``LIVE_CONNECTIONS`` per process.

Both log through app.logs in ``LOG_FORMAT`` (JSON lines in production): gunicorn's own
lines and its access line, which carries the request's id and its fields.
``WEB_CONCURRENCY`` sets the number of processes (the default: one per core this
process may run on).
"""

from __future__ import annotations

import os
from pathlib import Path

PROCESS = os.environ.get("TIDINGS_PROCESS") or "web"
if PROCESS == "live":
    # gevent patches the standard library before the app, imported below, imports ssl,
    # threading and psycopg; patched only later in the worker, as gunicorn would, psycopg
    # would wait for PostgreSQL in C and stop every stream, and gevent warns of ssl.
    from gevent import monkey

    monkey.patch_all()

# Module-level names are read as settings, and "config" is one: none of these may be.
from app import logs  # noqa: E402 - after gevent's patching
from app.config import ConfigError  # noqa: E402
from app.config import load as load_settings  # noqa: E402

if PROCESS not in ("web", "live"):
    raise ConfigError(f"TIDINGS_PROCESS must be web or live, not {PROCESS!r}")
# The app's own reading of the environment, so a bad setting stops gunicorn here, with
# the app's message, rather than in every worker it starts.
SETTINGS = load_settings(str(Path(__file__).resolve().parent / "instance"), None)
CORES = len(os.sched_getaffinity(0))

wsgi_app = "wsgi:app" if PROCESS == "web" else "app.live:create_live_app()"
proc_name = f"tidings-{PROCESS}"
# Behind nginx on the same machine; nginx's site (deploy/nginx/tidings.conf) proxies here.
bind = ["127.0.0.1:8000" if PROCESS == "web" else "127.0.0.1:8001"]
workers = int(os.environ.get("WEB_CONCURRENCY") or CORES)

if PROCESS == "web":
    worker_class = "gthread"
    # The widget benchmark's setting (bench/widget_bench.py). A request waits on the
    # database for much of its time, so with PostgreSQL on another machine more threads
    # keep the cores busy: try 4.
    threads = 2
    # After SIGTERM a worker stops accepting and finishes the requests it has for up to
    # this long; the longest, an import of a 2 MB changelog, takes a few seconds.
    graceful_timeout = 30
else:
    worker_class = "gevent"
    # Open streams a process holds; the next connections wait in the listen queue. The
    # systemd unit raises the open-file limit above it.
    worker_connections = int(os.environ.get("LIVE_CONNECTIONS") or 10_000)
    # On SIGTERM the live app ends its streams at once (browsers reconnect elsewhere).
    graceful_timeout = 10

# A worker that has not told the master it is alive for this long is killed and replaced.
timeout = 30
# Longer than nginx keeps an idle upstream connection (60 s), so gunicorn never closes one
# nginx is about to reuse, which nginx would answer with a 502.
keepalive = 65

# With logconfig_dict set gunicorn writes its access line too, to the logger
# gunicorn.access, which sends it (and gunicorn.error) to the root logger's one handler,
# app.logs's; each worker's app sets it up again when it starts, in the same format.
access_log_format = '"%(m)s %(U)s" %(s)s %(B)s %(M)sms %({x-request-id}o)s'
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "root": {"level": "INFO", "handlers": ["tidings"]},
    "loggers": {
        # No level here: gunicorn's --log-level stays in force for its own lines.
        "gunicorn.error": {"handlers": [], "propagate": True},
        "gunicorn.access": {"handlers": [], "propagate": True},
    },
    "handlers": {"tidings": {"()": logs.handler, "log_format": SETTINGS["LOG_FORMAT"]}},
    "formatters": {},
}
