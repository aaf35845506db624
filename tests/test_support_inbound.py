"""Help desks' webhook deliveries: the vendors' signature schemes checked against their
published vectors, every saved real payload read, deliveries that do not prove
themselves refused with nothing stored, tickets kept to their own product, repeats and
updates, a fuzzed body never a 500, a burst of 1,000 stored whole, and the set-up
commands."""

from __future__ import annotations

import copy
import json
import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from announcements import support_desks, tickets
from announcements.errors import Unauthenticated, ValidationFailed
from announcements.models import (
    AuditEvent,
    EndUser,
    SupportConnection,
    SupportDesk,
    Ticket,
    utcnow,
)
from tests.conftest import SHARED_TESTDATA
from tests.factories import make_product

SUPPORT = SHARED_TESTDATA / "support"
needs_support_data = pytest.mark.skipif(
    not (SUPPORT / "signature-vectors.json").exists(),
    reason="the help-desk payloads in ../shared/testdata/support/ are absent",
)
SECRET_KEY = "test-secret"  # the app's, as tests/conftest.py sets it
SECRETS = {
    SupportDesk.ZENDESK: "zendesk-signing-secret",
    SupportDesk.INTERCOM: "test_client_secret",
    SupportDesk.HELPSCOUT: "help-scout-secret-key",
}


def vectors() -> dict:
    return json.loads((SUPPORT / "signature-vectors.json").read_text())


def payload(name: str) -> bytes:
    return (SUPPORT / name).read_bytes()


def zendesk_now(delta: timedelta = timedelta()) -> str:
    return (utcnow() + delta).strftime("%Y-%m-%dT%H:%M:%SZ")


def signed(
    connection: SupportConnection, body: bytes, event: str = "", stamp: str | None = None
) -> dict[str, str]:
    """The headers the connection's desk sends with ``body``."""
    secret = connection.secret
    if connection.desk is SupportDesk.ZENDESK:
        stamp = stamp or zendesk_now()
        return {
            "X-Zendesk-Webhook-Signature": support_desks.zendesk_signature(secret, stamp, body),
            "X-Zendesk-Webhook-Signature-Timestamp": stamp,
        }
    if connection.desk is SupportDesk.INTERCOM:
        return {"X-Hub-Signature": support_desks.intercom_signature(secret, body)}
    if connection.desk is SupportDesk.HELPSCOUT:
        return {
            "X-HelpScout-Signature": support_desks.helpscout_signature(secret, body),
            "X-HelpScout-Event": event,
        }
    return {}


def path_of(connection: SupportConnection, token: str | None = None) -> str:
    return f"/api/v1/support/inbound/{connection.id}/{token or connection.token}"


def deliver(client, connection, body: bytes, event: str = "", **headers: str):
    sent = {**signed(connection, body, event), **headers, "Content-Type": "application/json"}
    return client.post(path_of(connection), data=body, headers=sent)


def count(session, model=Ticket) -> int:
    return session.scalar(select(func.count()).select_from(model))


@pytest.fixture
def product(session):
    return make_product(session, slug="acme")


@pytest.fixture
def connections(session, product) -> dict[SupportDesk, SupportConnection]:
    made = {
        desk: support_desks.connect(session, product, desk, secret=SECRETS.get(desk))
        for desk in SupportDesk
    }
    session.commit()
    return made


# The vendors' schemes against their published vectors (no database) ----------------


@needs_support_data
def test_the_published_zendesk_vectors_verify_as_timestamp_then_body() -> None:
    published = [v for v in vectors()["zendesk"] if v["kind"] == "published"]
    assert len(published) == 2
    for vector in published:
        body = payload(vector["body_file"])
        assert vector["timestamp"] == "1234"
        signature = support_desks.zendesk_signature(vector["secret"], vector["timestamp"], body)
        assert signature == vector["expected"]


@needs_support_data
def test_the_old_zendesk_example_is_refused_because_it_signs_body_then_timestamp() -> None:
    [old] = [v for v in vectors()["zendesk"] if v["kind"] == "published-but-CONFLICTING"]
    body, stamp, secret = old["body"].encode(), old["timestamp"], old["secret"]
    assert support_desks.zendesk_signature(secret, stamp, body) == old["check_ts_plus_body"]
    assert support_desks.zendesk_signature(secret, stamp, body) != old["expected"]
    # The value is the other order's, which Tidings does not accept:
    reordered = support_desks.zendesk_signature(secret, "", body + stamp.encode())
    assert reordered == old["expected"]
    connection = SupportConnection(
        desk=SupportDesk.ZENDESK, source="zendesk", token="t", secret=secret
    )
    headers = {
        "x-zendesk-webhook-signature": old["expected"],
        "x-zendesk-webhook-signature-timestamp": stamp,
    }
    signed_at = datetime(2021, 7, 25, 10, 1, tzinfo=UTC)  # fresh: only the order is wrong
    with pytest.raises(Unauthenticated, match="signature does not match"):
        support_desks.verify(connection, "t", headers, body, now=signed_at)
    headers["x-zendesk-webhook-signature"] = old["check_ts_plus_body"]
    support_desks.verify(connection, "t", headers, body, now=signed_at)


