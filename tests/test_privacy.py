"""An end user's data on request: the export holds everything Tidings keeps about them,
and erasure leaves no row that names them while every figure stays what it was.

The user is made through the widget as a host page would (reads, a reaction with a
comment, a signed address, a subscription, help before support, an acknowledgement),
by an agent's send, a help desk's tickets and the mail worker's rows, so that they have
rows in every table that can hold their data. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from flask import Flask, current_app
from flask.testing import FlaskClient
from sqlalchemy import func, inspect, select
from sqlalchemy.orm import Session

from announcements import agent_sends, insights, privacy, queries, rollups, tickets
from announcements.errors import NotFound
from announcements.models import (
    AgentSend,
    AuditEvent,
    Base,
    EndUser,
    EndUserDay,
    Escalation,
    HelpRequest,
    HoldbackAssignment,
    Note,
    OutboxKind,
    OutboxMessage,
    OutboxStatus,
    Product,
    Reaction,
    Subscriber,
    SubscriberStatus,
    Ticket,
    utcnow,
)
from tests.factories import make_note, make_product
from tests.stored import stored_texts
from tests.test_widget_api import Widget, email_hash

ORIGIN = "https://app.example.com"
# Ids hosts use: a path, an address, spaces and letters beyond ASCII.
EXTERNAL_ID = "team/ann@example.org Zoë 日本"
ADDRESS = "ann.quirkstone@example.com"
ATTRIBUTES = {"full_name": "Ann Quirkstone", "phone": "+33 6 12 98 76 54", "plan": "zebracorn"}
COMMENT = "The export button hides behind the kumquat menu"
HELP_QUERY = "how do I find the kumquat menu"
TICKET_SUBJECT = "Refund for Ann Quirkstone"
# What no row may hold once the user is erased (compared case aside).
TRACES = (EXTERNAL_ID, ADDRESS, *ATTRIBUTES.values(), COMMENT, HELP_QUERY, TICKET_SUBJECT)


@dataclasses.dataclass
class Person:
    """The user made by :func:`make_person` and what was made for them."""

    product: Product
    user: EndUser
    notes: list[Note]
    subscriber: Subscriber


def make_person(client: FlaskClient, session: Session, product: Product | None = None) -> Person:
    """A user with rows in every table that can hold an end user's data, and a neighbour
    (``bob``) who shares the notes but nothing personal."""
    product = product or make_product(
        session, allowed_origins=(ORIGIN,), grace_releases=20, slug="acme"
    )
    past = utcnow() - timedelta(days=3)
    notice = make_note(
        session,
        product,
        version="1.0.0",
        title="Invoices moved",
        requires_acknowledgement=True,
        escalate_after_days=1,
        now=past,
    )
    other = make_note(session, product, version="1.1.0", title="Faster search", now=past)
    notes = [notice, other]
    for user_id in (EXTERNAL_ID, "bob"):
        widget = Widget(client, product, user_id)
        attrs = {f"attr.{k}": v for k, v in ATTRIBUTES.items()} if user_id == EXTERNAL_ID else {}
        assert widget.notes(version="1.1.0", **attrs).status_code == 200
        assert widget.read([notice.id, other.id]).status_code in (200, 204)
        assert (
            widget.react(other.id, "👍", COMMENT if user_id == EXTERNAL_ID else "ok").status_code
            == 200
        )
        answer = client.post(
            f"{widget.base}/acknowledgements", json={**widget.identity(), "note_id": notice.id}
        )
        assert answer.status_code == 204, answer.get_json()
        if user_id != EXTERNAL_ID:
            continue
        signed = {"email": ADDRESS, "email_hash": email_hash(product, user_id, ADDRESS)}
        answer = client.post(f"{widget.base}/identity", json={**widget.identity(), **signed})
        assert answer.status_code == 204
        assert widget.subscribe(ADDRESS, signed=True).status_code in (200, 201)
        asked = client.post(
            f"{widget.base}/help",
            json={**widget.identity(), "query": HELP_QUERY, "note_ids": [other.id]},
        )
        assert asked.status_code == 201, asked.get_json()
        answered = client.post(
            f"{widget.base}/help/{asked.get_json()['id']}",
            json={**widget.identity(), "outcome": "answered", "note_id": other.id},
        )
        assert answered.status_code == 204
    session.expire_all()
    user = session.scalars(select(EndUser).where(EndUser.external_id == EXTERNAL_ID)).one()
    subscriber = session.scalars(select(Subscriber).where(Subscriber.email == ADDRESS)).one()
    assert subscriber.end_user_id == user.id and subscriber.status is SubscriberStatus.CONFIRMED
    now = utcnow()
    agent_sends.send(
        session,
        product,
        user,
        other.id,
        agent="Sam from support",
        sent_by=None,
        via="sidebar",
        now=now,
    )
    session.add_all(
        [
            Escalation(
                note_id=notice.id,
                end_user_id=user.id,
                subscriber_id=subscriber.id,
                escalated_at=now,
            ),
            HoldbackAssignment(
                note_id=other.id, end_user_id=user.id, control=False, assigned_at=past
            ),
            OutboxMessage(
                product_id=product.id,
                subscriber_id=subscriber.id,
                note_id=notice.id,
                kind=OutboxKind.NOTE,
                status=OutboxStatus.SENT,
                payload={"locale": "en", "to": ADDRESS},
                message_id=f"<1.{ADDRESS}>",
                last_error=f"450 {ADDRESS} greylisted",
                created_at=past,
                sent_at=past,
            ),
        ]
    )
    for number, (given_id, email) in enumerate([(EXTERNAL_ID, None), (None, ADDRESS)]):
        tickets.store(
            session,
            product,
            tickets.TicketInput(
                source="api",
                external_id=f"T-{number}",
                created_at=now,
                user_id=given_id,
                email=email,
                subject=TICKET_SUBJECT,
                tags=("billing",),
            ),
            secret_key=current_app.config["SECRET_KEY"],
            now=now,
        )
    session.commit()
    return Person(product, user, notes, subscriber)


def traces_in_database(session: Session) -> list[tuple[str, str, str]]:
    """(table, column, trace) wherever the database holds any of the person's
    :data:`TRACES`, in any case."""
    return [
        (table, column, trace)
        for table, column, text in stored_texts(session)
        for trace in TRACES
        if trace.lower() in text.lower()
    ]


def figures(session: Session, person: Person, now: datetime) -> list[Any]:
    """The figures the note and Insights pages show at ``now``, read as they read them;
    one ``now`` for the readings a test compares, so midnight between them moves nothing."""
    product = person.product
    shown: list[Any] = [queries.note_counts(session, product, now=now)]
    for note in person.notes:
        session.refresh(note)
        # Its figures; the latest comments it quotes are text, not figures.
        shown.append(dataclasses.replace(queries.readership(session, note), comments=[]))
        shown.append(insights.note_insights(session, note, now=now))
    today = now.date()
    shown.append(
        insights.product_insights(
            session, product, start=today - timedelta(days=30), end=today, by=None, now=now
        )
    )
    return [_comparable(value) for value in shown]


def _comparable(value: Any) -> Any:
    """A figure as plain data, so two readings compare equal when they say the same."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _comparable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(key): _comparable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_comparable(item) for item in value]
    if isinstance(value, Base):
        return (type(value).__name__, inspect(value).identity)
    return value


