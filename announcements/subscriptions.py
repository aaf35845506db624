"""Email subscribers: double opt-in, preferences, and which messages each one is owed.

Everything that queues mail writes its outbox rows in the caller's transaction, so a
note is never published without its messages, and never has them twice: the outbox
is unique per note and subscriber, and a note records when its messages were queued.
The worker (``app.mail``) sends what the outbox holds.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import email_validator
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from announcements import audit, targeting
from announcements.errors import NotFound, ValidationFailed
from announcements.models import (
    LOCALE_PATTERN,
    Category,
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
    TeamMember,
    outward_clause,
    status_clause,
)
from announcements.queries import like_pattern

CONFIRM_DAYS = 7
MAX_ADDRESS_LENGTH = 254
# Subscribers per page in the console.
PAGE_SIZE = 50


@dataclass(frozen=True)
class Preferences:
    """What a subscriber asked to hear about."""

    frequency: Frequency = Frequency.EVERY
    categories: tuple[Category, ...] = ()  # empty: every category
    locale: str | None = None

    def as_payload(self) -> dict[str, Any]:
        return {
            "frequency": self.frequency.value,
            "categories": [category.value for category in self.categories],
            "locale": self.locale,
        }

    @classmethod
    def of(cls, subscriber: Subscriber) -> Preferences:
        return cls(
            Frequency(subscriber.frequency),
            tuple(category for category in Category if category.value in subscriber.categories),
            subscriber.locale,
        )

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Preferences:
        """The preferences a confirmation was sent with (ValidationFailed if tampered)."""
        return parse_preferences(
            payload.get("frequency"), payload.get("categories") or (), payload.get("locale")
        )

    def wants(self, note: Note) -> bool:
        """Whether a note, sent on its own, is one this subscriber asked for."""
        if self.frequency is Frequency.DIGEST:
            return False
        if self.frequency is Frequency.IMPORTANT and not note.is_important:
            return False
        return not self.categories or note.category in self.categories

    def describe(self) -> str:
        what = ", ".join(category.label for category in self.categories) or "all categories"
        return f"{self.frequency.label}, {what}"


def parse_preferences(
    frequency: str | None, categories: Iterable[str], locale: str | None
) -> Preferences:
    """Preferences from a form or a token's payload; ValidationFailed names what is wrong."""
    errors: dict[str, str] = {}
    chosen = Frequency.EVERY
    if frequency:
        try:
            chosen = Frequency(frequency)
        except ValueError:
            errors["frequency"] = "Choose every release, important notes only, or a digest."
    picked: list[Category] = []
    for name in categories:
        try:
            picked.append(Category(name))
        except ValueError:
            errors["categories"] = "Choose categories from the list."
    locale = (locale or "").strip() or None
    if locale is not None and not LOCALE_PATTERN.fullmatch(locale):
        errors["locale"] = "Use a language tag such as en, de or pt-BR."
    if errors:
        raise ValidationFailed(errors)
    ordered = tuple(category for category in Category if category in picked)
    return Preferences(chosen, ordered, locale)


def normalized_address(raw: str) -> str:
    """The address as stored and sent to: syntax checked (no DNS), domain in ASCII, lowercase.

    Addresses that need SMTPUTF8 (a non-ASCII local part) are refused: many relays
    cannot deliver them, and a subscription that silently never arrives is worse.
    """
    text = (raw or "").strip()
    if not text:
        raise ValidationFailed({"email": "Enter your email address."})
    if len(text) > MAX_ADDRESS_LENGTH:
        raise ValidationFailed({"email": "That address is too long to be real."})
    try:
        valid = email_validator.validate_email(
            text, check_deliverability=False, allow_smtputf8=False
        )
    except email_validator.EmailNotValidError as error:
        message = f"That is not an email address we can use: {error}"
        raise ValidationFailed({"email": message}) from None
    return str(valid.ascii_email).lower()


# Subscribing ----------------------------------------------------------------


def find(session: Session, product_id: int, email: str) -> Subscriber | None:
    """The product's subscriber with this address, as :func:`normalized_address` gives it."""
    return session.scalar(
        select(Subscriber).where(Subscriber.product_id == product_id, Subscriber.email == email)
    )


