"""Health for machines: /healthz, /readyz and /metrics, with no login, CSRF check or rate
limit in their way; /metrics only with the bearer token. SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select
from sqlalchemy.orm import Session

from announcements import monitoring
from announcements.models import (
    Alert,
    OutboxStatus,
    SubscriberStatus,
    TrafficMinute,
    Webhook,
    WebhookDelivery,
    WebhookEvent,
    WorkerHeartbeat,
    utcnow,
)
from app import health
from app.database import write_turn
from app.extensions import limiter
from app.mail import delivery
from tests.conftest import WEB_THREADS
from tests.factories import make_member, make_outbox_message, make_product

TOKEN = "s3cret-metrics-token"


def _beat(session: Session, age: timedelta, name: str = "host:1:1") -> None:
    at = utcnow() - age
    session.add(WorkerHeartbeat(name=name, started_at=at, beat_at=at))
    session.commit()


def test_healthz_answers_without_the_database_being_asked(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert (response.status_code, response.get_json()) == (200, {"status": "ok"})
    assert response.headers["Cache-Control"] == "no-store"


def test_readyz_names_the_worker_when_none_ever_beat(client: FlaskClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "unavailable"
    assert body["database"] == "ok"
    assert body["failing"] == ["worker"]
    assert body["worker"]["alive"] is False
    assert body["worker"]["heartbeat_age_seconds"] is None
    assert "flask worker" in body["worker"]["reason"]


def test_readyz_is_ready_while_the_worker_beats_and_not_after_five_minutes(
    client: FlaskClient, session: Session
) -> None:
    _beat(session, timedelta(seconds=40))
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {
        "status": "ready",
        "database": "ok",
        "worker": {"alive": True, "heartbeat_age_seconds": 40},
    }

    session.query(WorkerHeartbeat).update({"beat_at": utcnow() - timedelta(minutes=7)})
    session.commit()
    response = client.get("/readyz")
    assert response.status_code == 503
    worker = response.get_json()["worker"]
    assert worker["alive"] is False
    assert 7 * 60 <= worker["heartbeat_age_seconds"] < 7 * 60 + 5
    assert worker["reason"].startswith("The newest worker heartbeat is 7 min old")


def test_metrics_are_not_served_without_a_configured_token(client: FlaskClient) -> None:
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 404


def test_metrics_need_the_token(app_factory: Callable[..., Flask]) -> None:
    client = app_factory(METRICS_TOKEN=TOKEN).test_client()
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
        {"Authorization": "Bearer \u00e9"},
    ):
        response = client.get("/metrics", headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="metrics"'
        assert "error" in response.get_json()
    assert client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert client.get("/metrics", headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200


def test_metrics_are_read_from_the_database_in_prometheus_text(
    app_factory: Callable[..., Flask], session: Session
) -> None:
    now = utcnow()
    make_product(session, slug="quiet")
    busy = make_product(session, slug="busy")
    _beat(session, timedelta(seconds=30))
    states = [
        (OutboxStatus.QUEUED, 0, None, None),  # pending
        (OutboxStatus.QUEUED, 0, None, None),  # pending
        (OutboxStatus.QUEUED, 2, "451 try later", None),  # retrying
        (OutboxStatus.QUEUED, 0, "421 closing", now),  # paused
        (OutboxStatus.FAILED, 8, "550 no such user", None),  # failed
        (OutboxStatus.SENT, 1, None, None),
    ]
    for status, attempts, error, paused_at in states:
        make_outbox_message(
            session,
            busy,
            status,
            subscriber_status=SubscriberStatus.CONFIRMED,
            attempts=attempts,
            last_error=error,
            paused_at=paused_at,
        )
    webhook = Webhook(product_id=busy.id, url="https://hooks.example.com/x", secret="x")
    session.add(webhook)
    session.flush()
    for status, attempts in ((OutboxStatus.FAILED, 8), (OutboxStatus.QUEUED, 3)):
        session.add(
            WebhookDelivery(
                webhook_id=webhook.id,
                event=WebhookEvent.PUBLISHED,
                status=status,
                attempts=attempts,
                last_error="HTTP 500",
            )
        )
    minute = now.replace(second=0, microsecond=0) - timedelta(minutes=5)
    histogram = [0] * (len(monitoring.LATENCY_BUCKETS_MS) + 1)
    histogram[3] = 90  # up to 50 ms
    histogram[6] = 10  # up to 500 ms
    for process in ("web-a", "web-b"):
        session.add(
            TrafficMinute(
                process=process,
                minute=minute,
                product_id=busy.id,
                requests=100,
                errors=2,
                latency=histogram,
            )
        )
    session.commit()

    response = (
        app_factory(METRICS_TOKEN=TOKEN)
        .test_client()
        .get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    )
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain; version=")
    families = {family.name: family for family in text_string_to_metric_families(response.text)}

    def value(name: str, **labels: str) -> float:
        (sample,) = [s for s in families[name].samples if s.labels == labels]
        return sample.value

    assert value("tidings_worker_up") == 1
    assert 30 <= value("tidings_worker_heartbeat_age_seconds") < 40
    assert value("tidings_outbox_waiting", state="pending") == 2
    assert value("tidings_outbox_waiting", state="retrying") == 1
    assert value("tidings_outbox_waiting", state="paused") == 1
    assert value("tidings_outbox_failed_last_day") == 1
    assert value("tidings_webhook_calls_failing", product="busy") == 2
    assert value("tidings_webhook_calls_failing", product="quiet") == 0
    assert value("tidings_widget_requests_last_hour", product="busy") == 200
    assert value("tidings_widget_errors_last_hour", product="busy") == 4
    assert value("tidings_widget_requests_last_hour", product="quiet") == 0
    # 180 of 200 requests took up to 50 ms: the 95th percentile is in the 500 ms bucket.
    assert value("tidings_widget_latency_p95_seconds", product="busy") == 0.5
    assert [s.labels for s in families["tidings_widget_latency_p95_seconds"].samples] == [
        {"product": "busy"}
    ]
    assert value("tidings_alert_open", kind="worker_silent") == 0
    assert families["tidings_jobs_waiting"].type == "gauge"


def test_health_endpoints_take_no_session_no_csrf_and_no_rate_limit(
    app_factory: Callable[..., Flask],
) -> None:
    limited = app_factory(
        METRICS_TOKEN=TOKEN, RATELIMIT_ENABLED=True, RATELIMIT_DEFAULT="2 per minute"
    )
    client = limited.test_client()
    try:
        # The default limit is on for the rest of the app...
        answers = [client.get("/console/login").status_code for _ in range(3)]
        assert answers[-1] == 429
        # ...but a scraper polling every few seconds is never refused.
        for _ in range(10):
            assert client.get("/healthz").status_code == 200
            assert client.get("/readyz").status_code == 503  # no worker: an answer, not a 429
            metrics = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
            assert metrics.status_code == 200
    finally:
        # Flask-Limiter keeps a default limit on its one Limiter once any app set it, and
        # every later app in this process would count each page against it.
        limiter.limit_manager.set_default_limits([])


# The web's threads in the suite ----------------------------------------------------------------


@pytest.fixture
def no_web_thread_left() -> Iterator[None]:
    """Asks, as the test's fixtures are torn down, whether a thread of the web still runs."""
    yield
    running = [thread.name for thread in threading.enumerate() if thread.name in WEB_THREADS]
    assert running == [], "a thread of the web outlived its test"


