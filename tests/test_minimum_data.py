"""Minimum data: attribute names that look like personal data are told apart, flagged on
the settings page and never made segments; and a client's IP address is stored nowhere,
whichever path its requests take (widget, management API, console, subscription, help
desk, agent sidebar, public pages), on SQLite and PostgreSQL."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, request
from flask.testing import FlaskClient
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from announcements import apikeys, rollups, sidebar_links, support_desks
from announcements.models import (
    AuditEvent,
    ConsoleSession,
    EndUser,
    EndUserDay,
    HelpRequest,
    Reaction,
    Rollup,
    RollupState,
    Subscriber,
    SupportDesk,
    Ticket,
    utcnow,
)
from announcements.personal_data import looks_personal, words
from app.database import write_turn
from app.mail.tokens import Purpose, for_subscriber
from tests.conftest import SHARED_TESTDATA, csrf_token
from tests.factories import make_end_user, make_member, make_product
from tests.stored import stored_texts, text_columns
from tests.test_widget_api import email_hash, user_hash

# Names --------------------------------------------------------------------------------

PERSONAL = [
    "email",
    "Email",
    "EMAIL",
    "e-mail",
    "e_mail",
    "mail",
    "email_address",
    "emailAddress",
    "user.email",
    "work-email",
    "name",
    "Name",
    "first_name",
    "firstName",
    "FirstName",
    "first-name",
    "last_name",
    "lastName",
    "full_name",
    "fullname",
    "firstname",
    "surname",
    "display_name",
    "displayName",
    "username",
    "userName",
    "user_name",
    "phone",
    "phone_number",
    "phoneNumber",
    "mobile",
    "tel",
    "telephone",
    "address",
    "home_address",
    "billing.address",
    "street",
    "postcode",
    "postal_code",
    "zip",
    "zip_code",
    "zipCode",
    "ip",
    "ip_address",
    "birthday",
    "birthdate",
    "birth_date",
    "date_of_birth",
    "dateOfBirth",
    "dob",
    "DOB",
    "ssn",
    "SSN",
    "passport",
    "passport_number",
]
NOT_PERSONAL = [
    "plan",
    "role",
    "company_size",
    "companySize",
    "team_name",  # the team's name: many users share it, which is what a segment is for
    "company_name",
    "plan_name",
    "workspace",
    "locale",
    "country",
    "tier",
    "seats",
    "user_id",
    "account_id",
    "hotel",  # "tel" only as a word of its own
    "zipper",
    "named_range",
    "email_verified",  # a fact about the address, not the address
    "emailVerified",
    "has_phone",
    "is_mobile",
    "email_domain",
    "email_opt_in",
    "newsletter",
    "beta",
    "",
]


@pytest.mark.parametrize("name", PERSONAL)
def test_names_of_personal_data_look_personal(name: str) -> None:
    assert looks_personal(name)


@pytest.mark.parametrize("name", NOT_PERSONAL)
def test_names_that_audience_rules_use_do_not(name: str) -> None:
    assert not looks_personal(name)


def test_a_name_is_read_as_words_whatever_its_separators() -> None:
    expected = ["email", "address"]
    for name in ("emailAddress", "email_address", "Email.Address", "email-address", "EMAIL ADDR"):
        assert words(name)[0] == "email"
    assert words("emailAddress") == words("email__address") == expected
    assert words("HTMLEmailAddress") == ["html", "email", "address"]


# Segments -----------------------------------------------------------------------------


def _seen(session: Session, product: Any, number: int, attributes: dict[str, str]) -> None:
    """An end user the widget saw a day ago, with its day row."""
    moment = utcnow() - timedelta(days=1)
    user = make_end_user(
        session,
        product,
        f"user-{number}",
        attributes=attributes,
        first_seen_at=moment,
        last_seen_at=moment,
    )
    session.execute(
        insert(EndUserDay).values(
            end_user_id=user.id, product_id=product.id, day=moment.date(), seen_at=moment
        )
    )
    session.commit()


def test_an_attribute_that_looks_personal_never_becomes_a_segment(
    session: Session, app: Flask
) -> None:
    """An e-mail as a segment would put every address into the roll-up's rows."""
    product = make_product(session)
    for number in range(rollups.SEGMENT_MIN_USERS + 5):
        _seen(
            session,
            product,
            number,
            {"plan": "pro", "email": f"u{number}@example.com", "firstName": f"Ann {number}"},
        )
    rollups.rebuild(session, product, now=utcnow(), write_turn=write_turn)
    assert rollups.segments(session, product) == ["locale", "app_version", "plan"]

    # One adopted before the rule is dropped at the next run, and a rebuild forgets it.
    session.get_one(RollupState, product.id).segments = ["locale", "app_version", "email"]
    session.commit()
    rollups.refresh(session, product, now=utcnow(), write_turn=write_turn)
    assert "email" not in rollups.segments(session, product)
    rollups.rebuild(session, product, now=utcnow(), write_turn=write_turn)
    assert rollups.segments(session, product) == ["locale", "app_version", "plan"]
    rows = session.scalars(select(Rollup.value)).all()
    assert not any("@example.com" in value for value in rows)


