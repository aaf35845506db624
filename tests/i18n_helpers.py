"""Helpers for the tests of languages: the interface's catalogues, and notes' translations
as stored.

Translators fill the catalogues after the code that uses a string lands, so a test that
reads, say, the French widget's "Mark all as read" marks itself with
``@needs_catalogue("fr", "Mark all as read")``: it is skipped, saying why, until the French
``.po`` file (the catalogue's source, in git) translates that message, and runs for real
from then on. The app and :func:`said` read the compiled ``.mo`` that ``make translations``
builds from it; a test that needs one which is missing, or older than its ``.po``, fails
saying so, rather than skipping or reading old wording.

Loaded as a plugin by ``tests/conftest.py`` for its ``catalogue`` mark.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from announcements.models import AuditEvent, NoteTranslation, Product

TRANSLATIONS = Path(__file__).resolve().parents[1] / "translations"


def _folder(locale: str) -> Path:
    # Babel's directory names use "_" where BCP 47 uses "-" (zh-Hant → zh_Hant).
    return TRANSLATIONS / locale.replace("-", "_") / "LC_MESSAGES"


@cache
def _source(locale: str) -> Catalog | None:
    """The ``locale`` catalogue as translators left it; None when there is none."""
    po = _folder(locale) / "messages.po"
    if not po.exists():
        return None
    with po.open("rb") as file:
        return read_po(file, locale=locale.replace("-", "_"))


def is_translated(locale: str, msgid: str) -> bool:
    """Does the ``locale`` catalogue translate ``msgid`` (a plural by its singular), in
    every form, and not as a fuzzy guess, which compiling leaves out?"""
    source = _source(locale)
    message = source.get(msgid) if source is not None and not source.fuzzy else None
    if message is None or message.fuzzy:
        return False
    forms = message.string if isinstance(message.string, tuple | list) else (message.string,)
    return all(forms)


def check_compiled(locale: str) -> None:
    """Fail the test if the ``locale`` catalogue's ``.mo`` is missing or older than its
    ``.po``: the app would speak old wording, or none."""
    po = _folder(locale) / "messages.po"
    if not po.exists():
        return  # no catalogue: the app and said() speak English
    mo = po.with_suffix(".mo")
    relative = mo.relative_to(TRANSLATIONS.parent)
    if not mo.exists():
        pytest.fail(f"{relative} is missing: run `make translations`", pytrace=False)
    if mo.stat().st_mtime < po.stat().st_mtime:
        pytest.fail(
            f"{relative} is older than its messages.po: run `make translations`", pytrace=False
        )


@cache
def _fresh(locale: str) -> NullTranslations:
    return Translations.load(str(TRANSLATIONS), [locale.replace("-", "_")])


def _compiled(locale: str) -> NullTranslations:
    """The catalogue the app reads, once it is known to be compiled from the current .po."""
    check_compiled(locale)
    return _fresh(locale)


def said(locale: str, msgid: str, **names: object) -> str:
    """``msgid`` as the compiled ``locale`` catalogue words it, its placeholders filled."""
    text = _compiled(locale).gettext(msgid)
    return text % names if names else text


def said_plural(locale: str, singular: str, plural: str, num: int, **names: object) -> str:
    """The plural message for ``num`` as the ``locale`` catalogue words it."""
    return _compiled(locale).ngettext(singular, plural, num) % {"num": num, **names}


def needs_catalogue(locale: str, msgid: str) -> pytest.MarkDecorator:
    """A mark that skips a test until the ``locale`` catalogue translates ``msgid``; once
    it does, the test fails unless the compiled catalogue is up to date."""
    if not is_translated(locale, msgid):
        return pytest.mark.skip(reason=f"catalogue for {locale} does not translate {msgid!r} yet")
    return pytest.mark.catalogue(locale)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "catalogue(locale): the test reads the compiled catalogue of locale"
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers("catalogue"):
        check_compiled(*mark.args)


def stored_translations(session: Session) -> list[object]:
    """Every translation as stored, the audit log's length and the products' languages:
    what a refused change must leave as it was."""
    session.expire_all()
    rows = session.execute(
        select(
            NoteTranslation.locale,
            NoteTranslation.title,
            NoteTranslation.body_md,
            NoteTranslation.status,
            NoteTranslation.updated_at,
        ).order_by(NoteTranslation.id)
    ).all()
    events = session.scalar(select(func.count()).select_from(AuditEvent))
    products = session.execute(
        select(Product.default_locale, Product.languages).order_by(Product.id)
    ).all()
    return [*rows, events, *products]
