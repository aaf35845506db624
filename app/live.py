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
own worker class, so there is no second server to run. Memory: about 23 KiB per open
stream (10,000 streams: worker RSS 147 → 372 MiB), 1.6× a bare gevent SSE stream
(14.8 KiB), measured by ``scripts/bench.sh live``; the largest part is the greenlet's
saved stack while it waits (5.2 KB against 4.0 KB bare). Watching the client's socket
while waiting (below) added about 1 KiB to the 22 KiB measured before it.

Opening a stream needs the product's catalogue: for a product with streams open already
it is the one the listener keeps current, with no query, so a burst of reconnecting
widgets costs the database one query per product. The first stream of a product loads
it, and waits at most OPEN_WAIT_SECONDS for one of the pool's connections: past that,
and when the database cannot be reached, it is answered 503 with Retry-After rather than
queued. The listener reads with a connection of its own, so openings never delay a
change reaching the streams.

Bounded: a stream queues nothing (a slow reader gets the latest state once), its socket's
send buffer is capped and a write that makes no progress for LIVE_WRITE_TIMEOUT_SECONDS
drops the client, and gunicorn's ``worker_connections`` caps the streams of a process. A
stream ends as soon as its client leaves, rather than at its next write: while it waits
it also watches its socket, which an event-stream client never writes to again, so the
socket turning readable means the client closed it. On SIGTERM every stream ends at
once, so the worker exits without waiting out its graceful timeout, and browsers
reconnect to another live process.
"""

from __future__ import annotations

import contextlib
import logging
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
from sqlalchemy import Engine, create_engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from announcements import live
from announcements.catalogue import Catalogue, CatalogueCache
from app import database, errors
from app.api import widget
from app.base import make_flask
from app.database import widget_engine
from app.extensions import db

log = logging.getLogger(__name__)

LISTENER_KEY = "tidings.live_listener"
ENGINE_KEY = "tidings.live_engine"
# How long a stream's opening waits for one of the pool's connections (5, and 10 more
# while busy) before it is answered 503: SQLAlchemy's default, 30 s, let a burst of 20,000
# openings queue for minutes and answer thousands of them 500.
OPEN_WAIT_SECONDS = 2.0
# Streams one process holds at most (gunicorn's worker_connections under `flask live`).
DEVELOPMENT_CONNECTIONS = 10_000

# Named "api" so that the widget API's own checks recognise the route as a widget's
# (api.widget_events): the key that can name nothing, and CORS for allowed origins.
bp = Blueprint("api", __name__, url_prefix="/api/v1")
bp.url_value_preprocessor(widget.refuse_unnameable)
bp.before_request(widget.no_origin_yet)
bp.after_request(widget.cors)


def _listener() -> live.Listener:
    listener: live.Listener = current_app.extensions[LISTENER_KEY]
    return listener


@bp.get("/widget/<widget_key>/events", provide_automatic_options=False)
def widget_events(widget_key: str) -> ResponseReturnValue:
    """The product's catalogue changes, as server-sent events, for one end user's widget:
    the same identity and origin rules as the notes, and nothing about the user."""
    user_id = widget.parse_user_id(request.args.get("user_id"))
    catalogue = _catalogue(widget_key)
    widget.check_identity(catalogue, user_id, request.args.get("user_hash"))
    if request.method == "HEAD":
        # No body will be read, so no stream is watched: its end would never come.
        return Response(mimetype="text/event-stream")
    last_id = request.headers.get("Last-Event-ID") or request.args.get("last_event_id")
    settings = current_app.config
    client = request.environ.get("gunicorn.socket")
    _bound(client)
    stream = _stream(
        _listener().watch(widget_key, catalogue),
        last_id,
        heartbeat=settings["LIVE_HEARTBEAT_SECONDS"],
        retry_ms=settings["LIVE_RETRY_MS"],
        client=client,
    )
    response = Response(stream, mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    return response


def _catalogue(widget_key: str) -> Catalogue:
    """The product's catalogue, the origin checked: the listener's, kept current, when the
    product has streams open here, else from the database (NotFound for no product)."""
    catalogue = _listener().catalogue(widget_key)
    if catalogue is not None:
        widget.admit(catalogue)
        return catalogue
    engine: Engine = current_app.extensions[ENGINE_KEY]
    with engine.connect() as connection:
        catalogue, _ = widget.load_catalogue(connection, widget_key, None)
    return catalogue


def _database_unavailable(error: Exception) -> ResponseReturnValue:
    """A stream that could not be opened for want of the database: no connection free
    within OPEN_WAIT_SECONDS (a burst of openings holds them all), or none to be had.

    EventSource does not retry an answer that is not a stream; the widget polls and opens
    the stream again after its next notes call."""
    log.warning("No stream opened for %r: %s", request.path, error)
    return (
        {"error": "The live updates are busy. Try again in a moment."},
        503,
        {"Retry-After": str(errors.RETRY_AFTER_SECONDS)},
    )


def _event(event_id: str) -> str:
    return f"id: {event_id}\nevent: catalogue\ndata: changed\n\n"


def _stream(
    watch: live.Watch,
    last_id: str | None,
    heartbeat: float,
    retry_ms: int,
    client: socket.socket | None,
) -> Iterator[bytes]:
    """The stream's lines: the retry delay, then the catalogue's state (as an event when
    the client last saw another, else as an id alone, which sets the browser's
    Last-Event-ID without an event), then an event whenever it moves, and a comment when
    nothing happened for ``heartbeat`` seconds; until the process stops or the client
    leaves."""
    try:
        sent = watch.event_id()
        opening = _event(sent) if last_id is not None and last_id != sent else f"id: {sent}\n\n"
        yield f"retry: {retry_ms}\n{opening}".encode()
        while not watch.stopping:
            with _ended_if_readable(client):
                moved = watch.wait(heartbeat)
            if not moved:
                yield b": ping\n\n"
                continue
            now = watch.event_id()
            if now != sent and not watch.stopping:
                sent = now
                yield _event(sent).encode()
    except _ClientLeft:
        return
    finally:
        watch.close()


class _ClientLeft(BaseException):
    """Thrown into a waiting stream whose client closed its connection. A BaseException,
    as gevent's Timeout is, so that no handler for errors takes it for one."""


