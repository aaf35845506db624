"""The widget API's promises to end users and host apps, on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine, event, func, select, update
from sqlalchemy.orm import Session

from announcements import services, subscriptions
from announcements.models import (
    EndUser,
    OutboxKind,
    OutboxMessage,
    Product,
    Reaction,
    ReadReceipt,
    Subscriber,
    SubscriberStatus,
    utcnow,
)
from announcements.services import ProductSettings
from announcements.subscriptions import Preferences
from app.database import widget_engine
from app.extensions import db
from app.mail import delivery, transport
from tests.factories import make_member, make_note, make_product
from tests.mailserver import SmtpServer

ORIGIN = "https://app.example.com"


def user_hash(product: Product, user_id: str) -> str:
    return hmac.new(product.identity_secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()


def email_hash(product: Product, user_id: str, email: str) -> str:
    """As the README tells hosts to compute it."""
    signed = f"email:{user_id}\n{email}".encode()
    return hmac.new(product.identity_secret.encode(), signed, hashlib.sha256).hexdigest()


class Widget:
    """What a host page's widget sends, for one product and one user."""

    def __init__(self, client: FlaskClient, product: Product, user_id: str | None = "user-1"):
        self.client = client
        self.product = product
        self.user_id = user_id
        self.base = f"/api/v1/widget/{product.widget_key}"

    def identity(self) -> dict[str, str]:
        if self.user_id is None:
            return {}
        return {"user_id": self.user_id, "user_hash": user_hash(self.product, self.user_id)}

    def notes(self, headers: dict[str, str] | None = None, **params: Any):
        query = {**self.identity(), **params}
        return self.client.get(f"{self.base}/notes", query_string=query, headers=headers or {})

    def ids(self, **params: Any) -> list[int]:
        response = self.notes(**params)
        assert response.status_code == 200, response.get_json()
        return [note["id"] for note in response.get_json()["notes"]]

    def unread(self, **params: Any) -> int:
        return self.notes(**params).get_json()["unread_count"]

    def read(self, note_ids: list[Any], **overrides: Any):
        body = {**self.identity(), "note_ids": note_ids, **overrides}
        return self.client.post(f"{self.base}/reads", json=body)

    def react(self, note_id: Any, reaction: Any, comment: Any = None, **overrides: Any):
        body = {**self.identity(), "note_id": note_id, "reaction": reaction, "comment": comment}
        return self.client.post(f"{self.base}/reactions", json={**body, **overrides})

    def mail_identity(self, email: str, *, signed: bool) -> dict[str, str]:
        """The user's identity and address, with the host's email_hash when ``signed``."""
        assert self.user_id is not None
        mail = {**self.identity(), "email": email}
        if signed:
            mail["email_hash"] = email_hash(self.product, self.user_id, email)
        return mail

    def subscription(self, email: str, *, signed: bool, **overrides: Any):
        query = {**self.mail_identity(email, signed=signed), **overrides}
        return self.client.get(f"{self.base}/subscription", query_string=query)

    def subscribe(self, email: str, *, signed: bool, **overrides: Any):
        body = {**self.mail_identity(email, signed=signed), **overrides}
        return self.client.post(f"{self.base}/subscription", json=body)


@pytest.fixture
def product(session: Session) -> Product:
    # No grace: every visible note starts unread, so visibility tests read simply.
    return make_product(session, allowed_origins=(ORIGIN,), grace_releases=20)


@pytest.fixture
def widget(client: FlaskClient, product: Product) -> Widget:
    return Widget(client, product)


def receipts(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(ReadReceipt))


# What a user sees ---------------------------------------------------------------


def test_only_live_public_notes_of_the_product_are_shown(
    session: Session, product: Product, widget: Widget
) -> None:
    shown = make_note(session, product, title="Shown")
    make_note(session, product, status="draft")
    make_note(session, product, status="scheduled")
    make_note(session, product, status="archived")
    make_note(session, product, is_internal=True)
    make_note(session, make_product(session), title="Other product")
    make_note(
        session,
        product,
        now=utcnow() - timedelta(days=3),
        expires_at=utcnow() - timedelta(days=1),
    )

    assert widget.ids() == [shown.id]
    assert widget.unread() == 1


