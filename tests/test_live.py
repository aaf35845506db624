"""Live delivery: the catalogue-changed signal on each database, and the live process
(gunicorn's gevent worker on ``app.live:create_live_app()``) that streams it to widgets.

The signal is checked in this process against the real servers: SQLite's stamp check,
PostgreSQL's NOTIFY and Redis's pub/sub. The live process runs as in production, a
gunicorn of its own on the test database, and is read over a socket.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import http.client
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from flask import Flask
from sqlalchemy import make_url, select
from sqlalchemy.orm import Session

from announcements import live, services
from announcements.catalogue import CatalogueCache
from announcements.models import Note, Product, utcnow
from announcements.services import Intent, NoteInput
from app.api.widget import expected_hash
from app.database import widget_engine
from app.extensions import db
from tests.factories import make_note, make_product
from tests.mailserver import free_port
from tests.redis_server import RedisServer

PROJECT_ROOT = Path(__file__).resolve().parents[1]
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))
REDIS_URL = os.environ.get("TIDINGS_TEST_REDIS_URL")
needs_redis = pytest.mark.skipif(
    not REDIS_URL, reason="Redis is not configured: run the suite with `make test`"
)
# Importing the app takes seconds on two busy cores.
START_TIMEOUT = 60.0
# What the issue promises: an open widget learns of a change within 2 s.
DELIVERY = 2.0
HEARTBEAT = 0.5


# The live process ------------------------------------------------------------------------


class LiveProcess:
    """``gunicorn -k gevent 'app.live:create_live_app()'`` on the test database."""

    def __init__(self, folder: Path, database_url: str, **settings: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.log = folder / "live.log"
        # gunicorn reads ./gunicorn.conf.py unless told of another: these take theirs from
        # the command line.
        config = folder / "gunicorn-none.conf.py"
        config.write_text("# Every setting is on the command line.\n")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        environment = {
            key: value for key, value in os.environ.items() if not key.startswith("LIVE_")
        }
        environment.pop("REDIS_URL", None)
        environment.update(
            {
                "TIDINGS_ENV": "testing",
                "SECRET_KEY": "test-secret",
                "DATABASE_URL": database_url,
                "LIVE_HEARTBEAT_SECONDS": str(HEARTBEAT),
                **settings,
            }
        )
        with self.log.open("wb") as output:
            self.popen = subprocess.Popen(  # noqa: S603 - our own gunicorn and arguments
                [
                    GUNICORN,
                    "--config",
                    str(config),
                    "--worker-class",
                    "gevent",
                    "--workers",
                    "1",
                    "--graceful-timeout",
                    "30",
                    "--bind",
                    f"127.0.0.1:{self.port}",
                    "app.live:create_live_app()",
                ],
                cwd=PROJECT_ROOT,
                env=environment,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                self.health()
                return
            except OSError:
                if self.popen.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"the live process did not start:\n{self.tail()}") from None
                time.sleep(0.2)

    def health(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/healthz", timeout=5) as answer:  # noqa: S310
            health: dict[str, Any] = json.load(answer)
            return health

    def wait_for(self, what: str, expected: Any, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.health()[what] != expected:
            assert time.monotonic() < deadline, f"{what} stayed {self.health()[what]!r}"
            time.sleep(0.1)

    def tail(self) -> str:
        return self.log.read_bytes()[-3000:].decode(errors="replace")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGQUIT)  # at once; SIGTERM is a test of its own
            self.popen.wait(timeout=20)


class Stream:
    """One event stream, read block by block (a block: the lines up to a blank one)."""

    def __init__(self, base_url: str, path: str, headers: dict[str, str] | None = None) -> None:
        host, port = base_url.removeprefix("http://").split(":")
        self.connection = http.client.HTTPConnection(host, int(port), timeout=10)
        self.connection.request("GET", path, headers=headers or {})
        self.response = self.connection.getresponse()

    def block(self, timeout: float = 10.0) -> list[str]:
        """The next block; [] once the stream ended."""
        assert self.connection.sock is not None
        self.connection.sock.settimeout(timeout)
        lines: list[str] = []
        while True:
            line = self.response.readline()
            if not line:
                return lines
            text = line.decode().rstrip("\n")
            if text == "" and lines:
                return lines
            if text:
                lines.append(text)

    def event(self, timeout: float = 10.0) -> dict[str, str]:
        """The next event's fields, past heartbeats and bare ids."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.block(max(deadline - time.monotonic(), 0.01))
            assert lines, "the stream ended"
            fields = dict(line.split(": ", 1) for line in lines if not line.startswith(":"))
            if "event" in fields:
                return fields

    def close(self) -> None:
        self.connection.close()


