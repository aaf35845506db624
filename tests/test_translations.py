"""A note's translations: where each stands (missing, draft, published, outdated), what
readers may be shown, what changed in the note since a translation was made, bodies
sanitised exactly as a note's are, and a product's languages checked before they change.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from announcements import services, translations
from announcements.errors import InvalidTransition, ValidationFailed
from announcements.models import (
    AuditEvent,
    EndUser,
    NoteTranslation,
    Product,
    ReadReceipt,
    TranslationStatus,
    utcnow,
)
from announcements.note_rules import CONTROL_CHARACTERS, NoteInput
from tests.factories import make_note, make_product
from tests.i18n_helpers import stored_translations as snapshot
from tests.test_render_limits import fill
from tests.test_rendering import CORPUS, policy_violations

NOW = utcnow()
MANY_LANGUAGES = (
    "fr de es it pt nl sv da fi nb pl cs sk sl hr sr bg ro hu el tr ru uk ar he fa hi bn ta "
    "te th vi id ms ja ko zh ca eu gl"
).split()
LATER = NOW + timedelta(hours=1)


@pytest.fixture
def product(session):
    product = make_product(session, slug="acme", name="Acme")
    translations.set_languages(session, product, "en", ["fr", "ar"], by=None, now=NOW)
    session.commit()
    return product


@pytest.fixture
def note(session, product):
    return make_note(session, product, title="Dark mode", body_md="Follows *your system*.")


def save(session, note, locale="fr", *, publish=True, now=NOW, **text):
    saved = translations.save(
        session,
        note,
        locale,
        title=text.get("title", "Mode sombre"),
        body_md=text.get("body_md", "Suit *votre système*."),
        publish=publish,
        by=None,
        now=now,
    )
    session.commit()
    return saved


def edit_note(session, note, **fields):
    services.update_note(session, note, replace(NoteInput.of(note), **fields), by=None, now=LATER)


def test_a_note_is_missing_then_draft_then_published_in_a_language(session, note):
    assert translations.statuses(note) == {"en": "published", "fr": "missing", "ar": "missing"}
    draft = save(session, note, publish=False)
    assert draft.status is TranslationStatus.DRAFT and draft.published_at is None
    assert translations.status(note, draft) == "draft"
    published = save(session, note)
    assert published is draft and translations.status(note, published) == "published"
    assert published.published_at == NOW
    assert (published.source_title, published.source_body_md) == (note.title, note.body_md)
    assert translations.statuses(note) == {"en": "published", "fr": "published", "ar": "missing"}
    assert translations.product_languages(note.product) == ["en", "fr", "ar"]


@pytest.mark.parametrize(
    ("fields", "changed"),
    [
        ({"body_md": "Follows your system, or your choice."}, ["body_md"]),
        ({"title": "Dark mode everywhere"}, ["title"]),
        ({"title": "Dark theme", "body_md": "Also in e-mails."}, ["title", "body_md"]),
    ],
)
def test_a_change_to_the_default_text_outdates_it_until_it_is_published_again(
    session, note, fields, changed
):
    translation = save(session, note)
    source = (note.title, note.body_md)
    edit_note(session, note, **fields)
    assert translations.status(note, translation) == "outdated"
    assert translations.statuses(note)["fr"] == "outdated"
    # Still shown: a whole text, only older.
    assert translations.published_texts(note) == {"fr": translation}
    changes = translations.changes_since(translation, note)
    assert [change.field for change in changes] == changed
    for change in changes:
        before = source[0] if change.field == "title" else source[1]
        assert (change.before, change.after) == (before, getattr(note, change.field))
        assert f"-{change.before}" in change.diff and f"+{change.after}" in change.diff

    # The same text published again: made from the new default text.
    save(session, note, now=LATER)
    assert translations.status(note, translation) == "published"
    assert translations.changes_since(translation, note) == []
    assert translation.published_at == LATER


def test_the_same_text_saved_again_changes_nothing(session, note):
    save(session, note)
    before = snapshot(session)
    save(session, note, now=LATER)
    assert snapshot(session) == before
    # The same text as a draft takes it back to one, dated; once is enough.
    moved = save(session, note, publish=False, now=LATER)
    assert moved.status is TranslationStatus.DRAFT and moved.published_at is None
    assert moved.updated_at == LATER
    changed = snapshot(session)
    save(session, note, publish=False, now=LATER + timedelta(hours=1))
    assert snapshot(session) == changed
    summaries = session.scalars(select(AuditEvent.summary).order_by(AuditEvent.id)).all()
    assert summaries[-1].endswith("fr translation: moved back to draft")


def test_drafts_are_never_among_the_texts_readers_see(session, note):
    save(session, note, "fr", publish=False)
    save(session, note, "ar", title="الوضع الداكن", body_md="يتبع نظامك.")
    assert set(translations.published_texts(note)) == {"ar"}
    save(session, note, "ar", title="الوضع الداكن", body_md="يتبع نظامك.", publish=False)
    assert translations.published_texts(note) == {}
    assert translations.statuses(note) == {"en": "published", "fr": "draft", "ar": "draft"}


def test_a_reader_sees_the_first_published_text_of_their_chain(session, product, note):
    translations.set_languages(session, product, "en", ["fr", "fr-CA", "ar"], by=None, now=NOW)
    save(session, note, "fr")
    save(session, note, "fr-CA", title="Mode foncé", body_md="Suit votre système.", publish=False)
    shown = translations.shown_text(note, "fr_ca")  # as a reader may write it
    assert shown == translations.NoteText(
        "fr", "Mode sombre", "Suit *votre système*.", "<p>Suit <em>votre système</em>.</p>"
    )
    for requested in ("ar", "de", "und", None):  # no text, no such language, no language
        assert translations.shown_text(note, requested).locale == "en"
    assert translations.shown_text(note, "en").title == "Dark mode"
    # Where a language's readers go without its own text: the rest of their chain.
    assert translations.fallback(note, "fr-CA") == "fr"
    assert translations.fallback(note, "fr") == "en"


def test_a_removed_language_hides_its_translations_and_adding_it_back_shows_them(
    session, product, note
):
    save(session, note, "fr")
    translations.set_languages(session, product, "en", ["ar"], by=None, now=NOW)
    session.commit()
    assert translations.published_texts(note) == {}
    assert translations.statuses(note) == {"en": "published", "ar": "missing"}
    assert session.scalar(select(func.count()).select_from(NoteTranslation)) == 1
    with pytest.raises(ValidationFailed, match="Acme has no fr"):
        save(session, note, "fr")
    translations.set_languages(session, product, "en", ["ar", "fr"], by=None, now=NOW)
    session.commit()
    assert set(translations.published_texts(note)) == {"fr"}


def test_publishing_a_translation_leaves_who_read_the_note_as_it_was(session, product, note):
    user = EndUser(product_id=product.id, external_id="u1", first_seen_at=NOW, last_seen_at=NOW)
    session.add(user)
    session.flush()
    session.add(ReadReceipt(end_user_id=user.id, note_id=note.id, read_at=NOW, channel="widget"))
    session.commit()
    save(session, note)
    edit_note(session, note, body_md="New.")
    save(session, note, now=LATER)
    receipts = session.execute(select(ReadReceipt.end_user_id, ReadReceipt.note_id)).all()
    assert receipts == [(user.id, note.id)]


def test_deleting_a_translation_leaves_the_note_and_the_other_languages(session, note):
    save(session, note, "fr")
    save(session, note, "ar", title="الوضع الداكن", body_md="يتبع نظامك.")
    translations.delete(session, translations.find(note, "fr"), by=None, now=LATER)
    session.commit()
    session.expire_all()
    assert translations.statuses(note) == {"en": "published", "fr": "missing", "ar": "published"}
    actions = session.scalars(
        select(AuditEvent.action).where(AuditEvent.action.like("translation.%"))
    ).all()
    assert actions == ["translation.published", "translation.published", "translation.deleted"]


def test_each_change_moves_the_catalogue_stamp_that_caches_follow(session, product, note):
    def stamp() -> int:
        session.expire_all()
        return session.scalar(select(Product.catalogue_stamp).where(Product.id == product.id))

    stamps = [stamp()]
    save(session, note, publish=False)
    stamps.append(stamp())
    save(session, note, now=LATER)
    stamps.append(stamp())
    translations.delete(session, translations.find(note, "fr"), by=None, now=LATER)
    session.commit()
    stamps.append(stamp())
    assert stamps == sorted(set(stamps)), stamps


@pytest.mark.parametrize(
    ("locale", "text", "field", "message"),
    [
        ("fr_FR!", {}, "locale", "is not a language tag"),
        ("xx", {}, "locale", "is not a language tag"),
        ("de", {}, "locale", "Acme has no de; add the language in Settings first."),
        ("fr-CA", {}, "locale", "Acme has no fr-CA"),
        ("en", {}, "locale", "is the product's default language: edit the note itself."),
        ("EN", {}, "locale", "is the product's default language"),
        ("fr", {"title": "  "}, "title", "Give the note a title."),
        ("fr", {"title": "x" * 201}, "title", "Keep the title under 200 characters."),
        ("fr", {"body_md": "é" * 60_000}, "body_md", "The body is over 100 KB."),
        ("fr", {"title": "Mode\x00sombre"}, "title", "not text"),
        ("fr", {"body_md": "Suit\x00votre système."}, "body_md", "not text"),
        ("fr", {"body_md": fill("[a](")}, "body_md", "takes too long to format"),
    ],
)
def test_a_refused_translation_changes_nothing(session, note, locale, text, field, message):
    save(session, note, "fr", title="Avant", body_md="Avant.")
    before = snapshot(session)
    with pytest.raises(ValidationFailed) as refused:
        save(session, note, locale, now=LATER, **{"title": "Après", "body_md": "Après.", **text})
    session.rollback()
    assert message in refused.value.errors[field]
    assert snapshot(session) == before


def test_only_a_published_translation_is_announced(session, note):
    with pytest.raises(ValidationFailed) as refused:
        translations.save(
            session,
            note,
            "fr",
            title="Mode sombre",
            body_md="",
            publish=False,
            announce=True,
            by=None,
            now=NOW,
        )
    assert set(refused.value.errors) == {"announce"}


def test_an_archived_note_is_not_translated(session, note):
    save(session, note, publish=False)
    services.archive(session, note, by=None, now=NOW)
    before = snapshot(session)
    with pytest.raises(InvalidTransition, match="Restore it first"):
        save(session, note, "ar")
    with pytest.raises(InvalidTransition, match="Restore it first"):
        save(session, note, "fr", now=LATER)  # its draft published
    assert snapshot(session) == before


def _chunks(payloads: list[str], size: int = 40) -> list[str]:
    """The corpus as a few bodies (a save each), each under the body limit; without NUL
    or another control character, which every way in refuses before the renderer sees
    it."""
    bodies = [
        "\n\n".join(payloads[start : start + size]) for start in range(0, len(payloads), size)
    ]
    return [CONTROL_CHARACTERS.sub("", body) for body in bodies]


@pytest.mark.skipif(not CORPUS, reason="the shared XSS corpus ../shared/testdata/xss is absent")
def test_translation_bodies_are_sanitised_exactly_as_note_bodies(session, note):
    """Every payload of the XSS corpus, through a translation and through the note itself:
    the same HTML, and none of it breaks the sanitiser's policy."""
    failures = {}
    for number, body in enumerate(_chunks(CORPUS)):
        edit_note(session, note, body_md=body)
        translation = save(session, note, title=f"Essai {number}", body_md=body)
        if translation.body_html != note.body_html or policy_violations(translation.body_html):
            failures[number] = policy_violations(translation.body_html) or "differs"
    assert not failures, failures


