"""The agent sidebar: a signed link opens one user's page, for ten minutes, from any site's
frame; anything else is refused with nothing of the user; its one action sends a note.
And the console's Agent sidebar page: the secret (owners), its rotation, the try-it link
and the signer code, run as written. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import datetime, timedelta
from html import unescape
from urllib.parse import parse_qsl, urlsplit

import lxml.html
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from announcements import sidebar_links, tickets
from announcements.models import (
    AgentSend,
    AuditEvent,
    EndUser,
    Product,
    ReadReceipt,
    Role,
    utcnow,
)
from app.console.support_sidebar import BROWSER_WARNING
from tests.conftest import AuthActions, csrf_token
from tests.factories import add_member, make_note, make_product
from tests.test_widget_api import Widget

USER = "kim-42"
ATTRIBUTE = "enterprise-plan"  # a value only kim's record holds
READ_TITLE = "Dark mode everywhere"
UNREAD_TITLE = "Exports are faster"
SECRET_WORDS = (USER, ATTRIBUTE, READ_TITLE, UNREAD_TITLE, "2.4.0")


@pytest.fixture
def product(session: Session) -> Product:
    return make_product(session, name="Acme", slug="acme", grace_releases=20)


@pytest.fixture
def kim(session: Session, client: FlaskClient, product: Product) -> EndUser:
    """kim, seen by the widget on 2.4.0, who has read one of the two notes."""
    read = make_note(session, product, version="2.0.0", title=READ_TITLE)
    make_note(session, product, version="2.1.0", title=UNREAD_TITLE)
    widget = Widget(client, product, USER)
    assert widget.ids(version="2.4.0", **{"attr.plan": ATTRIBUTE})
    assert widget.read([read.id]).status_code == 204
    return session.scalars(select(EndUser).where(EndUser.external_id == USER)).one()


def link(product: Product, user: str = USER, *, agent: str = "", now: datetime | None = None):
    return sidebar_links.sign(product, user, agent=agent, now=now or utcnow())


def assert_refused(response, status: int = 403) -> None:
    """Refused, saying why, with nothing of the user or their notes."""
    page = response.get_data(as_text=True)
    assert response.status_code == status, page
    assert not [word for word in SECRET_WORDS if word in page]
    assert "Send to this user" not in page


def test_a_signed_link_shows_the_user_and_what_they_did_with_each_note(
    client: FlaskClient, product: Product, kim: EndUser
) -> None:
    response = client.get("/support/sidebar", query_string=link(product, agent="Ann"))
    page = response.get_data(as_text=True)
    assert response.status_code == 200, page
    assert USER in page and "v2.4.0" in page and ATTRIBUTE in page
    assert page.index(UNREAD_TITLE) < page.index(READ_TITLE)  # newest first
    assert page.count("Not read") == 1 and page.count(">Read<") == 1
    assert "<strong>1</strong> unread of 2 notes" in page
    assert page.count("Send to this user") == 2


def test_the_sidebar_may_be_framed_by_any_site_and_keeps_nothing(
    client: FlaskClient, product: Product, kim: EndUser
) -> None:
    response = client.get("/support/sidebar", query_string=link(product))
    assert response.status_code == 200
    assert "frame-ancestors *" in response.headers["Content-Security-Policy"]
    assert "X-Frame-Options" not in response.headers
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert "Set-Cookie" not in response.headers  # no session in a desk's frame
    # A refusal shows in the desk's frame too, so the agent reads why.
    refused = client.get("/support/sidebar", query_string={**link(product), "sig": "0" * 64})
    assert "frame-ancestors *" in refused.headers["Content-Security-Policy"]
    assert "X-Frame-Options" not in refused.headers
    # Every other page still refuses every frame.
    console = client.get("/console/login")
    assert console.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in console.headers["Content-Security-Policy"]


def test_a_link_lasts_ten_minutes_and_a_minute_ahead(
    client: FlaskClient, product: Product, kim: EndUser
) -> None:
    # Ten seconds' room each side of a limit: a slow machine takes seconds between making
    # a link and the request.
    for age, status in [
        (timedelta(minutes=9, seconds=50), 200),
        (timedelta(minutes=10, seconds=10), 403),
        (timedelta(hours=5), 403),
        (-timedelta(seconds=50), 200),
        (-timedelta(seconds=70), 403),
        (-timedelta(days=400), 403),
    ]:
        response = client.get("/support/sidebar", query_string=link(product, now=utcnow() - age))
        assert response.status_code == status, (age, response.get_data(as_text=True))
        if status == 403:
            assert_refused(response)
    now = utcnow()
    expired = client.get(
        "/support/sidebar", query_string=link(product, now=now - timedelta(hours=1))
    )
    assert "has expired" in expired.get_data(as_text=True)
    future = client.get(
        "/support/sidebar", query_string=link(product, now=now + timedelta(hours=1))
    )
    assert "in the future" in future.get_data(as_text=True)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"sig": None}, "missing sig"),
        ({"ts": None}, "missing ts"),
        ({"user": None}, "missing user"),
        ({"sig": ""}, "missing sig"),
        ({"sig": "0" * 64}, "does not match"),
        ({"sig": "not hex at all, ünïcode"}, "does not match"),
        ({"user": "kim-43"}, "does not match"),
        ({"user": USER + " "}, "does not match"),
        ({"agent": "Mallory"}, "does not match"),  # added after signing
        ({"ts": "ONE"}, "not a Unix time"),
        ({"ts": "-5"}, "not a Unix time"),
        ({"ts": "9" * 40}, "not a Unix time"),
        ({"user": "kim\n42"}, "cannot sign"),
    ],
)
def test_a_missing_or_changed_field_is_refused_with_no_data(
    client: FlaskClient, product: Product, kim: EndUser, change: dict, reason: str
) -> None:
    params = link(product)
    for name, value in change.items():
        if value is None:
            params.pop(name)
        else:
            params[name] = value
    response = client.get("/support/sidebar", query_string=params)
    assert_refused(response)
    assert reason in unescape(response.get_data(as_text=True))


def test_each_signed_field_counts(client: FlaskClient, product: Product, kim: EndUser) -> None:
    """A link's time moved by one second, or its agent changed or dropped, is refused."""
    signed = link(product, agent="Ann")
    for name, value in [("ts", str(int(signed["ts"]) - 1)), ("agent", "Anne"), ("agent", "")]:
        response = client.get("/support/sidebar", query_string={**signed, name: value})
        assert_refused(response)
    upper = {**signed, "sig": signed["sig"].upper()}  # hex is hex, in either case
    assert client.get("/support/sidebar", query_string=upper).status_code == 200


