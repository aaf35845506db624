"""Email subscriptions: double opt-in, preferences, and the one address validator.

Which messages a subscriber is owed is ``mailing``; the console's view of the list is
``subscribers``.

A subscriber reads in a language (``locale``, a tag as :func:`languages.normalise` writes
it): chosen among the product's languages on the public page, the end user's own from the
widget, which the product need not have; their mail follows the product's fallback chain
from it.

The messages of :class:`ValidationFailed` stay in English, as the widget's JSON gives them;
they are marked with :func:`N_` for the catalogues, and the public pages translate them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import email_validator
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from announcements import languages
from announcements.errors import NotFound, ValidationFailed
from announcements.languages import N_
from announcements.models import (
    Category,
    Frequency,
    Note,
    OutboxKind,
    OutboxMessage,
    OutboxStatus,
    Product,
    Subscriber,
    SubscriberStatus,
)

CONFIRM_DAYS = 7
MAX_ADDRESS_LENGTH = 254


def bounced_at() -> ColumnElement[datetime]:
    """When a subscriber of the row in hand left the list by bouncing, in SQL: a bounce is
    recorded on no column of its own, so the last message to them that failed tells
    (else when they unsubscribed or confirmed). Insights and retention date it alike."""
    last_failure = (
        select(func.max(OutboxMessage.created_at))
        .where(
            OutboxMessage.subscriber_id == Subscriber.id,
            OutboxMessage.status == OutboxStatus.FAILED,
        )
        .scalar_subquery()
    )
    return func.coalesce(Subscriber.unsubscribed_at, last_failure, Subscriber.confirmed_at)


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


def parse_preferences(
    frequency: str | None,
    categories: Iterable[str],
    locale: str | None,
    *,
    offered: Sequence[str] | None = None,
) -> Preferences:
    """Preferences from a form or a token's payload; ValidationFailed names what is wrong.

    The language is normalised (``fr_CA`` → ``fr-CA``); when ``offered`` is given (a form
    that lists languages), it must be one of them.
    """
    errors: dict[str, str] = {}
    chosen = Frequency.EVERY
    if frequency:
        try:
            chosen = Frequency(frequency)
        except ValueError:
            errors["frequency"] = N_("Choose every release, important notes only, or a digest.")
    picked: list[Category] = []
    for name in categories:
        try:
            picked.append(Category(name))
        except ValueError:
            errors["categories"] = N_("Choose categories from the list.")
    tag = None
    if locale and locale.strip():
        try:
            tag = languages.normalise(locale)
        except languages.BadTag:
            errors["locale"] = N_("Use a language tag such as en, de or pt-BR.")
        else:
            if offered is not None and tag not in offered:
                errors["locale"] = N_("Choose one of the languages in the list.")
    if errors:
        raise ValidationFailed(errors)
    ordered = tuple(category for category in Category if category in picked)
    return Preferences(chosen, ordered, tag)


def normalized_address(raw: str) -> str:
    """The address as stored and sent to: syntax checked (no DNS), domain in ASCII, lowercase.

    Addresses that need SMTPUTF8 (a non-ASCII local part) are refused: many relays
    cannot deliver them, and a subscription that silently never arrives is worse.
    """
    text = (raw or "").strip()
    if not text:
        raise ValidationFailed({"email": N_("Enter your email address.")})
    if len(text) > MAX_ADDRESS_LENGTH:
        raise ValidationFailed({"email": N_("That address is too long to be real.")})
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
        raise NotFound(N_("This subscription no longer exists."))
    return subscriber
