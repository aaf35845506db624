"""The widget in the reader's language: each note in its best published translation by the
fallback chain, title and body from one text, drafts never, an ETag per language; help
in the reader's language; the widget's own wording served for each interface language.
On SQLite and PostgreSQL, through the API as a host's widget calls it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event
from sqlalchemy.orm import Session

from announcements import translations
from announcements.models import Note, Product, utcnow
from app import widget_strings
from app.database import widget_engine
from tests.factories import make_note, make_product
from tests.i18n_helpers import needs_catalogue, said
from tests.test_widget_api import ORIGIN, Widget

WIDGET_JS = Path(__file__).resolve().parents[1] / "static" / "widget" / "widget.js"


@pytest.fixture
def product(session: Session) -> Product:
    product = make_product(session, allowed_origins=(ORIGIN,), grace_releases=20)
    translations.set_languages(session, product, "en", ["fr", "ar", "pt-BR"], by=None, now=utcnow())
    session.commit()
    return product


@pytest.fixture
def widget(client: FlaskClient, product: Product) -> Widget:
    return Widget(client, product)


def translate(
    session: Session, note: Note, tag: str, title: str, body_md: str, *, publish: bool = True
) -> None:
    translations.save(
        session, note, tag, title=title, body_md=body_md, publish=publish, by=None, now=utcnow()
    )
    session.commit()


class Notes:
    """A product's notes in their languages, as an editor left them."""

    def __init__(self, session: Session, product: Product) -> None:
        # Translated into French, Arabic and Brazilian Portuguese.
        self.whole = make_note(
            session, product, title="Faster exports", body_md="Exports are *fast*."
        )
        translate(session, self.whole, "fr", "Exports plus rapides", "Les exports sont *rapides*.")
        translate(session, self.whole, "ar", "تصدير أسرع", "التصدير *سريع*.")
        translate(session, self.whole, "pt-BR", "Exportações mais rápidas", "Mais *rápidas*.")
        # Its French is a draft: nobody reads it yet.
        self.drafted = make_note(session, product, title="Dark mode", body_md="Dark mode is here.")
        translate(session, self.drafted, "fr", "Mode sombre", "Brouillon.", publish=False)
        # Its French was published, then the English changed: outdated, still a whole text.
        self.outdated = make_note(session, product, title="Sync", body_md="Sync is on.")
        translate(session, self.outdated, "fr", "Synchro", "La synchro est active.")
        self.outdated.title = "Sync, now hourly"
        session.commit()
        # Never translated.
        self.missing = make_note(session, product, title="Audit log", body_md="See who did what.")

    def by_title(self) -> dict[str, Note]:
        return {
            note.title: note for note in (self.whole, self.drafted, self.outdated, self.missing)
        }


def shown(widget: Widget, **params: str) -> dict[int, dict]:
    response = widget.notes(**params)
    assert response.status_code == 200, response.get_json()
    return {note["id"]: note for note in response.get_json()["notes"]}


# The fallback chain, note by note: (asked for, the language of whole, of drafted, of
# outdated, of missing).
CHAIN_TABLE = [
    ("fr", "fr", "en", "fr", "en"),
    ("fr-CA", "fr", "en", "fr", "en"),  # fr-CA → fr → en
    ("fr-ca", "fr", "en", "fr", "en"),  # written any way a browser writes it
    ("ar", "ar", "en", "en", "en"),
    ("ar-EG", "ar", "en", "en", "en"),
    ("pt-BR", "pt-BR", "en", "en", "en"),
    ("pt", "en", "en", "en", "en"),  # pt is not answered by pt-BR
    ("de", "en", "en", "en", "en"),  # a language the product does not have
    ("en", "en", "en", "en", "en"),
    ("en-GB", "en", "en", "en", "en"),
    ("xx", "en", "en", "en", "en"),  # no language at all
    ("tlh", "en", "en", "en", "en"),  # a language nobody translates to
]