def test_a_scheduled_note_appears_at_its_time_without_any_change(
    session: Session, product: Product, widget: Widget
) -> None:
    # Scheduled a day after a ``now`` one day ago: its time is the moment it was written.
    soon = make_note(session, product, now=utcnow() - timedelta(days=1), status="scheduled")
    assert widget.ids() == [soon.id]


def test_the_version_window_hides_notes_newer_than_the_users_version(
    session: Session, product: Product, widget: Widget
) -> None:
    old = make_note(session, product, version="2.9.1")
    ten = make_note(session, product, version="2.10.0")
    beta = make_note(session, product, version="3.0.0-beta.1")
    assert set(widget.ids(version="2.10.0")) == {old.id, ten.id}
    assert set(widget.ids(version="3.0.0-beta.1")) == {old.id, ten.id, beta.id}
    assert set(widget.ids()) == {old.id, ten.id, beta.id}
    wrong = widget.notes(version="two")
    assert wrong.status_code == 422 and set(wrong.get_json()["errors"]) == {"version"}


def test_targeting_follows_the_users_attributes(
    session: Session, product: Product, widget: Widget
) -> None:
    everyone = make_note(session, product)
    pro = make_note(
        session,
        product,
        audience={
            "match": "all",
            "conditions": [
                {"attribute": "plan", "op": "in", "value": ["pro", "team"]},
                {"attribute": "seats", "op": "gte", "value": "10"},
            ],
        },
    )
    assert set(widget.ids(**{"attr.plan": "pro", "attr.seats": "25"})) == {everyone.id, pro.id}
    assert widget.ids(**{"attr.plan": "pro", "attr.seats": "9"}) == [everyone.id]
    assert widget.ids(**{"attr.plan": "free", "attr.seats": "25"}) == [everyone.id]
    # Attributes sent once are remembered for calls that send none.
    assert set(widget.ids(**{"attr.plan": "team", "attr.seats": "10"})) == {everyone.id, pro.id}
    assert set(widget.ids()) == {everyone.id, pro.id}


def test_a_new_user_finds_only_the_latest_release_unread(
    session: Session, client: FlaskClient
) -> None:
    product = make_product(session)  # grace: the latest release, the default
    now = utcnow()
    history = [
        make_note(session, product, version=f"1.{minor}.0", now=now - timedelta(days=30 - minor))
        for minor in range(5)
    ]
    latest = make_note(session, product, version="1.4.0", now=now - timedelta(days=1))
    widget = Widget(client, product, "newcomer")

    body = widget.notes().get_json()
    unread = {note["id"] for note in body["notes"] if not note["read"]}
    assert unread == {history[-1].id, latest.id}
    assert body["unread_count"] == 2
    assert len(body["notes"]) == 6  # the history is there to browse, already read

    later = make_note(session, product, version="1.5.0")
    assert widget.unread() == 3
    assert later.id in widget.ids()


def test_grace_is_configurable_per_product(session: Session, client: FlaskClient) -> None:
    owner = make_member(session)
    product = make_product(session, owner)
    for minor in range(4):
        make_note(
            session, product, version=f"1.{minor}.0", now=utcnow() - timedelta(days=9 - minor)
        )
    settings = ProductSettings(name=product.name, slug=product.slug, grace_releases=3)
    services.update_product(session, product, settings, by=owner, now=utcnow())
    assert Widget(client, product, "newcomer").unread() == 3
    settings = ProductSettings(name=product.name, slug=product.slug, grace_releases=0)
    services.update_product(session, product, settings, by=owner, now=utcnow())
    assert Widget(client, product, "another").unread() == 0


def test_pages_are_newest_first_and_unread_count_covers_every_page(
    session: Session, product: Product, widget: Widget
) -> None:
    now = utcnow()
    notes = [make_note(session, product, now=now - timedelta(hours=n)) for n in range(7)]
    first = widget.notes(limit=3).get_json()
    assert [n["id"] for n in first["notes"]] == [n.id for n in notes[:3]]
    assert first["unread_count"] == 7
    second = widget.notes(limit=3, cursor=first["next_cursor"]).get_json()
    third = widget.notes(limit=3, cursor=second["next_cursor"]).get_json()
    assert [n["id"] for n in second["notes"] + third["notes"]] == [n.id for n in notes[3:]]
    assert third["next_cursor"] is None
    # Where the widget opens the product's live stream.
    # The live process's address, and the state this answer shows.
    stream = f"http://127.0.0.1:5000/api/v1/widget/{product.widget_key}/events?last_event_id="
    assert first["events"].startswith(f"{stream}{product.catalogue_stamp}.")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "51"}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "²"}, "limit"),  # a digit to str.isdigit, not to int()
        ({"limit": "1" * 5000}, "limit"),  # past the digits int() converts
        ({"cursor": "abc"}, "cursor"),
        ({"locale": "english!"}, "locale"),
        ({"attr.bad name": "x"}, "attr"),
        ({"attr.plan": "x" * 201}, "attr"),
    ],
)
def test_bad_query_parameters_are_clear_errors(widget: Widget, params: dict, field: str) -> None:
    response = widget.notes(**params)
    assert response.status_code == 422
    assert set(response.get_json()["errors"]) == {field}