def _events_path(product: Product, user_id: str = "u1", **extra: str) -> str:
    query = {"user_id": user_id, "user_hash": expected_hash(product.identity_secret, user_id)}
    query.update(extra)
    return f"/api/v1/widget/{product.widget_key}/events?" + urllib.parse.urlencode(query)


@pytest.fixture(scope="module")
def live_process(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveProcess]:
    """A live process on the test database, shared by the module's tests on it."""
    process = LiveProcess(tmp_path_factory.mktemp("live"), database_url)
    yield process
    process.stop()


@pytest.fixture
def product(session: Session) -> Product:
    """A product with one published note, which requires identity (the default)."""
    product = make_product(session, allowed_origins=["https://host.example"])
    make_note(session, product, title="The first")
    return product


def _stamp(session: Session, product: Product) -> int:
    session.expire_all()
    return session.get_one(Product, product.id).catalogue_stamp


def _state(session: Session, product: Product) -> str:
    """The event id a stream should carry now, worked out here from the database."""
    stamp = _stamp(session, product)
    notes = session.scalars(select(Note).where(Note.product_id == product.id)).all()
    now = utcnow()
    moments = [note.published_at for note in notes if note.archived_at is None]
    moments += [note.expires_at for note in notes if note.archived_at is None]
    passed = [moment for moment in moments if moment is not None and moment <= now]
    return f"{stamp}.{int(max(passed).timestamp()) if passed else 0}"


def _publish(session: Session, product: Product, title: str = "Something new") -> float:
    """Publish a note through the services, as the console and the API do; when it
    committed (time.monotonic)."""
    make_note(session, session.get_one(Product, product.id), title=title)
    return time.monotonic()


def _first_note(session: Session, product: Product) -> Note:
    return session.scalars(select(Note).where(Note.product_id == product.id)).first()


# The stream ------------------------------------------------------------------------------


def test_a_stream_opens_with_the_retry_delay_and_the_catalogues_state(
    live_process: LiveProcess, session: Session, product: Product
) -> None:
    stream = Stream(live_process.url, _events_path(product))
    assert stream.response.status == 200
    assert stream.response.getheader("Content-Type") == "text/event-stream; charset=utf-8"
    assert stream.response.getheader("Cache-Control") == "no-cache"
    assert stream.response.getheader("X-Accel-Buffering") == "no"
    # An id alone: it sets the browser's Last-Event-ID and fires no event.
    assert stream.block() == ["retry: 3000", f"id: {_state(session, product)}"]
    assert stream.block(HEARTBEAT * 4) == [": ping"]
    assert live_process.health()["streams"] == 1
    stream.close()


def test_a_head_request_watches_nothing(live_process: LiveProcess, product: Product) -> None:
    """No body is read for a HEAD, so a stream watched for it would never end."""
    for _ in range(3):
        address = live_process.url + _events_path(product)
        request = urllib.request.Request(address, method="HEAD")  # noqa: S310 - loopback
        with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310 - loopback
            assert answer.status == 200
    assert live_process.health()["streams"] == 0


def test_an_allowed_origin_gets_cors_and_a_foreign_one_403(
    live_process: LiveProcess, product: Product
) -> None:
    allowed = Stream(live_process.url, _events_path(product), {"Origin": "https://host.example"})
    assert allowed.response.status == 200
    assert allowed.response.getheader("Access-Control-Allow-Origin") == "https://host.example"
    allowed.close()
    foreign = Stream(live_process.url, _events_path(product), {"Origin": "https://evil.example"})
    assert foreign.response.status == 403
    assert "may not load this product's widget" in json.load(foreign.response)["error"]
    foreign.close()


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/v1/widget/{key}/events?user_id=u1&user_hash=wrong", 401),
        ("/api/v1/widget/{key}/events", 401),
        ("/api/v1/widget/no-such-key/events?user_id=u1&user_hash=x", 404),
        ("/api/v1/widget/{key}%00/events", 404),
        ("/api/v1/widget/{key}/events?user_id=" + "u" * 300, 422),
        ("/api/v1/widget/{key}/notes", 404),
        ("/console/", 404),
    ],
)
def test_bad_requests_get_json_errors(
    live_process: LiveProcess, product: Product, path: str, status: int
) -> None:
    stream = Stream(live_process.url, path.format(key=product.widget_key))
    assert stream.response.status == status
    assert json.load(stream.response)["error"]
    stream.close()


