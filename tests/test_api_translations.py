"""The management API's translations: a translator's tool writes, publishes, reads and
deletes a note's text in each of the product's languages, sees what changed in the note
since, and every bad request is refused with a clear error and changes nothing."""

from __future__ import annotations

import sys
import types

import pytest
from sqlalchemy import select

from announcements import apikeys, translations
from announcements.models import AuditEvent, utcnow
from tests.factories import make_note, make_product
from tests.i18n_helpers import stored_translations

BASE = "/api/v1/products/acme/notes"
FRENCH = {"title": "Export en PDF", "body_md": "Les rapports s'exportent **en PDF**."}


@pytest.fixture
def product(session):
    product = make_product(session, slug="acme", name="Acme")
    translations.set_languages(session, product, "en", ["fr", "ar"], by=None, now=utcnow())
    session.commit()
    return product


@pytest.fixture
def note(session, product):
    return make_note(session, product, title="PDF export", body_md="Reports export **as PDF**.")


def key_for(session, product, scopes=("notes:read", "notes:write")) -> dict[str, str]:
    _, raw = apikeys.create(session, product, "translator", list(scopes), by=None, now=utcnow())
    return {"Authorization": f"Bearer {raw}"}


def test_a_translation_is_drafted_published_read_listed_and_deleted(client, session, note):
    headers = key_for(session, note.product)
    url = f"{BASE}/{note.id}/translations"

    draft = client.put(f"{url}/fr", headers=headers, json=FRENCH)
    assert draft.status_code == 200, draft.json
    assert draft.json["status"] == "draft" and draft.json["published_at"] is None
    assert draft.json["locale"] == "fr" and draft.json["source_changed"] is None
    assert draft.json["html"] == "<p>Les rapports s'exportent <strong>en PDF</strong>.</p>"

    listed = client.get(url, headers=headers).json
    assert listed["note_id"] == note.id
    assert [(t["locale"], t["default"], t["status"]) for t in listed["translations"]] == [
        ("en", True, "published"),
        ("fr", False, "draft"),
        ("ar", False, "missing"),
    ]
    assert listed["translations"][0]["title"] == "PDF export"
    assert listed["translations"][2]["title"] is None

    published = client.put(f"{url}/fr", headers=headers, json={**FRENCH, "status": "published"})
    assert published.json["status"] == "published" and published.json["published_at"]
    assert client.get(f"{url}/fr", headers=headers).json == published.json

    assert client.delete(f"{url}/fr", headers=headers).status_code == 204
    assert client.get(f"{url}/fr", headers=headers).status_code == 404
    assert client.delete(f"{url}/fr", headers=headers).status_code == 404
    assert [t["status"] for t in client.get(url, headers=headers).json["translations"]] == [
        "published",
        "missing",
        "missing",
    ]
    actions = session.scalars(
        select(AuditEvent.action).where(AuditEvent.action.like("translation.%"))
    ).all()
    assert actions == ["translation.saved", "translation.published", "translation.deleted"]


def test_the_default_text_changing_makes_it_outdated_until_published_again(client, session, note):
    headers = key_for(session, note.product)
    url = f"{BASE}/{note.id}/translations/fr"
    client.put(url, headers=headers, json={**FRENCH, "status": "published"})

    edited = client.patch(
        f"{BASE}/{note.id}", headers=headers, json={"body_md": "Reports export as PDF and CSV."}
    )
    assert edited.status_code == 200
    outdated = client.get(url, headers=headers).json
    assert outdated["status"] == "outdated"
    assert outdated["title"] == FRENCH["title"]  # still shown: a whole, older text
    (change,) = outdated["source_changed"]
    assert change["field"] == "body_md"
    assert change["before"] == "Reports export **as PDF**."
    assert change["after"] == "Reports export as PDF and CSV."
    assert change["diff"][1:] == ["-Reports export **as PDF**.", "+Reports export as PDF and CSV."]
    listed = client.get(f"{BASE}/{note.id}/translations", headers=headers).json
    assert listed["translations"][1]["status"] == "outdated"

    again = client.put(
        url,
        headers=headers,
        json={"title": "Export en PDF", "body_md": "En PDF et CSV.", "status": "published"},
    )
    assert again.json["status"] == "published" and again.json["source_changed"] is None


def test_saving_the_same_translation_again_changes_nothing(client, session, note):
    headers = key_for(session, note.product)
    url = f"{BASE}/{note.id}/translations/fr"
    first = client.put(url, headers=headers, json={**FRENCH, "status": "published"}).json
    before = stored_translations(session)
    second = client.put(url, headers=headers, json={**FRENCH, "status": "published"}).json
    assert second == first and stored_translations(session) == before


def test_a_tag_is_normalised_before_it_is_matched(client, session, note):
    headers = key_for(session, note.product)
    written = client.put(f"{BASE}/{note.id}/translations/FR", headers=headers, json=FRENCH)
    assert written.status_code == 200 and written.json["locale"] == "fr"
    assert client.get(f"{BASE}/{note.id}/translations/fr", headers=headers).status_code == 200


def test_reading_needs_notes_read_and_writing_notes_write(client, session, note):
    url = f"{BASE}/{note.id}/translations/fr"
    reader = key_for(session, note.product, ["notes:read"])
    writer = key_for(session, note.product, ["notes:write"])
    assert client.put(url, headers=writer, json=FRENCH).status_code == 200
    refused = client.put(url, headers=reader, json=FRENCH)
    assert refused.status_code == 403 and "notes:write" in refused.json["error"]
    assert client.delete(url, headers=reader).status_code == 403
    assert client.get(url, headers=reader).status_code == 200
    assert client.get(url, headers=writer).status_code == 403
    assert client.get(f"{BASE}/{note.id}/translations", headers=writer).status_code == 403