def test_another_products_secret_opens_nothing(
    session: Session, client: FlaskClient, product: Product, kim: EndUser
) -> None:
    other = make_product(session, slug="other")
    # kim's link signed with the other product's secret, for this product.
    forged = sidebar_links.sign(other, USER, now=utcnow())
    assert_refused(client.get("/support/sidebar", query_string={**forged, "product": "acme"}))
    # A good link of the other product names a user it has never seen.
    response = client.get("/support/sidebar", query_string=forged)
    assert_refused(response, 404)


def test_an_unknown_user_or_product_with_a_good_signature_is_404(
    session: Session, client: FlaskClient, product: Product, kim: EndUser
) -> None:
    response = client.get("/support/sidebar", query_string=link(product, "nobody"))
    assert_refused(response, 404)
    assert "has not seen this user" in response.get_data(as_text=True)
    unknown = {**link(product), "product": "no-such-product"}
    assert_refused(client.get("/support/sidebar", query_string=unknown), 404)


@pytest.mark.parametrize("slug", ["%00", "acme%00", "a" * 65, "%ED%A0%80", "Acme"])
def test_a_product_that_cannot_be_a_slug_is_not_found_without_a_query(
    client: FlaskClient, product: Product, kim: EndUser, slug: str
) -> None:
    # A NUL reaching PostgreSQL was a 500.
    response = client.get(f"/support/sidebar?product={slug}&user=u&ts=1&sig=ab")
    assert_refused(response, 404)
    signed = client.post("/support/sidebar/send", data={**link(product), "product": "a" * 65})
    assert_refused(signed, 404)


