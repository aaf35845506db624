"""Notices users must acknowledge: the rules (1 to 90 days, only with acknowledgement, never
with a hold-back) through the console editor and the management API; the note's Support
page counting who acknowledged against a count the test makes itself; the CSV of those who
have not, formula-safe and with the attributes an owner chooses; and who may see what. On
SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

import lxml.html
import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from announcements import apikeys, note_rules, notices, support_impact, targeting, versions
from announcements.models import (
    Acknowledgement,
    AuditEvent,
    EndUser,
    Escalation,
    HelpRequest,
    HelpShown,
    Note,
    Product,
    Role,
    utcnow,
)
from announcements.note_rules import NoteInput
from tests.conftest import AuthActions, csrf_token
from tests.factories import add_member, make_end_user, make_member, make_note, make_product

NOTES = "/api/v1/products/acme/notes"


@pytest.fixture
def owner(session: Session) -> Any:
    return make_member(session, "owner@example.com")


@pytest.fixture
def product(session: Session, owner: Any, auth: AuthActions) -> Product:
    made = make_product(session, owner=owner, slug="acme", name="Acme")
    auth.login(owner.email)
    return made


@pytest.fixture
def api(session: Session, product: Product) -> dict[str, str]:
    _, raw = apikeys.create(
        session, product, "ci", ["notes:read", "notes:write"], by=None, now=utcnow()
    )
    return {"Authorization": f"Bearer {raw}"}


def stored(session: Session, note_id: int) -> tuple[bool, int | None, int]:
    session.expire_all()
    note = session.get_one(Note, note_id)
    return note.requires_acknowledgement, note.escalate_after_days, note.holdback_percent


# The rules ----------------------------------------------------------------------------------


def _problems(**fields: Any) -> dict[str, str]:
    data = NoteInput(version="2.0.0", title="Terms", category="Changed", **fields)
    return note_rules.problems(data, now=utcnow())


def test_a_notice_may_be_escalated_after_1_to_90_days() -> None:
    for days in (None, 1, 30, 90):
        assert _problems(requires_acknowledgement=True, escalate_after_days=days) == {}
    for days in (0, 91, -3, True, 7.5, "7"):
        assert _problems(requires_acknowledgement=True, escalate_after_days=days) == {
            "escalate_after_days": note_rules.ESCALATION_RULE
        }


def test_only_a_notice_is_escalated_and_a_notice_holds_nobody_back() -> None:
    assert "“Requires acknowledgement”" in _problems(escalate_after_days=7)["escalate_after_days"]
    assert _problems(requires_acknowledgement=True, holdback_percent=10) == {
        "requires_acknowledgement": "A notice users must acknowledge holds nobody back: set the "
        "hold-back to 0 first. Users who must not miss it can't be kept from it as a control "
        "group."
    }
    assert _problems(holdback_percent=10, escalate_after_days=None) == {}


# The console editor --------------------------------------------------------------------------


def editor_form(client: FlaskClient, **overrides: str) -> dict[str, str]:
    form = {
        "csrf_token": csrf_token(client),
        "version": "2.4.0",
        "title": "New terms of service",
        "category": "Changed",
        "body_md": "Please read them.",
        "support_topics": "",
        "holdback_percent": "0",
        "escalate_after_days": "",
        "intent": "save",
    }
    form.update(overrides)
    return form


def _field_error(page: str, name: str) -> str:
    errors = lxml.html.fromstring(page).xpath(f'//p[@id="{name}-error"]')
    return errors[0].text_content() if errors else ""


def test_the_editor_writes_a_notice_and_shows_it_again(
    client: FlaskClient, session: Session, product: Product
) -> None:
    form = editor_form(client, requires_acknowledgement="y", escalate_after_days=" 7 ")
    response = client.post("/console/p/acme/notes/new", data=form)
    assert response.status_code == 302
    note = session.scalar(select(Note))
    assert note is not None
    assert stored(session, note.id) == (True, 7, 0)
    audit = session.scalars(select(AuditEvent.summary).order_by(AuditEvent.id.desc())).first()
    assert audit == (
        "“New terms of service” (2.4.0): Created as draft, acknowledgement (required, "
        "e-mailed after 7 days)"
    )

    page = lxml.html.fromstring(client.get(f"/console/p/acme/notes/{note.id}").get_data())
    [box] = page.xpath('//input[@name="requires_acknowledgement"]')
    [days] = page.xpath('//input[@name="escalate_after_days"]')
    assert box.get("checked") is not None and days.get("value") == "7"

    # Unticked, the escalation must go too.
    form = editor_form(client, title=note.title, body_md=note.body_md, escalate_after_days="7")
    response = client.post(f"/console/p/acme/notes/{note.id}", data=form)
    assert response.status_code == 422
    assert "tick “Requires acknowledgement”" in _field_error(
        response.get_data(as_text=True), "escalate_after_days"
    )
    form["escalate_after_days"] = ""
    assert client.post(f"/console/p/acme/notes/{note.id}", data=form).status_code == 302
    assert stored(session, note.id) == (False, None, 0)


@pytest.mark.parametrize(
    ("fields", "name", "words"),
    [
        ({"escalate_after_days": "0"}, "escalate_after_days", note_rules.ESCALATION_RULE),
        ({"escalate_after_days": "91"}, "escalate_after_days", note_rules.ESCALATION_RULE),
        ({"escalate_after_days": "seven"}, "escalate_after_days", note_rules.ESCALATION_RULE),
        ({"escalate_after_days": "²"}, "escalate_after_days", note_rules.ESCALATION_RULE),
        ({"holdback_percent": "10"}, "requires_acknowledgement", "holds nobody back"),
    ],
)
def test_the_editor_refuses_a_notice_outside_the_rules_beside_its_field(
    client: FlaskClient,
    session: Session,
    product: Product,
    fields: dict[str, str],
    name: str,
    words: str,
) -> None:
    form = editor_form(client, requires_acknowledgement="y", **fields)
    response = client.post("/console/p/acme/notes/new", data=form)
    assert response.status_code == 422
    assert words in _field_error(response.get_data(as_text=True), name)
    assert session.scalar(select(Note)) is None


# The management API ---------------------------------------------------------------------------


def test_the_api_writes_and_reads_a_notice(
    client: FlaskClient, session: Session, api: dict[str, str]
) -> None:
    body = {"version": "2.4.0", "title": "Terms", "category": "Changed"}
    created = client.post(
        NOTES,
        json={**body, "requires_acknowledgement": True, "escalate_after_days": 14},
        headers=api,
    )
    assert created.status_code == 201
    answer = created.get_json()
    assert (answer["requires_acknowledgement"], answer["escalate_after_days"]) == (True, 14)
    url = f"{NOTES}/{answer['id']}"
    assert client.get(url, headers=api).get_json()["escalate_after_days"] == 14

    # null clears the escalation; the acknowledgement itself cannot be null.
    assert client.patch(url, json={"escalate_after_days": None}, headers=api).status_code == 200
    assert stored(session, answer["id"]) == (True, None, 0)
    refused = client.patch(url, json={"requires_acknowledgement": None}, headers=api)
    assert refused.status_code == 422
    assert refused.get_json()["errors"] == {
        "requires_acknowledgement": "This field cannot be null."
    }
    plain = client.post(NOTES, json={**body, "title": "Plain"}, headers=api).get_json()
    assert (plain["requires_acknowledgement"], plain["escalate_after_days"]) == (False, None)


@pytest.mark.parametrize(
    ("fields", "name", "words"),
    [
        ({"requires_acknowledgement": True, "escalate_after_days": 0}, "escalate_after_days", "1"),
        (
            {"requires_acknowledgement": True, "escalate_after_days": 91},
            "escalate_after_days",
            "90",
        ),
        ({"requires_acknowledgement": True, "escalate_after_days": "7"}, "escalate_after_days", ""),
        ({"escalate_after_days": 7}, "escalate_after_days", "Requires acknowledgement"),
        ({"requires_acknowledgement": "yes"}, "requires_acknowledgement", ""),
        (
            {"requires_acknowledgement": True, "holdback_percent": 10},
            "requires_acknowledgement",
            "holds nobody back",
        ),
    ],
)
def test_the_api_refuses_a_notice_outside_the_rules_naming_the_field(
    client: FlaskClient,
    session: Session,
    api: dict[str, str],
    fields: dict[str, Any],
    name: str,
    words: str,
) -> None:
    body = {"version": "2.4.0", "title": "Terms", "category": "Changed", **fields}
    response = client.post(NOTES, json=body, headers=api)
    assert response.status_code == 422
    assert words in response.get_json()["errors"][name]
    assert session.scalar(select(Note)) is None


def test_a_patch_that_would_make_a_held_back_note_a_notice_is_refused(
    client: FlaskClient, session: Session, product: Product, api: dict[str, str]
) -> None:
    note = make_note(session, product, holdback_percent=5)
    response = client.patch(
        f"{NOTES}/{note.id}", json={"requires_acknowledgement": True}, headers=api
    )
    assert response.status_code == 422
    assert "holds nobody back" in response.get_json()["errors"]["requires_acknowledgement"]
    assert stored(session, note.id) == (False, None, 5)


# Who has acknowledged -------------------------------------------------------------------------

# (external id, app version, attributes, seen since publication, acknowledged)
PEOPLE = [
    ("ann", "2.4.0", {"plan": "pro"}, True, True),
    ("bob", "2.5.1", {"plan": "pro", "team": "=HYPERLINK(1)"}, True, False),
    ("cy", None, {"plan": "pro"}, True, False),
    ("dee", "2.3.9", {"plan": "pro"}, True, False),  # an older version: never shown it
    ("eve", "2.4.0", {"plan": "free"}, True, False),  # outside the audience
    ("fay", "2.4.0", {"plan": "pro"}, False, False),  # not seen since it went out
    ("-gus", "3.0.0", {"plan": "pro", "team": "+ops"}, True, False),
    # Acknowledged, but outside the audience now: neither exposed nor acknowledged.
    ("hal", "2.4.0", {"plan": "free"}, True, True),
    ("ivy", "2.6.0", {}, True, False),  # no plan: outside the audience
]
AUDIENCE = {"match": "all", "conditions": [{"attribute": "plan", "op": "eq", "value": "pro"}]}


def _world(session: Session, product: Product) -> Note:
    now = utcnow()
    note = make_note(
        session,
        product,
        version="2.4.0",
        title="New terms",
        audience=AUDIENCE,
        requires_acknowledgement=True,
        escalate_after_days=7,
        now=now - timedelta(days=10),
    )
    for external_id, version, attributes, seen, acknowledged in PEOPLE:
        user = make_end_user(
            session,
            product,
            external_id,
            app_version=version,
            attributes=attributes,
            first_seen_at=now - timedelta(days=30),
            last_seen_at=now - timedelta(days=1 if seen else 20),
        )
        if acknowledged:
            session.add(Acknowledgement(note_id=note.id, end_user_id=user.id, acknowledged_at=now))
    other = make_note(session, product, title="Other", requires_acknowledgement=True)
    session.add(
        Acknowledgement(note_id=other.id, end_user_id=user.id, acknowledged_at=now)
    )  # another note's acknowledgement counts for nothing here
    session.commit()
    return note


def _expected(note: Note) -> dict[str, set[str]]:
    """Who should count, worked out from PEOPLE without the code under test's queries."""
    shown = {
        external_id
        for external_id, version, attributes, seen, _ in PEOPLE
        if seen
        and (version is None or versions.parse(version) >= versions.parse(note.version))
        and targeting.matches(note.audience, attributes)
    }
    acknowledged = {p[0] for p in PEOPLE if p[4]} & shown
    return {"acknowledged": acknowledged, "not_yet": shown - acknowledged}


