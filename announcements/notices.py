"""Notices users must acknowledge: who was shown one, who acknowledged it, and the
e-mail that follows it to those who have not, after the days its editor chose.

A note that ``requires_acknowledgement`` is shown by the widget as a dialog until its
user chooses "I understand" (:class:`~announcements.models.Acknowledgement`). Its
**exposed** users are those the widget showed it to or would have: seen since it went
out (and, for a note that expires, first seen before it did), on a version that includes
it or on none the host told us of, as Support impact counts exposure
(:mod:`announcements.support_impact`), whose attributes match its audience; and anyone
who acknowledged it, who was shown it by definition. **Not yet**: exposed users without
an acknowledgement.

When ``escalate_after_days`` is set, the worker's minute (:func:`escalate_due`) e-mails
the notice, once, to each exposed user still without an acknowledgement that many days
after it went out, if they are linked to a confirmed subscriber: an
:class:`~announcements.models.Escalation` row and an outbox message of kind
:attr:`~announcements.models.OutboxKind.ESCALATION`, in one transaction. Whether the
message is still owed (still published, still not acknowledged) is decided when it is
sent (``app.mail.delivery``).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, Select, Table, and_, exists, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from announcements import audit, mailing, support_impact, targeting
from announcements.errors import InvalidTransition, ValidationFailed
from announcements.mailing_list import csv_safe
from announcements.models import (
    Acknowledgement,
    EndUser,
    Escalation,
    Note,
    NoteStatus,
    OutboxKind,
    Subscriber,
    SubscriberStatus,
    TeamMember,
    outward_clause,
    status_clause,
)

# A note that never expires was shown to everyone seen since it went out.
_NEVER = datetime(9999, 12, 31, tzinfo=UTC)
# Users read at a time when an audience is tested in Python.
_BATCH = 2_000
# The escalated users a page lists, newest first; the count says how many in all.
ESCALATED_LISTED = 50
MAX_EXPORT_ATTRIBUTES = 20


@dataclass(frozen=True)
class NoticeStatus:
    """Where a notice stands: ``exposed`` = ``acknowledged`` + ``not_yet``."""

    exposed: int
    acknowledged: int
    not_yet: int
    escalated: int


@dataclass(frozen=True)
class Escalated:
    """One user the notice was e-mailed to, and the address it went to (None: that
    subscriber has been removed since)."""

    external_id: str
    email: str | None
    escalated_at: datetime


def escalates_at(note: Note) -> datetime | None:
    """When a notice starts being e-mailed to those who have not acknowledged it; None:
    never, or not published."""
    days = note.escalate_after_days
    if not note.requires_acknowledgement or note.published_at is None or days is None:
        return None
    return note.published_at + timedelta(days=days)


def _exposed(session: Session, note: Note) -> ColumnElement[bool]:
    """The note's product's users it went out to, audience aside (see the module's
    docstring): Support impact's exposure, with the note's life for its window."""
    assert note.published_at is not None  # noqa: S101 - callers take published notes
    present = support_impact.app_versions(session, note.product_id)
    return and_(
        EndUser.product_id == note.product_id,
        support_impact._exposed(
            note.published_at,
            note.expires_at or _NEVER,
            support_impact.including(note.version, present),
        ),
    )


def _not_acknowledged(note: Note) -> ColumnElement[bool]:
    return ~exists().where(
        Acknowledgement.note_id == note.id, Acknowledgement.end_user_id == EndUser.id
    )


def _concerned(session: Session, note: Note, statement: Select[Any]) -> Iterator[Any]:
    """The rows of ``statement`` (which selects ``EndUser.attributes`` second) whose user
    the note's audience takes in, read a batch at a time; audience rules are tested in
    Python, by the same code as the widget's."""
    for row in session.execute(statement.execution_options(yield_per=_BATCH)):
        if targeting.matches(note.audience, row[1] or {}):
            yield row


def status(session: Session, note: Note) -> NoticeStatus:
    """Exposed, acknowledged, not yet and escalated users of a published notice."""
    acknowledged = session.scalar(
        select(func.count()).select_from(Acknowledgement).where(Acknowledgement.note_id == note.id)
    )
    escalated = session.scalar(
        select(func.count()).select_from(Escalation).where(Escalation.note_id == note.id)
    )
    waiting = select(EndUser.id, EndUser.attributes).where(
        _exposed(session, note), _not_acknowledged(note)
    )
    if note.audience is None:
        not_yet = session.scalar(select(func.count()).select_from(waiting.subquery()))
    else:
        not_yet = sum(1 for _ in _concerned(session, note, waiting))
    return NoticeStatus(
        exposed=(acknowledged or 0) + (not_yet or 0),
        acknowledged=acknowledged or 0,
        not_yet=not_yet or 0,
        escalated=escalated or 0,
    )


def escalated(session: Session, note: Note, *, limit: int = ESCALATED_LISTED) -> list[Escalated]:
    """The users the notice was e-mailed to, newest first, at most ``limit``."""
    rows = session.execute(
        select(EndUser.external_id, Subscriber.email, Escalation.escalated_at)
        .join(EndUser, EndUser.id == Escalation.end_user_id)
        .outerjoin(Subscriber, Subscriber.id == Escalation.subscriber_id)
        .where(Escalation.note_id == note.id)
        .order_by(Escalation.escalated_at.desc(), EndUser.external_id)
        .limit(limit)
    )
    return [Escalated(*row) for row in rows]