def test_a_change_published_through_the_services_reaches_the_stream_within_2_s(
    live_process: LiveProcess, session: Session, product: Product
) -> None:
    stream = Stream(live_process.url, _events_path(product))
    stream.block()
    published = _publish(session, product)
    event = stream.event(timeout=DELIVERY * 3)
    assert time.monotonic() - published < DELIVERY
    assert event == {"id": _state(session, product), "event": "catalogue", "data": "changed"}
    # Archiving is a change too.
    services.archive(session, _first_note(session, product), by=None, now=utcnow())
    archived = time.monotonic()
    assert stream.event(timeout=DELIVERY * 3)["id"] == _state(session, product)
    assert time.monotonic() - archived < DELIVERY
    stream.close()


def test_last_event_id_resumes_where_the_client_was(
    live_process: LiveProcess, session: Session, product: Product
) -> None:
    now = _state(session, product)
    same = Stream(live_process.url, _events_path(product), {"Last-Event-ID": now})
    assert same.block() == ["retry: 3000", f"id: {now}"]
    same.close()
    behind = Stream(live_process.url, _events_path(product), {"Last-Event-ID": "1.0"})
    assert behind.block() == ["retry: 3000", f"id: {now}", "event: catalogue", "data: changed"]
    behind.close()
    # The widget may say it in the query too.
    query = Stream(live_process.url, _events_path(product, last_event_id="1.0"))
    assert query.block()[1:] == [f"id: {now}", "event: catalogue", "data: changed"]
    query.close()


def test_a_scheduled_note_going_live_is_an_event_at_its_time(
    live_process: LiveProcess, session: Session, product: Product
) -> None:
    going_live = utcnow().replace(microsecond=0) + timedelta(seconds=3)
    services.create_note(
        session,
        product,
        NoteInput(version="2.0.0", title="Soon", category="Added", body_md="Soon."),
        intent=Intent.SCHEDULE,
        publish_at=going_live,
        by=None,
        now=utcnow(),
    )
    stream = Stream(live_process.url, _events_path(product))
    before = stream.block()[1].removeprefix("id: ")
    assert not before.endswith(f".{int(going_live.timestamp())}")
    event = stream.event(timeout=10)
    arrived = utcnow()
    assert event["id"] == f"{_stamp(session, product)}.{int(going_live.timestamp())}"
    assert going_live <= arrived < going_live + timedelta(seconds=DELIVERY)
    stream.close()


