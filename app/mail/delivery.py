"""The worker's side of the outbox: claim due messages, decide, compose, send, record.

Whether a message is still owed is decided at the moment it is sent, not when it
was queued: an unsubscribe, a note read in-app or a note withdrawn since then all
make it ``skipped``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta
from email.message import EmailMessage

from flask import current_app
from sqlalchemy import select

from announcements import outbox, subscriptions
from announcements.models import (
    Note,
    NoteStatus,
    OutboxKind,
    OutboxMessage,
    SubscriberStatus,
    utcnow,
)
from announcements.subscriptions import Preferences
from app.database import write_turn
from app.extensions import db
from app.mail import compose
from app.mail.transport import Pacer, Permanent, Transient, Transport, Unreachable

log = logging.getLogger(__name__)

# A claim outlives the time its batch takes at the configured rate three times over.
MIN_LEASE = timedelta(minutes=2)


@dataclass
class Report:
    """What one run of :func:`deliver_due` did."""

    sent: int = 0
    skipped: int = 0
    retried: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


def _is_owed(row: OutboxMessage) -> tuple[EmailMessage | None, str]:
    """The message to send for ``row`` now, or None and why it is no longer owed."""
    subscriber = row.subscriber
    if row.kind is OutboxKind.CONFIRM:
        if subscriber.status is SubscriberStatus.BOUNCED:
            return None, "the address bounced"
        return compose.confirmation(row), ""
    if subscriber.status is not SubscriberStatus.CONFIRMED:
        return None, f"the subscriber is {subscriber.status.value}"
    now = utcnow()
    if row.kind is OutboxKind.NOTE:
        note = row.note
        if note is None or note.is_internal or note.status_at(now) is not NoteStatus.PUBLISHED:
            return None, "the note is no longer published"
        if not Preferences.of(subscriber).wants(note):
            return None, "the subscriber's preferences changed"
        if not subscriptions.unread(db.session, subscriber, [note]):
            return None, "already read in the app"
        return compose.release_note(row, note), ""
    listed = (row.payload or {}).get("note_ids") or []
    notes = db.session.scalars(
        select(Note).where(Note.id.in_(listed)).order_by(Note.published_at, Note.id)
    ).all()
    live = [n for n in notes if not n.is_internal and n.status_at(now) is NoteStatus.PUBLISHED]
    unread = subscriptions.unread(db.session, subscriber, live)
    if not unread:
        return None, "every note in it was already read"
    return compose.digest(row, row.product, unread), ""


def _send_one(row: OutboxMessage, transport: Transport, pacer: Pacer, worker: str) -> str:
    """Send one claimed message and record the outcome; returns it as a word."""
    try:
        message, reason = _is_owed(row)
    except Exception as error:  # a message that cannot be composed must not stop the rest
        log.exception("cannot compose outbox message %s", row.id)
        with write_turn():
            outbox.mark_failed(db.session, row, worker, error=f"could not compose: {error}")
        return "failed"
    if message is None:
        with write_turn():
            outbox.mark_skipped(db.session, row.id, worker, reason=reason)
        return "skipped"
    pacer.wait()
    try:
        transport.send(message, compose.sender_address(), row.subscriber.email)
    except Permanent as error:
        with write_turn():
            outbox.mark_permanent(
                db.session,
                row,
                worker,
                error=str(error),
                bounce_limit=current_app.config["MAIL_BOUNCE_LIMIT"],
            )
        return "failed"
    except Transient as error:
        with write_turn():
            outbox.mark_transient(db.session, row, worker, error=str(error), now=utcnow())
        if isinstance(error, Unreachable):
            raise
        return "retried"
    with write_turn():
        outbox.mark_sent(
            db.session, row.id, worker, smtp_id=str(message["Message-ID"]), now=utcnow()
        )
        outbox.reset_bounces(db.session, row.subscriber)
    return "sent"


def deliver_due(transport: Transport) -> Report:
    """Send everything due, a claimed batch at a time, until the queue is empty."""
    config = current_app.config
    batch, rate = config["MAIL_BATCH"], config["MAIL_RATE"]
    lease = max(MIN_LEASE, timedelta(seconds=3 * batch / rate)) if rate else MIN_LEASE
    pacer = Pacer(rate)
    worker = outbox.worker_name()
    report = Report()
    while True:
        with write_turn():
            claimed = outbox.claim(db.session, worker, now=utcnow(), limit=batch, lease=lease)
        if not claimed:
            return report
        # Stop well before the lease ends, so no other worker ever takes a message back
        # while this one may still send it.
        deadline = time.monotonic() + lease.total_seconds() / 2
        for position, row_id in enumerate(claimed):
            if time.monotonic() > deadline:
                with write_turn():
                    outbox.release(db.session, claimed[position:], worker, now=utcnow())
                break
            row = db.session.get(OutboxMessage, row_id)
            if row is None:  # its subscriber was removed meanwhile
                continue
            try:
                outcome = _send_one(row, transport, pacer, worker)
            except Unreachable as error:
                report.retried += 1
                report.errors.append(str(error))
                later = utcnow() + outbox.retry_delay(1)
                with write_turn():
                    outbox.release(db.session, claimed[position + 1 :], worker, now=later)
                return report
            setattr(report, outcome, getattr(report, outcome) + 1)


def housekeeping() -> dict[str, int]:
    """The worker's minute: reclaim what dead workers held, queue notes that went live
    and digests whose time came."""
    with write_turn():
        released = outbox.release_abandoned(db.session, now=utcnow())
    with write_turn():
        notes = subscriptions.queue_due_notes(db.session, now=utcnow())
    with write_turn():
        digests = subscriptions.queue_digests(db.session, now=utcnow())
    return {"released": released, "note_messages": notes, "digests": digests}
