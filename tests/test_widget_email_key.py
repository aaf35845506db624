"""The widget learns the address a host signed for its user, as a keyed hash that help-desk
tickets are matched by, never as the address; on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import hmac

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


def key_of(app: Flask, address: str) -> str:
    """The key as the design states it, computed here on its own: hex HMAC-SHA256 with the
    app's secret key of "ticket-email", a line feed and the address, lower-cased."""
    message = f"ticket-email\n{address.strip().lower()}".encode()
    return hmac.new(app.config["SECRET_KEY"].encode(), message, hashlib.sha256).hexdigest()


@pytest.fixture
def product(session: Session) -> Product:
    return make_product(session)


@pytest.fixture
def widget(client: FlaskClient, product: Product) -> Widget:
    return Widget(client, product, "user-1")


def signed(widget: Widget, address: str = ADDRESS) -> dict[str, str]:
    assert widget.user_id is not None
    return {"email": address, "email_hash": email_hash(widget.product, widget.user_id, address)}


def stored_user(session: Session) -> EndUser | None:
    session.expire_all()
    return session.scalar(select(EndUser))


def test_a_signed_address_is_kept_as_its_keyed_hash_only(
    app: Flask, session: Session, widget: Widget
) -> None:
    answer = widget.notes(**signed(widget))
    assert answer.status_code == 200
    user = stored_user(session)
    assert user is not None and user.email_key == key_of(app, ADDRESS)
    row = session.execute(select(EndUser.__table__)).one()
    assert not any("example.com" in str(value).lower() for value in row)
    assert session.scalar(select(func.count()).select_from(Subscriber)) == 0

    # Every state reader hands the key on, so the next view can tell it is unchanged.
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
        widget.notes(**signed(widget))
    assert first == ["INSERT"]
    with writes_on(*engines) as again:
        widget.notes(**signed(widget))
        widget.notes(**signed(widget, " ann@example.COM "))  # the same address, written so
        widget.notes()  # none sent: the stored one stays
    assert again == []
    with writes_on(*engines) as moved:
        widget.notes(**signed(widget, "ann@work.example.com"))
    assert moved == ["UPDATE"]
    user = stored_user(session)
    assert user is not None and user.email_key == key_of(app, "ann@work.example.com")


def test_a_known_user_learns_their_address_in_one_update(
    app: Flask, session: Session, widget: Widget
) -> None:
    widget.notes()
    user = stored_user(session)
    assert user is not None and user.email_key is None
    with writes_on(db.engine, widget_engine()) as writes:
        widget.notes(**signed(widget))
    assert writes == ["UPDATE"]
    user = stored_user(session)
    assert user is not None and user.email_key == key_of(app, ADDRESS)


def test_a_wrong_email_hash_is_401_and_stores_nothing(
    session: Session, product: Product, widget: Widget
) -> None:
    for forged in (
        "0" * 64,
        "é",
        email_hash(product, "user-2", ADDRESS),  # another user's
        email_hash(product, "user-1", "bob@example.com"),  # another address's
        user_hash(product, "user-1"),  # a user_hash is no email_hash
    ):
        answer = widget.notes(email=ADDRESS, email_hash=forged)
        assert answer.status_code == 401
        assert "email_hash" in answer.get_json()["error"]
    assert stored_user(session) is None
    widget.notes()
    assert widget.notes(email=ADDRESS, email_hash="0" * 64).status_code == 401
    user = stored_user(session)
    assert user is not None and user.email_key is None


def test_an_address_without_a_signature_or_identity_verification_is_ignored(
    session: Session, client: FlaskClient, widget: Widget
) -> None:
    assert widget.notes(email=ADDRESS).status_code == 200  # not signed: not trusted
    user = stored_user(session)
    assert user is not None and user.email_key is None

    open_product = make_product(session, require_identity=False)
    anyone = Widget(client, open_product, "user-1")
    # Anyone may claim any user id here, so even a valid signature vouches for nothing.
    assert anyone.notes(**signed(anyone)).status_code == 200
    session.expire_all()
    claimed = session.scalar(select(EndUser).where(EndUser.product_id == open_product.id))
    assert claimed is not None and claimed.email_key is None


def test_signed_text_that_is_no_address_gets_no_key_and_the_widget_works_on(
    session: Session, widget: Widget
) -> None:
    answer = widget.notes(**signed(widget, "not an address"))
    assert answer.status_code == 200
    user = stored_user(session)
    assert user is not None and user.email_key is None
    assert widget.notes(**signed(widget, "nul\x00@example.com")).status_code == 422


def test_subscribing_with_a_signed_address_keeps_its_key_too(
    app: Flask, session: Session, widget: Widget
) -> None:
    assert widget.subscribe(ADDRESS, signed=True).status_code == 200
    user = stored_user(session)
    assert user is not None and user.email_key == key_of(app, ADDRESS)
