"""What an end user does, written idempotently: being seen, reading notes, reacting,
acknowledging a notice.

Being seen also writes, on a user's first sighting of each UTC day, the day's
:class:`~announcements.models.EndUserDay` row that the roll-up counts active and exposed
users from (``announcements.rollups``).

These sit on the widget's hot path, so they speak SQLAlchemy Core on a connection
rather than the ORM.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from typing import cast as typing_cast

from sqlalchemy import Connection, Table, update
from sqlalchemy.dialects import postgresql, sqlite

from announcements.catalogue import Catalogue
from announcements.errors import ValidationFailed
from announcements.languages import N_
from announcements.models import (
    Acknowledgement,
    AgentSend,
    EndUser,
    EndUserDay,
    Reaction,
    ReadReceipt,
)
from announcements.user_state import EndUserState

MAX_READS_PER_CALL = 100
MAX_COMMENT_LENGTH = 1000
REACTIONS = {"👍": N_("Helpful"), "👎": N_("Not helpful"), "😕": N_("Confusing")}
# How the widget says it showed a note it reports read: in its panel, or as a modal.
WIDGET_CHANNELS = ("widget", "popup")
# The channel of the first read of a note an agent sent, however the widget showed it.
AGENT_CHANNEL = "agent"
# "Last seen" is kept to the hour: page views in between change nothing in the
# database, so a read-only request stays read-only.
SEEN_GRANULARITY = timedelta(hours=1)
# Bidirectional embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069): in a
# comment they could reverse or reorder the text around it where the console shows it.
# The marks U+200E and U+200F stay: they reorder nothing beyond themselves, and right-
# to-left writers need them.
BIDI_CONTROLS = dict.fromkeys([*range(0x202A, 0x202F), *range(0x2066, 0x206A)])

_users = typing_cast(Table, EndUser.__table__)
_receipts = typing_cast(Table, ReadReceipt.__table__)
_reactions = typing_cast(Table, Reaction.__table__)
_acknowledgements = typing_cast(Table, Acknowledgement.__table__)
_sends = typing_cast(Table, AgentSend.__table__)
_days = typing_cast(Table, EndUserDay.__table__)


@dataclass(frozen=True)
class Sighting:
    """What the host says about the user on this call."""

    external_id: str
    app_version: str | None = None
    locale: str | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)
    # The keyed hash of an address the host signed for the user (never the address).
    email_key: str | None = None


def _upserts(dialect: Any) -> dict[str, Any]:
    """The writes of this module, built once per dialect: each compiles once and is cached."""
    user = dialect.insert(_users)
    reaction = dialect.insert(_reactions)
    return {
        # Two first requests of the same user can race; the second one finds the row.
        "user": user.on_conflict_do_update(
            index_elements=[_users.c.product_id, _users.c.external_id],
            set_={"last_seen_at": user.excluded.last_seen_at},
        ).returning(_users.c.id, _users.c.first_seen_at),
        "receipt": dialect.insert(_receipts).on_conflict_do_nothing(
            index_elements=[_receipts.c.end_user_id, _receipts.c.note_id]
        ),
        "reaction": reaction.on_conflict_do_update(
            index_elements=[_reactions.c.end_user_id, _reactions.c.note_id],
            set_={name: reaction.excluded[name] for name in ("reaction", "comment", "updated_at")},
        ),
        # Acknowledging twice keeps the first time.
        "acknowledgement": dialect.insert(_acknowledgements).on_conflict_do_nothing(
            index_elements=[_acknowledgements.c.end_user_id, _acknowledgements.c.note_id]
        ),
        # Two first requests of the day can race too; the first sighting is the one kept.
        "day": dialect.insert(_days).on_conflict_do_nothing(
            index_elements=[_days.c.end_user_id, _days.c.day]
        ),
    }


_UPSERTS = {"sqlite": _upserts(sqlite), "postgresql": _upserts(postgresql)}


def _upsert(connection: Connection, kind: str) -> Any:
    return _UPSERTS[connection.dialect.name][kind]


def _is_new_day(state: EndUserState, now: datetime) -> bool:
    """Whether ``now`` is on another UTC day than the user's last sighting (both are UTC)."""
    return now.date() != state.last_seen_at.date()


