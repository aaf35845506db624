"""Support impact on a constructed data set whose answer is known exactly: a few thousand
end users across versions, read receipts for a known subset, tickets at known times
(before the window, on its edges, after it) with and without topics, unmatched ones and
another product's. Every expected figure is counted here in plain Python over the test's
own lists, never with the module's SQL; the intervals are checked against scipy's
distributions used directly and against published values."""

from __future__ import annotations

import logging
import math
import random
import secrets
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from scipy import stats
from sqlalchemy import func, insert, select, text, update

from announcements import (
    apikeys,
    holdback,
    notices,
    rollups,
    services,
    support_impact,
    tickets,
    versions,
)
from announcements.models import (
    EndUser,
    HelpRequest,
    HelpShown,
    Note,
    ReadReceipt,
    Role,
    SupportImpact,
    Ticket,
)
from app.mail.jobs import JOBS_KEY, Jobs, request_refresh
from tests.conftest import AuthActions
from tests.factories import add_member, make_note, make_product
from tests.test_notices import split_as_semicolon_locale

WINDOW = timedelta(days=14)
P_A = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)  # "Export to CSV", 2.4.0, topic export
P_B = P_A + timedelta(hours=2)  # "Faster start", 2.4.0, no topics
P_C = P_A + timedelta(days=9)  # "Billing page", 2.5.0, topic billing, 20 % held back
NOW = P_A + timedelta(days=19, hours=3)  # C's window is still open
SECRET = "test-secret"  # the app's SECRET_KEY in the tests
VERSIONS = ["2.3.0", "2.4.0-beta.1", "2.4", "2.4.0", "2.4.1", "2.5.0", "2.10.0", None]


@dataclass
class User:
    external_id: str
    version: str | None
    first_seen: datetime
    last_seen: datetime
    email: str | None = None


@dataclass
class TicketRow:
    external_id: str
    created_at: datetime
    user: str | None = None  # matched already, by external id
    requester: str | None = None  # an external id the desk sent, not matched yet
    email: str | None = None  # an address the desk sent, not matched yet
    tags: tuple[str, ...] = ()
    subject: str = ""


@dataclass
class World:
    product: object
    other: object
    notes: dict[str, Note]
    users: list[User]
    receipts: set[tuple[str, str]]  # (user, note name)
    tickets: list[TicketRow]
    user_ids: dict[int, str] = field(default_factory=dict)


def _users(rng: random.Random, count: int) -> list[User]:
    users = []
    for number in range(count):
        first = P_A - timedelta(days=rng.uniform(0, 60))
        if number % 10 == 7:  # new since the release
            first = P_A + timedelta(days=rng.uniform(0, 15))
        if number % 6 == 1:  # not seen since the notes went out
            last = P_A - timedelta(days=rng.uniform(0, 20))
        else:
            last = P_A + timedelta(days=rng.uniform(0, 19))
        last = max(first, last)
        email = f"User{number}@Example.com" if number % 9 == 4 else None
        users.append(User(f"u{number}", rng.choice(VERSIONS), first, last, email))
    # On the edges: seen exactly when A went out (exposed), and just before it (not).
    users.append(User("edge-at", "2.4.0", P_A - timedelta(days=3), P_A))
    users.append(User("edge-before", "2.4.0", P_A - timedelta(days=3), P_A - timedelta(seconds=1)))
    # First seen when A's window closed (never exposed to it: not there to write in), and
    # just before.
    users.append(User("edge-late", "2.4.0", P_A + WINDOW, NOW))
    users.append(User("edge-in-time", "2.4.0", P_A + WINDOW - timedelta(seconds=1), NOW))
    return users


def _tickets(rng: random.Random, users: list[User], receipts: set[tuple[str, str]]):
    rows = []
    start, stop = P_A - timedelta(days=20), NOW
    span = (stop - start).total_seconds()
    for number in range(2500):
        created = start + timedelta(seconds=rng.uniform(0, span))
        user = rng.choice(users).external_id
        # Readers of A ask about export less: a difference the figures must find.
        export_odds = 0.1 if (user, "A") in receipts else 0.45
        tags: list[str] = []
        if rng.random() < export_odds:
            tags.append("export")
        if rng.random() < 0.3:
            tags.append("billing")
        if rng.random() < 0.2:
            tags.append("other")
        subject = rng.choice(["", "Hello", "How do I export to CSV?", "Billing question"])
        row = TicketRow(f"t{number}", created, tags=tuple(tags), subject=subject)
        kind = number % 20
        if kind == 0:
            pass  # nobody we know
        elif kind == 1:
            row.requester = user  # matched by the roll-up
        elif kind == 2 and next((u.email for u in users if u.external_id == user), None):
            row.email = next(u.email for u in users if u.external_id == user)
        else:
            row.user = user
        rows.append(row)
    # On the window's edges, all about export by a non-reader of A on 2.4.0.
    edge = "edge-at"
    rows += [
        TicketRow("at-start", P_A, user=edge, tags=("export",)),
        TicketRow("at-end", P_A + WINDOW, user=edge, tags=("export",)),
        TicketRow("before-start", P_A - WINDOW, user=edge, tags=("export",)),
        TicketRow(
            "too-early", P_A - WINDOW - timedelta(microseconds=1), user=edge, tags=("export",)
        ),
        TicketRow("ghost", P_A + timedelta(days=1), requester="nobody", tags=("export",)),
        TicketRow("subject-only", P_A + timedelta(days=2), user=edge, subject="EXPORT broken"),
    ]
    return rows