@needs_support_data
def test_the_help_scout_vectors_verify() -> None:
    sdk, laslabs = vectors()["helpscout"]
    # The SDK read its file line by line and joined the lines: the vector is over that.
    joined = payload(sdk["body_file"]).replace(b"\r", b"").replace(b"\n", b"")
    assert support_desks.helpscout_signature(sdk["secret"], joined) == sdk["expected"]
    exact = payload(sdk["body_file"])
    assert (
        support_desks.helpscout_signature(sdk["secret"], exact)
        == (sdk["derived_over_exact_file_bytes"])
    )
    body = laslabs["body"].encode()
    assert support_desks.helpscout_signature(laslabs["secret"], body) == laslabs["expected"]


@needs_support_data
def test_the_derived_intercom_vectors_verify() -> None:
    derived = [v for v in vectors()["intercom"] if v["kind"] == "derived"]
    assert len(derived) == 2
    for vector in derived:
        body = payload(vector["body_file"])
        assert support_desks.intercom_signature(vector["secret"], body) == vector["expected"]


# Every saved payload, through the endpoint --------------------------------------------

# file -> (HTTP status, what is stored): the ticket's fields, or the reason it is ignored.
EXPECTED = {
    "zendesk-ticket.created-1.json": (
        201,
        {
            "external_id": "5158",
            "created_at": datetime(2025, 1, 8, 10, 12, 7, tzinfo=UTC),
            "tags": ["ticket-info-test-tag"],
            "subject": "ticketinfo_2294a6e9ece2",
            "requester_external_id": None,
            "email": None,
        },
    ),
    "zendesk-trigger.ticket_update-1.json": (
        202,
        "Zendesk ticket 12345 is not stored yet, and this body does not say when it was opened.",
    ),
    "zendesk-user.active_changed-1.json": (
        202,
        "Zendesk user.active_changed events are not tickets.",
    ),
    "zendesk-user.group_membership_created-1.json": (
        202,
        "Zendesk user.group_membership_created events are not tickets.",
    ),
    "intercom-conversation.user.created-1.json": (
        201,
        {
            "external_id": "21321941764",
            "created_at": datetime(2019, 3, 22, 21, 29, 58, tzinfo=UTC),
            "tags": [],
            "subject": None,
            "requester_external_id": None,  # a lead: Intercom's own id is no host id
            "email": None,
        },
    ),
    "intercom-conversation.user.replied-1.json": (
        201,
        {
            "external_id": "21322009097",
            "created_at": datetime(2019, 3, 22, 21, 42, 13, tzinfo=UTC),
            "tags": [],
            "subject": None,
            "requester_external_id": None,
            "email": "jerryguitarist@gmail.com",
        },
    ),
    "intercom-conversation.admin.replied-1.json": (
        201,
        {
            "external_id": "21322009097",
            "created_at": datetime(2019, 3, 22, 21, 42, 13, tzinfo=UTC),
            "tags": [],
            "subject": None,
            "requester_external_id": None,
            "email": "jerryguitarist@gmail.com",
        },
    ),
    "intercom-ping-1.json": (202, "Intercom's ping: the connection works."),
    "intercom-user.created-1.json": (
        202,
        "Intercom user.created notifications are not conversations.",
    ),
    "helpscout-convo.created-1.json": (
        201,
        {
            "external_id": "291938",
            "created_at": datetime(2012, 7, 23, 12, 34, 12, tzinfo=UTC),
            "tags": ["tag1", "tag2"],
            "subject": "I need help!",
            "requester_external_id": None,
            "email": "vbear@mywork.com",
        },
    ),
    "helpscout-convo.agent.reply.created-1.json": (
        201,
        {
            "external_id": "1755285700",
            "created_at": datetime(2025, 4, 24, 13, 45, 23, tzinfo=UTC),
            "tags": ["account", "customer"],
            "subject": "Need help with my account",
            "requester_external_id": None,
            "email": "customer@example.com",
        },
    ),
    "helpscout-customer.created-1.json": (
        202,
        "Help Scout customer.created events do not add or change tickets.",
    ),
    "freshdesk-ticket_created-1.json": (
        201,
        {
            "external_id": "11",
            "created_at": "on arrival",
            "tags": [],
            "subject": "Test ticket subject ☃",
            "requester_external_id": None,
            "email": "requester-bob@example.com",
        },
    ),
    "freshdesk-priority_changed-1.json": (
        202,
        "Freshdesk ticket 11 is not stored yet, and this body does not say when it was opened.",
    ),
    "freshdesk-public_note-1.json": (
        202,
        "Freshdesk ticket 11 is not stored yet, and this body does not say when it was opened.",
    ),
}