def _changes(sighting: Sighting, state: EndUserState, now: datetime) -> dict[str, Any]:
    """What this sighting changes about a known user; nothing within the hour and the day.

    A new UTC day is a change even within the hour (seen at 23:30, then at 00:10): the
    day's first sighting writes the user's row for that day, and moves ``last_seen_at``
    so that the next page view that day writes nothing."""
    changes: dict[str, Any] = {}
    if sighting.app_version and sighting.app_version != state.app_version:
        changes["app_version"] = sighting.app_version
    if sighting.locale and sighting.locale != state.locale:
        changes["locale"] = sighting.locale
    if sighting.attributes and dict(sighting.attributes) != state.attributes:
        changes["attributes"] = dict(sighting.attributes)
    if sighting.email_key and sighting.email_key != state.email_key:
        changes["email_key"] = sighting.email_key
    if changes or now - state.last_seen_at >= SEEN_GRANULARITY or _is_new_day(state, now):
        changes["last_seen_at"] = now
    return changes


def needs_writing(sighting: Sighting, state: EndUserState | None, now: datetime) -> bool:
    """Whether :func:`see` would write: a new user, or a known one who changed."""
    return state is None or bool(_changes(sighting, state, now))


def unchanged_until(state: EndUserState) -> datetime:
    """Until when :func:`see` writes nothing for a sighting that changes nothing: the end
    of the hour after the last sighting, or of its UTC day if that comes first."""
    midnight = datetime.combine(state.last_seen_at.date() + timedelta(days=1), time(), UTC)
    return min(state.last_seen_at + SEEN_GRANULARITY, midnight)


def see(
    connection: Connection,
    product_id: int,
    sighting: Sighting,
    state: EndUserState | None,
    now: datetime,
) -> EndUserState:
    """Record that the host showed us this user: create them, or refresh what changed.

    A user already seen within the hour and the UTC day, on the same version, locale,
    attributes and signed address, costs no write. Given attributes replace the stored
    ones, and a given address key the stored one; none given keeps them. The first
    sighting of a UTC day also records the day (:func:`_record_day`).
    """
    if state is not None:
        changes = _changes(sighting, state, now)
        if changes:
            if _is_new_day(state, now):
                # The day's row first: on PostgreSQL each statement commits alone, and a
                # call cut off after it is repeated in full, where a user row already
                # moved to today would never write the day.
                _record_day(
                    connection,
                    product_id,
                    state.id,
                    changes.get("app_version", state.app_version),
                    now,
                    previous_day=state.last_seen_at.date(),
                    previous_version=state.app_version,
                )
            connection.execute(update(_users).where(_users.c.id == state.id).values(**changes))
            for name, value in changes.items():
                setattr(state, name, value)
        return state
    new = first_sight(sighting, now)
    row = connection.execute(
        _upsert(connection, "user"),
        {
            "product_id": product_id,
            "external_id": new.external_id,
            "attributes": new.attributes,
            "locale": new.locale,
            "app_version": new.app_version,
            "email_key": new.email_key,
            "first_seen_at": now,
            "last_seen_at": now,
        },
    ).one()
    _record_day(connection, product_id, row.id, new.app_version, now)
    return replace(new, id=row.id, first_seen_at=row.first_seen_at)


def _record_day(
    connection: Connection,
    product_id: int,
    end_user_id: int,
    app_version: str | None,
    now: datetime,
    *,
    previous_day: date | None = None,
    previous_version: str | None = None,
) -> None:
    """Record that the widget saw the user on ``now``'s UTC day, on ``app_version``, with
    the day and version of their previous sighting (None for a new user); a second row
    for the same day is not written."""
    connection.execute(
        _upsert(connection, "day"),
        {
            "end_user_id": end_user_id,
            "day": now.date(),
            "product_id": product_id,
            "seen_at": now,
            "app_version": app_version,
            "previous_day": previous_day,
            "previous_version": previous_version,
        },
    )


