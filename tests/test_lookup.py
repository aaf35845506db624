"""Support → Look up and the API's end user: one user found by id or address, every note
their widget lists with what they did with it, their tickets; never another product's."""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

import lxml.html
import pytest
from sqlalchemy import delete, event

from announcements import apikeys, lookup, sidebar_links, tickets
from announcements.errors import ValidationFailed
from announcements.models import (
    Acknowledgement,
    AgentSend,
    ApiScope,
    EndUser,
    HelpRequest,
    HelpShown,
    Note,
    Product,
    Reaction,
    ReadReceipt,
    Role,
    Subscriber,
    SubscriberStatus,
    Ticket,
    utcnow,
)
from tests.factories import add_member, make_end_user, make_note, make_product

SECRET_KEY = "test-secret"  # noqa: S105 - the test app's, as conftest sets it
PRO = {"match": "all", "conditions": [{"attribute": "plan", "op": "in", "value": ["pro"]}]}
TEAM = {"match": "all", "conditions": [{"attribute": "plan", "op": "in", "value": ["team"]}]}


@dataclass
class World:
    product: Product
    other: Product
    ana: EndUser
    notes: dict[str, Note]
    now: datetime


@pytest.fixture
def world(session) -> World:
    """Ana, on 1.5.0 with the pro plan, first seen 30 days ago, who read, reacted,
    acknowledged, was sent a note, asked for help and wrote in; and notes her widget does
    not list: a newer version's, another audience's, a draft, an internal and an archived
    one. And another product with a user who has her address."""
    now = utcnow()
    product = make_product(session, slug="acme", name="Acme")
    other = make_product(session, slug="globex", name="Globex")
    days = lambda n: now - timedelta(days=n)  # noqa: E731 - a short alias for the table below
    notes = {
        "ancient": make_note(session, product, version="0.9.0", title="Ancient", now=days(50)),
        "old": make_note(session, product, version="1.0.0", title="Export moved", now=days(40)),
        "ack": make_note(session, product, version="1.1.0", title="New terms", now=days(20)),
        "pro": make_note(
            session, product, version="1.1.0", title="Pro reports", audience=PRO, now=days(19)
        ),
        "team": make_note(
            session, product, version="1.1.0", title="Team seats", audience=TEAM, now=days(18)
        ),
        "newer": make_note(session, product, version="2.0.0", title="Two", now=days(2)),
        "draft": make_note(session, product, version="1.0.0", title="Draft", status="draft"),
        "internal": make_note(
            session, product, version="1.0.0", title="Internal", is_internal=True, now=days(5)
        ),
        "archived": make_note(
            session, product, version="1.0.0", title="Archived", status="archived", now=days(5)
        ),
    }
    notes["ack"].requires_acknowledgement = True
    session.commit()
    ana = make_end_user(
        session,
        product,
        "ana-1",
        app_version="1.5.0",
        locale="pt-BR",
        attributes={"plan": "pro"},
        email_key=tickets.email_key(SECRET_KEY, "ana@example.com"),
        first_seen_at=days(30),
        last_seen_at=days(1),
    )
    bob = make_end_user(session, product, "bob-2", app_version="1.5.0")
    make_end_user(
        session, other, "ana-at-globex", email_key=tickets.email_key(SECRET_KEY, "ana@example.com")
    )
    session.add_all(
        [
            ReadReceipt(
                end_user_id=ana.id, note_id=notes["old"].id, read_at=days(9), channel="popup"
            ),
            ReadReceipt(
                end_user_id=ana.id, note_id=notes["ack"].id, read_at=days(8), channel="widget"
            ),
            Reaction(
                end_user_id=ana.id,
                note_id=notes["old"].id,
                reaction="😕",
                comment="Where did export go?",
            ),
            Acknowledgement(end_user_id=ana.id, note_id=notes["ack"].id, acknowledged_at=days(8)),
            AgentSend(
                product_id=product.id,
                note_id=notes["pro"].id,
                end_user_id=ana.id,
                agent="Dana",
                via="console",
                sent_at=days(3),
                emailed=True,
            ),
            Subscriber(
                product_id=product.id,
                email="ana@example.com",
                status=SubscriberStatus.CONFIRMED,
                end_user_id=ana.id,
            ),
        ]
    )
    answered = HelpRequest(
        product_id=product.id,
        token="t1",
        end_user_id=ana.id,
        query="export",
        outcome="answered",
        answered_note_id=notes["old"].id,
        created_at=days(7),
    )
    needs_help = HelpRequest(
        product_id=product.id,
        token="t2",
        end_user_id=ana.id,
        query="reports",
        outcome="needs_help",
        created_at=days(6),
    )
    session.add_all([answered, needs_help])
    session.flush()
    session.add_all(
        [
            HelpShown(help_request_id=answered.id, note_id=notes["old"].id, position=0),
            HelpShown(help_request_id=answered.id, note_id=notes["pro"].id, position=1),
            HelpShown(help_request_id=needs_help.id, note_id=notes["pro"].id, position=0),
        ]
    )
    for number, (user, created) in enumerate([(ana, days(6)), (ana, days(2)), (bob, days(1))]):
        session.add(
            Ticket(
                product_id=product.id,
                source="zendesk",
                external_id=f"T{number}",
                created_at=created,
                end_user_id=user.id,
                tags=["export"],
                subject=f"Ticket {number}",
            )
        )
    session.commit()
    return World(product, other, ana, notes, now)