def test_the_counts_match_a_count_made_from_the_data(session: Session, product: Product) -> None:
    note = _world(session, product)
    expected = _expected(note)
    # The test's own data, read by hand: hal acknowledged, but is outside the audience.
    assert expected == {"acknowledged": {"ann"}, "not_yet": {"bob", "cy", "-gus"}}
    assert notices.count(session, note, now=utcnow()) == notices.Acknowledgements(
        exposed=len(expected["acknowledged"]) + len(expected["not_yet"]),
        acknowledged=len(expected["acknowledged"]),
        not_yet=len(expected["not_yet"]),
    )
    # Without an audience, the count is made in SQL: everyone on a recent version.
    note.audience = None
    session.commit()
    assert notices.count(session, note, now=utcnow()) == notices.Acknowledgements(
        exposed=7,
        acknowledged=2,
        not_yet=5,  # ann hal; bob cy eve -gus ivy
    )
    assert notices.count(session, note, now=note.published_at - timedelta(seconds=1)) is None


def test_the_roll_up_stores_the_counts_the_page_shows_with_their_time(
    client: FlaskClient, session: Session, product: Product
) -> None:
    note = _world(session, product)
    page = client.get(f"/console/p/acme/support/impact/notes/{note.id}").get_data(as_text=True)
    assert "Not counted yet" in page and 'data-count="not_yet"' not in page
    counted_at = utcnow() - timedelta(minutes=5)
    support_impact.refresh(session, product, now=counted_at)
    figures = support_impact.note_figures(session, note)
    assert figures is not None
    assert figures["acknowledgement"] == {"exposed": 4, "acknowledged": 1, "not_yet": 3}
    # A later acknowledgement shows at the next count, not on the next view.
    bob = session.scalar(select(EndUser).where(EndUser.external_id == "bob"))
    assert bob is not None
    session.add(Acknowledgement(note_id=note.id, end_user_id=bob.id))
    session.commit()
    page = lxml.html.fromstring(
        client.get(f"/console/p/acme/support/impact/notes/{note.id}").get_data()
    )
    assert page.xpath('string(//dd[@data-count="acknowledged"])').strip() == "1"
    said = page.xpath('string(//p[contains(@class, "counted-at")])')
    assert said.startswith(f"Counted {counted_at:%d %b %Y}")
    assert f"{counted_at:%H:%M}" in said


