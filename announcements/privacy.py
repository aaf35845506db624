"""An end user's or a subscriber's data, on request: all of it as JSON, or erased.

Erasing keeps the figures true by making the person's rows anonymous rather than
deleting the rows the figures count. The end user's row stays as a tombstone that names
no one (a random external id, no attributes, no address key, ``erased_at`` set); their
reads, acknowledgements, hold-back groups, escalations, days seen and agent sends stay
as they are, pointing at it; a reaction keeps its reaction and loses its comment, a help
request its query, a ticket its requester and subject. A subscriber keeps its row too,
unsubscribed under a made-up address, and its mail loses what it held. What was erased
is audited with counts only, never the id or address it was about.

Every function here works inside the caller's transaction; the caller commits. The
widget's kept answers for the erased id are forgotten by ``app.widget_cache``'s session
hook, which :func:`erase_user_row` lets see the id before it goes.
"""

from __future__ import annotations

import secrets
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import flag_modified

from announcements import agent_sends, audit, reads, subscriptions, tickets
from announcements.errors import NotFound
from announcements.models import (
    Acknowledgement,
    AgentSend,
    AuditEvent,
    EndUser,
    EndUserDay,
    Escalation,
    HelpRequest,
    HelpShown,
    HoldbackAssignment,
    Note,
    OutboxMessage,
    OutboxStatus,
    Product,
    Reaction,
    ReadReceipt,
    Subscriber,
    SubscriberStatus,
    TeamMember,
    Ticket,
)

# The external id of an erased user begins with this; the rest is random.
TOMBSTONE_PREFIX = "erased:"
# An erased subscriber's address: unique per row (the list is unique by address) and in
# a domain that can never receive mail (RFC 2606).
ERASED_DOMAIN = "erased.invalid"
ERASED_NAME = "(erased)"
# When an anonymous user made to hold a forgotten author's rows was seen: never.
NEVER_SEEN = datetime(1970, 1, 1, tzinfo=UTC)

NO_SUCH_USER = "There is no end user with this id in this product."
NO_SUCH_SUBSCRIBER = "There is no subscriber with this address in this product."


def find_end_user(session: Session, product: Product, external_id: str) -> EndUser:
    """The product's end user with this id in the host's app, not erased; NotFound
    otherwise (another product's user included, and text no database could hold)."""
    if not external_id or len(external_id) > tickets.MAX_USER_ID_LENGTH:
        raise NotFound(NO_SUCH_USER)
    if not reads.is_storable(external_id):
        raise NotFound(NO_SUCH_USER)
    user = session.scalar(
        select(EndUser).where(EndUser.product_id == product.id, EndUser.external_id == external_id)
    )
    if user is None or user.erased_at is not None:
        raise NotFound(NO_SUCH_USER)
    return user


def find_subscriber(session: Session, product: Product, email: str) -> Subscriber:
    """The product's subscriber with this address (case aside), not erased; NotFound else."""
    text = email.strip().lower()
    if not text or len(text) > subscriptions.MAX_ADDRESS_LENGTH or not reads.is_storable(text):
        raise NotFound(NO_SUCH_SUBSCRIBER)
    subscriber = session.scalar(
        select(Subscriber).where(Subscriber.product_id == product.id, Subscriber.email == text)
    )
    if subscriber is None or subscriber.erased_at is not None:
        raise NotFound(NO_SUCH_SUBSCRIBER)
    return subscriber


# Export ------------------------------------------------------------------------------


