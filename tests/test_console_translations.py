"""Translating notes in the console: a product's languages in Settings, a tab per language
in the editor, and the language the console speaks to its member."""

from __future__ import annotations

import html
import re

import pytest
from sqlalchemy import func, select

from announcements import services, translations
from announcements.models import (
    AuditEvent,
    NoteTranslation,
    Role,
    TeamMember,
    TranslationStatus,
    utcnow,
)
from tests.conftest import csrf_token
from tests.factories import add_member, make_member, make_note, make_product
from tests.i18n_helpers import needs_catalogue
from tests.test_console import _settings_form as settings_form

FIELD_ERROR = re.compile(r'<p class="field-error" id="([\w-]+)-error">([^<]*)</p>')
FLASH = re.compile(r'<p class="flash flash-(\w+)">([^<]*)</p>')
TAB = re.compile(
    r'<a role="tab" id="tab-([\w-]+)".*?aria-selected="(true|false)".*?'
    r'<span class="badge badge-(\w+)">',
    re.S,
)


def field_errors(page: str) -> dict[str, str]:
    return {name: html.unescape(text) for name, text in FIELD_ERROR.findall(page)}


def flashes(page: str) -> list[tuple[str, str]]:
    return [(kind, html.unescape(text)) for kind, text in FLASH.findall(page)]


def tabs(page: str) -> dict[str, str]:
    """The editor's language tabs: each language's badge (the default's says so)."""
    return {tag: badge for tag, _selected, badge in TAB.findall(page)}


def shown_tab(page: str) -> str:
    return next(tag for tag, selected, _badge in TAB.findall(page) if selected == "true")


def text_of(fragment: str) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", fragment))).strip()


def audit_events(session) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).select_from(AuditEvent))


@pytest.fixture
def owner(session) -> TeamMember:
    return make_member(session, "owner@example.com")


@pytest.fixture
def acme(session, owner):
    """Acme, in English with French, Canadian French and Arabic; its owner logged in."""
    product = make_product(session, owner=owner, slug="acme", name="Acme")
    translations.set_languages(session, product, "en", ["fr", "fr-CA", "ar"], by=None, now=utcnow())
    session.commit()
    return product


@pytest.fixture
def note(session, acme):
    return make_note(
        session, acme, title="Dark mode", body_md="Dark mode is here.\n\nTurn it on in Settings."
    )


@pytest.fixture
def logged_in(auth, owner, acme):
    auth.login(owner.email)
    return owner


def translate(client, note, tag: str, **fields: str):
    form = {"title": "Mode sombre", "body_md": "Le mode sombre est là.", "intent": "draft"}
    form.update(fields)
    form["csrf_token"] = csrf_token(client)
    # Each tab's form has its language as its fields' prefix, its CSRF token's included.
    data = {f"{tag}-{name}": value for name, value in form.items() if value is not None}
    return client.post(f"/console/p/acme/notes/{note.id}/translations/{tag}", data=data)


def stored(session, note, tag: str) -> NoteTranslation | None:
    session.expire_all()
    return session.scalar(
        select(NoteTranslation).where(
            NoteTranslation.note_id == note.id, NoteTranslation.locale == tag
        )
    )


def post(client, path: str, **data: str):
    return client.post(path, data={**data, "csrf_token": csrf_token(client)})


# Settings: the product's languages ---------------------------------------------------------


def test_settings_list_each_language_by_its_own_name_with_its_fallback_chain(
    client, logged_in
) -> None:
    page = client.get("/console/p/acme/settings").get_data(as_text=True)
    rows = dict(re.findall(r'<tr data-language="([\w-]+)">(.*?)</tr>', page, re.S))
    assert list(rows) == ["en", "fr", "fr-CA", "ar"]
    assert 'lang="ar" dir="rtl">العربية</span>' in rows["ar"]
    assert ">Français</span>" in rows["fr"] and ">Français (Canada)</span>" in rows["fr-CA"]
    assert "Default" in rows["en"] and "Remove" not in rows["en"]
    chains = {
        tag: text_of(row.split("<td>", 1)[1].split("</td>", 1)[0]) for tag, row in rows.items()
    }
    assert chains == {"en": "en", "fr": "fr → en", "fr-CA": "fr-CA → fr → en", "ar": "ar → en"}