@pytest.fixture
def world(session) -> World:
    rng = random.Random(14)
    product = make_product(session, slug="acme")
    other = make_product(session, slug="other")
    notes = {
        "A": make_note(session, product, version="2.4.0", title="Export to CSV", now=P_A),
        "B": make_note(session, product, version="2.4.0", title="Faster start", now=P_B),
        "C": make_note(session, product, version="2.5.0", title="Billing page", now=P_C),
        "draft": make_note(session, product, version="2.6.0", status="draft", now=P_C),
        "internal": make_note(session, product, version="2.5.0", is_internal=True, now=P_C),
        "elsewhere": make_note(session, other, version="2.4.0", now=P_A),
    }
    notes["A"].support_topics = ["export"]
    notes["C"].support_topics = ["billing"]
    notes["C"].holdback_percent = 20
    notes["elsewhere"].support_topics = ["export"]
    session.commit()

    users = _users(rng, 3000)
    receipts = set()
    for number, user in enumerate(users):
        if user.external_id.startswith("edge"):
            continue  # read nothing
        if number % 3 == 0:
            receipts.add((user.external_id, "A"))
        if number % 5 == 0:
            receipts.add((user.external_id, "B"))
        if number % 4 == 1:
            receipts.add((user.external_id, "C"))
    ticket_rows = _tickets(rng, users, receipts)

    session.execute(
        insert(EndUser),
        [
            {
                "product_id": product.id,
                "external_id": u.external_id,
                "app_version": u.version,
                "first_seen_at": u.first_seen,
                "last_seen_at": u.last_seen,
                "email_key": tickets.email_key(SECRET, u.email) if u.email else None,
            }
            for u in users
        ],
    )
    # The other product's users share ids with ours and read and ask about export too.
    session.execute(
        insert(EndUser),
        [
            {
                "product_id": other.id,
                "external_id": f"u{n}",
                "app_version": "2.4.0",
                "first_seen_at": P_A - WINDOW,
                "last_seen_at": NOW,
            }
            for n in range(200)
        ],
    )
    ids = {
        (product_id, external_id): user_id
        for user_id, product_id, external_id in session.execute(
            select(EndUser.id, EndUser.product_id, EndUser.external_id)
        )
    }
    session.execute(
        insert(ReadReceipt),
        [
            {
                "end_user_id": ids[product.id, user],
                "note_id": notes[name].id,
                "read_at": NOW,
                "channel": "widget",
            }
            for user, name in receipts
        ]
        + [
            {
                "end_user_id": ids[other.id, f"u{n}"],
                "note_id": notes["elsewhere"].id,
                "read_at": NOW,
                "channel": "widget",
            }
            for n in range(0, 200, 2)
        ],
    )

    def ticket_values(product_id, row: TicketRow, source="api"):
        return {
            "product_id": product_id,
            "source": source,
            "external_id": row.external_id,
            "created_at": row.created_at,
            "end_user_id": ids[product_id, row.user] if row.user else None,
            "requester_external_id": row.requester or row.user,
            "requester_key": tickets.email_key(SECRET, row.email) if row.email else None,
            "tags": list(row.tags),
            "tag_text": "|" + "".join(f"{tag}|" for tag in row.tags),
            "subject": row.subject or None,
            "subject_key": tickets.fold_tag(row.subject),
        }

    session.execute(
        insert(Ticket),
        [ticket_values(product.id, row) for row in ticket_rows]
        + [
            ticket_values(other.id, TicketRow(f"o{n}", P_A + timedelta(hours=n), user=f"u{n}"))
            | {"tag_text": "|export|", "tags": ["export"]}
            for n in range(200)
        ],
    )
    session.commit()
    return World(product, other, notes, users, receipts, ticket_rows)


# The expected figures, counted in plain Python ----------------------------------------


def _includes(user_version: str | None, note_version: str) -> bool:
    return user_version is None or versions.parse(user_version) >= versions.parse(note_version)


def _owner(world: World, row: TicketRow) -> str | None:
    """Whom a ticket is about once matching has run: by id, else by address."""
    known = {u.external_id for u in world.users}
    if row.user:
        return row.user
    if row.requester in known:
        return row.requester
    if row.email:
        wanted = row.email.casefold()
        return next(u.external_id for u in world.users if u.email and u.email.casefold() == wanted)
    return None


def _about(row: TicketRow, topics: list[str]) -> bool:
    return not topics or any(
        topic in row.tags or topic in row.subject.casefold() for topic in topics
    )


