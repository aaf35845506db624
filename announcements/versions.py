"""Parse and order product versions.

Versions are compared as versions, never as strings: ``2.10.0`` comes after
``2.9.1`` and a pre-release comes before its release. Two standards are read:

- PEP 440 through ``packaging`` (``2024.11``, ``1.0.0b2``, ``1.0.0.post1``,
  ``1!2.0``), which also reads the common SemVer spellings (``1.4.0-beta.2``,
  ``v2.0.0``);
- SemVer 2.0 (https://semver.org) for the pre-releases and build metadata PEP 440
  cannot read: ``1.2.3-x.7.z.92``, ``1.0.0-alpha.beta``, ``1.0.0-x-y-z.--``,
  ``1.0.0+21AF26D3----117B344092BD``. These are ordered by SemVer precedence
  (identifiers left to right, numbers by value and before words, words in ASCII
  order, a longer list after its prefix; build metadata does not count).

Both kinds are ordered on one scale, so a product can mix them: PEP 440's
``a``/``b``/``rc`` pre-releases stand on it as the SemVer identifiers ``alpha``,
``beta`` and ``rc`` followed by their number, which gives ``1.0.0-alpha <
1.0.0-alpha.1 < 1.0.0-alpha.beta < 1.0.0-beta < 1.0.0-beta.2 < 1.0.0-beta.11 <
1.0.0-rc.1 < 1.0.0``. Where the two standards read one spelling differently,
PEP 440's reading is kept (so ``1.0.0-rc.10`` and ``1.0.0-rc10`` both come after
``1.0.0-rc9``, and the order of versions already stored does not change), except
that a valid SemVer pre-release is never read as a post-release: ``1.0.0-1`` is a
pre-release of 1.0.0, as ``1.0.0-0.3.7`` is, not PEP 440's ``1.0.0.post1``.

Anything neither standard reads is an :class:`InvalidVersion`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from packaging.version import InvalidVersion as _PackagingInvalidVersion
from packaging.version import Version

from announcements.errors import ValidationFailed

MAX_VERSION_LENGTH = 64

# semver.org's own pattern, with [0-9] for \d (which would take any Unicode digit)
# and an optional leading "v", which PEP 440 allows too.
_NUMBER = r"(?:0|[1-9][0-9]*)"
_PRE_IDENTIFIER = r"(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
_SEMVER = re.compile(
    rf"[vV]?(?P<major>{_NUMBER})\.(?P<minor>{_NUMBER})\.(?P<patch>{_NUMBER})"
    rf"(?:-(?P<pre>{_PRE_IDENTIFIER}(?:\.{_PRE_IDENTIFIER})*))?"
    r"(?:\+(?P<build>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
)
_PHASE_WORDS = {"a": "alpha", "b": "beta", "rc": "rc"}

# The order of one version: (epoch, release without trailing zeros, pre-release,
# post-release, development release, local label); see _pep440_order.
_Order = tuple[Any, ...]


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


def _identifier(part: str | int) -> tuple[int, int, str]:
    """A SemVer pre-release identifier: numbers by value, before words in ASCII order."""
    if isinstance(part, int):
        return (0, part, "")
    if part.isdigit():
        return (0, int(part), "")
    return (1, 0, part)


def _trimmed(release: tuple[int, ...]) -> tuple[int, ...]:
    """``1.0.0`` and ``1`` are the same release, as PEP 440 says."""
    end = len(release)
    while end > 1 and release[end - 1] == 0:
        end -= 1
    return release[:end]


def _pep440_order(version: Version) -> _Order:
    """The same order as packaging's, on the scale SemVer versions share."""
    if version.pre is not None:
        phase, number = version.pre
        pre: tuple[Any, ...] = (1, (_identifier(_PHASE_WORDS[phase]), _identifier(number)))
    elif version.dev is not None and version.post is None:
        pre = (0,)  # 1.0.dev1 comes before 1.0a1
    else:
        pre = (2,)  # a release comes after all its pre-releases
    post = (0,) if version.post is None else (1, version.post)
    dev = (1,) if version.dev is None else (0, version.dev)
    # PEP 440 local labels: words before numbers, the reverse of SemVer's rule.
    local = (
        (0,)
        if version.local is None
        else (
            1,
            tuple(
                (1, int(part), "") if part.isdigit() else (0, 0, part)
                for part in version.local.split(".")
            ),
        )
    )
    return (version.epoch, _trimmed(version.release), pre, post, dev, local)


