"""A reaction stored outside the widget's three (written to the database by hand, or
before a reaction was retired) is shown on the console's Insights pages as the text it
is, never as markup or as a translation's trusted words."""

from __future__ import annotations

import lxml.html
import pytest
from sqlalchemy.orm import Session

from announcements import rollups
from announcements.models import Note, Reaction, utcnow
from tests.conftest import AuthActions
from tests.factories import make_end_user, make_member, make_note, make_product

STORED = '<b>x</b>"'


@pytest.fixture
def note(session: Session) -> Note:
    owner = make_member(session, "owner@example.com")
    product = make_product(session, owner, name="Lumen", slug="lumen")
    note = make_note(session, product, title="Exports")
    user = make_end_user(session, product, "u1")
    for end_user, reaction in ((user, STORED), (make_end_user(session, product, "u2"), "👍")):
        session.add(
            Reaction(
                end_user_id=end_user.id,
                note_id=note.id,
                reaction=reaction,
                comment="Hm",
                created_at=note.published_at,
                updated_at=note.published_at,
            )
        )
    session.commit()
    rollups.rebuild(session, product, now=utcnow())
    return note


@pytest.mark.parametrize("page", ["comments", "insights"])
def test_a_stored_reaction_is_shown_as_text(client, note: Note, page: str) -> None:
    assert AuthActions(client).login("owner@example.com").status_code == 302
    response = client.get(f"/console/p/lumen/notes/{note.id}/{page}")
    assert response.status_code == 200
    assert STORED not in response.get_data(as_text=True)
    document = lxml.html.fromstring(response.data)
    assert not document.xpath("//b[normalize-space()='x']")
    marks = document.xpath("//li[@class='comment']/span[@class='reaction-mark']")
    assert {mark.get("aria-label"): mark.text for mark in marks} == {
        STORED: STORED,
        "Helpful": "👍",
    }
