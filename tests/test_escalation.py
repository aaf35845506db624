"""Escalation: a notice still unacknowledged after its days goes by e-mail, once, to the users
linked to a confirmed subscriber, and to nobody else; with the real worker (`flask worker`)
and the real SMTP server of the suite. Agent mail goes out the same way. SQLite and
PostgreSQL."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import lxml.html
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from announcements import mailing, notices
from announcements.models import (
    Acknowledgement,
    EndUser,
    Escalation,
    Frequency,
    Note,
    OutboxKind,
    OutboxMessage,
    OutboxStatus,
    Product,
    ReadReceipt,
    Subscriber,
    SubscriberStatus,
    utcnow,
)
from app.mail import delivery, transport
from tests.conftest import AuthActions
from tests.factories import make_end_user, make_member, make_note, make_product
from tests.mailserver import SmtpServer
from tests.worker import wait_for

DAYS = 7


def _subscriber(
    session: Session,
    product: Product,
    email: str,
    user: EndUser | None,
    status: SubscriberStatus = SubscriberStatus.CONFIRMED,
) -> Subscriber:
    subscriber = Subscriber(
        product_id=product.id,
        email=email,
        status=status,
        # Notices go to those who asked for important notes only too: it is not news.
        frequency=Frequency.IMPORTANT,
        categories=[],
        end_user_id=user.id if user else None,
    )
    session.add(subscriber)
    session.commit()
    return subscriber


def _world(session: Session, product: Product, published_at: datetime) -> Note:
    """A notice published at ``published_at``, and five users seen since: one linked to a
    confirmed subscriber (ann), one who acknowledged (bob), one linked to nobody (cy), one
    linked to a subscriber still pending (dee), one linked to a confirmed subscriber but on
    a version the note is not for (eve)."""
    note = make_note(
        session,
        product,
        version="2.0.0",
        title="New terms of service",
        body_md="Please read the **new terms**.",
        requires_acknowledgement=True,
        escalate_after_days=DAYS,
        now=published_at,
    )
    seen = published_at + timedelta(hours=1)
    first_seen = published_at - timedelta(days=1)  # exposed from publication on
    users = {
        name: make_end_user(
            session,
            product,
            name,
            app_version=version,
            first_seen_at=first_seen,
            last_seen_at=seen,
        )
        for name, version in (
            ("ann", "2.0.0"),
            ("bob", "2.1.0"),
            ("cy", "2.0.0"),
            ("dee", None),
            ("eve", "1.9.0"),
        )
    }
    session.add(Acknowledgement(note_id=note.id, end_user_id=users["bob"].id))
    _subscriber(session, product, "ann@example.com", users["ann"])
    _subscriber(session, product, "bob@example.com", users["bob"])
    _subscriber(session, product, "dee@example.com", users["dee"], SubscriberStatus.PENDING)
    _subscriber(session, product, "eve@example.com", users["eve"])
    _subscriber(session, product, "nobody@example.com", None)
    return note


def _escalated(session: Session, note: Note) -> list[str]:
    session.expire_all()
    return list(
        session.scalars(
            select(EndUser.external_id)
            .join(Escalation, Escalation.end_user_id == EndUser.id)
            .where(Escalation.note_id == note.id)
            .order_by(EndUser.external_id)
        )
    )


def test_a_notice_is_escalated_once_its_days_have_passed_and_once_only(session: Session) -> None:
    product = make_product(session)
    published = utcnow() - timedelta(days=30)
    note = _world(session, product, published)
    due = published + timedelta(days=DAYS)

    assert notices.escalate_due(session, now=due - timedelta(seconds=1)) == 0
    session.commit()
    assert _escalated(session, note) == []

    assert notices.escalate_due(session, now=due) == 1
    session.commit()
    assert _escalated(session, note) == ["ann"]
    assert notices.escalate_due(session, now=due + timedelta(days=3)) == 0
    session.commit()
    outbox = session.execute(
        select(Subscriber.email, OutboxMessage.kind).join(OutboxMessage.subscriber)
    ).all()
    assert outbox == [("ann@example.com", OutboxKind.ESCALATION)]
    assert notices.count(session, note, now=due) == notices.Acknowledgements(
        exposed=4, acknowledged=1, not_yet=3
    )
    assert notices.status(session, note, None).escalated == 1


def test_a_late_user_is_escalated_only_days_after_their_own_exposure(session: Session) -> None:
    """N days count from when each user was shown the notice, not from its publication:
    a user first seen yesterday, or shown it (a popup read) only yesterday, waits N days
    from then."""
    product = make_product(session)
    now = utcnow()
    published = now - timedelta(days=30)
    note = _world(session, product, published)
    yesterday = now - timedelta(days=1)
    late = make_end_user(
        session, product, "late", app_version="2.0.0", first_seen_at=yesterday, last_seen_at=now
    )
    shown = make_end_user(
        session,
        product,
        "shown",
        app_version="2.0.0",
        first_seen_at=published - timedelta(days=5),
        last_seen_at=now,
    )
    session.add(
        ReadReceipt(note_id=note.id, end_user_id=shown.id, channel="popup", read_at=yesterday)
    )
    _subscriber(session, product, "late@example.com", late)
    _subscriber(session, product, "shown@example.com", shown)

    assert notices.escalate_due(session, now=now) == 1
    session.commit()
    assert _escalated(session, note) == ["ann"]
    assert notices.escalate_due(session, now=yesterday + timedelta(days=DAYS, seconds=-1)) == 0
    session.commit()
    assert notices.escalate_due(session, now=yesterday + timedelta(days=DAYS)) == 2
    session.commit()
    assert _escalated(session, note) == ["ann", "late", "shown"]


def test_a_user_with_two_subscribers_is_escalated_once_to_the_first(session: Session) -> None:
    product = make_product(session)
    note = _world(session, product, utcnow() - timedelta(days=30))
    ann = session.scalar(select(EndUser).where(EndUser.external_id == "ann"))
    _subscriber(session, product, "ann.work@example.com", ann)
    assert notices.escalate_due(session, now=utcnow()) == 1
    session.commit()
    assert session.scalars(select(Subscriber.email).join(OutboxMessage.subscriber)).all() == [
        "ann@example.com"
    ]
    assert _escalated(session, note) == ["ann"]


def test_the_minute_reads_who_is_due_then_writes_them(session: Session) -> None:
    product = make_product(session)
    note = _world(session, product, utcnow() - timedelta(days=30))
    ann = session.scalar(select(Subscriber.id).where(Subscriber.email == "ann@example.com"))
    due = notices.due_escalations(session, now=utcnow())
    assert [(d.note.id, d.subscriber_id) for d in due] == [(note.id, ann)]
    assert _escalated(session, note) == []  # reading wrote nothing
    done = delivery.housekeeping()
    assert done["escalations"] == 1
    assert _escalated(session, note) == ["ann"]
    assert delivery.housekeeping()["escalations"] == 0


def test_no_escalation_without_its_days_or_once_the_notice_is_gone(session: Session) -> None:
    product = make_product(session)
    now = utcnow()
    note = _world(session, product, now - timedelta(days=30))
    note.escalate_after_days = None
    session.commit()
    assert notices.escalate_due(session, now=now) == 0
    note.escalate_after_days = DAYS
    note.expires_at = now - timedelta(days=1)  # the widget no longer shows it
    session.commit()
    assert notices.escalate_due(session, now=now) == 0
    note.expires_at = None
    note.is_internal = True
    session.commit()
    assert notices.escalate_due(session, now=now) == 0
    assert _escalated(session, note) == []


def test_an_escalation_acknowledged_before_it_goes_is_not_sent(
    session: Session, smtp_server: SmtpServer
) -> None:
    product = make_product(session)
    note = _world(session, product, utcnow() - timedelta(days=30))
    assert notices.escalate_due(session, now=utcnow()) == 1
    session.commit()
    ann = session.scalar(select(EndUser).where(EndUser.external_id == "ann"))
    assert ann is not None
    session.add(Acknowledgement(note_id=note.id, end_user_id=ann.id))
    session.commit()
    report = delivery.deliver_due(transport.Smtp(smtp_server.url))
    assert (report.sent, report.skipped) == (0, 1)
    assert session.scalar(select(OutboxMessage.last_error)) == "acknowledged in the app"
    assert smtp_server.recorder.received == []


def _deliver_one(
    session: Session, smtp_server: SmtpServer, note: Note, kind: OutboxKind
) -> tuple[int, str | None]:
    """Queue ``note`` as ``kind`` for ann and run the sender: (sent, why it was skipped)."""
    subscriber = session.scalar(select(Subscriber).where(Subscriber.email == "ann@example.com"))
    assert subscriber is not None
    assert mailing.queue_one(session, note, subscriber.id, kind, now=utcnow())
    session.commit()
    report = delivery.deliver_due(transport.Smtp(smtp_server.url))
    session.expire_all()
    return report.sent, session.scalar(select(OutboxMessage.last_error))


def test_an_escalation_or_agent_note_that_expired_is_not_sent(
    session: Session, smtp_server: SmtpServer
) -> None:
    product = make_product(session)
    note = _world(session, product, utcnow() - timedelta(days=30))
    note.expires_at = utcnow() - timedelta(minutes=1)
    session.commit()
    assert _deliver_one(session, smtp_server, note, OutboxKind.ESCALATION) == (
        0,
        "the note has expired",
    )
    session.execute(OutboxMessage.__table__.delete())
    session.commit()
    assert _deliver_one(session, smtp_server, note, OutboxKind.AGENT) == (
        0,
        "the note has expired",
    )
    assert smtp_server.recorder.received == []


def test_an_escalation_of_a_note_no_longer_a_notice_is_not_sent(
    session: Session, smtp_server: SmtpServer
) -> None:
    product = make_product(session)
    note = _world(session, product, utcnow() - timedelta(days=30))
    note.requires_acknowledgement = False
    session.commit()
    assert _deliver_one(session, smtp_server, note, OutboxKind.ESCALATION) == (
        0,
        "the note no longer asks to be acknowledged",
    )
    assert smtp_server.recorder.received == []


def _unsent(session: Session) -> int:
    session.rollback()  # a fresh snapshot
    waiting = (OutboxStatus.QUEUED, OutboxStatus.SENDING)
    count = select(func.count()).select_from(OutboxMessage)
    return int(session.scalar(count.where(OutboxMessage.status.in_(waiting))) or 0)


def test_the_worker_escalates_a_notice_by_email_once_and_the_page_lists_who(
    session: Session,
    client: FlaskClient,
    auth: AuthActions,
    start_worker: Callable[[str], subprocess.Popen],
    tmp_path: Path,
) -> None:
    owner = make_member(session, "owner@example.com")
    product = make_product(session, owner=owner, name="Acme", slug="acme")
    # Its days passed a minute ago: the worker's first minute finds it due.
    note = _world(session, product, utcnow() - timedelta(days=DAYS, minutes=1))
    with SmtpServer() as server:
        first = start_worker(server.url)
        wait_for(lambda: len(server.recorder.received) >= 1, 60, "the escalation sent")
        wait_for(lambda: _unsent(session) == 0, 60, "the outbox recorded")
        first.kill()
        first.wait(timeout=30)
        # A second worker's first minute finds nothing more to send: waited for until
        # Huey says its minute ran (housekeeping, then sending), which it logs even when
        # the minute did nothing.
        second = start_worker(server.url)
        log = tmp_path / "worker-1.log"
        minute = re.compile(rb"tidings\.tick: \S+ executed in")
        wait_for(lambda: minute.search(log.read_bytes()) is not None, 60, "the second minute")
        assert _unsent(session) == 0
        second.kill()
        second.wait(timeout=30)
        received = list(server.recorder.received)

    assert [r.recipients for r in received] == [["ann@example.com"]]
    message = received[0].message
    assert message["Subject"] == "Action needed: New terms of service"
    assert _preheader(message).startswith("Please confirm you have read this: open Acme")
    text = message.get_body(("plain",))
    assert text is not None
    assert "Please confirm you have read this: open Acme" in text.get_content()
    assert "Please read the **new terms**." in text.get_content()
    assert _escalated(session, note) == ["ann"]

    auth.login(owner.email)
    page = lxml.html.fromstring(
        client.get(f"/console/p/acme/support/impact/notes/{note.id}").get_data()
    )
    rows = page.xpath('//table[contains(@class, "escalated")]/tbody/tr')
    assert [[cell.text_content() for cell in row[:2]] for row in rows] == [
        ["ann", "ann@example.com"]
    ]


def test_the_worker_sends_a_note_an_agent_sent(
    session: Session,
    start_worker: Callable[[str], subprocess.Popen],
) -> None:
    product = make_product(session, name="Acme")
    note = make_note(session, product, title="Export fixed", body_md="Exports work again.")
    user = make_end_user(session, product, "ann")
    subscriber = _subscriber(session, product, "ann@example.com", user)
    # Read in the app already, and not an important note, which is all this subscriber
    # asked for: as a release note it would not be owed; the agent chose to send it.
    session.add(ReadReceipt(note_id=note.id, end_user_id=user.id, channel="widget"))
    assert mailing.queue_one(session, note, subscriber.id, OutboxKind.AGENT, now=utcnow())
    session.commit()
    with SmtpServer() as server:
        worker = start_worker(server.url)
        wait_for(lambda: len(server.recorder.received) >= 1, 60, "the agent's note sent")
        wait_for(lambda: _unsent(session) == 0, 60, "the outbox recorded")
        worker.kill()
        worker.wait(timeout=30)
        received = list(server.recorder.received)
    assert [r.recipients for r in received] == [["ann@example.com"]]
    message = received[0].message
    assert message["Subject"] == "Acme: Export fixed"
    html = message.get_body(("html",))
    assert html is not None
    assert "The Acme support team sent you this note" in html.get_content()
    assert _preheader(message) == "The Acme support team sent you this note, as it concerns you."
    assert "Exports work again." in html.get_content()


def _preheader(message: Any) -> str:
    """The hidden line a mail client shows beside the subject in the inbox."""
    html = message.get_body(("html",))
    assert html is not None
    [hidden] = lxml.html.fromstring(html.get_content()).xpath(
        '//body/div[contains(@style, "display:none")]'
    )
    return str(hidden.text_content())
