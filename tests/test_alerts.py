"""Alerts: owners get one e-mail when the worker has been silent for 5 minutes or mail has
been failing for 15, and one when it recovers; never two, whoever watches and however
often; nothing for a blip. With the real worker (`flask worker`) and the real SMTP server
of the suite; SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, create_engine, func, select, update
from sqlalchemy.orm import Session

from announcements import monitoring
from announcements.models import (
    Alert,
    OutboxKind,
    OutboxMessage,
    Product,
    Role,
    Subscriber,
    SubscriberStatus,
    TeamMember,
    WorkerHeartbeat,
    utcnow,
)
from app.database import write_turn
from app.mail import delivery, transport
from tests.factories import add_member, make_member, make_product
from tests.mailserver import SmtpServer
from tests.worker import wait_for


def _owners(session: Session) -> tuple[TeamMember, TeamMember]:
    """Two owners, one of two products; an editor and a deactivated owner, who get nothing."""
    first = make_member(session, "first-owner@example.com")
    second = make_member(session, "second-owner@example.com")
    product = make_product(session, first)
    make_product(session, first)
    make_product(session, second)
    add_member(session, product, Role.EDITOR, "editor@example.com")
    gone = make_member(session, "gone-owner@example.com")
    make_product(session, gone)
    gone.is_active = False
    session.commit()
    return first, second


def _alert_mail(session: Session) -> list[tuple[str, str, str]]:
    """Every alert message: (to, state, status), in the order queued."""
    session.rollback()  # a fresh snapshot
    rows = session.execute(
        select(TeamMember.email, OutboxMessage.payload, OutboxMessage.status)
        .join(TeamMember, TeamMember.id == OutboxMessage.member_id)
        .where(OutboxMessage.kind == OutboxKind.ALERT)
        .order_by(OutboxMessage.id)
    ).all()
    return [(email, payload["state"], status.value) for email, payload, status in rows]


def _deliver(server: SmtpServer, **options: Any) -> delivery.Report:
    """One run of the outbox, to the test's SMTP server."""
    sender = transport.from_config(server.url, "")
    try:
        return delivery.deliver_due(sender, **options)
    finally:
        sender.close()


def _subjects(server: SmtpServer) -> list[tuple[str, str]]:
    return sorted(
        (", ".join(item.recipients), str(item.message["Subject"]))
        for item in server.recorder.received
    )


def test_a_stopped_worker_brings_one_alert_per_owner_and_one_recovery_mail(
    app: Flask,
    client: FlaskClient,
    session: Session,
    smtp_server: SmtpServer,
    start_worker: Callable[[str], subprocess.Popen],
) -> None:
    # The web process sends alert mail itself when it queues some: the worker may be dead.
    app.config["SMTP_URL"] = smtp_server.url
    first, second = _owners(session)
    owners = sorted([first.email, second.email])

    worker = start_worker(smtp_server.url)

    def beating() -> bool:
        session.rollback()
        return session.scalar(select(func.count()).select_from(WorkerHeartbeat)) == 1

    wait_for(beating, 60, "the worker's heartbeat")
    assert client.get("/readyz").status_code == 200
    worker.kill()
    worker.wait(timeout=30)

    # Its silence is made older than five minutes, rather than waited for.
    session.execute(update(WorkerHeartbeat).values(beat_at=utcnow() - timedelta(minutes=6)))
    session.commit()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["failing"] == ["worker"]
    wait_for(lambda: len(smtp_server.recorder.received) >= 2, 30, "the alert mail")
    assert _subjects(smtp_server) == [(owner, "The Tidings worker is silent") for owner in owners]
    body = smtp_server.recorder.to(first.email)[0].get_body(("plain",))
    assert body is not None and "No worker has written a heartbeat since" in body.get_content()

    # Asked again, and again: no second mail.
    for _ in range(3):
        assert client.get("/readyz").status_code == 503
    time.sleep(1)
    assert len(smtp_server.recorder.received) == 2
    assert sorted(_alert_mail(session)) == [(owner, "down", "sent") for owner in owners]

    # The worker is back: it says so to each owner, once.
    start_worker(smtp_server.url)
    wait_for(lambda: len(smtp_server.recorder.received) >= 4, 60, "the recovery mail")
    time.sleep(1)
    assert len(smtp_server.recorder.received) == 4
    recovered = sorted(
        (", ".join(item.recipients), str(item.message["Subject"]))
        for item in smtp_server.recorder.received[2:]
    )
    assert recovered == [(owner, "The Tidings worker is back") for owner in owners]
    assert client.get("/readyz").status_code == 200
    session.rollback()
    (alert,) = session.scalars(select(Alert)).all()
    assert alert.kind == "worker_silent"
    assert alert.alerted_at is not None and alert.recovered_at is not None


