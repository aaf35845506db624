"""Tests of translated interface strings wait for their catalogue.

Translators fill the catalogues after the code that uses a string lands, so a test that
reads, say, the French widget's "Mark all as read" marks itself with
``@needs_catalogue("fr", "Mark all as read")``: it is skipped, saying why, until the
compiled French catalogue translates that message, and runs for real from then on.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest
from babel.support import NullTranslations, Translations

TRANSLATIONS = Path(__file__).resolve().parents[1] / "translations"


@cache
def _catalogue(locale: str) -> NullTranslations:
    # Babel's directory names use "_" where BCP 47 uses "-" (zh-Hant → zh_Hant).
    return Translations.load(str(TRANSLATIONS), [locale.replace("-", "_")])


def is_translated(locale: str, msgid: str) -> bool:
    """Does the compiled catalogue for ``locale`` translate ``msgid``? (Without a
    compiled catalogue it translates nothing.)"""
    return _catalogue(locale).gettext(msgid) != msgid


def said(locale: str, msgid: str, **names: object) -> str:
    """``msgid`` as the compiled ``locale`` catalogue words it, its placeholders filled."""
    text = _catalogue(locale).gettext(msgid)
    return text % names if names else text


def said_plural(locale: str, singular: str, plural: str, num: int, **names: object) -> str:
    """The plural message for ``num`` as the ``locale`` catalogue words it."""
    return _catalogue(locale).ngettext(singular, plural, num) % {"num": num, **names}


def needs_catalogue(locale: str, msgid: str) -> pytest.MarkDecorator:
    """A mark that skips a test until the ``locale`` catalogue translates ``msgid``."""
    return pytest.mark.skipif(
        not is_translated(locale, msgid), reason=f"catalogue for {locale} not filled yet"
    )