def test_the_webs_threads_end_before_the_tests_app_goes(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch, no_web_thread_left: None
) -> None:
    """After a request the web starts the minute's chores in a thread, as in production;
    the suite waits for it (tests/conftest.py) before any fixture is torn down, so no
    thread is left holding a connection to the app's database as it is emptied.
    ``no_web_thread_left``, asked last, is torn down first: it would see the thread."""
    started = threading.Event()

    def slow_flush(now: datetime) -> int:
        started.set()
        time.sleep(1)
        return 0

    # A new clock: this process's chores may have run this minute already.
    monkeypatch.setattr(health, "_chores", health._EveryMinute())
    monkeypatch.setattr(health, "flush_traffic", slow_flush)
    assert client.get("/healthz").status_code == 200
    assert started.wait(timeout=10)
    assert [t.name for t in threading.enumerate() if t.name in WEB_THREADS] == ["tidings-minute"]


# The web's watch ------------------------------------------------------------------------------


def test_readyz_only_reads(
    client: FlaskClient, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Anyone may ask /readyz as often as they like: it says the worker is silent and
    writes nothing (no alert opened, no turn to write taken from the widget), while the
    minute's chores and the worker's tick do the watching."""
    make_product(session)
    _beat(session, timedelta(minutes=8))
    monkeypatch.setattr(health, "_chores", _NeverDue())

    turns: list[int] = []

    def counted_turn() -> AbstractContextManager[None]:
        turns.append(1)
        return write_turn()

    monkeypatch.setattr(health, "write_turn", counted_turn)
    for _ in range(3):
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.get_json()["failing"] == ["worker"]
    assert turns == []
    session.rollback()
    assert session.scalars(select(Alert)).all() == []
    assert [t.name for t in threading.enumerate() if t.name in WEB_THREADS] == []


class _NeverDue(health._EveryMinute):
    """The minute's chores never due: a test's requests start no thread."""

    def due(self, now: datetime) -> bool:
        return False


def test_watches_one_after_another_start_one_thread_to_send_alerts(
    app: Flask, session: Session, monkeypatch: pytest.MonkeyPatch, no_web_thread_left: None
) -> None:
    """While a thread of the web sends alert mail, further watches that find mail due
    (the Status page opened again and again) start no other."""
    owner = make_member(session)
    make_product(session, owner)
    _beat(session, timedelta(minutes=8))
    sending = threading.Event()
    release = threading.Event()
    runs: list[int] = []

    def slow_delivery(sender: object, *, kinds: object = None) -> delivery.Report:
        runs.append(1)
        sending.set()
        release.wait(timeout=10)
        return delivery.Report()

    monkeypatch.setattr(delivery, "deliver_due", slow_delivery)
    assert len(health.watch()) == 1  # the owner's mail, due now
    assert sending.wait(timeout=10)
    for _ in range(5):
        assert health.watch() == []  # the mail is still due: the sender is slow
    assert [t.name for t in threading.enumerate() if t.name in WEB_THREADS] == ["tidings-alerts"]
    release.set()
    for thread in threading.enumerate():
        if thread.name == "tidings-alerts":
            thread.join(timeout=10)
    assert runs == [1]
    # Once it ended, the next watch that finds mail due sends it again.
    assert health.watch() == []
    for thread in threading.enumerate():
        if thread.name == "tidings-alerts":
            thread.join(timeout=10)
    assert runs == [1, 1]