@needs_support_data
def test_the_expected_table_covers_every_saved_payload() -> None:
    saved = {p.name for p in SUPPORT.glob("*.json")} - {"signature-vectors.json"}
    assert saved == set(EXPECTED)


def _desk_and_event(name: str) -> tuple[SupportDesk, str]:
    desk, event = name.removesuffix(".json").rsplit("-", 1)[0].split("-", 1)
    return SupportDesk(desk), event


@needs_support_data
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_saved_payload_is_read_as_its_desk_means_it(
    client, session, connections, name
) -> None:
    desk, event = _desk_and_event(name)
    connection = connections[desk]
    status, expected = EXPECTED[name]
    before = utcnow()
    response = deliver(client, connection, payload(name), event)
    after = utcnow()
    assert response.status_code == status, response.json
    if isinstance(expected, str):
        assert response.json == {"ignored": expected}
        assert count(session) == 0
        return
    [row] = session.scalars(select(Ticket)).all()
    assert response.json == {"ticket": {"id": row.id, "status": "created"}}
    assert (row.product_id, row.source, row.connection_id) == (
        connection.product_id,
        desk.value,
        connection.id,
    )
    fields = {
        "external_id": row.external_id,
        "created_at": row.created_at,
        "tags": row.tags,
        "subject": row.subject,
        "requester_external_id": row.requester_external_id,
        "email": row.requester_key,
    }
    wanted = dict(expected)
    if wanted["email"] is not None:
        wanted["email"] = tickets.email_key(SECRET_KEY, wanted["email"])
    if wanted["created_at"] == "on arrival":  # Freshdesk's body has no creation time
        assert before <= fields["created_at"] <= after
        wanted["created_at"] = fields["created_at"]
    assert fields == wanted
    row_text = json.dumps([str(v) for v in session.execute(select(Ticket.__table__)).one()])
    assert "@" not in row_text  # no address is kept
    assert "description" not in row_text.lower()  # nor any of the body


@needs_support_data
def test_a_repeated_delivery_changes_nothing_and_a_changed_ticket_updates(
    client, session, connections
) -> None:
    zendesk = connections[SupportDesk.ZENDESK]
    body = payload("zendesk-ticket.created-1.json")
    first = deliver(client, zendesk, body)
    assert first.status_code == 201
    ticket_id = first.json["ticket"]["id"]
    again = deliver(client, zendesk, body)
    assert (again.status_code, again.json) == (
        200,
        {"ticket": {"id": ticket_id, "status": "unchanged"}},
    )

    event = json.loads(body)
    event["type"] = "zen:event-type:ticket.tags_changed"
    event["detail"]["tags"] = ["Export", "billing"]
    changed = deliver(client, zendesk, json.dumps(event).encode())
    assert (changed.status_code, changed.json) == (
        200,
        {"ticket": {"id": ticket_id, "status": "updated"}},
    )
    # An event that leaves the tags out keeps them, as a POST to the tickets API does.
    del event["detail"]["tags"]
    untagged = deliver(client, zendesk, json.dumps(event).encode())
    assert untagged.json == {"ticket": {"id": ticket_id, "status": "unchanged"}}
    session.expire_all()
    assert session.scalars(select(Ticket.tags)).all() == [["export", "billing"]]
    # A body of one's own naming the ticket now updates it, and keeps the creation time.
    trigger = json.loads(payload("zendesk-trigger.ticket_update-1.json"))
    trigger["ticketID"] = "5158"
    own = deliver(client, zendesk, json.dumps(trigger).encode())
    assert own.json == {"ticket": {"id": ticket_id, "status": "updated"}}
    session.expire_all()
    [row] = session.scalars(select(Ticket)).all()
    assert row.tags == ["new"] and row.subject == "ticketinfo_2294a6e9ece2"
    assert row.created_at == datetime(2025, 1, 8, 10, 12, 7, tzinfo=UTC)


