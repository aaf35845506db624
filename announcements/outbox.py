"""The outbox's life cycle: claim, send, and record; never lose a message, never double one.

A worker claims a small batch by moving it to ``sending`` under its own name, with a
lease (``next_attempt_at``) it cannot outlive, and records each message as sent in
its own commit right after the server accepted it. Killed at any moment, it leaves
at most the one message in flight unrecorded; its other claims go back to the queue
when its process is found dead (on the same host) or its lease runs out (elsewhere).

A refusal of one recipient is that message's to retry or fail, and counts against the
address; a refusal of us (the server unreachable, our sender address or the message
refused) pauses all sending instead, which no message and no address is charged for.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import cast

from sqlalchemy import ColumnElement, Connection, Table, bindparam, func, select, update
from sqlalchemy.orm import Session

from announcements.models import (
    OutboxKind,
    OutboxMessage,
    OutboxStatus,
    Subscriber,
    SubscriberStatus,
)

# Transient failures are retried this many times, waiting twice as long each time.
MAX_ATTEMPTS = 8
FIRST_RETRY = timedelta(seconds=30)
LONGEST_RETRY = timedelta(hours=2)
# A pause is tried again at most this long after the last refusal: one MAIL FROM costs the
# server nothing, and once the operator has fixed the cause the mail goes out soon.
LONGEST_PAUSE = timedelta(minutes=15)


def _started(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot), or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; the fields after it do not.
    return stat.rsplit(")", 1)[1].split()[19]


def worker_name() -> str:
    """This process, as written on the messages it claims: host, pid and start time."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_started(pid) or 0}"


def _is_gone(name: str, host: str) -> bool:
    """Whether the worker named ``name`` ran on this host and is no longer running."""
    parts = name.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != host or not parts[1].isdigit():
        return False
    return _started(int(parts[1])) != parts[2]


def release_abandoned(session: Session, *, now: datetime) -> int:
    """Put back in the queue what dead workers had claimed; returns how many messages."""
    host = socket.gethostname()
    holders = session.scalars(
        select(OutboxMessage.claimed_by)
        .where(OutboxMessage.status == OutboxStatus.SENDING)
        .distinct()
    ).all()
    gone = [name for name in holders if name and _is_gone(name, host)]
    expired = OutboxMessage.next_attempt_at < now
    abandoned = expired | OutboxMessage.claimed_by.in_(gone) if gone else expired
    result = session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.status == OutboxStatus.SENDING, abandoned)
        .values(status=OutboxStatus.QUEUED, claimed_by=None, next_attempt_at=now)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return int(getattr(result, "rowcount", 0) or 0)


def claim(
    session: Session,
    worker: str,
    *,
    now: datetime,
    limit: int,
    lease: timedelta,
    kinds: Collection[OutboxKind] | None = None,
) -> list[int]:
    """Claim up to ``limit`` due messages for ``worker`` until ``now + lease``, oldest first;
    only of ``kinds`` when given.

    On PostgreSQL, workers skip each other's locked rows instead of waiting; on SQLite
    the statement runs alone, as SQLite writes one at a time.
    """
    # A CTE, materialised, so the LIMIT holds: PostgreSQL may run an IN (subquery) with
    # FOR UPDATE SKIP LOCKED again for each row and claim far more than asked.
    of_kinds = [] if kinds is None else [OutboxMessage.kind.in_(kinds)]
    due = (
        select(OutboxMessage.id)
        .where(
            OutboxMessage.status == OutboxStatus.QUEUED,
            OutboxMessage.next_attempt_at <= now,
            *of_kinds,
        )
        .order_by(OutboxMessage.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .cte("due")
        .prefix_with("MATERIALIZED")
    )
    claimed = session.scalars(
        update(OutboxMessage)
        .where(OutboxMessage.id == due.c.id, OutboxMessage.status == OutboxStatus.QUEUED)
        .values(status=OutboxStatus.SENDING, claimed_by=worker, next_attempt_at=now + lease)
        .returning(OutboxMessage.id)
        .execution_options(synchronize_session=False)
    ).all()
    session.commit()
    return sorted(claimed)


def _finish(session: Session, row_id: int, worker: str, **values: object) -> None:
    """Record a claimed message's outcome, if this worker still holds it, and commit."""
    session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == row_id, OutboxMessage.claimed_by == worker)
        .values(claimed_by=None, paused_at=None, **values)
        .execution_options(synchronize_session=False)
    )
    session.commit()


_outbox = cast(Table, OutboxMessage.__table__)
# Built once: recording a sent message is the step run for every message, and building
# the statement each time cost as much as running it.
_SENT = (
    update(_outbox)
    .where(_outbox.c.id == bindparam("row_id"), _outbox.c.claimed_by == bindparam("worker"))
    .values(
        status=OutboxStatus.SENT,
        claimed_by=None,
        attempts=_outbox.c.attempts + 1,
        last_error=None,
        paused_at=None,
        message_id=bindparam("smtp_id"),
        sent_at=bindparam("now"),
    )
)


def mark_sent(
    connection: Connection, row_id: int, worker: str, *, smtp_id: str, now: datetime
) -> None:
    """Record a message as sent, on a connection of its own: on PostgreSQL an autocommit
    one, so this is one round trip rather than BEGIN, UPDATE and COMMIT. The caller
    commits (a no-op in autocommit)."""
    connection.execute(_SENT, {"row_id": row_id, "worker": worker, "smtp_id": smtp_id, "now": now})