@pytest.mark.parametrize(("asked", "whole", "drafted", "outdated", "missing"), CHAIN_TABLE)
def test_each_note_comes_in_the_first_language_of_the_chain_it_is_published_in(
    session: Session,
    product: Product,
    widget: Widget,
    asked: str,
    whole: str,
    drafted: str,
    outdated: str,
    missing: str,
) -> None:
    notes = Notes(session, product)
    answer = shown(widget, locale=asked)
    languages = {
        "whole": answer[notes.whole.id]["locale"],
        "drafted": answer[notes.drafted.id]["locale"],
        "outdated": answer[notes.outdated.id]["locale"],
        "missing": answer[notes.missing.id]["locale"],
    }
    assert languages == {
        "whole": whole,
        "drafted": drafted,
        "outdated": outdated,
        "missing": missing,
    }


def test_title_and_body_always_come_from_the_same_text(
    session: Session, product: Product, widget: Widget
) -> None:
    notes = Notes(session, product)
    texts = {(note.id, "en"): (note.title, note.body_html) for note in notes.by_title().values()}
    for note in notes.by_title().values():
        for row in note.translations:
            texts[(note.id, row.locale)] = (row.title, row.body_html)
    for asked in ("fr", "ar", "pt-BR", "de", None):
        for note in shown(widget, **({"locale": asked} if asked else {})).values():
            assert (note["title"], note["html"]) == texts[(note["id"], note["locale"])]
    french = shown(widget, locale="fr")[notes.whole.id]
    assert french["title"] == "Exports plus rapides"
    assert french["html"] == "<p>Les exports sont <em>rapides</em>.</p>"


def test_a_draft_is_never_served_and_an_outdated_translation_still_is(
    session: Session, product: Product, widget: Widget
) -> None:
    notes = Notes(session, product)
    french = shown(widget, locale="fr")
    assert "Brouillon" not in str(french) and "Mode sombre" not in str(french)
    assert french[notes.drafted.id]["title"] == "Dark mode"
    assert translations.status(notes.outdated, notes.outdated.translations[0]) == "outdated"
    assert french[notes.outdated.id]["title"] == "Synchro"
    # Published, the draft is served from the next call on.
    translate(session, notes.drafted, "fr", "Mode sombre", "Le mode sombre est là.")
    assert shown(widget, locale="fr")[notes.drafted.id]["title"] == "Mode sombre"


def test_a_language_the_product_no_longer_has_is_not_served(
    session: Session, product: Product, widget: Widget
) -> None:
    notes = Notes(session, product)
    translations.set_languages(session, product, "en", ["fr"], by=None, now=utcnow())
    session.commit()
    assert shown(widget, locale="ar")[notes.whole.id]["locale"] == "en"
    assert shown(widget, locale="fr")[notes.whole.id]["locale"] == "fr"


def test_a_user_who_sends_no_locale_reads_the_one_stored_for_them(
    session: Session, product: Product, widget: Widget
) -> None:
    notes = Notes(session, product)
    assert shown(widget, locale="fr")[notes.whole.id]["locale"] == "fr"
    assert shown(widget)[notes.whole.id]["locale"] == "fr"
    anonymous = Widget(widget.client, product, user_id=None)
    product.require_identity = False
    session.commit()
    assert shown(anonymous)[notes.whole.id]["locale"] == "en"


def test_an_invalid_locale_is_a_clear_error(product: Product, widget: Widget) -> None:
    response = widget.notes(locale="fr_FR")
    assert response.status_code == 422
    assert set(response.get_json()["errors"]) == {"locale"}


# The ETag ----------------------------------------------------------------------------


