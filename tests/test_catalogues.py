"""The interface's catalogues: up to date with the code, complete where the product says
they are, and safe to format.

The console speaks English and French; the widget, the public page and e-mail speak
every language in ``INTERFACE_LOCALES``. A message counts as the console's when every
place it is used is the console's (or the agent sidebar's, which agents read beside it).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog, Message, TranslationError
from babel.messages.checkers import python_format
from babel.messages.pofile import read_po

from announcements import languages

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TRANSLATIONS = PROJECT_ROOT / "translations"
CONSOLE_PLACES = ("templates/console/", "app/console/", "templates/sidebar/", "app/sidebar/")


def _catalogue(path: Path, locale: str | None = None) -> Catalog:
    with path.open("rb") as source:
        return read_po(source, locale=locale)


def _messages(catalogue: Catalog) -> dict[str, Message]:
    return {str(message.id): message for message in catalogue if message.id}


def _translated(message: Message | None) -> bool:
    """Whether the message has a reviewed translation: every plural form, nothing fuzzy."""
    if message is None or message.fuzzy:
        return False
    forms = message.string if isinstance(message.string, tuple) else (message.string,)
    return all(forms)


def _console_only(message: Message) -> bool:
    return bool(message.locations) and all(
        file.startswith(CONSOLE_PLACES) for file, _line in message.locations
    )


@pytest.fixture(scope="module")
def extracted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Message]:
    """The messages the code holds now, extracted as `make catalogues` extracts them."""
    pot = tmp_path_factory.mktemp("catalogues") / "messages.pot"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "babel.messages.frontend",
            "extract",
            "-F",
            "babel.cfg",
            "-k",
            "lazy_gettext",
            "-k",
            "N_",
            "-o",
            str(pot),
            "app",
            "announcements",
            "templates",
        ],
        cwd=PROJECT_ROOT,
        check=True,
        capture_output=True,
    )
    return _messages(_catalogue(pot))


def test_the_template_holds_every_message_of_the_code(extracted) -> None:
    committed = _messages(_catalogue(TRANSLATIONS / "messages.pot"))
    assert sorted(set(extracted) - set(committed)) == [], "run `make catalogues`"
    assert sorted(set(committed) - set(extracted)) == [], "run `make catalogues`"


@pytest.mark.parametrize("locale", languages.INTERFACE_LOCALES)
def test_each_language_is_complete_where_it_is_spoken(locale: str, extracted) -> None:
    catalogue = _messages(_catalogue(TRANSLATIONS / locale / "LC_MESSAGES" / "messages.po", locale))
    wanted = [
        msgid
        for msgid, message in extracted.items()
        if locale in languages.CONSOLE_LOCALES or not _console_only(message)
    ]
    if locale == languages.INTERFACE_DEFAULT:
        # English is the source: its catalogue only has to hold every message.
        assert sorted(set(wanted) - set(catalogue)) == []
        return
    untranslated = [msgid for msgid in wanted if not _translated(catalogue.get(msgid))]
    assert untranslated == [], f"{len(untranslated)} messages wait for a {locale} translation"


@pytest.mark.parametrize("locale", languages.INTERFACE_LOCALES)
def test_translations_keep_the_placeholders_of_their_messages(locale: str) -> None:
    catalogue = _catalogue(TRANSLATIONS / locale / "LC_MESSAGES" / "messages.po", locale)
    broken = []
    for message in catalogue:
        if not message.id or not message.string:
            continue
        try:
            python_format(catalogue, message)
        except TranslationError as error:
            broken.append(f"{message.id!r}: {error}")
    assert broken == []