def _stuck_mail(session: Session, product: Product, server: SmtpServer) -> None:
    """A confirmation the server defers (451), so it waits to be tried again."""
    subscriber = Subscriber(
        product_id=product.id,
        email="reader@example.com",
        status=SubscriberStatus.PENDING,
        categories=[],
    )
    session.add(subscriber)
    session.flush()
    session.add(
        OutboxMessage(
            product_id=product.id, subscriber_id=subscriber.id, kind=OutboxKind.CONFIRM, payload={}
        )
    )
    session.commit()
    server.recorder.replies["reader@example.com"] = "451 4.3.0 Try again later"
    assert _deliver(server).retried == 1


def _watch(session: Session, after: timedelta, start: datetime) -> list[int]:
    """Watch as a process would ``after`` the start, and commit; the ids queued."""
    with write_turn():
        queued = monitoring.watch(session, now=start + after)
        session.commit()
    return queued


def test_mail_failing_for_15_minutes_brings_one_alert_and_one_recovery(
    app: Flask, session: Session, smtp_server: SmtpServer
) -> None:
    owner = make_member(session, "owner@example.com")
    product = make_product(session, owner)
    _stuck_mail(session, product, smtp_server)
    # The clock of this test's watches, early enough that what they queue is due now.
    start = utcnow() - timedelta(minutes=45)

    assert _watch(session, timedelta(0), start) == []  # first seen: the clock starts
    assert _watch(session, timedelta(minutes=14, seconds=59), start) == []
    assert len(_watch(session, timedelta(minutes=15), start)) == 1
    assert _watch(session, timedelta(minutes=16), start) == []
    assert _watch(session, timedelta(minutes=40), start) == []
    report = _deliver(smtp_server, kinds=[OutboxKind.ALERT])
    assert (report.sent, report.retried) == (1, 0)  # the stuck confirmation stays put
    assert _subjects(smtp_server) == [("owner@example.com", "Tidings mail is failing")]
    text = smtp_server.recorder.to("owner@example.com")[0].get_body(("plain",))
    assert text is not None
    # It goes to the owners of every product: no recipient's address or refusal in it.
    assert "1 message wait after failed attempts" in text.get_content()
    assert "reader@example.com" not in text.get_content()
    assert f"/console/p/{product.slug}/status" in text.get_content()

    # The server takes the reader's mail again: mail is going out.
    smtp_server.recorder.replies.clear()
    session.execute(update(OutboxMessage).values(next_attempt_at=utcnow()))
    session.commit()
    assert _deliver(smtp_server).sent == 1
    assert len(_watch(session, timedelta(minutes=41), start)) == 1
    assert _watch(session, timedelta(minutes=42), start) == []
    _deliver(smtp_server)
    assert [message["Subject"] for message in smtp_server.recorder.to("owner@example.com")] == [
        "Tidings mail is failing",
        "Tidings mail is going out again",
    ]
    assert smtp_server.recorder.per_recipient() == {"owner@example.com": 2, "reader@example.com": 1}