@pytest.fixture
def person(client: FlaskClient, session: Session) -> Person:
    return make_person(client, session)


# Export --------------------------------------------------------------------------------


def test_the_export_holds_everything_kept_about_the_user(session: Session, person: Person) -> None:
    notice, other = person.notes
    data = privacy.export_end_user(session, person.product, EXTERNAL_ID)
    json.dumps(data)  # JSON as it is

    assert data["end_user"]["external_id"] == EXTERNAL_ID
    assert data["end_user"]["attributes"] == ATTRIBUTES
    assert data["end_user"]["has_signed_email"] is True
    assert data["versions_seen"] == ["1.1.0"]
    assert [day["day"] for day in data["days_seen"]] == [
        person.user.last_seen_at.date().isoformat()
    ]
    reads = {(entry["note"]["id"], entry["channel"]) for entry in data["reads"]}
    assert reads == {(notice.id, "widget"), (other.id, "widget")}
    assert all(entry["read_at"] for entry in data["reads"])
    [reaction] = data["reactions"]
    assert (reaction["note"]["title"], reaction["reaction"], reaction["comment"]) == (
        "Faster search",
        "👍",
        COMMENT,
    )
    assert [entry["note"]["id"] for entry in data["acknowledgements"]] == [notice.id]
    assert [entry["note"]["id"] for entry in data["escalations"]] == [notice.id]
    [send] = data["agent_sends"]
    assert (send["agent"], send["via"], send["emailed"]) == ("Sam from support", "sidebar", True)
    assert [(h["note"]["id"], h["group"]) for h in data["holdbacks"]] == [(other.id, "treatment")]
    [help_request] = data["help_requests"]
    assert help_request["query"] == HELP_QUERY and help_request["outcome"] == "answered"
    assert [n["id"] for n in help_request["shown"]] == [other.id]
    assert help_request["answered_note"]["id"] == other.id
    assert sorted(t["external_id"] for t in data["tickets"]) == ["T-0", "T-1"]
    assert {t["subject"] for t in data["tickets"]} == {TICKET_SUBJECT}
    [subscription] = data["subscriptions"]
    assert subscription["email"] == ADDRESS and subscription["status"] == "confirmed"
    kinds = sorted((e["kind"], e["status"]) for e in subscription["emails"])
    assert kinds == [("agent", "queued"), ("note", "sent")]


