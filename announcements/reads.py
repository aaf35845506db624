"""What each end user has read: their inbox of notes, and marking notes read — idempotently.

These functions sit on the widget's hot path, so they speak SQLAlchemy Core on a
connection rather than the ORM: :func:`fetch_state` reads the product's stamp, the
end user and everything they have read and reacted to in one indexed query.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from packaging.version import Version
from sqlalchemy import Connection, Table, and_, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite

from announcements import targeting
from announcements.catalogue import Catalogue, CatalogueNote
from announcements.errors import ValidationFailed
from announcements.models import EndUser, Product, Reaction, ReadReceipt

MAX_PAGE = 50
MAX_READS_PER_CALL = 100
MAX_COMMENT_LENGTH = 1000
REACTIONS = {"👍": "helpful", "👎": "not helpful", "😕": "confusing"}
# "Last seen" is kept to the hour: page views in between change nothing in the
# database, so a read-only request stays read-only.
SEEN_GRANULARITY = timedelta(hours=1)
CURSOR_PATTERN = re.compile(r"(\d{1,20})\.(\d{1,12})")

_users = cast(Table, EndUser.__table__)
_receipts = cast(Table, ReadReceipt.__table__)
_reactions = cast(Table, Reaction.__table__)
_products = cast(Table, Product.__table__)

STATE_QUERY = (
    select(
        _products.c.catalogue_stamp,
        _users.c.id,
        _users.c.first_seen_at,
        _users.c.last_seen_at,
        _users.c.app_version,
        _users.c.locale,
        _users.c.attributes,
        _receipts.c.note_id,
        _reactions.c.reaction,
    )
    .select_from(
        _products.outerjoin(
            _users,
            and_(
                _users.c.product_id == _products.c.id,
                _users.c.external_id == bindparam("external_id"),
            ),
        )
        .outerjoin(_receipts, _receipts.c.end_user_id == _users.c.id)
        .outerjoin(
            _reactions,
            and_(
                _reactions.c.end_user_id == _receipts.c.end_user_id,
                _reactions.c.note_id == _receipts.c.note_id,
            ),
        )
    )
    .where(_products.c.widget_key == bindparam("widget_key"))
)


@dataclass
class EndUserState:
    """An end user as stored, with the notes they read and their reactions to them."""

    id: int
    first_seen_at: datetime
    last_seen_at: datetime
    app_version: str | None
    locale: str | None
    attributes: dict[str, str]
    read_ids: set[int] = field(default_factory=set)
    reactions: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Sighting:
    """What the host says about the user on this call."""

    external_id: str
    app_version: str | None = None
    locale: str | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)


def fetch_state(
    connection: Connection, widget_key: str, external_id: str | None
) -> tuple[int | None, EndUserState | None]:
    """The product's catalogue stamp (None: no such product) and the end user, if known."""
    rows = connection.execute(
        STATE_QUERY, {"widget_key": widget_key, "external_id": external_id}
    ).all()
    if not rows:
        return None, None
    first = rows[0]
    if first.id is None:
        return first.catalogue_stamp, None
    state = EndUserState(
        id=first.id,
        first_seen_at=first.first_seen_at,
        last_seen_at=first.last_seen_at,
        app_version=first.app_version,
        locale=first.locale,
        attributes=first.attributes or {},
    )
    for row in rows:
        if row.note_id is not None:
            state.read_ids.add(row.note_id)
            if row.reaction is not None:
                state.reactions[row.note_id] = row.reaction
    return first.catalogue_stamp, state