@needs_support_data
def test_freshdesk_updates_keep_the_time_the_ticket_arrived(client, session, connections) -> None:
    freshdesk = connections[SupportDesk.FRESHDESK]
    created = deliver(client, freshdesk, payload("freshdesk-ticket_created-1.json"))
    assert created.status_code == 201
    arrived = session.scalar(select(Ticket.created_at))
    statuses = [
        deliver(client, freshdesk, payload(name)).json["ticket"]["status"]
        for name in ("freshdesk-priority_changed-1.json", "freshdesk-public_note-1.json")
    ]
    assert statuses == ["updated", "unchanged"]  # the subject lost its snowman, then stayed
    session.expire_all()
    [row] = session.scalars(select(Ticket)).all()
    assert row.created_at == arrived
    assert row.subject == "Test ticket subject"  # the later bodies' subject


# Deliveries that do not prove themselves -------------------------------------------------


@needs_support_data
@pytest.mark.parametrize(
    ("desk", "name", "event"),
    [
        (SupportDesk.ZENDESK, "zendesk-ticket.created-1.json", ""),
        (SupportDesk.INTERCOM, "intercom-conversation.user.created-1.json", ""),
        (SupportDesk.HELPSCOUT, "helpscout-convo.created-1.json", "convo.created"),
    ],
)
def test_a_tampered_or_unsigned_body_is_401_and_stores_nothing(
    client, session, connections, desk, name, event
) -> None:
    connection = connections[desk]
    body = payload(name)
    headers = signed(connection, body, event)
    tampered = body.replace(b"2", b"3", 1)
    assert client.post(path_of(connection), data=tampered, headers=headers).status_code == 401
    unsigned = {k: v for k, v in headers.items() if "Signature" not in k or "Timestamp" in k}
    response = client.post(path_of(connection), data=body, headers=unsigned)
    assert response.status_code == 401
    assert response.json == {"error": f"The {desk.label} signature does not match this connection."}
    other_secret = signed(
        SupportConnection(desk=desk, secret="another secret", token="t"), body, event
    )
    assert client.post(path_of(connection), data=body, headers=other_secret).status_code == 401
    assert count(session) == 0
    session.expire_all()
    assert connection.deliveries == 0 and connection.last_delivery_at is None
    assert client.post(path_of(connection), data=body, headers=headers).status_code == 201
    session.expire_all()
    assert connection.deliveries == 1 and connection.last_delivery_at is not None


@needs_support_data
@pytest.mark.parametrize(
    ("delta", "status"),
    [
        (timedelta(minutes=-6), 401),
        (timedelta(minutes=6), 401),
        (timedelta(minutes=-4), 201),
    ],
)
def test_a_zendesk_delivery_signed_over_five_minutes_away_is_a_replay(
    client, session, connections, delta, status
) -> None:
    zendesk = connections[SupportDesk.ZENDESK]
    body = payload("zendesk-ticket.created-1.json")
    headers = signed(zendesk, body, stamp=zendesk_now(delta))
    response = client.post(path_of(zendesk), data=body, headers=headers)
    assert response.status_code == status
    assert count(session) == (1 if status == 201 else 0)
    if status == 401:
        assert response.json == {
            "error": "This Zendesk delivery was not signed within 5 minutes of now."
        }


@needs_support_data
def test_the_published_timestamp_1234_is_no_fresh_delivery(client, session, product) -> None:
    vector = vectors()["zendesk"][1]
    zendesk = support_desks.connect(session, product, "zendesk", secret=vector["secret"])
    session.commit()
    body = payload(vector["body_file"])
    headers = {
        "X-Zendesk-Webhook-Signature": vector["expected"],
        "X-Zendesk-Webhook-Signature-Timestamp": vector["timestamp"],
    }
    response = client.post(path_of(zendesk), data=body, headers=headers)
    assert response.status_code == 401 and "5 minutes" in response.json["error"]