def test_a_rotated_secret_refuses_the_links_of_the_old_one(
    session: Session, client: FlaskClient, product: Product, kim: EndUser
) -> None:
    old = link(product)
    sidebar_links.rotate(session, product, by=None, now=utcnow())  # type: ignore[arg-type]
    session.commit()
    assert_refused(client.get("/support/sidebar", query_string=old))
    assert client.get("/support/sidebar", query_string=link(product)).status_code == 200


def test_a_user_is_found_by_the_address_the_widget_signed(
    app: Flask, session: Session, client: FlaskClient, product: Product, kim: EndUser
) -> None:
    kim.email_key = tickets.email_key(app.config["SECRET_KEY"], "kim@example.com")
    session.commit()
    response = client.get("/support/sidebar", query_string=link(product, "Kim@Example.com"))
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert USER in page and "Found by the address your app signed for them" in page
    by_id = client.get("/support/sidebar", query_string=link(product)).get_data(as_text=True)
    assert "Found by their id in your app" in by_id


def test_the_unread_count_is_the_widgets_and_a_pinned_note_says_so(
    client: FlaskClient, product: Product, kim: EndUser
) -> None:
    params = link(product, agent="Ann")
    page = client.get("/support/sidebar", query_string=params).get_data(as_text=True)
    assert "<strong>1</strong> unread of 2 notes" in page and "Pinned by an agent" not in page
    # Sent again after she read it: her widget counts it unread until she reads it again.
    read = Widget(client, product, USER)
    [read_id] = [n["id"] for n in read.notes(version="2.4.0").get_json()["notes"] if n["read"]]
    assert send(client, params, read_id).status_code == 303
    assert read.unread(version="2.4.0") == 2
    page = client.get("/support/sidebar", query_string=params).get_data(as_text=True)
    assert "<strong>2</strong> unread of 2 notes" in page
    assert page.count("Pinned by an agent") == 1
    assert page.count('class="note is-unread"') == 2


# Sending ----------------------------------------------------------------------------------


def send(client: FlaskClient, params: dict[str, str], note_id: object):
    return client.post("/support/sidebar/send", data={**params, "note_id": note_id})


def test_an_agent_sends_a_note_from_the_sidebar(
    session: Session, client: FlaskClient, product: Product, kim: EndUser
) -> None:
    note = session.scalars(
        select(ReadReceipt.note_id).where(ReadReceipt.end_user_id == kim.id)
    ).one()
    params = link(product, agent="Ann Agent")
    response = send(client, params, note)
    assert response.status_code == 303
    target = urlsplit(response.headers["Location"])
    assert dict(parse_qsl(target.query)) == {**params, "sent": str(note)}
    assert target.fragment == f"note-{note}"
    [sent] = session.scalars(select(AgentSend)).all()
    assert (sent.note_id, sent.end_user_id, sent.via, sent.agent, sent.sent_by_id) == (
        note,
        kim.id,
        "sidebar",
        "Ann Agent",
        None,
    )
    [event] = session.scalars(select(AuditEvent).where(AuditEvent.action == "note.sent_to_user"))
    assert "Ann Agent" in event.summary and USER in event.summary
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert f"Sent “{READ_TITLE}”: it pops up on their next page view." in unescape(page)
    assert "Sent by Ann Agent (sidebar)" in page and "Send again" in page
    # Without an agent in the link, the send is the desk's.
    assert send(client, link(product), note).status_code == 303
    assert session.scalars(select(AgentSend.agent).order_by(AgentSend.id.desc())).first() == (
        "help desk agent"
    )


def test_an_expired_or_forged_link_sends_nothing(
    session: Session, client: FlaskClient, product: Product, kim: EndUser
) -> None:
    note = make_note(session, product, version="2.2.0", title="Another")
    expired = link(product, agent="Ann", now=utcnow() - timedelta(minutes=11))
    assert_refused(send(client, expired, note.id))
    assert_refused(send(client, {**link(product), "agent": "Mallory"}, note.id))
    assert_refused(send(client, {"note_id": str(note.id)}, note.id))
    assert session.scalars(select(AgentSend)).all() == []


