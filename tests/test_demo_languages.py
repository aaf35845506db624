"""The demo's languages: Lumen speaks English, French and Arabic, so a newcomer sees the
fallback at work. Most notes are in all three, one French text is outdated (the English
was edited after it was published) and one note is in English only; loading the demo
again changes none of it."""

from __future__ import annotations

import json
import re

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from announcements import languages, translations
from announcements.models import AuditEvent, Note, NoteTranslation, Product

ARABIC = re.compile(r"[\u0600-\u06ff]")
OUTDATED = "Export any chart as PNG or CSV"
ENGLISH_ONLY = "Dates in exported PDFs"


def _shown(note: Note, requested: str) -> tuple[str, str]:
    """The language and title a reader who asked for ``requested`` is shown."""
    product = note.product
    order = languages.chain(
        requested, translations.product_languages(product), product.default_locale
    )
    found = languages.pick(translations.published_texts(note), order)
    return (found[0], found[1].title) if found else (product.default_locale, note.title)


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


def test_lumen_speaks_three_languages_with_one_outdated_and_one_missing(runner, session):
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
    funnels = by_title["Funnels: see where people drop off"]
    assert _shown(funnels, "fr-CA") == ("fr", "Entonnoirs : voyez où les utilisateurs décrochent")
    assert _shown(funnels, "ar")[0] == "ar" and ARABIC.search(_shown(funnels, "ar")[1])
    assert _shown(funnels, "de") == ("en", funnels.title)
    assert _shown(by_title[ENGLISH_ONLY], "fr") == ("en", ENGLISH_ONLY)
    assert _shown(by_title[OUTDATED], "fr")[0] == "fr"  # older, but whole
    (change,) = translations.changes_since(
        translations.find(by_title[OUTDATED], "fr"), by_title[OUTDATED]
    )
    assert change.field == "body_md" and "raw numbers" in change.after

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
