"""The tickets endpoints of the management API: scopes, the one ticket rule with an error
per field, storing once and updating, no address in any answer, filters, cursor paging,
the OpenAPI document, and generated requests that never break the schema."""

from __future__ import annotations

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from sqlalchemy import func, select

from announcements import apikeys, tickets
from announcements.models import EndUser, Ticket, utcnow
from tests.factories import make_product
from tests.test_api_fuzz import CHECKS

PATH = "/api/v1/products/acme/tickets"
BOTH = ["tickets:read", "tickets:write"]


@pytest.fixture
def product(session):
    return make_product(session, slug="acme")


def key_for(session, product, scopes=BOTH) -> dict[str, str]:
    _, raw = apikeys.create(session, product, "desk", scopes, by=None, now=utcnow())
    return {"Authorization": f"Bearer {raw}"}


def count(session) -> int:
    return session.scalar(select(func.count()).select_from(Ticket))


def ticket(**overrides):
    return {
        "source": "jira",
        "external_id": "SUP-1",
        "created_at": "2026-01-05T10:00:00+01:00",
        "email": "Ann@Example.com",
        **overrides,
    }


def test_a_ticket_is_stored_once_updated_and_never_shows_the_address(
    client, session, product
) -> None:
    headers = key_for(session, product)
    ann = EndUser(
        product_id=product.id,
        external_id="ann-7",
        email_key=tickets.email_key("test-secret", "ann@example.com"),
    )
    session.add(ann)
    session.commit()
    body = ticket(tags=["Export", "export", "Billing"], subject="CSV export", app_version="2.4.0")
    created = client.post(PATH, headers=headers, json=body)
    assert created.status_code == 200, created.json
    stored = created.json["ticket"]
    assert created.json["status"] == "created"
    assert {k: v for k, v in stored.items() if k not in {"id", "received_at", "updated_at"}} == {
        "source": "jira",
        "external_id": "SUP-1",
        "created_at": "2026-01-05T09:00:00Z",
        "requester_external_id": None,
        "end_user_external_id": "ann-7",
        "app_version": "2.4.0",
        "tags": ["export", "billing"],
        "subject": "CSV export",
    }
    assert "example.com" not in created.get_data(as_text=True).lower()
    again = client.post(PATH, headers=headers, json=body)
    assert again.json["status"] == "unchanged" and again.json["ticket"]["id"] == stored["id"]
    changed = client.post(PATH, headers=headers, json={**body, "tags": ["billing"]})
    assert changed.json["status"] == "updated" and changed.json["ticket"]["tags"] == ["billing"]
    assert count(session) == 1
    listed = client.get(PATH, headers=headers)
    assert "example.com" not in listed.get_data(as_text=True).lower()
    assert listed.json["tickets"][0]["end_user_external_id"] == "ann-7"


def test_a_post_without_tags_keeps_the_stored_ones_and_an_empty_list_clears_them(
    client, session, product
) -> None:
    headers = key_for(session, product)
    created = client.post(PATH, headers=headers, json=ticket(tags=["Export"]))
    assert created.json["ticket"]["tags"] == ["export"]
    again = client.post(PATH, headers=headers, json=ticket(subject="CSV export"))
    assert again.json["status"] == "updated"
    assert again.json["ticket"]["tags"] == ["export"]
    assert client.post(PATH, headers=headers, json=ticket(tags=None)).json["status"] == "unchanged"
    cleared = client.post(PATH, headers=headers, json=ticket(tags=[]))
    assert cleared.json["status"] == "updated" and cleared.json["ticket"]["tags"] == []
    session.expire_all()
    assert session.scalars(select(Ticket.tag_text)).all() == ["|"]


def test_scopes_are_enforced(client, session, product) -> None:
    other = make_product(session, slug="other")
    notes_only = key_for(session, product, ["notes:read", "notes:write"])
    reader = key_for(session, product, ["tickets:read"])
    writer = key_for(session, product, ["tickets:write"])
    elsewhere = key_for(session, other)
    refused = client.post(PATH, headers=notes_only, json=ticket())
    assert refused.status_code == 403
    assert refused.json == {"error": "This key lacks the “tickets:write” scope."}
    assert client.post(PATH, headers=reader, json=ticket()).status_code == 403
    assert client.get(PATH, headers=notes_only).json == {
        "error": "This key lacks the “tickets:read” scope."
    }
    assert client.get(PATH, headers=writer).status_code == 403
    assert client.post(PATH, headers=elsewhere, json=ticket()).status_code == 403
    assert client.post(PATH, json=ticket()).status_code == 401
    assert count(session) == 0
    assert client.post(PATH, headers=writer, json=ticket()).status_code == 200
    assert client.get(PATH, headers=reader).status_code == 200


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({}, {"source", "external_id", "created_at"}),
        (ticket(created_at="2026-01-05T10:00:00"), {"created_at"}),
        (ticket(created_at="2999-01-01T00:00:00Z"), {"created_at"}),
        (ticket(email=None), {"user_id"}),
        (ticket(email="not an address"), {"email"}),
        (ticket(source="Zen Desk"), {"source"}),
        (ticket(tags=[str(n) for n in range(51)]), {"tags"}),
        (ticket(tags="export"), {"tags"}),
        (ticket(external_id=5), {"external_id"}),
        (ticket(subject="s" * 501), {"subject"}),
        (ticket(priority="high"), {"priority"}),
        (ticket(user_id="a\x00b"), {"user_id"}),
    ],
)
def test_a_ticket_that_breaks_a_rule_is_422_naming_each_field(
    client, session, product, body, errors
) -> None:
    response = client.post(PATH, headers=key_for(session, product), json=body)
    assert response.status_code == 422, response.json
    assert set(response.json["errors"]) == errors
    assert count(session) == 0


