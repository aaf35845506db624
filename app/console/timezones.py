"""Times in the console are shown and entered in the member's own time zone.

The console's script stores the browser's zone in a ``tz`` cookie; until it has,
times are in UTC, and the form says so.
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import request


def member_zone() -> tzinfo:
    name = request.cookies.get("tz", "UTC")
    try:
        return ZoneInfo(name) if name and len(name) < 64 else UTC
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def zone_name() -> str:
    return str(member_zone())


def parse_local(text: str) -> datetime | None:
    """A ``datetime-local`` value in the member's zone, as aware UTC; blank is None.

    Raises ValueError for anything that is not a date and time.
    """
    text = text.strip()
    if not text:
        return None
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=member_zone())
    return value.astimezone(UTC)


def to_local_input(value: datetime | None) -> str:
    """The value for a ``datetime-local`` input, in the member's zone."""
    return value.astimezone(member_zone()).strftime("%Y-%m-%dT%H:%M") if value else ""


def local(value: datetime | None, fmt: str = "%d %b %Y, %H:%M") -> str:
    return value.astimezone(member_zone()).strftime(fmt) if value else ""