def expected(world: World, names: list[str], version: str, topics: list[str]) -> dict:
    start = min(world.notes[name].published_at for name in names)
    end = start + WINDOW
    exposed = {
        u.external_id
        for u in world.users
        if u.last_seen >= start and u.first_seen < end and _includes(u.version, version)
    }
    readers = {u for u in exposed if any((u, name) in world.receipts for name in names)}
    window = [r for r in world.tickets if start <= r.created_at < end and _about(r, topics)]
    before = [
        r for r in world.tickets if start - WINDOW <= r.created_at < start and _about(r, topics)
    ]
    owners = [_owner(world, r) for r in window]
    daily = Counter(
        r.created_at.date().isoformat()
        for r in world.tickets
        if start - WINDOW <= r.created_at < min(end, NOW) and _about(r, topics)
    )
    return {
        "exposed": len(exposed),
        "readers": len(readers),
        "non_readers": len(exposed - readers),
        "tickets_readers": sum(owner in readers for owner in owners),
        "tickets_non_readers": sum(owner in exposed - readers for owner in owners),
        "unmatched_tickets": sum(owner is None for owner in owners),
        "before": {
            "tickets": len(before),
            "active_users": sum(
                u.first_seen < start and u.last_seen >= start - WINDOW for u in world.users
            ),
        },
        "after": {
            "tickets": len(window),
            "active_users": sum(u.first_seen < end and u.last_seen >= start for u in world.users),
        },
        "daily": daily,
        "exposed_users": exposed,
        "window_end": end,
    }


def garwood(events: int) -> tuple[float, float]:
    """The exact Poisson interval from the gamma distribution, as the textbooks give it."""
    low = 0.0 if events == 0 else stats.gamma.ppf(0.025, events)
    return low, stats.gamma.ppf(0.975, events + 1)


def clopper_pearson_ratio(k1: int, n1: int, k2: int, n2: int) -> tuple[float, float, float]:
    """The rate ratio and its exact conditional interval, from the beta distribution."""
    low = 0.0 if k1 == 0 else stats.beta.ppf(0.025, k1, k2 + 1)
    high = 1.0 if k2 == 0 else stats.beta.ppf(0.975, k1 + 1, k2)

    def to_ratio(p):
        return math.inf if p == 1 else p / (1 - p) * n2 / n1

    return (k1 / n1) / (k2 / n2) if k2 else math.inf, to_ratio(low), to_ratio(high)


def rows_by_scope(session, product) -> dict[str, dict]:
    return {
        row.scope: row.figures
        for row in session.scalars(
            select(SupportImpact).where(SupportImpact.product_id == product.id)
        )
    }


def check_counts(figures: dict, wanted: dict) -> None:
    for name in (
        "exposed",
        "readers",
        "non_readers",
        "tickets_readers",
        "tickets_non_readers",
        "unmatched_tickets",
    ):
        assert figures[name] == wanted[name], name
    for side in ("before", "after"):
        assert figures[side]["tickets"] == wanted[side]["tickets"], side
        assert figures[side]["active_users"] == wanted[side]["active_users"], side
        assert figures[side]["per_1000"] == pytest.approx(
            wanted[side]["tickets"] * 1000 / wanted[side]["active_users"]
        )
    for label, users, events in (
        ("rate_readers", wanted["readers"], wanted["tickets_readers"]),
        ("rate_non_readers", wanted["non_readers"], wanted["tickets_non_readers"]),
    ):
        low, high = garwood(events)
        assert figures[label]["per_1000"] == pytest.approx(events * 1000 / users)
        assert figures[label]["low"] == pytest.approx(low * 1000 / users)
        assert figures[label]["high"] == pytest.approx(high * 1000 / users)
    ratio, low, high = clopper_pearson_ratio(
        wanted["tickets_readers"],
        wanted["readers"],
        wanted["tickets_non_readers"],
        wanted["non_readers"],
    )
    assert figures["difference"]["ratio"] == pytest.approx(ratio)
    assert figures["difference"]["percent_fewer"] == pytest.approx((1 - ratio) * 100)
    assert figures["difference"]["low"] == pytest.approx((1 - high) * 100)
    assert figures["difference"]["high"] == pytest.approx((1 - low) * 100)
    days = figures["daily"]
    assert [d["date"] for d in days] == sorted(d["date"] for d in days)
    assert {d["date"]: d["tickets"] for d in days if d["tickets"]} == dict(wanted["daily"])


# The tests ------------------------------------------------------------------------------------