def test_adding_a_language_normalises_its_tag(client, session, acme, logged_in) -> None:
    response = post(client, "/console/p/acme/settings/languages", languages=" pt_br ")
    assert response.status_code == 302
    session.expire_all()
    assert acme.languages == ["fr", "fr-CA", "ar", "pt-BR"]
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert ("success", next(m for k, m in flashes(page) if k == "success")) and "Added" in page
    assert '<tr data-language="pt-BR">' in page


@pytest.mark.parametrize("tag", ["english", "xx-YY-ZZ-1", "fr;drop", "", "ab" * 30])
def test_an_invalid_tag_is_a_form_error_and_changes_nothing(
    client, session, acme, logged_in, tag
) -> None:
    before = audit_events(session)
    response = post(client, "/console/p/acme/settings/languages", languages=tag)
    assert response.status_code == 422
    errors = field_errors(response.get_data(as_text=True))
    assert list(errors) == ["languages"]
    assert "language tag" in errors["languages"] or "language" in errors["languages"]
    session.expire_all()
    assert acme.languages == ["fr", "fr-CA", "ar"]
    assert audit_events(session) == before


def test_adding_a_language_it_has_says_so(client, session, acme, logged_in) -> None:
    response = post(client, "/console/p/acme/settings/languages", languages="FR")
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert ("info", "Français is already one of Acme's languages.") in [
        (kind, text.replace("French", "Français")) for kind, text in flashes(page)
    ]
    session.expire_all()
    assert acme.languages == ["fr", "fr-CA", "ar"]


def test_removing_a_language_hides_its_translations_until_it_is_added_again(
    client, session, acme, note, logged_in
) -> None:
    translate(client, note, "ar", title="الوضع الداكن", body_md="هنا.", intent="publish")
    response = post(client, "/console/p/acme/settings/languages/ar/remove")
    assert response.status_code == 302
    session.expire_all()
    assert acme.languages == ["fr", "fr-CA"]
    assert stored(session, note, "ar") is not None  # kept
    assert "ar" not in translations.published_texts(note)  # but no reader sees it
    assert "ar" not in tabs(client.get(f"/console/p/acme/notes/{note.id}").get_data(as_text=True))

    post(client, "/console/p/acme/settings/languages", languages="ar")
    page = client.get(f"/console/p/acme/notes/{note.id}").get_data(as_text=True)
    assert tabs(page)["ar"] == "published"


def test_removing_the_default_language_is_refused(client, session, acme, logged_in) -> None:
    before = audit_events(session)
    response = post(client, "/console/p/acme/settings/languages/en/remove")
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert any(
        kind == "error" and "cannot be removed" in text and "default language" in text
        for kind, text in flashes(page)
    )
    session.expire_all()
    assert (acme.default_locale, acme.languages) == ("en", ["fr", "fr-CA", "ar"])
    assert audit_events(session) == before


def test_the_default_changes_only_to_a_language_without_translations(
    client, session, acme, note, logged_in
) -> None:
    translate(client, note, "fr")
    response = post(client, "/console/p/acme/settings/languages/default", default_locale="fr")
    assert response.status_code == 422
    assert "translations" in field_errors(response.get_data(as_text=True))["default_locale"]
    session.expire_all()
    assert acme.default_locale == "en"

    response = post(client, "/console/p/acme/settings/languages/default", default_locale="en-GB")
    assert response.status_code == 302
    session.expire_all()
    assert (acme.default_locale, acme.languages) == ("en-GB", ["fr", "fr-CA", "ar"])


