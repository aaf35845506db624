"""The demo's support history: a newcomer opening Support impact on Lumen sees real figures,
a hold-back that shows its effect, and a note that honestly has too little to say; a
security notice most have acknowledged and some were e-mailed; help shown before tickets
and the deflections it made; notes sent by agents; and a demo host user to try it all as."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from announcements import lookup, tickets, versions
from announcements.models import (
    Acknowledgement,
    AgentSend,
    AuditEvent,
    Category,
    EndUser,
    Escalation,
    HelpRequest,
    HelpShown,
    HoldbackAssignment,
    Note,
    OutboxKind,
    OutboxMessage,
    OutboxStatus,
    Product,
    ReadReceipt,
    Subscriber,
    SubscriberStatus,
    SupportConnection,
    SupportDesk,
    SupportImpact,
    Ticket,
    utcnow,
)
from announcements.support_impact import NOT_ENOUGH_DATA
from app import demo_data
from app.api.widget import expected_hash


def _count(session, model, *where) -> int:
    return session.scalar(select(func.count()).select_from(model).where(*where))


def test_demo_has_a_support_history_with_figures(runner, session) -> None:
    result = runner.invoke(args=["demo", "--json"])
    assert result.exit_code == 0, result.output
    described = {p["slug"]: p for p in json.loads(result.output)["products"]}
    lumen = session.scalar(select(Product).where(Product.slug == "lumen"))
    assert lumen.support_window_days == 14

    tickets = _count(session, Ticket, Ticket.product_id == lumen.id)
    assert 2_500 <= tickets <= 4_000
    assert 4_000 <= _count(session, EndUser, EndUser.product_id == lumen.id) <= 6_200
    assert f"{tickets:,} tickets from Zendesk" in described["lumen"]["support"]
    assert described["ledger"]["support"] is None
    connection = session.scalar(
        select(SupportConnection).where(SupportConnection.product_id == lumen.id)
    )
    assert connection.desk is SupportDesk.ZENDESK
    assert _count(session, Ticket, Ticket.connection_id == connection.id) == tickets
    # Most tickets name their user; some only an address, found through its keyed hash;
    # a few come from people the widget never saw.
    by_address = _count(
        session, Ticket, Ticket.requester_external_id.is_(None), Ticket.end_user_id.is_not(None)
    )
    unmatched = _count(session, Ticket, Ticket.end_user_id.is_(None))
    assert by_address > 100
    assert 0 < unmatched < tickets * 0.05
    reads = select(ReadReceipt.channel, func.count()).group_by(ReadReceipt.channel)
    channels = {channel: count for channel, count in session.execute(reads)}
    assert channels["widget"] > 4 * channels["email"] > 0

    held = session.scalars(select(Note).where(Note.holdback_percent > 0)).one()
    assert held.holdback_percent == 20
    assigned = _count(session, HoldbackAssignment, HoldbackAssignment.note_id == held.id)
    control = _count(
        session,
        HoldbackAssignment,
        HoldbackAssignment.note_id == held.id,
        HoldbackAssignment.control.is_(True),
    )
    assert assigned > 2_000
    assert abs(control / assigned - 0.20) < 0.03

    figures = {
        row.scope: row.figures
        for row in session.scalars(
            select(SupportImpact).where(SupportImpact.product_id == lumen.id)
        )
    }
    experiment = figures[f"note:{held.id}"]["holdback"]
    assert experiment["control"]["per_1000"] > experiment["treated"]["per_1000"]
    assert experiment["effect"]["low"] > 0  # fewer tickets when told, the interval above zero
    assert experiment["verdict"].startswith("Telling users cut tickets")
    notes = [f for scope, f in figures.items() if scope.startswith("note:")]
    said = [f["title"] for f in notes if f["verdict"] != NOT_ENOUGH_DATA]
    assert len(said) >= 2, said
    assert "Export any chart as PNG or CSV" in said
    assert any(f["verdict"] == NOT_ENOUGH_DATA and f["topics"] for f in notes)
    assert sum(day["tickets"] for day in figures[f"note:{held.id}"]["daily"]) > 0

    # The held-back group reads the note as the widget lets them, in its panel: about as
    # often as the others read a note that pops up for nobody, and never from an e-mail.
    reads_by_group = {
        (control, channel): count
        for control, channel, count in session.execute(
            select(HoldbackAssignment.control, ReadReceipt.channel, func.count())
            .join(
                ReadReceipt,
                (ReadReceipt.end_user_id == HoldbackAssignment.end_user_id)
                & (ReadReceipt.note_id == HoldbackAssignment.note_id),
            )
            .where(HoldbackAssignment.note_id == held.id)
            .group_by(HoldbackAssignment.control, ReadReceipt.channel)
        )
    }
    control_reads = reads_by_group.get((True, "widget"), 0)
    treated_reads = sum(n for (is_control, _), n in reads_by_group.items() if not is_control)
    assert (True, "email") not in reads_by_group
    assert control_reads / control > 0.7 * treated_reads / (assigned - control)


def test_loading_the_demo_again_adds_no_tickets_or_users(runner, session) -> None:
    assert runner.invoke(args=["demo"]).exit_code == 0
    tables = (
        EndUser,
        ReadReceipt,
        Ticket,
        SupportConnection,
        HoldbackAssignment,
        Note,
        Acknowledgement,
        Escalation,
        Subscriber,
        OutboxMessage,
        HelpRequest,
        HelpShown,
        AgentSend,
    )
    counts = [_count(session, table) for table in tables]
    assert runner.invoke(args=["demo"]).exit_code == 0
    assert [_count(session, table) for table in tables] == counts


def test_a_customer_first_seen_after_a_notes_window_was_not_exposed_to_it() -> None:
    """As Support impact counts it: the note went out to those seen since it was published
    on a version that includes it, and first seen before its window closed."""
    published = datetime(2026, 3, 2, 9, tzinfo=UTC)
    window = timedelta(days=14)
    note = demo_data._Sent(1, "Export", "2.4.0", published, False, 0, frozenset({"2.4.0"}))

    def first_seen(at: datetime) -> bool:
        customer = demo_data._Customer(
            "c-1", None, "2.4.0", at, published + timedelta(days=30), "pro", "en", 1.0
        )
        return demo_data._exposed(customer, note, window)

    assert first_seen(published - timedelta(days=100))
    assert first_seen(published + window - timedelta(seconds=1))
    assert not first_seen(published + window)


@pytest.fixture
def demo(demo_session) -> Product:
    """Lumen, with the demo loaded."""
    return demo_session.scalar(select(Product).where(Product.slug == "lumen"))


def test_the_demo_has_a_notice_most_acknowledged_and_some_were_emailed(demo_session, demo) -> None:
    notice = demo_session.scalars(
        select(Note).where(Note.product_id == demo.id, Note.requires_acknowledgement.is_(True))
    ).one()
    assert notice.category is Category.SECURITY and notice.escalate_after_days == 7
    assert abs(utcnow() - notice.published_at - timedelta(days=10)) < timedelta(hours=1)
    assert notice.holdback_percent == 0

    # Everyone it was shown to has read it as a popup (the modal marks it read).
    shown = dict(
        demo_session.execute(
            select(ReadReceipt.end_user_id, ReadReceipt.read_at).where(
                ReadReceipt.note_id == notice.id
            )
        ).all()
    )
    channels = demo_session.scalars(
        select(ReadReceipt.channel).where(ReadReceipt.note_id == notice.id)
    ).all()
    assert set(channels) == {"popup"} and len(shown) > 1_000
    acknowledged = dict(
        demo_session.execute(
            select(Acknowledgement.end_user_id, Acknowledgement.acknowledged_at).where(
                Acknowledgement.note_id == notice.id
            )
        ).all()
    )
    assert 0.6 < len(acknowledged) / len(shown) < 0.9
    assert all(shown[user] <= at for user, at in acknowledged.items())

    # Escalated: exactly the users shown it who are linked to a confirmed subscriber and
    # had not acknowledged it when their own seven days since it was first shown to them
    # (its read) were up; e-mailed once each, not before then, marked sent.
    now = utcnow()
    days = timedelta(days=notice.escalate_after_days)
    linked = dict(
        demo_session.execute(
            select(Subscriber.end_user_id, Subscriber.id).where(
                Subscriber.product_id == demo.id,
                Subscriber.status == SubscriberStatus.CONFIRMED,
                Subscriber.end_user_id.is_not(None),
            )
        ).all()
    )
    escalations = demo_session.scalars(
        select(Escalation).where(Escalation.note_id == notice.id)
    ).all()
    owed = {
        user
        for user, at in shown.items()
        if user in linked
        and at + days <= now
        and (user not in acknowledged or acknowledged[user] > at + days)
    }
    assert {e.end_user_id for e in escalations} == owed
    assert 5 <= len(owed) < 200
    assert all(
        e.escalated_at >= shown[e.end_user_id] + days and e.subscriber_id == linked[e.end_user_id]
        for e in escalations
    )
    # Not all at the notice's seventh day: users first shown it later were e-mailed later.
    assert len({e.escalated_at for e in escalations}) > 1
    acknowledged_after = [e for e in escalations if e.end_user_id in acknowledged]
    assert 0 < len(acknowledged_after) < len(escalations)
    mails = demo_session.execute(
        select(OutboxMessage.subscriber_id, OutboxMessage.status).where(
            OutboxMessage.note_id == notice.id, OutboxMessage.kind == OutboxKind.ESCALATION
        )
    ).all()
    assert sorted(mails) == sorted((e.subscriber_id, OutboxStatus.SENT) for e in escalations)

    # The demo host's user has not been shown it yet: the page shows it to them first.
    host = demo_session.scalar(
        select(EndUser).where(EndUser.external_id == demo_data.DEMO_HOST_USER)
    )
    assert host.id not in shown and host.id not in acknowledged


def test_the_demo_has_help_before_tickets_and_its_deflections(demo_session, demo) -> None:
    now = utcnow()
    requests = demo_session.scalars(
        select(HelpRequest).where(HelpRequest.product_id == demo.id)
    ).all()
    assert 300 <= len(requests) <= 500
    assert all(now - timedelta(days=29) < r.created_at <= now for r in requests)
    shown: dict[int, list[int]] = {}
    for request_id, note_id, position in demo_session.execute(
        select(HelpShown.help_request_id, HelpShown.note_id, HelpShown.position).order_by(
            HelpShown.help_request_id, HelpShown.position
        )
    ):
        assert position == len(shown.setdefault(request_id, []))
        shown[request_id].append(note_id)
    assert all(1 <= len(shown[r.id]) <= 3 for r in requests)
    outcomes = Counter(r.outcome for r in requests)
    assert 0.3 < outcomes["answered"] / len(requests) < 0.55
    assert 0.25 < outcomes["needs_help"] / len(requests) < 0.5
    assert outcomes[None] > 0

    # An answer is one of the notes shown, and is recorded as the user's read through help.
    answered = [r for r in requests if r.outcome == "answered"]
    assert all(r.answered_note_id in shown[r.id] for r in answered)
    help_reads = {
        (user, note): at
        for user, note, at in demo_session.execute(
            select(ReadReceipt.end_user_id, ReadReceipt.note_id, ReadReceipt.read_at).where(
                ReadReceipt.channel == "help"
            )
        )
    }
    assert help_reads == {(r.end_user_id, r.answered_note_id): r.decided_at for r in answered}

    # The roll-up holds the deflections as counted here over the rows.
    notes = set(demo_session.scalars(select(Note.id).where(Note.product_id == demo.id)))
    per_note: dict[int, Counter[str]] = {}
    for request in requests:
        for note_id in shown[request.id]:
            counts = per_note.setdefault(note_id, Counter())
            counts["shown"] += 1
            counts["answered"] += request.answered_note_id == note_id
            counts["needs_help"] += request.outcome == "needs_help"
    figures = {
        row.scope: row.figures
        for row in demo_session.scalars(
            select(SupportImpact).where(SupportImpact.product_id == demo.id)
        )
    }
    for f in figures.values():
        wanted: Counter[str] = Counter()
        for note_id in f["note_ids"]:
            wanted.update(per_note.get(note_id, Counter()))
        assert f["help"] == {name: wanted[name] for name in ("shown", "answered", "needs_help")}
    export = demo_session.scalar(
        select(Note.id).where(Note.title == "Export any chart as PNG or CSV")
    )
    assert figures[f"note:{export}"]["help"]["answered"] >= 20
    assert (
        sum(f["help"]["answered"] for s, f in figures.items() if s.startswith("note:"))
        == (outcomes["answered"])
    )
    assert set(per_note) <= set(notes)  # the product's own notes only


def test_the_demo_has_notes_sent_by_agents(demo_session, demo) -> None:
    sends = demo_session.scalars(select(AgentSend).where(AgentSend.product_id == demo.id)).all()
    assert 3 <= len(sends) <= 10
    assert {s.via for s in sends} == {"console", "sidebar"}
    assert any(s.read_at is None for s in sends)  # one still pinned in the user's widget
    for send in sends:
        if send.read_at is not None:
            receipt = demo_session.get(ReadReceipt, (send.end_user_id, send.note_id))
            assert receipt is not None and receipt.read_at <= send.read_at
    events = demo_session.scalar(
        select(func.count()).where(
            AuditEvent.product_id == demo.id, AuditEvent.action == "note.sent_to_user"
        )
    )
    assert events == len(sends)
    mails = demo_session.scalars(
        select(OutboxMessage.status).where(OutboxMessage.kind == OutboxKind.AGENT)
    ).all()
    assert len(mails) == sum(s.emailed for s in sends) and set(mails) <= {OutboxStatus.SENT}


def test_the_demo_hosts_user_is_found_shown_the_notice_and_helped(
    demo_app, demo_session, demo
) -> None:
    user_id = demo_data.DEMO_HOST_USER
    address = f"{user_id}@example.com"  # as app/demo_host.py signs it
    host = lookup.find(
        demo_session, demo, address.upper(), secret_key=demo_app.config["SECRET_KEY"]
    )
    assert host is not None and host.external_id == user_id
    assert host.email_key == tickets.email_key(demo_app.config["SECRET_KEY"], address)
    assert demo_session.scalar(select(func.count()).where(Ticket.end_user_id == host.id)) == 1

    identity = {"user_id": user_id, "user_hash": expected_hash(demo.identity_secret, user_id)}
    identity["version"] = "2.10.0"
    notes = (
        demo_app.test_client()
        .get(f"/api/v1/widget/{demo.widget_key}/notes", query_string=identity)
        .json
    )
    by_title = {note["title"]: note for note in notes["notes"]}
    notice = by_title["Replace API tokens created before 2.10"]
    assert notice["requires_acknowledgement"] is True and notice["acknowledged"] is False
    assert by_title["Funnels: see where people drop off"]["read"] is False
    assert by_title["Single sign-on with SAML and OIDC"]["read"] is True

    helped = demo_app.test_client().get(
        f"/api/v1/widget/{demo.widget_key}/help",
        query_string={**identity, "q": "export is empty"},
    )
    assert helped.status_code == 200
    titles = [note["title"] for note in helped.json["notes"]]
    assert titles[0] == "Export any chart as PNG or CSV"
    assert all(
        versions.parse(n["version"]) <= versions.parse("2.10.0") for n in helped.json["notes"]
    )
