"""Alerts: owners get one e-mail when the worker has been silent for 5 minutes or mail has
been failing for 15, and one when it has been fine again for 10; never two, whoever
watches and however often; nothing for a blip, and no storm from trouble that flaps. With
the real worker (`flask worker`) and the real SMTP server of the suite; SQLite and
PostgreSQL."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, create_engine, event, func, select, update
from sqlalchemy.orm import Session

from announcements import monitoring
from announcements.models import (
    Alert,
    Membership,
    OutboxKind,
    OutboxMessage,
    OutboxStatus,
    Product,
    Role,
    TeamMember,
    WorkerHeartbeat,
    utcnow,
)
from app.database import write_turn
from app.extensions import db
from app.mail import delivery, transport
from tests.conftest import AuthActions
from tests.factories import add_member, make_member, make_outbox_message, make_product
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
    auth: AuthActions,
    session: Session,
    smtp_server: SmtpServer,
    start_worker: Callable[[str], subprocess.Popen],
) -> None:
    # The web process sends alert mail itself when it queues some: the worker may be dead.
    app.config["SMTP_URL"] = smtp_server.url
    first, second = _owners(session)
    owners = sorted([first.email, second.email])
    status_page = f"/console/p/{_lowest_product(session, first).slug}/status"
    auth.login(first.email)

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
    # The owner opens the Status page, which watches: the dead worker cannot.
    assert client.get(status_page).status_code == 200
    wait_for(lambda: len(smtp_server.recorder.received) >= 2, 30, "the alert mail")
    assert _subjects(smtp_server) == [(owner, "The Tidings worker is silent") for owner in owners]
    body = smtp_server.recorder.to(first.email)[0].get_body(("plain",))
    assert body is not None and "No worker has written a heartbeat since" in body.get_content()

    # Looked at again, and again: no second mail.
    for _ in range(3):
        assert client.get(status_page).status_code == 200
        assert client.get("/readyz").status_code == 503
    time.sleep(1)
    assert len(smtp_server.recorder.received) == 2
    assert sorted(_alert_mail(session)) == [(owner, "down", "sent") for owner in owners]

    # The worker is back: its first tick, or the page, sees it, and the alert settles.
    back_at = utcnow()
    start_worker(smtp_server.url)

    def beating_again() -> bool:
        session.rollback()
        newest = session.scalar(select(func.max(WorkerHeartbeat.beat_at)))
        return newest is not None and newest >= back_at

    wait_for(beating_again, 60, "the new worker's heartbeat")
    assert client.get(status_page).status_code == 200
    (alert,) = session.scalars(select(Alert)).all()
    assert alert.recovered_at is not None
    # Nothing yet: the recovery mail waits until the worker has been fine for 10 minutes.
    time.sleep(1)
    assert len(smtp_server.recorder.received) == 2
    # Ten minutes pass, rather than being waited for: the alert and its mail's time move.
    earlier = timedelta(minutes=10, seconds=1)
    alert.recovered_at -= earlier
    for waiting in session.scalars(
        select(OutboxMessage).where(
            OutboxMessage.kind == OutboxKind.ALERT, OutboxMessage.status == OutboxStatus.QUEUED
        )
    ):
        waiting.next_attempt_at -= earlier
    session.commit()
    assert client.get(status_page).status_code == 200
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
    assert [row.is_open for row in monitoring.alerts(session, now=utcnow())] == [False]


def _lowest_product(session: Session, member: TeamMember) -> Product:
    """The product of the member's alert mail, whose Status page the mail links to."""
    lowest = session.scalar(
        select(func.min(Membership.product_id)).where(
            Membership.member_id == member.id, Membership.role == Role.OWNER
        )
    )
    product = session.get(Product, lowest)
    assert product is not None
    return product


def _stuck_mail(session: Session, product: Product, server: SmtpServer) -> None:
    """A confirmation the server defers (451), so it waits to be tried again."""
    make_outbox_message(session, product, email="reader@example.com", payload={})
    server.recorder.replies["reader@example.com"] = "451 4.3.0 Try again later"
    assert _deliver(server).retried == 1


def _watch(
    session: Session,
    after: timedelta,
    start: datetime,
    turn: Callable[[], AbstractContextManager[None]] = write_turn,
) -> list[int]:
    """Watch as a process would ``after`` the start; the ids queued."""
    return monitoring.watch(session, now=start + after, write_turn=turn)


def test_mail_failing_for_15_minutes_brings_one_alert_and_one_recovery(
    app: Flask, session: Session, smtp_server: SmtpServer
) -> None:
    owner = make_member(session, "owner@example.com")
    product = make_product(session, owner)
    _stuck_mail(session, product, smtp_server)
    # The clock of this test's watches, early enough that what they queue is due now,
    # the recovery mail 10 minutes after the mail went again included.
    start = utcnow() - timedelta(minutes=60)

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
    (recovery,) = session.scalars(
        select(OutboxMessage).where(OutboxMessage.payload["state"].as_string() == "recovered")
    )
    assert recovery.next_attempt_at == start + timedelta(minutes=51)  # fine for 10 minutes
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
                # Hold the transaction, having written, while the others try.
                event.listen(own, "before_commit", lambda _session: time.sleep(0.3))
                barrier.wait(timeout=10)
                queued.append(monitoring.watch(own, now=utcnow(), write_turn=write_turn))
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


