"""The note insights endpoint of the management API on both databases: its figures
against counts made here from the rows the test inserted, its scope, another product's
notes, and bad input answered with a JSON error, never a 500."""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from flask.testing import FlaskClient
from scipy import stats
from sqlalchemy import insert
from sqlalchemy.orm import Session

from announcements import apikeys, rollups
from announcements.models import EndUser, EndUserDay, Reaction, ReadReceipt
from app.database import write_turn
from tests.factories import make_note, make_product
from tests.test_insights import many_notes, many_segments

PUBLISHED = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)
NOW = datetime(2026, 10, 8, 12, 0, tzinfo=UTC)
URL = "/api/v1/products/acme/notes/{}/insights"


@pytest.fixture
def acme(app, session: Session):
    """Acme's note 2.4.0 and its users: user i is seen on day i % 7 after publication on
    2.4.0 (every third on 2.3.0, which does not include it); every other exposed user read
    it (i % 4 hours after, by channel i % 3); a few reacted. Each has a plan and an
    e-mail address of their own. Another product has a note
    and a reader of its own. Returns the note, the other product's note and a key."""
    product = make_product(session, slug="acme")
    other = make_product(session, slug="other")
    note = make_note(session, product, version="2.4.0", title="Export to PDF", now=PUBLISHED)
    elsewhere = make_note(session, other, version="2.4.0", now=PUBLISHED)
    for number in range(42):
        seen_at = PUBLISHED + timedelta(days=number % 7, hours=1)
        version = "2.3.0" if number % 3 == 0 else "2.4.0"
        user_id = session.scalar(
            insert(EndUser)
            .values(
                product_id=product.id,
                external_id=f"user-{number}",
                app_version=version,
                attributes={
                    "plan": "pro" if number % 2 else "free",
                    "seat": f"seat-{number}",
                },
                first_seen_at=seen_at,
                last_seen_at=seen_at,
            )
            .returning(EndUser.id)
        )
        session.execute(
            insert(EndUserDay).values(
                end_user_id=user_id,
                day=seen_at.date(),
                product_id=product.id,
                seen_at=seen_at,
                app_version=version,
            )
        )
        if version == "2.4.0" and number % 2:
            read_at = seen_at + timedelta(hours=number % 4)
            channel = ["widget", "email", "popup"][number % 3]
            session.execute(
                insert(ReadReceipt).values(
                    end_user_id=user_id, note_id=note.id, read_at=read_at, channel=channel
                )
            )
            if number % 5 == 0:
                session.execute(
                    insert(Reaction).values(
                        end_user_id=user_id,
                        note_id=note.id,
                        reaction="👍",
                        comment="Nice",
                        created_at=read_at,
                        updated_at=read_at,
                    )
                )
    stranger = session.scalar(
        insert(EndUser)
        .values(product_id=other.id, external_id="user-1", app_version="2.4.0")
        .returning(EndUser.id)
    )
    session.execute(
        insert(ReadReceipt).values(
            end_user_id=stranger, note_id=elsewhere.id, read_at=PUBLISHED, channel="widget"
        )
    )
    session.commit()
    for each in (product, other):
        rollups.rebuild(session, each, now=NOW, write_turn=write_turn)
        session.commit()
    _, raw = apikeys.create(session, product, "bi", ["insights:read"], by=None, now=NOW)
    return note, elsewhere, {"Authorization": f"Bearer {raw}"}


def expected(number_filter=lambda number: True) -> dict:
    """The fixture's figures, counted from how it made its rows."""
    exposed = [n for n in range(42) if n % 3 and number_filter(n)]
    readers = [n for n in exposed if n % 2]
    return {"exposed": exposed, "readers": readers}


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    """The endpoint reads the clock; the fixture's data is dated, so the clock is too."""
    monkeypatch.setattr("app.api.insights.utcnow", lambda: NOW)