def test_no_export_for_a_user_not_seen_or_of_another_product(
    session: Session, person: Person
) -> None:
    other = make_product(session, slug="elsewhere")
    for product, external_id in [
        (other, EXTERNAL_ID),
        (person.product, "nobody"),
        (person.product, "a\x00b"),
        (person.product, "x" * 300),
    ]:
        with pytest.raises(NotFound):
            privacy.export_end_user(session, product, external_id)


# Erasure -------------------------------------------------------------------------------


def test_erasure_leaves_no_trace_and_every_figure_as_it_was(
    app: Flask, session: Session, person: Person
) -> None:
    now = utcnow()
    rollups.refresh(session, person.product, now=now + timedelta(minutes=1))
    before = figures(session, person, now)
    assert traces_in_database(session)  # the walk sees them while they are there

    counts = privacy.erase_end_user(session, person.product, EXTERNAL_ID, actor=None, now=utcnow())
    session.commit()

    assert counts == {
        "end_users": 1,
        "reads": 2,
        "acknowledgements": 1,
        "reactions": 1,
        "comments": 1,
        "help_requests": 1,
        "tickets": 2,
        "agent_sends": 1,
        "audit_events": 1,
        "subscribers": 1,
        "emails": 2,
    }
    session.expire_all()
    assert traces_in_database(session) == []
    assert figures(session, person, now) == before

    # The rows the figures count are still there, now the tombstone's.
    tombstone = session.get_one(EndUser, person.user.id)
    assert tombstone.external_id.startswith("erased:") and tombstone.erased_at is not None
    assert tombstone.attributes == {} and tombstone.email_key is None
    assert tombstone.app_version == "1.1.0"
    assert (
        session.scalar(select(Reaction.reaction).where(Reaction.end_user_id == tombstone.id))
        == "👍"
    )
    assert (
        session.scalar(
            select(func.count())
            .select_from(EndUserDay)
            .where(EndUserDay.end_user_id == tombstone.id)
        )
        == 1
    )
    assert (
        session.scalar(
            select(func.count()).select_from(AgentSend).where(AgentSend.end_user_id == tombstone.id)
        )
        == 1
    )
    help_request = session.scalars(select(HelpRequest)).one()
    assert help_request.outcome == "answered" and help_request.query == ""
    assert {t.tags[0] for t in session.scalars(select(Ticket))} == {"billing"}
    subscriber = session.get_one(Subscriber, person.subscriber.id)
    assert subscriber.status is SubscriberStatus.UNSUBSCRIBED and subscriber.erased_at is not None
    assert subscriber.email.endswith("@erased.invalid") and subscriber.end_user_id is None
    statuses = session.scalars(
        select(OutboxMessage.status).where(OutboxMessage.subscriber_id == subscriber.id)
    )
    assert sorted(statuses) == [OutboxStatus.SENT, OutboxStatus.SKIPPED]

    # The neighbour's data is untouched.
    bob = session.scalars(select(EndUser).where(EndUser.external_id == "bob")).one()
    assert session.scalar(select(Reaction.comment).where(Reaction.end_user_id == bob.id)) == "ok"

    # The erasure is in the audit log, with counts and no one named.
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == "privacy.erased")).one()
    assert "reads 2" in event.summary and "subscribers 1" in event.summary
    sent = session.scalars(select(AuditEvent).where(AuditEvent.action == "note.sent_to_user")).one()
    assert sent.summary.endswith("sent and e-mailed it to user (erased)")