def test_the_etag_differs_per_language_and_a_304_holds_per_language(
    session: Session, product: Product, widget: Widget
) -> None:
    Notes(session, product)
    english = widget.notes(locale="en")
    french = widget.notes(locale="fr")
    arabic = widget.notes(locale="ar")
    tags = {english.headers["ETag"], french.headers["ETag"], arabic.headers["ETag"]}
    assert len(tags) == 3
    again = widget.notes(locale="fr", headers={"If-None-Match": french.headers["ETag"]})
    assert (again.status_code, again.data) == (304, b"")
    # The French validator does not validate the English answer.
    other = widget.notes(locale="en", headers={"If-None-Match": french.headers["ETag"]})
    assert other.status_code == 200 and other.get_json()["notes"][0]["locale"] == "en"
    assert (
        widget.notes(locale="en", headers={"If-None-Match": other.headers["ETag"]}).status_code
        == 304
    )


def test_a_new_translation_changes_the_etag_of_its_language(
    session: Session, product: Product, widget: Widget
) -> None:
    notes = Notes(session, product)
    before = widget.notes(locale="fr").headers["ETag"]
    translate(session, notes.missing, "fr", "Journal d'audit", "Qui a fait quoi.")
    after = widget.notes(locale="fr", headers={"If-None-Match": before})
    assert after.status_code == 200
    assert {note["id"]: note["title"] for note in after.get_json()["notes"]}[
        notes.missing.id
    ] == "Journal d'audit"


# What it costs -------------------------------------------------------------------------


@pytest.fixture
def statements(app: Flask) -> Iterator[list[str]]:
    """The SQL the widget's engine runs (on SQLite, the app's too)."""
    ran: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:
        ran.append(statement)

    engine = widget_engine()
    event.listen(engine, "before_cursor_execute", record)
    yield ran
    event.remove(engine, "before_cursor_execute", record)


def test_translations_are_read_once_per_catalogue_not_per_request(
    session: Session, product: Product, widget: Widget, statements: list[str]
) -> None:
    Notes(session, product)
    statements.clear()  # on SQLite the set-up ran on the same engine
    for asked in ("fr", "ar", "fr", "pt-BR", "en", "fr-CA"):
        shown(widget, locale=asked)
    read = [sql for sql in statements if "note_translation" in sql]
    assert len(read) == 1


def test_a_product_with_one_language_reads_no_translations(
    session: Session, widget: Widget, product: Product, statements: list[str]
) -> None:
    note = make_note(session, product)
    translate(session, note, "fr", "Note", "Texte.")
    translations.set_languages(session, product, "en", [], by=None, now=utcnow())
    session.commit()
    statements.clear()
    assert shown(widget, locale="fr")[note.id]["locale"] == "en"
    assert not [sql for sql in statements if "note_translation" in sql]


# Help before a ticket -------------------------------------------------------------------


def test_help_answers_in_the_readers_language(
    session: Session, product: Product, widget: Widget
) -> None:
    notes = Notes(session, product)
    query = {**widget.identity(), "q": "exports rapides", "locale": "fr"}
    answer = widget.client.get(f"{widget.base}/help", query_string=query).get_json()
    assert [(note["id"], note["locale"], note["title"]) for note in answer["notes"]] == [
        (notes.whole.id, "fr", "Exports plus rapides")
    ]
    # Words of the default text still find a note that has no French.
    query = {**widget.identity(), "q": "audit log", "locale": "fr"}
    answer = widget.client.get(f"{widget.base}/help", query_string=query).get_json()
    assert [(note["id"], note["locale"]) for note in answer["notes"]] == [(notes.missing.id, "en")]
    english = {**widget.identity(), "q": "faster exports", "locale": "en"}
    answer = widget.client.get(f"{widget.base}/help", query_string=english).get_json()
    assert [(note["id"], note["locale"]) for note in answer["notes"]] == [(notes.whole.id, "en")]


# The widget's own wording ----------------------------------------------------------------


def strings(client: FlaskClient, tag: str, **headers: str):
    return client.get(f"/api/v1/widget/strings/{tag}.json", headers=headers)


