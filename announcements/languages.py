"""Language tags, the fallback chain, and picking the best language a reader can read.

A product has a default language and any number of others, each a BCP 47 tag as
:func:`normalise` writes it (``fr``, ``fr-CA``, ``pt-BR``, ``zh-Hant-HK``). A reader asks
for a tag; the chain for it is the tag, then each shorter tag made by dropping its last
subtag, kept only where the product has that language, then the product's default
(``fr-CA`` → ``fr`` → ``en``). A note is shown in the first language of the chain that
has a whole, published text of it: the default text always exists, so a chain never ends
blank, and never reaches a language it does not list.

The interface (buttons, labels, e-mail wording) has its own languages, the catalogues in
``translations/``: the console speaks :data:`CONSOLE_LOCALES`, what end users see speaks
:data:`INTERFACE_LOCALES`, each picked by the same lookup.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal, TypeVar

import langcodes
from babel import Locale, UnknownLocaleError

# What the console's catalogues are complete in.
CONSOLE_LOCALES = ("en", "fr")
# What the widget, the public page and e-mail are complete in.
INTERFACE_LOCALES = ("en", "fr", "de", "es", "ja", "ar")
# The interface's language when nothing the reader asked for is one of the above.
INTERFACE_DEFAULT = "en"
# The longest tag a column holds.
MAX_TAG_LENGTH = 35
# ISO 639's codes for no particular language: undetermined, uncoded, several, and no
# linguistic content. Valid tags, but not a language anyone can be given text in.
SPECIAL_PURPOSE = frozenset({"und", "mis", "mul", "zxx"})

_Text = TypeVar("_Text")


class BadTag(ValueError):
    """A language tag that is not a valid BCP 47 tag of a language Babel knows."""


def N_(message: str) -> str:  # noqa: N802 - the name the catalogue's extractor looks for
    """``message`` as it is, marked for the catalogues: wording made where no language is
    known (the models, the domain) and translated where it is shown."""
    return message


def normalise(raw: str) -> str:
    """The tag as stored and compared: ``en_GB`` → ``en-GB``, ``zh_hant_hk`` →
    ``zh-Hant-HK``, ``FR`` → ``fr``, deprecated codes replaced (``iw`` → ``he``).

    Raises :class:`BadTag` for anything that is not a valid tag, that names no particular
    language (``und``, ``mul``...), or whose language Babel cannot format dates and text
    direction for.
    """
    tag = _normalised(str(raw).strip().replace("_", "-"))
    if tag is None:
        raise BadTag(f"{raw!r} is not a language tag; use one such as en, fr-CA or pt-BR.")
    return tag


# A tag's shape, loosely BCP 47's: what does not have it never reaches langcodes.
_TAG_SHAPE = re.compile(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8}){0,6}")
# langcodes keeps every tag it has parsed, for good, and clients choose the tags
# (Accept-Language, ?locale=): past this many it starts again.
LANGCODES_CACHE_LIMIT = 4096


@functools.lru_cache(maxsize=4096)
def _normalised(text: str) -> str | None:
    if len(text) > MAX_TAG_LENGTH or not _TAG_SHAPE.fullmatch(text):
        return None
    try:
        valid = langcodes.tag_is_valid(text)
        tag = langcodes.standardize_tag(text) if valid else ""
    except (ValueError, LookupError):
        valid = False
    finally:
        _bound_langcodes()
    if not valid or tag.split("-")[0] in SPECIAL_PURPOSE or not _known(tag):
        return None
    return tag


def _bound_langcodes() -> None:
    """Empty langcodes' two tag caches once either outgrows the limit: they only save it
    parsing a tag again."""
    for cache in (langcodes.Language._PARSE_CACHE, langcodes.Language._INSTANCES):
        if len(cache) > LANGCODES_CACHE_LIMIT:
            cache.clear()


def is_valid(raw: str) -> bool:
    try:
        normalise(raw)
    except BadTag:
        return False
    return True


@functools.lru_cache(maxsize=512)
def _babel(tag: str) -> Locale | None:
    try:
        return Locale.parse(tag, sep="-")
    except (UnknownLocaleError, ValueError):
        return None


def _known(tag: str) -> bool:
    """Whether Babel has data for the tag, or for the language it narrows."""
    return any(_babel(shorter) is not None for shorter in truncations(tag))


def truncations(tag: str) -> list[str]:
    """The tag and each shorter tag under it: ``zh-Hant-HK``, ``zh-Hant``, ``zh``."""
    parts = tag.split("-")
    return ["-".join(parts[:end]) for end in range(len(parts), 0, -1)]


def chain(requested: str | None, languages: Sequence[str], default: str) -> tuple[str, ...]:
    """The languages to try for a reader who asked for ``requested``, best first, ending
    with ``default``; ``languages`` are the product's (the default among them or not).

    ``requested`` need not be normalised; a tag that is not valid asks for nothing.
    """
    found: list[str] = []
    if requested:
        try:
            tag = normalise(requested)
        except BadTag:
            tag = ""
        have = {*languages, default}
        found = [shorter for shorter in truncations(tag) if tag and shorter in have]
    if default not in found:
        found.append(default)
    return tuple(found)


def negotiate(requested: Iterable[str], available: Sequence[str], default: str) -> str:
    """The first of ``available`` that a reader who asked for ``requested`` (best first,
    as an Accept-Language header orders them) can read, by the chain of each; else
    ``default``. ``fr-CA`` is answered by ``fr``; ``fr`` is not answered by ``fr-CA``."""
    for wanted in requested:
        best = chain(wanted, available, default)[0]
        if best != default or _reaches(wanted, default):
            return best
    return default


def _reaches(requested: str, tag: str) -> bool:
    try:
        return tag in truncations(normalise(requested))
    except BadTag:
        return False


def pick(texts: Mapping[str, _Text], order: Sequence[str]) -> tuple[str, _Text] | None:
    """The first language of ``order`` that ``texts`` has, and its text."""
    for tag in order:
        if tag in texts:
            return tag, texts[tag]
    return None


def interface_locale(requested: Iterable[str], available: Sequence[str] = INTERFACE_LOCALES) -> str:
    """The interface language for a reader who asked for ``requested``, best first."""
    return negotiate(requested, available, INTERFACE_DEFAULT)


def direction(tag: str) -> Literal["ltr", "rtl"]:
    """How the language is written: ``rtl`` for Arabic, Hebrew, Persian, Urdu..."""
    for shorter in truncations(tag):
        locale = _babel(shorter)
        if locale is not None:
            return "rtl" if locale.character_order == "right-to-left" else "ltr"
    return "ltr"


def display_name(tag: str, in_locale: str = INTERFACE_DEFAULT) -> str:
    """The language's name as a reader of ``in_locale`` writes it: ``français (Canada)``
    in its own language, ``French (Canada)`` in English."""
    locale = _babel(tag)
    reader = _babel(in_locale) or _babel(INTERFACE_DEFAULT)
    if locale is None:
        return tag
    return locale.get_display_name(reader) or tag


def own_name(tag: str) -> str:
    """The language's name in itself, as a list of languages (a switcher, a menu) shows
    it: ``Français``, ``العربية``, ``ქართული``.

    CLDR writes a name as it reads inside a sentence (``français``); a list starts it
    with a capital. Only the first character changes, to its title case:
    ``str.capitalize`` would lower the rest (``English (united kingdom)``), and upper
    case would turn Georgian into its capitals (Mtavruli), which Georgian does not start
    a word with.
    """
    name = display_name(tag, tag)
    return name[:1].title() + name[1:]
