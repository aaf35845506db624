"""Privacy requests in the console (owners: find, export, erase with a confirmation), on
the subscribers page, and from the "Delete my data" link of every e-mail, followed from
a real mail. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from announcements import subscriptions
from announcements.models import (
    AuditEvent,
    Product,
    Role,
    Subscriber,
    SubscriberStatus,
    utcnow,
)
from announcements.subscriptions import Preferences
from app.mail import delivery, transport
from tests.conftest import HTTPS_BASE_URL as BASE
from tests.conftest import AuthActions, csrf_token
from tests.factories import add_member, make_end_user, make_member, make_note, make_product
from tests.mailserver import SmtpServer
from tests.test_privacy import (
    ADDRESS,
    COMMENT,
    EXTERNAL_ID,
    ORIGIN,
    make_person,
    traces_in_database,
)

PAGE = "/console/p/acme/privacy"


@pytest.fixture
def acme(session: Session, auth: AuthActions) -> Product:
    owner = make_member(session, "owner@example.com")
    product = make_product(
        session, owner=owner, slug="acme", name="Acme", allowed_origins=(ORIGIN,), grace_releases=20
    )
    auth.login(owner.email)
    return product


def post(client: FlaskClient, action: str, identifier: str, kind: str = "user", **extra: str):
    form = {"csrf_token": csrf_token(client), "action": action, "kind": kind}
    return client.post(PAGE, data={**form, "identifier": identifier, **extra})


def test_an_owner_finds_exports_and_erases_a_user(
    client: FlaskClient, session: Session, acme: Product
) -> None:
    make_person(client, session, acme)
    page = client.get(PAGE)
    assert page.status_code == 200 and "Privacy requests" in page.get_data(as_text=True)

    found = post(client, "find", EXTERNAL_ID)
    assert found.status_code == 200
    body = found.get_data(as_text=True)
    assert "What Tidings holds about this user" in body and "Ann Quirkstone" in body
    assert re.search(r"Notes read</dt><dd class=\"stat-value\">2<", body)

    exported = post(client, "export", EXTERNAL_ID)
    assert exported.status_code == 200 and exported.mimetype == "application/json"
    disposition = exported.headers["Content-Disposition"]
    assert disposition.startswith("attachment;") and "acme-privacy-export" in disposition
    data = json.loads(exported.get_data(as_text=True))
    assert data["end_user"]["external_id"] == EXTERNAL_ID
    assert data["reactions"][0]["comment"] == COMMENT

    wrong = post(client, "erase", EXTERNAL_ID, confirmation="someone else")
    assert wrong.status_code == 422 and "Type the id or address exactly" in wrong.get_data(
        as_text=True
    )
    assert post(client, "find", EXTERNAL_ID).status_code == 200  # nothing erased

    erased = post(client, "erase", EXTERNAL_ID, confirmation=EXTERNAL_ID)
    assert erased.status_code == 302
    shown = client.get(erased.headers["Location"]).get_data(as_text=True)
    assert "Erased the user&#39;s data: 2 reads, 1 reaction, 1 comment, 2 tickets" in shown
    session.expire_all()
    assert traces_in_database(session) == []
    actions = sorted(
        session.scalars(select(AuditEvent.action).where(AuditEvent.action.like("privacy.%")))
    )
    assert actions == ["privacy.erased", "privacy.exported"]

    again = post(client, "find", EXTERNAL_ID)
    assert again.status_code == 422
    assert "No user of this product has that id" in again.get_data(as_text=True)
    assert post(client, "erase", EXTERNAL_ID, confirmation=EXTERNAL_ID).status_code == 422


def test_unknown_or_strange_input_is_a_form_message(
    client: FlaskClient, session: Session, acme: Product
) -> None:
    other = make_product(session, slug="other")
    make_end_user(session, other, "bob")
    for identifier, kind in [
        ("bob", "user"),  # another product's user
        ("", "user"),
        ("x" * 400, "user"),
        ("nobody@example.com", "subscriber"),
        ("not an address", "subscriber"),
    ]:
        answer = post(client, "find", identifier, kind)
        assert answer.status_code == 422, identifier
        assert 'class="field-error"' in answer.get_data(as_text=True)
    assert post(client, "find", "bob", kind="martian").status_code == 422
    # A NUL is refused before any view, as everywhere in the console.
    assert post(client, "find", "a\x00b").status_code == 400


def test_a_subscriber_is_found_by_address_and_erased(
    client: FlaskClient, session: Session, acme: Product
) -> None:
    subscriber = _confirmed(session, acme, "zed@example.net")
    found = post(client, "find", "Zed@Example.net ", "subscriber")
    assert found.status_code == 200
    assert "What Tidings holds about this subscriber" in found.get_data(as_text=True)
    erased = post(client, "erase", "zed@example.net", "subscriber", confirmation="zed@example.net")
    assert erased.status_code == 302
    session.refresh(subscriber)
    assert subscriber.erased_at is not None and "zed" not in subscriber.email
    assert post(client, "find", "zed@example.net", "subscriber").status_code == 422


@pytest.mark.parametrize("role", [Role.VIEWER, Role.EDITOR])
def test_only_owners_may(
    client: FlaskClient, session: Session, auth: AuthActions, role: Role
) -> None:
    product = make_product(session, slug="acme")
    member = add_member(session, product, role)
    subscriber = _confirmed(session, product, "zed@example.net")
    auth.login(member.email)
    token = csrf_token(client)
    assert client.get(PAGE).status_code == 403
    assert client.post(PAGE, data={"csrf_token": token, "identifier": "x"}).status_code == 403
    for action in ("export", "erase"):
        url = f"/console/p/acme/subscribers/{subscriber.id}/{action}"
        assert client.post(url, data={"csrf_token": token}).status_code == 403
    page = client.get("/console/p/acme/subscribers").get_data(as_text=True)
    assert "/erase" not in page and "/export" not in page


def test_posts_need_the_csrf_token(client: FlaskClient, session: Session, acme: Product) -> None:
    make_end_user(session, acme, "ann")
    answer = client.post(PAGE, data={"action": "erase", "identifier": "ann", "confirmation": "ann"})
    assert answer.status_code in (400, 422)
    assert post(client, "find", "ann").status_code == 200  # still there


def test_the_subscribers_page_exports_and_erases_one(
    client: FlaskClient, session: Session, acme: Product
) -> None:
    subscriber = _confirmed(session, acme, "zed@example.net")
    page = client.get("/console/p/acme/subscribers").get_data(as_text=True)
    assert f"{subscriber.id}/export" in page and f"{subscriber.id}/erase" in page
    token = csrf_token(client)
    exported = client.post(
        f"/console/p/acme/subscribers/{subscriber.id}/export", data={"csrf_token": token}
    )
    assert exported.status_code == 200
    assert exported.headers["Content-Disposition"].startswith("attachment;")
    assert exported.get_json()["email"] == "zed@example.net"
    erased = client.post(
        f"/console/p/acme/subscribers/{subscriber.id}/erase",
        data={"csrf_token": token},
        follow_redirects=True,
    )
    assert erased.status_code == 200
    body = erased.get_data(as_text=True)
    assert "Erased the subscriber" in body and "zed@example.net" not in body
    again = client.post(
        f"/console/p/acme/subscribers/{subscriber.id}/erase", data={"csrf_token": token}
    )
    assert again.status_code == 404
    other = _confirmed(session, make_product(session), "yan@example.net")
    answer = client.post(
        f"/console/p/acme/subscribers/{other.id}/export", data={"csrf_token": token}
    )
    assert answer.status_code == 404


def _confirmed(session: Session, product: Product, address: str) -> Subscriber:
    subscriber = Subscriber(product_id=product.id, email=address, created_at=utcnow())
    session.add(subscriber)
    session.flush()
    return subscriptions.confirm(session, subscriber, Preferences(), now=utcnow())


# The "Delete my data" link -----------------------------------------------------------


def _send_all(server: SmtpServer) -> None:
    sender = transport.Smtp(server.url)
    try:
        delivery.deliver_due(sender)
    finally:
        sender.close()


def _link(message, path: str) -> str:
    text = message.get_body(("plain",)).get_content()
    found = re.search(re.escape(BASE) + r"(/subscriptions/" + path + r"/\S+)", text)
    assert found, f"no {path} link in:\n{text}"
    return found.group(1)


@pytest.mark.usefixtures("https_base_url")
def test_every_mail_has_a_delete_my_data_link_that_erases_the_subscriber(
    client: FlaskClient, session: Session, smtp_server: SmtpServer
) -> None:
    product = make_product(session, name="Lumen", slug="lumen")
    asked = client.post("/changelog/lumen/subscribe", data={"email": ADDRESS})
    assert asked.status_code == 202
    _send_all(smtp_server)
    [confirmation] = smtp_server.recorder.to(ADDRESS)
    html = confirmation.get_body(("html",)).get_content()
    assert "Delete my data" in html and "/subscriptions/erase/" in html
    assert client.get(_link(confirmation, "confirm")).status_code == 200

    make_note(session, product, title="Dark mode", email_subscribers=True)
    _send_all(smtp_server)
    note_mail = smtp_server.recorder.to(ADDRESS)[-1]
    assert "Dark mode" in note_mail["Subject"]
    erase = _link(note_mail, "erase")
    assert erase.startswith("/subscriptions/erase/")
    # The unsubscribe link, which mail providers read and follow, erases no one.
    unsubscribe_token = _link(note_mail, "unsubscribe").rsplit("/", 1)[1]
    assert client.post(f"/subscriptions/erase/{unsubscribe_token}").status_code == 400

    page = client.get(erase)
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "Delete my data" in text and ADDRESS in text and '<form method="post"' in text
    subscriber = session.scalars(select(Subscriber)).one()
    assert subscriber.erased_at is None  # a GET erases nothing

    done = client.post(erase)
    assert done.status_code == 200
    assert "Your data is deleted" in done.get_data(as_text=True)
    session.expire_all()
    assert traces_in_database(session) == []
    subscriber = session.scalars(select(Subscriber)).one()
    assert subscriber.status is SubscriberStatus.UNSUBSCRIBED and subscriber.erased_at is not None
    event = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "privacy.subscriber_erased")
    ).one()
    assert event.actor_id is None and "ann" not in event.summary

    # A used link, every older link, and a damaged one: a clear page, nothing changed.
    for used in (erase, _link(note_mail, "unsubscribe"), _link(confirmation, "erase")):
        for answer in (client.get(used), client.post(used)):
            assert answer.status_code == 404
            assert "This link does not work" in answer.get_data(as_text=True)
            assert "has been erased" in answer.get_data(as_text=True)
    damaged = client.get(erase[:-4])
    assert damaged.status_code == 400 and "This link does not work" in damaged.get_data(
        as_text=True
    )
    assert client.post("/subscriptions/erase/nonsense").status_code == 400
