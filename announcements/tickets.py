"""Help-desk tickets: the one rule for what a ticket is, and storing it once.

Tickets arrive from a desk's webhook (``announcements.support_desks``), the management
API and a CSV import (``announcements.ticket_import``); each goes through
:func:`check_ticket` and :func:`store_many` (:func:`store` is it for one ticket), so a
ticket is one row per product, source and desk ticket id however often and by whichever
way it comes.

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
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast

from sqlalchemy import (
    ColumnElement,
    RowMapping,
    String,
    Table,
    bindparam,
    func,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from announcements import reads
from announcements.errors import ValidationFailed
from announcements.models import EndUser, Product, SupportConnection, Ticket
from announcements.queries import like_pattern
from announcements.subscriptions import MAX_ADDRESS_LENGTH, normalized_address

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
    email: str | None = None  # normalised as subscriptions.normalized_address does
    app_version: str | None = None
    tags: tuple[str, ...] | None = None  # None: not said, so the stored tags stay
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
    return _keyed(secret_key, normal)


def _keyed(secret_key: str, normal: str) -> str:
    """:func:`email_key` of an address normalised already, as :func:`check_ticket` leaves
    a ticket's: checking an address costs a hundred times the hash, and storing tickets
    in bulk would check each one twice."""
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


def _tags(errors: dict[str, str], value: Any) -> tuple[str, ...] | None:
    """The tags folded and kept once each; None when ``value`` says nothing of tags, and
    an empty tuple for an empty list, which clears the stored ones."""
    if value is None:
        return None
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
    folded with :func:`fold_tag` and kept once each; no ``tags`` at all (None) leaves
    the stored tags as they are, and a list, even an empty one, replaces them. A ticket
    names its requester by ``user_id`` (the host's id for the user), ``email``, or both;
    a desk whose event does not name one passes ``require_requester=False`` and the
    ticket stays unmatched.
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
            errors["source"] = (
                "Name the source with letters, digits, - . and _ (starting with a letter or "
                "digit), such as zendesk."
            )
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
    raw_email = _text(errors, "email", raw.get("email"), MAX_ADDRESS_LENGTH)
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
    """An insert that does nothing for a ticket that is there already, and names the rows
    it did insert: two deliveries of one ticket at once make one row, and the one that
    finds it stored becomes an update or nothing."""
    dialect = {"sqlite": sqlite, "postgresql": postgresql}[dialect_name]
    return (
        dialect.insert(_tickets)
        .on_conflict_do_nothing(
            index_elements=[_tickets.c.product_id, _tickets.c.source, _tickets.c.external_id]
        )
        .returning(_tickets.c.source, _tickets.c.external_id)
    )


_INSERTS = {name: _insert(name) for name in ("sqlite", "postgresql")}
# Changed rows are written by one statement the driver runs once for each (executemany).
_UPDATE = update(_tickets).where(_tickets.c.id == bindparam("ticket_id"))
# What a delivery says about a ticket; everything else is derived from these.
_DELIVERED = (
    "created_at",
    "requester_external_id",
    "requester_key",
    "app_version",
    "tags",
    "subject",
)
# Tickets stored per round of statements by store_many. A round's select and look-ups
# bind a value a ticket, which at this size stays well under SQLite's limit of 32,766
# values in a statement (PostgreSQL's is 65,535); SQLAlchemy splits a larger insert.
STORE_ROUND = 1000

_Requester = tuple[str | None, str | None]  # the host's user id, the keyed address
_Name = tuple[str, str]  # the ticket's source and desk id


def _matching_user(
    session: Session, product_id: int, requesters: Collection[_Requester]
) -> dict[_Requester, int | None]:
    """The end user each requester is: by the host's id, else by the keyed address. One
    look-up for the ids and one for the addresses the ids did not find."""
    ids = {external_id for external_id, _ in requesters if external_id is not None}
    by_id: dict[str | None, int] = {}
    if ids:
        by_id = dict(
            session.execute(
                select(EndUser.external_id, EndUser.id).where(
                    EndUser.product_id == product_id, EndUser.external_id.in_(ids)
                )
            ).all()
        )
    keys = {key for external_id, key in requesters if key is not None and external_id not in by_id}
    by_key: dict[str | None, int] = {}
    if keys:
        by_key = dict(
            session.execute(
                select(EndUser.email_key, func.min(EndUser.id))
                .where(EndUser.product_id == product_id, EndUser.email_key.in_(keys))
                .group_by(EndUser.email_key)
            ).all()
        )
    return {
        (external_id, key): by_id.get(external_id, by_key.get(key))
        for external_id, key in requesters
    }


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
    does not say (no requester, no app version, no tags, no subject) keeps what an
    earlier one said: desks send partial updates. The requester is matched to an end
    user by the host's user id, else by the keyed address; the address itself is not
    kept. Writes in the caller's transaction and commits nothing. It is
    :func:`store_many` of one.
    """
    [status] = store_many(
        session, product, [ticket], secret_key=secret_key, connection=connection, now=now
    )
    return status