def test_find_by_external_id_or_by_the_address_hash(session, world) -> None:
    found = lookup.find(session, world.product, "  ana-1 ", secret_key=SECRET_KEY)
    assert found is not None and found.id == world.ana.id
    by_address = lookup.find(session, world.product, "Ana@Example.com", secret_key=SECRET_KEY)
    assert by_address is not None and by_address.id == world.ana.id
    # The same address in another product finds that product's user, never Ana.
    there = lookup.find(session, world.other, "ana@example.com", secret_key=SECRET_KEY)
    assert there is not None and there.external_id == "ana-at-globex"
    assert lookup.find(session, world.other, "ana-1", secret_key=SECRET_KEY) is None
    # Another key makes another hash: the address alone finds nobody.
    assert lookup.find(session, world.product, "ana@example.com", secret_key="other") is None
    assert lookup.find(session, world.product, "nobody", secret_key=SECRET_KEY) is None


def test_an_id_that_copies_an_address_does_not_shadow_its_user(session, world) -> None:
    # In a product without identity verification anyone can be "ana@example.com".
    shadow = make_end_user(session, world.product, "ana@example.com")
    found = lookup.match(session, world.product, "ana@example.com", secret_key=SECRET_KEY)
    assert found is not None and (found.user.id, found.by) == (world.ana.id, lookup.BY_ADDRESS)
    # Where no host signed the address, the id is all there is, and it says so.
    world.ana.email_key = None
    session.commit()
    found = lookup.match(session, world.product, "ana@example.com", secret_key=SECRET_KEY)
    assert found is not None and (found.user.id, found.by) == (shadow.id, lookup.BY_ID)
    found = lookup.match(session, world.product, "ana-1", secret_key=SECRET_KEY)
    assert found is not None and (found.user.id, found.by) == (world.ana.id, lookup.BY_ID)


@pytest.mark.parametrize("bad", ["", "   ", "x" * 256, "ana\x00"])
def test_what_can_be_neither_an_id_nor_an_address_is_refused(session, world, bad) -> None:
    with pytest.raises(ValidationFailed) as refused:
        lookup.find(session, world.product, bad, secret_key=SECRET_KEY)
    assert "q" in refused.value.errors


