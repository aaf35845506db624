"""Help-desk tickets: the one rule for what a ticket is, and storing it once.

Tickets arrive from a desk's webhook (``announcements.support_desks``), the management
API and a CSV import (``announcements.ticket_import``); each goes through
:func:`check_ticket` and :func:`store`, so a ticket is one row per product, source and
desk ticket id however often and by whichever way it comes.

A ticket keeps no body and no address. The requester is kept as the external id the
desk sent (the host's user id) and as a keyed hash of the address (:func:`email_key`),
which is what the widget stores for a user whose host signed their address; the two
find the end user the ticket is about.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast

from sqlalchemy import ColumnElement, Table, func, or_, select, true, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from announcements import reads
from announcements.errors import ValidationFailed
from announcements.models import EndUser, Product, SupportConnection, Ticket
from announcements.queries import like_pattern
from announcements.subscriptions import normalized_address

# The limits of the ticket table's columns.
MAX_SOURCE_LENGTH = 40
MAX_EXTERNAL_ID_LENGTH = 128
MAX_USER_ID_LENGTH = 255
MAX_APP_VERSION_LENGTH = 64
MAX_SUBJECT_LENGTH = 500
MAX_TAGS = 50
MAX_TAG_LENGTH = 100
# A desk's clock, or a script's, may run ahead of ours; a day ahead is a wrong date.
FUTURE_SLACK = timedelta(days=1)
# A source names where tickets come from: zendesk, zendesk-2, a script's own name.
SOURCE_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

Status = Literal["created", "updated", "unchanged"]

_tickets = cast(Table, Ticket.__table__)


@dataclass(frozen=True)
class TicketInput:
    """A ticket as a desk, the API or a CSV row gives it, checked by :func:`check_ticket`."""

    source: str
    external_id: str
    created_at: datetime
    user_id: str | None = None
    email: str | None = None
    app_version: str | None = None
    tags: tuple[str, ...] = ()
    subject: str | None = None


def fold_tag(tag: str) -> str:
    """A tag or a support topic as they are compared: compatibility forms unified, case
    folded, runs of spaces made one, and no ``|``, which separates tags in ``tag_text``."""
    text = unicodedata.normalize("NFKC", tag).casefold().replace("|", " ")
    return " ".join(text.split())


def address(raw: str | None) -> str | None:
    """The address normalised as subscriptions store it, or None when it is not one."""
    if not raw:
        return None
    try:
        return normalized_address(raw)
    except ValidationFailed:
        return None


def email_key(secret_key: str, email: str) -> str | None:
    """The keyed hash that stands for an address: hex HMAC-SHA256 with the app's secret
    key of "ticket-email", a line feed and the normalised address; None for text that is
    not an address. Without the key nobody can test a guessed address against it."""
    normal = address(email)
    if normal is None:
        return None
    message = f"ticket-email\n{normal}".encode()
    return hmac.new(secret_key.encode(), message, hashlib.sha256).hexdigest()


def _text(
    errors: dict[str, str], name: str, value: Any, limit: int, *, numbers: bool = False
) -> str | None:
    """One line of text, trimmed, or None when empty; an integer too where ``numbers``
    (desks number their tickets and users). A problem goes into ``errors``."""
    if value is None:
        return None
    if numbers and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        errors[name] = "Send text." if not numbers else "Send text or a whole number."
        return None
    text = value.strip()
    if not reads.is_storable(text) or _CONTROL.search(text):
        errors[name] = "Holds characters that are not text."
        return None
    if len(text) > limit:
        errors[name] = f"Keep it to {limit} characters."
        return None
    return text or None


def _moment(errors: dict[str, str], value: Any, now: datetime) -> datetime | None:
    """An aware time, or ISO 8601 text with its offset, in UTC and not in the future."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            errors["created_at"] = "Send an ISO 8601 time such as 2026-03-01T09:30:00Z."
            return None
    if not isinstance(value, datetime):
        errors["created_at"] = "Send when the ticket was opened, as ISO 8601 text."
        return None
    if value.tzinfo is None or value.utcoffset() is None:
        errors["created_at"] = "Give the time's offset, such as Z or +02:00."
        return None
    try:
        moment = value.astimezone(UTC)
    except OverflowError:
        errors["created_at"] = "That time is out of range."
        return None
    if moment > now + FUTURE_SLACK:
        errors["created_at"] = "That time is in the future."
        return None
    return moment


