"""The note rules' characters: a title or body holding a control character, which no
person writes and no RSS or Atom feed can carry, is refused wherever it is written (here
the management API, for a note and for a translation) with the field named and nothing
stored; tabs and line breaks are text, and a feed of ordinary text still answers."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from announcements import apikeys, note_rules, translations
from announcements.models import Note, NoteTranslation, utcnow
from tests.factories import make_note, make_product

NOTES = "/api/v1/products/acme/notes"
# Each character lxml refuses in a feed, and DEL with them.
CONTROLS = ["\x01", "\x08", "\x0b", "\x0c", "\x0e", "\x1f", "\x7f", "\ufffe", "\ud800"]


@pytest.fixture
def product(session):
    product = make_product(session, slug="acme", name="Acme")
    translations.set_languages(session, product, "en", ["fr"], by=None, now=utcnow())
    session.commit()
    return product


def key_for(session, product) -> dict[str, str]:
    scopes = ["notes:read", "notes:write"]
    _, raw = apikeys.create(session, product, "ci", scopes, by=None, now=utcnow())
    session.commit()
    return {"Authorization": f"Bearer {raw}"}


@pytest.mark.parametrize("character", CONTROLS)
def test_a_control_character_is_named_in_a_title_and_a_body(character: str) -> None:
    problem = f"Remove the character U+{ord(character):04X} at position 4"
    assert (note_rules.title_problem(f"Bad{character}title") or "").startswith(problem)
    assert (note_rules.body_problem(f"Bad{character}body") or "").startswith(problem)


def test_tabs_and_line_breaks_are_text() -> None:
    assert note_rules.title_problem("Faster\tsync") is None
    assert note_rules.body_problem("- one\r\n- two\n\n\tcode") is None


@pytest.mark.parametrize(("field", "value"), [("title", "Bad\x01title"), ("body_md", "x\x0bz")])
def test_the_api_refuses_a_note_with_a_control_character(
    client, session, product, field: str, value: str
) -> None:
    note = {"version": "1.0.0", "title": "Faster sync", "category": "Added", field: value}
    refused = client.post(NOTES, headers=key_for(session, product), json=note)
    assert refused.status_code == 422
    assert set(refused.json["errors"]) == {field}
    assert "control character" in refused.json["errors"][field]
    assert session.scalar(select(func.count()).select_from(Note)) == 0


@pytest.mark.parametrize(
    ("field", "value"), [("title", "Mauvais\x01titre"), ("body_md", "Plus\x02rapide")]
)
def test_the_api_refuses_a_translation_with_a_control_character(
    client, session, product, field: str, value: str
) -> None:
    note = make_note(session, product, title="Faster sync", body_md="Sync is faster.")
    session.commit()
    french = {"title": "Synchro plus rapide", "body_md": "Plus rapide.", field: value}
    refused = client.put(
        f"{NOTES}/{note.id}/translations/fr",
        headers=key_for(session, product),
        json={**french, "status": "published"},
    )
    assert refused.status_code == 422
    assert set(refused.json["errors"]) == {field}
    assert "control character" in refused.json["errors"][field]
    assert session.scalar(select(func.count()).select_from(NoteTranslation)) == 0


@pytest.mark.parametrize("kind", ["rss", "atom", "json"])
def test_a_feed_of_ordinary_text_still_answers(client, session, product, kind: str) -> None:
    headers = key_for(session, product)
    note = {
        "version": "1.0.0",
        "title": "Faster sync",
        "category": "Added",
        "body_md": "Sync is faster.\r\n\n- one\tand\n- two",
        "publish": True,
    }
    created = client.post(NOTES, headers=headers, json=note)
    assert created.status_code == 201, created.json
    feed = client.get(f"/changelog/acme/feed.{kind}")
    assert feed.status_code == 200
    assert "Faster sync" in feed.get_data(as_text=True)