def test_a_later_roll_up_keeps_the_past_and_counts_the_subscriber_as_leaving_today(
    session: Session, person: Person
) -> None:
    now = utcnow()
    rollups.refresh(session, person.product, now=now + timedelta(minutes=1))
    before = figures(session, person, now)
    privacy.erase_end_user(session, person.product, EXTERNAL_ID, actor=None, now=now)
    session.commit()
    rollups.refresh(session, person.product, now=now + timedelta(minutes=2))
    after = figures(session, person, now)
    # Everything but how far the roll-up counted and the list's own figures is as it was.
    assert _without(after, "counted_until", "subscribers") == _without(
        before, "counted_until", "subscribers"
    )
    points_before, points_after = before[-1]["subscribers"], after[-1]["subscribers"]
    assert points_after[-1]["total"] == points_before[-1]["total"] - 1
    assert points_after[-1]["unsubscribed"] == points_before[-1]["unsubscribed"] + 1
    assert points_after[:-1] == points_before[:-1]


def _without(shown: list[Any], *keys: str) -> list[Any]:
    return [
        {k: v for k, v in figure.items() if k not in keys} if isinstance(figure, dict) else figure
        for figure in shown
    ]


def test_erasing_twice_or_nobody_is_not_found(session: Session, person: Person) -> None:
    privacy.erase_end_user(session, person.product, EXTERNAL_ID, actor=None, now=utcnow())
    session.commit()
    for external_id in (EXTERNAL_ID, "nobody", person.user.external_id):
        with pytest.raises(NotFound):
            privacy.erase_end_user(session, person.product, external_id, actor=None, now=utcnow())
        with pytest.raises(NotFound):
            privacy.export_end_user(session, person.product, external_id)
    with pytest.raises(NotFound):
        privacy.erase_end_user(session, make_product(session), "bob", actor=None, now=utcnow())


def test_a_user_seen_again_after_erasure_starts_afresh(
    client: FlaskClient, session: Session, person: Person
) -> None:
    privacy.erase_end_user(session, person.product, EXTERNAL_ID, actor=None, now=utcnow())
    session.commit()
    widget = Widget(client, person.product, EXTERNAL_ID)
    answer = widget.notes(version="1.1.0")
    assert answer.status_code == 200 and answer.get_json()["unread_count"] == 2
    data = privacy.export_end_user(session, person.product, EXTERNAL_ID)
    assert data["reads"] == [] and data["subscriptions"] == []