def test_the_response_has_the_documented_shape(
    session: Session, product: Product, widget: Widget
) -> None:
    note = make_note(
        session,
        product,
        version="2.4.0",
        category="Fixed",
        is_important=True,
        body_md="Fixed <script>alert(1)</script> **bold**",
    )
    body = widget.notes().get_json()
    assert body["product"] == {"name": product.name, "accent_color": product.accent_color}
    (shown,) = body["notes"]
    assert shown == {
        "id": note.id,
        "version": "2.4.0",
        "title": note.title,
        "html": "<p>Fixed alert(1) <strong>bold</strong></p>",
        "category": "Fixed",
        "category_label": "Fixed",
        "published_at": note.published_at.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "url": f"http://127.0.0.1:5000/changelog/{product.slug}/2.4.0#note-{note.id}",
        "read": False,
        "important": True,
        "reaction": None,
        "requires_acknowledgement": False,
        "locale": "en",
        "acknowledged": False,
        "pinned": False,
    }
    assert "<script" not in shown["html"] and "<strong>bold</strong>" in shown["html"]
    assert shown["published_at"].endswith("Z")


# The end user record --------------------------------------------------------------


def test_an_end_user_is_created_on_first_sight_and_updated_later(
    session: Session, product: Product, widget: Widget
) -> None:
    widget.notes(version="2.0.0", locale="de", **{"attr.plan": "pro"})
    user = session.scalar(select(EndUser).where(EndUser.external_id == "user-1"))
    assert (user.app_version, user.locale, user.attributes) == ("2.0.0", "de", {"plan": "pro"})
    first_seen = user.first_seen_at

    widget.notes(version="2.1.0", **{"attr.plan": "team"})
    session.refresh(user)
    assert (user.app_version, user.attributes) == ("2.1.0", {"plan": "team"})
    assert user.first_seen_at == first_seen
    assert session.scalar(select(func.count()).select_from(EndUser)) == 1


WRITE = re.compile(r"^\s*(?:WITH\b.*?\)\s*)?(INSERT|UPDATE|DELETE|REPLACE)\b", re.I | re.S)


@contextlib.contextmanager
def writes_on(*engines: Engine) -> Iterator[list[str]]:
    """The statements that write, as sent to the databases of ``engines`` in the block."""
    seen: list[str] = []
    engines = tuple(dict.fromkeys(engines))  # on SQLite the widget may share the app's

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        match = WRITE.match(statement)
        if match:
            seen.append(match.group(1).upper())

    for engine in engines:
        event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", record)


def test_a_page_view_within_the_hour_writes_nothing(
    session: Session, product: Product, widget: Widget
) -> None:
    engines = (db.engine, widget_engine())
    with writes_on(*engines) as first:
        widget.notes(version="2.0.0", locale="de", **{"attr.plan": "pro"})
    assert first, "the first sight of a user writes it, so the listener sees writes"
    with writes_on(*engines) as again:
        widget.notes()
        widget.notes(version="2.0.0", locale="de", **{"attr.plan": "pro"})
    assert again == []
    user = session.scalar(select(EndUser))
    moved = user.last_seen_at - timedelta(hours=2)
    user.last_seen_at = moved
    session.commit()
    with writes_on(*engines) as later:
        widget.notes()
    # Two hours back may be yesterday, and a new day is recorded before the user.
    assert later == (["UPDATE"] if moved.date() == utcnow().date() else ["INSERT", "UPDATE"])


# Identity ---------------------------------------------------------------------------