@pytest.mark.parametrize(
    ("asked", "locale", "direction"),
    [
        ("fr", "fr", "ltr"),
        ("fr-CA", "fr", "ltr"),
        ("ar", "ar", "rtl"),
        ("ar-EG", "ar", "rtl"),
        ("de", "de", "ltr"),
        ("ja", "ja", "ltr"),
        ("es-419", "es", "ltr"),
        ("en-GB", "en", "ltr"),
        ("pt-BR", "en", "ltr"),  # no Portuguese wording: English
        ("he", "en", "ltr"),  # the wording's direction, not the reader's
    ],
)
def test_the_wording_comes_in_the_nearest_interface_language(
    client: FlaskClient, asked: str, locale: str, direction: str
) -> None:
    response = strings(client, asked)
    assert response.status_code == 200
    body = response.get_json()
    assert (body["locale"], body["dir"]) == (locale, direction)
    assert set(body["strings"]) == set(widget_strings.STRINGS)
    assert set(body["plurals"]) == {"whats_new_unread", "may_answer"}
    assert "other" in body["plurals"]["whats_new_unread"]


def test_the_wording_is_public_long_cached_and_revalidated(client: FlaskClient) -> None:
    response = strings(client, "fr")
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert response.cache_control.public and response.cache_control.max_age == 86_400
    assert response.cache_control.private is None and not response.cache_control.no_cache
    again = strings(client, "fr", **{"If-None-Match": response.headers["ETag"]})
    assert again.status_code == 304
    assert strings(client, "ar").headers["ETag"] != response.headers["ETag"]


@pytest.mark.parametrize(
    ("tag", "sent"),
    [
        ("zz", "zz"),
        ("x" * 40, "x" * 40),
        ("é", "é"),
        ("fr-CA-x-" + "a" * 40, "fr-CA-x-" + "a" * 40),
        ("%00", "\x00"),  # a NUL, once the path is decoded
    ],
)
def test_a_tag_that_is_no_language_is_a_clear_error(
    client: FlaskClient, tag: str, sent: str
) -> None:
    response = strings(client, tag)
    assert response.status_code == 422, response.get_data(as_text=True)  # as the README says
    errors = response.get_json()["errors"]
    assert set(errors) == {"locale"}
    assert errors["locale"].startswith(f"{sent!r} is not a language tag"), errors


def test_arabic_wording_has_every_plural_category_of_arabic(client: FlaskClient) -> None:
    plurals = strings(client, "ar").get_json()["plurals"]
    assert set(plurals["whats_new_unread"]) == {"zero", "one", "two", "few", "many", "other"}
    assert set(strings(client, "ja").get_json()["plurals"]["may_answer"]) == {"other"}


def built_in_english() -> dict[str, str]:
    """The English wording widget.js draws with before (or without) fetching any."""
    script = WIDGET_JS.read_text()
    block = script[
        script.index("var ENGLISH = {") : script.index("plurals: {", script.index("var ENGLISH"))
    ]
    block = block[block.index("strings: {") :]
    pairs = re.findall(r'(?:"([^"]+)"|([\w.]+)): "((?:[^"\\]|\\.)*)"', block)
    return {quoted or bare: text for quoted, bare, text in pairs}


def test_the_widgets_built_in_english_is_the_catalogues_english(client: FlaskClient) -> None:
    served = strings(client, "en").get_json()
    assert built_in_english() == served["strings"]
    assert served["plurals"]["whats_new_unread"] == {
        "one": "What's new, %(num)d unread",
        "other": "What's new, %(num)d unread",
    }


@needs_catalogue("fr", "Nothing new yet. Updates will show up here.")
def test_the_french_wording_is_the_french_catalogues(client: FlaskClient) -> None:
    served = strings(client, "fr").get_json()["strings"]
    for key, english in built_in_english().items():
        assert served[key] == said("fr", english), key
    assert served["empty"] != "Nothing new yet. Updates will show up here."
    assert served["close"] == "Fermer"