def test_the_profile_lists_the_notes_her_widget_lists_with_what_she_did(
    client, session, world
) -> None:
    notes = world.notes
    profile = lookup.profile(session, world.product, world.ana, now=utcnow())
    listed = [record.id for record in profile.notes]
    assert listed == [notes[name].id for name in ("pro", "ack", "old", "ancient")]
    # The same list as her widget's, in the same order.
    user_hash = hmac.new(
        world.product.identity_secret.encode(), b"ana-1", hashlib.sha256
    ).hexdigest()
    widget = client.get(
        f"/api/v1/widget/{world.product.widget_key}/notes",
        query_string={
            "user_id": "ana-1",
            "user_hash": user_hash,
            "version": "1.5.0",
            "attr.plan": "pro",
            "limit": 50,
        },
    ).get_json()
    assert [note["id"] for note in widget["notes"]] == listed

    by_id = {record.id: record for record in profile.notes}
    old, ack, pro, ancient = (by_id[notes[n].id] for n in ("old", "ack", "pro", "ancient"))
    assert (old.read, old.channel, old.shown_as_popup) == (True, "popup", True)
    assert (old.reaction, old.comment) == ("😕", "Where did export go?")
    assert (old.help_shown, old.help_answered) == (1, True)
    assert not old.requires_acknowledgement and old.acknowledged_at is None
    assert ack.requires_acknowledgement and ack.acknowledged_at is not None
    assert (ack.read, ack.shown_as_popup) == (True, False)
    assert (pro.read, pro.pinned, pro.help_shown, pro.help_answered) == (False, True, 2, False)
    assert [(s.agent, s.via, s.emailed, s.read_at) for s in pro.sends] == [
        ("Dana", "console", True, None)
    ]
    # Out before her first visit, behind a newer release: the widget counts it as seen.
    assert (ancient.read, ancient.graced) == (False, True)
    assert not old.graced
    assert profile.subscriber_status is SubscriberStatus.CONFIRMED
    assert [t.external_id for t in profile.tickets] == ["T1", "T0"]
    assert profile.attributes == {"plan": "pro"}


def test_the_profile_reads_the_notes_once_from_the_catalogue(session, world) -> None:
    statements: list[str] = []

    def seen(_conn, _cursor, statement, *_args) -> None:
        statements.append(statement)

    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", seen)
    try:
        profile = lookup.profile(session, world.product, world.ana, now=utcnow())
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert [n.requires_acknowledgement for n in profile.notes] == [False, True, False, False]
    # Which notes need acknowledging is in the catalogue: no query of its own.
    reading_notes = [s for s in statements if re.search(r"\bFROM note\b(?!_)", s)]
    assert len(reading_notes) == 1, reading_notes


def _page(client, path: str, status: int = 200) -> lxml.html.HtmlElement:
    answer = client.get(path)
    assert answer.status_code == status, answer.get_data(as_text=True)[:500]
    return lxml.html.fromstring(answer.get_data(as_text=True))


def _text(node) -> str:
    """The node's words, a space between elements (a term and its definition)."""
    return " ".join(" ".join(node.itertext()).split())


def test_any_role_finds_a_user_by_id_or_address(client, auth, session, world) -> None:
    auth.login(add_member(session, world.product, Role.VIEWER).email)
    user_page = f"/console/p/acme/support/users/{world.ana.id}"
    for query, by in (("ana-1", "id"), ("ANA@example.com", "address")):
        answer = client.get("/console/p/acme/support/lookup", query_string={"q": query})
        assert answer.status_code == 302
        assert answer.headers["Location"] == f"{user_page}?by={by}"
    found = _text(_page(client, f"{user_page}?by=address").find_class("found-by")[0])
    assert found == "Found by the address your app signed for them"
    assert "Found by their id" in _text(_page(client, f"{user_page}?by=id"))
    assert not _page(client, f"{user_page}?by=magic").find_class("found-by")
    page = _page(client, "/console/p/acme/support/lookup?q=nobody")
    assert "No user of Acme has the id or address “nobody”" in _text(page)