def test_a_wrong_or_missing_hash_is_401_when_identity_is_required(
    session: Session, product: Product, widget: Widget
) -> None:
    note = make_note(session, product)
    for params in ({"user_hash": "0" * 64}, {"user_hash": ""}, {"user_hash": "é"}):
        response = widget.client.get(
            f"{widget.base}/notes", query_string={"user_id": "user-1", **params}
        )
        assert response.status_code == 401
        assert "user_hash" in response.get_json()["error"]
    assert widget.read([note.id], user_hash="f" * 64).status_code == 401
    assert widget.react(note.id, "👍", user_hash=None).status_code == 401
    assert Widget(widget.client, product, None).notes().status_code == 401
    assert receipts(session) == 0
    assert session.scalar(select(func.count()).select_from(EndUser)) == 0


def test_a_rotated_secret_invalidates_old_hashes(
    session: Session, product: Product, widget: Widget
) -> None:
    old = widget.identity()
    assert widget.notes().status_code == 200
    services.rotate_identity_secret(session, product, by=None, now=utcnow())
    response = widget.client.get(f"{widget.base}/notes", query_string=old)
    assert response.status_code == 401
    assert widget.notes().status_code == 200  # a hash made with the new secret


def test_anonymous_mode_only_where_allowed_and_records_nothing(
    session: Session, client: FlaskClient
) -> None:
    product = make_product(session, require_identity=False)
    note = make_note(session, product)
    anonymous = Widget(client, product, None)
    body = anonymous.notes().get_json()
    assert [n["id"] for n in body["notes"]] == [note.id]
    assert anonymous.read([note.id]).status_code == 422
    assert session.scalar(select(func.count()).select_from(EndUser)) == 0
    # Without required verification a user id alone identifies, but a wrong hash is refused.
    assert Widget(client, product, "u").notes(user_hash="").status_code == 200
    assert Widget(client, product, "u").notes(user_hash="bad").status_code == 401


def test_unknown_widget_key_is_404(client: FlaskClient) -> None:
    response = client.get("/api/v1/widget/wk_nope/notes")
    assert response.status_code == 404
    assert response.get_json()["error"]


# Reading ---------------------------------------------------------------------------


def test_reads_are_recorded_once_with_their_channel(
    session: Session, product: Product, widget: Widget
) -> None:
    first, second = make_note(session, product), make_note(session, product)
    assert widget.unread() == 2
    assert widget.read([first.id, first.id]).status_code == 204
    assert widget.unread() == 1
    assert widget.read([first.id, second.id]).status_code == 204
    assert widget.read([first.id, second.id]).status_code == 204
    assert widget.unread() == 0
    assert receipts(session) == 2
    assert set(session.scalars(select(ReadReceipt.channel))) == {"widget"}
    assert all(n["read"] for n in widget.notes().get_json()["notes"])


@pytest.mark.parametrize("kind", ["unknown", "draft", "scheduled", "internal", "other product"])
def test_reads_of_notes_a_user_cannot_see_are_422_and_record_nothing(
    session: Session, product: Product, widget: Widget, kind: str
) -> None:
    good = make_note(session, product)
    bad = {
        "unknown": lambda: 10_000_000,
        "draft": lambda: make_note(session, product, status="draft").id,
        "scheduled": lambda: make_note(session, product, status="scheduled").id,
        "internal": lambda: make_note(session, product, is_internal=True).id,
        "other product": lambda: make_note(session, make_product(session)).id,
    }[kind]()
    response = widget.read([good.id, bad])
    assert response.status_code == 422
    assert str(bad) in response.get_json()["error"]
    assert receipts(session) == 0


def test_a_scheduled_note_is_refused_in_the_words_of_a_draft_until_it_goes_out(
    session: Session, product: Product, widget: Widget
) -> None:
    draft = make_note(session, product, status="draft")
    scheduled = make_note(session, product, status="scheduled")
    for answer in (widget.read([draft.id]), widget.read([scheduled.id])):
        assert answer.status_code == 422
    said = [widget.read([note.id]).get_json()["error"] for note in (draft, scheduled)]
    assert said[0].replace(str(draft.id), "N") == said[1].replace(str(scheduled.id), "N")
    reacted = [widget.react(note.id, "👍").get_json() for note in (draft, scheduled)]
    assert reacted[0] == reacted[1] and "note_id" in reacted[1]["errors"]
    assert receipts(session) == 0
    assert session.scalar(select(func.count()).select_from(Reaction)) == 0

    # Once out, the same note takes reads and reactions.
    live = make_note(session, product, status="scheduled", now=utcnow() - timedelta(days=1))
    assert widget.read([live.id]).status_code == 204
    assert widget.react(live.id, "👍").status_code == 200