def attribute_names(session: Session, note: Note, *, sample: int = 1_000) -> list[str]:
    """The attribute names the host sends for the note's users, for the export's choice:
    those of the most recently seen users, sorted."""
    rows: Iterable[dict[str, Any] | None] = session.scalars(
        select(EndUser.attributes)
        .where(EndUser.product_id == note.product_id)
        .order_by(EndUser.last_seen_at.desc())
        .limit(sample)
    )
    return sorted({name for attributes in rows for name in (attributes or {})})


def chosen_attributes(names: Sequence[str]) -> list[str]:
    """The attribute names chosen for the export, blanks and repeats dropped; raise
    ValidationFailed when one is not an attribute name or there are too many."""
    chosen = list(dict.fromkeys(name.strip() for name in names if name.strip()))
    if len(chosen) > MAX_EXPORT_ATTRIBUTES:
        raise ValidationFailed({"attribute": f"Choose at most {MAX_EXPORT_ATTRIBUTES} attributes."})
    for name in chosen:
        if not targeting.ATTRIBUTE_PATTERN.fullmatch(name):
            shown = name if len(name) <= 64 else name[:64] + "…"
            raise ValidationFailed(
                {"attribute": f"“{shown}” is not an attribute name, such as plan or team."}
            )
    return chosen


def unacknowledged(session: Session, note: Note, attributes: Sequence[str]) -> Iterator[list[str]]:
    """The exposed users who have not acknowledged the notice, as CSV rows: a header, then
    their external id and the ``attributes`` chosen (blank where a user has none), each
    cell kept from being read as a formula."""
    yield ["external_id", *attributes]
    statement = (
        select(EndUser.external_id, EndUser.attributes)
        .where(_exposed(session, note), _not_acknowledged(note))
        .order_by(EndUser.external_id)
    )
    for external_id, values in _concerned(session, note, statement):
        cells = [(values or {}).get(name) for name in attributes]
        yield [csv_safe(external_id), *("" if v is None else csv_safe(str(v)) for v in cells)]


def export_unacknowledged(
    session: Session,
    note: Note,
    attributes: Sequence[str],
    *,
    by: TeamMember | None,
    now: datetime,
) -> Iterator[str]:
    """:func:`unacknowledged` as CSV, a line at a time. It names users, so the export is
    in the audit log before the first line goes out; raise ValidationFailed on a bad
    attribute, InvalidTransition for a note that is no notice or has not gone out."""
    chosen = chosen_attributes(attributes)
    if not note.requires_acknowledgement:
        raise InvalidTransition("This note asks nobody to acknowledge it.")
    if note.published_at is None or note.published_at > now:
        raise InvalidTransition("The note has not gone out: nobody has been asked yet.")
    summary = "Downloaded who has not acknowledged it as CSV, with " + (
        ", ".join(chosen) if chosen else "their ids only"
    )
    audit.record(
        session, note.product, by, "note.unacknowledged_exported", summary, note=note, now=now
    )
    session.commit()
    return _csv_lines(unacknowledged(session, note, chosen))


def _csv_lines(rows: Iterable[Sequence[str]]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for row in rows:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow(row)
        yield buffer.getvalue()


def _insert_escalation(session: Session) -> Any:
    """An INSERT of an escalation that leaves one another worker wrote first as it is,
    and says whether it wrote."""
    table = cast(Table, Escalation.__table__)
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing().returning(table.c.end_user_id)


def escalate_due(session: Session, *, now: datetime) -> int:
    """E-mail each notice whose days without acknowledgement have passed to its exposed
    users still without one who are linked to a confirmed subscriber, once per user (the
    first such subscriber); returns how many were queued. In the caller's transaction."""
    notes = session.scalars(
        select(Note)
        .where(
            outward_clause(),
            status_clause(NoteStatus.PUBLISHED, now),
            Note.requires_acknowledgement.is_(True),
            Note.escalate_after_days.is_not(None),
        )
        .order_by(Note.id)
    ).all()
    queued = 0
    for note in notes:
        due = escalates_at(note)
        if due is None or due > now:
            continue
        if note.expires_at is not None and note.expires_at <= now:
            continue  # the widget no longer shows it: nothing to acknowledge
        queued += _escalate(session, note, now)
    return queued


def _escalate(session: Session, note: Note, now: datetime) -> int:
    """Escalate one due notice; returns how many messages were queued."""
    subscriber = (
        select(func.min(Subscriber.id))
        .where(
            Subscriber.end_user_id == EndUser.id,
            Subscriber.product_id == note.product_id,
            Subscriber.status == SubscriberStatus.CONFIRMED,
        )
        .scalar_subquery()
    )
    statement = select(EndUser.id, EndUser.attributes, subscriber).where(
        _exposed(session, note),
        _not_acknowledged(note),
        ~exists().where(Escalation.note_id == note.id, Escalation.end_user_id == EndUser.id),
        subscriber.is_not(None),
    )
    # Read first, then written: SQLite cannot write while a read is still open.
    due = [
        (user_id, subscriber_id)
        for user_id, _, subscriber_id in _concerned(session, note, statement)
    ]
    insert, queued = _insert_escalation(session), 0
    for user_id, subscriber_id in due:
        written = session.execute(
            insert,
            {
                "note_id": note.id,
                "end_user_id": user_id,
                "subscriber_id": subscriber_id,
                "escalated_at": now,
            },
        ).first()
        if written is not None:
            queued += mailing.queue_one(
                session, note, subscriber_id, OutboxKind.ESCALATION, now=now
            )
    return queued


def acknowledged_by(session: Session, note: Note, subscriber: Subscriber) -> bool:
    """Whether the end user ``subscriber`` is linked to has acknowledged ``note``."""
    if subscriber.end_user_id is None:
        return False
    return session.get(Acknowledgement, (subscriber.end_user_id, note.id)) is not None