def test_the_endpoint_answers_a_notes_figures(client: FlaskClient, acme, frozen) -> None:
    note, _, key = acme
    answer = client.get(URL.format(note.id), headers=key)
    assert answer.status_code == 200
    body = answer.json
    wanted = expected()
    exposed, readers = len(wanted["exposed"]), len(wanted["readers"])
    assert (body["note_id"], body["exposed"], body["readers"]) == (note.id, exposed, readers)
    assert body["read_rate"] == pytest.approx(readers / exposed)
    interval = stats.binomtest(readers, exposed).proportion_ci(method="wilson")
    assert body["read_rate_ci"] == pytest.approx([interval.low, interval.high])
    channels = Counter(["widget", "email", "popup"][n % 3] for n in wanted["readers"])
    assert body["reads_by_channel"] == dict(channels)
    assert body["daily"] == [
        {
            "date": (PUBLISHED.date() + timedelta(days=day)).isoformat(),
            "exposed": sum(n % 7 <= day for n in wanted["exposed"]),
            "readers": sum(n % 7 <= day for n in wanted["readers"]),
        }
        for day in range(8)
    ]
    waits = sorted(timedelta(days=n % 7, hours=1 + n % 4) for n in wanted["readers"])
    assert body["time_to_read"] == {
        "readers": readers,
        "median_seconds": waits[math.ceil(readers / 2) - 1].total_seconds(),
        "p90_seconds": waits[math.ceil(readers * 0.9) - 1].total_seconds(),
    }
    liked = sum(n % 5 == 0 for n in wanted["readers"])
    assert body["reactions"] == {"👍": liked, "👎": 0, "😕": 0} and liked > 0
    assert body["segments"] is None
    assert body["counted_until"] == (NOW - rollups.LAG).isoformat().replace("+00:00", "Z")


def test_a_segment_and_a_range(client: FlaskClient, acme, frozen) -> None:
    note, _, key = acme
    end = PUBLISHED.date() + timedelta(days=3)
    query = f"?by=plan&start={PUBLISHED.date() + timedelta(days=1)}&end={end}"
    body = client.get(URL.format(note.id) + query, headers=key).json
    wanted = expected(lambda n: n % 7 <= 3)
    assert [day["date"] for day in body["daily"]] == [
        (PUBLISHED.date() + timedelta(days=day)).isoformat() for day in (1, 2, 3)
    ]
    assert (body["exposed"], body["readers"]) == (len(wanted["exposed"]), len(wanted["readers"]))
    plans = {
        plan: [n for n in wanted["exposed"] if (n % 2 == 1) == (plan == "pro")]
        for plan in ("pro", "free")
    }
    assert body["segments"] == [
        {
            "value": plan,
            "exposed": len(plans[plan]),
            "readers": sum(n % 2 for n in plans[plan]),
            "read_rate": sum(n % 2 for n in plans[plan]) / len(plans[plan]),
        }
        for plan in ("pro", "free")
    ]


def test_a_value_fewer_than_5_users_have_is_never_shown(client: FlaskClient, acme, frozen) -> None:
    """By an attribute each user has alone, a value would be one user and whether they
    read the note: every value fewer than 5 users were exposed under is in Other."""
    note, _, key = acme
    body = client.get(URL.format(note.id) + "?by=seat", headers=key).json
    wanted = expected()
    exposed, readers = len(wanted["exposed"]), len(wanted["readers"])
    assert body["segments"] == [
        {"value": "Other", "exposed": exposed, "readers": readers, "read_rate": readers / exposed}
    ]
    # An attribute that looks like personal data is never a segment: a clear 422.
    refused = client.get(URL.format(note.id) + "?by=email", headers=key)
    assert refused.status_code == 422 and "by" in refused.json["errors"]


def test_a_note_dated_year_1_answers_its_last_366_days(
    client: FlaskClient, session: Session, acme, frozen
) -> None:
    """An import dated year 1 would answer a day for each of 740,000: the series keeps
    the last 366 days, counted since publication; a range wholly in the future has none."""
    note, _, key = acme
    old = make_note(session, note.product, version="0.1.0", now=datetime(1, 1, 1, 9, tzinfo=UTC))
    rollups.rebuild(session, note.product, now=NOW, write_turn=write_turn)
    session.commit()
    body = client.get(URL.format(old.id), headers=key).json
    first = NOW.date() - timedelta(days=365)
    assert [day["date"] for day in body["daily"]] == [
        (first + timedelta(days=n)).isoformat() for n in range(366)
    ]
    far = client.get(URL.format(note.id) + "?start=9999-12-31&end=9999-12-31", headers=key)
    assert far.status_code == 200 and far.json["daily"] == []


