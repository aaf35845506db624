"""The privacy API: an end user's export and erasure with a key of the ``privacy`` scope,
for ids with slashes, addresses, spaces and letters beyond ASCII; JSON errors for
everything else, never a 500. On SQLite and PostgreSQL."""

from __future__ import annotations

from urllib.parse import quote

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from announcements import apikeys, state_cache
from announcements.models import AuditEvent, EndUser, Product, utcnow
from app.extensions import db
from tests.factories import make_end_user, make_product
from tests.test_privacy import ADDRESS, COMMENT, EXTERNAL_ID, make_person, traces_in_database
from tests.test_widget_api import Widget

BASE = "/api/v1/products/{slug}/end-users/{user}"


def key_for(session: Session, product: Product, scopes: list[str] | None = None) -> dict[str, str]:
    _, raw = apikeys.create(
        session, product, "dpo", ["privacy"] if scopes is None else scopes, by=None, now=utcnow()
    )
    return {"Authorization": f"Bearer {raw}"}


def path(user: str, slug: str = "acme", *, export: bool = False, encode: bool = True) -> str:
    shown = quote(user, safe="") if encode else user
    return BASE.format(slug=slug, user=shown) + ("/export" if export else "")


def test_export_then_erase_then_nothing(client: FlaskClient, session: Session) -> None:
    person = make_person(client, session)
    headers = key_for(session, person.product)

    exported = client.get(path(EXTERNAL_ID, export=True), headers=headers)
    assert exported.status_code == 200, exported.get_json()
    data = exported.get_json()
    assert data["end_user"]["external_id"] == EXTERNAL_ID
    assert data["reactions"][0]["comment"] == COMMENT
    assert data["subscriptions"][0]["email"] == ADDRESS
    assert len(data["reads"]) == 2 and len(data["tickets"]) == 2

    erased = client.delete(path(EXTERNAL_ID), headers=headers)
    assert erased.status_code == 200, erased.get_json()
    assert erased.get_json()["erased"]["reads"] == 2
    assert erased.get_json()["erased"]["subscribers"] == 1
    session.expire_all()
    assert traces_in_database(session) == []
    actions = session.scalars(select(AuditEvent.action).where(AuditEvent.action.like("privacy.%")))
    assert sorted(actions) == ["privacy.erased", "privacy.exported"]

    for answer in (
        client.delete(path(EXTERNAL_ID), headers=headers),
        client.get(path(EXTERNAL_ID, export=True), headers=headers),
    ):
        assert answer.status_code == 404 and "error" in answer.get_json()
    # Nor does the support lookup find them any more.
    support = key_for(session, person.product, ["support:read"])
    assert client.get(path(EXTERNAL_ID), headers=support).status_code == 404


@pytest.mark.parametrize(
    "external_id",
    ["team/42", "ann@example.org", "with space", "Zoë 日本", "a/b/export", "100%", "x?y#z"],
)
def test_any_id_the_widget_takes_is_reached(
    client: FlaskClient, session: Session, external_id: str
) -> None:
    product = make_product(session, slug="acme")
    make_end_user(session, product, external_id)
    headers = key_for(session, product)
    exported = client.get(path(external_id, export=True), headers=headers)
    assert exported.status_code == 200, exported.get_json()
    assert exported.get_json()["end_user"]["external_id"] == external_id
    assert client.delete(path(external_id), headers=headers).status_code == 200
    assert client.delete(path(external_id), headers=headers).status_code == 404


def test_a_slash_may_be_sent_as_it_is(client: FlaskClient, session: Session) -> None:
    product = make_product(session, slug="acme")
    make_end_user(session, product, "team/42")
    headers = key_for(session, product)
    answer = client.get(path("team/42", export=True, encode=False), headers=headers)
    assert answer.status_code == 200
    assert client.delete(path("team/42", encode=False), headers=headers).status_code == 200


def test_scopes_products_and_strangers(client: FlaskClient, session: Session) -> None:
    product = make_product(session, slug="acme")
    other = make_product(session, slug="other")
    make_end_user(session, product, "ann")
    make_end_user(session, other, "bob")
    allowed = key_for(session, product)
    cases = [
        ({}, 401),
        ({"Authorization": "Bearer nope"}, 401),
        (key_for(session, product, ["support:read", "notes:write"]), 403),
        (key_for(session, other), 403),  # a key of another product
    ]
    for headers, status in cases:
        for answer in (
            client.get(path("ann", export=True), headers=headers),
            client.delete(path("ann"), headers=headers),
        ):
            assert answer.status_code == status and "error" in answer.get_json()
    # Another product's user, through this product: not found.
    for answer in (
        client.get(path("bob", export=True), headers=allowed),
        client.delete(path("bob"), headers=allowed),
    ):
        assert answer.status_code == 404 and "error" in answer.get_json()
    # Too long, a NUL no database keeps, bytes that are no UTF-8.
    for strange in (quote("x" * 300), quote("a\x00b"), "%ED%A0%80", "%FF"):
        answer = client.delete(path(strange, encode=False), headers=allowed)
        assert answer.status_code == 404 and "error" in answer.get_json()
    assert session.scalar(select(EndUser.erased_at).where(EndUser.external_id == "ann")) is None


def test_the_openapi_document_describes_both_operations(client: FlaskClient) -> None:
    document = client.get("/api/v1/openapi.json").get_json()
    export = document["paths"]["/api/v1/products/{slug}/end-users/{external_id}/export"]["get"]
    erase = document["paths"]["/api/v1/products/{slug}/end-users/{external_id}"]["delete"]
    for operation in (export, erase):
        assert "`privacy`" in operation["description"]
        assert set(operation["responses"]) == {"200", "401", "403", "404", "429"}


# The widget's kept answers ------------------------------------------------------------


def test_no_kept_widget_answer_survives_the_erasure(cached: Flask, redis_url: str) -> None:
    client = cached.test_client()
    session = db.session()
    person = make_person(client, session)
    widget = Widget(client, person.product, EXTERNAL_ID)
    assert widget.notes(version="1.1.0").status_code == 200
    kept = redis.Redis.from_url(redis_url)
    key = state_cache.user_key(person.product.id, EXTERNAL_ID)
    assert kept.exists(key)

    answer = client.delete(path(EXTERNAL_ID), headers=key_for(session, person.product))
    assert answer.status_code == 200
    assert not kept.exists(key)
    assert not [k for k in kept.scan_iter() if EXTERNAL_ID.encode() in k]