def test_sends_are_rate_limited_per_note_and_per_link(
    app_factory, session: Session, product: Product, kim: EndUser
) -> None:
    client = app_factory(RATELIMIT_ENABLED=True).test_client()
    notes = [make_note(session, product, version="2.3.0", title=f"N{i}").id for i in range(11)]
    params = link(product, agent="Ann")
    assert send(client, params, notes[0]).status_code == 303
    # The same note to the same user again within the minute: refused, saying why.
    again = send(client, params, notes[0])
    assert again.status_code == 429
    assert "sent to this user less than a minute ago" in again.get_data(as_text=True)
    assert "Send to this user" in again.get_data(as_text=True)  # the page, to go on
    # A forged form spends nothing: a good link still sends the next note.
    assert_refused(send(client, {**params, "sig": "0" * 64}, notes[1]))
    for note_id in notes[1:10]:
        assert send(client, params, note_id).status_code == 303
    # Ten sends in a minute from one link: the eleventh note waits too.
    assert send(client, params, notes[10]).status_code == 429
    assert session.scalar(select(func.count()).select_from(AgentSend)) == 10
    # Another link for her (another agent) sends it.
    assert send(client, link(product, agent="Bo"), notes[10]).status_code == 303


def test_only_a_note_their_widget_lists_can_be_sent(
    session: Session, client: FlaskClient, product: Product, kim: EndUser
) -> None:
    draft = make_note(session, product, status="draft", title="Draft")
    newer = make_note(session, product, version="9.0.0", title="For a later version")
    elsewhere = make_note(session, make_product(session), title="Another product's")
    for note_id in (draft.id, newer.id, elsewhere.id, 10**9, "first"):
        response = send(client, link(product), note_id)
        assert response.status_code == 422, note_id
        page = response.get_data(as_text=True)
        assert "not one this user&#39;s widget shows" in page or "Choose a note" in page
        assert "Draft" not in page and "Another product" not in page
    assert session.scalars(select(AgentSend)).all() == []


# The console page -------------------------------------------------------------------------


def test_owners_see_the_secret_and_rotate_it_others_see_the_templates(
    session: Session, client: FlaskClient, auth: AuthActions, product: Product
) -> None:
    page_url = "/console/p/acme/support/sidebar"
    viewer = add_member(session, product, Role.VIEWER)
    auth.login(viewer.email)
    page = client.get(page_url).get_data(as_text=True)
    assert "ticket.requester.externalId" in page and "contact.external_id" in page
    assert "primaryCustomer.email" in page and "requester.unique_external_id" in page
    assert product.sidebar_secret not in page and "Rotate" not in page
    # The try-it link is an owner's: a viewer asking for one gets none.
    asked = client.get(page_url, query_string={"user": USER}).get_data(as_text=True)
    assert "trial-link" not in asked
    assert (
        client.post(f"{page_url}/rotate", data={"csrf_token": csrf_token(client)}).status_code
        == 403
    )
    auth.logout()

    owner = add_member(session, product, Role.OWNER)
    auth.login(owner.email)
    old = product.sidebar_secret
    assert old in client.get(page_url).get_data(as_text=True)
    assert client.post(f"{page_url}/rotate").status_code == 400  # no CSRF token
    rotated = client.post(f"{page_url}/rotate", data={"csrf_token": csrf_token(client)})
    assert rotated.status_code == 302
    session.refresh(product)
    assert product.sidebar_secret != old and len(product.sidebar_secret) == 64
    [event] = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "product.sidebar_secret_rotated")
    )
    assert event.actor_id == owner.id
    assert product.sidebar_secret in client.get(page_url).get_data(as_text=True)