def test_a_subscriber_alone_is_erased_and_its_links_die(session: Session) -> None:
    product = make_product(session)
    subscriber = Subscriber(
        product_id=product.id,
        email="zed@example.net",
        status=SubscriberStatus.BOUNCED,
        categories=["Fixed"],
    )
    session.add(subscriber)
    session.commit()
    key = subscriber.link_key
    assert privacy.export_subscriber(session, subscriber)["email"] == "zed@example.net"
    counts = privacy.erase_subscriber_of(session, product, subscriber, actor=None, now=utcnow())
    session.commit()
    assert counts == {"subscribers": 1, "emails": 0}
    assert subscriber.status is SubscriberStatus.BOUNCED and subscriber.unsubscribed_at is None
    assert subscriber.link_key != key and subscriber.categories == []
    with pytest.raises(NotFound):
        privacy.erase_subscriber(session, subscriber, now=utcnow())
    with pytest.raises(NotFound):
        privacy.find_subscriber(session, product, "zed@example.net")
    event = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "privacy.subscriber_erased")
    ).one()
    assert "zed" not in event.summary


def test_a_ticket_matched_to_another_user_with_the_same_address_is_theirs(
    session: Session,
) -> None:
    """Two users can carry one address hash; a ticket matched to one is not the other's
    to export or erase. One matched to no one yet, with the hash, is either's."""
    product = make_product(session)
    ann, twin = (
        EndUser(product_id=product.id, external_id=name, email_key="k" * 64)
        for name in ("ann", "twin")
    )
    session.add_all([ann, twin])
    session.flush()
    made = utcnow()
    theirs, unmatched = (
        Ticket(
            product_id=product.id,
            source="zendesk",
            external_id=number,
            created_at=made,
            end_user_id=user_id,
            requester_key="k" * 64,
            subject=subject,
        )
        for number, user_id, subject in (("1", twin.id, "Twin's"), ("2", None, "Someone's"))
    )
    session.add_all([theirs, unmatched])
    session.commit()
    exported = privacy.export_end_user(session, product, "ann")
    assert [ticket["subject"] for ticket in exported["tickets"]] == ["Someone's"]
    privacy.erase_end_user(session, product, "ann", actor=None, now=utcnow())
    session.commit()
    session.refresh(theirs)
    session.refresh(unmatched)
    assert (theirs.subject, unmatched.subject) == ("Twin's", None)


def test_an_anonymous_user_names_no_one(session: Session) -> None:
    product = make_product(session)
    now = utcnow()
    user = privacy.anonymous_user(session, product, now=now)
    assert user.id is not None and user.erased_at == now and user.attributes == {}
    assert user.external_id.startswith(privacy.TOMBSTONE_PREFIX)
    assert privacy.anonymous_user(session, product, now=now).external_id != user.external_id


def test_an_agent_summary_cut_by_the_column_is_still_scrubbed(session: Session) -> None:
    product = make_product(session)
    long_id = "u" * 255
    note = make_note(session, product, title="T" * 100)
    user = EndUser(product_id=product.id, external_id=long_id, attributes={})
    session.add(user)
    session.commit()
    agent_sends.send(
        session, product, user, note.id, agent="A" * 254, sent_by=None, via="sidebar", now=utcnow()
    )
    session.commit()
    summary = session.scalars(
        select(AuditEvent.summary).where(AuditEvent.action == "note.sent_to_user")
    ).one()
    assert len(summary) == 500 and not summary.endswith(long_id)
    privacy.erase_end_user(session, product, long_id, actor=None, now=utcnow())
    session.commit()
    summary = session.scalars(
        select(AuditEvent.summary).where(AuditEvent.action == "note.sent_to_user")
    ).one()
    assert "uuuu" not in summary