@pytest.mark.parametrize("note_ids", [[], "1", [True], ["1"], [1.5], list(range(1, 102)), None])
def test_malformed_reads_are_422(widget: Widget, note_ids: Any) -> None:
    response = widget.read(note_ids)
    assert response.status_code == 422
    assert set(response.get_json()["errors"]) == {"note_ids"}


@pytest.mark.parametrize("bad", ["a\x00b", "\ud800"])
def test_text_a_database_cannot_keep_is_422_not_a_crash(
    session: Session, product: Product, widget: Widget, bad: str
) -> None:
    note = make_note(session, product)
    if bad.isascii():  # a URL can carry %00; a lone surrogate only comes inside JSON
        query = {**widget.identity(), "user_id": bad}
        assert widget.client.get(f"{widget.base}/notes", query_string=query).status_code == 422
        assert widget.notes(**{"attr.plan": bad}).status_code == 422
    assert widget.read([note.id], user_id=bad).status_code == 422
    assert widget.react(note.id, "👍", comment=bad).status_code == 422
    assert session.scalar(select(func.count()).select_from(Reaction)) == 0


def test_a_body_that_is_not_json_is_a_clear_error(widget: Widget) -> None:
    response = widget.client.post(f"{widget.base}/reads", data="note_ids=1")
    assert response.status_code == 422
    assert "JSON" in response.get_json()["error"]


@pytest.mark.parametrize("resource", ["reads", "reactions", "subscription"])
@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_json_nested_past_the_parser_is_a_clear_error(
    widget: Widget, resource: str, depth: int
) -> None:
    body = json.dumps(widget.identity())[:-1] + ', "note_ids": ' + "[" * depth + "]" * depth + "}"
    response = widget.client.post(
        f"{widget.base}/{resource}", data=body, content_type="application/json"
    )
    assert response.status_code == 422
    assert "JSON" in response.get_json()["error"]


# Reactions ------------------------------------------------------------------------


def test_one_reaction_per_user_and_note_changeable_and_clearable(
    session: Session, product: Product, widget: Widget
) -> None:
    note = make_note(session, product)
    assert widget.react(note.id, "👍").get_json()["reaction"] == "👍"
    assert widget.react(note.id, "😕", "  Where did export go? ").status_code == 200
    reaction = session.scalar(select(Reaction))
    assert (reaction.reaction, reaction.comment) == ("😕", "Where did export go?")
    shown = widget.notes().get_json()["notes"][0]
    assert (shown["reaction"], shown["read"]) == ("😕", True)  # reacting is reading
    widget.react(note.id, None)
    assert session.scalar(select(func.count()).select_from(Reaction)) == 0


def test_a_stored_reaction_of_any_text_is_sent_as_that_text(
    session: Session, product: Product, widget: Widget
) -> None:
    # The widget takes three reactions, but whatever the database holds goes out as JSON
    # text: quotes, backslashes, the separators of an aggregate, line breaks, any script.
    stored = {make_note(session, product).id: text for text in ('a"b\\c,1:2', "line\nbreak é👍")}
    for note_id in stored:
        assert widget.react(note_id, "👍").status_code == 200
    for note_id, text in stored.items():
        session.execute(update(Reaction).where(Reaction.note_id == note_id).values(reaction=text))
    session.commit()
    shown = widget.notes().get_json()["notes"]
    assert {note["id"]: note["reaction"] for note in shown} == stored


@pytest.mark.parametrize(
    ("note_id", "reaction", "comment", "field"),
    [
        (None, "👍", None, "note_id"),
        ("x", "👍", None, "note_id"),
        (10_000_000, "👍", None, "note_id"),
        ("ok", "🎉", None, "reaction"),
        ("ok", ["👍"], None, "reaction"),  # not text, so no key of the reactions either
        ("ok", "👍", "x" * 1001, "comment"),
        ("ok", "👍", 5, "comment"),
    ],
)
def test_bad_reactions_are_422(
    session: Session, product: Product, widget: Widget, note_id, reaction, comment, field
) -> None:
    note = make_note(session, product)
    response = widget.react(note.id if note_id == "ok" else note_id, reaction, comment)
    assert response.status_code == 422
    assert set(response.get_json()["errors"]) == {field}
    assert session.scalar(select(func.count()).select_from(Reaction)) == 0