def test_the_support_page_shows_the_acknowledgement_and_the_help_counts(
    client: FlaskClient, session: Session, product: Product
) -> None:
    note = _world(session, product)
    support_impact.refresh(session, product, now=utcnow())
    ann = session.scalar(select(EndUser).where(EndUser.external_id == "ann"))
    assert ann is not None
    session.add(Escalation(note_id=note.id, end_user_id=ann.id, subscriber_id=None))
    for number, outcome in enumerate(["answered", "needs_help", "needs_help", None]):
        request = HelpRequest(
            product_id=product.id,
            token=f"token-{number}",
            query="terms",
            outcome=outcome,
            answered_note_id=note.id if outcome == "answered" else None,
        )
        session.add(request)
        session.flush()
        session.add(HelpShown(help_request_id=request.id, note_id=note.id, position=0))
    session.commit()

    response = client.get(f"/console/p/acme/support/impact/notes/{note.id}")
    assert response.status_code == 200
    page = lxml.html.fromstring(response.get_data())
    counts = {
        dd.get("data-count"): dd.text_content().strip() for dd in page.xpath("//dd[@data-count]")
    }
    assert counts == {
        "acknowledged": "1",
        "not_yet": "3",
        "exposed": "4",
        "escalated": "1",
        "shown": "4",
        "answered": "1",
        "needs_help": "2",
    }
    [row] = page.xpath('//table[contains(@class, "escalated")]/tbody/tr')
    assert row.xpath("th")[0].text_content() == "ann"
    assert "subscriber removed" in row.text_content()
    names = page.xpath('//input[@name="attribute"]/@value')
    assert names == ["plan", "team"]