def _tags(errors: dict[str, str], value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        errors["tags"] = "Send the tags as a list of text."
        return ()
    if len(value) > MAX_TAGS:
        errors["tags"] = f"Send at most {MAX_TAGS} tags."
        return ()
    folded: dict[str, None] = {}
    for tag in value:
        if not isinstance(tag, str) or not reads.is_storable(tag) or _CONTROL.search(tag):
            errors["tags"] = "Each tag is a line of text."
            return ()
        tag = fold_tag(tag)
        if len(tag) > MAX_TAG_LENGTH:
            errors["tags"] = f"Keep each tag to {MAX_TAG_LENGTH} characters."
            return ()
        if tag:
            folded[tag] = None
    return tuple(folded)


def check_ticket(
    raw: Mapping[str, Any],
    *,
    source: str | None = None,
    now: datetime | None = None,
    require_requester: bool = True,
) -> TicketInput:
    """The ticket ``raw`` describes, or ValidationFailed naming each field that is wrong.

    ``source`` is used when ``raw`` names none (a desk's connection, an import). Tags are
    folded with :func:`fold_tag` and kept once each. A ticket names its requester by
    ``user_id`` (the host's id for the user), ``email``, or both; a desk whose event does
    not name one passes ``require_requester=False`` and the ticket stays unmatched.
    """
    now = now or datetime.now(UTC)
    errors: dict[str, str] = {}
    given_source = raw.get("source")
    if given_source is None or given_source == "":
        given_source = source
    source_text = _text(errors, "source", given_source, MAX_SOURCE_LENGTH)
    if source_text is not None:
        source_text = source_text.lower()
        if not SOURCE_PATTERN.fullmatch(source_text):
            errors["source"] = "Name the source with letters, digits and -, such as zendesk."
    elif "source" not in errors:
        errors["source"] = "Name where the ticket comes from, such as zendesk."
    external_id = _text(
        errors, "external_id", raw.get("external_id"), MAX_EXTERNAL_ID_LENGTH, numbers=True
    )
    if external_id is None and "external_id" not in errors:
        errors["external_id"] = "Send the desk's id of the ticket."
    created_at = None
    if raw.get("created_at") in (None, ""):
        errors["created_at"] = "Send when the ticket was opened."
    else:
        created_at = _moment(errors, raw.get("created_at"), now)
    user_id = _text(errors, "user_id", raw.get("user_id"), MAX_USER_ID_LENGTH, numbers=True)
    email = None
    raw_email = _text(errors, "email", raw.get("email"), 320)
    if raw_email is not None:
        try:
            email = normalized_address(raw_email)
        except ValidationFailed as error:
            errors["email"] = error.errors["email"]
    if require_requester and user_id is None and email is None and "email" not in errors:
        errors.setdefault("user_id", "Send the requester's user_id, email or both.")
    app_version = _text(errors, "app_version", raw.get("app_version"), MAX_APP_VERSION_LENGTH)
    tags = _tags(errors, raw.get("tags"))
    subject_value = raw.get("subject")
    if isinstance(subject_value, str):  # a subject is one line, however the desk wrapped it
        subject_value = " ".join(subject_value.split())
    subject = _text(errors, "subject", subject_value, MAX_SUBJECT_LENGTH)
    if errors:
        raise ValidationFailed(errors)
    assert source_text and external_id and created_at  # noqa: S101 - each set unless an error
    return TicketInput(
        source=source_text,
        external_id=external_id,
        created_at=created_at,
        user_id=user_id,
        email=email,
        app_version=app_version,
        tags=tags,
        subject=subject,
    )


def _insert(dialect_name: str) -> Any:
    """An insert that does nothing when the ticket is there already: two deliveries of one
    ticket at once make one row, and the second becomes an update or nothing."""
    dialect = {"sqlite": sqlite, "postgresql": postgresql}[dialect_name]
    return (
        dialect.insert(_tickets)
        .on_conflict_do_nothing(
            index_elements=[_tickets.c.product_id, _tickets.c.source, _tickets.c.external_id]
        )
        .returning(_tickets.c.id)
    )


_INSERTS = {name: _insert(name) for name in ("sqlite", "postgresql")}
# What a delivery says about a ticket; everything else is derived from these.
_DELIVERED = (
    "created_at",
    "requester_external_id",
    "requester_key",
    "app_version",
    "tags",
    "subject",
)


def _matching_user(
    session: Session, product_id: int, external_id: str | None, key: str | None
) -> int | None:
    """The end user a requester is: by the host's id, else by the keyed address."""
    if external_id is not None:
        found = session.scalar(
            select(EndUser.id).where(
                EndUser.product_id == product_id, EndUser.external_id == external_id
            )
        )
        if found is not None:
            return found
    if key is not None:
        return session.scalar(
            select(func.min(EndUser.id)).where(
                EndUser.product_id == product_id, EndUser.email_key == key
            )
        )
    return None


def find(session: Session, product_id: int, source: str, external_id: str) -> Ticket | None:
    """The product's ticket from ``source`` with the desk's id ``external_id``, as stored now."""
    return session.scalar(
        select(Ticket)
        .where(
            Ticket.product_id == product_id,
            Ticket.source == source,
            Ticket.external_id == external_id,
        )
        .execution_options(populate_existing=True)
    )


def store(
    session: Session,
    product: Product,
    ticket: TicketInput,
    *,
    secret_key: str,
    connection: SupportConnection | None = None,
    now: datetime,
) -> Status:
    """Insert the ticket, or update its row when the desk's view of it changed.

    A delivery that changes nothing is "unchanged" and writes nothing. What a delivery
    does not say (no requester, no app version, no subject) keeps what an earlier one
    said: desks send partial updates. The requester is matched to an end user by the
    host's user id, else by the keyed address; the address itself is not kept. Writes
    in the caller's transaction and commits nothing.
    """
    key = email_key(secret_key, ticket.email) if ticket.email else None
    delivered: dict[str, Any] = {
        "created_at": ticket.created_at,
        "requester_external_id": ticket.user_id,
        "requester_key": key,
        "app_version": ticket.app_version,
        "tags": list(ticket.tags),
        "subject": ticket.subject,
    }
    stored = session.execute(
        select(*(_tickets.c[name] for name in ("id", "end_user_id", *_DELIVERED))).where(
            _tickets.c.product_id == product.id,
            _tickets.c.source == ticket.source,
            _tickets.c.external_id == ticket.external_id,
        )
    ).first()
    if stored is None:
        row = {
            **delivered,
            **_derived(delivered),
            "product_id": product.id,
            "connection_id": connection.id if connection is not None else None,
            "source": ticket.source,
            "external_id": ticket.external_id,
            "received_at": now,
            "updated_at": now,
            "end_user_id": _matching_user(session, product.id, ticket.user_id, key),
        }
        inserted = session.execute(_INSERTS[session.get_bind().dialect.name], row).first()
        if inserted is not None:
            return "created"
        # Another delivery of the same ticket stored it first: this one is an update.
        stored = session.execute(
            select(*(_tickets.c[name] for name in ("id", "end_user_id", *_DELIVERED))).where(
                _tickets.c.product_id == product.id,
                _tickets.c.source == ticket.source,
                _tickets.c.external_id == ticket.external_id,
            )
        ).one()
    if ticket.user_id is None and key is None:
        delivered["requester_external_id"] = stored.requester_external_id
        delivered["requester_key"] = stored.requester_key
    for name in ("app_version", "subject"):
        if delivered[name] is None:
            delivered[name] = getattr(stored, name)
    if all(delivered[name] == getattr(stored, name) for name in _DELIVERED):
        return "unchanged"
    changes = {**delivered, **_derived(delivered), "updated_at": now}
    requester = (delivered["requester_external_id"], delivered["requester_key"])
    if requester != (stored.requester_external_id, stored.requester_key):
        changes["end_user_id"] = _matching_user(session, product.id, *requester)
    if connection is not None:
        changes["connection_id"] = connection.id
    session.execute(update(_tickets).where(_tickets.c.id == stored.id).values(**changes))
    return "updated"


def _derived(delivered: Mapping[str, Any]) -> dict[str, Any]:
    """The folded text topics are matched against: ``|tag|tag|`` and the subject."""
    subject = delivered["subject"]
    return {
        "tag_text": "|" + "".join(f"{tag}|" for tag in delivered["tags"]),
        "subject_key": fold_tag(subject)[:MAX_SUBJECT_LENGTH] if subject else "",
    }


def match_unmatched(session: Session, product_id: int) -> int:
    """Match the product's unmatched tickets to end users seen since they arrived, in one
    UPDATE; returns how many were matched."""
    users = cast(Table, EndUser.__table__)
    by_id = (
        select(users.c.id)
        .where(
            users.c.product_id == _tickets.c.product_id,
            users.c.external_id == _tickets.c.requester_external_id,
        )
        .scalar_subquery()
    )
    by_key = (
        select(func.min(users.c.id))
        .where(
            users.c.product_id == _tickets.c.product_id,
            users.c.email_key == _tickets.c.requester_key,
        )
        .scalar_subquery()
    )
    found = func.coalesce(by_id, by_key)
    result = session.execute(
        update(_tickets)
        .where(
            _tickets.c.product_id == product_id,
            _tickets.c.end_user_id.is_(None),
            or_(
                _tickets.c.requester_external_id.is_not(None), _tickets.c.requester_key.is_not(None)
            ),
            found.is_not(None),
        )
        .values(end_user_id=found)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def topic_clause(topics: Sequence[str]) -> ColumnElement[bool]:
    """Tickets about any of ``topics``: tagged with one, or with one in the subject.
    No topics means every ticket."""
    folded = [topic for topic in dict.fromkeys(fold_tag(t) for t in topics) if topic]
    if not folded:
        return true()
    return or_(
        *(
            clause
            for topic in folded
            for clause in (
                Ticket.tag_text.like(like_pattern(f"|{topic}|"), escape="\\"),
                Ticket.subject_key.like(like_pattern(topic), escape="\\"),
            )
        )
    )