def test_bidirectional_controls_are_taken_out_of_comments(
    session: Session, product: Product, widget: Widget
) -> None:
    note = make_note(session, product)
    # Overrides and isolates would turn "exe.txt" around, and the console text after it.
    sent = "Rename \u202eexe.txt\u202c, \u2067please\u2069 \u202a\u202b\u202d\u2066\u2068"
    answer = widget.react(note.id, "😕", sent)
    assert answer.status_code == 200
    assert answer.get_json()["comment"] == "Rename exe.txt, please"
    assert session.scalar(select(Reaction.comment)) == "Rename exe.txt, please"
    # The marks stay: right-to-left writers need them, and they reorder nothing beyond.
    arabic = "\u0645\u0631\u062d\u0628\u0627 \u200fv2.1\u200e"
    widget.react(note.id, "👍", arabic)
    assert (
        session.scalar(select(Reaction.comment).execution_options(populate_existing=True)) == arabic
    )
    # Nothing left but controls: no comment.
    assert widget.react(note.id, "👍", "\u202e\u2066").get_json()["comment"] is None


# Email subscriptions -----------------------------------------------------------------


def send_all(server: SmtpServer) -> None:
    sender = transport.Smtp(server.url)
    try:
        delivery.deliver_due(sender)
    finally:
        sender.close()


def subscriber(session: Session, address: str) -> Subscriber | None:
    session.expire_all()
    return session.scalar(select(Subscriber).where(Subscriber.email == address))


def outbox_kinds(session: Session) -> list[OutboxKind]:
    return list(session.scalars(select(OutboxMessage.kind).order_by(OutboxMessage.id)))


def test_an_address_the_host_signed_subscribes_with_one_click(
    session: Session, product: Product, widget: Widget, smtp_server: SmtpServer
) -> None:
    widget.notes(**{"attr.plan": "pro"})
    before = widget.subscription("Ann@Example.com", signed=True)
    assert before.get_json() == {"email": "ann@example.com", "status": None}

    answer = widget.subscribe("Ann@Example.com", signed=True)
    assert answer.status_code == 200
    assert answer.get_json() == {"email": "ann@example.com", "status": "confirmed"}
    ann, end_user = subscriber(session, "ann@example.com"), session.scalar(select(EndUser))
    assert ann is not None and end_user is not None
    assert (ann.status, ann.end_user_id) == (SubscriberStatus.CONFIRMED, end_user.id)
    assert outbox_kinds(session) == []  # the host vouched: no confirmation to follow
    after = widget.subscription("Ann@Example.com", signed=True)
    assert after.get_json() == {"email": "ann@example.com", "status": "confirmed"}
    assert widget.subscribe("Ann@Example.com", signed=True).status_code == 200
    assert session.scalar(select(func.count()).select_from(Subscriber)) == 1

    make_note(session, product, is_important=True)
    send_all(smtp_server)
    assert smtp_server.recorder.per_recipient() == {"ann@example.com": 1}


@pytest.mark.parametrize("status", [None, *SubscriberStatus])
def test_an_address_the_host_did_not_sign_is_neither_shown_nor_subscribed(
    session: Session, product: Product, widget: Widget, status: SubscriberStatus | None
) -> None:
    # An end user with a valid user_hash claims somebody else's address, as an attribute
    # (which nothing signs) and in the subscription calls.
    victim = "victim@example.com"
    if status is not None:
        session.add(Subscriber(product_id=product.id, email=victim, status=status))
        session.commit()
    widget.notes(**{"attr.email": victim})

    shown = widget.subscription(victim, signed=False)
    assert shown.status_code == 200
    assert shown.get_json() == {"email": victim, "status": None}
    answer = widget.subscribe(victim, signed=False)
    assert answer.status_code == 202
    assert answer.get_json() == {"email": victim, "status": "pending"}

    claimed = subscriber(session, victim)
    assert claimed is not None and claimed.end_user_id is None
    assert claimed.status is (status or SubscriberStatus.PENDING)
    assert outbox_kinds(session) == [OutboxKind.CONFIRM]  # the mailbox's owner decides