def test_each_note_and_release_is_counted_exactly(session, world) -> None:
    written = support_impact.refresh(session, world.product, now=NOW)
    rows = rows_by_scope(session, world.product)
    a, b, c = (world.notes[name] for name in "ABC")
    assert written == 5
    assert set(rows) == {
        f"note:{a.id}",
        f"note:{b.id}",
        f"note:{c.id}",
        "release:2.4.0",
        "release:2.5.0",
    }

    wanted = expected(world, ["A"], "2.4.0", ["export"])
    figures = rows[f"note:{a.id}"]
    check_counts(figures, wanted)
    assert figures["topics"] == ["export"] and figures["window_open"] is False
    assert figures["published_at"] == "2026-10-01T09:00:00+00:00"
    assert figures["window_end"] == "2026-10-15T09:00:00+00:00"
    # Every day from P - W to E, zero-filled: 2026-09-17 to 2026-10-15.
    assert len(figures["daily"]) == 29 and figures["daily"][0]["date"] == "2026-09-17"
    assert figures["holdback"] is None
    # Readers of A asked less about export, and the figures say so in words.
    assert figures["verdict"].startswith("Readers opened ")
    assert "% fewer tickets about export (95 % CI " in figures["verdict"]

    check_counts(rows[f"note:{b.id}"], expected(world, ["B"], "2.4.0", []))
    release = rows["release:2.4.0"]
    check_counts(release, expected(world, ["A", "B"], "2.4.0", []))
    assert release["note_id"] is None and release["note_ids"] == [a.id, b.id]
    assert release["title"] == "Release 2.4.0" and release["topics"] == []

    wanted_c = expected(world, ["C"], "2.5.0", ["billing"])
    check_counts(rows[f"note:{c.id}"], wanted_c)
    assert rows[f"note:{c.id}"]["window_open"] is True
    # The chart stops at the time of computing while the window runs.
    assert rows[f"note:{c.id}"]["daily"][-1]["date"] == NOW.date().isoformat()
    check_counts(rows["release:2.5.0"], wanted_c)
    assert rows["release:2.5.0"]["holdback"] is None


def test_tickets_on_the_window_edges(session, world) -> None:
    """A ticket at P counts and one at E does not; one at P - W counts as before. Moved a
    microsecond earlier, each crosses its edge."""
    support_impact.refresh(session, world.product, now=NOW)
    figures = support_impact.note_figures(session, world.notes["A"])
    moved = {"at-start", "at-end", "before-start"}
    for row in world.tickets:
        if row.external_id in moved:
            row.created_at -= timedelta(microseconds=1)
            session.execute(
                update(Ticket)
                .where(Ticket.external_id == row.external_id)
                .values(created_at=row.created_at)
            )
    session.commit()
    support_impact.refresh(session, world.product, now=NOW)
    after = support_impact.note_figures(session, world.notes["A"])
    check_counts(after, expected(world, ["A"], "2.4.0", ["export"]))
    # at-start left the window for "before", before-start left "before", at-end came in.
    assert after["before"]["tickets"] == figures["before"]["tickets"]
    assert after["tickets_non_readers"] == figures["tickets_non_readers"]
    day = {d["date"]: d["tickets"] for d in after["daily"]}
    assert (
        day["2026-10-15"] == {d["date"]: d["tickets"] for d in figures["daily"]}["2026-10-15"] + 1
    )


def test_unmatched_tickets_are_matched_by_the_roll_up(session, world) -> None:
    waiting = session.scalar(
        select(func.count()).select_from(Ticket).where(Ticket.end_user_id.is_(None))
    )
    support_impact.refresh(session, world.product, now=NOW)
    left = session.scalars(
        select(Ticket.external_id).where(
            Ticket.end_user_id.is_(None), Ticket.product_id == world.product.id
        )
    ).all()
    assert len(left) < waiting
    assert set(left) == {r.external_id for r in world.tickets if _owner(world, r) is None}


def test_the_hold_back_groups_and_their_effect(session, world) -> None:
    note = world.notes["C"]
    support_impact.refresh(session, world.product, now=NOW)
    figures = support_impact.note_figures(session, note)["holdback"]
    wanted = expected(world, ["C"], "2.5.0", ["billing"])
    exposed = wanted["exposed_users"]
    control = {u for u in exposed if holdback.in_control(note.id, u, 20)}
    assert 0.12 < len(control) / len(exposed) < 0.28
    window = [
        r
        for r in world.tickets
        if note.published_at <= r.created_at < wanted["window_end"] and _about(r, ["billing"])
    ]
    owners = [_owner(world, r) for r in window]
    control_tickets = sum(owner in control for owner in owners)
    treated_tickets = sum(owner in exposed - control for owner in owners)
    assert figures["percent"] == 20
    assert figures["treated"]["users"] == len(exposed - control)
    assert figures["control"]["users"] == len(control)
    assert figures["treated"]["tickets"] == treated_tickets
    assert figures["control"]["tickets"] == control_tickets
    low, high = garwood(control_tickets)
    assert figures["control"]["low"] == pytest.approx(low * 1000 / len(control))
    assert figures["control"]["high"] == pytest.approx(high * 1000 / len(control))
    ratio, r_low, r_high = clopper_pearson_ratio(
        treated_tickets, len(exposed - control), control_tickets, len(control)
    )
    assert figures["effect"]["percent_fewer"] == pytest.approx((1 - ratio) * 100)
    assert figures["effect"]["low"] == pytest.approx((1 - r_high) * 100)
    # Telling users made no difference here (tickets were drawn alike for both groups).
    assert (r_low < 1 < r_high) == (figures["verdict"] == "Not enough data yet.")