# The settings page --------------------------------------------------------------------


def _section(page: str) -> str:
    match = re.search(r'<section[^>]*id="attributes".*?</section>', page, re.S)
    assert match, "the settings page has the attributes section"
    return html.unescape(match.group(0))


def test_the_settings_page_lists_the_attributes_and_flags_the_personal_ones(
    session: Session, client: FlaskClient, auth: Any
) -> None:
    owner = make_member(session, "owner@example.com")
    product = make_product(session, owner=owner, slug="acme")
    product.retain_end_users_months = 18
    session.commit()
    for number in range(3):
        _seen(session, product, number, {"plan": "pro", "role": "admin"})
    _seen(session, product, 3, {"plan": "free", "email": "kim@example.com"})
    auth.login("owner@example.com")

    page = client.get("/console/p/acme/settings").get_data(as_text=True)
    section = _section(page)
    rows = re.findall(
        r'<tr data-attribute="([^"]+)"( class="carried-personal")?>.*?<td class="num">(\d+)</td>',
        section,
        re.S,
    )
    assert rows == [
        ("plan", "", "4"),
        ("role", "", "3"),
        ("email", ' class="carried-personal"', "1"),
    ]
    assert "1 attribute looks like personal data" in section
    assert (
        "Looks like personal data: send it only if a note's audience needs it; Tidings "
        "stores it until the user is erased or not seen for 18 months." in section
    )
    assert "Read from all 4 of the product's users." in section
    # Never the values.
    assert "kim@example.com" not in page
    # The snippet says what to send.
    assert "No e-mails or names unless a note's audience needs them." in html.unescape(page)


