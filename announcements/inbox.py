"""An end user's inbox: the notes they may see, newest first, which of them are unread,
and the page of it a widget call asks for."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from packaging.version import Version

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
    """The notes this user may see, with what they read; ``state`` None is anonymous.

    Notes that predate the user's first visit (past the grace releases) count as read.
    Unread notes that hold the user back as a control are quiet: listed unread, so that
    reading one in the panel is recorded like any read, but left out of the count and
    never popped up. An anonymous user has no id to be held back by.
    """
    visible = catalogue.visible(app_version, attributes, now)
    if state is None:
        read_ids: set[int] = set()
        quiet: frozenset[int] = frozenset()
        reactions: dict[int, str] = {}
    else:
        graced = _graced(visible, state, catalogue.grace_releases)
        read_ids = state.read_ids | graced
        quiet = frozenset(catalogue.withheld(state.external_id, now) - read_ids)
        reactions = state.reactions
    uncounted = read_ids | quiet
    unread_count = len(visible) - len(uncounted.intersection(note.id for note in visible))
    if after is not None:
        visible = tuple(note for note in visible if _cursor_key(note) < after)
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
        product=catalogue.product,
        quiet=quiet,
    )
