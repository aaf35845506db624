"""The widget hands over the address a host signed for its user in a POST body, never in a
URL; Tidings keeps it as a keyed hash that help-desk tickets are matched by, never as the
address. On SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from announcements import user_state
from announcements.models import EndUser, Product, Subscriber
from app.database import widget_engine
from app.extensions import db
from tests.factories import make_product
from tests.test_widget_api import Widget, email_hash, user_hash, writes_on

ADDRESS = "Ann@Example.com"
ORIGIN = "https://app.example.com"


def key_of(app: Flask, address: str) -> str:
    """The key as the design states it, computed here on its own: hex HMAC-SHA256 with the
    app's secret key of "ticket-email", a line feed and the address, lower-cased."""
    message = f"ticket-email\n{address.strip().lower()}".encode()
    return hmac.new(app.config["SECRET_KEY"].encode(), message, hashlib.sha256).hexdigest()


@pytest.fixture
def product(session: Session) -> Product:
    return make_product(session, allowed_origins=(ORIGIN,))


@pytest.fixture
def widget(client: FlaskClient, product: Product) -> Widget:
    return Widget(client, product, "user-1")


def signed(widget: Widget, address: str = ADDRESS) -> dict[str, str]:
    assert widget.user_id is not None
    return {"email": address, "email_hash": email_hash(widget.product, widget.user_id, address)}


def send(widget: Widget, body: Any = None, headers: dict[str, str] | None = None, **fields: Any):
    """POST /identity as the widget does: the user's identity and ``fields``, or ``body``."""
    if body is None:
        body = {**widget.identity(), **fields}
    return widget.client.post(f"{widget.base}/identity", json=body, headers=headers or {})


def stored_user(session: Session) -> EndUser | None:
    session.expire_all()
    return session.scalar(select(EndUser))


def test_a_signed_address_is_kept_as_its_keyed_hash_only(
    app: Flask, session: Session, widget: Widget
) -> None:
    assert widget.notes().status_code == 200
    answer = send(widget, **signed(widget))
    assert answer.status_code == 204 and answer.data == b""
    user = stored_user(session)
    assert user is not None and user.email_key == key_of(app, ADDRESS)
    row = session.execute(select(EndUser.__table__)).one()
    assert not any("example.com" in str(value).lower() for value in row)
    assert session.scalar(select(func.count()).select_from(Subscriber)) == 0

    # Every state reader hands the key on, so the next call can tell it is unchanged.
    with widget_engine().connect() as connection:
        answers = [
            reader.fetch_state(connection, widget.product.widget_key, "user-1")[1]
            for reader in (
                user_state.ReferenceStateReader(),
                user_state.CoreStateReader(),
                user_state.DriverStateReader(),
            )
        ]
    assert [state.email_key if state else None for state in answers] == [user.email_key] * 3
    assert answers[0] == answers[1] == answers[2]


def test_an_unchanged_address_costs_no_write_and_a_new_one_one_update(
    app: Flask, session: Session, widget: Widget
) -> None:
    engines = (db.engine, widget_engine())
    with writes_on(*engines) as first:
        widget.notes()
        send(widget, **signed(widget))
    # The user, the day the widget first saw them, then the address's key.
    assert first == ["INSERT", "INSERT", "UPDATE"]
    with writes_on(*engines) as again:
        assert send(widget, **signed(widget)).status_code == 204
        # The same address, written so: another signature, the same key.
        assert send(widget, **signed(widget, " ann@example.COM ")).status_code == 204
        widget.notes()  # no address on a page view: the stored one stays
    assert again == []
    with writes_on(*engines) as moved:
        assert send(widget, **signed(widget, "ann@work.example.com")).status_code == 204
    assert moved == ["UPDATE"]
    user = stored_user(session)
    assert user is not None and user.email_key == key_of(app, "ann@work.example.com")


def test_a_user_not_seen_before_is_stored_with_the_key_in_one_insert_beside_their_day(
    app: Flask, session: Session, widget: Widget
) -> None:
    with writes_on(db.engine, widget_engine()) as writes:
        assert send(widget, **signed(widget)).status_code == 204
    assert writes == ["INSERT", "INSERT"]
    user = stored_user(session)
    assert user is not None and user.email_key == key_of(app, ADDRESS)