def request_subscription(
    session: Session, product: Product, address: str, preferences: Preferences, *, now: datetime
) -> Subscriber:
    """Queue a confirmation for ``address``; create it as pending when it is new.

    Nothing else changes until the link in that message is followed, so the answer,
    and the database, are the same whether or not the address was known: asking
    cannot reveal a subscription, nor change one that somebody else made.
    """
    email = normalized_address(address)
    subscriber = find(session, product.id, email)
    if subscriber is None:
        subscriber = Subscriber(
            product_id=product.id,
            email=email,
            status=SubscriberStatus.PENDING,
            frequency=preferences.frequency,
            categories=[category.value for category in preferences.categories],
            locale=preferences.locale,
            created_at=now,
        )
        session.add(subscriber)
        session.flush()
    session.add(
        OutboxMessage(
            product_id=product.id,
            subscriber_id=subscriber.id,
            kind=OutboxKind.CONFIRM,
            payload=preferences.as_payload(),
            created_at=now,
            next_attempt_at=now,
        )
    )
    session.commit()
    return subscriber


def _apply(subscriber: Subscriber, preferences: Preferences) -> None:
    subscriber.frequency = preferences.frequency
    subscriber.categories = [category.value for category in preferences.categories]
    subscriber.locale = preferences.locale


def confirm(
    session: Session, subscriber: Subscriber, preferences: Preferences, *, now: datetime
) -> Subscriber:
    """Follow a confirmation link: the subscriber gets the preferences it was sent with."""
    if subscriber.status is not SubscriberStatus.CONFIRMED:
        subscriber.confirmed_at = now
        subscriber.unsubscribed_at = None
        # The first digest covers what is published from now on, not the whole history.
        subscriber.last_digest_at = now
    subscriber.status = SubscriberStatus.CONFIRMED
    subscriber.hard_bounces = 0
    _apply(subscriber, preferences)
    session.commit()
    return subscriber


def subscribe_end_user(
    session: Session,
    product: Product,
    end_user_id: int,
    address: str,
    preferences: Preferences,
    *,
    now: datetime,
) -> Subscriber:
    """Subscribe a widget user whose address the host signed, linked to their end-user record.

    The host vouches for the address, so a new or pending one is confirmed at once. One
    that unsubscribed or bounced is only sent a confirmation, as on the public page:
    undoing that is for the owner of the mailbox alone.
    """
    email = normalized_address(address)
    subscriber = find(session, product.id, email)
    if subscriber is None:
        subscriber = Subscriber(product_id=product.id, email=email, created_at=now)
        session.add(subscriber)
    subscriber.end_user_id = end_user_id
    if subscriber.status in (SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED):
        return request_subscription(session, product, email, preferences, now=now)
    if subscriber.status is not SubscriberStatus.CONFIRMED:
        return confirm(session, subscriber, preferences, now=now)
    session.commit()
    return subscriber


def unsubscribe(session: Session, subscriber: Subscriber, *, now: datetime) -> bool:
    """Stop all mail to the subscriber; True when this call changed anything."""
    if subscriber.status is SubscriberStatus.UNSUBSCRIBED:
        return False
    subscriber.status = SubscriberStatus.UNSUBSCRIBED
    subscriber.unsubscribed_at = now
    session.commit()
    return True


def update_preferences(session: Session, subscriber: Subscriber, preferences: Preferences) -> None:
    """Change what a confirmed subscriber hears about (from the link in their mail)."""
    _apply(subscriber, preferences)
    session.commit()


def get_subscriber(session: Session, subscriber_id: int) -> Subscriber:
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        raise NotFound("This subscription no longer exists.")
    return subscriber


def remove(
    session: Session,
    product: Product,
    subscriber_id: int,
    *,
    by: TeamMember | None,
    now: datetime,
) -> Subscriber:
    """Delete a subscriber of ``product`` (from the console) and what was queued for it.

    The audit log names the subscriber by id, not address: a removal is often a request
    to be forgotten."""
    subscriber = get_subscriber(session, subscriber_id)
    if subscriber.product_id != product.id:
        raise NotFound("There is no such subscriber in this product.")
    session.delete(subscriber)
    summary = f"Removed subscriber #{subscriber.id}"
    audit.record(session, product, by, "subscriber.removed", summary, now=now)
    session.commit()
    return subscriber


# Queueing release notes --------------------------------------------------------


def _audience_allows(note: Note, end_user: EndUser | None) -> bool:
    """A targeted note goes to a linked subscriber only when the rule matches them, as in
    the widget; unlinked subscribers get what the public changelog shows."""
    if note.audience is None or end_user is None:
        return True
    attributes = {name: str(value) for name, value in (end_user.attributes or {}).items()}
    return targeting.matches(targeting.validate(note.audience), attributes)