@pytest.mark.parametrize(
    ("query", "message"),
    [("", "Enter the user's id"), ("x" * 300, "at most 255 characters")],
)
def test_a_search_that_cannot_match_says_why(client, auth, session, world, query, message) -> None:
    auth.login(add_member(session, world.product, Role.VIEWER).email)
    page = _page(client, f"/console/p/acme/support/lookup?q={query}", 422)
    error = page.get_element_by_id("q-error")
    assert message in _text(error)
    assert page.get_element_by_id("q").get("aria-invalid") == "true"


def test_the_user_page_shows_what_she_was_told_and_did(client, auth, session, world) -> None:
    auth.login(add_member(session, world.product, Role.VIEWER).email)
    page = _page(client, f"/console/p/acme/support/users/{world.ana.id}")
    facts = _text(page.find_class("user-facts")[0])
    for fact in ("1.5.0", "pt-BR", "plan pro", "Confirmed subscriber", "First seen", "Last seen"):
        assert fact in facts
    notes = page.find_class("user-note")
    assert [_text(n.find_class("un-title")[0]) for n in notes] == [
        "New Pro reports",
        "New New terms",
        "New Export moved",
        "New Ancient",
    ]
    pro, ack, old, ancient = (_text(note) for note in notes)
    assert "Pinned by an agent" in pro and "by Dana (console)" in pro and "e-mailed" in pro
    assert "not read yet" in pro and "Shown before contacting support 2 times" in pro
    assert "Must acknowledge" in ack and re.search(r"Acknowledged \d\d \w{3} \d{4}", ack)
    assert "in a popup" in old and "😕 Confusing" in old and "Where did export go?" in old
    assert "it answered their question" in old
    assert "Read Counted as seen: out before their first visit" in ancient
    # Each note can be sent, with the form's CSRF token.
    forms = page.find_class("un-send")
    assert len(forms) == 4
    assert all(form.xpath(".//input[@name='csrf_token']/@value") for form in forms)
    tickets_text = _text(page.find_class("user-tickets")[0])
    assert "Ticket 1" in tickets_text and "Ticket 0" in tickets_text
    assert "Ticket 2" not in tickets_text  # Bob's
    assert tickets_text.index("Ticket 1") < tickets_text.index("Ticket 0")


def test_the_user_page_and_the_sidebar_say_the_same_things(client, auth, session, world) -> None:
    auth.login(add_member(session, world.product, Role.VIEWER).email)

    def both() -> tuple[str, str]:
        console = _text(_page(client, f"/console/p/acme/support/users/{world.ana.id}"))
        params = sidebar_links.sign(world.product, "ana-1", now=utcnow())
        sidebar = _text(
            _page(client, "/support/sidebar?" + "&".join(f"{k}={v}" for k, v in params.items()))
        )
        return console, sidebar

    shared = [
        lookup.CHANNEL_LABELS["popup"],
        "Counted as seen: out before their first visit",
        "Confirmed subscriber",
        "Shown before contacting support 1 time; it answered their question",
        "Shown before contacting support 2 times",
        "Pinned by an agent",
        "Acknowledged",
    ]
    for page in both():
        missing = [phrase for phrase in shared if phrase not in page]
        assert not missing, missing
        assert "Not acknowledged yet" not in page
    session.execute(delete(Acknowledgement))
    session.execute(delete(Subscriber))
    session.commit()
    for page in both():
        assert "Not acknowledged yet" in page and "No linked subscriber" in page


def test_an_agent_of_another_product_cannot_reach_her(client, auth, session, world) -> None:
    outsider = add_member(session, world.other, Role.OWNER)
    auth.login(outsider.email)
    _page(client, f"/console/p/globex/support/users/{world.ana.id}", 404)
    answer = client.get("/console/p/globex/support/lookup?q=ana-1")
    assert answer.status_code == 200 and "No user of Globex" in answer.get_data(as_text=True)
    # Nor through Acme's address, which is not their product.
    _page(client, f"/console/p/acme/support/users/{world.ana.id}", 404)
    _page(client, "/console/p/acme/support/lookup?q=ana-1", 404)


