"""Notices users must acknowledge: who was shown one, who acknowledged it, and the
e-mail that follows it to those who have not, after the days its editor chose.

A note that ``requires_acknowledgement`` is shown by the widget as a dialog until its
user chooses "I understand" (:class:`~announcements.models.Acknowledgement`). Its
**exposed** users are those the widget showed it to or would have: seen since it went
out (and, for a note that expires, first seen before it did), on a version that includes
it or on none the host told us of, as Support impact counts exposure
(:mod:`announcements.support_impact`), whose attributes match its audience. Only their
acknowledgements count: one from a user outside its audience (whose attributes changed
since) is neither exposed nor acknowledged. **Not yet**: exposed users without an
acknowledgement. Counting them reads every exposed user, so the hourly roll-up does it
(:func:`count`, into the note's Support impact figures) and the page shows those figures
with when they were counted (:func:`status`); only the owner's export reads them live.

When ``escalate_after_days`` is set, the worker's minute (:func:`escalate_due`) e-mails
the notice, once, to each exposed user still without an acknowledgement whose own
exposure began that many days ago (when the widget showed it to them, which records a
read; for one with no read yet, when it went out or when they were first seen, whichever
is later), if they are linked to a confirmed subscriber: an
:class:`~announcements.models.Escalation` row and an outbox message of kind
:attr:`~announcements.models.OutboxKind.ESCALATION`, in one transaction. Whether the
message is still owed (still published and unexpired, still a notice, still not
acknowledged) is decided when it is sent (``app.mail.delivery``).
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
    ReadReceipt,
    Subscriber,
    SubscriberStatus,
    SupportImpact,
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
class Acknowledgements:
    """Who was shown a notice and who acknowledged it: ``exposed`` = ``acknowledged`` +
    ``not_yet``."""

    exposed: int
    acknowledged: int
    not_yet: int


@dataclass(frozen=True)
class NoticeStatus:
    """Where a notice stands: its acknowledgements as the roll-up last counted them and
    when (both None before it has), and how many users it was e-mailed to (now)."""

    counted: Acknowledgements | None
    counted_at: datetime | None
    escalated: int


@dataclass(frozen=True)
class Due:
    """An escalation to write: the notice, its user and the subscriber it goes to."""

    note: Note
    end_user_id: int
    subscriber_id: int


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


def _exposed(
    session: Session, note: Note, present: Sequence[str] | None = None
) -> ColumnElement[bool]:
    """The note's product's users it went out to, audience aside (see the module's
    docstring): Support impact's exposure, with the note's life for its window.
    ``present``: the versions the product's users run, when the caller has them."""
    assert note.published_at is not None  # noqa: S101 - callers take published notes
    if present is None:
        present = support_impact.app_versions(session, note.product_id)
    return and_(
        EndUser.product_id == note.product_id,
        support_impact.exposed_clause(
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


def count(
    session: Session, note: Note, *, now: datetime, present: Sequence[str] | None = None
) -> Acknowledgements | None:
    """Count a notice's exposed users and which of them acknowledged it, reading every
    exposed user (the hourly roll-up's work, not a page's); None for a note that is no
    notice or has not gone out by ``now``."""
    if not note.requires_acknowledgement or note.published_at is None or note.published_at > now:
        return None
    acknowledgement = and_(
        Acknowledgement.note_id == note.id, Acknowledgement.end_user_id == EndUser.id
    )
    if note.audience is None:
        exposed, acknowledged = session.execute(
            select(func.count(), func.count(Acknowledgement.end_user_id))
            .select_from(EndUser)
            .outerjoin(Acknowledgement, acknowledgement)
            .where(_exposed(session, note, present))
        ).one()
    else:
        exposed = acknowledged = 0
        rows = (
            select(Acknowledgement.end_user_id, EndUser.attributes)
            .select_from(EndUser)
            .outerjoin(Acknowledgement, acknowledgement)
            .where(_exposed(session, note, present))
        )
        for row in _concerned(session, note, rows):
            exposed += 1
            acknowledged += row[0] is not None
    return Acknowledgements(
        exposed=exposed, acknowledged=acknowledged, not_yet=exposed - acknowledged
    )


def status(session: Session, note: Note, impact: SupportImpact | None) -> NoticeStatus:
    """Where a published notice stands: its counts from its roll-up row ``impact``
    (:func:`announcements.support_impact.note_impact`), and how many it was e-mailed to."""
    escalated = session.scalar(
        select(func.count()).select_from(Escalation).where(Escalation.note_id == note.id)
    )
    counted = impact.figures.get("acknowledgement") if impact is not None else None
    return NoticeStatus(
        counted=Acknowledgements(**counted) if counted else None,
        counted_at=impact.computed_at if counted and impact is not None else None,
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
    in the audit log before the first line goes out: the caller commits before streaming
    it. Raise ValidationFailed on a bad attribute, InvalidTransition for a note that is no
    notice or has not gone out."""
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
    return csv_lines(unacknowledged(session, note, chosen))


def csv_lines(rows: Iterable[Sequence[str]]) -> Iterator[str]:
    buffer = io.StringIO()
    # Every cell quoted: in a locale whose separator is ";" an unquoted "x;=cmd" would
    # split into a cell that starts with "=", past csv_safe.
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL)
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
    """E-mail each notice to its users who are due (see :func:`due_escalations`), once per
    user; returns how many were queued. In the caller's transaction."""
    return escalate(session, due_escalations(session, now=now), now=now)


def due_escalations(session: Session, *, now: datetime) -> list[Due]:
    """The escalations owed at ``now``: for each published notice with days set, its
    exposed users still without an acknowledgement or an escalation, exposed for at least
    those days, who are linked to a confirmed subscriber (the first such, by id). Only
    reads: the worker reads outside its turn to write, and writes them with
    :func:`escalate`."""
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
    due: list[Due] = []
    for note in notes:
        starts = escalates_at(note)
        if starts is None or starts > now:
            continue
        if note.expires_at is not None and note.expires_at <= now:
            continue  # the widget no longer shows it: nothing to acknowledge
        due.extend(_due_for(session, note, now))
    return due


def _due_for(session: Session, note: Note, now: datetime) -> list[Due]:
    """One due notice's users to e-mail. Driven from the product's confirmed subscribers
    linked to an end user (a few, through their index), not from its exposed users (a
    million, every minute)."""
    assert note.escalate_after_days is not None  # noqa: S101 - due notices have days
    exposed_before = now - timedelta(days=note.escalate_after_days)
    read = and_(ReadReceipt.note_id == note.id, ReadReceipt.end_user_id == EndUser.id)
    # A user's exposure began when the widget showed them the notice (showing it records
    # a read), or, with no read yet, when it went out or they were first seen, whichever
    # is later; it went out before ``exposed_before`` already (the notice is due).
    began = func.coalesce(ReadReceipt.read_at, EndUser.first_seen_at)
    statement = (
        select(EndUser.id, EndUser.attributes, Subscriber.id)
        .select_from(Subscriber)
        .join(EndUser, EndUser.id == Subscriber.end_user_id)
        .outerjoin(ReadReceipt, read)
        .where(
            Subscriber.product_id == note.product_id,
            Subscriber.status == SubscriberStatus.CONFIRMED,
            Subscriber.end_user_id.is_not(None),
            _exposed(session, note),
            began <= exposed_before,
            _not_acknowledged(note),
            ~exists().where(Escalation.note_id == note.id, Escalation.end_user_id == EndUser.id),
        )
        .order_by(Subscriber.id)
    )
    due: dict[int, Due] = {}
    for user_id, _, subscriber_id in _concerned(session, note, statement):
        due.setdefault(user_id, Due(note, user_id, subscriber_id))
    return list(due.values())


def escalate(session: Session, due: Iterable[Due], *, now: datetime) -> int:
    """Write the escalations ``due`` and queue their messages; one another worker wrote
    first is left as it is. Returns how many were queued. In the caller's transaction."""
    insert, queued = _insert_escalation(session), 0
    for one in due:
        written = session.execute(
            insert,
            {
                "note_id": one.note.id,
                "end_user_id": one.end_user_id,
                "subscriber_id": one.subscriber_id,
                "escalated_at": now,
            },
        ).first()
        if written is not None:
            queued += mailing.queue_one(
                session, one.note, one.subscriber_id, OutboxKind.ESCALATION, now=now
            )
    return queued


def acknowledged_by(session: Session, note: Note, subscriber: Subscriber) -> bool:
    """Whether the end user ``subscriber`` is linked to has acknowledged ``note``."""
    if subscriber.end_user_id is None:
        return False
    return session.get(Acknowledgement, (subscriber.end_user_id, note.id)) is not None