@contextlib.contextmanager
def _ended_if_readable(client: socket.socket | None) -> Iterator[None]:
    """Throw _ClientLeft into the stream's greenlet if ``client`` turns readable while it
    waits inside the block: an event-stream client sends nothing after its request, so
    that is its end (or a reset). gevent's Timeout ends a wait the same way. Without
    gunicorn's gevent worker (no socket), nothing is watched."""
    if client is None or not _patched("socket"):
        yield
        return
    import gevent

    watcher = gevent.get_hub().loop.io(client.fileno(), 1)  # 1: readable
    watcher.start(gevent.getcurrent().throw, _ClientLeft)
    try:
        yield
    finally:
        watcher.close()


def _patched(module: str) -> bool:
    """Whether gevent patched the standard library's ``module`` in this process."""
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and bool(monkey.is_module_patched(module))


def _bound(client: socket.socket | None) -> None:
    """Cap the stream's send buffer and how long a write may wait (gunicorn's socket)."""
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
    if not _patched("select"):
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
    app.register_error_handler(PoolTimeout, _database_unavailable)
    app.register_error_handler(OperationalError, _database_unavailable)
    app.add_url_rule("/healthz", "healthz", healthz)
    with app.app_context():
        engine = widget_engine()
    app.extensions[ENGINE_KEY] = _engine_apart(engine, pool_timeout=OPEN_WAIT_SECONDS)
    # The listener's own connection: on the streams' pool, a change found every connection
    # taken by a burst of openings, and reached none of 9,760 streams within 10 s.
    listener = live.Listener(
        _engine_apart(engine, pool_size=1, max_overflow=0), cache, app.config["REDIS_URL"]
    )
    app.extensions[LISTENER_KEY] = listener
    listener.start()
    if _patched("socket"):
        _end_streams_on_sigterm(listener)
    return app


def _engine_apart(engine: Engine, **pool: Any) -> Engine:
    """An engine on ``engine``'s database with a pool of its own, shaped by ``pool``: it
    only reads, in autocommit, and checks a connection before each use, as a restarted
    server would otherwise fail the next opening or change."""
    return create_engine(engine.url, isolation_level="AUTOCOMMIT", pool_pre_ping=True, **pool)


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
