"""The management API: keys and scopes, notes end to end, validation that names each bad
field and changes nothing, cursor paging, the rate limit, imports and the OpenAPI page."""

from __future__ import annotations

import base64
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from announcements import apikeys
from announcements.models import ApiKey, AuditEvent, Note, Subscriber, SubscriberStatus, utcnow
from tests.conftest import SHARED_TESTDATA
from tests.factories import make_note, make_product

ALL = ["notes:read", "notes:write", "import", "subscribers:read"]


@pytest.fixture
def product(session):
    return make_product(session, slug="acme")


def key_for(session, product, scopes=ALL) -> dict[str, str]:
    _, raw = apikeys.create(session, product, "ci", scopes, by=None, now=utcnow())
    return {"Authorization": f"Bearer {raw}"}


def count_notes(session) -> int:
    return session.scalar(select(func.count()).select_from(Note))


def test_keys_are_stored_hashed_and_shown_once(session, product) -> None:
    key, raw = apikeys.create(session, product, "ci", ["notes:read"], by=None, now=utcnow())
    stored = session.scalar(select(ApiKey))
    assert raw.startswith(stored.prefix + "_") and raw not in (stored.key_hash, stored.prefix)
    assert apikeys.authenticate(session, raw) is key
    assert apikeys.authenticate(session, raw[:-1] + ("a" if raw[-1] != "a" else "b")) is None
    assert apikeys.authenticate(session, "tid_nothing_here") is None


@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [
        ({}, 401, "Bearer"),
        ({"Authorization": "Basic abc"}, 401, "Bearer"),
        ({"Authorization": "Bearer tid_00000000_forged"}, 401, "not valid"),
    ],
)
def test_calls_without_a_valid_key_are_401(client, product, headers, status, message) -> None:
    response = client.get("/api/v1/products/acme/notes", headers=headers)
    assert response.status_code == status
    assert message in response.json["error"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_revoked_keys_wrong_scopes_and_other_products_are_refused(client, session, product):
    other = make_product(session, slug="other")
    readonly = key_for(session, product, ["notes:read"])
    assert client.get("/api/v1/products/acme/notes", headers=readonly).status_code == 200
    response = client.post("/api/v1/products/acme/notes", headers=readonly, json={})
    assert response.status_code == 403 and "notes:write" in response.json["error"]
    assert client.get(f"/api/v1/products/{other.slug}/notes", headers=readonly).status_code == 403
    assert client.get("/api/v1/products/acme/subscribers", headers=readonly).status_code == 403
    key = session.scalar(select(ApiKey))
    apikeys.revoke(session, product, key.id, by=None, now=utcnow())
    assert client.get("/api/v1/products/acme/notes", headers=readonly).status_code == 401


def test_a_note_is_written_published_changed_archived_and_a_draft_deleted(
    client, session, product
) -> None:
    headers = key_for(session, product)
    created = client.post(
        "/api/v1/products/acme/notes",
        headers=headers,
        json={"version": "2.4.0", "title": "PDF export", "category": "Added", "body_md": "**New**"},
    )
    assert created.status_code == 201
    note = created.json
    assert note["status"] == "draft" and note["html"] == "<p><strong>New</strong></p>"
    assert note["url"] is None  # drafts have no public page
    nid = note["id"]

    published = client.post(f"/api/v1/products/acme/notes/{nid}/publish", headers=headers)
    assert published.status_code == 200 and published.json["status"] == "published"
    assert published.json["url"].endswith(f"/changelog/acme/2.4.0#note-{nid}")
    assert (
        client.post(f"/api/v1/products/acme/notes/{nid}/publish", headers=headers).status_code
        == 409
    )

    changed = client.patch(
        f"/api/v1/products/acme/notes/{nid}", headers=headers, json={"title": "PDF and CSV export"}
    )
    assert changed.status_code == 200
    assert changed.json["title"] == "PDF and CSV export" and changed.json["body_md"] == "**New**"
    assert client.get(f"/api/v1/products/acme/notes/{nid}", headers=headers).json["title"] == (
        "PDF and CSV export"
    )
    archived = client.post(f"/api/v1/products/acme/notes/{nid}/archive", headers=headers)
    assert archived.json["status"] == "archived"
    assert client.delete(f"/api/v1/products/acme/notes/{nid}", headers=headers).status_code == 409

    draft = client.post(
        "/api/v1/products/acme/notes",
        headers=headers,
        json={"version": "2.5.0", "title": "Soon", "category": "Changed"},
    ).json
    assert (
        client.delete(f"/api/v1/products/acme/notes/{draft['id']}", headers=headers).status_code
        == 204
    )
    assert (
        client.get(f"/api/v1/products/acme/notes/{draft['id']}", headers=headers).status_code == 404
    )
    actions = session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()
    assert "note.published" in actions and "note.deleted" in actions


def test_publish_now_or_later_in_the_create_call(client, session, product) -> None:
    headers = key_for(session, product)
    later = (utcnow() + timedelta(days=2)).isoformat()
    scheduled = client.post(
        "/api/v1/products/acme/notes",
        headers=headers,
        json={"version": "3.0.0", "title": "Later", "category": "Added", "publish_at": later},
    )
    assert scheduled.status_code == 201 and scheduled.json["status"] == "scheduled"
    now = client.post(
        "/api/v1/products/acme/notes",
        headers=headers,
        json={"version": "3.0.0", "title": "Now", "category": "Fixed", "publish": True},
    )
    assert now.json["status"] == "published"
    both = client.post(
        "/api/v1/products/acme/notes",
        headers=headers,
        json={
            "version": "3.0.0",
            "title": "Both",
            "category": "Fixed",
            "publish": True,
            "publish_at": later,
        },
    )
    assert both.status_code == 422 and set(both.json["errors"]) == {"publish_at"}


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"version": "2.0", "title": 5, "category": "Added"}, {"title"}),
        ({"version": "2.0", "title": "x", "category": "Improved"}, {"category"}),
        ({"version": "two", "title": "x", "category": "Added"}, {"version"}),
        ({"version": "2.0", "title": "x", "category": "Added", "colour": "red"}, {"colour"}),
        ({"version": "2.0", "title": "x", "category": "Added", "important": "yes"}, {"important"}),
        (
            {"version": "2.0", "title": "x", "category": "Added", "publish_at": "2030-01-01T10:00"},
            {"publish_at"},
        ),
        (
            {"version": "2.0", "title": "x", "category": "Added", "audience": {"nope": 1}},
            {"audience.nope"},
        ),
        ({"title": "x"}, {"version", "category"}),
    ],
)
def test_bad_fields_are_named_and_nothing_is_written(client, session, product, body, fields):
    headers = key_for(session, product)
    response = client.post("/api/v1/products/acme/notes", headers=headers, json=body)
    assert response.status_code == 422
    assert set(response.json["errors"]) == fields, response.json
    assert response.json["error"]
    assert count_notes(session) == 0


