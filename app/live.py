"""The live process: open widgets' event streams, served apart from the app.

``gunicorn -k gevent 'app.live:create_live_app()'`` (``flask live`` runs it for
development) serves only ``GET /api/v1/widget/<key>/events`` and ``/healthz``. Each open
stream tells one widget when its product's catalogue changed (:mod:`announcements.live`
learns it), so the widget asks for its notes again, by the conditional GET it already
makes, rather than at its next poll.

Why gevent: an open stream spends its life waiting, and gevent makes that wait a greenlet
of a few kilobytes rather than one of the app's threads; the stream is served by the same
Flask code, the same identity and origin checks and the same database layer as the widget
API (psycopg 3 waits through gevent's patched ``select`` when it is imported after the
patching, which gunicorn's gevent worker does before it loads the app), and by gunicorn's
own worker class, so there is no second server to run. Memory: 22 KB a stream (5,000
streams on SQLite took the worker from 130 MB to 240 MB of RSS), where a bare gevent
event stream under the same gunicorn takes 14 KB; 10,000 streams fit in a process of
well under half a gigabyte.

Bounded: a stream queues nothing (a slow reader gets the latest state once), its socket's
send buffer is capped and a write that makes no progress for LIVE_WRITE_TIMEOUT_SECONDS
drops the client, and gunicorn's ``worker_connections`` caps the streams of a process.
On SIGTERM every stream ends at once, so the worker exits without waiting out its
graceful timeout, and browsers reconnect to another live process.
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
from flask import Blueprint, Flask, Response, current_app, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from announcements import live
from announcements.catalogue import CatalogueCache
from app import database, errors
from app.api import widget
from app.base import make_flask
from app.database import widget_engine
from app.extensions import db

LISTENER_KEY = "tidings.live_listener"
# Streams one process holds at most (gunicorn's worker_connections under `flask live`).
DEVELOPMENT_CONNECTIONS = 10_000

# Named "api" so that the widget API's own checks recognise the route as a widget's
# (api.widget_events): the key that can name nothing, and CORS for allowed origins.
bp = Blueprint("api", __name__, url_prefix="/api/v1")
bp.url_value_preprocessor(widget._nameable)
bp.before_request(widget._no_origin_yet)
bp.after_request(widget._cors)


def _listener() -> live.Listener:
    listener: live.Listener = current_app.extensions[LISTENER_KEY]
    return listener


@bp.get("/widget/<widget_key>/events", provide_automatic_options=False)
def widget_events(widget_key: str) -> ResponseReturnValue:
    """The product's catalogue changes, as server-sent events, for one end user's widget:
    the same identity and origin rules as the notes, and nothing about the user."""
    user_id = widget._user_id(request.args.get("user_id"))
    with widget_engine().connect() as connection:
        catalogue, _ = widget._load(connection, widget_key, None)
    widget._check_identity(catalogue, user_id, request.args.get("user_hash"))
    last_id = request.headers.get("Last-Event-ID") or request.args.get("last_event_id")
    settings = current_app.config
    _bound(request.environ)
    stream = _stream(
        _listener().watch(widget_key, catalogue),
        last_id,
        heartbeat=settings["LIVE_HEARTBEAT_SECONDS"],
        retry_ms=settings["LIVE_RETRY_MS"],
    )
    response = Response(stream, mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    return response


def _event(event_id: str) -> str:
    return f"id: {event_id}\nevent: catalogue\ndata: changed\n\n"


def _stream(
    watch: live.Watch, last_id: str | None, heartbeat: float, retry_ms: int
) -> Iterator[bytes]:
    """The stream's lines: the retry delay, then the catalogue's state (as an event when
    the client last saw another, else as an id alone, which sets the browser's
    Last-Event-ID without an event), then an event whenever it moves, and a comment when
    nothing happened for ``heartbeat`` seconds."""
    try:
        sent = watch.event_id()
        opening = _event(sent) if last_id is not None and last_id != sent else f"id: {sent}\n\n"
        yield f"retry: {retry_ms}\n{opening}".encode()
        while not watch.stopping:
            if not watch.wait(heartbeat):
                yield b": ping\n\n"
                continue
            now = watch.event_id()
            if now != sent and not watch.stopping:
                sent = now
                yield _event(sent).encode()
    finally:
        watch.close()


def _bound(environ: dict[str, Any]) -> None:
    """Cap the stream's send buffer and how long a write may wait (gunicorn's socket)."""
    client = environ.get("gunicorn.socket")
    if client is None:
        return
    settings = current_app.config
    client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, settings["LIVE_SEND_BUFFER_BYTES"])
    client.settimeout(settings["LIVE_WRITE_TIMEOUT_SECONDS"])


def healthz() -> ResponseReturnValue:
    """Liveness, the streams open and whether changes reach this process by a listener
    (Redis, PostgreSQL) or by its own stamp checks."""
    listener = _listener()
    return {
        "status": "stopping" if listener.stopping else "ok",
        "streams": listener.streams(),
        "signal": listener.mode if listener.listening else "stamps",
    }


def _http_error(error: HTTPException) -> ResponseReturnValue:
    """Every other address and method, in JSON: the live process serves no pages."""
    return {"error": error.description or error.name}, error.code or 500


def _wait_through_gevent() -> None:
    """Make psycopg wait for PostgreSQL through gevent when gevent patched the process.

    psycopg chooses how to wait when it is imported: in C, unless gevent had patched
    ``select`` by then. Imported earlier (gunicorn's config file imports the app in the
    master, before the worker patches), every query would stop every stream while it
    waits; the selector psycopg would have chosen is chosen again here.
    """
    monkey = sys.modules.get("gevent.monkey")
    if monkey is None or not monkey.is_module_patched("select"):
        return
    from psycopg import waiting

    waiting.DefaultSelector = selectors.DefaultSelector  # type: ignore[misc]
    waiting.wait = waiting.wait_selector


def _end_streams_on_sigterm(listener: live.Listener) -> None:
    """On SIGTERM, end every stream as well as what gunicorn's worker does: it stops
    accepting and waits for open connections, which streams would keep open until its
    graceful timeout. The handler spawns the work: a signal handler must not block."""
    import gevent

    previous = signal.getsignal(signal.SIGTERM)

    def stop(signum: int, frame: Any) -> None:
        gevent.spawn(listener.stop)
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, stop)


def create_live_app(
    test_config: dict[str, Any] | None = None, *, instance_path: Path | None = None
) -> Flask:
    """The live process's app: the event streams and /healthz, the listener started."""
    _wait_through_gevent()
    app = make_flask(__name__, test_config, instance_path)
    db.init_app(app)
    database.init_app(app)
    errors.init_app(app)
    app.register_error_handler(HTTPException, _http_error)
    cache = CatalogueCache(app.config["BASE_URL"])
    app.extensions[widget.CACHE_KEY] = cache
    app.register_blueprint(bp)
    app.add_url_rule("/healthz", "healthz", healthz)
    with app.app_context():
        listener = live.Listener(widget_engine(), cache, app.config["REDIS_URL"])
    app.extensions[LISTENER_KEY] = listener
    listener.start()
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched("socket"):
        _end_streams_on_sigterm(listener)
    return app


@click.command("live")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5001, show_default=True, type=int)
@click.option(
    "--connections",
    default=DEVELOPMENT_CONNECTIONS,
    show_default=True,
    type=click.IntRange(1),
    help="Streams the process holds at most.",
)
def live_command(host: str, port: int, connections: int) -> None:
    """Serve open widgets' event streams (gunicorn's gevent worker) for development.

    It starts gunicorn afresh rather than inside this process: psycopg, imported here
    already, would wait for the database without letting other streams run."""
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "--worker-class",
        "gevent",
        "--workers",
        "1",
        "--worker-connections",
        str(connections),
        "--bind",
        f"{host}:{port}",
        "app.live:create_live_app()",
    ]
    # gunicorn.conf.py's settings for a live process, where the flags above say nothing.
    environment = {**os.environ, "TIDINGS_PROCESS": "live"}
    os.execve(sys.executable, argv, environment)  # noqa: S606 - our interpreter, fixed arguments


def init_app(app: Flask) -> None:
    """Announce the catalogue changes this app commits, and add ``flask live``."""
    with app.app_context():
        live.publish_commits(db.engine, app.config["REDIS_URL"])
    app.cli.add_command(live_command)
