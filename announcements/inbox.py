"""An end user's inbox: the notes they may see, newest first, which of them are unread,
and the page of it a widget call asks for (or, for help before a ticket, all its unread
notes)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import islice

from packaging.version import Version

from announcements import versions
from announcements.catalogue import Catalogue, CatalogueNote
from announcements.errors import ValidationFailed
from announcements.user_state import EndUserState

MAX_PAGE = 50
CURSOR_PATTERN = re.compile(r"(\d{1,20})\.(\d{1,12})")


@dataclass(frozen=True)
class Inbox:
    """One page of the notes a user may see, newest first, and their unread count."""

    entries: list[tuple[CatalogueNote, bool, str | None]]  # note, read, reaction
    unread_count: int
    next_cursor: str | None
    stamp: int
    product: dict[str, str]
    # Unread notes held back from this user: listed, but neither counted nor popped up.
    quiet: frozenset[int]
    # Notices this user acknowledged, and notes an agent sent them that they have not read.
    acknowledged: frozenset[int] = frozenset()
    pinned: frozenset[int] = frozenset()
    # The reader's languages, best first (Catalogue.chain); none: the default text.
    chain: tuple[str, ...] = ()


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


def _graced(visible: Sequence[CatalogueNote], state: EndUserState, releases: int) -> set[int]:
    """Notes that count as seen because they predate the user's first visit.

    Of what was already out when the user was first seen, only the newest
    ``releases`` versions start unread; the history before them does not.
    """
    if not visible or visible[-1].published_at > state.first_seen_at:
        return set()  # everything came out after their first visit
    before = [note for note in visible if note.published_at <= state.first_seen_at]
    newest: list[Version] = sorted({note.sort_version for note in before}, reverse=True)
    kept = set(newest[:releases])
    return {note.id for note in before if note.sort_version not in kept}


@dataclass(frozen=True)
class _Marks:
    """What the user's state says of the notes they may see."""

    read_ids: set[int]
    quiet: frozenset[int]
    reactions: dict[int, str]
    acknowledged: frozenset[int]
    pinned: frozenset[int]
    unread_count: int


def _marks(
    catalogue: Catalogue,
    state: EndUserState | None,
    visible: Sequence[CatalogueNote],
    now: datetime,
) -> _Marks:
    """Which of the ``visible`` notes count as read, which are quiet, and how many are
    unread; ``state`` None is anonymous.

    Notes that predate the user's first visit (past the grace releases) count as read.
    Unread notes that hold the user back as a control are quiet: listed unread, so that
    reading one in the panel is recorded like any read, but left out of the count and
    never popped up. An anonymous user has no id to be held back by. A note an agent sent
    the user (pinned) is unread until they read it again, and never quiet.
    """
    if state is None:
        read_ids: set[int] = set()
        quiet: frozenset[int] = frozenset()
        reactions: dict[int, str] = {}
        acknowledged: frozenset[int] = frozenset()
        pinned: frozenset[int] = frozenset()
    else:
        pinned = frozenset(state.pinned)
        graced = _graced(visible, state, catalogue.grace_releases)
        read_ids = (state.read_ids | graced) - pinned
        quiet = frozenset(catalogue.withheld(state.external_id, now) - read_ids - pinned)
        reactions = state.reactions
        acknowledged = frozenset(state.acknowledged)
    uncounted = read_ids | quiet
    unread_count = len(visible) - len(uncounted.intersection(note.id for note in visible))
    return _Marks(read_ids, quiet, reactions, acknowledged, pinned, unread_count)


def inbox(
    catalogue: Catalogue,
    state: EndUserState | None,
    *,
    attributes: Mapping[str, str],
    app_version: Version | None,
    now: datetime,
    limit: int,
    after: tuple[int, int] | None,
    chain: tuple[str, ...] = (),
) -> Inbox:
    """A page of the notes this user may see, with what they read (see :func:`_marks`),
    to be shown in the languages of ``chain``; ``state`` None is anonymous."""
    visible = catalogue.visible(app_version, attributes, now)
    marks = _marks(catalogue, state, visible, now)
    if after is not None:
        visible = tuple(note for note in visible if _cursor_key(note) < after)
    page = visible[:limit]
    next_cursor = None
    if len(visible) > limit:
        key = _cursor_key(page[-1])
        next_cursor = f"{key[0]}.{key[1]}"
    entries = [(note, note.id in marks.read_ids, marks.reactions.get(note.id)) for note in page]
    return _page(catalogue, marks, entries, next_cursor, chain)


def unread(
    catalogue: Catalogue,
    state: EndUserState | None,
    *,
    attributes: Mapping[str, str],
    app_version: Version | None,
    now: datetime,
    among: Iterable[CatalogueNote],
    limit: int,
    chain: tuple[str, ...] = (),
) -> Inbox:
    """The first ``limit`` notes of ``among``, in its order, that the widget would show
    this user as new: ones they may see, unread and not quiet; in the languages of
    ``chain``.

    ``among`` is taken only as far as needed, so it may be ranked lazily.
    """
    visible = catalogue.visible(app_version, attributes, now)
    marks = _marks(catalogue, state, visible, now)
    new = {note.id for note in visible} - marks.read_ids - marks.quiet
    chosen = (note for note in among if note.id in new)
    entries = [(note, False, marks.reactions.get(note.id)) for note in islice(chosen, limit)]
    return _page(catalogue, marks, entries, None, chain)


def _page(
    catalogue: Catalogue,
    marks: _Marks,
    entries: list[tuple[CatalogueNote, bool, str | None]],
    next_cursor: str | None,
    chain: tuple[str, ...],
) -> Inbox:
    """The answer for ``entries``, with the user's marks and the catalogue's header."""
    return Inbox(
        entries=entries,
        unread_count=marks.unread_count,
        next_cursor=next_cursor,
        stamp=catalogue.stamp,
        product=catalogue.product,
        quiet=marks.quiet,
        acknowledged=marks.acknowledged,
        pinned=marks.pinned,
        chain=chain,
    )


def listed(
    catalogue: Catalogue, state: EndUserState | None, now: datetime, *, to_help: bool = False
) -> frozenset[int] | None:
    """The ids of the notes this user's widget lists at ``now`` for their stored version
    and attributes, as the notes endpoint lists them; with ``to_help``, less those held
    back from them, which help never shows. None when nothing is stored of the user
    (anonymous): then any live note of the product may be theirs.

    What a user records (help shown and answered, an acknowledgement) must be of these,
    so that no one records what their widget would not show them.
    """
    if state is None:
        return None
    app_version = versions.of_user(state.app_version)
    ids = {note.id for note in catalogue.visible(app_version, state.attributes, now)}
    if to_help:
        ids -= catalogue.withheld(state.external_id, now) - state.pinned
    return frozenset(ids)