def store_many(
    session: Session,
    product: Product,
    tickets: Sequence[TicketInput],
    *,
    secret_key: str,
    connection: SupportConnection | None = None,
    now: datetime,
) -> list[Status]:
    """Store each ticket as though one after another: insert it, or update its row when
    the delivery changes it (what a delivery leaves out keeps what was stored), and
    return each one's status in order; a ticket given twice is its two deliveries in
    turn ("created", then "updated" or "unchanged").

    Each ``STORE_ROUND`` tickets take a handful of statements, however many they are:
    one select of the rows stored already, a look-up of end users by id and one by
    keyed address for the requesters to match, one insert of the new rows, and one
    update statement run for each changed row. Stored one at a time, a ticket took
    about four statements: 20,000 new tickets took 11 s to import on SQLite and 56 s on
    PostgreSQL, against 2.3 s and 6.3 s now (bench/ticket_import_bench.py). A row
    another writer inserts between the select and the insert is one the insert skips
    (it does nothing on a conflict and names only the rows it wrote): those tickets'
    rows are read again and this round's deliveries applied to them as updates. Writes
    in the caller's transaction and commits nothing.
    """
    statuses: list[Status] = []
    for start in range(0, len(tickets), STORE_ROUND):
        statuses += _store_round(
            session,
            product.id,
            tickets[start : start + STORE_ROUND],
            secret_key=secret_key,
            connection_id=connection.id if connection is not None else None,
            now=now,
        )
    return statuses


@dataclass
class _Plan:
    """What a round's deliveries of one ticket come to: its values once each is applied
    in turn to the stored row (if any), and what each delivery did."""

    stored_id: int | None
    values: dict[str, Any]
    statuses: list[Status]
    requester_changed: bool

    @property
    def requester(self) -> _Requester:
        return (self.values["requester_external_id"], self.values["requester_key"])

    @property
    def is_changed(self) -> bool:
        return "updated" in self.statuses


def _store_round(
    session: Session,
    product_id: int,
    tickets: Sequence[TicketInput],
    *,
    secret_key: str,
    connection_id: int | None,
    now: datetime,
) -> list[Status]:
    """:func:`store_many` of at most ``STORE_ROUND`` tickets."""
    deliveries: dict[_Name, list[dict[str, Any]]] = {}
    for ticket in tickets:
        deliveries.setdefault((ticket.source, ticket.external_id), []).append(
            {
                "created_at": ticket.created_at,
                "requester_external_id": ticket.user_id,
                "requester_key": _keyed(secret_key, ticket.email) if ticket.email else None,
                "app_version": ticket.app_version,
                "tags": list(ticket.tags) if ticket.tags is not None else None,
                "subject": ticket.subject,
            }
        )
    stored = _stored(session, product_id, deliveries)
    plans = {name: _applied(stored.get(name), each) for name, each in deliveries.items()}
    requesters = {plan.requester for plan in plans.values() if plan.requester_changed}
    users = _matching_user(session, product_id, requesters) if requesters else {}
    # New rows in one order, by desk id, so two rounds inserting the same tickets at once
    # on PostgreSQL wait for each other rather than deadlock.
    new = sorted(name for name, plan in plans.items() if plan.stored_id is None)
    if new:
        rows = [
            {
                **plans[name].values,
                **_derived(plans[name].values),
                "product_id": product_id,
                "connection_id": connection_id,
                "source": name[0],
                "external_id": name[1],
                "received_at": now,
                "updated_at": now,
                "end_user_id": users.get(plans[name].requester),
            }
            for name in new
        ]
        insert = _INSERTS[session.get_bind().dialect.name]
        inserted = {(row.source, row.external_id) for row in session.execute(insert, rows)}
        lost = {name: deliveries[name] for name in new if name not in inserted}
        if lost:
            # Another delivery stored these first: this round's are updates of its rows.
            stored = _stored(session, product_id, lost)
            plans.update((name, _applied(stored[name], each)) for name, each in lost.items())
    changes: dict[bool, list[dict[str, Any]]] = {}  # by whether the requester changed
    for plan in sorted(plans.values(), key=lambda plan: plan.stored_id or 0):
        if plan.stored_id is None or not plan.is_changed:
            continue
        change = {**plan.values, **_derived(plan.values), "updated_at": now}
        change["ticket_id"] = plan.stored_id
        if plan.requester_changed:
            change["end_user_id"] = users[plan.requester]
        if connection_id is not None:
            change["connection_id"] = connection_id
        changes.setdefault(plan.requester_changed, []).append(change)
    for rows in changes.values():
        session.execute(_UPDATE, rows)
    applied = {name: iter(plan.statuses) for name, plan in plans.items()}
    return [next(applied[(ticket.source, ticket.external_id)]) for ticket in tickets]