def test_the_settings_form_leaves_the_default_language_to_the_languages(
    client, session, acme, logged_in
) -> None:
    page = client.get("/console/p/acme/settings").get_data(as_text=True)
    assert re.search(r'<input[^>]*id="default_locale"[^>]*readonly', page)
    form = settings_form(client, default_locale="de")
    assert post(client, "/console/p/acme/settings", **form).status_code == 302
    session.expire_all()
    assert acme.default_locale == "en"


# The editor: a tab per language ------------------------------------------------------------


def test_the_editor_has_a_tab_per_language_with_its_status(
    client, session, acme, note, logged_in
) -> None:
    page = client.get(f"/console/p/acme/notes/{note.id}").get_data(as_text=True)
    assert tabs(page) == {"en": "default", "fr": "missing", "fr-CA": "missing", "ar": "missing"}
    assert shown_tab(page) == "en"
    assert re.search(r'<section class="translation" id="panel-fr"[^>]*hidden', page)

    translate(client, note, "fr", intent="publish")
    translate(client, note, "ar", title="الوضع الداكن", body_md="هنا.")
    page = client.get(f"/console/p/acme/notes/{note.id}?language=ar").get_data(as_text=True)
    assert tabs(page) == {"en": "default", "fr": "published", "fr-CA": "missing", "ar": "draft"}
    assert shown_tab(page) == "ar"
    assert re.search(
        r'<form method="post" class="editor" novalidate id="panel-en"[^>]*hidden', page
    )
    # Each language's text is marked as such, so Arabic is written right to left.
    assert re.search(r'<textarea[^>]*dir="rtl"[^>]*id="ar-body_md"[^>]*lang="ar"', page)
    # A missing Canadian French is read in French, the next of its chain with a text.
    panel = page.split('id="panel-fr-CA"', 1)[1].split("</section>", 1)[0]
    assert "see this note in French." in text_of(panel)


def test_a_translation_is_saved_as_draft_then_published(
    client, session, acme, note, logged_in
) -> None:
    response = translate(
        client, note, "fr", body_md="Le mode **sombre**.\r\n\r\n<script>x()</script>"
    )
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/notes/{note.id}?language=fr")
    draft = stored(session, note, "fr")
    assert (draft.status, draft.title) == (TranslationStatus.DRAFT, "Mode sombre")
    assert draft.body_md == "Le mode **sombre**.\n\n<script>x()</script>"
    assert "<strong>sombre</strong>" in draft.body_html and "<script" not in draft.body_html
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert any("saved as a draft" in text for _kind, text in flashes(page))
    assert "fr" not in translations.published_texts(note)

    response = translate(client, note, "fr", intent="publish")
    published = stored(session, note, "fr")
    assert published.status is TranslationStatus.PUBLISHED
    assert (published.source_title, published.source_body_md) == (note.title, note.body_md)
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert tabs(page)["fr"] == "published"
    assert any("published" in text and "nobody was told" in text for _k, text in flashes(page))

    # Saving a published translation as a draft takes it away from readers.
    translate(client, note, "fr", intent="draft")
    assert stored(session, note, "fr").status is TranslationStatus.DRAFT


def test_the_translation_preview_uses_the_notes_sanitiser(client, note, logged_in) -> None:
    translate(client, note, "fr", body_md='<img src=x onerror="alert(1)"> **ok**')
    page = client.get(f"/console/p/acme/notes/{note.id}?language=fr").get_data(as_text=True)
    panel = page.split('id="panel-fr"', 1)[1].split("</section>", 1)[0]
    preview = panel.split("data-preview>", 1)[1].split("</div>", 1)[0]
    assert "<strong>ok</strong>" in preview and "onerror" not in preview
    response = post(client, "/console/p/acme/preview", body_md="<script>alert(1)</script>*fr*")
    assert "<script" not in response.get_json()["html"]