# Flapping: one episode, not a storm --------------------------------------------------------


def test_a_worker_in_a_crash_loop_brings_one_alert_and_one_recovery_per_owner(
    app: Flask, session: Session, smtp_server: SmtpServer
) -> None:
    """A worker that starts, beats once and dies every 7 minutes, watched every minute;
    then one that keeps beating. Without a settling time each silence and each beat made
    a mail: 9 per owner in 35 minutes. The recovery goes once it has been fine for 10."""
    first, second = _owners(session)
    start = utcnow() - timedelta(hours=2)  # early enough that all the mail is due now
    crashes = {0, 7, 14, 21, 28}  # minutes at which a new worker beats once, then dies
    fine_from = 35  # from here a worker beats every minute
    queued: dict[int, list[int]] = {}
    open_at: dict[int, bool] = {}
    for minute in range(60):
        if minute in crashes or minute >= fine_from:
            name = f"host:{min(minute, fine_from)}:1"
            monitoring.beat(session, name, now=start + timedelta(minutes=minute))
            session.commit()
        queued[minute] = _watch(session, timedelta(minutes=minute, seconds=30), start)
        alerts = monitoring.alerts(session, now=start + timedelta(minutes=minute, seconds=30))
        open_at[minute] = any(alert.is_open for alert in alerts)

    # The down mail when first silent for 5 minutes; nothing more for each beat and
    # silence after; the recovery queued when it was fine again, for 10 minutes on.
    assert {minute: len(ids) for minute, ids in queued.items() if ids} == {
        5: 2,
        7: 2,
        14: 2,
        21: 2,
        28: 2,
        35: 2,
    }
    assert _alert_mail(session) == [
        (first.email, "down", "queued"),
        (second.email, "down", "queued"),
        (first.email, "recovered", "queued"),
        (second.email, "recovered", "queued"),
    ]
    due = session.scalars(
        select(OutboxMessage.next_attempt_at).where(
            OutboxMessage.payload["state"].as_string() == "recovered"
        )
    ).all()
    assert due == [start + timedelta(minutes=fine_from + 10, seconds=30)] * 2
    assert [minute for minute, is_open in open_at.items() if not is_open] == [
        *range(5),  # before the first silence
        *range(fine_from + 10, 60),  # fine for 10 minutes: closed
    ]
    assert session.scalar(select(func.count()).select_from(Alert)) == 1

    report = _deliver(smtp_server)
    assert report.sent == 4
    assert smtp_server.recorder.per_recipient() == {first.email: 2, second.email: 2}
    assert [m["Subject"] for m in smtp_server.recorder.to(first.email)] == [
        "The Tidings worker is silent",
        "The Tidings worker is back",
    ]


def _sent_mail(session: Session, product: Product, at: datetime) -> None:
    """A confirmation sent at ``at``: mail went out then."""
    make_outbox_message(
        session,
        product,
        OutboxStatus.SENT,
        email=f"sent-{at.timestamp():.0f}@example.com",
        attempts=1,
        created_at=at,
        sent_at=at,
        next_attempt_at=at + timedelta(minutes=1),
    )
    session.commit()


def test_mail_that_sends_one_message_and_fails_again_keeps_one_alert(
    app: Flask, session: Session, smtp_server: SmtpServer
) -> None:
    owner = make_member(session, "owner@example.com")
    product = make_product(session, owner)
    _stuck_mail(session, product, smtp_server)
    start = utcnow() - timedelta(hours=2)

    def watch(minute: int) -> int:
        return len(_watch(session, timedelta(minutes=minute), start))

    assert watch(0) == 0  # first seen
    assert watch(15) == 1  # failing for 15 minutes: the owner is told
    for sent in (20, 30):  # one message goes, then nothing for 5 minutes
        _sent_mail(session, product, start + timedelta(minutes=sent))
        assert watch(sent + 1) == 1  # the recovery, waiting 10 minutes
        assert watch(sent + 3) == 0
        assert watch(sent + 6) == 0  # failing again: the same alert, the recovery withdrawn
        (alert,) = monitoring.alerts(session, now=start + timedelta(minutes=sent + 6))
        assert alert.is_failing and alert.failing_since == start
    # The stuck message goes at last, and the outbox is clear.
    session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.status == OutboxStatus.QUEUED, OutboxMessage.kind != OutboxKind.ALERT)
        .values(status=OutboxStatus.SENT, sent_at=start + timedelta(minutes=40))
    )
    session.commit()
    assert watch(41) == 1
    assert [watch(minute) for minute in (45, 50, 51, 55)] == [0, 0, 0, 0]

    assert _alert_mail(session) == [
        ("owner@example.com", "down", "queued"),
        ("owner@example.com", "recovered", "queued"),
    ]
    assert _deliver(smtp_server, kinds=[OutboxKind.ALERT]).sent == 2
    assert [m["Subject"] for m in smtp_server.recorder.to("owner@example.com")] == [
        "Tidings mail is failing",
        "Tidings mail is going out again",
    ]


