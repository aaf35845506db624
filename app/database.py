"""Per-connection database settings, and a queue for SQLite's writers."""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

from flask import Flask, current_app
from sqlalchemy import create_engine, event, exc
from sqlalchemy.engine import Connection, Engine

from app.extensions import db

QUEUE_KEY = "tidings.write_queue"
WIDGET_ENGINE_KEY = "tidings.widget_engine"
# A pooled connection idle for longer than this is checked before use.
IDLE_PING_SECONDS = 10.0
# How long a SQLite writer waits for the write lock before "database is locked", which
# app.errors answers with 503 and Retry-After. Renders happen before any write, so the
# longest write, an import of 2 MB (3,000 releases), holds the lock for under a second.
BUSY_TIMEOUT_MS = 5000


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers and one writer work at once; foreign keys are off by default in SQLite.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # Read through memory-mapped pages instead of a read() call per page: the widget's
    # lookups of random users touch pages all over the file.
    cursor.execute("PRAGMA mmap_size=2147418112")
    cursor.close()


def _note_checkin(_dbapi_connection: Any, record: Any) -> None:
    record.info["idle_since"] = time.monotonic()


def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    """Check a connection that sat idle in the pool, so a restarted server costs no error.

    SQLAlchemy's pool_pre_ping checks on every checkout, which on this machine's
    loopback cost a quarter of a millisecond on each widget call; a connection in
    steady use does not need it. Raising DisconnectionError makes the pool replace it.
    """
    if time.monotonic() - record.info.get("idle_since", time.monotonic()) < IDLE_PING_SECONDS:
        return
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("SELECT 1")
    except Exception as error:
        raise exc.DisconnectionError() from error
    finally:
        cursor.close()


class WriteQueue:
    """SQLite's writers, one at a time, waiting in line rather than polling.

    SQLite lets one connection write at a time; the others sleep and retry on a
    timer (busy_timeout), which under load wastes most of the time sleeping. A lock
    on a file beside the database (for the processes) and a thread lock (for the
    threads of one process) wake the next writer the moment the last one commits.
    """

    def __init__(self, database_path: str) -> None:
        self._path = database_path + ".writers"
        self._threads = threading.Lock()
        self._file: int | None = None
        self._pid = 0

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        with self._threads:
            if self._file is None or self._pid != os.getpid():  # a forked worker opens its own
                self._file = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
                self._pid = os.getpid()
            fcntl.flock(self._file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._file, fcntl.LOCK_UN)


def write_turn() -> contextlib.AbstractContextManager[None]:
    """Wait for this process's turn to write; nothing to wait for on PostgreSQL."""
    queue: WriteQueue | None = current_app.extensions[QUEUE_KEY]
    return queue.turn() if queue is not None else contextlib.nullcontext()


@contextlib.contextmanager
def writing(connection: Connection) -> Iterator[None]:
    """Write in this process's turn (SQLite has one writer) and commit what was written."""
    with write_turn():
        yield
        connection.commit()


def widget_engine() -> Engine:
    """The engine for the public hot paths (widget calls, feed validators): on PostgreSQL
    a pool of autocommit connections.

    Switching a pooled connection to autocommit and back, and resetting it on return,
    cost several driver calls per widget request; connections that stay in autocommit
    need none of it. On SQLite it is the app's engine.
    """
    engine: Engine = current_app.extensions[WIDGET_ENGINE_KEY]
    return engine


def _watch_idle(engine: Engine) -> None:
    event.listen(engine, "checkin", _note_checkin)
    event.listen(engine, "checkout", _ping_if_idle)


def init_app(app: Flask) -> None:
    with app.app_context():
        engine: Engine = db.engine
        _watch_idle(engine)
        queue = None
        widget = engine
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _tune_sqlite)
            if engine.url.database and engine.url.database != ":memory:":
                queue = WriteQueue(engine.url.database)
        else:
            widget = create_engine(
                engine.url, isolation_level="AUTOCOMMIT", pool_reset_on_return=None
            )
            _watch_idle(widget)
        app.extensions[QUEUE_KEY] = queue
        app.extensions[WIDGET_ENGINE_KEY] = widget


def dispose(app: Flask) -> None:
    """Close every pooled connection of the app (tests and forked workers)."""
    with app.app_context():
        db.engine.dispose()
        app.extensions[WIDGET_ENGINE_KEY].dispose()
