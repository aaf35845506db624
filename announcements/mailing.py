"""Which messages each subscriber is owed: a note when it goes out, the weekly digest.

Everything that queues mail writes its outbox rows in the caller's transaction, so a
note is never published without its messages, and never has them twice: the outbox
is unique per note and subscriber, and a note records when its messages were queued.
The worker (``app.mail``) sends what the outbox holds. A note may also reach one
subscriber on purpose, once of each kind: sent by a support agent, or as the escalation
of a notice its end user has not acknowledged (:func:`queue_one`).

A note that holds back a control group (:mod:`announcements.holdback`) is queued for no
subscriber linked to an end user in that group, alone or in a digest, while its window is
open: an email would tell them what the experiment keeps from them. Subscribers linked
to no end user are outside the experiment and get it as usual.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any
from typing import cast as typing_cast

from sqlalchemy import Table, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from announcements import holdback, targeting
from announcements.models import (
    EndUser,
    Frequency,
    Note,
    NoteStatus,
    OutboxKind,
    OutboxMessage,
    OutboxStatus,
    Product,
    ReadReceipt,
    Subscriber,
    SubscriberStatus,
    outward_clause,
    status_clause,
)
from announcements.subscriptions import Preferences


def _audience_allows(note: Note, end_user: EndUser | None) -> bool:
    """A targeted note goes to a linked subscriber only when the rule matches them, as in
    the widget; unlinked subscribers get what the public changelog shows."""
    if note.audience is None or end_user is None:
        return True
    attributes = {name: str(value) for name, value in (end_user.attributes or {}).items()}
    return targeting.matches(targeting.validate(note.audience), attributes)


def _held_back(note: Note, end_user: EndUser | None, now: datetime) -> bool:
    """Whether the note keeps itself from a subscriber linked to ``end_user`` at ``now``."""
    return end_user is not None and holdback.withholds(
        note.id,
        end_user.external_id,
        note.holdback_percent,
        note.published_at,
        note.product.support_window_days,
        now,
    )


def is_out(note: Note, now: datetime) -> bool:
    """Whether the note is one the world can see at ``now``, so one mail may carry it."""
    return note.status_at(now) is NoteStatus.PUBLISHED and not note.is_internal


def confirmed_subscribers(session: Session, product_id: int) -> Sequence[Subscriber]:
    """The product's subscribers who get mail."""
    return session.scalars(
        select(Subscriber).where(
            Subscriber.product_id == product_id,
            Subscriber.status == SubscriberStatus.CONFIRMED,
        )
    ).all()


def wants_news(note: Note, subscriber: Subscriber, *, now: datetime) -> bool:
    """Whether the note, sent on its own as news, is for the subscriber at ``now``: they
    asked for it, its audience rule lets them have it, and its hold-back does not keep it
    from them."""
    return (
        Preferences.of(subscriber).wants(note)
        and _audience_allows(note, subscriber.end_user)
        and not _held_back(note, subscriber.end_user, now)
    )


def queue_for(
    session: Session,
    note: Note,
    subscribers: Iterable[Subscriber],
    kind: OutboxKind,
    *,
    now: datetime,
    payload: dict[str, Any] | None = None,
) -> int:
    """Queue the note as ``kind`` for each of ``subscribers`` that has no message of that
    kind for it yet; returns how many were queued. Runs in the caller's transaction."""
    already = set(
        session.scalars(
            select(OutboxMessage.subscriber_id).where(
                OutboxMessage.note_id == note.id, OutboxMessage.kind == kind
            )
        )
    )
    rows = [
        {
            "product_id": note.product_id,
            "subscriber_id": subscriber.id,
            "note_id": note.id,
            "kind": kind,
            "status": OutboxStatus.QUEUED,
            "payload": payload,
            "attempts": 0,
            "created_at": now,
            "next_attempt_at": now,
        }
        for subscriber in subscribers
        if subscriber.id not in already
    ]
    if rows:
        session.execute(insert(OutboxMessage), rows)
    return len(rows)


def queue_note(session: Session, note: Note, *, now: datetime) -> int:
    """Queue the note for every confirmed subscriber who wants it and does not have it yet.

    Runs in the caller's transaction (commit is the caller's), and only for a note the
    world can see; returns how many messages were queued.
    """
    if not is_out(note, now):
        return 0
    # Nor to one who had it already some other way: from an agent, as an escalation.
    had = set(
        session.scalars(select(OutboxMessage.subscriber_id).where(OutboxMessage.note_id == note.id))
    )
    wanting = [
        subscriber
        for subscriber in confirmed_subscribers(session, note.product_id)
        if subscriber.id not in had and wants_news(note, subscriber, now=now)
    ]
    queued = queue_for(session, note, wanting, OutboxKind.NOTE, now=now)
    note.emailed_at = now
    return queued