def test_without_identity_verification_no_stored_address_is_shown(
    session: Session, client: FlaskClient
) -> None:
    product = make_product(session, require_identity=False)
    Widget(client, product, "victim").notes(**{"attr.email": "victim@example.com"})
    session.add(
        Subscriber(
            product_id=product.id, email="victim@example.com", status=SubscriberStatus.CONFIRMED
        )
    )
    session.commit()
    url = f"/api/v1/widget/{product.widget_key}/subscription"
    for query in ({"user_id": "victim"}, {"user_id": "victim", "email": "victim@example.com"}):
        answer = client.get(url, query_string=query)
        assert answer.get_json().get("status") is None
        assert "victim@" not in answer.get_data(as_text=True).replace(query.get("email", ""), "")


@pytest.mark.parametrize("status", [SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED])
def test_a_signed_address_that_left_is_asked_again_by_mail_before_any_note(
    session: Session,
    product: Product,
    widget: Widget,
    client: FlaskClient,
    smtp_server: SmtpServer,
    status: SubscriberStatus,
) -> None:
    session.add(Subscriber(product_id=product.id, email="ann@example.com", status=status))
    session.commit()
    widget.notes(**{"attr.email": "ann@example.com"})
    answer = widget.subscribe("ann@example.com", signed=True)
    assert answer.status_code == 202
    assert answer.get_json()["status"] == "pending"
    ann = subscriber(session, "ann@example.com")
    assert ann is not None and ann.status is status
    assert widget.subscription("ann@example.com", signed=True).get_json()["status"] is None
    make_note(session, product, is_important=True)
    send_all(smtp_server)
    mails = smtp_server.recorder.to("ann@example.com")
    if status is SubscriberStatus.BOUNCED:
        assert mails == []  # nothing goes to an address that bounced, not even this
        return
    [mail] = mails
    assert mail["Subject"].startswith("Confirm your subscription")

    text = mail.get_body(("plain",)).get_content()
    confirm = text[text.index("/subscriptions/confirm/") :].split()[0]
    assert client.get(confirm).status_code == 200
    ann = subscriber(session, "ann@example.com")
    assert ann is not None and ann.status is SubscriberStatus.CONFIRMED


def test_subscription_calls_check_the_identity_and_the_address(
    session: Session, product: Product, widget: Widget
) -> None:
    widget.notes()
    for forged in (
        "0" * 64,
        "é",
        "\ud800",
        email_hash(product, "user-2", "ann@example.com"),  # another user's
        email_hash(product, "user-1", "bob@example.com"),  # another address's
        user_hash(product, "user-1"),  # a user_hash is no email_hash
    ):
        answer = widget.subscribe("ann@example.com", signed=True, email_hash=forged)
        assert answer.status_code == 401
        assert "email_hash" in answer.get_json()["error"]
    assert (
        widget.subscription("ann@example.com", signed=True, email_hash="0" * 64).status_code == 401
    )
    assert widget.subscribe("ann@example.com", signed=True, user_hash="0" * 64).status_code == 401
    assert widget.subscribe("ann@example.com", signed=True, user_hash=None).status_code == 401
    for bad in (None, "", "not-an-address", "\ud800@example.com", ["ann@example.com"]):
        body = {**widget.identity(), "email": bad}
        answer = widget.client.post(f"{widget.base}/subscription", json=body)
        assert answer.status_code == 422 and "email" in answer.get_json()["errors"]
    assert widget.client.post(f"{widget.base}/subscription", data="nonsense").status_code == 422
    assert session.scalar(select(func.count()).select_from(Subscriber)) == 0
    assert outbox_kinds(session) == []


def test_a_user_id_is_one_line_so_no_user_hash_is_an_email_hash(
    product: Product, client: FlaskClient
) -> None:
    # The user_hash of this id is user-1's email_hash for ann: the id is refused.
    forged = "email:user-1\nann@example.com"
    assert user_hash(product, forged) == email_hash(product, "user-1", "ann@example.com")
    for user_id in (forged, "tab\there", "bell\x07"):
        assert Widget(client, product, user_id).notes().status_code == 422