def queue_note(session: Session, note: Note, *, now: datetime) -> int:
    """Queue the note for every confirmed subscriber who wants it and does not have it yet.

    Runs in the caller's transaction (commit is the caller's), and only for a note the
    world can see; returns how many messages were queued.
    """
    if note.status_at(now) is not NoteStatus.PUBLISHED or note.is_internal:
        return 0
    already = set(
        session.scalars(select(OutboxMessage.subscriber_id).where(OutboxMessage.note_id == note.id))
    )
    candidates = session.scalars(
        select(Subscriber).where(
            Subscriber.product_id == note.product_id,
            Subscriber.status == SubscriberStatus.CONFIRMED,
        )
    )
    rows = [
        {
            "product_id": note.product_id,
            "subscriber_id": subscriber.id,
            "note_id": note.id,
            "kind": OutboxKind.NOTE,
            "status": OutboxStatus.QUEUED,
            "attempts": 0,
            "created_at": now,
            "next_attempt_at": now,
        }
        for subscriber in candidates
        if subscriber.id not in already
        and Preferences.of(subscriber).wants(note)
        and _audience_allows(note, subscriber.end_user)
    ]
    if rows:
        session.execute(insert(OutboxMessage), rows)
    note.emailed_at = now
    return len(rows)


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
            notes = digest_notes(session, subscriber, since=subscriber.last_digest_at, until=slot)
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
    session: Session, subscriber: Subscriber, *, since: datetime | None, until: datetime
) -> list[Note]:
    """The notes a digest covers: published in (since, until], wanted, oldest first."""
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
    ]


def unread(session: Session, subscriber: Subscriber, notes: Sequence[Note]) -> list[Note]:
    """The notes the subscriber has not read in-app (all of them when not linked)."""
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


# The console ----------------------------------------------------------------


def status_counts(session: Session, product: Product) -> dict[SubscriberStatus, int]:
    rows = session.execute(
        select(Subscriber.status, func.count())
        .where(Subscriber.product_id == product.id)
        .group_by(Subscriber.status)
    )
    counts = dict.fromkeys(SubscriberStatus, 0)
    counts.update({SubscriberStatus(status): count for status, count in rows})
    return counts


def search(
    session: Session,
    product: Product,
    *,
    text: str = "",
    status: SubscriberStatus | None = None,
    page: int = 1,
) -> tuple[list[Subscriber], bool]:
    """A page of the product's subscribers, newest first, and whether there are more."""
    query = select(Subscriber).where(Subscriber.product_id == product.id)
    text = text.replace("\x00", "").strip().lower()
    if text:
        query = query.where(Subscriber.email.like(like_pattern(text), escape="\\"))
    if status is not None:
        query = query.where(Subscriber.status == status)
    found = session.scalars(
        query.order_by(Subscriber.created_at.desc(), Subscriber.id.desc())
        .offset((page - 1) * PAGE_SIZE)
        .limit(PAGE_SIZE + 1)
    ).all()
    return list(found[:PAGE_SIZE]), len(found) > PAGE_SIZE


CSV_COLUMNS = (
    "email",
    "status",
    "frequency",
    "categories",
    "locale",
    "subscribed_at",
    "confirmed_at",
    "unsubscribed_at",
)


def _csv_safe(value: str) -> str:
    """Keep a spreadsheet from reading a cell as a formula (CSV injection)."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def export_csv(
    session: Session, product: Product, *, by: TeamMember | None, now: datetime
) -> Iterator[str]:
    """The product's subscribers as CSV, a line at a time. The file holds every address,
    so the export is in the audit log before the first line goes out."""
    summary = "Downloaded the subscriber list as CSV"
    audit.record(session, product, by, "subscribers.exported", summary, now=now)
    session.commit()
    return _csv_lines(session, product)


def _csv_lines(session: Session, product: Product) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def line(values: Sequence[str]) -> str:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow([_csv_safe(value) for value in values])
        return buffer.getvalue()

    yield line(CSV_COLUMNS)
    query = (
        select(Subscriber)
        .where(Subscriber.product_id == product.id)
        .order_by(Subscriber.id)
        .execution_options(yield_per=500)
    )
    for subscriber in session.scalars(query):
        yield line(
            [
                subscriber.email,
                subscriber.status.value,
                subscriber.frequency.value,
                " ".join(subscriber.categories),
                subscriber.locale or "",
                subscriber.created_at.isoformat(),
                subscriber.confirmed_at.isoformat() if subscriber.confirmed_at else "",
                subscriber.unsubscribed_at.isoformat() if subscriber.unsubscribed_at else "",
            ]
        )


def delivery(session: Session, note: Note) -> dict[str, int]:
    """How the note's messages stand: queued (with sending), sent, failed, skipped."""
    rows = session.execute(
        select(OutboxMessage.status, func.count())
        .where(OutboxMessage.note_id == note.id)
        .group_by(OutboxMessage.status)
    )
    counts = {"queued": 0, "sent": 0, "failed": 0, "skipped": 0}
    for status, count in rows:
        key = "queued" if status in (OutboxStatus.QUEUED, OutboxStatus.SENDING) else status.value
        counts[key] += count
    return counts
