"""Hold-back experiments: which end users get no popup, badge or e-mail for a note.

An editor may hold back a share of a note's exposed users (0-50 %) as a control group
for the note's attribution window, so Support impact can compare tickets between those
told and those not told: a fair experiment, where readers against non-readers is not.

The group is a hash of the note and the user's external id, with no secret and no
state, so every process, worker and restart puts a user in the same group, and anyone
can check it. The worker records each exposed user's group when it first counts them
(:class:`~announcements.models.HoldbackAssignment`).
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

MAX_HOLDBACK_PERCENT = 50
# Shares are kept to a hundredth of a per cent of users.
_BUCKETS = 10_000


def bucket(note_id: int, external_id: str) -> int:
    """The user's place, 0 to 9,999, in the note's experiment: uniform and independent
    from one note to the next."""
    digest = hashlib.sha256(f"tidings-holdback\n{note_id}\n{external_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % _BUCKETS


def in_control(note_id: int, external_id: str, percent: int) -> bool:
    """Whether the user is held back from the note: the lowest ``percent`` of buckets."""
    return percent > 0 and bucket(note_id, external_id) < percent * _BUCKETS // 100


def window_end(published_at: datetime, window_days: int) -> datetime:
    """When a note's attribution window, and with it its hold-back, ends."""
    return published_at + timedelta(days=window_days)


def holding_back(
    published_at: datetime | None, percent: int, window_days: int, now: datetime
) -> bool:
    """Whether a note withholds itself from its control group at ``now``: published, with
    a share set, and within its window."""
    if published_at is None or percent <= 0:
        return False
    return published_at <= now < window_end(published_at, window_days)


def withholds(
    note_id: int,
    external_id: str,
    percent: int,
    published_at: datetime | None,
    window_days: int,
    now: datetime,
) -> bool:
    """Whether the note keeps itself from this user at ``now``: the user is in its control
    group and its window is open. The one rule the widget, the mail and the impact page
    ask."""
    return holding_back(published_at, percent, window_days, now) and in_control(
        note_id, external_id, percent
    )