def test_a_translated_title_is_escaped_everywhere_the_editor_shows_it(
    client, note, logged_in
) -> None:
    translate(client, note, "fr", title='<img src=x onerror="alert(1)">', intent="publish")
    page = client.get(f"/console/p/acme/notes/{note.id}?language=fr").get_data(as_text=True)
    assert "<img src=x" not in page
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in page


def test_announcing_needs_publishing(client, session, note, logged_in) -> None:
    response = translate(client, note, "fr", announce="y", intent="draft")
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "published" in field_errors(page)["fr-announce"]
    assert shown_tab(page) == "fr"
    assert stored(session, note, "fr") is None


def test_publishing_with_announce_announces_it(
    client, session, note, logged_in, monkeypatch
) -> None:
    """The checkbox asks the service to announce; whom the mail reaches is e-mail's to
    test (tests/test_mail_languages.py)."""
    from announcements import translation_mail

    asked = []
    real = translation_mail.announce
    monkeypatch.setattr(
        translation_mail,
        "announce",
        lambda session, translation, *, now: (
            asked.append(translation.locale) or real(session, translation, now=now)
        ),
    )
    translate(client, note, "fr", intent="publish")
    assert asked == []
    response = translate(client, note, "fr", intent="publish", announce="y")
    assert response.status_code == 302
    assert asked == ["fr"]
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert any("e-mailed" in text for _kind, text in flashes(page))


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"title": "   "}, "fr-title"),
        ({"title": "t" * 201}, "fr-title"),
        ({"body_md": "x" * 110_000}, "fr-body_md"),
    ],
)
def test_bad_translation_input_is_shown_beside_its_field_and_stores_nothing(
    client, session, note, logged_in, fields, field
) -> None:
    before = audit_events(session)
    response = translate(client, note, "fr", intent="publish", **fields)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert field in field_errors(page)
    assert shown_tab(page) == "fr"
    # What was typed is still there, in the tab it was typed in.
    assert 'id="fr-title"' in page
    assert stored(session, note, "fr") is None
    assert audit_events(session) == before


@pytest.mark.parametrize(
    ("tag", "message"),
    [
        ("de", "Acme has no de; add the language in Settings first."),
        ("en", "en is the product's default language: edit the note itself."),
        ("xx", "'xx' is not a language tag"),
    ],
)
def test_a_translation_into_a_language_the_product_lacks_is_refused(
    client, session, note, logged_in, tag, message
) -> None:
    before = audit_events(session)
    response = translate(client, note, tag, intent="publish")
    assert response.status_code == 422
    assert any(
        kind == "error" and message in text
        for kind, text in flashes(response.get_data(as_text=True))
    )
    session.expire_all()
    assert note.translations == []
    assert audit_events(session) == before


def test_a_tag_written_otherwise_is_the_language_it_names(client, session, note, logged_in):
    """``/translations/FR`` is French, as it is to the API: the service normalises it, and
    the form is French's tab's."""
    fields = {"title": "Mode sombre", "body_md": "Le mode sombre est là.", "intent": "draft"}
    data = {f"fr-{name}": value for name, value in fields.items()}
    data["fr-csrf_token"] = csrf_token(client)
    response = client.post(f"/console/p/acme/notes/{note.id}/translations/FR", data=data)
    assert response.status_code == 302
    assert response.headers["Location"].endswith("?language=fr")
    assert stored(session, note, "fr").title == "Mode sombre"
    response = post(client, f"/console/p/acme/notes/{note.id}/translations/FR/delete")
    assert response.status_code == 302
    assert stored(session, note, "fr") is None


def test_an_archived_note_is_not_translated(client, session, owner, note, logged_in) -> None:
    services.archive(session, note, by=owner, now=utcnow())
    session.commit()
    page = client.get(f"/console/p/acme/notes/{note.id}?language=fr").get_data(as_text=True)
    assert re.search(r'id="panel-fr".*?<fieldset disabled>', page, re.S)
    response = translate(client, note, "fr", intent="publish")
    assert response.status_code == 422
    assert any("Restore it first" in text for _k, text in flashes(response.get_data(as_text=True)))
    assert stored(session, note, "fr") is None