def queue_one(
    session: Session, note: Note, subscriber_id: int, kind: OutboxKind, *, now: datetime
) -> bool:
    """Queue ``note`` for one subscriber as ``kind`` (:attr:`OutboxKind.AGENT` or
    :attr:`OutboxKind.ESCALATION`), unless it was queued for them as that kind before;
    returns whether it was queued now. Runs in the caller's transaction."""
    outbox = typing_cast(Table, OutboxMessage.__table__)
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(outbox)
        .on_conflict_do_nothing(
            index_elements=[outbox.c.note_id, outbox.c.subscriber_id, outbox.c.kind]
        )
        .returning(outbox.c.id)
    )
    queued = session.execute(
        statement,
        {
            "product_id": note.product_id,
            "subscriber_id": subscriber_id,
            "note_id": note.id,
            "kind": kind,
            "status": OutboxStatus.QUEUED,
            "attempts": 0,
            "created_at": now,
            "next_attempt_at": now,
        },
    ).first()
    return queued is not None


def queue_due_notes(session: Session, *, now: datetime) -> int:
    """Queue the notes that went live since they were scheduled; commits once."""
    due = session.scalars(
        select(Note)
        .where(
            outward_clause(),
            status_clause(NoteStatus.PUBLISHED, now),
            Note.email_subscribers.is_(True),
            Note.emailed_at.is_(None),
        )
        .with_for_update(skip_locked=True)
    ).all()
    queued = sum(queue_note(session, note, now=now) for note in due)
    session.commit()
    return queued


def digest_slot(product: Product, now: datetime) -> datetime:
    """The latest weekly digest time of the product at or before ``now``."""
    slot = now.replace(hour=product.digest_hour, minute=0, second=0, microsecond=0)
    slot -= timedelta(days=(slot.weekday() - product.digest_weekday) % 7)
    return slot if slot <= now else slot - timedelta(days=7)


def queue_digests(session: Session, *, now: datetime) -> int:
    """Queue this week's digest for each digest subscriber whose slot has come; commits once.

    A digest lists the notes published since the subscriber's last one; moving
    ``last_digest_at`` in the same transaction makes a second run find nothing to do.
    Whether any listed note is still unread is decided when it is sent.
    """
    queued = 0
    for product in session.scalars(select(Product)):
        slot = digest_slot(product, now)
        waiting = session.scalars(
            select(Subscriber)
            .where(
                Subscriber.product_id == product.id,
                Subscriber.status == SubscriberStatus.CONFIRMED,
                Subscriber.frequency == Frequency.DIGEST,
                Subscriber.last_digest_at < slot,
            )
            .with_for_update(skip_locked=True)
        ).all()
        for subscriber in waiting:
            notes = digest_notes(
                session, subscriber, since=subscriber.last_digest_at, until=slot, now=now
            )
            if notes:
                session.add(
                    OutboxMessage(
                        product_id=product.id,
                        subscriber_id=subscriber.id,
                        kind=OutboxKind.DIGEST,
                        payload={"note_ids": [note.id for note in notes]},
                        created_at=now,
                        next_attempt_at=now,
                    )
                )
                queued += 1
            subscriber.last_digest_at = slot
    session.commit()
    return queued


def digest_notes(
    session: Session,
    subscriber: Subscriber,
    *,
    since: datetime | None,
    until: datetime,
    now: datetime,
) -> list[Note]:
    """The notes a digest queued at ``now`` covers: published in (since, until], wanted,
    not held back from the subscriber, oldest first."""
    query = select(Note).where(
        Note.product_id == subscriber.product_id,
        outward_clause(),
        Note.published_at <= until,
    )
    if since is not None:
        query = query.where(Note.published_at > since)
    preferences = Preferences.of(subscriber)
    return [
        note
        for note in session.scalars(query.order_by(Note.published_at, Note.id))
        if (not preferences.categories or note.category in preferences.categories)
        and _audience_allows(note, subscriber.end_user)
        and not _held_back(note, subscriber.end_user, now)
    ]


def unread(session: Session, subscriber: Subscriber, notes: Sequence[Note]) -> list[Note]:
    """The notes the subscriber has not read in-app (all of them when not linked): opened
    in the widget, or through the "Read on the web" link of a mail (``reads.record_read``)."""
    if subscriber.end_user_id is None or not notes:
        return list(notes)
    read = set(
        session.scalars(
            select(ReadReceipt.note_id).where(
                ReadReceipt.end_user_id == subscriber.end_user_id,
                ReadReceipt.note_id.in_([note.id for note in notes]),
            )
        )
    )
    return [note for note in notes if note.id not in read]


def unread_by(session: Session, note: Note, subscribers: Sequence[Subscriber]) -> list[Subscriber]:
    """Those of ``subscribers`` who have not read the note in-app (every one not linked)."""
    if all(subscriber.end_user_id is None for subscriber in subscribers):
        return list(subscribers)
    read = set(
        session.scalars(select(ReadReceipt.end_user_id).where(ReadReceipt.note_id == note.id))
    )
    return [subscriber for subscriber in subscribers if subscriber.end_user_id not in read]
