"""Redis (REDIS_URL) going away while Tidings runs, with a real redis-server each test
starts, stops and starts again on a port of its own: the web goes on serving and says
so (its log, /readyz), rate limits count in memory until Redis is back, no read receipt
or e-mail is lost, and a worker whose queue is on Redis lives through Redis restarting,
sending by its own minute meanwhile. SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from flask import Flask
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from announcements.models import (
    Frequency,
    OutboxMessage,
    OutboxStatus,
    ReadReceipt,
    Subscriber,
    SubscriberStatus,
    WorkerHeartbeat,
    utcnow,
)
from app.extensions import db
from app.mail.jobs import JOBS_KEY, Jobs
from tests.conftest import AuthActions, csrf_token
from tests.factories import make_member, make_note, make_product
from tests.mailserver import SmtpServer
from tests.redis_server import REDIS_SERVER, RedisServer
from tests.test_widget_api import Widget
from tests.worker import launch, wait_for

pytestmark = pytest.mark.skipif(
    REDIS_SERVER is None,
    reason="redis-server is not installed: `apt-get install redis-server` (make test does)",
)


def _on_redis(app_factory: Callable[..., Flask], server: RedisServer, **overrides: object) -> Flask:
    """An app with REDIS_URL set, for the job queue and the rate limits alike."""
    return app_factory(REDIS_URL=server.url, RATELIMIT_STORAGE_URI=server.url, **overrides)


def _login(client, email: str) -> int:
    form = {"email": email, "password": "wrong password", "csrf_token": csrf_token(client)}
    return client.post("/console/login", data=form).status_code


def _messages(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(record.getMessage() for record in caplog.records)


# The web --------------------------------------------------------------------------------


def test_rate_limits_count_in_memory_while_redis_is_away_and_in_redis_again_after(
    app_factory: Callable[..., Flask],
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="flask-limiter")
    app = _on_redis(
        app_factory, redis_server, RATELIMIT_ENABLED=True, RATELIMIT_LOGIN="3 per minute"
    )
    client = app.test_client()
    counted = redis.Redis.from_url(redis_server.url)
    assert _login(client, "a@example.com") == 422
    assert counted.dbsize() > 0, "the attempt was counted in Redis"

    redis_server.stop()
    # The same limit, counted afresh in this process: three more wrong passwords, then no.
    answers = [_login(client, f"b{n}@example.com") for n in range(4)]
    assert answers == [422, 422, 422, 429]
    assert "Rate limit storage unreachable - falling back to in-memory storage" in _messages(caplog)

    redis_server.start()  # empty: a Redis with no persistence forgets its counts
    # Flask-Limiter asks Redis again after 1, 2, 4 … 32 s, on a limited request.
    deadline = time.monotonic() + 40
    while _login(client, "c@example.com") == 429:
        assert time.monotonic() < deadline, "the limits never went back to Redis"
        time.sleep(0.25)
    assert "Rate limit storage recovered" in _messages(caplog)
    assert counted.dbsize() > 0, "counted in Redis again"


def test_without_redis_the_web_serves_keeps_receipts_and_readyz_says_so(
    app_factory: Callable[..., Flask],
    session: Session,
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = _on_redis(app_factory, redis_server, RATELIMIT_ENABLED=True)
    client = app.test_client()
    owner = make_member(session)
    product = make_product(session, owner=owner, grace_releases=20)
    note = make_note(session, product)
    at = utcnow()
    session.add(WorkerHeartbeat(name="host:1:1", started_at=at, beat_at=at))
    session.commit()
    ready = client.get("/readyz")
    assert (ready.status_code, ready.get_json()["redis"]) == (200, "ok")

    redis_server.stop()
    started = time.monotonic()
    ready = client.get("/readyz")
    assert ready.status_code == 503
    body = ready.get_json()
    assert (body["redis"], body["failing"], body["database"]) == ("unreachable", ["redis"], "ok")
    assert "goes on serving" in body["redis_reason"]
    assert body["worker"]["alive"] is True
    assert "could not reach the job queue" in _messages(caplog)

    widget = Widget(client, product)
    assert widget.ids() == [note.id]
    assert widget.read([note.id]).status_code == 204
    session.rollback()
    assert session.scalar(select(func.count()).select_from(ReadReceipt)) == 1
    assert widget.unread() == 0
    # An editor signs in (rate limited) and publishes; the wake-up the publish asks for
    # cannot be queued, and the message waits in the outbox for the worker's minute.
    session.add(
        Subscriber(
            product_id=product.id,
            email="ann@example.com",
            status=SubscriberStatus.CONFIRMED,
            frequency=Frequency.EVERY,
            categories=[],
        )
    )
    session.commit()
    assert AuthActions(client).login(owner.email).status_code == 302
    form = {
        "csrf_token": csrf_token(client),
        "version": "1.1.0",
        "title": "Dark mode",
        "category": "Added",
        "body_md": "Now **everywhere**.",
        "email_subscribers": "y",
        "intent": "publish",
    }
    assert client.post(f"/console/p/{product.slug}/notes/new", data=form).status_code == 302
    assert "could not reach the job queue; mail goes out on the next sweep" in _messages(caplog)
    assert time.monotonic() - started < 5, "Redis away slowed the answers down"
    session.rollback()
    waiting = select(func.count()).where(OutboxMessage.status == OutboxStatus.QUEUED)
    assert session.scalar(waiting) == 1

    redis_server.start()
    ready = client.get("/readyz")  # on the pool's connections to the Redis that died
    assert (ready.status_code, ready.get_json()["redis"]) == (200, "ok")
    assert "failing" not in ready.get_json()


def test_a_redis_that_hangs_holds_a_request_for_seconds_not_forever(
    app_factory: Callable[..., Flask], session: Session, redis_server: RedisServer
) -> None:
    """SIGSTOP: the kernel still takes connections, and nothing ever answers."""
    app = _on_redis(app_factory, redis_server, RATELIMIT_ENABLED=True)
    client = app.test_client()
    token = csrf_token(client)
    assert redis_server.process is not None
    redis_server.process.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        form = {"email": "a@example.com", "password": "wrong password", "csrf_token": token}
        assert client.post("/console/login", data=form).status_code == 422
        limited = time.monotonic() - started
        started = time.monotonic()
        assert client.get("/readyz").status_code == 503
        ready = time.monotonic() - started
    finally:
        redis_server.process.send_signal(signal.SIGCONT)
    # Two waits of a second: the fall to memory, then Flask-Limiter's first look back.
    assert limited < 3.5, f"a rate-limited request waited {limited:.1f} s"
    assert ready < 4.5, f"/readyz waited {ready:.1f} s"


# The worker -----------------------------------------------------------------------------

READERS = 20


def _readers(session: Session, product_id: int) -> set[str]:
    now = utcnow()
    rows = [
        {
            "product_id": product_id,
            "email": f"reader{number}@example.com",
            "status": SubscriberStatus.CONFIRMED,
            "frequency": Frequency.EVERY,
            "categories": [],
            "hard_bounces": 0,
            "created_at": now,
        }
        for number in range(READERS)
    ]
    session.execute(insert(Subscriber), rows)
    session.commit()
    return {row["email"] for row in rows}


def test_a_worker_on_redis_lives_through_redis_going_and_coming_back_and_loses_no_mail(
    app_factory: Callable[..., Flask],
    session: Session,
    redis_server: RedisServer,
    database_url: str,
    tmp_path: Path,
) -> None:
    """Four notes, each mailed to every reader: the first while Redis has not started
    (the worker starts anyway and sends by itself), the second once it answers (the queue
    brings the wake-up), the third after it was killed (the worker's own minute), the
    fourth after it came back empty (the consumer reads again, never restarted)."""
    jobs: Jobs = _on_redis(app_factory, redis_server).extensions[JOBS_KEY]
    redis_server.stop()
    log = tmp_path / "worker.log"
    with SmtpServer() as smtp:
        product = make_product(session)
        readers = _readers(session, product.id)
        worker = launch(
            smtp.url,
            log,
            database_url=database_url,
            instance=tmp_path / "worker-instance",
            REDIS_URL=redis_server.url,
            FLASK_WORKER_HEARTBEAT_EVERY="0.25",
        )
        try:

            def all_sent(notes: int) -> Callable[[], bool]:
                return lambda: len(smtp.recorder.received) >= notes * READERS

            def publish_and_wake(number: int) -> None:
                make_note(session, product, is_important=True, version=f"1.{number}.0")
                session.commit()
                jobs.wake()

            publish_and_wake(1)
            wait_for(all_sent(1), 60, "the first note's mail, sent with no Redis")
            assert b"this worker ticks by itself" in log.read_bytes()

            redis_server.start()
            wait_for(lambda: jobs.waiting() is not None, 10, "the queue to answer")
            seen = len(log.read_bytes())
            publish_and_wake(2)
            wait_for(all_sent(2), 60, "the second note's mail")
            wait_for(
                lambda: b"Executing app.mail.jobs.tidings.deliver" in log.read_bytes()[seen:],
                30,
                "the consumer to take the wake-up from Redis",
            )

            redis_server.stop()
            publish_and_wake(3)
            wait_for(all_sent(3), 60, "the third note's mail, sent with Redis killed")

            redis_server.start()
            wait_for(lambda: jobs.waiting() is not None, 10, "the queue to answer again")
            seen = len(log.read_bytes())
            publish_and_wake(4)
            wait_for(all_sent(4), 60, "the fourth note's mail")
            wait_for(
                lambda: b"Executing app.mail.jobs.tidings.deliver" in log.read_bytes()[seen:],
                30,
                "the consumer to read from the restarted Redis",
            )
            assert worker.poll() is None, "the worker died"
            said = log.read_bytes()
            # Said, once a minute per part of the consumer, not a traceback a read.
            assert 1 <= said.count(b"Error reading from queue: Error 111 connecting") <= 2
            assert b"Traceback" not in said
            worker.send_signal(signal.SIGINT)
            worker.wait(timeout=30)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait(timeout=30)
        counts = smtp.recorder.per_recipient()
    assert set(counts) == readers
    assert set(counts.values()) == {4}, "each reader got each note's mail exactly once"
    session.rollback()
    statuses = session.execute(
        select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)
    ).all()
    assert statuses == [(OutboxStatus.SENT, 4 * READERS)]


def test_the_worker_ticks_by_itself_only_while_the_queue_cannot_be_reached(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs: Jobs = app.extensions[JOBS_KEY]
    ticks: list[str] = []
    monkeypatch.setattr(jobs, "_tick", lambda: ticks.append("tick"))
    stop = jobs.keep_beating(0.05)
    try:
        wait_for(lambda: len(_beats()) == 1 and _beats()[0] is not None, 10, "a beat")
        first = _beats()
        wait_for(lambda: _beats() != first, 10, "another beat")
        assert ticks == [], "a queue that answers brings the tick"
        monkeypatch.setattr(jobs.huey, "pending_count", _unreachable)
        wait_for(lambda: len(ticks) >= 2, 10, "the worker's own ticks")
    finally:
        stop.set()
        for thread in threading.enumerate():
            if thread.name in ("tidings-heartbeat", "tidings-tick"):
                thread.join(timeout=10)


def _beats() -> list[object]:
    with Session(db.engine) as session:
        return list(session.scalars(select(WorkerHeartbeat.beat_at)))


def _unreachable() -> int:
    raise redis.ConnectionError("Error 111 connecting to 127.0.0.1. Connection refused.")