def test_deleting_a_translation(client, session, note, logged_in) -> None:
    translate(client, note, "fr", intent="publish")
    response = post(client, f"/console/p/acme/notes/{note.id}/translations/fr/delete")
    assert response.status_code == 302
    assert stored(session, note, "fr") is None
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert tabs(page)["fr"] == "missing"
    # Deleting what is not there says so, and changes nothing.
    response = post(client, f"/console/p/acme/notes/{note.id}/translations/fr/delete")
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert any(kind == "error" and "no translation" in text for kind, text in flashes(page))


# Outdated: the default text changed after the translation was published ------------------


def _edit_default_text(client, note, **changes: str):
    form = {
        "version": note.version,
        "title": note.title,
        "category": note.category.value,
        "body_md": note.body_md,
        "audience": "all",
        "intent": "save",
        "holdback_percent": "0",
    }
    form.update(changes)
    return post(client, f"/console/p/acme/notes/{note.id}", **form)


def test_editing_the_default_text_leaves_translations_outdated_and_shows_what_changed(
    client, session, note, logged_in
) -> None:
    translate(client, note, "fr", intent="publish")
    translate(client, note, "ar", title="الوضع الداكن", body_md="هنا.")  # a draft
    response = _edit_default_text(
        client,
        note,
        title="Dark mode everywhere",
        body_md="Dark mode is here.\n\nTurn it on in Preferences.\n\nIt follows the system.",
    )
    assert response.status_code == 302
    french = stored(session, note, "fr")
    # The translation itself is untouched: readers still see it, a whole text.
    assert (french.title, french.body_md) == ("Mode sombre", "Le mode sombre est là.")
    assert "fr" in translations.published_texts(note)

    page = client.get(f"/console/p/acme/notes/{note.id}?language=fr").get_data(as_text=True)
    assert tabs(page) == {"en": "default", "fr": "outdated", "fr-CA": "missing", "ar": "draft"}
    changes = page.split('<section class="card changes"', 1)[1].split("</section>", 1)[0]
    assert "<del>Dark mode</del>" in changes and "<ins>Dark mode everywhere</ins>" in changes
    removed = [text_of(d) for d in re.findall(r'<del class="diff-line">(.*?)</del>', changes)]
    added = [text_of(i) for i in re.findall(r'<ins class="diff-line">(.*?)</ins>', changes)]
    assert removed == ["−Turn it on in Settings."]
    assert added == ["+Turn it on in Preferences.", "+", "+It follows the system."]
    assert "Dark mode is here." in changes  # the context around the change
    # A draft is not outdated: it was never published for a text.
    assert '<section class="card changes"' not in page.split('id="panel-ar"', 1)[1]

    # Publishing again clears it.
    translate(client, note, "fr", intent="publish", title="Mode sombre partout")
    page = client.get(f"/console/p/acme/notes/{note.id}?language=fr").get_data(as_text=True)
    assert tabs(page)["fr"] == "published"
    assert '<section class="card changes"' not in page


# Who may do what ---------------------------------------------------------------------------

NEW_ROUTES = [
    ("/console/p/acme/settings/languages", {"languages": "de"}, Role.OWNER),
    ("/console/p/acme/settings/languages/default", {"default_locale": "en"}, Role.OWNER),
    ("/console/p/acme/settings/languages/ar/remove", {}, Role.OWNER),
    (
        "/console/p/acme/notes/{note}/translations/fr",
        {"fr-title": "T", "fr-body_md": "B"},
        Role.EDITOR,
    ),
    ("/console/p/acme/notes/{note}/translations/fr/delete", {}, Role.EDITOR),
]