def first_sight(sighting: Sighting, now: datetime) -> EndUserState:
    """The user :func:`see` would create for a sighting of someone never seen before, not
    stored (its id is 0): first seen ``now``, so that a call that writes nothing (help)
    treats them as the notes endpoint will once it has stored them."""
    return EndUserState(
        id=0,
        external_id=sighting.external_id,
        first_seen_at=now,
        last_seen_at=now,
        app_version=sighting.app_version,
        locale=sighting.locale,
        attributes=dict(sighting.attributes),
        email_key=sighting.email_key,
    )


def _unknown(
    catalogue: Catalogue, note_ids: Iterable[int], now: datetime, listed: AbstractSet[int] | None
) -> list[int]:
    """The ids that are not of a note the user can see at ``now``, in order: with
    ``listed`` (what their widget lists), those not in it; with None (a user with no
    stored version and attributes, such as an anonymous one), those not of a note of the
    product end users can see.

    A scheduled note is as unknown as a draft: that it exists is not for end users to
    know until it goes out. Those are the catalogue's first notes, as it is newest first.
    """
    if listed is not None:
        return sorted({i for i in note_ids if i not in listed})
    ahead = itertools.takewhile(lambda note: note.published_at > now, catalogue.notes)
    scheduled = {note.id for note in ahead}
    return sorted({i for i in note_ids if i not in catalogue.ids or i in scheduled})


def check_readable(
    catalogue: Catalogue,
    note_ids: Iterable[Any],
    *,
    now: datetime,
    listed: AbstractSet[int] | None = None,
) -> list[int]:
    """The ids as a list of the product's published notes, and with ``listed``, of those
    (what the user's widget lists); ValidationFailed otherwise."""
    ids = list(note_ids)
    if not ids:
        raise ValidationFailed({"note_ids": "List the ids of the notes that were read."})
    if len(ids) > MAX_READS_PER_CALL:
        raise ValidationFailed(
            {"note_ids": f"Send at most {MAX_READS_PER_CALL} note ids per call."}
        )
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise ValidationFailed({"note_ids": "Note ids are whole numbers."})
    unknown = _unknown(catalogue, ids, now, listed)
    if unknown:
        where = "of this product" if listed is None else "in this user's widget"
        raise ValidationFailed(
            {
                "note_ids": f"No published note {where} has the id(s) "
                + ", ".join(str(i) for i in unknown[:10])
                + "."
            }
        )
    return list(dict.fromkeys(ids))


def check_channel(raw: Any) -> str:
    """How the widget showed the notes it reports read; "widget" when it does not say."""
    if raw is None:
        return "widget"
    if raw not in WIDGET_CHANNELS:
        raise ValidationFailed({"channel": 'The channel is "widget" or "popup".'})
    return typing_cast(str, raw)


def would_record(state: EndUserState | None, note_ids: Iterable[int]) -> bool:
    """Whether :func:`mark_read` would write for these notes: one is unread, or pinned."""
    if state is None:
        return True
    ids = set(note_ids)
    return not state.read_ids.issuperset(ids) or not state.pinned.isdisjoint(ids)


def mark_read(
    connection: Connection,
    state: EndUserState,
    note_ids: Iterable[int],
    *,
    channel: str,
    now: datetime,
) -> int:
    """Record reads not recorded yet; a repeated read changes nothing. Returns how many were new.

    Reading a note an agent sent the user unpins it (every unread send of it) and, if it
    is their first read of it, is recorded with the channel "agent"; an earlier read is
    kept as it was, as the first read is the one attribution counts.
    """
    ids = list(note_ids)
    pinned = state.pinned.intersection(ids)
    if pinned:
        connection.execute(
            update(_sends)
            .where(
                _sends.c.end_user_id == state.id,
                _sends.c.note_id.in_(sorted(pinned)),
                _sends.c.read_at.is_(None),
            )
            .values(read_at=now)
        )
        state.pinned.difference_update(pinned)
    new = [note_id for note_id in ids if note_id not in state.read_ids]
    if not new:
        return 0
    # One statement with many parameter sets: it compiles once, whatever the batch size.
    connection.execute(
        _upsert(connection, "receipt"),
        [
            {
                "end_user_id": state.id,
                "note_id": note_id,
                "read_at": now,
                "channel": AGENT_CHANNEL if note_id in pinned else channel,
            }
            for note_id in new
        ],
    )
    state.read_ids.update(new)
    return len(new)