def test_blips_shorter_than_the_threshold_send_nothing(
    app: Flask, session: Session, smtp_server: SmtpServer
) -> None:
    owner = make_member(session)
    product = make_product(session, owner)
    start = utcnow() - timedelta(minutes=15)
    # Mail failed for ten minutes, then went out.
    _stuck_mail(session, product, smtp_server)
    assert _watch(session, timedelta(0), start) == []
    assert _watch(session, timedelta(minutes=10), start) == []
    smtp_server.recorder.replies.clear()
    session.execute(update(OutboxMessage).values(next_attempt_at=utcnow()))
    session.commit()
    assert _deliver(smtp_server).sent == 1
    assert _watch(session, timedelta(minutes=11), start) == []
    # The worker skipped four ticks, then beat again.
    monitoring.beat(session, "host:1:1", now=start + timedelta(minutes=7, seconds=1))
    session.commit()
    assert _watch(session, timedelta(minutes=12), start) == []
    monitoring.beat(session, "host:1:1", now=start + timedelta(minutes=12))
    session.commit()
    assert _watch(session, timedelta(minutes=12, seconds=1), start) == []

    assert _alert_mail(session) == []
    (alert,) = session.scalars(select(Alert)).all()  # opened and closed, silently
    assert alert.kind == "mail_failing"
    assert alert.alerted_at is None and alert.recovered_at is not None
    assert [item.recipients for item in smtp_server.recorder.received] == [["reader@example.com"]]


def test_two_processes_watching_at_once_queue_one_mail_per_owner(
    app: Flask, session: Session, database_url: str
) -> None:
    first, second = _owners(session)
    monitoring.beat(session, "host:1:1", now=utcnow() - timedelta(minutes=8))
    session.commit()
    # Each "process" with its own engine, so its own connections and transactions.
    engines = [create_engine(database_url) for _ in range(4)]
    barrier = threading.Barrier(len(engines))
    queued: list[list[int]] = []
    errors: list[BaseException] = []

    def watcher(engine: Engine) -> None:
        try:
            with app.app_context(), Session(engine) as own:
                barrier.wait(timeout=10)
                with write_turn():
                    ids = monitoring.watch(own, now=utcnow())
                    time.sleep(0.3)  # hold the transaction while the others try
                    own.commit()
                queued.append(ids)
        except BaseException as error:  # reported below, not lost in the thread
            errors.append(error)

    threads = [threading.Thread(target=watcher, args=(engine,)) for engine in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for engine in engines:
        engine.dispose()
    assert errors == []
    assert sorted(len(ids) for ids in queued) == [0, 0, 0, 2]
    assert sorted(_alert_mail(session)) == [
        (first.email, "down", "queued"),
        (second.email, "down", "queued"),
    ]
    assert session.scalar(select(func.count()).select_from(Alert)) == 1


def test_an_alert_is_not_sent_to_an_owner_deactivated_since(
    app: Flask, session: Session, smtp_server: SmtpServer
) -> None:
    first, second = _owners(session)
    monitoring.beat(session, "host:1:1", now=utcnow() - timedelta(minutes=8))
    session.commit()
    assert len(_watch(session, timedelta(0), utcnow())) == 2
    session.execute(update(TeamMember).where(TeamMember.id == second.id).values(is_active=False))
    session.commit()
    report = _deliver(smtp_server)
    assert (report.sent, report.skipped) == (1, 1)
    assert smtp_server.recorder.per_recipient() == {first.email: 1}
    message = smtp_server.recorder.to(first.email)[0]
    assert message["From"].addresses[0].display_name == "Tidings"
    assert "List-Unsubscribe" not in message
    # The lowest of the products the owner owns: the link and the line say which.
    lowest = session.scalar(
        select(func.min(OutboxMessage.product_id)).where(OutboxMessage.member_id == first.id)
    )
    name = session.get(Product, lowest).name  # type: ignore[union-attr]
    html = message.get_body(("html",))
    assert html is not None and f"you own {name} on Tidings" in html.get_content()