@pytest.mark.parametrize("role", [Role.VIEWER, Role.EDITOR])
def test_each_role_changes_only_what_it_may(client, session, auth, acme, note, role) -> None:
    member = add_member(session, acme, role, f"{role.value}@example.com")
    translations.save(
        session, note, "fr", title="T", body_md="B", publish=True, by=None, now=utcnow()
    )
    session.commit()
    auth.login(member.email)
    before = audit_events(session)
    for path, data, needed in NEW_ROUTES:
        response = post(client, path.format(note=note.id), **data)
        if role.allows(needed):
            assert response.status_code in (302, 422), path
        else:
            assert response.status_code == 403, path
    session.expire_all()
    if role is Role.VIEWER:
        assert audit_events(session) == before
        assert acme.languages == ["fr", "fr-CA", "ar"]
    page = client.get(f"/console/p/acme/notes/{note.id}?language=fr").get_data(as_text=True)
    panel = page.split('id="panel-fr"', 1)[1]
    if role is Role.VIEWER:  # sees every language and its status, edits none
        assert "<fieldset disabled>" in panel and 'value="publish"' not in panel
    else:
        assert "<fieldset >" in panel


def test_outsiders_get_404_and_change_nothing(client, session, auth, acme, note) -> None:
    outsider = make_member(session, "outsider@example.com")
    make_product(session, owner=outsider, slug="elsewhere")
    auth.login(outsider.email)
    before = audit_events(session)
    for path, data, _needed in NEW_ROUTES:
        assert post(client, path.format(note=note.id), **data).status_code == 404, path
    assert audit_events(session) == before


def test_every_new_form_needs_its_csrf_token(client, session, acme, note, logged_in) -> None:
    before = audit_events(session)
    for path, data, _needed in [*NEW_ROUTES, ("/console/account/language", {"locale": "fr"}, None)]:
        for token in ({}, {"csrf_token": "forged"}):
            response = client.post(path.format(note=note.id), data={**data, **token})
            assert response.status_code == 400, path
    assert audit_events(session) == before
    session.expire_all()
    assert acme.languages == ["fr", "fr-CA", "ar"]


# The console's own language ----------------------------------------------------------------


def test_a_member_chooses_the_consoles_language(client, session, owner, logged_in) -> None:
    page = client.get("/console/account").get_data(as_text=True)
    assert '<option value="fr">Français</option>' in page
    assert '<html lang="en"' in page

    response = post(client, "/console/account/language", locale="fr")
    assert response.status_code == 302
    session.expire_all()
    assert owner.locale == "fr"
    page = client.get("/console/p/acme/notes", headers={"Accept-Language": "en"}).get_data(
        as_text=True
    )
    assert '<html lang="fr"' in page  # whatever the browser asks

    post(client, "/console/account/language", locale="")
    session.expire_all()
    assert owner.locale is None
    page = client.get("/console/p/acme/notes", headers={"Accept-Language": "fr-CA, en"})
    assert '<html lang="fr"' in page.get_data(as_text=True)  # the browser's, again


@pytest.mark.parametrize("choice", ["de", "ar", "fr-CA", "x" * 100])
def test_a_language_the_console_does_not_speak_is_refused(
    client, session, owner, logged_in, choice
) -> None:
    response = post(client, "/console/account/language", locale=choice)
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert any(kind == "error" for kind, _text in flashes(page))
    session.expire_all()
    assert owner.locale is None


@needs_catalogue("fr", "Languages")
def test_the_console_speaks_french_once_chosen(client, session, owner, acme, note, logged_in):
    post(client, "/console/account/language", locale="fr")
    page = client.get("/console/p/acme/settings").get_data(as_text=True)
    assert '<h2 id="languages-title">Langues</h2>' in page
    page = client.get(f"/console/p/acme/notes/{note.id}?language=fr").get_data(as_text=True)
    assert "Anglais" in page or "anglais" in page  # the default language, named in French