def _insert(connection: Connection, table: Any) -> Any:
    """An INSERT that can say ON CONFLICT, in the connection's dialect."""
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def see(
    connection: Connection,
    product_id: int,
    sighting: Sighting,
    state: EndUserState | None,
    now: datetime,
) -> EndUserState:
    """Record that the host showed us this user: create them, or refresh what changed.

    A user already seen within the hour, on the same version, locale and attributes,
    costs no write. Given attributes replace the stored ones; none given keeps them.
    """
    attributes = dict(sighting.attributes) if sighting.attributes else None
    if state is not None:
        changes: dict[str, Any] = {}
        if sighting.app_version and sighting.app_version != state.app_version:
            changes["app_version"] = sighting.app_version
        if sighting.locale and sighting.locale != state.locale:
            changes["locale"] = sighting.locale
        if attributes is not None and attributes != state.attributes:
            changes["attributes"] = attributes
        if changes or now - state.last_seen_at >= SEEN_GRANULARITY:
            changes["last_seen_at"] = now
            connection.execute(update(_users).where(_users.c.id == state.id).values(**changes))
            for name, value in changes.items():
                setattr(state, name, value)
        return state
    statement = _insert(connection, _users).values(
        product_id=product_id,
        external_id=sighting.external_id,
        attributes=attributes or {},
        locale=sighting.locale,
        app_version=sighting.app_version,
        first_seen_at=now,
        last_seen_at=now,
    )
    # Two first requests of the same user can race; the second one finds the row.
    statement = statement.on_conflict_do_update(
        index_elements=[_users.c.product_id, _users.c.external_id],
        set_={"last_seen_at": now},
    ).returning(_users.c.id, _users.c.first_seen_at)
    row = connection.execute(statement).one()
    return EndUserState(
        id=row.id,
        first_seen_at=row.first_seen_at,
        last_seen_at=now,
        app_version=sighting.app_version,
        locale=sighting.locale,
        attributes=attributes or {},
    )


# The inbox --------------------------------------------------------------------


@dataclass(frozen=True)
class Inbox:
    """One page of the notes a user may see, newest first, and their unread count."""

    entries: list[tuple[CatalogueNote, bool, str | None]]  # note, read, reaction
    unread_count: int
    next_cursor: str | None
    stamp: int
    product_json: str

    def etag(self) -> str:
        """A strong validator of everything the response says."""
        digest = hashlib.blake2b(digest_size=12)
        digest.update(f"{self.stamp}|{self.unread_count}|{self.next_cursor}".encode())
        for note, read, reaction in self.entries:
            digest.update(f"|{note.id}:{int(read)}:{reaction or ''}".encode())
        return digest.hexdigest()

    def json(self) -> str:
        """The widget API's response body, assembled from each note's prepared JSON."""
        notes = ",".join(
            f'{note.json_head},"read":{"true" if read else "false"},'
            f'"reaction":{_json_reaction(reaction)}}}'
            for note, read, reaction in self.entries
        )
        cursor = f'"{self.next_cursor}"' if self.next_cursor else "null"
        return (
            f'{{"product":{self.product_json},"unread_count":{self.unread_count},'
            f'"notes":[{notes}],"next_cursor":{cursor}}}'
        )


def _json_reaction(reaction: str | None) -> str:
    return "null" if reaction is None else f'"{reaction}"'


def _cursor_key(note: CatalogueNote) -> tuple[int, int]:
    return int(note.published_at.timestamp() * 1_000_000), note.id


def parse_cursor(raw: str | None) -> tuple[int, int] | None:
    """The position a ``cursor`` from an earlier page points after; ValidationFailed if forged."""
    if not raw:
        return None
    match = CURSOR_PATTERN.fullmatch(raw)
    if match is None:
        raise ValidationFailed({"cursor": "Use the next_cursor of the previous page."})
    return int(match.group(1)), int(match.group(2))


def _graced(visible: list[CatalogueNote], state: EndUserState, releases: int) -> set[int]:
    """Notes that count as seen because they predate the user's first visit.

    Of what was already out when the user was first seen, only the newest
    ``releases`` versions start unread; the history before them does not.
    """
    before = [note for note in visible if note.published_at <= state.first_seen_at]
    newest: list[Version] = sorted({note.sort_version for note in before}, reverse=True)
    kept = set(newest[:releases])
    return {note.id for note in before if note.sort_version not in kept}