def _stored(session: Session, product_id: int, names: Collection[_Name]) -> dict[_Name, RowMapping]:
    """The stored rows of these tickets: their ids and what deliveries said."""
    columns = [_tickets.c[name] for name in ("source", "external_id", "id", *_DELIVERED)]
    if session.get_bind().dialect.name == "postgresql":
        # One look-up per ticket in the unique index. Given an IN list, PostgreSQL plans
        # from the table's statistics, which lag while an import fills a product's
        # tickets: believing there are next to none, it read all of them for each batch
        # and, once psycopg prepared the statement, compared each with every id in the
        # list (1.3 s a batch at 100,000 tickets; 100,000 new tickets took 82 s where
        # they now take 28). The LIMIT (a ticket is one row) keeps the planner from
        # flattening the look-ups back into one join.
        wanted = (
            func.unnest(
                bindparam("sources", [source for source, _ in names], type_=ARRAY(String)),
                bindparam(
                    "external_ids", [external_id for _, external_id in names], type_=ARRAY(String)
                ),
            )
            .table_valued("source", "external_id")
            .render_derived(name="wanted")
        )
        one = (
            select(*columns)
            .where(
                _tickets.c.product_id == product_id,
                _tickets.c.source == wanted.c.source,
                _tickets.c.external_id == wanted.c.external_id,
            )
            .limit(1)
            .lateral()
        )
        query = select(one).select_from(wanted).join(one, true())
    else:
        # SQLite looks each pair of these sources and ids up in the unique index (a batch
        # has one source, or a few); the pairs that are not tickets asked for are dropped.
        query = select(*columns).where(
            _tickets.c.product_id == product_id,
            _tickets.c.source.in_({source for source, _ in names}),
            _tickets.c.external_id.in_({external_id for _, external_id in names}),
        )
    found = session.execute(query).mappings()
    return {name: row for row in found if (name := (row["source"], row["external_id"])) in names}


def _applied(stored: RowMapping | None, deliveries: Sequence[dict[str, Any]]) -> _Plan:
    """Each delivery applied in turn, to the stored row or, for a new ticket, to the first.

    What a delivery does not say (no requester, no app version, no tags, no subject)
    keeps what the row said: desks send partial updates. A new ticket delivered without
    tags has none.
    """
    values = {name: stored[name] for name in _DELIVERED} if stored is not None else None
    statuses: list[Status] = []
    requester_changed = stored is None
    for delivered in deliveries:
        if values is None:
            values = {**delivered, "tags": delivered["tags"] or []}
            statuses.append("created")
            continue
        merged = dict(delivered)
        if delivered["requester_external_id"] is None and delivered["requester_key"] is None:
            merged["requester_external_id"] = values["requester_external_id"]
            merged["requester_key"] = values["requester_key"]
        for name in ("app_version", "tags", "subject"):
            if merged[name] is None:
                merged[name] = values[name]
        if merged == values:
            statuses.append("unchanged")
            continue
        requester = ("requester_external_id", "requester_key")
        requester_changed |= any(merged[name] != values[name] for name in requester)
        values = merged
        statuses.append("updated")
    assert values is not None  # noqa: S101 - a plan is made for a ticket delivered at least once
    return _Plan(stored["id"] if stored else None, values, statuses, requester_changed)


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