def test_the_page_reads_only_the_most_recently_seen_users(
    session: Session, client: FlaskClient, auth: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("app.console.products.ATTRIBUTE_SAMPLE", 2)
    owner = make_member(session, "owner@example.com")
    product = make_product(session, owner=owner, slug="acme")
    now = utcnow()
    make_end_user(
        session, product, "old", attributes={"phone": "555"}, last_seen_at=now - timedelta(days=9)
    )
    make_end_user(session, product, "a", attributes={"plan": "pro"}, last_seen_at=now)
    make_end_user(session, product, "b", attributes={"plan": "pro"}, last_seen_at=now)
    auth.login("owner@example.com")

    section = _section(client.get("/console/p/acme/settings").get_data(as_text=True))
    assert re.findall(r'data-attribute="([^"]+)"', section) == ["plan"]
    assert "looks like personal data" not in section
    assert "Read from the 2 users seen most recently" in section


def test_a_product_whose_users_carry_nothing_says_so(
    session: Session, client: FlaskClient, auth: Any
) -> None:
    owner = make_member(session, "owner@example.com")
    make_product(session, owner=owner, slug="acme")
    auth.login("owner@example.com")
    section = _section(client.get("/console/p/acme/settings").get_data(as_text=True))
    assert "No user has carried an attribute yet." in section
    assert "<table" not in section


# IP addresses -------------------------------------------------------------------------

IPV4, IPV6 = "203.0.113.77", "2001:db8::77"
# Any trace of either, however written: their networks are for documentation only, so
# nothing else the scenario stores can hold them.
TRACES = re.compile(r"203\.0\.113|2001:0?db8|cb00:71|20010db8", re.I)
ORIGIN = "https://app.example.com"
USER = "kim-7"
EMAIL = "kim@example.com"


def stored_traces(session: Session) -> list[str]:
    """Where the database holds a trace of the addresses, as ``table.column: value``."""
    return [
        f"{table}.{column}: {text}"
        for table, column, text in stored_texts(session)
        if TRACES.search(text)
    ]


def file_traces(folder: Path) -> list[str]:
    """The files under ``folder`` (the job queue, mail written as files) holding a trace."""
    return [
        str(path)
        for path in folder.rglob("*")
        if path.is_file() and TRACES.search(path.read_bytes().decode("latin-1"))
    ]


@pytest.mark.parametrize(
    ("proxies", "client_address"),
    [(1, IPV4), (0, IPV6)],
    ids=["behind-a-trusted-proxy", "direct"],
)
def test_no_client_address_is_stored_by_any_path(
    session: Session,
    app_factory: Any,
    tmp_path: Path,
    proxies: int,
    client_address: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every request comes from IPV6 with ``X-Forwarded-For: IPV4``: behind a trusted proxy
    the app takes IPV4 as the client's address, otherwise IPV6. Rate limits are on, so
    their keys are made from it as in production."""
    web = app_factory(TRUSTED_PROXIES=proxies, RATELIMIT_ENABLED=True)
    seen: list[str | None] = []
    web.after_request(lambda response: seen.append(request.remote_addr) or response)
    client = web.test_client()
    client.environ_base.update({"REMOTE_ADDR": IPV6, "HTTP_X_FORWARDED_FOR": IPV4})
    caplog.set_level("DEBUG")

    owner = make_member(session, "owner@example.com")
    product = make_product(session, owner=owner, slug="acme", allowed_origins=(ORIGIN,))
    _, api_key = apikeys.create(
        session,
        product,
        "ci",
        ["notes:read", "notes:write", "tickets:write", "support:read"],
        by=owner,
        now=utcnow(),
    )
    freshdesk = support_desks.connect(session, product, SupportDesk.FRESHDESK)
    session.commit()
    bearer = {"Authorization": f"Bearer {api_key}"}

    def ok(response: Any, *statuses: int) -> Any:
        assert response.status_code in (statuses or (200,)), response.get_data(as_text=True)
        return response

    # The management API: notes, one to acknowledge, a ticket, a user lookup.
    api = "/api/v1/products/acme"
    note = {"version": "1.0.0", "category": "Added", "body_md": "CSV export.", "publish": True}
    first = ok(client.post(f"{api}/notes", json={**note, "title": "Export"}, headers=bearer), 201)
    notice = ok(
        client.post(
            f"{api}/notes",
            json={**note, "title": "Terms", "requires_acknowledgement": True},
            headers=bearer,
        ),
        201,
    )
    first_id, notice_id = first.get_json()["id"], notice.get_json()["id"]
    ok(client.get(f"{api}/notes", headers=bearer))

    # The widget: notes, the signed address, a read, a reaction with a comment, an
    # acknowledgement, help asked, shown and answered, the subscription.
    widget = f"/api/v1/widget/{product.widget_key}"
    identity = {"user_id": USER, "user_hash": user_hash(product, USER)}
    cors = {"Origin": ORIGIN}
    query = {**identity, "version": "1.0.0", "locale": "fr", "attr.plan": "pro"}
    ok(client.get(f"{widget}/notes", query_string=query, headers=cors))
    mail = {**identity, "email": EMAIL, "email_hash": email_hash(product, USER, EMAIL)}
    ok(client.post(f"{widget}/identity", json=mail, headers=cors), 204)
    ok(client.post(f"{widget}/reads", json={**identity, "note_ids": [first_id]}), 204)
    reaction = {**identity, "note_id": first_id, "reaction": "👍", "comment": "Works well"}
    ok(client.post(f"{widget}/reactions", json=reaction), 200, 204)
    ok(client.post(f"{widget}/acknowledgements", json={**identity, "note_id": notice_id}), 204)
    ok(client.get(f"{widget}/help", query_string={**identity, "q": "export"}))
    shown = {**identity, "query": "export", "note_ids": [first_id]}
    token = ok(client.post(f"{widget}/help", json=shown), 201).get_json()["id"]
    answered = {**identity, "outcome": "answered", "note_id": first_id}
    ok(client.post(f"{widget}/help/{token}", json=answered), 204)
    ok(client.get(f"{widget}/subscription", query_string=mail))
    ok(client.post(f"{widget}/subscription", json=mail), 200, 202)

    # Tickets: from the API, and from a help desk's webhook.
    ticket = {
        "source": "jira",
        "external_id": "SUP-1",
        "created_at": "2026-01-05T10:00:00Z",
        "email": EMAIL,
        "subject": "Export",
    }
    ok(client.post(f"{api}/tickets", json=ticket, headers=bearer))
    body = (SHARED_TESTDATA / "support" / "freshdesk-ticket_created-1.json").read_bytes()
    inbound = f"/api/v1/support/inbound/{freshdesk.id}/{freshdesk.token}"
    ok(client.post(inbound, data=body, headers={"Content-Type": "application/json"}), 200, 201)
    ok(client.get(f"{api}/end-users/{USER}", headers=bearer))

    # The agent sidebar: a user's page, and a note sent to them.
    link = sidebar_links.sign(product, USER, agent="Ann", now=utcnow())
    ok(client.get("/support/sidebar", query_string=link))
    ok(client.post("/support/sidebar/send", data={**link, "note_id": first_id}), 303)

    # The console: a refused login, a login, a settings page.
    form = {"email": "owner@example.com", "password": "wrong", "csrf_token": csrf_token(client)}
    ok(client.post("/console/login", data=form), 422)
    form["password"] = "correct horse battery"
    ok(client.post("/console/login", data=form), 302, 303)
    ok(client.get("/console/p/acme/settings"))

    # Public pages and the subscription by e-mail, confirmed and left.
    ok(client.get("/changelog/acme"))
    ok(client.get("/changelog/acme/feed.rss"))
    ok(client.post("/changelog/acme/subscribe", data={"email": "lee@example.com"}), 202)
    lee = session.scalars(select(Subscriber).where(Subscriber.email == "lee@example.com")).one()
    ok(client.get(f"/subscriptions/confirm/{for_subscriber(Purpose.CONFIRM, lee)}"))
    ok(client.post(f"/subscriptions/unsubscribe/{for_subscriber(Purpose.UNSUBSCRIBE, lee)}"))

    # Every request was made from the address expected, and each path stored something.
    assert seen and set(seen) == {client_address}
    session.expire_all()
    for model in (EndUser, Reaction, HelpRequest, Ticket, Subscriber, ConsoleSession, AuditEvent):
        assert session.scalars(select(model)).first() is not None, model.__name__

    assert stored_traces(session) == []
    # The walk reached the tables written to, found by the metadata, not by a list.
    assert {
        "end_user.attributes",
        "reaction.comment",
        "help_request.query",
        "ticket.subject",
        "subscriber.email",
        "audit_event.summary",
        "outbox_message.payload",
    } <= text_columns()
    assert file_traces(Path(web.instance_path)) == []
    # The app's own log lines name no address either (the server's access line does).
    assert [r.getMessage() for r in caplog.records if TRACES.search(r.getMessage())] == []


def test_the_walk_finds_an_address_where_one_is_stored(session: Session, app: Flask) -> None:
    """The check above can fail: an address in an attribute, or a comment, is found."""
    product = make_product(session)
    make_end_user(session, product, "x", attributes={"ip": IPV6})
    assert stored_traces(session) == [f'end_user.attributes: {{"ip": "{IPV6}"}}']
