"""The demo's Insights and Status data: eight weeks of the days the widget saw Lumen's users,
as reads.see writes them, with a weekly rhythm and upgrades after each release; reads on
every channel, reactions and comments over time, note e-mails sent, bounced and followed
by unsubscribes, subscribers joining over the weeks, an hour of widget traffic; and the
roll-up counted from all of it. Each figure is counted again here, in plain Python over
the demo's rows, and compared with what the roll-up holds."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from datetime import date, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from announcements import monitoring, versions
from announcements.models import (
    EndUser,
    EndUserDay,
    Note,
    OutboxKind,
    OutboxMessage,
    OutboxStatus,
    Product,
    Reaction,
    ReadReceipt,
    Rollup,
    RollupState,
    Subscriber,
    SubscriberStatus,
    TrafficMinute,
)
from app import demo_data

ONE_DAY = timedelta(days=1)
WEEKS = demo_data.HISTORY_DAYS // 7


@pytest.fixture
def demo(runner, session: Session) -> Product:
    """Lumen, with the demo loaded."""
    result = runner.invoke(args=["demo"])
    assert result.exit_code == 0, result.output
    return session.scalars(select(Product).where(Product.slug == "lumen")).one()


def _days(session: Session, product: Product) -> list[EndUserDay]:
    return list(
        session.scalars(
            select(EndUserDay)
            .where(EndUserDay.product_id == product.id)
            .order_by(EndUserDay.end_user_id, EndUserDay.day)
        )
    )


def _includes(version: str | None, note_version: str) -> bool:
    """Whether a user on ``version`` is shown a note of ``note_version``: one on no version
    is shown every note."""
    return version is None or versions.parse(version) >= versions.parse(note_version)


def _rollup(session: Session, product: Product, metric: str, dimension: str) -> list[Rollup]:
    return list(
        session.scalars(
            select(Rollup).where(
                Rollup.product_id == product.id,
                Rollup.metric == metric,
                Rollup.dimension == dimension,
            )
        )
    )


def test_the_demo_days_are_as_the_widget_writes_them(runner, session, demo) -> None:
    rows = _days(session, demo)
    users = {
        user.id: user
        for user in session.scalars(select(EndUser).where(EndUser.product_id == demo.id))
    }
    until = session.get(RollupState, demo.id).counted_until
    today = until.date()  # not the newest row's day: just after midnight today has none yet
    first_day = today - timedelta(days=demo_data.HISTORY_DAYS)
    assert min(row.day for row in rows) == first_day
    by_user: dict[int, list[EndUserDay]] = defaultdict(list)
    for row in rows:
        by_user[row.end_user_id].append(row)
    assert len(by_user) > 3_000

    # Each user's rows chain as reads.see writes them: each names the day and version of
    # the one before; the last is the day they were last seen, on the version they run
    # now.
    for user_id, chain in by_user.items():
        user = users[user_id]
        assert chain[-1].day == user.last_seen_at.date()
        assert chain[-1].app_version == user.app_version
        # The first names no day before it: a new user's is the day they were first seen;
        # one seen before the history has it as the upgrade that began keeping days does.
        assert chain[0].previous_day is None and chain[0].previous_version is None
        if chain[0].day == user.first_seen_at.date():
            assert chain[0].seen_at == user.first_seen_at
        else:
            assert user.first_seen_at.date() < chain[0].day
        for before, after in zip(chain, chain[1:], strict=False):
            assert (after.previous_day, after.previous_version) == (before.day, before.app_version)
        for row in chain:
            assert row.seen_at.date() == row.day and row.seen_at <= user.last_seen_at
        # Versions only go up, as the roll-up's exposure count assumes.
        ran = [versions.parse(row.app_version) for row in chain if row.app_version]
        assert ran == sorted(ran)

    # The widget saw each reader on the day of the read, before it, on a version with the
    # note.
    seen = {(row.end_user_id, row.day): row for row in rows}
    read = session.execute(
        select(ReadReceipt.end_user_id, ReadReceipt.read_at, Note.version)
        .join(Note, Note.id == ReadReceipt.note_id)
        .where(Note.product_id == demo.id)
    ).all()
    recent = [(user, at, version) for user, at, version in read if at.date() >= first_day]
    assert len(recent) > 5_000
    for user_id, read_at, note_version in recent:
        row = seen[(user_id, read_at.date())]
        assert row.seen_at <= read_at and _includes(row.app_version, note_version)

    # Far fewer at weekends. People moved to each release from the day it came out, most
    # over the weeks after.
    per_day = Counter(row.day for row in rows if row.day < today)
    weekdays = [n for day, n in per_day.items() if day.weekday() < 5]
    weekends = [n for day, n in per_day.items() if day.weekday() >= 5]
    assert statistics.median(weekdays) > 3 * statistics.median(weekends)
    upgrades = [row for row in rows if row.previous_version not in (None, row.app_version)]
    assert len(upgrades) > 1_000
    out: dict[str, date] = {}
    for version, published in session.execute(
        select(Note.version, Note.published_at).where(
            Note.product_id == demo.id, Note.is_internal.is_(False), Note.published_at <= until
        )
    ):
        out[version] = min(out.get(version, published.date()), published.date())
    released = {version: day for version, day in out.items() if day >= first_day}
    assert len(released) >= 4
    moved: dict[str | None, set[date]] = defaultdict(set)
    for row in upgrades:
        moved[row.app_version].add(row.day)
    for version, day in released.items():  # from its day (or the next, if it came late)
        assert 0 <= (min(moved[version]) - day).days <= 1, version
    assert sum(len(moved[version]) >= 10 for version in released) >= 3

    # Loading the demo again adds none of it, nor recounts the roll-up.
    tables = (EndUserDay, Reaction, Subscriber, OutboxMessage, Rollup)
    counts = [session.scalar(select(func.count()).select_from(table)) for table in tables]
    state = session.get(RollupState, demo.id)
    assert state is not None
    counted = state.counted_until
    assert runner.invoke(args=["demo"]).exit_code == 0
    session.expire_all()
    assert [session.scalar(select(func.count()).select_from(t)) for t in tables] == counts
    assert session.get(RollupState, demo.id).counted_until == counted


def test_the_demo_rollup_has_figures_for_every_chart(session, demo) -> None:
    state = session.get(RollupState, demo.id)
    assert state is not None
    until = state.counted_until
    today = until.date()
    rows = [row for row in _days(session, demo) if row.seen_at <= until]

    # Weekly active users for each of the eight weeks, from the "active" rows as the
    # readers count them, and from the day rows.
    active = _rollup(session, demo, "active", "")
    for weeks_ago in range(WEEKS):
        end = today - timedelta(days=7 * weeks_ago)
        begin = end - timedelta(days=6)
        counted = sum(
            r.count for r in active if begin <= r.day <= end and r.bucket > (r.day - begin).days
        )
        users = {row.end_user_id for row in rows if begin <= row.day <= end}
        assert counted == len(users) > 2_000, end

    # Versions in use in the last week: each user on the version of their first visit in it.
    by_version = Counter[str]()
    begin = today - timedelta(days=6)
    for r in _rollup(session, demo, "active", "seg:app_version"):
        if begin <= r.day <= today and r.bucket > (r.day - begin).days:
            by_version[r.value] += r.count
    first_visit: dict[int, EndUserDay] = {}
    for row in rows:
        if begin <= row.day <= today and row.end_user_id not in first_visit:
            first_visit[row.end_user_id] = row
    expected = Counter(row.app_version or "(none)" for row in first_visit.values())
    assert +by_version == expected
    assert len([v for v, n in expected.items() if n >= 50]) >= 5
    assert expected.most_common(1)[0][0] == "2.10.0"

    # Reads by note and channel: every channel the widget, e-mail, help and agents record.
    read = session.execute(
        select(ReadReceipt.note_id, ReadReceipt.channel)
        .join(Note, Note.id == ReadReceipt.note_id)
        .where(Note.product_id == demo.id, ReadReceipt.read_at <= until)
    ).all()
    by_channel = Counter((note_id, channel) for note_id, channel in read)
    counted_reads = Counter[tuple[int, str]]()
    for r in _rollup(session, demo, "read", "channel"):
        counted_reads[(r.note_id, r.value)] += r.count
    assert +counted_reads == by_channel
    assert {channel for _, channel in by_channel} >= {"widget", "popup", "email", "help", "agent"}

    # Exposure of each note out during the history, by the roll-up's rule, over the rows.
    first_day = min(row.day for row in rows)
    notes = [
        note
        for note in session.scalars(
            select(Note).where(Note.product_id == demo.id, Note.is_internal.is_(False))
        )
        if note.published_at is not None and first_day <= note.published_at.date() <= today
    ]
    assert len(notes) >= 6
    exposed_rows = _rollup(session, demo, "exposed", "")
    readers = Counter(note_id for note_id, _ in read)
    for note in notes:
        published = note.published_at.date()
        exposed = sum(
            1
            for row in rows
            if row.day >= published
            and _includes(row.app_version, note.version)
            and not (
                row.previous_day is not None
                and row.previous_day >= published
                and _includes(row.previous_version, note.version)
            )
        )
        assert sum(r.count for r in exposed_rows if r.note_id == note.id) == exposed, note.title
        # A believable share read it; a notice, nearly all: it pops up until it is read.
        share = readers[note.id] / exposed
        assert (0.95 < share <= 1) if note.requires_acknowledgement else (0.1 < share < 0.9)

    # E-mail per note: sent, bounced, skipped, and unsubscribes in the week after a mail.
    mails = session.execute(
        select(
            OutboxMessage.note_id,
            OutboxMessage.status,
            OutboxMessage.sent_at,
            Subscriber.unsubscribed_at,
        )
        .join(Subscriber, Subscriber.id == OutboxMessage.subscriber_id)
        .where(OutboxMessage.product_id == demo.id, OutboxMessage.kind == OutboxKind.NOTE)
    ).all()
    names = {
        OutboxStatus.SENT: "sent",
        OutboxStatus.FAILED: "bounced",
        OutboxStatus.SKIPPED: "skipped",
    }
    email = Counter[tuple[int, str]]()
    for note_id, status, sent_at, unsubscribed_at in mails:
        email[(note_id, names[status])] += 1
        if sent_at is not None and unsubscribed_at is not None:
            email[(note_id, "unsubscribed")] += sent_at <= unsubscribed_at <= sent_at + 7 * ONE_DAY
    counted_email = Counter[tuple[int, str]]()
    for r in _rollup(session, demo, "email", "status"):
        counted_email[(r.note_id, r.value)] += r.count
    assert +counted_email == +email
    assert len({note_id for note_id, status in email if status == "sent"}) >= 4
    assert {status for _, status in +email} == {"sent", "bounced", "skipped", "unsubscribed"}

    # Subscribers joined over the weeks: more of them at the end than at the start.
    subscribers = session.execute(
        select(Subscriber.confirmed_at, Subscriber.status).where(Subscriber.product_id == demo.id)
    ).all()
    joined = Counter(at.date() for at, _ in subscribers if at is not None)
    events = _rollup(session, demo, "subscribers", "event")
    assert {r.day: r.count for r in events if r.value == "confirmed"} == joined
    weekly = Counter((today - day).days // 7 for day in joined.elements())
    assert all(weekly[week] > 0 for week in range(WEEKS))
    assert sum(weekly[week] for week in range(WEEKS)) >= demo_data.NEW_SUBSCRIBERS
    assert any(status is SubscriberStatus.BOUNCED for _, status in subscribers)

    # Reactions and comments over the days after a note: more comments than a page holds.
    funnels = session.scalars(
        select(Note).where(Note.product_id == demo.id, Note.title.startswith("Funnels"))
    ).one()
    reactions = session.scalars(select(Reaction).where(Reaction.note_id == funnels.id)).all()
    assert {r.reaction for r in reactions} == {"👍", "👎", "😕"}
    assert len({r.created_at.date() for r in reactions}) >= 5
    assert sum(1 for r in reactions if r.comment) > 50
    reacted = session.execute(
        select(Reaction.note_id, func.count()).group_by(Reaction.note_id)
    ).all()
    assert len([n for _, n in reacted if n >= 20]) >= 8

    # An hour of widget traffic from two processes, every minute's latencies adding up.
    traffic = session.scalars(
        select(TrafficMinute).where(
            TrafficMinute.product_id == demo.id,
            TrafficMinute.minute >= until - timedelta(minutes=61),
        )
    ).all()
    assert len({t.minute for t in traffic}) == demo_data.TRAFFIC_MINUTES
    assert {t.process for t in traffic} == set(demo_data.TRAFFIC_PROCESSES)
    assert all(sum(t.latency) == t.requests > 0 for t in traffic)
    assert 25 <= monitoring.p95_ms(monitoring.merged(t.latency for t in traffic)) <= 250
    assert 0 < sum(t.errors for t in traffic) < 0.01 * sum(t.requests for t in traffic)
