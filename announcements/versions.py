"""Parse and order product versions.

Versions are compared as versions, never as strings: ``2.10.0`` comes after
``2.9.1`` and a pre-release comes before its release. PEP 440 and the common
SemVer spellings (``1.4.0-beta.2``, ``v2.0.0``) are accepted through
``packaging``; anything it cannot read is an :class:`InvalidVersion`.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

from packaging.version import InvalidVersion as _PackagingInvalidVersion
from packaging.version import Version

from announcements.errors import ValidationFailed

MAX_VERSION_LENGTH = 64


class InvalidVersion(ValidationFailed):
    """A version string that cannot be ordered."""

    def __init__(self, raw: str) -> None:
        super().__init__(
            {
                "version": (
                    f"“{raw}” is not a version we can order. Use a release number "
                    "such as 2.4.0, 2.4.0-beta.1 or 2024.11."
                )
            }
        )


@lru_cache(maxsize=4096)
def parse(raw: str) -> Version:
    """Return the orderable version for ``raw``, or raise InvalidVersion."""
    text = raw.strip()
    if not text or len(text) > MAX_VERSION_LENGTH:
        raise InvalidVersion(raw)
    try:
        return Version(text)
    except _PackagingInvalidVersion:
        raise InvalidVersion(raw) from None


def normalise(raw: str) -> str:
    """Return ``raw`` stripped, after checking it parses; the spelling is the team's own."""
    parse(raw)
    return raw.strip()


def is_valid(raw: str) -> bool:
    """True when ``raw`` is a version that can be ordered."""
    try:
        parse(raw)
    except InvalidVersion:
        return False
    return True


def newest_first(versions: Iterable[str]) -> list[str]:
    """Sort version strings from newest to oldest, as versions."""
    return sorted(set(versions), key=parse, reverse=True)