def test_a_client_that_never_reads_is_dropped(
    database_url: str, tmp_path: Path, product: Product
) -> None:
    """Heartbeats every 2 ms fill a small send buffer in a few seconds; a write that then
    waits a second drops the client, and the server holds at most its buffer."""
    process = LiveProcess(
        tmp_path / "slow",
        database_url,
        LIVE_HEARTBEAT_SECONDS="0.002",
        LIVE_WRITE_TIMEOUT_SECONDS="1",
        LIVE_SEND_BUFFER_BYTES="4096",
    )
    try:
        reader = Stream(process.url, _events_path(product))  # one that reads, beside it
        silent = socket.socket()
        silent.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        silent.connect(("127.0.0.1", process.port))
        silent.sendall(f"GET {_events_path(product)} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        process.wait_for("streams", 2)
        while reader.block(timeout=1) == [": ping"] and process.health()["streams"] == 2:
            pass  # the reader keeps up while the silent one fills its buffers
        process.wait_for("streams", 1, timeout=30)
        received = b""
        silent.settimeout(5)
        while chunk := silent.recv(65536):
            received += chunk
        assert received.startswith(b"HTTP/1.1 200 OK")
        assert len(received) < 256 * 1024, "the server kept writing to a client that read nothing"
        assert reader.block() == [": ping"]
        reader.close()
        silent.close()
    finally:
        process.stop()


def test_on_sigterm_open_streams_end_and_the_process_exits_at_once(
    database_url: str, tmp_path: Path, product: Product
) -> None:
    process = LiveProcess(tmp_path / "term", database_url)
    stream = Stream(process.url, _events_path(product))
    stream.block()
    stopped = time.monotonic()
    process.popen.send_signal(signal.SIGTERM)
    while stream.block(timeout=10):
        pass  # heartbeats, until the end
    stream.close()
    process.popen.wait(timeout=15)
    # Well within the graceful timeout of 30 s, which open streams would wait out.
    assert time.monotonic() - stopped < 10, process.tail()


def test_a_stream_ends_as_soon_as_its_client_leaves(
    database_url: str, tmp_path: Path, product: Product
) -> None:
    """A worker holding as many streams as it may: once their clients leave, it answers
    again at once, not at the streams' next heartbeat (a minute here)."""
    process = LiveProcess(
        tmp_path / "left",
        database_url,
        LIVE_HEARTBEAT_SECONDS="60",
        GUNICORN_CMD_ARGS="--worker-connections 3",
    )
    try:
        streams = [Stream(process.url, _events_path(product, f"u{n}")) for n in range(3)]
        for stream in streams:
            stream.block()
            stream.close()
        left = time.monotonic()
        process.wait_for("streams", 0, timeout=2)
        assert time.monotonic() - left < 2
        again = Stream(process.url, _events_path(product))
        assert again.response.status == 200
        again.close()
    finally:
        process.stop()


def test_a_stream_that_finds_no_database_is_answered_503(tmp_path: Path) -> None:
    """A product's first stream reads the database: unreachable, the widget is told to try
    later, in JSON, never a 500."""
    for url in (
        f"postgresql+psycopg://tidings@127.0.0.1:{free_port()}/tidings",
        f"sqlite:///{tmp_path / 'no-such-folder' / 'tidings.db'}",
    ):
        process = LiveProcess(tmp_path / url.split(":")[0], url)
        try:
            stream = Stream(process.url, "/api/v1/widget/some-key/events")
            assert stream.response.status == 503
            assert stream.response.getheader("Retry-After") == "2"
            assert json.load(stream.response)["error"]
            stream.close()
        finally:
            process.stop()
        assert "Traceback" not in process.tail()


# Openings waiting for the database: on PostgreSQL an opening's query waits while a lock
# on end users is held, and holds its connection meanwhile.
OPENINGS = 20
POOL = 15  # the live process's pool: 5 connections, and 10 more while busy


def _needs_postgres(database_url: str) -> None:
    if make_url(database_url).get_backend_name() != "postgresql":
        pytest.skip("SQLite has no lock that stops a reader, so no opening can be held")


@contextlib.contextmanager
def _openings_held(
    process: LiveProcess, database_url: str, product: Product, count: int = OPENINGS
) -> Iterator[list[concurrent.futures.Future[Stream]]]:
    """``count`` streams of ``product`` opening at once while PostgreSQL holds their
    queries, until every one of them waits (for the lock, or for a connection)."""
    url = make_url(database_url).set(drivername="postgresql")
    path = _events_path(product, "waiting")
    with (
        psycopg.connect(url.render_as_string(hide_password=False)) as locker,
        concurrent.futures.ThreadPoolExecutor(count) as pool,
    ):
        locker.execute("LOCK TABLE end_user IN ACCESS EXCLUSIVE MODE")
        openings = [pool.submit(Stream, process.url, path) for _ in range(count)]
        try:
            with psycopg.connect(url.render_as_string(hide_password=False)) as watcher:
                deadline = time.monotonic() + 10
                # The pool's connections all wait for the lock.
                while watcher.execute(
                    "SELECT count(*) FROM pg_locks WHERE NOT granted "
                    "AND relation = 'end_user'::regclass"
                ).fetchone() != (min(count, POOL),):
                    assert time.monotonic() < deadline, "the openings never reached the lock"
                    time.sleep(0.05)
            yield openings
        finally:
            locker.rollback()
            for opening in openings:
                with contextlib.suppress(Exception):
                    opening.result(timeout=15).close()


def test_an_opening_that_finds_no_free_connection_is_answered_503_at_once(
    database_url: str, tmp_path: Path, session: Session
) -> None:
    """A burst of openings takes every connection: the rest are told to try again within
    seconds, rather than queued until they fail with a 500."""
    _needs_postgres(database_url)
    other = make_product(session)
    process = LiveProcess(tmp_path / "busy", database_url)
    try:
        with _openings_held(process, database_url, other) as openings:
            done, _ = concurrent.futures.wait(openings, timeout=5)
            assert len(done) == OPENINGS - POOL
            for opening in done:
                refused = opening.result()
                assert refused.response.status == 503
                assert refused.response.getheader("Retry-After") == "2"
                assert json.load(refused.response)["error"]
    finally:
        process.stop()
    assert "Traceback" not in process.tail()


def test_changes_reach_the_streams_while_openings_hold_every_connection(
    database_url: str, tmp_path: Path, session: Session, product: Product
) -> None:
    """The listener reads with a connection of its own."""
    _needs_postgres(database_url)
    other = make_product(session)
    process = LiveProcess(tmp_path / "busy", database_url)
    try:
        stream = Stream(process.url, _events_path(product))
        stream.block()
        with _openings_held(process, database_url, other):
            published = _publish(session, product)
            assert stream.event(timeout=DELIVERY * 3)["id"] == _state(session, product)
            assert time.monotonic() - published < DELIVERY
        stream.close()
    finally:
        process.stop()


def test_a_product_with_streams_opens_more_without_the_database(
    live_process: LiveProcess, database_url: str, session: Session, product: Product
) -> None:
    """Its catalogue is the one the listener keeps: a stream opens at once while the
    database would keep any query waiting, with the same identity and origin checks."""
    _needs_postgres(database_url)
    other = make_product(session)
    first = Stream(live_process.url, _events_path(product))
    state = first.block()[1]
    with _openings_held(live_process, database_url, other, count=1):
        opened = time.monotonic()
        second = Stream(live_process.url, _events_path(product, "u2"))
        assert second.response.status == 200
        assert second.block()[1] == state
        assert time.monotonic() - opened < 1
        wrong = Stream(live_process.url, _events_path(product, user_hash="wrong"))
        assert wrong.response.status == 401
        foreign = Stream(
            live_process.url, _events_path(product), {"Origin": "https://evil.example"}
        )
        assert foreign.response.status == 403
        for stream in (second, wrong, foreign):
            stream.close()
    first.close()


def test_redis_stopped_at_runtime_the_live_process_checks_stamps_until_it_is_back(
    app_factory: Any, database_url: str, tmp_path: Path, product: Product, redis_server: RedisServer
) -> None:
    process = LiveProcess(tmp_path / "live", database_url, REDIS_URL=redis_server.url)
    redis_app = app_factory(REDIS_URL=redis_server.url)
    try:
        process.wait_for("signal", "redis")
        stream = Stream(process.url, _events_path(product))
        stream.block()
        with redis_app.app_context():
            published = _publish(db.session, product)
            stream.event(timeout=DELIVERY * 3)
            assert time.monotonic() - published < DELIVERY
            redis_server.stop()
            process.wait_for("signal", "stamps")
            published = _publish(db.session, product, "While Redis is down")
            assert stream.event(timeout=DELIVERY * 3)["id"] == _state(db.session, product)
            assert time.monotonic() - published < DELIVERY
            redis_server.start()
            process.wait_for("signal", "redis")
            published = _publish(db.session, product, "Redis is back")
            assert stream.event(timeout=DELIVERY * 3)["id"] == _state(db.session, product)
            assert time.monotonic() - published < DELIVERY
            # The stamps Redis lost are given back to it, for the shared cache.
            stamp = _stamp(db.session, product)
        assert (
            redis.Redis.from_url(redis_server.url).zscore(live.STAMPS_KEY, str(product.id)) == stamp
        )
        stream.close()
    finally:
        process.stop()
    assert process.tail().count("cannot listen on Redis") == 1


# The signal, on each database --------------------------------------------------------------


class Listening:
    """A Listener in this process (threads, not gevent) on the test database, watching
    one product."""

    def __init__(self, app: Flask, product: Product, redis_url: str | None = None) -> None:
        with app.app_context():
            engine = widget_engine()
            cache = CatalogueCache(app.config["BASE_URL"])
            with engine.connect() as connection:
                catalogue = cache.get(connection, product.widget_key, 0)
        assert catalogue is not None
        self.listener = live.Listener(engine, cache, redis_url)
        self.listener.start()
        self.watch = self.listener.watch(product.widget_key, catalogue)

    def wait_listening(self) -> None:
        deadline = time.monotonic() + 10
        while not self.listener.listening:
            assert time.monotonic() < deadline, "the listener never listened"
            time.sleep(0.05)

    def stop(self) -> None:
        self.watch.close()
        self.listener.stop()


def test_the_listener_learns_of_a_commit_on_either_database(
    app: Flask, session: Session, product: Product
) -> None:
    """SQLite: the stamp check, once a second. PostgreSQL: NOTIFY."""
    listening = Listening(app, product)
    try:
        if db.engine.dialect.name == "postgresql":
            listening.wait_listening()
        assert not listening.watch.wait(1.2)
        published = _publish(session, product)
        assert listening.watch.wait(DELIVERY)
        assert time.monotonic() - published < DELIVERY
        assert listening.watch.event_id() == _state(session, product)
    finally:
        listening.stop()


def test_a_stream_that_wakes_late_gets_the_latest_state_once(
    app: Flask, session: Session, product: Product
) -> None:
    """Nothing queues for a stream: two changes while it was busy are one wake-up, to the
    state after both."""
    listening = Listening(app, product)
    try:
        if db.engine.dialect.name == "postgresql":
            listening.wait_listening()
        _publish(session, product, "One")
        _publish(session, product, "Two")
        time.sleep(DELIVERY)
        assert listening.watch.wait(0)
        assert listening.watch.event_id() == _state(session, product)
        assert not listening.watch.wait(1.2)
    finally:
        listening.stop()


@needs_redis
def test_the_listener_learns_of_a_commit_through_redis(app_factory: Any, product: Product) -> None:
    redis_app = app_factory(REDIS_URL=REDIS_URL)
    listening = Listening(redis_app, product, REDIS_URL)
    try:
        listening.wait_listening()
        with redis_app.app_context():
            published = _publish(db.session, product)
            assert listening.watch.wait(DELIVERY)
            assert time.monotonic() - published < DELIVERY
            assert listening.watch.event_id() == _state(db.session, product)
    finally:
        listening.stop()


def test_postgres_notifies_on_commit_only(app: Flask, session: Session, product: Product) -> None:
    if db.engine.dialect.name != "postgresql":
        pytest.skip("NOTIFY is PostgreSQL's")
    url = make_url(app.config["SQLALCHEMY_DATABASE_URI"]).set(drivername="postgresql")
    with psycopg.connect(url.render_as_string(hide_password=False), autocommit=True) as listener:
        listener.execute(f"LISTEN {live.PG_CHANNEL}")
        note = _first_note(session, product)
        note.title = "Rolled back"
        session.flush()
        session.rollback()
        assert list(listener.notifies(timeout=0.5)) == []
        note.title = "Committed"
        session.commit()
        (notify,) = listener.notifies(timeout=2, stop_after=1)
        assert notify.payload == str(product.id)
        # A commit that changes nothing a widget shows announces nothing.
        note.emailed_at = utcnow()
        session.commit()
        assert list(listener.notifies(timeout=0.5)) == []


@needs_redis
def test_with_redis_a_commit_publishes_the_product_and_its_newest_stamp(
    app_factory: Any, product: Product
) -> None:
    assert REDIS_URL
    client = redis.Redis.from_url(REDIS_URL)
    subscriber = client.pubsub(ignore_subscribe_messages=True)
    subscriber.subscribe(live.CHANNEL)
    redis_app = app_factory(REDIS_URL=REDIS_URL)
    with redis_app.app_context():
        _publish(db.session, product)
        stamp = _stamp(db.session, product)
    # The first call reads the subscription's confirmation, and answers None for it.
    messages = [subscriber.get_message(timeout=1) for _ in range(2)]
    assert [message["data"] for message in messages if message] == [str(product.id).encode()]
    assert client.zscore(live.STAMPS_KEY, str(product.id)) == stamp
    # A commit that finished after a later one never moves the stamp back.
    live.Publisher(REDIS_URL).announce({product.id: stamp - 1})
    assert client.zscore(live.STAMPS_KEY, str(product.id)) == stamp
    subscriber.close()


def test_redis_down_never_fails_a_commit(
    app_factory: Any, product: Product, caplog: pytest.LogCaptureFixture
) -> None:
    redis_app = app_factory(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    with redis_app.app_context(), caplog.at_level(logging.WARNING, "announcements.live"):
        _publish(db.session, product, title="Committed all the same")
        assert db.session.scalar(select(Note.id).where(Note.title == "Committed all the same"))
    assert "Could not announce changes of products" in caplog.text