def record_read(
    connection: Connection, end_user_id: int, note_id: int, *, channel: str, now: datetime
) -> None:
    """Record one read that came from outside the widget (a link in a mail); idempotent."""
    connection.execute(
        _upsert(connection, "receipt"),
        [{"end_user_id": end_user_id, "note_id": note_id, "read_at": now, "channel": channel}],
    )


def is_storable(text: str) -> bool:
    """Text every database can keep: no NUL character, and valid UTF-8 (no lone surrogate)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_reaction(
    catalogue: Catalogue, note_id: Any, reaction: Any, comment: Any, *, now: datetime
) -> str | None:
    """The comment, trimmed and without bidirectional controls, once the reaction is valid;
    ValidationFailed otherwise."""
    errors = {}
    if (
        not isinstance(note_id, int)
        or isinstance(note_id, bool)
        or _unknown(catalogue, [note_id], now, None)
    ):
        errors["note_id"] = "No published note of this product has that id."
    if reaction is not None and (not isinstance(reaction, str) or reaction not in REACTIONS):
        errors["reaction"] = "React with one of " + " ".join(REACTIONS) + ", or null to clear."
    if comment is not None and not isinstance(comment, str):
        errors["comment"] = "A comment is text."
    elif comment and len(comment) > MAX_COMMENT_LENGTH:
        errors["comment"] = f"Keep the comment under {MAX_COMMENT_LENGTH} characters."
    elif comment and not is_storable(comment):
        errors["comment"] = "The comment holds characters that are not text."
    if errors:
        raise ValidationFailed(errors)
    return comment.translate(BIDI_CONTROLS).strip() or None if comment else None


def check_acknowledgeable(
    catalogue: Catalogue, note_id: Any, *, now: datetime, listed: AbstractSet[int] | None
) -> int:
    """The id of a published note of the product that asks to be acknowledged, and with
    ``listed``, one of those (what the user's widget lists); ValidationFailed otherwise."""
    if (
        not isinstance(note_id, int)
        or isinstance(note_id, bool)
        or _unknown(catalogue, [note_id], now, listed)
        # A rare call: a look through the few hundred notes costs less than an index kept
        # with every catalogue.
        or not any(
            note.id == note_id and note.fields["requires_acknowledgement"]
            for note in catalogue.notes
        )
    ):
        raise ValidationFailed({"note_id": "No published notice to acknowledge has that id."})
    return note_id


def would_acknowledge(state: EndUserState | None, note_id: int) -> bool:
    """Whether :func:`acknowledge` would write: the notice is not acknowledged yet, or
    not read, or pinned."""
    return state is None or note_id not in state.acknowledged or would_record(state, [note_id])


def acknowledge(
    connection: Connection, state: EndUserState, note_id: int, *, now: datetime
) -> None:
    """Record that the user pressed "I understand" on a notice; the first time is kept.

    The notice was shown as a modal, so it is marked read as a popup if it was not read.
    """
    mark_read(connection, state, [note_id], channel="popup", now=now)
    if note_id not in state.acknowledged:
        connection.execute(
            _upsert(connection, "acknowledgement"),
            {"end_user_id": state.id, "note_id": note_id, "acknowledged_at": now},
        )
        state.acknowledged.add(note_id)


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
    connection.execute(
        _upsert(connection, "reaction"),
        {
            "end_user_id": state.id,
            "note_id": note_id,
            "reaction": reaction,
            "comment": comment,
            "created_at": now,
            "updated_at": now,
        },
    )