def test_a_note_that_is_no_notice_shows_no_acknowledgement(
    client: FlaskClient, session: Session, product: Product
) -> None:
    note = make_note(session, product)
    page = client.get(f"/console/p/acme/support/impact/notes/{note.id}").get_data(as_text=True)
    assert 'id="acknowledgements"' not in page
    assert "Before contacting support" in page


# The export ---------------------------------------------------------------------------------


def _export(client: FlaskClient, note: Note, *attributes: str) -> Any:
    query = "&".join(f"attribute={name}" for name in attributes)
    return client.get(f"/console/p/acme/support/impact/notes/{note.id}/unacknowledged.csv?{query}")


def test_the_export_lists_who_has_not_acknowledged_formula_safe(
    client: FlaskClient, session: Session, product: Product
) -> None:
    note = _world(session, product)
    response = _export(client, note, "team", "plan", "team")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows == [
        ["external_id", "team", "plan"],
        ["'-gus", "'+ops", "pro"],
        ["bob", "'=HYPERLINK(1)", "pro"],
        ["cy", "", "pro"],
    ]
    assert [row[0].lstrip("'") for row in rows[1:]] == sorted(_expected(note)["not_yet"])
    # The audit event was committed before the file went out.
    session.rollback()
    audit = session.scalars(select(AuditEvent.action).order_by(AuditEvent.id.desc())).first()
    assert audit == "note.unacknowledged_exported"

    only_ids = list(csv.reader(io.StringIO(_export(client, note).get_data(as_text=True))))
    assert only_ids[0] == ["external_id"] and len(only_ids) == 4


@pytest.mark.parametrize("attribute", ["=cmd", "a b", "x" * 65])
def test_an_attribute_that_is_no_name_is_refused_with_a_message(
    client: FlaskClient, session: Session, product: Product, attribute: str
) -> None:
    note = _world(session, product)
    response = _export(client, note, attribute)
    assert response.status_code == 302
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "is not an attribute name" in page


def test_a_note_that_asks_nobody_or_is_not_out_has_no_export(
    client: FlaskClient, session: Session, product: Product
) -> None:
    for note, words in (
        (make_note(session, product, title="News"), "This note asks nobody to acknowledge it."),
        (
            make_note(session, product, status="scheduled", requires_acknowledgement=True),
            "The note has not gone out",
        ),
    ):
        response = _export(client, note)
        assert response.status_code == 302
        assert words in client.get(response.headers["Location"]).get_data(as_text=True)
    assert session.scalar(select(AuditEvent.action).order_by(AuditEvent.id.desc())) != (
        "note.unacknowledged_exported"
    )


