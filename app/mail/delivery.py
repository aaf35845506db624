"""The worker's side of the outbox: claim due messages, decide, compose, send, record.

Whether a message is still owed is decided at the moment it is sent, not when it
was queued: an unsubscribe, a note read in-app or a note withdrawn since then all
make it ``skipped``.

When the server refuses us rather than a recipient (see :mod:`app.mail.transport`), the
run stops and every message waits, uncharged, for a retry that backs off; the note's
page in the console shows why, from the messages themselves.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Collection, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from email.utils import make_msgid

from flask import current_app
from sqlalchemy import Connection, select
from sqlalchemy.orm import Session, joinedload

from announcements import mailing, notices, outbox
from announcements.models import (
    Alert,
    Frequency,
    Note,
    OutboxKind,
    OutboxMessage,
    Subscriber,
    SubscriberStatus,
    utcnow,
)
from announcements.subscriptions import Preferences
from app.database import widget_engine, write_turn, writing
from app.extensions import db
from app.mail import compose
from app.mail.transport import Failure, Halted, Pacer, Permanent, Transient, Transport

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
    # Set when the server refused us and sending stopped until ``paused.retry_at``.
    paused: outbox.Pause | None = None


# The kinds sent on purpose to one subscriber, read or not: by a support agent, or as a
# notice not yet acknowledged. Every other message of one note is news.
ON_PURPOSE = frozenset({OutboxKind.AGENT, OutboxKind.ESCALATION})


def _alert_owed(session: Session, row: OutboxMessage) -> tuple[compose.Composed | None, str]:
    """An alert is owed to a team member still active, while its alert exists."""
    member = row.member
    if member is None or not member.is_active:
        return None, "the team member is no longer active"
    episode = session.get(Alert, (row.payload or {}).get("alert_id"))
    if episode is None:
        return None, "the alert was removed"
    return compose.alert(row, member, episode), ""


def _is_owed(session: Session, row: OutboxMessage) -> tuple[compose.Composed | None, str]:
    """The message to send for ``row`` now, or None and why it is no longer owed."""
    if row.kind is OutboxKind.ALERT:
        return _alert_owed(session, row)
    subscriber = compose.subscriber_of(row)
    if row.kind is OutboxKind.CONFIRM:
        if subscriber.status is SubscriberStatus.BOUNCED:
            return None, "the address bounced"
        return compose.confirmation(row), ""
    if subscriber.status is not SubscriberStatus.CONFIRMED:
        return None, f"the subscriber is {subscriber.status.value}"
    now = utcnow()
    if row.note_id is not None:  # one note (a digest lists several in its payload)
        note = row.note
        if note is None or not mailing.is_out(note, now):
            return None, "the note is no longer published"
        if row.kind not in ON_PURPOSE:
            if not Preferences.of(subscriber).wants(note):
                return None, "the subscriber's preferences changed"
            if not mailing.unread(session, subscriber, [note]):
                return None, "already read in the app"
        # A note announced again for a translation (its payload names the language) is
        # owed while that translation is the one the subscriber reads: not once it was
        # withdrawn, or their language changed.
        translated = (row.payload or {}).get("locale")
        if translated and compose.localized(note, subscriber).locale != translated:
            return None, "the translation is no longer the subscriber's language"
        # An agent's note is owed, read or not, while it is out (the agent chose this
        # user); once it expired the widget no longer shows it, nor a notice.
        expired = note.expires_at is not None and note.expires_at <= now
        if expired and row.kind in ON_PURPOSE:
            return None, "the note has expired"
        if row.kind is OutboxKind.ESCALATION:
            if not note.requires_acknowledgement:
                return None, "the note no longer asks to be acknowledged"
            if notices.acknowledged_by(session, note, subscriber):
                return None, "acknowledged in the app"
        message_id = compose.message_id_for(row.id)
        return compose.release_note(subscriber, note, message_id, kind=row.kind), ""
    listed = (row.payload or {}).get("note_ids") or []
    notes = session.scalars(
        select(Note).where(Note.id.in_(listed)).order_by(Note.published_at, Note.id)
    ).all()
    live = [n for n in notes if mailing.is_out(n, now)]
    unread = mailing.unread(session, subscriber, live)
    if not unread:
        return None, "every note in it was already read"
    return compose.digest(row, row.product, unread), ""


def _prepare(
    session: Session, row: OutboxMessage, worker: str
) -> tuple[compose.Composed | None, str]:
    """The message to send for ``row``; or None, with the outcome already recorded."""
    try:
        message, reason = _is_owed(session, row)
    except Exception as error:  # a message that cannot be composed must not stop the rest
        log.exception("cannot compose outbox message %s", row.id)
        with write_turn():
            outbox.mark_failed(session, row, worker, error=f"could not compose: {error}")
        return None, "failed"
    if message is None:
        with write_turn():
            outbox.mark_skipped(session, row.id, worker, reason=reason)
        return None, "skipped"
    return message, ""


def _record(
    session: Session,
    marks: Connection,
    sending: _Sending,
    worker: str,
) -> str:
    """Wait for a message handed to the sender and record how it went; returns it as a
    word. Raises Halted, recording nothing, when the server refused us rather than the
    recipient."""
    row, message = sending.row, sending.message
    try:
        sending.future.result()
    except Permanent as error:
        with write_turn():
            outbox.mark_permanent(
                session,
                row,
                worker,
                error=str(error),
                bounce_limit=current_app.config["MAIL_BOUNCE_LIMIT"],
            )
        return "failed"
    except Transient as error:
        with write_turn():
            outbox.mark_transient(session, row, worker, error=str(error), now=utcnow())
        return "retried"
    with writing(marks):
        outbox.mark_sent(marks, row.id, worker, smtp_id=message.message_id, now=utcnow())
    if row.subscriber is not None and row.subscriber.hard_bounces:
        with write_turn():
            outbox.reset_bounces(session, row.subscriber)
    return "sent"


def _recipient(row: OutboxMessage) -> str:
    """The address a message goes to: a team member's for an alert, else its subscriber's."""
    if row.kind is OutboxKind.ALERT and row.member is not None:
        return row.member.email
    return compose.subscriber_of(row).email


@dataclass(frozen=True)
class _Sending:
    """A message on its way to the server, on the sender thread."""

    row: OutboxMessage
    message: compose.Composed
    future: Future[None]


def _load(session: Session, row_ids: list[int]) -> dict[int, OutboxMessage]:
    """A claimed batch with everything composing it reads, in three queries, not five a
    message."""
    rows = session.scalars(
        select(OutboxMessage)
        .where(OutboxMessage.id.in_(row_ids))
        .options(
            joinedload(OutboxMessage.subscriber),
            joinedload(OutboxMessage.member),
            joinedload(OutboxMessage.product),
            joinedload(OutboxMessage.note).selectinload(Note.translations),
        )
        .execution_options(populate_existing=True)
    ).unique()
    return {row.id: row for row in rows}


def deliver_due(transport: Transport, *, kinds: Collection[OutboxKind] | None = None) -> Report:
    """Send everything due, a claimed batch at a time, until the queue is empty; only
    messages of ``kinds`` when given (the web sends alerts itself, as the worker may be
    what is down)."""
    config = current_app.config
    batch, rate = config["MAIL_BATCH"], config["MAIL_RATE"]
    lease = max(MIN_LEASE, timedelta(seconds=3 * batch / rate)) if rate else MIN_LEASE
    # Its own session keeps what it loaded across the commit after each message; each
    # batch is loaded afresh, so nothing stays stale for long.
    with (
        Session(db.engine, expire_on_commit=False) as session,
        widget_engine().connect() as marks,
        _quick_commits(marks),
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="tidings-smtp") as sender,
    ):
        run = _Run(
            session,
            marks,
            transport,
            sender,
            Pacer(rate),
            outbox.worker_name(),
            lease,
            batch,
            kinds,
        )
        while run.next_batch():
            pass
        return run.report


@contextlib.contextmanager
def _quick_commits(marks: Connection) -> Iterator[None]:
    """On PostgreSQL, do not wait for the disk when recording a message as sent.

    A killed worker loses nothing by it: the server still writes the commit. Only a
    crash of the database server itself can forget the last fraction of a second of
    "sent" marks, and then those few messages go out again; none is ever lost. Waiting
    for the flush after every message halved the rate on a durable server.
    """
    if marks.dialect.name != "postgresql":
        yield
        return
    marks.exec_driver_sql("SET synchronous_commit TO off")
    try:
        yield
    finally:
        marks.exec_driver_sql("RESET synchronous_commit")


@dataclass
class _Run:
    session: Session
    marks: Connection
    transport: Transport
    sender: ThreadPoolExecutor
    pacer: Pacer
    worker: str
    lease: timedelta
    batch: int
    kinds: Collection[OutboxKind] | None
    report: Report = field(default_factory=Report)
    server_took_mail: bool = False

    def next_batch(self) -> bool:
        """Claim and send one batch; False when nothing was due or the server refused us.

        Each message is composed while the one before it is with the server, which
        otherwise sits idle waiting for us; that one is recorded before the next is handed
        over, so a killed worker still leaves at most one message sent and not recorded.
        """
        session, worker = self.session, self.worker
        with write_turn():
            claimed = outbox.claim(
                session, worker, now=utcnow(), limit=self.batch, lease=self.lease, kinds=self.kinds
            )
        if not claimed:
            return False
        # Stop well before the lease ends, so no other worker ever takes a message back
        # while this one may still send it.
        deadline = time.monotonic() + self.lease.total_seconds() / 2
        rows = _load(session, claimed)
        sending: _Sending | None = None
        for position, row_id in enumerate(claimed):
            late = time.monotonic() > deadline
            row = rows.get(row_id)  # None: its subscriber was removed meanwhile
            message, outcome = None, ""
            if row is not None and not late:
                message, outcome = _prepare(session, row, worker)
            if not self._settle(sending):
                return False  # what this worker still holds was put back by the pause
            sending = None
            if late:
                with write_turn():
                    outbox.release(session, claimed[position:], worker, now=utcnow())
                return True
            if row is None:
                continue
            if message is None:
                self._count(outcome)
                continue
            self.pacer.wait()
            future = self.sender.submit(
                self.transport.send, message, compose.sender_address(), _recipient(row)
            )
            sending = _Sending(row, message, future)
        return self._settle(sending)

    def _settle(self, sending: _Sending | None) -> bool:
        """Record the message with the server, if any; False when the server refused us,
        after pausing all sending."""
        if sending is None:
            return True
        try:
            outcome = _record(self.session, self.marks, sending, self.worker)
        except Halted as error:
            with write_turn():
                self.report.paused = outbox.hold(
                    self.session, self.worker, error=str(error), now=utcnow()
                )
            return False
        self._count(outcome)
        if outcome == "sent" and not self.server_took_mail:
            # Once a run: the server takes our mail, so nothing need wait for it any more.
            self.server_took_mail = True
            with write_turn():
                outbox.resume(self.session, now=utcnow())
        return True

    def _count(self, outcome: str) -> None:
        setattr(self.report, outcome, getattr(self.report, outcome) + 1)


class NotSent(Exception):
    """A test message that could not be sent; says why."""


def send_test(note: Note, address: str, sender: Transport) -> None:
    """Send ``note`` to ``address`` at once, as its subscribers get it, marked as a test.

    Its links are those of a stand-in subscriber, so they lead to a page saying the
    subscription does not exist rather than acting on anyone's.
    """
    stand_in = Subscriber(
        id=0,
        product_id=note.product_id,
        email=address,
        status=SubscriberStatus.CONFIRMED,
        frequency=Frequency.EVERY,
        categories=[],
    )
    domain = compose.sender_address().rpartition("@")[2] or "localhost"
    message = compose.release_note(stand_in, note, make_msgid("tidings-test", domain), test=True)
    try:
        sender.send(message, compose.sender_address(), address)
    except Failure as error:
        raise NotSent(str(error)) from error
    finally:
        sender.close()


def housekeeping() -> dict[str, int]:
    """The worker's minute: reclaim what dead workers held, queue notes that went live,
    digests whose time came and notices left unacknowledged too long."""
    with write_turn():
        released = outbox.release_abandoned(db.session(), now=utcnow())
    with write_turn():
        notes = mailing.queue_due_notes(db.session(), now=utcnow())
    with write_turn():
        digests = mailing.queue_digests(db.session(), now=utcnow())
    # Who is due is read outside the turn: other writers need not wait for the read.
    now = utcnow()
    due = notices.due_escalations(db.session(), now=now)
    escalations = 0
    if due:
        with write_turn():
            escalations = notices.escalate(db.session(), due, now=now)
            db.session.commit()
    return {
        "released": released,
        "note_messages": notes,
        "digests": digests,
        "escalations": escalations,
    }
