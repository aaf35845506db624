"""Scoped keys for the management API: shown once, kept as a hash, listed by prefix.

A key reads ``tid_<prefix>_<secret>``: the prefix finds the row, the whole key's
SHA-256 is compared with the stored hash. The secret holds 256 random bits, so a fast
hash is the right one here (a slow one guards guessable passwords, not random keys).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from announcements import audit
from announcements.errors import InvalidTransition, ValidationFailed
from announcements.models import ApiKey, ApiScope, Product, TeamMember

KEY_START = "tid_"
PREFIX_BYTES = 4
PREFIX_LENGTH = len(KEY_START) + 2 * PREFIX_BYTES
MAX_NAME = 120
# Recording each use would write on every call; once a minute says enough.
TOUCH_EVERY = timedelta(minutes=1)


def _hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def parse_scopes(raw: Iterable[str]) -> list[ApiScope]:
    """Scopes from their names; ValidationFailed names the unknown ones."""
    names = [name.strip() for name in raw if name.strip()]
    known = {scope.value for scope in ApiScope}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValidationFailed(
            {"scopes": f"Unknown scope {', '.join(unknown)}. Use: {', '.join(sorted(known))}."}
        )
    if not names:
        raise ValidationFailed({"scopes": "Choose at least one scope."})
    return [ApiScope(name) for name in dict.fromkeys(names)]


def create(
    session: Session,
    product: Product,
    name: str,
    scopes: Iterable[str],
    *,
    by: TeamMember | None,
    now: datetime,
) -> tuple[ApiKey, str]:
    """A new key for ``product``; returns it and the only copy of its secret."""
    errors = {}
    name = " ".join(name.split())
    if not name:
        errors["name"] = "Name the key after what uses it, such as “CI”."
    elif len(name) > MAX_NAME:
        errors["name"] = f"Keep the name under {MAX_NAME} characters."
    try:
        chosen = parse_scopes(scopes)
    except ValidationFailed as error:
        errors.update(error.errors)
    if errors:
        raise ValidationFailed(errors)
    prefix = KEY_START + secrets.token_hex(PREFIX_BYTES)
    raw = f"{prefix}_{secrets.token_urlsafe(32)}"
    key = ApiKey(
        product_id=product.id,
        name=name,
        prefix=prefix,
        key_hash=_hash(raw),
        scopes=[scope.value for scope in chosen],
        created_by_id=by.id if by else None,
        created_at=now,
    )
    session.add(key)
    audit.record(
        session, product, by, "api_key.created", f"Created API key {prefix}… “{name}”", now=now
    )
    session.commit()
    return key, raw


def prefix_of(raw: str) -> str | None:
    """The visible part of a key ("tid_1a2b3c4d"), or None if ``raw`` is not shaped like one;
    the secret after it may itself hold underscores."""
    prefix = raw[:PREFIX_LENGTH]
    if not prefix.startswith(KEY_START) or raw[PREFIX_LENGTH : PREFIX_LENGTH + 1] != "_":
        return None
    return prefix


def authenticate(session: Session, raw: str) -> ApiKey | None:
    """The live key ``raw`` is, or None for anything else: unknown, damaged, revoked."""
    prefix = prefix_of(raw)
    if prefix is None or len(raw) > 200:
        return None
    key = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if key is None or key.revoked_at is not None:
        return None
    if not hmac.compare_digest(key.key_hash, _hash(raw)):
        return None
    return key


def touch(session: Session, key: ApiKey, now: datetime) -> None:
    """Record that the key was used, at most once a minute."""
    if key.last_used_at is not None and now - key.last_used_at < TOUCH_EVERY:
        return
    session.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=now))
    session.commit()


def for_product(session: Session, product: Product) -> list[ApiKey]:
    return list(
        session.scalars(
            select(ApiKey).where(ApiKey.product_id == product.id).order_by(ApiKey.id.desc())
        )
    )


def revoke(
    session: Session, product: Product, key_id: int, *, by: TeamMember | None, now: datetime
) -> ApiKey:
    key = audit.owned(session, ApiKey, product, key_id)
    if key.revoked_at is not None:
        raise InvalidTransition("This key is already revoked.")
    key.revoked_at = now
    summary = f"Revoked API key {key.prefix}… “{key.name}”"
    audit.record(session, product, by, "api_key.revoked", summary, now=now)
    session.commit()
    return key