def test_the_roll_up_replaces_stale_rows(session, world) -> None:
    a, b = world.notes["A"], world.notes["B"]
    session.add(SupportImpact(product_id=world.product.id, scope="release:0.1.0", version="0.1.0"))
    session.commit()
    support_impact.refresh(session, world.product, now=NOW)
    assert "release:0.1.0" not in rows_by_scope(session, world.product)

    services.archive(session, b, by=None, now=NOW)
    support_impact.refresh(session, world.product, now=NOW + timedelta(hours=1))
    rows = rows_by_scope(session, world.product)
    assert f"note:{b.id}" not in rows
    # The release is now A alone: its topics are A's.
    check_counts(rows["release:2.4.0"], expected(world, ["A"], "2.4.0", ["export"]))
    assert rows["release:2.4.0"]["note_ids"] == [a.id]
    computed = session.scalars(select(SupportImpact.computed_at)).all()
    assert set(computed) == {NOW + timedelta(hours=1)}
    # The other product's roll-up is its own, untouched by ours.
    assert rows_by_scope(session, world.other) == {}


def test_the_report_reads_the_roll_up_newest_release_first(session, world) -> None:
    assert support_impact.report(session, world.product) == []
    support_impact.rebuild(session, now=NOW)
    report = support_impact.report(session, world.product)
    assert [r.version for r in report] == ["2.5.0", "2.4.0"]
    assert [n["title"] for n in report[1].notes] == ["Export to CSV", "Faster start"]
    assert report[1].figures["scope"] == "release:2.4.0"
    assert report[0].computed_at == NOW
    # rebuild did every product.
    assert [r.version for r in support_impact.report(session, world.other)] == ["2.4.0"]