def test_an_email_attribute_links_no_subscriber_to_whoever_sent_it(
    session: Session, product: Product, widget: Widget
) -> None:
    # Were it linked, reading notes in the widget would stop the mail of the address.
    widget.notes(**{"attr.email": "victim@example.com"})
    pending = subscriptions.request_subscription(
        session, product, "victim@example.com", Preferences(), now=utcnow()
    )
    confirmed = subscriptions.confirm(session, pending, Preferences(), now=utcnow())
    assert confirmed.end_user_id is None


def test_subscribing_from_the_widget_is_rate_limited_per_address_and_per_ip(
    app_factory, session: Session, product: Product
) -> None:
    limited = app_factory(
        RATELIMIT_ENABLED=True,
        RATELIMIT_SUBSCRIBE="4 per minute",
        RATELIMIT_SUBSCRIBE_ADDRESS="2 per hour",
    )
    widget = Widget(limited.test_client(), product)
    answers = [widget.subscribe("victim@example.com", signed=False) for _ in range(3)]
    assert [answer.status_code for answer in answers] == [202, 202, 429]
    assert answers[-1].get_json()["error"]
    assert widget.subscribe("other@example.com", signed=False).status_code == 202
    assert widget.subscribe("third@example.com", signed=False).status_code == 429
    assert outbox_kinds(session) == [OutboxKind.CONFIRM] * 3


# HTTP: CORS and caching --------------------------------------------------------------


def test_cors_is_limited_to_allowed_origins(product: Product, widget: Widget) -> None:
    allowed = widget.notes(headers={"Origin": ORIGIN})
    assert allowed.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "Origin" in allowed.headers["Vary"]
    refused = widget.notes(headers={"Origin": "https://evil.example"})
    assert refused.status_code == 403
    assert "Access-Control-Allow-Origin" not in refused.headers
    server_side = widget.notes()  # no Origin: a server may call too
    assert server_side.status_code == 200
    assert "Access-Control-Allow-Origin" not in server_side.headers


def test_pages_from_the_public_address_are_allowed_from_another_address(
    app, product: Product, widget: Widget
) -> None:
    """The demo host page, served at BASE_URL, opens its stream on the live process's own
    address: that process takes the public address's origin as its own."""
    app.config["BASE_URL"] = "http://tidings.example:8000/changes"
    answer = widget.notes(headers={"Origin": "http://tidings.example:8000"})
    assert answer.status_code == 200
    assert answer.headers["Access-Control-Allow-Origin"] == "http://tidings.example:8000"
    assert widget.notes(headers={"Origin": "http://tidings.example:8001"}).status_code == 403


def test_a_stream_asked_of_the_app_says_where_streams_are(client, product: Product) -> None:
    """The live process serves the streams; the app answers in JSON, with CORS, so the
    widget polls quietly."""
    events = f"/api/v1/widget/{product.widget_key}/events"
    answer = client.get(events, headers={"Origin": ORIGIN})
    assert answer.status_code == 503 and "live process" in answer.json["error"]
    assert answer.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert client.get("/api/v1/widget/wk_nothing/events").status_code == 404
    assert client.get(events, headers={"Origin": "https://evil.example"}).status_code == 403


def test_preflight_is_answered_for_allowed_origins_only(widget: Widget) -> None:
    headers = {
        "Origin": ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    response = widget.client.options(f"{widget.base}/reads", headers=headers)
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert "Content-Type" in response.headers["Access-Control-Allow-Headers"]
    refused = widget.client.options(
        f"{widget.base}/notes", headers={**headers, "Origin": "https://evil.example"}
    )
    assert refused.status_code == 403


def test_an_unchanged_state_answers_304_and_any_change_a_new_etag(
    session: Session, product: Product, widget: Widget
) -> None:
    note = make_note(session, product)
    first = widget.notes()
    etag = first.headers["ETag"]
    again = widget.notes(headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b""
    widget.read([note.id])
    assert widget.notes(headers={"If-None-Match": etag}).status_code == 200
    etag = widget.notes().headers["ETag"]
    make_note(session, product)
    assert widget.notes(headers={"If-None-Match": etag}).status_code == 200
    assert (
        Widget(widget.client, product, "someone-else")
        .notes(headers={"If-None-Match": etag})
        .status_code
        == 200
    )


def test_the_script_is_served(client: FlaskClient) -> None:
    with client.get("/widget.js") as response:
        assert response.status_code == 200
        assert response.mimetype in ("text/javascript", "application/javascript")
        assert b"attachShadow" in response.data
        assert "max-age=300" in response.headers["Cache-Control"]