@pytest.mark.parametrize(
    ("locale", "body", "status", "field", "message"),
    [
        ("xx-!!", FRENCH, 422, "locale", "not a language tag"),
        ("klingon", FRENCH, 422, "locale", "not a language tag"),
        ("de", FRENCH, 422, "locale", "Acme has no de; add the language in Settings first."),
        ("fr-CA", FRENCH, 422, "locale", "Acme has no fr-CA"),
        ("en", FRENCH, 422, "locale", "default language: edit the note itself"),
        ("en-US", FRENCH, 422, "locale", "Acme has no en-US"),
        ("fr", {"body_md": "Sans titre"}, 422, "title", "Field required"),
        ("fr", {**FRENCH, "title": "   "}, 422, "title", "Give the note a title."),
        ("fr", {**FRENCH, "title": "x" * 201}, 422, "title", "at most 200 characters"),
        ("fr", {**FRENCH, "status": "live"}, 422, "status", "'draft' or 'published'"),
        ("fr", {**FRENCH, "colour": "red"}, 422, "colour", "Extra inputs"),
        ("fr", {**FRENCH, "title": "a\x00b"}, 422, "title", "not text"),
        ("fr", {**FRENCH, "body_md": "é" * 60_000}, 422, "body_md", "over 100 KB"),
        ("fr", {**FRENCH, "announce": True}, 422, "announce", "Only a published translation"),
    ],
)
def test_bad_requests_are_refused_and_change_nothing(
    client, session, note, locale, body, status, field, message
):
    headers = key_for(session, note.product)
    client.put(f"{BASE}/{note.id}/translations/ar", headers=headers, json=FRENCH)
    before = stored_translations(session)
    response = client.put(f"{BASE}/{note.id}/translations/{locale}", headers=headers, json=body)
    assert response.status_code == status, response.json
    assert message in response.json["errors"][field], response.json
    assert stored_translations(session) == before


def test_unknown_notes_other_products_notes_and_bodies_that_are_not_json(client, session, note):
    headers = key_for(session, note.product)
    other = make_note(session, make_product(session, slug="other"))
    for note_id in (note.id + 1000, other.id):
        url = f"{BASE}/{note_id}/translations"
        assert client.get(url, headers=headers).status_code == 404
        assert client.get(f"{url}/fr", headers=headers).status_code == 404
        assert client.put(f"{url}/fr", headers=headers, json=FRENCH).status_code == 404
        assert client.delete(f"{url}/fr", headers=headers).status_code == 404
    before = stored_translations(session)
    broken = client.put(
        f"{BASE}/{note.id}/translations/fr",
        headers={**headers, "Content-Type": "application/json"},
        data=b"{not json",
    )
    assert broken.status_code == 400
    missing_language = client.get(f"{BASE}/{note.id}/translations/de", headers=headers)
    assert missing_language.status_code == 422
    assert stored_translations(session) == before


def test_an_archived_note_is_not_translated(client, session, note):
    headers = key_for(session, note.product)
    client.post(f"{BASE}/{note.id}/archive", headers=headers)
    before = stored_translations(session)
    response = client.put(f"{BASE}/{note.id}/translations/fr", headers=headers, json=FRENCH)
    assert response.status_code == 409 and "Restore it first" in response.json["error"]
    assert stored_translations(session) == before


def test_announcing_hands_the_published_translation_to_the_mail(client, session, note, monkeypatch):
    announced = []

    def announce(_session, translation, *, now):
        announced.append((translation.locale, translation.status.value))
        return 3

    mail = types.ModuleType("announcements.translation_mail")
    mail.announce = announce  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "announcements.translation_mail", mail)
    monkeypatch.setattr("announcements.translation_mail", mail, raising=False)
    headers = key_for(session, note.product)
    body = {**FRENCH, "status": "published", "announce": True}
    response = client.put(f"{BASE}/{note.id}/translations/fr", headers=headers, json=body)
    assert response.status_code == 200
    assert announced == [("fr", "published")]
    summary = session.scalar(
        select(AuditEvent.summary).where(AuditEvent.action == "translation.published")
    )
    assert "announced to 3 subscriber(s)" in summary


def test_the_openapi_document_describes_the_translation_operations(client):
    document = client.get("/api/v1/openapi.json").json
    path = document["paths"]["/api/v1/products/{slug}/notes/{note_id}/translations/{locale}"]
    assert set(path) == {"get", "put", "delete"}
    assert "notes:write" in path["put"]["description"]
    assert {"404", "422"} <= set(path["put"]["responses"])
    locale = next(p for p in path["get"]["parameters"] if p["name"] == "locale")
    assert locale["in"] == "path" and locale["required"]
    listing = document["paths"]["/api/v1/products/{slug}/notes/{note_id}/translations"]
    assert "notes:read" in listing["get"]["description"]
    schemas = document["components"]["schemas"]
    assert set(schemas["TranslationWrite"]["properties"]) == {
        "title",
        "body_md",
        "status",
        "announce",
    }
    assert "outdated" in schemas["Translation"]["properties"]["status"]["enum"]
