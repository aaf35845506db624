"""A note's support topics and hold-back: written in the console editor and through the
management API, folded and checked by the one set of note rules, refused with the field
named and nothing changed, and recorded in the audit log; on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import lxml.html
import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from announcements import apikeys, note_rules
from announcements.models import AuditEvent, Note, Product, utcnow
from tests.conftest import AuthActions, csrf_token
from tests.factories import make_member, make_note, make_product

NOTES = "/api/v1/products/acme/notes"


@pytest.fixture
def product(session: Session, auth: AuthActions) -> Product:
    owner = make_member(session, "owner@example.com")
    made = make_product(session, owner=owner, slug="acme", name="Acme")
    auth.login(owner.email)
    return made


@pytest.fixture
def api(session: Session, product: Product) -> dict[str, str]:
    _, raw = apikeys.create(
        session, product, "ci", ["notes:read", "notes:write"], by=None, now=utcnow()
    )
    return {"Authorization": f"Bearer {raw}"}


def stored(session: Session, note_id: int) -> tuple[list[str], int]:
    session.expire_all()
    note = session.get_one(Note, note_id)
    return note.support_topics, note.holdback_percent


def audit(session: Session) -> list[tuple[str, str]]:
    session.expire_all()
    rows = session.execute(select(AuditEvent.action, AuditEvent.summary).order_by(AuditEvent.id))
    return [(action, summary) for action, summary in rows]


# The rule ---------------------------------------------------------------------------------


def test_topics_are_folded_as_ticket_tags_and_repeats_dropped() -> None:
    written = ["Export", " export ", "SSO   Setup", "ｂｉｌｌｉｎｇ", "billing", "v2.4:beta_1"]
    assert note_rules.support_topics(written) == ["export", "sso setup", "billing", "v2.4:beta_1"]
    assert note_rules.topics_problem(written) is None
    assert note_rules.topics_problem([f"topic {n}" for n in range(20)] + ["Topic 0"]) is None


@pytest.mark.parametrize(
    "topics",
    [
        [""],
        ["   "],
        ["export!"],
        ["a/b"],
        ["x" * 41],
        [f"topic {n}" for n in range(21)],
        ["export", 7],
    ],
)
def test_a_topic_outside_the_rule_is_named(topics: list[Any]) -> None:
    assert note_rules.topics_problem(topics)


# The console editor -----------------------------------------------------------------------


def editor_form(client: FlaskClient, **overrides: str) -> dict[str, str]:
    form = {
        "csrf_token": csrf_token(client),
        "version": "2.4.0",
        "title": "Export to CSV",
        "category": "Added",
        "body_md": "Export any report.",
        "support_topics": "",
        "holdback_percent": "0",
        "intent": "save",
    }
    form.update(overrides)
    return form


def test_the_editor_writes_topics_and_a_hold_back_and_shows_them_again(
    client: FlaskClient, session: Session, product: Product
) -> None:
    form = editor_form(client, support_topics="Export, CSV ,, export", holdback_percent="20")
    response = client.post("/console/p/acme/notes/new", data=form)
    assert response.status_code == 302
    note = session.scalar(select(Note))
    assert note is not None
    assert stored(session, note.id) == (["export", "csv"], 20)
    assert audit(session)[-1] == (
        "note.created",
        "“Export to CSV” (2.4.0): Created as draft, holding back 20 %",
    )

    page = client.get(f"/console/p/acme/notes/{note.id}").get_data(as_text=True)
    assert 'value="export, csv"' in page
    assert 'name="holdback_percent"' in page and 'value="20"' in page
    assert "Hold back this share of users as a control group" in page
    assert "attribution window (14 days after it goes out)" in page
    assert "It is fixed once the note is out." in page


def test_a_published_notes_hold_back_is_fixed_while_its_topics_can_change(
    client: FlaskClient, session: Session, product: Product
) -> None:
    note = make_note(session, product, version="2.4.0", title="Export to CSV", holdback_percent=5)
    product.support_window_days = 30
    session.commit()
    page = client.get(f"/console/p/acme/notes/{note.id}").get_data(as_text=True)
    assert "(30 days after it goes out)" in page
    assert "This note is out, so its hold-back is fixed." in page
    [holdback] = lxml.html.fromstring(page).xpath('//input[@name="holdback_percent"]')
    assert holdback.get("readonly") is not None and holdback.get("value") == "5"
    before = audit(session)

    # Another share would tell some of the control group halfway through the experiment.
    form = editor_form(client, title=note.title, body_md=note.body_md, holdback_percent="10")
    response = client.post(f"/console/p/acme/notes/{note.id}", data=form)
    assert response.status_code == 422
    assert "The hold-back is fixed once the note is out; it stays at 5 %." in response.get_data(
        as_text=True
    )
    assert (stored(session, note.id), audit(session)) == (([], 5), before)

    form["holdback_percent"] = "5"
    form["support_topics"] = "export, billing"
    assert client.post(f"/console/p/acme/notes/{note.id}", data=form).status_code == 302
    assert stored(session, note.id) == (["export", "billing"], 5)
    assert audit(session)[-1] == (
        "note.updated",
        "“Export to CSV” (2.4.0): Edited support topics (export, billing)",
    )
    form["support_topics"] = ""
    assert client.post(f"/console/p/acme/notes/{note.id}", data=form).status_code == 302
    assert stored(session, note.id) == ([], 5)
    assert audit(session)[-1][1].endswith("Edited support topics (none)")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("holdback_percent", "51", "from 0 to 50 per cent"),
        ("holdback_percent", "-5", "from 0 to 50 per cent"),
        ("holdback_percent", "12.5", "from 0 to 50 per cent"),
        ("holdback_percent", "²", "from 0 to 50 per cent"),
        ("holdback_percent", "9" * 5000, "from 0 to 50 per cent"),
        ("support_topics", "export, bill!ng", "“bill!ng” is not a topic"),
        ("support_topics", ", ".join(f"t{n}" for n in range(21)), "at most 20 topics"),
    ],
    ids=["51", "negative", "fraction", "superscript", "5000 digits", "character", "21 topics"],
)
def test_a_bad_value_is_shown_beside_its_field_and_changes_nothing(
    client: FlaskClient, session: Session, product: Product, field: str, value: str, message: str
) -> None:
    note = make_note(session, product, version="2.4.0", title="Export to CSV", holdback_percent=5)
    before = audit(session)
    form = editor_form(client, title="Renamed", body_md=note.body_md, **{field: value})
    response = client.post(f"/console/p/acme/notes/{note.id}", data=form)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert f'id="{field}-error"' in page and message in page
    session.expire_all()
    assert (session.get_one(Note, note.id).title, stored(session, note.id)) == (
        "Export to CSV",
        ([], 5),
    )
    assert audit(session) == before


# The management API -----------------------------------------------------------------------


def test_the_api_writes_and_reads_topics_and_the_hold_back(
    client: FlaskClient, session: Session, product: Product, api: dict[str, str]
) -> None:
    body = {"version": "2.4.0", "title": "Export to CSV", "category": "Added"}
    plain = client.post(NOTES, headers=api, json=body)
    assert plain.status_code == 201
    assert (plain.json["support_topics"], plain.json["holdback_percent"]) == ([], 0)

    body = {**body, "title": "Billing", "support_topics": ["Billing", "INVOICES", "billing"]}
    created = client.post(NOTES, headers=api, json={**body, "holdback_percent": 20})
    assert created.status_code == 201, created.json
    assert created.json["support_topics"] == ["billing", "invoices"]
    assert created.json["holdback_percent"] == 20
    nid = created.json["id"]

    changed = client.patch(f"{NOTES}/{nid}", headers=api, json={"holdback_percent": 50})
    assert changed.status_code == 200
    assert (changed.json["support_topics"], changed.json["holdback_percent"]) == (
        ["billing", "invoices"],
        50,
    )
    read = client.get(f"{NOTES}/{nid}", headers=api).json
    assert (read["support_topics"], read["holdback_percent"]) == (["billing", "invoices"], 50)
    listed = client.get(NOTES, headers=api).json["notes"]
    assert {note["id"]: note["holdback_percent"] for note in listed} == {
        plain.json["id"]: 0,
        nid: 50,
    }
    cleared = client.patch(f"{NOTES}/{nid}", headers=api, json={"support_topics": []})
    assert cleared.json["support_topics"] == []
    summaries = [summary for action, summary in audit(session) if action.startswith("note.")]
    assert summaries[-3:] == [
        "“Billing” (2.4.0): Created as draft, holding back 20 %",
        "“Billing” (2.4.0): Edited hold-back (50 %)",
        "“Billing” (2.4.0): Edited support topics (none)",
    ]

    out = make_note(session, product, version="2.5.0", title="Out", holdback_percent=20)
    refused = client.patch(f"{NOTES}/{out.id}", headers=api, json={"holdback_percent": 0})
    assert refused.status_code == 422
    assert "fixed once the note is out" in refused.json["errors"]["holdback_percent"]
    assert stored(session, out.id) == ([], 20)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"holdback_percent": 51}, "holdback_percent"),
        ({"holdback_percent": -1}, "holdback_percent"),
        ({"holdback_percent": "20"}, "holdback_percent"),
        ({"holdback_percent": 2.5}, "holdback_percent"),
        ({"holdback_percent": True}, "holdback_percent"),
        ({"holdback_percent": None}, "holdback_percent"),
        ({"support_topics": "export"}, "support_topics"),
        ({"support_topics": [1]}, "support_topics"),
        ({"support_topics": [""]}, "support_topics"),
        ({"support_topics": ["x" * 41]}, "support_topics"),
        ({"support_topics": ["a|b", "exp/ort"]}, "support_topics"),
        ({"support_topics": [f"t{n}" for n in range(21)]}, "support_topics"),
        ({"support_topics": ["nul\x00"]}, "support_topics"),
        ({"support_topics": None}, "support_topics"),
    ],
)
def test_the_api_refuses_bad_values_with_422_naming_the_field_and_changes_nothing(
    client: FlaskClient,
    session: Session,
    product: Product,
    api: dict[str, str],
    change: dict[str, Any],
    field: str,
) -> None:
    note = make_note(
        session, product, title="Export to CSV", support_topics=["export"], holdback_percent=5
    )
    before = audit(session)
    patched = client.patch(f"{NOTES}/{note.id}", headers=api, json={"title": "New", **change})
    assert patched.status_code == 422, patched.json
    assert {name.split(".")[0] for name in patched.json["errors"]} == {field}
    assert patched.json["error"]
    assert stored(session, note.id) == (["export"], 5)
    assert session.get_one(Note, note.id).title == "Export to CSV"
    assert audit(session) == before

    body = {"version": "3.0.0", "title": "Another", "category": "Added", **change}
    if change[field] is not None:  # null is a PATCH's question; a create takes the default
        created = client.post(NOTES, headers=api, json=body)
        assert created.status_code == 422
        assert {name.split(".")[0] for name in created.json["errors"]} == {field}
        assert session.scalars(select(Note.id)).all() == [note.id]


def test_the_openapi_document_describes_the_new_fields(client: FlaskClient) -> None:
    schemas = client.get("/api/v1/openapi.json").json["components"]["schemas"]
    written = schemas["NoteCreate"]["properties"]
    assert written["holdback_percent"]["maximum"] == 50
    assert written["holdback_percent"]["minimum"] == 0
    assert written["support_topics"]["items"]["type"] == "string"
    assert {"support_topics", "holdback_percent"} <= set(schemas["Note"]["required"])
