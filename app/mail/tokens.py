"""Signed tokens for the links in emails: confirm, unsubscribe, read on the web.

Each purpose has its own salt, so a token made for one cannot be used for another,
and a lifetime: a confirmation expires after a week; the links in a release note
stay good for a year, long after the mail was read. A subscriber's links also carry
its random link key, so they outlive neither the subscriber nor its id.
"""

from __future__ import annotations

import enum
import functools
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy.orm import Session

from announcements import subscriptions
from announcements.errors import DomainError, NotFound
from announcements.models import Subscriber
from announcements.subscriptions import CONFIRM_DAYS, N_

# What is wrong with a link, in English; the page that says so translates it.
EXPIRED = N_("This link has expired.")
DAMAGED = N_("This link is not valid. It may have been copied incompletely.")
NOT_VALID = N_("This link is not valid.")


class Purpose(enum.StrEnum):
    CONFIRM = "confirm"
    UNSUBSCRIBE = "unsubscribe"
    READ = "read"
    PASSWORD_RESET = "password-reset"  # noqa: S105 - a link's purpose, not a password
    # "Delete my data": a purpose of its own, so the unsubscribe link that mail providers
    # read and follow (List-Unsubscribe) cannot erase anyone.
    ERASE = "erase"


LIFETIME = {
    Purpose.CONFIRM: timedelta(days=CONFIRM_DAYS),
    Purpose.UNSUBSCRIBE: timedelta(days=365),
    Purpose.READ: timedelta(days=365),
    Purpose.ERASE: timedelta(days=365),
    # A reset link also dies when the password changes: it is bound to the hash it replaces.
    Purpose.PASSWORD_RESET: timedelta(hours=1),
}


class BadToken(DomainError):
    """A link that was forged, damaged or has expired."""


def _serializer(purpose: Purpose) -> URLSafeTimedSerializer:
    return _serializer_for(current_app.config["SECRET_KEY"], purpose)


@functools.lru_cache(maxsize=16)
def _serializer_for(secret: str, purpose: Purpose) -> URLSafeTimedSerializer:
    """Built once per key: every message carries two tokens."""
    return URLSafeTimedSerializer(secret, salt=f"tidings.{purpose}")


def make(purpose: Purpose, payload: dict[str, Any]) -> str:
    return str(_serializer(purpose).dumps(payload))


def _load(purpose: Purpose, token: str) -> tuple[dict[str, Any], datetime]:
    """The token's payload and when it was made; BadToken says in words what is wrong."""
    try:
        payload, made_at = _serializer(purpose).loads(
            token, max_age=int(LIFETIME[purpose].total_seconds()), return_timestamp=True
        )
    except SignatureExpired:
        raise BadToken(EXPIRED) from None
    except BadSignature:
        raise BadToken(DAMAGED) from None
    if not isinstance(payload, dict):
        raise BadToken(NOT_VALID)
    return payload, made_at


def read(purpose: Purpose, token: str) -> dict[str, Any]:
    """The token's payload; BadToken says in words what is wrong with it."""
    return _load(purpose, token)[0]


def for_subscriber(purpose: Purpose, subscriber: Subscriber, **payload: Any) -> str:
    """A link token for one subscriber: its id, and its link key, which no other row shares."""
    return make(purpose, {**payload, "s": subscriber.id, "k": subscriber.link_key})


def read_for_subscriber(
    session: Session, purpose: Purpose, token: str
) -> tuple[Subscriber, dict[str, Any]]:
    """The subscriber a link was made for, and its payload; BadToken or NotFound otherwise.

    A link whose subscriber was deleted is NotFound, even where another subscriber was
    given the same id since (SQLite reuses the ids of deleted rows).
    """
    payload, made_at = _load(purpose, token)
    subscriber_id = payload.get("s")
    if not isinstance(subscriber_id, int):
        raise BadToken(NOT_VALID)
    subscriber = subscriptions.get_subscriber(session, subscriber_id)
    if "k" in payload:
        bound = payload["k"] == subscriber.link_key
    else:
        # A link mailed before links carried the key: good for the subscriber it was made
        # for, which existed when it was made (it has whole seconds), never for a later
        # one given the id. A year after the upgrade no such link is left to honour.
        bound = made_at >= subscriber.created_at.replace(microsecond=0)
    if not bound:
        raise NotFound("This subscription no longer exists.")
    return subscriber, payload