def mark_skipped(session: Session, row_id: int, worker: str, *, reason: str) -> None:
    _finish(session, row_id, worker, status=OutboxStatus.SKIPPED, last_error=reason)


def retry_delay(attempts: int) -> timedelta:
    """How long to wait after the ``attempts``-th failed attempt."""
    return min(FIRST_RETRY * 2 ** max(attempts - 1, 0), LONGEST_RETRY)


def mark_transient(
    session: Session, message: OutboxMessage, worker: str, *, error: str, now: datetime
) -> None:
    """The server deferred the recipient (4xx to RCPT TO): back to the queue, later; failed
    after MAX_ATTEMPTS."""
    attempts = message.attempts + 1
    if attempts >= MAX_ATTEMPTS:
        mark_failed(session, message, worker, error=error)
        return
    _finish(
        session,
        message.id,
        worker,
        status=OutboxStatus.QUEUED,
        attempts=attempts,
        next_attempt_at=now + retry_delay(attempts),
        last_error=error[:2000],
    )


def mark_permanent(
    session: Session, message: OutboxMessage, worker: str, *, error: str, bounce_limit: int
) -> None:
    """The server refused the recipient (5xx to RCPT TO): failed for good, and one more hard
    bounce for a subscriber's address; after ``bounce_limit`` in a row it is mailed no more.
    A team member's address (an alert's) keeps no count: their account is theirs to fix."""
    subscriber = message.subscriber
    if subscriber is not None:
        subscriber.hard_bounces += 1
        if subscriber.hard_bounces >= bounce_limit and subscriber.status is not (
            SubscriberStatus.UNSUBSCRIBED
        ):
            subscriber.status = SubscriberStatus.BOUNCED
    mark_failed(session, message, worker, error=error)


def mark_failed(session: Session, message: OutboxMessage, worker: str, *, error: str) -> None:
    """Give up on a message for good."""
    _finish(
        session,
        message.id,
        worker,
        status=OutboxStatus.FAILED,
        attempts=message.attempts + 1,
        last_error=error[:2000],
    )


def release(session: Session, message_ids: Sequence[int], worker: str, *, now: datetime) -> None:
    """Give back claimed messages this worker will not send now."""
    if not message_ids:
        return
    session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(message_ids), OutboxMessage.claimed_by == worker)
        .values(status=OutboxStatus.QUEUED, claimed_by=None, next_attempt_at=now)
        .execution_options(synchronize_session=False)
    )
    session.commit()


@dataclass(frozen=True)
class Pause:
    """The mail server taking nothing from us: since when, its last answer, the next try."""

    since: datetime
    error: str
    retry_at: datetime


_WAITING = (OutboxStatus.QUEUED, OutboxStatus.SENDING)


def hold(session: Session, worker: str, *, error: str, now: datetime) -> Pause:
    """Stop sending until the next try: this worker's claims and every message due before
    then go back to the queue until then, none charged an attempt - the server refused us,
    not them. Commits.

    Each wait is as long as the refusals have lasted so far (FIRST_RETRY at least,
    LONGEST_PAUSE at most), so the waits double. The outage's start is kept on the
    messages themselves, so a restarted worker waits as long as this one would have.
    """
    since = (
        session.scalar(
            select(func.min(OutboxMessage.paused_at)).where(OutboxMessage.status.in_(_WAITING))
        )
        or now
    )
    retry_at = now + min(max(now - since, FIRST_RETRY), LONGEST_PAUSE)
    mine = (OutboxMessage.status == OutboxStatus.SENDING) & (OutboxMessage.claimed_by == worker)
    due = (OutboxMessage.status == OutboxStatus.QUEUED) & (OutboxMessage.next_attempt_at < retry_at)
    session.execute(
        update(OutboxMessage)
        .where(mine | due)
        .values(
            status=OutboxStatus.QUEUED,
            claimed_by=None,
            next_attempt_at=retry_at,
            paused_at=since,
            last_error=error[:2000],
        )
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return Pause(since, error, retry_at)


def resume(session: Session, *, now: datetime) -> None:
    """The server took a message again: what a pause held back is due now. Commits."""
    session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.status == OutboxStatus.QUEUED, OutboxMessage.paused_at.is_not(None))
        .values(paused_at=None, next_attempt_at=now)
        .execution_options(synchronize_session=False)
    )
    session.commit()


def pause_of(session: Session, note_id: int) -> Pause | None:
    """The pause holding back the note's queued messages, if one does."""
    return _held(session, OutboxMessage.note_id == note_id)


def pause_now(session: Session, product_id: int | None = None) -> Pause | None:
    """The pause holding back the product's queued messages, or anyone's when
    ``product_id`` is None, if one does."""
    return _held(session, *([] if product_id is None else [OutboxMessage.product_id == product_id]))


def _held(session: Session, *scope: ColumnElement[bool]) -> Pause | None:
    """The pause holding back the queued messages within ``scope``, if one does."""
    held = session.execute(
        select(OutboxMessage.paused_at, OutboxMessage.last_error, OutboxMessage.next_attempt_at)
        .where(
            *scope,
            OutboxMessage.status == OutboxStatus.QUEUED,
            OutboxMessage.paused_at.is_not(None),
        )
        .order_by(OutboxMessage.next_attempt_at.desc())
        .limit(1)
    ).first()
    if held is None:
        return None
    since, error, retry_at = held
    # Never None: the query takes paused messages only.
    return Pause(cast(datetime, since), error or "", retry_at)


def reset_bounces(session: Session, subscriber: Subscriber) -> None:
    """A delivered message ends a run of hard bounces."""
    subscriber.hard_bounces = 0
    session.commit()