def _key(session, product: Product, scopes: list[str]) -> dict[str, str]:
    _, raw = apikeys.create(session, product, "support", scopes, by=None, now=utcnow())
    session.commit()
    return {"Authorization": f"Bearer {raw}"}


def test_the_api_answers_the_profile_with_support_read(client, session, world) -> None:
    headers = _key(session, world.product, [ApiScope.SUPPORT_READ.value])
    answer = client.get("/api/v1/products/acme/end-users/ana-1", headers=headers)
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["external_id"] == "ana-1"
    assert (body["app_version"], body["locale"], body["attributes"]) == (
        "1.5.0",
        "pt-BR",
        {"plan": "pro"},
    )
    assert body["subscriber_status"] == "confirmed"
    titles = [note["title"] for note in body["notes"]]
    assert titles == ["Pro reports", "New terms", "Export moved", "Ancient"]
    old = body["notes"][2]
    assert (old["read"], old["channel"], old["shown_as_popup"], old["reaction"]) == (
        True,
        "popup",
        True,
        "😕",
    )
    assert body["notes"][0]["sends"][0]["agent"] == "Dana"
    assert body["notes"][0]["pinned"] is True
    assert [t["external_id"] for t in body["tickets"]] == ["T1", "T0"]
    assert "email" not in str(body["tickets"])  # never an address


@pytest.mark.parametrize("path", ["team/42", "team%2F42", "t%C3%A9am%2F42%3F"])
def test_the_api_finds_an_id_with_a_slash_plain_or_percent_encoded(
    client, session, world, path
) -> None:
    external_id = "team/42" if "C3" not in path else "téam/42?"
    make_end_user(session, world.product, external_id, app_version="1.5.0")
    headers = _key(session, world.product, [ApiScope.SUPPORT_READ.value])
    answer = client.get(f"/api/v1/products/acme/end-users/{path}", headers=headers)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.get_json()["external_id"] == external_id


def test_the_api_refuses_other_products_other_scopes_and_bad_ids(client, session, world) -> None:
    support = _key(session, world.product, [ApiScope.SUPPORT_READ.value])
    notes_only = _key(session, world.product, [ApiScope.NOTES_READ.value])
    globex = _key(session, world.other, [ApiScope.SUPPORT_READ.value])
    cases = [
        ("/api/v1/products/acme/end-users/ana-1", notes_only, 403),
        ("/api/v1/products/acme/end-users/ana-1", globex, 403),
        ("/api/v1/products/globex/end-users/ana-1", globex, 404),
        ("/api/v1/products/acme/end-users/nobody", support, 404),
        ("/api/v1/products/acme/end-users/" + "x" * 256, support, 422),
        ("/api/v1/products/acme/end-users/ana%00", support, 422),
    ]
    for path, headers, status in cases:
        answer = client.get(path, headers=headers)
        assert answer.status_code == status, path
        assert answer.get_json()["error"]


def test_the_operation_is_in_the_openapi_document(client) -> None:
    document = client.get("/api/v1/openapi.json").get_json()
    operation = document["paths"]["/api/v1/products/{slug}/end-users/{external_id}"]["get"]
    assert "support:read" in operation["description"]
    assert {p["name"] for p in operation["parameters"]} == {"slug", "external_id"}
    [external_id] = [p for p in operation["parameters"] if p["name"] == "external_id"]
    assert external_id["in"] == "path" and external_id["schema"]["maxLength"] == 255
    assert "team%2F42" in external_id["description"]
    channel = document["components"]["schemas"]["EndUserNote"]["properties"]["channel"]
    assert all(label in channel["description"] for label in lookup.CHANNEL_LABELS.values())
    assert {"200", "404", "422"} <= set(operation["responses"])