def test_a_read_rate_is_never_above_one(client: FlaskClient, session: Session, frozen) -> None:
    """Users move to newer versions between being reached and reading, and some read by
    e-mail without the widget seeing them: a value, or a note, can have more readers than
    users reached; its read rate is 1, inside its interval, never more."""
    many = many_notes(session, make_product(session, slug="many"), now=NOW)
    _, raw = apikeys.create(session, many.product, "bi", ["insights:read"], by=None, now=NOW)
    key = {"Authorization": f"Bearer {raw}"}
    url = "/api/v1/products/many/notes/{}/insights"
    minor = len(many.notes) - 8
    body = client.get(url.format(many.notes[minor].id) + "?by=app_version", headers=key).json
    wanted = many_segments(many, minor, NOW.date())
    assert any(0 < e < r for _, e, r in wanted)
    assert body["segments"] == [
        {
            "value": value,
            "exposed": e,
            "readers": r,
            "read_rate": min(r, e) / e if e else None,
        }
        for value, e, r in wanted
    ]
    newest = len(many.notes) - 1
    body = client.get(url.format(many.notes[newest].id), headers=key).json
    assert body["readers"] == len(many.readers(newest, NOW.date())) > body["exposed"] > 0
    low, high = body["read_rate_ci"]
    assert low <= body["read_rate"] == high == 1.0


def test_a_draft_has_zeros(client: FlaskClient, session: Session, acme, frozen) -> None:
    note, _, key = acme
    draft = make_note(session, note.product, version="3.0.0", status="draft")
    body = client.get(URL.format(draft.id), headers=key).json
    assert (body["exposed"], body["readers"], body["daily"]) == (0, 0, [])
    assert (body["read_rate"], body["read_rate_ci"]) == (None, None)
    assert body["time_to_read"] == {"readers": 0, "median_seconds": None, "p90_seconds": None}


def test_the_endpoint_needs_the_insights_scope(client: FlaskClient, session: Session, acme) -> None:
    note, _, key = acme
    _, notes_only = apikeys.create(session, note.product, "ci", ["notes:read"], by=None, now=NOW)
    assert client.get(URL.format(note.id)).status_code == 401
    refused = client.get(URL.format(note.id), headers={"Authorization": f"Bearer {notes_only}"})
    assert refused.status_code == 403 and "insights:read" in refused.json["error"]
    _, theirs = apikeys.create(session, note.product, "x", ["insights:read"], by=None, now=NOW)
    other = client.get(
        f"/api/v1/products/other/notes/{note.id}/insights",
        headers={"Authorization": f"Bearer {theirs}"},
    )
    assert other.status_code == 403


def test_another_products_note_is_not_found(client: FlaskClient, acme) -> None:
    _, elsewhere, key = acme
    for note_id in (elsewhere.id, 999_999):
        answer = client.get(URL.format(note_id), headers=key)
        assert answer.status_code == 404 and "error" in answer.json
        assert "exposed" not in answer.json


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("?by=shoe_size", "by"),
        ("?by=" + "x" * 81, "by"),
        ("?start=2026-10-05&end=2026-10-04", "end"),
        ("?start=2025-01-01&end=2026-10-04", "start"),
        ("?start=0001-01-01&end=0001-01-02", "start"),
        ("?end=0001-01-05", "end"),
        ("?start=0001-01-05", "start"),
        ("?start=2026-13-01", "start"),
        ("?end=yesterday", "end"),
        ("?start=2026-10-01T25:00", "start"),
    ],
)
def test_bad_input_is_a_json_error(client: FlaskClient, acme, query: str, field: str) -> None:
    note, _, key = acme
    answer = client.get(URL.format(note.id) + query, headers=key)
    assert answer.status_code == 422
    assert answer.is_json and field in answer.json["errors"]


def test_the_operation_is_in_the_openapi_document(client: FlaskClient, app) -> None:
    spec = client.get("/api/v1/openapi.json").json
    operation = spec["paths"]["/api/v1/products/{slug}/notes/{note_id}/insights"]["get"]
    assert "insights:read" in operation["description"]
    assert {p["name"] for p in operation["parameters"]} == {"slug", "note_id", "by", "start", "end"}
    assert {"200", "401", "403", "404", "422", "429"} <= set(operation["responses"])