class ProductVersion(Version):
    """A version of a product, ordered on the one scale of PEP 440 and SemVer 2.0.

    It is a :class:`packaging.version.Version`: for a SemVer spelling that PEP 440
    cannot read, ``release``, ``epoch`` and ``is_prerelease`` describe it, while its
    order, equality, hash and text are SemVer's.
    """

    __slots__ = ("_order", "_semver")

    _order: _Order
    _semver: str | None

    def __init__(self, text: str) -> None:
        semver = _SEMVER.fullmatch(text)
        try:
            super().__init__(text)
        except _PackagingInvalidVersion:
            if semver is None:
                raise
            self._read_semver(semver)
            return
        if semver is not None and semver["pre"] is not None and self.is_postrelease:
            self._read_semver(semver)  # 1.0.0-1: SemVer's pre-release, not a post-release
            return
        self._semver = None
        self._order = _pep440_order(self)

    def _read_semver(self, semver: re.Match[str]) -> None:
        release = (int(semver["major"]), int(semver["minor"]), int(semver["patch"]))
        pre_text, build = semver["pre"], semver["build"]
        core = ".".join(map(str, release))
        super().__init__(core if pre_text is None else f"{core}.dev0")
        self._semver = (
            core
            + ("" if pre_text is None else f"-{pre_text}")
            + ("" if build is None else f"+{build}")
        )
        pre: tuple[Any, ...] = (
            (2,) if pre_text is None else (1, tuple(map(_identifier, pre_text.split("."))))
        )
        self._order = (0, _trimmed(release), pre, (0,), (1,), (0,))

    def __str__(self) -> str:
        return super().__str__() if self._semver is None else self._semver

    def __repr__(self) -> str:
        return f"<ProductVersion({str(self)!r})>"

    def __reduce__(self) -> tuple[Any, ...]:
        return (ProductVersion, (str(self),))

    def __hash__(self) -> int:
        return hash(self._order)

    def __eq__(self, other: object) -> bool:
        order = _order_of(other)
        return NotImplemented if order is None else self._order == order

    def __ne__(self, other: object) -> bool:
        order = _order_of(other)
        return NotImplemented if order is None else self._order != order

    def __lt__(self, other: object) -> bool:
        order = _order_of(other)
        return NotImplemented if order is None else self._order < order

    def __le__(self, other: object) -> bool:
        order = _order_of(other)
        return NotImplemented if order is None else self._order <= order

    def __gt__(self, other: object) -> bool:
        order = _order_of(other)
        return NotImplemented if order is None else self._order > order

    def __ge__(self, other: object) -> bool:
        order = _order_of(other)
        return NotImplemented if order is None else self._order >= order


def _order_of(other: object) -> _Order | None:
    if isinstance(other, ProductVersion):
        return other._order
    if isinstance(other, Version):
        return _pep440_order(other)
    return None


@lru_cache(maxsize=4096)
def parse(raw: str) -> ProductVersion:
    """Return the orderable version for ``raw``, or raise InvalidVersion."""
    text = raw.strip()
    if not text or len(text) > MAX_VERSION_LENGTH:
        raise InvalidVersion(raw)
    try:
        return ProductVersion(text)
    except _PackagingInvalidVersion:
        raise InvalidVersion(raw) from None


def of_user(stored: str | None) -> ProductVersion | None:
    """The version stored for an end user, as the widget treats it: None when the host
    sent none, or sent one that does not parse (then the user sees every version's notes)."""
    if not stored:
        return None
    try:
        return parse(stored)
    except InvalidVersion:
        return None


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
    """Sort version strings from newest to oldest, as versions.

    Spellings of one version (``1.0`` and ``1.0.0``, or SemVer builds of one
    release) keep one order from run to run: by their text.
    """
    return sorted(set(versions), key=lambda text: (parse(text), text), reverse=True)