@pytest.mark.parametrize(
    ("data", "status", "message"),
    [
        (b"{not json", 400, "The body is not valid JSON."),
        (b"", 400, "Send the fields as a JSON object."),
        (b"[1, 2]", 422, "Input should be an object"),
        (b'"text"', 422, "Input should be an object"),
    ],
)
def test_a_body_that_is_not_a_json_object_is_refused(
    client, session, product, data, status, message
) -> None:
    """Unreadable JSON is a 400; JSON that is no object is a 422, like any bad field."""
    response = client.post(
        "/api/v1/products/acme/notes",
        headers={**key_for(session, product), "Content-Type": "application/json"},
        data=data,
    )
    assert response.status_code == status
    assert response.json["errors"] == {"body": message}
    assert message in response.json["error"]
    assert count_notes(session) == 0


def test_lists_filter_and_page_with_a_cursor(client, session, product) -> None:
    for number in range(7):
        make_note(
            session, product, version=f"1.{number}.0", category="Fixed" if number % 2 else "Added"
        )
    make_note(session, product, status="draft", version="2.0.0")
    headers = key_for(session, product)
    seen, cursor = [], None
    while True:
        url = "/api/v1/products/acme/notes?limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = client.get(url, headers=headers).json
        seen += [note["id"] for note in page["notes"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 8 and seen == sorted(seen, reverse=True)
    drafts = client.get("/api/v1/products/acme/notes?status=draft", headers=headers).json
    assert [n["version"] for n in drafts["notes"]] == ["2.0.0"]
    fixed = client.get("/api/v1/products/acme/notes?category=Fixed", headers=headers).json
    assert len(fixed["notes"]) == 3
    one = client.get("/api/v1/products/acme/notes?version=1.4.0", headers=headers).json
    assert [n["version"] for n in one["notes"]] == ["1.4.0"]
    bad = client.get("/api/v1/products/acme/notes?cursor=%%%&limit=500", headers=headers)
    assert bad.status_code == 422 and "limit" in bad.json["errors"]
    for query, field in (
        ("limit=500", "limit"),
        ("cursor=%%%", "cursor"),
        ("cursor=abc", "cursor"),
    ):
        refused = client.get(f"/api/v1/products/acme/notes?{query}", headers=headers)
        assert refused.status_code == 422 and set(refused.json["errors"]) == {field}, query
    # Found by the fuzzer: a NUL in the version filter reached PostgreSQL, which refuses it.
    nul = client.get("/api/v1/products/acme/notes?version=1.4%00", headers=headers)
    assert nul.status_code == 422
    assert nul.json["errors"] == {"version": "Holds a character that is not text."}
    words = client.get("/api/v1/products/acme/notes?version=next+week", headers=headers)
    assert words.status_code == 422
    assert words.json["errors"] == {"version": "Not a version, such as 2.4.0."}
    listed = client.get("/api/v1/products/acme/versions", headers=headers).json["versions"]
    assert [v["version"] for v in listed][:3] == ["2.0.0", "1.6.0", "1.5.0"]
    assert listed[0]["published"] == 0 and listed[1]["published"] == 1


def test_subscribers_are_listed_for_keys_with_the_scope(client, session, product) -> None:
    for number, status in enumerate(SubscriberStatus):
        session.add(
            Subscriber(product_id=product.id, email=f"r{number}@example.com", status=status)
        )
    session.commit()
    headers = key_for(session, product, ["subscribers:read"])
    every = client.get("/api/v1/products/acme/subscribers", headers=headers).json
    assert len(every["subscribers"]) == len(SubscriberStatus)
    confirmed = client.get(
        "/api/v1/products/acme/subscribers?status=confirmed", headers=headers
    ).json["subscribers"]
    assert [s["status"] for s in confirmed] == ["confirmed"]


def test_the_rate_limit_is_per_key_with_headers(app_factory, session, product) -> None:
    limited = app_factory(RATELIMIT_ENABLED=True, RATELIMIT_API="3 per minute")
    client = limited.test_client()
    first, second = key_for(session, product), key_for(session, product)
    answers = [client.get("/api/v1/products/acme/versions", headers=first) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[0].headers["X-RateLimit-Limit"] == "3"
    assert answers[1].headers["X-RateLimit-Remaining"] == "1"
    assert "X-RateLimit-Reset" in answers[0].headers
    assert "error" in answers[3].json
    assert client.get("/api/v1/products/acme/versions", headers=second).status_code == 200


def test_the_import_endpoint_reports_and_is_idempotent(client, session, product) -> None:
    path = SHARED_TESTDATA / "changelogs" / "olivierlacan__keep-a-changelog__CHANGELOG.md"
    if not path.exists():
        pytest.skip("../shared/testdata/changelogs/ is absent")
    headers = key_for(session, product, ["import"])

    def send(**form):
        with path.open("rb") as file:
            return client.post(
                "/api/v1/products/acme/import",
                headers=headers,
                data={"file": (file, "CHANGELOG.md"), **form},
                content_type="multipart/form-data",
            )

    dry = send(dry_run="true")
    assert dry.status_code == 200 and dry.json["counts"]["create"] == 14
    assert count_notes(session) == 0
    done = send(publish="true")
    assert done.json["counts"]["create"] == 14 and done.json["dry_run"] is False
    assert any("Unreleased" in p["reason"] for p in done.json["problems"])
    again = send(publish="true")
    assert again.json["counts"]["unchanged"] == 14 and again.json["counts"]["create"] == 0
    missing = client.post("/api/v1/products/acme/import", headers=headers, data={})
    assert missing.status_code == 422 and set(missing.json["errors"]) == {"file"}
    assert (
        client.post("/api/v1/products/acme/notes", headers=headers, json={}).status_code == 403
    )  # an import key cannot write notes


def test_the_openapi_document_and_docs_page(client) -> None:
    spec = client.get("/api/v1/openapi.json").json
    assert spec["openapi"] == "3.1.0"
    create = spec["paths"]["/api/v1/products/{slug}/notes"]["post"]
    schema = create["requestBody"]["content"]["application/json"]["schema"]
    note_create = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    assert set(note_create["required"]) == {"version", "title", "category"}
    assert note_create["additionalProperties"] is False
    assert {"401", "403", "422", "429"} <= set(create["responses"])
    with client.get("/api/v1/docs") as page:
        assert page.status_code == 200 and b"/static/api/docs.js" in page.data


def test_the_cli_creates_a_key_that_works(runner, client, product) -> None:
    made = runner.invoke(
        args=["api-keys", "create", "acme", "--name", "ci", "--scopes", "notes:write,import"]
    )
    assert made.exit_code == 0, made.output
    raw = made.stdout.strip()
    assert raw.startswith("tid_") and "notes:write, import" in made.stderr
    response = client.post(
        "/api/v1/products/acme/notes",
        headers={"Authorization": f"Bearer {raw}"},
        json={"version": "1.0.0", "title": "From CI", "category": "Added", "publish": True},
    )
    assert response.status_code == 201
    refused = runner.invoke(args=["api-keys", "create", "acme", "--name", "x", "--scopes", "root"])
    assert refused.exit_code != 0 and "Unknown scope root" in refused.output
    missing = runner.invoke(args=["api-keys", "create", "nope", "--name", "x"])
    assert missing.exit_code != 0 and "No product" in missing.output


def test_a_patch_cannot_clear_required_fields_and_can_clear_the_audience(
    client, session, product
) -> None:
    headers = key_for(session, product)
    note = client.post(
        "/api/v1/products/acme/notes",
        headers=headers,
        json={
            "version": "1.0.0",
            "title": "For admins",
            "category": "Added",
            "audience": {"conditions": [{"attribute": "role", "op": "eq", "value": "admin"}]},
        },
    ).json
    assert note["audience"] == {
        "match": "all",
        "conditions": [{"attribute": "role", "op": "eq", "value": "admin"}],
    }
    url = f"/api/v1/products/acme/notes/{note['id']}"
    refused = client.patch(url, headers=headers, json={"title": None, "body_md": None})
    assert refused.status_code == 422 and set(refused.json["errors"]) == {"title", "body_md"}
    nul = client.patch(url, headers=headers, json={"title": "A\x00", "body_md": "B\x00"})
    assert nul.status_code == 422 and set(nul.json["errors"]) == {"title", "body_md"}
    cleared = client.patch(url, headers=headers, json={"audience": None})
    assert cleared.json["audience"] is None and cleared.json["title"] == "For admins"


@pytest.mark.parametrize(
    "number",
    [
        "9" * 20,  # more than any database integer holds
        str(2**31),  # more than an id on PostgreSQL holds
        "0",
        "-5",
    ],
)
@pytest.mark.parametrize("listing", ["notes", "subscribers"])
def test_a_cursor_no_page_gave_out_is_refused(client, session, product, listing, number) -> None:
    cursor = base64.urlsafe_b64encode(number.encode()).decode().rstrip("=")
    response = client.get(
        f"/api/v1/products/acme/{listing}?cursor={cursor}", headers=key_for(session, product)
    )
    assert response.status_code == 422
    assert response.json["errors"] == {"cursor": "This cursor is not one we gave out."}


# Within a day of the calendar's ends, a time with an offset has no UTC equivalent.
OFF_THE_CALENDAR = ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"]


@pytest.mark.parametrize("moment", OFF_THE_CALENDAR)
@pytest.mark.parametrize("field", ["publish_at", "expires_at"])
def test_times_with_no_utc_equivalent_are_refused_and_change_nothing(
    client, session, product, field, moment
) -> None:
    headers = key_for(session, product)
    note = {"version": "1.0.0", "title": "Far off", "category": "Added"}
    created = client.post(
        "/api/v1/products/acme/notes", headers=headers, json={**note, field: moment}
    )
    assert created.status_code == 422 and set(created.json["errors"]) == {field}
    assert count_notes(session) == 0
    nid = client.post("/api/v1/products/acme/notes", headers=headers, json=note).json["id"]
    patched = client.patch(
        f"/api/v1/products/acme/notes/{nid}", headers=headers, json={field: moment}
    )
    assert patched.status_code == 422 and set(patched.json["errors"]) == {field}
    read = client.get(f"/api/v1/products/acme/notes/{nid}", headers=headers).json
    assert read["status"] == "draft" and read["expires_at"] is None


def test_parallel_creates_of_one_note_leave_one_row(app, session, product) -> None:
    """Sixteen pipelines post the same note at once: one is written, the rest get the
    error a duplicate gets when posted alone (found: two to four copies were written)."""
    headers = key_for(session, product)
    note = {"version": "2.4.0", "title": "PDF export", "category": "Added", "publish": True}
    start = threading.Barrier(16)

    def post(number: int):
        client = app.test_client()
        start.wait()
        # The case differs, and duplicates are found whatever the case.
        title = note["title"].upper() if number % 2 else note["title"]
        return client.post(
            "/api/v1/products/acme/notes", headers=headers, json={**note, "title": title}
        )

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(post, range(16)))
    assert sorted(answer.status_code for answer in answers) == [201] + [422] * 15
    refused = [answer.json for answer in answers if answer.status_code == 422]
    assert all(
        body["errors"] == {"title": "Version 2.4.0 already has a note with this title."}
        for body in refused
    )
    session.expire_all()
    assert count_notes(session) == 1
