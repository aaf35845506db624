"""Signed tokens for the links in emails: confirm, unsubscribe, read on the web.

Each purpose has its own salt, so a token made for one cannot be used for another,
and a lifetime: a confirmation expires after a week; the links in a release note
stay good for a year, long after the mail was read.
"""

from __future__ import annotations

import enum
import functools
from datetime import timedelta
from typing import Any

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from announcements.errors import DomainError
from announcements.subscriptions import CONFIRM_DAYS


class Purpose(enum.StrEnum):
    CONFIRM = "confirm"
    UNSUBSCRIBE = "unsubscribe"
    READ = "read"


LIFETIME = {
    Purpose.CONFIRM: timedelta(days=CONFIRM_DAYS),
    Purpose.UNSUBSCRIBE: timedelta(days=365),
    Purpose.READ: timedelta(days=365),
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


def read(purpose: Purpose, token: str) -> dict[str, Any]:
    """The token's payload; BadToken says in words what is wrong with it."""
    try:
        payload = _serializer(purpose).loads(token, max_age=int(LIFETIME[purpose].total_seconds()))
    except SignatureExpired:
        raise BadToken("This link has expired.") from None
    except BadSignature:
        raise BadToken("This link is not valid. It may have been copied incompletely.") from None
    if not isinstance(payload, dict):
        raise BadToken("This link is not valid.")
    return payload
