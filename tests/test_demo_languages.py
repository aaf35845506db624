"""The demo's languages: Lumen speaks English, French and Arabic, so a newcomer sees the
fallback at work. Most notes are in all three, one French text is outdated (the English
was edited after it was published) and one note is in English only; loading the demo
again changes none of it. What a reader is shown is read where a reader reads it: the
widget's API and the public page."""

from __future__ import annotations

import json
import re

import lxml.html
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from announcements import translations
from announcements.models import AuditEvent, Note, NoteTranslation, Product
from tests.test_widget_api import Widget

ARABIC = re.compile(r"[\u0600-\u06ff]")
OUTDATED = "Export any chart as PNG or CSV"
OUTDATED_FR = "Exportez n'importe quel graphique en PNG ou en CSV"
ENGLISH_ONLY = "Dates in exported PDFs"
FUNNELS = "Funnels: see where people drop off"
FUNNELS_FR = "Entonnoirs : voyez où les utilisateurs décrochent"


def in_the_widget(widget: Widget, locale: str) -> dict[int, dict]:
    """Each note the demo user's widget shows, by id, for a host that passes ``locale``."""
    response = widget.notes(locale=locale)
    assert response.status_code == 200, response.get_json()
    return {note["id"]: note for note in response.get_json()["notes"]}


def on_the_page(client: FlaskClient, note: Note, locale: str) -> tuple[str, str, str]:
    """The language, direction and title of ``note`` on its version's public page."""
    response = client.get(f"/changelog/lumen/{note.version}?locale={locale}")
    assert response.status_code == 200
    document = lxml.html.fromstring(response.data)
    (text,) = document.xpath(f"//article[@id='note-{note.id}']/div[@class='note-text']")
    return text.get("lang"), text.get("dir"), text.findtext("h3")


def _stored(session: Session) -> list[tuple]:
    session.expire_all()
    return list(
        session.execute(
            select(
                NoteTranslation.id,
                NoteTranslation.locale,
                NoteTranslation.title,
                NoteTranslation.status,
                NoteTranslation.updated_at,
            ).order_by(NoteTranslation.id)
        )
    )


def test_lumen_speaks_three_languages_with_one_outdated_and_one_missing(runner, session, client):
    loaded = runner.invoke(args=["demo", "--json"])
    assert loaded.exit_code == 0, loaded.output
    described = {product["slug"]: product for product in json.loads(loaded.output)["products"]}
    assert described["lumen"]["languages"] == ["en", "fr", "ar"]
    assert described["ledger"]["languages"] == ["en"]
    lumen = session.scalars(select(Product).where(Product.slug == "lumen")).one()
    assert translations.product_languages(lumen) == ["en", "fr", "ar"]
    notes = session.scalars(select(Note).where(Note.product_id == lumen.id)).all()
    statuses = {note.title: translations.statuses(note) for note in notes if not note.is_internal}

    assert statuses[OUTDATED] == {"en": "published", "fr": "outdated", "ar": "published"}
    assert statuses[ENGLISH_ONLY] == {"en": "published", "fr": "missing", "ar": "missing"}
    translated = [
        title for title, by_tag in statuses.items() if by_tag["fr"] == by_tag["ar"] == "published"
    ]
    assert len(translated) >= len(statuses) - 3, statuses
    missing = [title for title, by_tag in statuses.items() if "missing" in by_tag.values()]
    assert missing == [ENGLISH_ONLY]

    by_title = {note.title: note for note in notes}
    funnels, outdated, english_only = by_title[FUNNELS], by_title[OUTDATED], by_title[ENGLISH_ONLY]
    (change,) = translations.changes_since(translations.find(outdated, "fr"), outdated)
    assert change.field == "body_md" and "raw numbers" in change.after

    # The demo host's widget, for a user of a French-Canadian browser: fr-CA → fr → en.
    widget = Widget(client, lumen, user_id="demo-reader")
    french = in_the_widget(widget, "fr-CA")
    assert (french[funnels.id]["locale"], french[funnels.id]["title"]) == ("fr", FUNNELS_FR)
    # The outdated French is older but whole: its title and its body, without the
    # sentence the English gained since.
    shown = french[outdated.id]
    assert (shown["locale"], shown["title"]) == ("fr", OUTDATED_FR)
    assert "Exporter" in shown["html"] and "raw numbers" not in shown["html"]
    assert (french[english_only.id]["locale"], french[english_only.id]["title"]) == (
        "en",
        ENGLISH_ONLY,
    )
    arabic = in_the_widget(widget, "ar")
    assert arabic[funnels.id]["locale"] == "ar" and ARABIC.search(arabic[funnels.id]["title"])
    assert arabic[outdated.id]["locale"] == "ar" and ARABIC.search(arabic[outdated.id]["html"])
    assert arabic[english_only.id]["locale"] == "en"
    german = in_the_widget(widget, "de")  # a language Lumen lacks: its default
    assert {note["locale"] for note in german.values()} == {"en"}
    assert german[funnels.id]["title"] == FUNNELS

    # The public page says the same, each text with its own language and direction.
    assert on_the_page(client, outdated, "fr") == ("fr", "ltr", OUTDATED_FR)
    assert on_the_page(client, english_only, "fr") == ("en", "ltr", ENGLISH_ONLY)
    language, direction, title = on_the_page(client, funnels, "ar")
    assert (language, direction) == ("ar", "rtl") and ARABIC.search(title)
    assert on_the_page(client, english_only, "ar") == ("en", "ltr", ENGLISH_ONLY)

    for note in notes:
        for row in note.translations:
            assert "{img}" not in row.body_md and row.body_html
            if row.locale == "ar":
                assert ARABIC.search(row.title) and ARABIC.search(row.body_html)
    assert "/media/" in translations.find(funnels, "ar").body_html

    before = _stored(session)
    assert runner.invoke(args=["demo"]).exit_code == 0
    assert _stored(session) == before
    languages_set = select(func.count()).where(AuditEvent.action == "product.languages")
    assert session.scalar(languages_set) == 1