@pytest.mark.parametrize("role", [Role.EDITOR, Role.VIEWER])
def test_only_owners_export_while_everyone_sees_the_counts(
    client: FlaskClient, auth: AuthActions, session: Session, product: Product, role: Role
) -> None:
    note = _world(session, product)
    support_impact.refresh(session, product, now=utcnow())
    member = add_member(session, product, role)
    auth.logout()
    auth.login(member.email)
    assert _export(client, note, "plan").status_code == 403
    page = client.get(f"/console/p/acme/support/impact/notes/{note.id}").get_data(as_text=True)
    assert 'data-count="not_yet"' in page
    assert "unacknowledged.csv" not in page
    assert "Owners can download the list" in page


def test_another_products_note_is_not_found(
    client: FlaskClient, session: Session, product: Product
) -> None:
    other = make_product(session, slug="other")
    note = make_note(session, other, requires_acknowledgement=True)
    assert _export(client, note).status_code == 404
    assert client.get(f"/console/p/acme/support/impact/notes/{note.id}").status_code == 404


def test_the_export_quotes_every_cell_against_a_semicolon_separator(
    client: FlaskClient, session: Session, product: Product
) -> None:
    """In a locale whose separator is ";", an unquoted ``x;=cmd|...`` would be two cells,
    the second a formula; quoted, it stays one cell of text."""
    note = _world(session, product)
    bob = session.scalar(select(EndUser).where(EndUser.external_id == "bob"))
    assert bob is not None
    bob.attributes = {"plan": "pro", "team": "x;=cmd|' /C calc'!A0"}
    session.commit()
    text = _export(client, note, "team").get_data(as_text=True)
    assert '"bob","x;=cmd|\' /C calc\'!A0"\r\n' in text
    assert text.startswith('"external_id","team"\r\n')
    cells = [cell for line in text.splitlines() for cell in split_as_semicolon_locale(line)]
    assert any("x;=cmd" in cell for cell in cells)
    assert not any(cell.startswith("=") for cell in cells)


def split_as_semicolon_locale(line: str) -> list[str]:
    """A CSV line's cells as a spreadsheet set to ";" reads them: a quote opens or closes
    a quoted stretch, in which ";" is text; the quotes themselves are not kept."""
    cells, cell, quoted = [], "", False
    for char in line:
        if char == '"':
            quoted = not quoted
        elif char == ";" and not quoted:
            cells.append(cell)
            cell = ""
        else:
            cell += char
    return [*cells, cell]


def _help_request(
    session: Session, product: Product, note: Note, query: str, outcome: str | None, hours: int
) -> None:
    request = HelpRequest(
        product_id=product.id,
        token=f"token-{query[:20]}-{hours}",
        query=query,
        outcome=outcome,
        answered_note_id=note.id if outcome == "answered" else None,
        created_at=utcnow() - timedelta(hours=hours),
    )
    session.add(request)
    session.flush()
    session.add(HelpShown(help_request_id=request.id, note_id=note.id, position=0))
    session.commit()


def test_owners_see_what_users_typed_when_help_showed_the_note(
    client: FlaskClient, auth: AuthActions, session: Session, product: Product
) -> None:
    note = make_note(session, product, title="Export fixed")
    other = make_note(session, product, title="Other")
    _help_request(session, product, note, "<b>export</b> is empty", "answered", 1)
    _help_request(session, product, note, "csv broken", "needs_help", 2)
    _help_request(session, product, note, "closed it", None, 3)
    for hour in range(4, 25):
        _help_request(session, product, note, f"older {hour}", None, hour)
    _help_request(session, product, other, "not this note", "answered", 0)

    page = lxml.html.fromstring(
        client.get(f"/console/p/acme/support/impact/notes/{note.id}").get_data()
    )
    rows = page.xpath('//table[contains(@class, "help-queries")]/tbody/tr')
    assert len(rows) == 20
    said = [[cell.text_content() for cell in row[:2]] for row in rows[:3]]
    assert said == [
        ["<b>export</b> is empty", "This note answered it"],  # as typed: text, not markup
        ["csv broken", "Still needed help"],
        ["closed it", "Closed it"],
    ]
    assert rows[-1][0].text_content() == "older 20"
    assert not page.xpath('//table[contains(@class, "help-queries")]//b')

    editor = add_member(session, product, Role.EDITOR)
    auth.logout()
    auth.login(editor.email)
    html = client.get(f"/console/p/acme/support/impact/notes/{note.id}").get_data(as_text=True)
    assert "help-queries" not in html and "csv broken" not in html
    assert "Owners see what users typed" in html