def test_a_wrong_email_hash_or_user_hash_is_401_and_stores_nothing(
    session: Session, product: Product, widget: Widget
) -> None:
    for forged in (
        "0" * 64,
        "é",
        email_hash(product, "user-2", ADDRESS),  # another user's
        email_hash(product, "user-1", "bob@example.com"),  # another address's
        user_hash(product, "user-1"),  # a user_hash is no email_hash
    ):
        answer = send(widget, email=ADDRESS, email_hash=forged)
        assert answer.status_code == 401
        assert "email_hash" in answer.get_json()["error"]
    for wrong in ("0" * 64, user_hash(product, "user-2"), None):
        answer = send(widget, **signed(widget), user_hash=wrong)
        assert answer.status_code == 401
        assert "user_hash" in answer.get_json()["error"]
    assert stored_user(session) is None

    widget.notes()
    assert send(widget, email=ADDRESS, email_hash="0" * 64).status_code == 401
    user = stored_user(session)
    assert user is not None and user.email_key is None


def test_missing_or_invalid_fields_are_422_and_store_nothing(
    session: Session, widget: Widget
) -> None:
    widget.notes()
    refusals = {
        "body": [send(widget, body=["not", "an", "object"])],
        "user_id": [send(widget, body=signed(widget))],  # anonymous: no one to keep it for
        "email": [
            send(widget, email_hash=signed(widget)["email_hash"]),
            send(widget, email=42, email_hash=signed(widget)["email_hash"]),
            send(widget, **signed(widget, "not an address")),
            send(widget, **signed(widget, "nul\x00@example.com")),
        ],
        "email_hash": [send(widget, email=ADDRESS)],  # unsigned: the host vouches nothing
    }
    for field, answers in refusals.items():
        for answer in answers:
            assert answer.status_code == 422, (field, answer.get_json())
            assert set(answer.get_json()["errors"]) == {field}
    no_json = widget.client.post(
        f"{widget.base}/identity", data="email=ann", content_type="text/plain"
    )
    assert no_json.status_code in (400, 422) and "error" in no_json.get_json()
    user = stored_user(session)
    assert user is not None and user.email_key is None


def test_a_product_without_identity_verification_stores_no_address(
    session: Session, client: FlaskClient
) -> None:
    open_product = make_product(session, require_identity=False)
    anyone = Widget(client, open_product, "user-1")
    anyone.notes()
    # Anyone may claim any user id here, so even a valid signature vouches for nothing,
    # and the address is not looked at: no answer tells a signed one from any other.
    for sent in (
        signed(anyone),
        {**signed(anyone), "user_hash": None},
        {"email": ADDRESS},  # unsigned
        {"email": ADDRESS, "email_hash": "0" * 64},  # wrongly signed
        {**signed(anyone, "not an address")},
        {},
    ):
        answer = send(anyone, **sent)
        assert (answer.status_code, answer.data) == (204, b""), sent
    claimed = stored_user(session)
    assert claimed is not None and claimed.email_key is None


def test_the_notes_request_ignores_an_address_in_its_url(
    app: Flask, session: Session, widget: Widget
) -> None:
    """An address in a URL is never read, so a host page of an older widget teaches
    Tidings nothing that way, and a forged one is no error either."""
    assert widget.notes(**signed(widget)).status_code == 200
    user = stored_user(session)
    assert user is not None and user.email_key is None

    send(widget, **signed(widget))
    for params in (
        signed(widget, "bob@example.com"),
        {"email": "bob@example.com", "email_hash": "0" * 64},
    ):
        assert widget.notes(**params).status_code == 200
    user = stored_user(session)
    assert user is not None and user.email_key == key_of(app, ADDRESS)


def test_the_identity_call_is_open_to_allowed_origins_only(widget: Widget) -> None:
    headers = {
        "Origin": ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    preflight = widget.client.options(f"{widget.base}/identity", headers=headers)
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert "Content-Type" in preflight.headers["Access-Control-Allow-Headers"]
    refused = widget.client.options(
        f"{widget.base}/identity", headers={**headers, "Origin": "https://evil.example"}
    )
    assert refused.status_code == 403

    sent = send(widget, headers={"Origin": ORIGIN}, **signed(widget))
    assert sent.status_code == 204
    assert sent.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert (
        send(widget, headers={"Origin": "https://evil.example"}, **signed(widget)).status_code
        == 403
    )


def test_subscribing_with_a_signed_address_keeps_its_key_too(
    app: Flask, session: Session, widget: Widget
) -> None:
    assert widget.subscribe(ADDRESS, signed=True).status_code == 200
    user = stored_user(session)
    assert user is not None and user.email_key == key_of(app, ADDRESS)