def test_a_product_that_fails_leaves_the_others_rolled_up(
    session, world, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_population = support_impact._population

    def failing_for_acme(session, product_id, *args):
        if product_id == world.product.id:  # made first, so rolled up first
            # A database error: on PostgreSQL the transaction is aborted with it.
            session.execute(text("SELECT no_such_column FROM support_impact"))
        return real_population(session, product_id, *args)

    monkeypatch.setattr(support_impact, "_population", failing_for_acme)
    with caplog.at_level(logging.ERROR):
        done = support_impact.rebuild(session, now=NOW)
    assert done == {"other": 2}
    assert rows_by_scope(session, world.product) == {}
    assert len(rows_by_scope(session, world.other)) == 2
    (failed,) = [record for record in caplog.records if record.exc_info]
    assert "acme" in failed.getMessage()


def test_the_daily_chart_counts_utc_days_whatever_the_session_zone(session, world) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET TIME ZONE 'Pacific/Kiritimati'"))  # UTC+14
    start, end = P_A - timedelta(hours=9), P_A + timedelta(days=2, hours=3)
    days = support_impact.daily_tickets(session, world.product.id, ["export"], start, end)
    wanted = Counter(
        r.created_at.date().isoformat()
        for r in world.tickets
        if start <= r.created_at < end and _about(r, ["export"])
    )
    assert days == [
        {"date": day, "tickets": wanted[day]} for day in ("2026-10-01", "2026-10-02", "2026-10-03")
    ]
    assert support_impact.daily_tickets(session, world.product.id, [], end, start) == []


def test_user_groups_show_the_hash_and_what_was_recorded(session, world) -> None:
    note = world.notes["C"]
    exposed = expected(world, ["C"], "2.5.0", ["billing"])["exposed_users"]
    user = sorted(exposed)[0]
    groups = support_impact.user_groups(session, world.product, user, now=NOW)
    assert [g.note_id for g in groups] == [note.id]
    assert groups[0].control == holdback.in_control(note.id, user, 20)
    assert not groups[0].recorded
    assert groups[0].holding_back == groups[0].control
    support_impact.refresh(session, world.product, now=NOW)
    (group,) = support_impact.user_groups(session, world.product, user, now=NOW)
    assert group.recorded and group.recorded_control == group.control
    assert group.assigned_at == NOW
    # After the window nobody is held back any more; the group stays.
    (later,) = support_impact.user_groups(
        session, world.product, user, now=P_C + WINDOW + timedelta(seconds=1)
    )
    assert later.control == group.control and not later.holding_back
    # Someone the widget never saw has a group from the hash, not recorded.
    (stranger,) = support_impact.user_groups(session, world.product, "never-seen", now=NOW)
    assert stranger.control == holdback.in_control(note.id, "never-seen", 20)
    assert not stranger.recorded


# The statistics -------------------------------------------------------------------------------


def test_the_exact_poisson_interval_matches_published_values() -> None:
    low, high = support_impact.poisson_interval(10)
    assert (round(low, 3), round(high, 2)) == (4.795, 18.39)
    assert support_impact.poisson_interval(0) == (0.0, pytest.approx(3.689, abs=1e-3))
    for events in (1, 5, 37, 250):
        assert support_impact.poisson_interval(events) == pytest.approx(garwood(events))


def test_rates_and_ratios() -> None:
    assert support_impact.rate(3, 0) == {"per_1000": None, "low": None, "high": None}
    assert support_impact.rate(10, 2000)["per_1000"] == 5.0
    assert support_impact.rate_ratio(1, 0, 1, 10) is None
    assert support_impact.rate_ratio(0, 10, 0, 10) is None
    for k1, n1, k2, n2 in ((12, 2300, 41, 2820), (0, 500, 9, 700), (30, 4100, 23, 1020)):
        found = support_impact.rate_ratio(k1, n1, k2, n2)
        assert (found.value, found.low, found.high) == pytest.approx(
            clopper_pearson_ratio(k1, n1, k2, n2)
        )
    # The comparison group opened none: no upper bound, stored as null.
    only_readers = support_impact.rate_ratio(9, 100, 0, 100)
    assert math.isinf(only_readers.high) and math.isinf(only_readers.value)
    shown = support_impact.difference(only_readers)
    assert shown["percent_fewer"] is None and shown["low"] is None and shown["ratio_high"] is None


def test_the_verdict_is_said_only_when_the_interval_leaves_out_no_difference() -> None:
    clear = support_impact.rate_ratio(12, 2300, 41, 2820)
    assert clear.high < 1
    ratio, low, high = clopper_pearson_ratio(12, 2300, 41, 2820)
    assert support_impact.verdict(clear, ["export"]) == (
        f"Readers opened {(1 - ratio) * 100:.0f} % fewer tickets about export "
        f"(95 % CI {(1 - high) * 100:.0f}–{(1 - low) * 100:.0f} %)."
    )
    assert support_impact.verdict(clear, []).startswith("Readers opened 64 % fewer tickets (")
    assert support_impact.verdict(clear, ["export", "billing"], causal=True) == (
        f"Telling users cut tickets about export or billing by {(1 - ratio) * 100:.0f} % "
        f"(95 % CI {(1 - high) * 100:.0f}–{(1 - low) * 100:.0f} %): the causal estimate."
    )
    more = support_impact.rate_ratio(41, 2820, 12, 2300)
    assert support_impact.verdict(more, ["export"]).startswith("Readers opened 179 % more tickets")
    unclear = support_impact.rate_ratio(5, 1000, 6, 1000)
    assert unclear.low < 1 < unclear.high
    assert support_impact.verdict(unclear, ["export"]) == "Not enough data yet."
    assert support_impact.verdict(None, ["export"]) == "Not enough data yet."
    none_elsewhere = support_impact.rate_ratio(30, 1000, 0, 1000)
    assert support_impact.verdict(none_elsewhere, []) == (
        "Readers opened more tickets; non-readers opened none (95 % CI at least "
        f"{(none_elsewhere.low - 1) * 100:.0f} % more)."
    )


# The API -----------------------------------------------------------------------------------


def test_the_api_answers_the_roll_up_with_its_scope(client, session, world) -> None:
    _, raw = apikeys.create(session, world.product, "bi", ["insights:read"], by=None, now=NOW)
    _, notes_only = apikeys.create(session, world.product, "ci", ["notes:read"], by=None, now=NOW)
    url = "/api/v1/products/acme/support-impact"
    assert client.get(url).status_code == 401
    refused = client.get(url, headers={"Authorization": f"Bearer {notes_only}"})
    assert refused.status_code == 403 and "insights:read" in refused.json["error"]
    other = client.get(
        "/api/v1/products/other/support-impact", headers={"Authorization": f"Bearer {raw}"}
    )
    assert other.status_code == 403

    empty = client.get(url, headers={"Authorization": f"Bearer {raw}"}).json
    assert empty == {"computed_at": None, "notes": [], "releases": []}

    support_impact.refresh(session, world.product, now=NOW)
    answer = client.get(url, headers={"Authorization": f"Bearer {raw}"})
    assert answer.status_code == 200
    body = answer.json
    assert body["computed_at"] == "2026-10-20T12:00:00Z"
    a, c = world.notes["A"], world.notes["C"]
    assert [n["note_id"] for n in body["notes"]] == [c.id, a.id, world.notes["B"].id]
    assert [r["version"] for r in body["releases"]] == ["2.5.0", "2.4.0"]
    by_id = {n["note_id"]: n for n in body["notes"]}
    wanted = expected(world, ["A"], "2.4.0", ["export"])
    shown = by_id[a.id]
    for name in ("exposed", "readers", "non_readers", "tickets_readers", "tickets_non_readers"):
        assert shown[name] == wanted[name]
    stored = support_impact.note_figures(session, a)
    assert shown["rate_readers_per_1000"] == pytest.approx(stored["rate_readers"]["per_1000"])
    assert shown["rate_readers_ci"] == pytest.approx(
        [stored["rate_readers"]["low"], stored["rate_readers"]["high"]]
    )
    assert shown["rate_non_readers_ci"] == pytest.approx(
        [stored["rate_non_readers"]["low"], stored["rate_non_readers"]["high"]]
    )
    assert shown["difference"]["percent_fewer"] == pytest.approx(
        stored["difference"]["percent_fewer"]
    )
    assert shown["verdict"] == stored["verdict"] and shown["holdback"] is None
    # Help and acknowledgement figures pass through as stored: none shown, no notice here.
    assert shown["help"] == {"shown": 0, "answered": 0, "needs_help": 0}
    assert shown["acknowledgement"] is None
    assert shown["version"] == "2.4.0" and shown["title"] == "Export to CSV"
    held = by_id[c.id]["holdback"]
    assert held["percent"] == 20 and set(held) >= {"treated", "control", "effect", "verdict"}
    assert held["control"]["users"] + held["treated"]["users"] == by_id[c.id]["exposed"]
    release = body["releases"][1]
    assert release["note_id"] is None and release["note_ids"] == [a.id, world.notes["B"].id]

    spec = client.get("/api/v1/openapi.json").json
    operation = spec["paths"]["/api/v1/products/{slug}/support-impact"]["get"]
    assert "insights:read" in str(operation)


def test_a_product_without_published_notes_has_an_empty_roll_up(session, world) -> None:
    support_impact.refresh(session, world.product, now=NOW)
    for name in "ABC":
        services.archive(session, world.notes[name], by=None, now=NOW)
    assert support_impact.refresh(session, world.product, now=NOW) == 0
    assert rows_by_scope(session, world.product) == {}
    assert support_impact.report(session, world.product) == []


# The worker and the command line ----------------------------------------------------------


def test_the_worker_rolls_up_hourly_and_on_request(app, session, world) -> None:
    jobs: Jobs = app.extensions[JOBS_KEY]
    hourly = jobs.support_rollup.task_class()
    assert hourly.validate_datetime(datetime(2026, 10, 1, 9, 7))
    assert not hourly.validate_datetime(datetime(2026, 10, 1, 9, 8))
    jobs.support_rollup.call_local()
    assert len(rows_by_scope(session, world.product)) == 5
    assert len(rows_by_scope(session, world.other)) == 2

    session.execute(SupportImpact.__table__.delete())
    session.commit()
    request_refresh(world.product.id)
    (queued,) = [t for t in jobs.huey.pending() if t.name == "tidings.refresh_support"]
    jobs.huey.execute(queued)
    assert len(rows_by_scope(session, world.product)) == 5
    assert rows_by_scope(session, world.other) == {}


def test_flask_rollups_rebuild(runner, session, world) -> None:
    done = runner.invoke(args=["rollups", "rebuild", "--product", "acme"])
    assert done.exit_code == 0, done.output
    lines = done.output.splitlines()
    assert lines[0].startswith("acme: insights, ") and " rows in " in lines[0]
    assert rollups.counted_until(session, world.product) is not None
    assert rollups.counted_until(session, world.other) is None
    assert lines[1].startswith("acme: support impact, 5 rows in ")
    assert lines[2].startswith("  2.5.0: ") and lines[3].startswith("  2.4.0: ")
    wanted = expected(world, ["A", "B"], "2.4.0", [])
    assert f"{wanted['exposed']:,} exposed, {wanted['readers']:,} readers" in lines[3]
    assert lines[-1].startswith("Recounted 1 product in ")
    assert rows_by_scope(session, world.other) == {}
    everything = runner.invoke(args=["rollups", "rebuild"])
    assert everything.exit_code == 0 and "other: support impact, 2 rows" in everything.output
    assert "Recounted 2 products in " in everything.output
    missing = runner.invoke(args=["rollups", "rebuild", "--product", "nope"])
    assert missing.exit_code != 0 and "No product with the slug nope" in missing.output


# Deflections: help shown before a ticket -------------------------------------------------------


def _help_requests(session, world: World) -> list[tuple[list[str], str | None, str | None]]:
    """Known help requests: (notes shown, best first; outcome; the note that answered),
    stored for the world's product, with some for the other product that must not count."""
    rng = random.Random(15)
    user_ids = dict(
        session.execute(
            select(EndUser.external_id, EndUser.id).where(EndUser.product_id == world.product.id)
        ).all()
    )
    drawn = []
    for number in range(300):
        shown = rng.sample(["A", "B", "C"], rng.randint(1, 3))
        outcome = rng.choice(["answered", "needs_help", None])
        answered = rng.choice(shown) if outcome == "answered" else None
        drawn.append((shown, outcome, answered))
        user = None if number % 7 == 0 else user_ids[f"u{number}"]  # some were anonymous
        _store_help(session, world.product.id, user, world.notes, shown, outcome, answered)
    for _ in range(40):
        _store_help(
            session, world.other.id, None, world.notes, ["elsewhere"], "answered", "elsewhere"
        )
    session.commit()
    return drawn


def _store_help(session, product_id, user_id, notes, shown, outcome, answered) -> None:
    request = HelpRequest(
        product_id=product_id,
        token=secrets.token_urlsafe(16),
        end_user_id=user_id,
        query="export is empty",
        created_at=NOW - timedelta(hours=1),
        outcome=outcome,
        answered_note_id=notes[answered].id if answered else None,
        decided_at=NOW if outcome else None,
    )
    session.add(request)
    session.flush()
    session.add_all(
        HelpShown(help_request_id=request.id, note_id=notes[name].id, position=position)
        for position, name in enumerate(shown)
    )


def test_deflections_per_note_and_release_are_counted_exactly(session, world) -> None:
    drawn = _help_requests(session, world)
    support_impact.refresh(session, world.product, now=NOW)
    rows = rows_by_scope(session, world.product)

    def wanted(names: list[str]) -> dict[str, int]:
        """The help figures of these notes, counted over the test's own list: times shown,
        requests one of them answered, and (per note, summed) needs-help requests that
        showed it."""
        return {
            "shown": sum(name in shown for shown, _, _ in drawn for name in names),
            "answered": sum(answered in names for _, _, answered in drawn),
            "needs_help": sum(
                name in shown
                for shown, outcome, _ in drawn
                for name in names
                if outcome == "needs_help"
            ),
        }

    a, b, c = (world.notes[name] for name in "ABC")
    assert rows[f"note:{a.id}"]["help"] == wanted(["A"])
    assert rows[f"note:{b.id}"]["help"] == wanted(["B"])
    assert rows[f"note:{c.id}"]["help"] == wanted(["C"])
    assert rows["release:2.4.0"]["help"] == wanted(["A", "B"])
    assert rows["release:2.5.0"]["help"] == wanted(["C"])
    # Not a figure that sums the others regardless: every request answered with one note.
    assert sum(rows[f"note:{n.id}"]["help"]["answered"] for n in (a, b, c)) == sum(
        outcome == "answered" for _, outcome, _ in drawn
    )
    # The other product's help counts for its own note only.
    support_impact.refresh(session, world.other, now=NOW)
    elsewhere = rows_by_scope(session, world.other)
    assert elsewhere[f"note:{world.notes['elsewhere'].id}"]["help"] == {
        "shown": 40,
        "answered": 40,
        "needs_help": 0,
    }


def test_a_note_never_shown_as_help_has_none(session, world) -> None:
    support_impact.refresh(session, world.product, now=NOW)
    figures = support_impact.note_figures(session, world.notes["A"])
    assert figures["help"] == {"shown": 0, "answered": 0, "needs_help": 0}


def test_the_impact_page_shows_deflections(client, auth: AuthActions, session, world) -> None:
    drawn = _help_requests(session, world)
    support_impact.refresh(session, world.product, now=NOW)
    viewer = add_member(session, world.product, Role.VIEWER)
    auth.login(viewer.email)
    page = client.get("/console/p/acme/support/impact")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert '<th scope="col" class="num">Deflected</th>' in html
    answered_a = sum(answered == "A" for _, _, answered in drawn)
    shown_a = sum("A" in shown for shown, _, _ in drawn)
    assert f"<strong>{answered_a:,}</strong>" in html
    assert f"of {shown_a:,} shown" in html


def test_the_impact_csv_quotes_every_cell_against_a_semicolon_separator(
    client, auth: AuthActions, session, world
) -> None:
    """A title ``x;=cmd|...`` stays one cell of text where ";" separates cells."""
    world.notes["A"].title = "x;=cmd|' /C calc'!A0"
    session.commit()
    support_impact.refresh(session, world.product, now=NOW)
    viewer = add_member(session, world.product, Role.VIEWER)
    auth.login(viewer.email)
    text = client.get("/console/p/acme/support/impact.csv").get_data(as_text=True)
    assert "\"x;=cmd|' /C calc'!A0\"" in text
    cells = [cell for line in text.splitlines() for cell in split_as_semicolon_locale(line)]
    assert any("x;=cmd" in cell for cell in cells)
    assert not any(cell.startswith("=") for cell in cells)


def test_only_a_notice_has_acknowledgement_figures(session, world) -> None:
    notice = world.notes["A"]
    notice.requires_acknowledgement = True
    session.commit()
    counted = notices.count(session, notice, now=NOW)
    assert counted is not None and counted.exposed > 0
    support_impact.refresh(session, world.product, now=NOW)
    figures = {
        row.scope: row.figures["acknowledgement"]
        for row in session.scalars(
            select(SupportImpact).where(SupportImpact.product_id == world.product.id)
        )
    }
    assert figures.pop(f"note:{notice.id}") == {
        "exposed": counted.exposed,
        "acknowledged": 0,
        "not_yet": counted.exposed,
    }
    assert figures and set(figures.values()) == {None}