def inbox(
    catalogue: Catalogue,
    state: EndUserState | None,
    *,
    attributes: Mapping[str, str],
    app_version: Version | None,
    now: datetime,
    limit: int,
    after: tuple[int, int] | None,
) -> Inbox:
    """The notes this user may see, with what they read; ``state`` None is anonymous."""
    visible = [
        note
        for note in catalogue.notes
        if note.is_live(now)
        and (app_version is None or note.sort_version <= app_version)
        and targeting.matches(note.audience, attributes)
    ]
    if state is None:
        read_ids: set[int] = set()
        reactions: dict[int, str] = {}
    else:
        read_ids = state.read_ids | _graced(visible, state, catalogue.grace_releases)
        reactions = state.reactions
    unread_count = sum(1 for note in visible if note.id not in read_ids)
    if after is not None:
        visible = [note for note in visible if _cursor_key(note) < after]
    page = visible[:limit]
    next_cursor = None
    if len(visible) > limit:
        key = _cursor_key(page[-1])
        next_cursor = f"{key[0]}.{key[1]}"
    return Inbox(
        entries=[(note, note.id in read_ids, reactions.get(note.id)) for note in page],
        unread_count=unread_count,
        next_cursor=next_cursor,
        stamp=catalogue.stamp,
        product_json=catalogue.product_json,
    )


# Reading and reacting -----------------------------------------------------------


def check_readable(catalogue: Catalogue, note_ids: Iterable[Any]) -> list[int]:
    """The ids as a list of the product's published notes; ValidationFailed otherwise."""
    ids = list(note_ids)
    if not ids:
        raise ValidationFailed({"note_ids": "List the ids of the notes that were read."})
    if len(ids) > MAX_READS_PER_CALL:
        raise ValidationFailed(
            {"note_ids": f"Send at most {MAX_READS_PER_CALL} note ids per call."}
        )
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise ValidationFailed({"note_ids": "Note ids are whole numbers."})
    unknown = sorted({i for i in ids if i not in catalogue.ids})
    if unknown:
        raise ValidationFailed(
            {
                "note_ids": "No published note of this product has the id(s) "
                + ", ".join(str(i) for i in unknown[:10])
                + "."
            }
        )
    return list(dict.fromkeys(ids))


def mark_read(
    connection: Connection,
    state: EndUserState,
    note_ids: Iterable[int],
    *,
    channel: str,
    now: datetime,
) -> int:
    """Record reads not recorded yet; a repeated read changes nothing. Returns how many were new."""
    new = [note_id for note_id in note_ids if note_id not in state.read_ids]
    if not new:
        return 0
    statement = (
        _insert(connection, _receipts)
        .values(
            [
                {"end_user_id": state.id, "note_id": note_id, "read_at": now, "channel": channel}
                for note_id in new
            ]
        )
        .on_conflict_do_nothing(index_elements=[_receipts.c.end_user_id, _receipts.c.note_id])
    )
    connection.execute(statement)
    state.read_ids.update(new)
    return len(new)


def check_reaction(catalogue: Catalogue, note_id: Any, reaction: Any, comment: Any) -> str | None:
    """The comment, trimmed, once the reaction is valid; ValidationFailed otherwise."""
    errors = {}
    if not isinstance(note_id, int) or isinstance(note_id, bool) or note_id not in catalogue.ids:
        errors["note_id"] = "No published note of this product has that id."
    if reaction is not None and reaction not in REACTIONS:
        errors["reaction"] = "React with one of " + " ".join(REACTIONS) + ", or null to clear."
    if comment is not None and not isinstance(comment, str):
        errors["comment"] = "A comment is text."
    elif comment and len(comment) > MAX_COMMENT_LENGTH:
        errors["comment"] = f"Keep the comment under {MAX_COMMENT_LENGTH} characters."
    if errors:
        raise ValidationFailed(errors)
    return comment.strip() or None if comment else None


def react(
    connection: Connection,
    state: EndUserState,
    note_id: int,
    reaction: str | None,
    comment: str | None,
    *,
    now: datetime,
) -> None:
    """Set (or with ``reaction`` None, clear) the user's one reaction to a note.

    Reacting to a note means it was read, so it is marked read too.
    """
    mark_read(connection, state, [note_id], channel="widget", now=now)
    if reaction is None:
        connection.execute(
            _reactions.delete().where(
                _reactions.c.end_user_id == state.id, _reactions.c.note_id == note_id
            )
        )
        return
    values = {"reaction": reaction, "comment": comment, "updated_at": now}
    statement = _insert(connection, _reactions).values(
        end_user_id=state.id, note_id=note_id, created_at=now, **values
    )
    connection.execute(
        statement.on_conflict_do_update(
            index_elements=[_reactions.c.end_user_id, _reactions.c.note_id], set_=values
        )
    )
