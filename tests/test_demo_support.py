"""The demo's support history: a newcomer opening Support impact on Lumen sees real figures,
a hold-back that shows its effect, and a note that honestly has too little to say."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from announcements.models import (
    EndUser,
    HoldbackAssignment,
    Note,
    Product,
    ReadReceipt,
    SupportConnection,
    SupportDesk,
    SupportImpact,
    Ticket,
)
from announcements.support_impact import NOT_ENOUGH_DATA
from app import demo_data


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
    tables = (EndUser, ReadReceipt, Ticket, SupportConnection, HoldbackAssignment, Note)
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