def test_the_future_is_refused_in_the_ticket_rule_s_words(client, session, product) -> None:
    response = client.post(
        PATH, headers=key_for(session, product), json=ticket(created_at="2999-01-01T00:00:00Z")
    )
    assert response.json["errors"] == {"created_at": "That time is in the future."}


@pytest.mark.parametrize("data", [b"", b"{", b"[]"])
def test_a_body_that_is_no_json_object_is_refused(client, session, product, data) -> None:
    response = client.post(
        PATH, headers={**key_for(session, product), "Content-Type": "application/json"}, data=data
    )
    assert response.status_code in (400, 422) and "error" in response.json
    assert response.status_code == (422 if data == b"[]" else 400)


def _store_many(client, headers) -> None:
    made = [
        ("zendesk", "1", "2026-01-01T10:00:00Z", "seen"),
        ("zendesk", "2", "2026-01-02T10:00:00Z", None),
        ("zendesk", "3", "2026-01-03T10:00:00Z", "seen"),
        ("jira", "4", "2026-01-04T10:00:00Z", None),
        ("jira", "5", "2026-01-05T10:00:00Z", "seen"),
        ("jira", "6", "2026-01-06T10:00:00Z", None),
        ("jira", "7", "2026-01-07T10:00:00Z", None),
    ]
    for source, external_id, created_at, user in made:
        body = {
            "source": source,
            "external_id": external_id,
            "created_at": created_at,
            "user_id": user or f"unknown-{external_id}",
        }
        assert client.post(PATH, headers=headers, json=body).status_code == 200


def _ids(response) -> list[str]:
    assert response.status_code == 200, response.json
    return [t["external_id"] for t in response.json["tickets"]]


def test_the_list_pages_by_cursor_latest_first(client, session, product) -> None:
    headers = key_for(session, product)
    _store_many(client, headers)
    first = client.get(PATH + "?limit=3", headers=headers)
    assert _ids(first) == ["7", "6", "5"]
    second = client.get(PATH + f"?limit=3&cursor={first.json['next_cursor']}", headers=headers)
    assert _ids(second) == ["4", "3", "2"]
    third = client.get(PATH + f"?limit=3&cursor={second.json['next_cursor']}", headers=headers)
    assert _ids(third) == ["1"] and third.json["next_cursor"] is None
    bad = client.get(PATH + "?cursor=bm9wZQ", headers=headers)
    assert bad.status_code == 422 and set(bad.json["errors"]) == {"cursor"}
    assert client.get(PATH + "?limit=0", headers=headers).status_code == 422


def test_the_list_filters_by_source_match_and_time(client, session, product) -> None:
    headers = key_for(session, product)
    session.add(EndUser(product_id=product.id, external_id="seen"))
    session.commit()
    _store_many(client, headers)

    def ids(query: str) -> list[str]:
        return _ids(client.get(f"{PATH}?{query}", headers=headers))

    assert ids("source=zendesk") == ["3", "2", "1"]
    assert ids("source=Jira") == ["7", "6", "5", "4"]
    assert ids("matched=true") == ["5", "3", "1"]
    assert ids("matched=false") == ["7", "6", "4", "2"]
    assert ids("created_after=2026-01-03T10:00:00Z&created_before=2026-01-06T10:00:00Z") == [
        "5",
        "4",
        "3",
    ]
    assert ids("created_after=2026-01-05T11:00:00%2B01:00&source=jira&matched=true") == ["5"]
    bad = client.get(f"{PATH}?created_after=yesterday&matched=maybe", headers=headers)
    assert bad.status_code == 422
    assert set(bad.json["errors"]) == {"created_after", "matched"}


def test_the_openapi_document_describes_the_tickets_endpoints(client) -> None:
    spec = client.get("/api/v1/openapi.json").json
    path = spec["paths"]["/api/v1/products/{slug}/tickets"]
    assert set(path) == {"get", "post"}
    assert path["post"]["description"] == "Needs a key with the `tickets:write` scope."
    assert path["get"]["description"] == "Needs a key with the `tickets:read` scope."
    schema = path["post"]["requestBody"]["content"]["application/json"]["schema"]
    create = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    assert set(create["required"]) == {"source", "external_id", "created_at"}
    assert create["additionalProperties"] is False
    assert create["properties"]["email"]["anyOf"][0]["maxLength"] == 254
    assert "the stored tags stay" in create["properties"]["tags"]["description"]
    impact = spec["components"]["schemas"]["ImpactFigures"]["properties"]
    assert "first seen before the window ended" in impact["exposed"]["description"]
    holdback = spec["components"]["schemas"]["NoteCreate"]["properties"]["holdback_percent"]
    assert "refused (422)" in holdback["description"]
    assert "email" not in spec["components"]["schemas"]["Ticket"]["properties"]
    names = [p["name"] for p in path["get"]["parameters"]]
    assert names == [
        "slug",
        "source",
        "matched",
        "created_after",
        "created_before",
        "cursor",
        "limit",
    ]
    assert {"401", "403", "422", "429"} <= set(path["post"]["responses"])


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_generated_request_breaks_the_tickets_endpoints(app, session, mode) -> None:
    product = make_product(session, slug="acme")
    headers = key_for(session, product)
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    operations = [
        result.ok() for result in schema.get_all_operations() if "/tickets" in result.ok().path
    ]
    assert len(operations) == 2

    for operation in operations:

        @settings(
            max_examples=60,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
            phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
        )
        @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
        def check(case) -> None:
            case.path_parameters["slug"] = "acme"
            case.call_and_validate(headers=headers, checks=CHECKS)

        check()