@needs_support_data
def test_wrong_tokens_unknown_connections_and_missing_secrets_are_401(
    client, session, product, connections
) -> None:
    body = payload("freshdesk-ticket_created-1.json")
    freshdesk = connections[SupportDesk.FRESHDESK]
    helpscout = connections[SupportDesk.HELPSCOUT]
    for path in (
        path_of(
            freshdesk, token=freshdesk.token[:-1] + ("A" if freshdesk.token[-1] != "A" else "B")
        ),
        path_of(freshdesk, token=helpscout.token),  # another connection's token
        f"/api/v1/support/inbound/999999/{freshdesk.token}",
        f"/api/v1/support/inbound/99999999999/{freshdesk.token}",
        path_of(freshdesk, token="é"),
    ):
        response = client.post(path, data=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 401, path
        assert response.json == {
            "error": "This inbound URL is not valid. Copy it again from Tidings."
        }
    waiting = support_desks.connect(session, product, "zendesk")  # no secret pasted yet
    session.commit()
    zendesk_body = payload("zendesk-ticket.created-1.json")
    stamp = zendesk_now()
    response = client.post(
        path_of(waiting),
        data=zendesk_body,
        headers={
            "X-Zendesk-Webhook-Signature": support_desks.zendesk_signature("", stamp, zendesk_body),
            "X-Zendesk-Webhook-Signature-Timestamp": stamp,
        },
    )
    assert response.status_code == 401
    assert response.json == {
        "error": "Paste Zendesk's signing secret into this connection in Tidings first."
    }
    assert count(session) == 0


@needs_support_data
def test_a_delivery_never_reaches_another_product(client, session, connections) -> None:
    other = make_product(session, slug="other")
    theirs = support_desks.connect(session, other, "freshdesk")
    ours = connections[SupportDesk.FRESHDESK]
    session.add(
        EndUser(
            product_id=other.id,
            external_id="bob",
            email_key=tickets.email_key(SECRET_KEY, "requester-bob@example.com"),
        )
    )
    session.commit()
    body = payload("freshdesk-ticket_created-1.json")
    crossed = client.post(f"/api/v1/support/inbound/{ours.id}/{theirs.token}", data=body)
    assert crossed.status_code == 401
    assert deliver(client, ours, body).status_code == 201
    [row] = session.scalars(select(Ticket)).all()
    assert row.product_id == ours.product_id and row.end_user_id is None
    assert session.scalar(select(func.count()).where(Ticket.product_id == other.id)) == 0


# Bodies that are not tickets -----------------------------------------------------------------


def test_an_oversized_body_is_413_and_stores_nothing(client, session, connections) -> None:
    freshdesk = connections[SupportDesk.FRESHDESK]
    body = json.dumps({"freshdesk_webhook": {"ticket_id": "1", "pad": "x" * (1024 * 1024)}})
    response = client.post(path_of(freshdesk), data=body.encode())
    assert (response.status_code, response.json) == (413, {"error": "A delivery is at most 1 MB."})
    just = json.dumps({"freshdesk_webhook": {"ticket_id": "1", "triggered_event": "created"}})
    padded = just.encode() + b" " * (1024 * 1024 - len(just))
    assert deliver(client, freshdesk, padded).status_code == 201
    assert count(session) == 1


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"[1, 2]", b'"text"', b"\xff\xfe", b"9" * 5000, b"[" * 100_000],
)
def test_a_body_that_is_no_json_object_is_400(client, session, connections, body) -> None:
    for connection in connections.values():
        response = deliver(client, connection, body, "convo.created")
        assert response.status_code == 400, (connection.desk, response.json)
        assert (
            response.json["error"] == f"body: A {connection.desk.label} delivery is a JSON object."
        )
    assert count(session) == 0


def test_a_ticket_that_breaks_the_rule_is_422_naming_the_fields(
    client, session, connections
) -> None:
    helpscout = connections[SupportDesk.HELPSCOUT]
    body = json.dumps(
        {"id": "", "createdAt": "2012-07-23T12:34:12", "tags": "x", "subject": "s" * 600}
    ).encode()
    response = deliver(client, helpscout, body, "convo.created")
    assert response.status_code == 422
    assert set(response.json["errors"]) == {"external_id", "created_at", "tags", "subject"}
    assert count(session) == 0


# Fuzz -------------------------------------------------------------------------------


NASTY = [
    None,
    True,
    -1,
    0,
    10**30,
    -(10**30),
    1e308,
    float("nan"),
    float("inf"),
    "",
    " ",
    "\x00",
    "\ud800",
    "x" * 5000,
    "é" * 300,
    [],
    {},
    [[[]]],
    {"tag": None},
    ["a", 1, None],
    "2026-13-45T99:99:99Z",
    "9999-12-31T23:59:59-23:59",
    "0001-01-01T00:00:00+14:00",
    "2099-01-01T00:00:00Z",
    253402300800,
    -62135596801,
]