# A product's languages ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("default", "others", "languages"),
    [
        ("en", ["fr", "ar"], ("en", ["fr", "ar"])),
        ("EN", ["fr_CA", "pt_br", "zh_Hant_HK"], ("en", ["fr-CA", "pt-BR", "zh-Hant-HK"])),
        ("en", ["fr", "FR", "fr", "en", " ", "ar"], ("en", ["fr", "ar"])),
        ("en-GB", ["en"], ("en-GB", ["en"])),
        ("fr", [], ("fr", [])),
        ("iw", ["ar"], ("he", ["ar"])),
    ],
)
def test_languages_are_stored_normalised_without_repeats_or_the_default(
    session, default, others, languages
):
    product = make_product(session)
    translations.set_languages(session, product, default, others, by=None, now=NOW)
    session.commit()
    assert (product.default_locale, product.languages) == languages
    actions = session.scalars(
        select(AuditEvent.summary).where(AuditEvent.action == "product.languages")
    )
    assert list(actions) == [
        "Languages: " + ", ".join([f"{languages[0]} (default)", *languages[1]])
    ]


@pytest.mark.parametrize(
    ("default", "others", "field", "message"),
    [
        ("", ["fr"], "default_locale", "A product needs a default language"),
        ("  ", ["fr"], "default_locale", "A product needs a default language"),
        ("english", ["fr"], "default_locale", "'english' is not a language tag"),
        ("en", ["fr", "français"], "languages", "'français' is not a language tag"),
        ("en", ["fr", "xx-YY"], "languages", "'xx-YY' is not a language tag"),
        ("en", MANY_LANGUAGES, "languages", "at most 40 languages"),
        # The new default is a language notes have translations in.
        ("fr", ["ar"], "default_locale", "Notes have fr translations"),
    ],
)
def test_bad_languages_are_refused_and_change_nothing(
    session, product, note, default, others, field, message
):
    save(session, note, "fr")
    before = snapshot(session)
    with pytest.raises(ValidationFailed) as refused:
        translations.set_languages(session, product, default, others, by=None, now=LATER)
    assert message in refused.value.errors[field], refused.value.errors
    assert snapshot(session) == before


def test_the_default_changes_to_a_language_no_note_is_translated_into(session, product, note):
    save(session, note, "fr")
    translations.set_languages(session, product, "ar", ["en", "fr"], by=None, now=LATER)
    session.commit()
    assert translations.product_languages(product) == ["ar", "en", "fr"]
    assert translations.statuses(note) == {"ar": "published", "en": "missing", "fr": "published"}


def test_the_same_languages_again_change_nothing(session, product):
    before = snapshot(session)
    translations.set_languages(session, product, "en", ["fr", "ar"], by=None, now=LATER)
    session.commit()
    assert snapshot(session) == before