# What changed since the watch read -----------------------------------------------------------


def test_a_beat_between_the_watchs_read_and_its_write_brings_no_mail(
    app: Flask, session: Session
) -> None:
    """The watch reads the worker silent; the worker's tick beats (from its own
    connection) before the watch's turn to write comes: nothing is opened or claimed, so
    the owners get neither "down" nor, a minute later, "back"."""
    _owners(session)
    now = utcnow()
    monitoring.beat(session, "host:1:1", now=now - timedelta(minutes=6))
    session.commit()

    @contextmanager
    def beat_first() -> Iterator[None]:
        with Session(db.engine) as worker:
            monitoring.beat(worker, "host:1:1", now=now)
            worker.commit()
        with write_turn():
            yield

    assert _watch(session, timedelta(0), now, beat_first) == []
    assert session.scalars(select(Alert)).all() == []
    assert _watch(session, timedelta(minutes=1), now) == []

    # An alert opened before, not yet told: the claim, too, asks again.
    monitoring.beat(session, "host:1:1", now=now - timedelta(minutes=6))
    session.add(Alert(kind="worker_silent", failing_since=now - timedelta(minutes=6)))
    session.commit()
    assert _watch(session, timedelta(0), now, beat_first) == []
    (alert,) = session.scalars(select(Alert)).all()
    assert alert.alerted_at is None
    assert _watch(session, timedelta(seconds=30), now) == []  # alive: it settles, silently
    session.refresh(alert)
    assert alert.alerted_at is None and alert.recovered_at is not None
    assert _alert_mail(session) == []


def test_a_message_sent_between_the_watchs_read_and_its_write_brings_no_mail(
    app: Flask, session: Session, smtp_server: SmtpServer
) -> None:
    owner = make_member(session)
    product = make_product(session, owner)
    _stuck_mail(session, product, smtp_server)
    start = utcnow() - timedelta(hours=1)
    assert _watch(session, timedelta(0), start) == []

    @contextmanager
    def send_first() -> Iterator[None]:
        with Session(db.engine) as worker:
            _sent_mail(worker, product, start + timedelta(minutes=15))
        with write_turn():
            yield

    assert _watch(session, timedelta(minutes=15), start, send_first) == []
    assert _watch(session, timedelta(minutes=16), start) == []
    (alert,) = session.scalars(select(Alert)).all()
    assert alert.alerted_at is None and alert.recovered_at is not None
    assert _alert_mail(session) == []


# A watch that changes nothing writes nothing ---------------------------------------------------


@contextmanager
def _no_turn() -> Iterator[None]:
    raise AssertionError("the watch took the write turn with nothing to write")
    yield  # pragma: no cover - a generator, for contextmanager


def test_a_watch_with_nothing_to_change_takes_no_write_turn(app: Flask, session: Session) -> None:
    """On SQLite the write turn is the one writer of every process: a watch that only
    confirms what is known (all well, or the owners told already) must not take it."""
    _owners(session)
    start = utcnow() - timedelta(hours=1)
    monitoring.beat(session, "host:1:1", now=start)
    session.commit()
    assert _watch(session, timedelta(minutes=1), start, _no_turn) == []  # all well
    assert len(_watch(session, timedelta(minutes=6), start)) == 2  # silent: told
    for minute in (7, 8, 30):
        assert _watch(session, timedelta(minutes=minute), start, _no_turn) == []


def _paused(session: Session, product: Product, error: str, paused_at: datetime) -> None:
    """A confirmation held by a pause that began at ``paused_at``, with the server's answer."""
    make_outbox_message(
        session,
        product,
        email=f"held-{paused_at.timestamp():.0f}@example.com",
        last_error=error,
        paused_at=paused_at,
        next_attempt_at=paused_at + timedelta(minutes=5),
    )


def test_the_alerts_text_counts_up_to_a_bound_and_quotes_the_newest_refusal(
    app: Flask, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every minute a watch runs, so its text counts a few thousand messages at most; the
    server's answer quoted is the newest, not whichever sorts last."""
    monkeypatch.setattr(monitoring, "MAIL_COUNTED_UP_TO", 2)
    make_product(session)
    product = make_product(session)
    start = utcnow() - timedelta(hours=1)
    _paused(session, product, "550 5.7.0 zz: relay refused", start - timedelta(minutes=30))
    _paused(session, product, "554 5.7.0 zz: relay refused", start - timedelta(minutes=20))
    _paused(session, product, "421 4.3.2 aa: try again later", start - timedelta(minutes=2))
    assert _watch(session, timedelta(0), start) == []
    (alert,) = session.scalars(select(Alert)).all()
    assert alert.detail.startswith("Over 2 messages wait after failed attempts")
    assert alert.detail.endswith("The mail server refuses our mail: 421 4.3.2 aa: try again later")