def _paths(value, trail=()):
    yield trail
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _paths(inner, (*trail, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield from _paths(inner, (*trail, index))


def _mutate(document, rng: random.Random):
    document = copy.deepcopy(document)
    for _ in range(rng.randint(1, 3)):
        paths = [p for p in _paths(document) if p]
        if not paths:
            return rng.choice(NASTY)
        trail = rng.choice(paths)
        holder = document
        for step in trail[:-1]:
            holder = holder[step]
        holder[trail[-1]] = copy.deepcopy(rng.choice(NASTY))
    return document


def _random_json(rng: random.Random, depth: int = 0):
    kind = rng.randrange(6 if depth < 4 else 3)
    if kind < 3:
        return rng.choice(NASTY)
    if kind == 3:
        return [_random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = [
        "id",
        "ticket",
        "detail",
        "type",
        "topic",
        "data",
        "item",
        "created_at",
        "tags",
        "freshdesk_webhook",
        "ticketID",
        "createdAt",
        "user",
        "customer",
        "x",
    ]
    return {rng.choice(keys): _random_json(rng, depth + 1) for _ in range(rng.randrange(5))}


FUZZ_SOURCES = {
    SupportDesk.ZENDESK: [
        "zendesk-ticket.created-1.json",
        "zendesk-trigger.ticket_update-1.json",
        "zendesk-user.active_changed-1.json",
    ],
    SupportDesk.INTERCOM: [
        "intercom-conversation.user.created-1.json",
        "intercom-conversation.user.replied-1.json",
        "intercom-ping-1.json",
    ],
    SupportDesk.HELPSCOUT: [
        "helpscout-convo.created-1.json",
        "helpscout-convo.agent.reply.created-1.json",
    ],
    SupportDesk.FRESHDESK: ["freshdesk-ticket_created-1.json", "freshdesk-public_note-1.json"],
}


@needs_support_data
@pytest.mark.parametrize("desk", list(SupportDesk))
def test_no_signed_body_makes_a_server_error(client, session, connections, desk) -> None:
    """Mutated real payloads, random JSON and random bytes, each validly signed, so that
    they reach the parsing and storing rather than stop at the signature."""
    rng = random.Random(f"fuzz-{desk.value}")  # the same cases every run
    connection = connections[desk]
    documents = [json.loads(payload(name)) for name in FUZZ_SOURCES[desk]]
    bodies: list[bytes] = []
    for _ in range(120):
        bodies.append(json.dumps(_mutate(rng.choice(documents), rng)).encode())
    for _ in range(40):
        bodies.append(json.dumps(_random_json(rng)).encode())
    for _ in range(20):
        bodies.append(bytes(rng.randrange(256) for _ in range(rng.randrange(200))))
    events = ["convo.created", "convo.tags", "customer.created", "", "convo.deleted", "x" * 300]
    seen: set[int] = set()
    for body in bodies:
        response = deliver(client, connection, body, rng.choice(events))
        seen.add(response.status_code)
        assert response.status_code in {200, 201, 202, 400, 422}, (body[:300], response.data)
        assert response.is_json and set(response.json) & {"ticket", "ignored", "error"}
    assert {201, 400, 422} <= seen


# A burst -------------------------------------------------------------------------------


def test_a_burst_of_1000_deliveries_is_stored_whole(client, session, connections) -> None:
    helpscout = connections[SupportDesk.HELPSCOUT]
    statuses = []
    for number in range(1000):
        body = json.dumps(
            {
                "id": number,
                "createdAt": "2026-01-05T10:00:00Z",
                "primaryCustomer": {"email": f"user{number}@example.com"},
                "tags": ["export"] if number % 3 == 0 else [],
                "subject": f"Ticket {number}",
            }
        ).encode()
        statuses.append(deliver(client, helpscout, body, "convo.created").status_code)
    assert statuses == [201] * 1000
    assert count(session) == 1000
    assert session.scalar(select(func.count()).where(Ticket.tag_text == "|export|")) == 334
    session.expire_all()
    assert helpscout.deliveries == 1000


def test_deliveries_are_limited_per_connection_counting_only_proven_ones(
    app_factory, session, product
) -> None:
    limited = app_factory(RATELIMIT_ENABLED=True, RATELIMIT_SUPPORT_INBOUND="3 per minute")
    first = support_desks.connect(session, product, "freshdesk")
    second = support_desks.connect(session, product, "freshdesk")
    session.commit()
    client = limited.test_client()

    def body(number: int) -> bytes:
        hook = {"ticket_id": str(number), "triggered_event": "{ticket_action:created}"}
        return json.dumps({"freshdesk_webhook": hook}).encode()

    wrong = [client.post(path_of(first, token="wrong"), data=body(0)).status_code for _ in range(5)]
    assert wrong == [401] * 5  # no proof, no allowance spent
    # Nor by a body too large to read, which is answered before any signature is checked:
    # the token is, so a stranger who knows only the connection's number spends nothing.
    huge = b"x" * (1024 * 1024 + 1)
    oversized = [
        client.post(path_of(first, token="wrong"), data=huge).status_code for _ in range(4)
    ]
    assert oversized == [401] * 4
    answers = [client.post(path_of(first), data=body(n)).status_code for n in range(4)]
    assert answers == [201, 201, 201, 429]
    assert client.post(path_of(second), data=body(9)).status_code == 201
    assert count(session) == 4


# Connections and their set-up -----------------------------------------------------------


def test_connections_are_named_per_desk_and_keep_their_secrets(session, product) -> None:
    made = [support_desks.connect(session, product, "zendesk") for _ in range(3)]
    assert [c.source for c in made] == ["zendesk", "zendesk-2", "zendesk-3"]
    assert all(c.secret == "" for c in made)  # Zendesk makes it; the owner pastes it
    assert len({c.token for c in made}) == 3 and all(len(c.token) == 43 for c in made)
    helpscout = support_desks.connect(session, product, SupportDesk.HELPSCOUT)
    assert len(helpscout.secret) == 40  # Help Scout's Secret Key field takes 40
    assert support_desks.connect(session, product, "helpscout", secret=" mine ").secret == "mine"
    assert support_desks.connect(session, product, "freshdesk").secret == ""
    with pytest.raises(ValidationFailed) as caught:
        support_desks.connect(session, product, "freshdesk", secret="x")
    assert list(caught.value.errors) == ["secret"]
    with pytest.raises(ValidationFailed) as caught:
        support_desks.connect(session, product, "jira")
    assert caught.value.errors == {"desk": "Choose one of zendesk, intercom, helpscout, freshdesk."}
    with pytest.raises(ValidationFailed):
        support_desks.set_secret(session, made[0], "two\nlines")
    support_desks.set_secret(session, made[0], "pasted")
    assert made[0].secret == "pasted"
    assert support_desks.inbound_url("https://t.example/", made[0]) == (
        f"https://t.example/api/v1/support/inbound/{made[0].id}/{made[0].token}"
    )
    session.commit()
    actions = session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()
    assert actions.count("support.connected") == 6 and actions[-1] == "support.secret_changed"


def test_a_disconnected_desk_is_refused_and_its_tickets_stay(client, session, connections) -> None:
    freshdesk = connections[SupportDesk.FRESHDESK]
    body = json.dumps({"freshdesk_webhook": {"ticket_id": "7", "triggered_event": "created"}})
    assert deliver(client, freshdesk, body.encode()).status_code == 201
    path = path_of(freshdesk)
    support_desks.disconnect(session, freshdesk)
    session.commit()
    assert client.post(path, data=body).status_code == 401
    [row] = session.scalars(select(Ticket)).all()
    assert (row.source, row.connection_id) == ("freshdesk", None)


def test_every_desk_has_set_up_steps_naming_its_url_and_secret() -> None:
    assert set(support_desks.SETUP_STEPS) == set(SupportDesk)
    for desk, steps in support_desks.SETUP_STEPS.items():
        text = " ".join(step.text for step in steps)
        assert "inbound URL" in text, desk
        assert ("secret" in text.lower()) or desk is SupportDesk.FRESHDESK
    for desk, body in (
        (SupportDesk.ZENDESK, support_desks.ZENDESK_TRIGGER_BODY),
        (SupportDesk.FRESHDESK, support_desks.FRESHDESK_BODY),
    ):
        [with_body] = [step for step in support_desks.SETUP_STEPS[desk] if step.body]
        assert with_body.body == body and with_body.text.endswith("body:")


def test_the_bodies_of_the_set_up_steps_deliver_matched_tickets(
    client, session, connections
) -> None:
    """The Zendesk trigger and Freshdesk rule bodies, with the placeholders as the desks
    fill them in, give tickets matched to the host's users."""
    product_id = connections[SupportDesk.ZENDESK].product_id
    kim = EndUser(product_id=product_id, external_id="kim-42")
    bob = EndUser(
        product_id=product_id,
        external_id="bob",
        email_key=tickets.email_key(SECRET_KEY, "bob@example.com"),
    )
    session.add_all([kim, bob])
    session.commit()
    zendesk_values = {
        "{{ticket.id}}": "901",
        "{{ticket.created_at_with_timestamp}}": "2026-01-05T09:35Z",
        "{{ticket.requester.external_id}}": "kim-42",
        "{{ticket.requester.email}}": "kim@example.com",
        "{{ticket.tags}}": "export billing",
        "{{ticket.title}}": "Export is slow",
    }
    body = support_desks.ZENDESK_TRIGGER_BODY
    for placeholder, value in zendesk_values.items():
        body = body.replace(placeholder, value)
    assert deliver(client, connections[SupportDesk.ZENDESK], body.encode()).status_code == 201
    freshdesk_values = {
        "{{triggered_event}}": "{ticket_action:created}",
        "{{ticket.id}}": "77",
        "{{ticket.subject}}": "Billing",
        "{{ticket.tags}}": "billing, vip",
        "{{ticket.requester.email}}": "Bob@Example.com",
    }
    body = support_desks.FRESHDESK_BODY
    for placeholder, value in freshdesk_values.items():
        body = body.replace(placeholder, value)
    assert deliver(client, connections[SupportDesk.FRESHDESK], body.encode()).status_code == 201
    rows = session.scalars(select(Ticket).order_by(Ticket.id)).all()
    assert [(r.external_id, r.end_user_id, r.tags) for r in rows] == [
        ("901", kim.id, ["export", "billing"]),
        ("77", bob.id, ["billing", "vip"]),
    ]
    assert rows[0].created_at == datetime(2026, 1, 5, 9, 35, tzinfo=UTC)


def test_the_cli_connects_a_desk_and_prints_its_url_and_secret(runner, session, product) -> None:
    result = runner.invoke(args=["support", "connect", "acme", "helpscout", "--json"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    connection = session.scalar(select(SupportConnection))
    assert printed == {
        "url": f"http://127.0.0.1:5000/api/v1/support/inbound/{connection.id}/{connection.token}",
        "secret": connection.secret,
    }
    assert len(printed["secret"]) == 40
    zendesk = runner.invoke(args=["support", "connect", "acme", "zendesk", "--json"])
    assert json.loads(zendesk.stdout)["secret"] is None
    text = runner.invoke(args=["support", "connect", "acme", "zendesk", "--secret", "s3cret"])
    assert "zendesk-2" in text.stdout and "Secret: s3cret" in text.stdout
    assert "1. In Zendesk Admin Center" in text.stdout
    pasted = runner.invoke(args=["support", "set-secret", "acme", "zendesk", "--secret", "abc"])
    assert pasted.exit_code == 0, pasted.output
    session.expire_all()
    assert (
        session.scalar(
            select(SupportConnection.secret).where(SupportConnection.source == "zendesk")
        )
        == "abc"
    )
    assert runner.invoke(args=["support", "connect", "nope", "zendesk"]).exit_code != 0
    refused = runner.invoke(args=["support", "connect", "acme", "freshdesk", "--secret", "x"])
    assert refused.exit_code != 0 and "Freshdesk signs nothing" in refused.output
    assert runner.invoke(args=["support", "connect", "acme", "jira"]).exit_code != 0
    missing = runner.invoke(args=["support", "set-secret", "acme", "intercom", "--secret", "a"])
    assert missing.exit_code != 0 and "no connection named intercom" in missing.output


@needs_support_data
def test_user_ids_and_app_versions_are_read_where_the_desks_carry_them() -> None:
    replied = json.loads(payload("intercom-conversation.user.replied-1.json"))
    item = replied["data"]["item"]
    item["user"].update(type="user", user_id="host-7")
    item["custom_attributes"] = {"app_version": "2.4.0"}
    read = support_desks.parse(SupportDesk.INTERCOM, {}, json.dumps(replied).encode())
    assert (read.ticket["user_id"], read.ticket["app_version"], read.opens) == (
        "host-7",
        "2.4.0",
        False,
    )
    current = {  # the conversation model of Intercom's API 2.x
        "topic": "conversation.user.created",
        "data": {
            "item": {
                "type": "conversation",
                "id": "9",
                "created_at": 1767225600,
                "contacts": {"contacts": [{"type": "contact", "external_id": "host-8"}]},
                "source": {"subject": "Export?", "author": {"email": "Kim@Example.com"}},
                "tags": {"tags": [{"type": "tag", "name": "Export"}]},
            }
        },
    }
    read = support_desks.parse(SupportDesk.INTERCOM, {}, json.dumps(current).encode())
    assert read.opens and read.ticket == {
        "external_id": "9",
        "created_at": datetime(2026, 1, 1, tzinfo=UTC),
        "user_id": "host-8",
        "email": "kim@example.com",
        "app_version": None,
        "tags": ["Export"],
        "subject": "Export?",
    }
    convo = json.loads(payload("helpscout-convo.created-1.json"))
    convo["customFields"].append({"fieldId": 3, "name": "App version", "value": "3.1"})
    convo["tags"] = [{"id": 1, "tag": "vip", "color": "#fff"}]  # the v2 payload's tags
    headers = {"x-helpscout-event": "convo.created"}
    read = support_desks.parse(SupportDesk.HELPSCOUT, headers, json.dumps(convo).encode())
    assert (read.ticket["app_version"], read.ticket["tags"]) == ("3.1", ["vip"])
