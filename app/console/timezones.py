"""Times in the console are shown and entered in the member's own time zone, and written
in the member's language (Babel: "05 May 2025" in English, "05 mai 2025" in French).

The console's script stores the browser's zone in a ``tz`` cookie; until it has,
times are in UTC, and the form says so.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, available_timezones

from babel import dates
from flask import request
from flask_babel import get_locale

from announcements import languages

# The strftime fields the console's formats use, as the CLDR fields Babel writes them with
# in the member's language: the same text in English, the month's own abbreviation in each.
_FIELDS = {"%d": "dd", "%b": "MMM", "%Y": "yyyy", "%m": "MM", "%H": "HH", "%M": "mm", "%S": "ss"}


@functools.cache
def _zone_names() -> frozenset[str]:
    """The zone database's own list of names, read once (about 25 ms)."""
    return frozenset(available_timezones())


def member_zone() -> tzinfo:
    """The zone the member's browser reported; UTC until it has, or for a name that is no
    zone. The cookie is the client's to set: looked up in the list, a name such as
    "America" (a folder of zones) is never opened as a zone file."""
    name = request.cookies.get("tz", "UTC")
    return ZoneInfo(name) if name in _zone_names() else UTC


def zone_name() -> str:
    return str(member_zone())


def parse_local(text: str) -> datetime | None:
    """A ``datetime-local`` value in the member's zone, as aware UTC; blank is None.

    Raises ValueError for anything that is not a date and time, and for a time within a
    day of the calendar's ends that has no UTC equivalent.
    """
    text = text.strip()
    if not text:
        return None
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=member_zone())
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{text} is past the end of the calendar in UTC") from None


def _in_member_zone(value: datetime) -> datetime:
    """``value`` in the member's zone; a time so near the calendar's ends that the zone has
    no local time for it (one stored through the API in UTC) stays in UTC."""
    try:
        return value.astimezone(member_zone())
    except OverflowError:
        return value.astimezone(UTC)


def to_local_input(value: datetime | None) -> str:
    """The value for a ``datetime-local`` input, in the member's zone."""
    return _in_member_zone(value).strftime("%Y-%m-%dT%H:%M") if value else ""


def same_day(one: datetime, other: datetime) -> bool:
    """Whether two times fall on one day in the member's zone."""
    return _in_member_zone(one).date() == _in_member_zone(other).date()


@functools.cache
def _pattern(fmt: str) -> str:
    """A strftime format as a CLDR pattern: "%d %b %Y, %H:%M" → "dd MMM yyyy, HH:mm", the
    text between its fields quoted where CLDR would read a letter as a field."""
    parts = re.split(r"(%.)", fmt)
    if unknown := [p for p in parts[1::2] if p not in _FIELDS]:
        raise ValueError(f"{fmt!r}: no CLDR field for {', '.join(unknown)}")
    return "".join(
        _FIELDS[part] if i % 2 else "'" + part.replace("'", "''") + "'" if part else ""
        for i, part in enumerate(parts)
    )


def local(value: datetime | None, fmt: str = "%d %b %Y, %H:%M") -> str:
    """``value`` in the member's zone and language, laid out as the strftime ``fmt``."""
    if not value:
        return ""
    locale = get_locale() or languages.INTERFACE_DEFAULT
    return dates.format_datetime(_in_member_zone(value), _pattern(fmt), locale=locale)