def _when(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _notes(session: Session, note_ids: set[int]) -> dict[int, dict[str, Any]]:
    """Each note's id, version and title, as an export names it."""
    if not note_ids:
        return {}
    rows = session.execute(select(Note.id, Note.version, Note.title).where(Note.id.in_(note_ids)))
    return {
        note_id: {"id": note_id, "version": version, "title": title}
        for note_id, version, title in rows
    }


def export_end_user(session: Session, product: Product, external_id: str) -> dict[str, Any]:
    """Everything Tidings holds about one end user of ``product``, as JSON-ready data;
    NotFound when there is no such user, or they were erased."""
    user = find_end_user(session, product, external_id)
    uid = user.id
    receipts = session.execute(
        select(ReadReceipt.note_id, ReadReceipt.read_at, ReadReceipt.channel)
        .where(ReadReceipt.end_user_id == uid)
        .order_by(ReadReceipt.read_at, ReadReceipt.note_id)
    ).all()
    reactions = session.execute(
        select(
            Reaction.note_id,
            Reaction.reaction,
            Reaction.comment,
            Reaction.created_at,
            Reaction.updated_at,
        )
        .where(Reaction.end_user_id == uid)
        .order_by(Reaction.created_at, Reaction.note_id)
    ).all()
    acknowledgements = session.execute(
        select(Acknowledgement.note_id, Acknowledgement.acknowledged_at)
        .where(Acknowledgement.end_user_id == uid)
        .order_by(Acknowledgement.acknowledged_at, Acknowledgement.note_id)
    ).all()
    escalations = session.execute(
        select(Escalation.note_id, Escalation.escalated_at)
        .where(Escalation.end_user_id == uid)
        .order_by(Escalation.escalated_at, Escalation.note_id)
    ).all()
    sends = session.execute(
        select(
            AgentSend.note_id,
            AgentSend.agent,
            AgentSend.via,
            AgentSend.sent_at,
            AgentSend.emailed,
            AgentSend.read_at,
        )
        .where(AgentSend.end_user_id == uid)
        .order_by(AgentSend.sent_at, AgentSend.id)
    ).all()
    holdbacks = session.execute(
        select(
            HoldbackAssignment.note_id, HoldbackAssignment.control, HoldbackAssignment.assigned_at
        )
        .where(HoldbackAssignment.end_user_id == uid)
        .order_by(HoldbackAssignment.assigned_at, HoldbackAssignment.note_id)
    ).all()
    days = session.execute(
        select(EndUserDay.day, EndUserDay.app_version)
        .where(EndUserDay.end_user_id == uid)
        .order_by(EndUserDay.day)
    ).all()
    helps = session.scalars(
        select(HelpRequest)
        .where(HelpRequest.end_user_id == uid)
        .order_by(HelpRequest.created_at, HelpRequest.id)
    ).all()
    shown: dict[int, list[int]] = {}
    for request_id, note_id in session.execute(
        select(HelpShown.help_request_id, HelpShown.note_id)
        .where(HelpShown.help_request_id.in_([help.id for help in helps]))
        .order_by(HelpShown.help_request_id, HelpShown.position)
    ):
        shown.setdefault(request_id, []).append(note_id)
    linked_tickets = session.scalars(
        select(Ticket).where(_tickets_of(user)).order_by(Ticket.created_at, Ticket.id)
    ).all()
    subscribers = session.scalars(
        select(Subscriber).where(Subscriber.end_user_id == uid).order_by(Subscriber.id)
    ).all()

    note_ids = {
        *(row.note_id for row in receipts),
        *(row.note_id for row in reactions),
        *(row.note_id for row in acknowledgements),
        *(row.note_id for row in escalations),
        *(row.note_id for row in sends),
        *(row.note_id for row in holdbacks),
        *(note_id for ids in shown.values() for note_id in ids),
        *(help.answered_note_id for help in helps if help.answered_note_id is not None),
    }
    notes = _notes(session, note_ids)
    versions = list(dict.fromkeys(row.app_version for row in days if row.app_version))
    return {
        "product": product.slug,
        "end_user": {
            "external_id": user.external_id,
            "attributes": dict(user.attributes or {}),
            "locale": user.locale,
            "app_version": user.app_version,
            "first_seen_at": _when(user.first_seen_at),
            "last_seen_at": _when(user.last_seen_at),
            "has_signed_email": user.email_key is not None,
        },
        "versions_seen": versions,
        "days_seen": [{"day": row.day.isoformat(), "app_version": row.app_version} for row in days],
        "reads": [
            {"note": notes[row.note_id], "read_at": _when(row.read_at), "channel": row.channel}
            for row in receipts
        ],
        "reactions": [
            {
                "note": notes[row.note_id],
                "reaction": row.reaction,
                "comment": row.comment,
                "created_at": _when(row.created_at),
                "updated_at": _when(row.updated_at),
            }
            for row in reactions
        ],
        "acknowledgements": [
            {"note": notes[row.note_id], "acknowledged_at": _when(row.acknowledged_at)}
            for row in acknowledgements
        ],
        "escalations": [
            {"note": notes[row.note_id], "escalated_at": _when(row.escalated_at)}
            for row in escalations
        ],
        "agent_sends": [
            {
                "note": notes[row.note_id],
                "agent": row.agent,
                "via": row.via,
                "sent_at": _when(row.sent_at),
                "emailed": row.emailed,
                "read_at": _when(row.read_at),
            }
            for row in sends
        ],
        "holdbacks": [
            {
                "note": notes[row.note_id],
                "group": "control" if row.control else "treatment",
                "assigned_at": _when(row.assigned_at),
            }
            for row in holdbacks
        ],
        "help_requests": [
            {
                "query": help.query,
                "created_at": _when(help.created_at),
                "shown": [notes[note_id] for note_id in shown.get(help.id, [])],
                "outcome": help.outcome,
                "answered_note": notes.get(help.answered_note_id)
                if help.answered_note_id is not None
                else None,
                "decided_at": _when(help.decided_at),
            }
            for help in helps
        ],
        "tickets": [
            {
                "source": ticket.source,
                "external_id": ticket.external_id,
                "created_at": _when(ticket.created_at),
                "updated_at": _when(ticket.updated_at),
                "subject": ticket.subject,
                "tags": list(ticket.tags or []),
                "app_version": ticket.app_version,
            }
            for ticket in linked_tickets
        ],
        "subscriptions": [export_subscriber(session, subscriber) for subscriber in subscribers],
    }


def record_export(
    session: Session,
    product: Product,
    actor: TeamMember | None,
    *,
    whom: str = "an end user",
    now: datetime,
) -> None:
    """Audit that someone's data was exported, naming no one: the caller commits before
    the data goes out, as for every export that names people."""
    audit.record(
        session, product, actor, "privacy.exported", f"Exported the data of {whom}", now=now
    )


def export_subscriber(session: Session, subscriber: Subscriber) -> dict[str, Any]:
    """Everything held about one subscriber: the subscription and every message queued
    for it, with the note it carried."""
    messages = session.scalars(
        select(OutboxMessage)
        .where(OutboxMessage.subscriber_id == subscriber.id)
        .order_by(OutboxMessage.created_at, OutboxMessage.id)
    ).all()
    notes = _notes(session, {m.note_id for m in messages if m.note_id is not None})
    return {
        "email": subscriber.email,
        "status": subscriber.status.value,
        "frequency": subscriber.frequency.value,
        "categories": list(subscriber.categories or []),
        "locale": subscriber.locale,
        "created_at": _when(subscriber.created_at),
        "confirmed_at": _when(subscriber.confirmed_at),
        "unsubscribed_at": _when(subscriber.unsubscribed_at),
        "last_digest_at": _when(subscriber.last_digest_at),
        "hard_bounces": subscriber.hard_bounces,
        "emails": [
            {
                "kind": message.kind.value,
                "status": message.status.value,
                "note": notes.get(message.note_id) if message.note_id is not None else None,
                "created_at": _when(message.created_at),
                "sent_at": _when(message.sent_at),
                "attempts": message.attempts,
            }
            for message in messages
        ],
    }


# Erasure -----------------------------------------------------------------------------


def _tickets_of(user: EndUser) -> Any:
    """The tickets that name the user: matched to them, or matched to no one yet but sent
    with their id or the keyed hash of their address. A ticket matched to another user
    is that user's, even when it carries the same address hash (two users can share
    one), and stays out of this one's export and erasure."""
    unmatched = [Ticket.requester_external_id == user.external_id]
    if user.email_key is not None:
        unmatched.append(Ticket.requester_key == user.email_key)
    return (Ticket.product_id == user.product_id) & or_(
        Ticket.end_user_id == user.id, Ticket.end_user_id.is_(None) & or_(*unmatched)
    )


def _count(session: Session, model: Any, *where: Any) -> int:
    return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def erase_end_user(
    session: Session,
    product: Product,
    external_id: str,
    *,
    actor: TeamMember | None,
    now: datetime,
) -> dict[str, int]:
    """Erase one end user of ``product`` (see the module's docstring) and audit it with
    the counts; NotFound when there is no such user, or they were erased already."""
    user = find_end_user(session, product, external_id)
    counts = erase_user_row(session, user, now=now)
    audit.record(
        session, product, actor, "privacy.erased", _summary("an end user", counts), now=now
    )
    return counts


def erase_user_row(session: Session, user: EndUser, *, now: datetime) -> dict[str, int]:
    """Erase a loaded end user's data, without an audit event (retention writes one per
    run), and return how many rows of each kind it made anonymous; NotFound when the
    user was erased already."""
    if user.erased_at is not None:
        raise NotFound(NO_SUCH_USER)
    external_id = user.external_id
    uid = user.id
    counts: Counter[str] = Counter(end_users=1)
    # The widget's kept answers are keyed by the external id, and app.widget_cache's
    # session hook reads it from the row a flush writes: flush once under the old id, so
    # its answers are forgotten when the caller commits.
    user.attributes = {}
    flag_modified(user, "attributes")
    session.flush()
    counts["reads"] = _count(session, ReadReceipt, ReadReceipt.end_user_id == uid)
    counts["acknowledgements"] = _count(
        session, Acknowledgement, Acknowledgement.end_user_id == uid
    )
    counts["reactions"] = _count(session, Reaction, Reaction.end_user_id == uid)
    counts["comments"] = _rows(
        session,
        update(Reaction)
        .where(Reaction.end_user_id == uid, Reaction.comment.is_not(None))
        .values(comment=None),
    )
    counts["help_requests"] = _rows(
        session, update(HelpRequest).where(HelpRequest.end_user_id == uid).values(query="")
    )
    counts["tickets"] = _rows(
        session,
        update(Ticket)
        .where(_tickets_of(user))
        .values(requester_external_id=None, requester_key=None, subject=None, subject_key=""),
    )
    counts["agent_sends"] = _count(session, AgentSend, AgentSend.end_user_id == uid)
    counts["audit_events"] = _scrub_audit(session, user.product_id, external_id)
    subscribers = session.scalars(select(Subscriber).where(Subscriber.end_user_id == uid)).all()
    for subscriber in subscribers:
        if subscriber.erased_at is None:
            counts.update(erase_subscriber(session, subscriber, now=now))
        else:
            subscriber.end_user_id = None
    user.external_id = _tombstone_id()
    user.email_key = None
    user.erased_at = now
    session.flush()
    return dict(counts)


def _rows(session: Session, statement: Any) -> int:
    """Run an UPDATE in the session's transaction; the rows it changed."""
    result: Any = session.execute(statement.execution_options(synchronize_session="fetch"))
    return int(result.rowcount or 0)


def _tombstone_id() -> str:
    return TOMBSTONE_PREFIX + secrets.token_hex(16)


def _scrub_audit(session: Session, product_id: int, external_id: str) -> int:
    """Take the user's id out of the audit summaries that name it (an agent's sends),
    keeping the rest of each summary; how many it changed. The id is the summary's end,
    or what the column's limit kept of it."""
    events = session.scalars(
        select(AuditEvent).where(
            AuditEvent.product_id == product_id,
            AuditEvent.action == agent_sends.SENT_TO_USER,
            AuditEvent.summary.contains(agent_sends.SENT_TO_USER_MARK),
        )
    ).all()
    changed = 0
    for event in events:
        head, _mark, tail = event.summary.rpartition(agent_sends.SENT_TO_USER_MARK)
        cut = len(event.summary) >= audit.SUMMARY_LENGTH and bool(tail)
        if tail == external_id or (cut and external_id.startswith(tail)):
            event.summary = f"{head}{agent_sends.SENT_TO_USER_MARK}{ERASED_NAME}"
            changed += 1
    return changed


def erase_subscriber(session: Session, subscriber: Subscriber, *, now: datetime) -> dict[str, int]:
    """Erase one subscriber's data (see the module's docstring), without an audit event,
    and return what it changed; NotFound when it was erased already. It leaves the list:
    a confirmed subscriber counts as one who unsubscribed today, which is true."""
    if subscriber.erased_at is not None:
        raise NotFound(NO_SUCH_SUBSCRIBER)
    subscriber.email = f"erased-{secrets.token_hex(8)}@{ERASED_DOMAIN}"
    if subscriber.status is not SubscriberStatus.BOUNCED:
        subscriber.status = SubscriberStatus.UNSUBSCRIBED
        # A bounce keeps its date: the roll-up dates it by this, or by the last failure.
        subscriber.unsubscribed_at = subscriber.unsubscribed_at or now
    subscriber.categories = []
    subscriber.end_user_id = None
    # The links in its past mail carry the key: none of them works from now on.
    subscriber.link_key = secrets.token_urlsafe(16)
    subscriber.erased_at = now
    mine = OutboxMessage.subscriber_id == subscriber.id
    _rows(
        session,
        update(OutboxMessage)
        .where(mine, OutboxMessage.status.in_([OutboxStatus.QUEUED, OutboxStatus.SENDING]))
        .values(status=OutboxStatus.SKIPPED, claimed_by=None),
    )
    emails = _rows(
        session,
        update(OutboxMessage).where(mine).values(payload=None, last_error=None, message_id=None),
    )
    session.flush()
    return {"subscribers": 1, "emails": emails}


def erase_subscriber_of(
    session: Session,
    product: Product,
    subscriber: Subscriber,
    *,
    actor: TeamMember | None,
    now: datetime,
) -> dict[str, int]:
    """Erase a subscriber of ``product`` at its own request or an owner's, and audit it
    with the counts; NotFound for another product's, or one erased already."""
    if subscriber.product_id != product.id:
        raise NotFound(NO_SUCH_SUBSCRIBER)
    counts = erase_subscriber(session, subscriber, now=now)
    summary = _summary(f"subscriber #{subscriber.id}", counts)
    audit.record(session, product, actor, "privacy.subscriber_erased", summary, now=now)
    return counts


def _summary(whom: str, counts: dict[str, int]) -> str:
    """The audit summary: what was erased, in counts, naming no one."""
    parts = ", ".join(
        f"{name.replace('_', ' ')} {count}" for name, count in counts.items() if count
    )
    return f"Erased the data of {whom}: {parts}"


def anonymous_user(session: Session, product: Product, *, now: datetime) -> EndUser:
    """A fresh tombstone of ``product`` that names no one, to hold rows whose person is
    forgotten (a comment whose author retention pseudonymises)."""
    # Seen never (at the epoch), so no figure of users seen since a date counts it.
    user = EndUser(
        product_id=product.id,
        external_id=_tombstone_id(),
        attributes={},
        first_seen_at=NEVER_SEEN,
        last_seen_at=NEVER_SEEN,
        erased_at=now,
    )
    session.add(user)
    session.flush()
    return user