def test_an_owner_makes_a_link_that_opens_the_sidebar(
    app: Flask, session: Session, client: FlaskClient, auth: AuthActions, product: Product, kim
) -> None:
    owner = add_member(session, product, Role.OWNER)
    auth.login(owner.email)
    page_url = "/console/p/acme/support/sidebar"
    page = client.get(page_url, query_string={"user": USER, "agent": "Ann"}).get_data(as_text=True)
    [made] = re.findall(r'<code id="trial-link">([^<]+)</code>', page)
    made = unescape(made)
    assert made.startswith(app.config["BASE_URL"].rstrip("/") + "/support/sidebar?")
    assert 'class="sidebar-preview"' in page and "has not seen this user" not in page
    opened = client.get(urlsplit(made).path, query_string=urlsplit(made).query)
    assert opened.status_code == 200 and ATTRIBUTE in opened.get_data(as_text=True)
    # A user the widget has not seen: a link, and a warning that it will answer 404.
    page = client.get(page_url, query_string={"user": "nobody"}).get_data(as_text=True)
    assert "has not seen this user" in page
    refused = client.get(page_url, query_string={"user": "a\nb"})
    assert refused.status_code == 422 and "trial-link" not in refused.get_data(as_text=True)
    too_long = client.get(page_url, query_string={"user": USER, "agent": "x" * 255})
    assert too_long.status_code == 422


def test_the_desk_guides_take_the_user_from_the_desk_not_the_browser(
    session: Session, client: FlaskClient, auth: AuthActions, product: Product
) -> None:
    auth.login(add_member(session, product, Role.VIEWER).email)
    page = lxml.html.fromstring(client.get("/console/p/acme/support/sidebar").get_data())
    assert " ".join(page.find_class("browser-warning")[0].text_content().split()) == (
        BROWSER_WARNING
    )
    assert "lets any desk agent mint a link for any user" in BROWSER_WARNING
    code = {
        desk: page.get_element_by_id(f"desk-code-{desk}").text_content()
        for desk in ("zendesk", "intercom", "helpscout", "freshdesk")
    }
    # Code in the agent's browser sends no user; the signing code takes the desk's.
    assert "user:" not in code["zendesk"] and '"ticket.id"' in code["zendesk"]
    assert "user:" not in code["helpscout"] and "window.location.search" in code["helpscout"]
    assert "args.user" not in code["freshdesk"] and "ticket.requester_id" in code["freshdesk"]
    assert 'body["contact"]' in code["intercom"]


def _signer_code(client: FlaskClient, language: str) -> str:
    page = client.get("/console/p/acme/support/sidebar").get_data(as_text=True)
    blocks = re.findall(
        r"<h3>([^<]+)</h3>\s*<div class=\"code-block\">.*?<code>(.*?)</code>", page, re.S
    )
    return unescape(dict(blocks)[language])


def test_the_signer_code_on_the_page_makes_links_the_sidebar_accepts(
    session: Session, client: FlaskClient, auth: AuthActions, product: Product, kim, monkeypatch
) -> None:
    owner = add_member(session, product, Role.OWNER)
    auth.login(owner.email)
    monkeypatch.setenv("TIDINGS_SIDEBAR_SECRET", product.sidebar_secret)
    python = _signer_code(client, "Python")
    javascript = _signer_code(client, "JavaScript (Node)")
    auth.logout()  # the sidebar needs no session

    scope: dict = {}
    exec(compile(python, "signer.py", "exec"), scope)  # noqa: S102 - the page's own code
    links = [scope["sidebar_link"](USER, "Ann"), scope["sidebar_link"](USER)]
    node = shutil.which("node")
    if node is not None:
        user = json.dumps(USER)
        calls = f"[sidebarLink({user}, 'Ann'), sidebarLink({user})]"
        script = f"{javascript}\nconsole.log(JSON.stringify({calls}));"
        ran = subprocess.run(  # noqa: S603 - node, on the page's own code
            [node, "-e", script], capture_output=True, text=True, check=True, timeout=30
        )
        links += json.loads(ran.stdout)
    for made in links:
        response = client.get(urlsplit(made).path, query_string=urlsplit(made).query)
        assert response.status_code == 200, made
        assert ATTRIBUTE in response.get_data(as_text=True)
    assert len(links) == (4 if node else 2)
