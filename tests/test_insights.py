"""Insights on a constructed product whose answers are known: end users seen on known days
and versions (EndUserDay rows), read receipts over several days and channels, reactions
with comments, note e-mails in every state, subscribers joining and leaving, and another
product's data beside it. The roll-up is built from those rows by ``rollups.rebuild``;
every figure is then checked against a count made here, in plain Python, over the rows
this test inserted, and the intervals against scipy's own Wilson interval."""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import math
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import pytest
from scipy import stats
from sqlalchemy import delete, event, insert, select
from sqlalchemy.orm import Session

from announcements import insights, rollups
from announcements.errors import InvalidTransition, ValidationFailed
from announcements.models import (
    AuditEvent,
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
)
from app.database import write_turn
from tests.factories import make_member, make_note, make_product
from tests.test_notices import split_as_semicolon_locale

P_A = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)  # "Export to PDF", 2.4.0
P_B = datetime(2026, 10, 6, 15, 30, tzinfo=UTC)  # "Dark mode", 2.5.0, e-mailed
NOW = datetime(2026, 10, 14, 12, 0, tzinfo=UTC)
TODAY = NOW.date()
FIRST = date(2026, 9, 20)  # the first day any user was seen
# The versions that include each note, and the order users upgrade in.
INCLUDING = {"A": {"2.4.0", "2.5.0", None}, "B": {"2.5.0", None}}
CHANNELS = ["widget", "popup", "email", "help", "agent"]
KEY = b"pseudonym key"


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def safe(text: str) -> str:
    """A cell as a formula-safe export writes it."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


@dataclass(eq=False)
class User:
    external_id: str
    locale: str | None
    attributes: dict[str, str]
    # The days the widget saw the user, with the time of the first sighting and the version.
    seen: list[tuple[date, datetime, str | None]]
    id: int = 0

    @property
    def version(self) -> str | None:
        return self.seen[-1][2]

    @property
    def first_seen_at(self) -> datetime:
        return self.seen[0][1]

    @property
    def last_seen_at(self) -> datetime:
        return self.seen[-1][1]

    def version_on(self, day: date) -> str | None:
        return next(version for seen_on, _, version in self.seen if seen_on == day)

    def value(self, segment: str) -> str:
        """The user's value of a segment as the roll-up stores it now."""
        if segment == "locale":
            own = self.locale
        elif segment == "app_version":
            own = self.version
        else:
            own = self.attributes.get(segment)
        return "(none)" if own is None else own


@dataclass
class Read:
    user: User
    note: str
    read_at: datetime
    channel: str


@dataclass
class World:
    product: Product
    other: Product
    notes: dict[str, Note]
    users: list[User]
    reads: list[Read]
    # (user, note, reaction, comment, when)
    reactions: list[tuple[User, str, str, str | None, datetime]]
    subscribers: list[Subscriber] = field(default_factory=list)
    messages: list[tuple[str, OutboxStatus, Subscriber, datetime]] = field(default_factory=list)


def _history(rng: random.Random, number: int) -> User:
    """A user seen on some days from FIRST to today, upgrading from 2.3.0 to 2.4.0 and
    2.5.0 on random days (never back), or never telling a version."""
    no_version = number % 9 == 0
    upgrade_a = FIRST + timedelta(days=rng.randrange(5, 22))
    upgrade_b = max(upgrade_a, P_B.date()) + timedelta(days=rng.randrange(0, 8))
    chance = rng.choice([0.15, 0.35, 0.6, 0.9])
    seen = []
    for day in days(FIRST, TODAY):
        if rng.random() >= chance and not (day == TODAY and not seen):
            continue
        # Today only before the roll-up's lag: everything the test made is counted.
        hour = rng.randrange(0, 11 if day == TODAY else 24)
        version = "2.5.0" if day >= upgrade_b else "2.4.0" if day >= upgrade_a else "2.3.0"
        seen_at = at(day.year, day.month, day.day, hour, rng.randrange(60))
        seen.append((day, seen_at, None if no_version else version))
    attributes = {"team": f"t{rng.randrange(30):02d}"}
    if number % 4:
        attributes["plan"] = rng.choice(["free", "pro", "enterprise"])
    return User(
        external_id=f"user-{number:03d}",
        locale=rng.choice(["en", "de", "fr", None]),
        attributes=attributes,
        seen=seen,
    )


def exposure_day(user: User, note: str, published_on: date) -> date | None:
    """The first day on or after publication on which the user was seen on a version
    that includes the note."""
    return next(
        (
            day
            for day, _, version in user.seen
            if day >= published_on and version in INCLUDING[note]
        ),
        None,
    )


def build(session: Session) -> World:
    rng = random.Random(16)
    owner = make_member(session)
    product = make_product(session, owner, slug="acme")
    other = make_product(session, owner, slug="other")
    notes = {
        "A": make_note(session, product, version="2.4.0", title="Export to PDF", now=P_A),
        "B": make_note(session, product, version="2.5.0", title="Dark mode", now=P_B),
        "draft": make_note(session, product, version="3.0.0", status="draft", now=P_B),
    }
    other_note = make_note(session, other, version="2.4.0", title="Elsewhere", now=P_A)
    users = [_history(rng, number) for number in range(160)]
    # A user seen before 2.4.0 went out only, who was never exposed to it; one whose id
    # and plan a spreadsheet would take for formulas.
    users.append(
        User("gone", "en", {"team": "t00"}, [(date(2026, 9, 21), at(2026, 9, 21, 8), "2.4.0")])
    )
    users.append(
        User(
            "=cmd()",
            None,
            {"team": "t01", "plan": "+pro"},
            [(date(2026, 10, 8), at(2026, 10, 8, 7), "2.5.0")],
        )
    )
    for user in users:
        user.id = session.scalar(
            insert(EndUser)
            .values(
                product_id=product.id,
                external_id=user.external_id,
                locale=user.locale,
                app_version=user.version,
                attributes=user.attributes,
                first_seen_at=user.first_seen_at,
                last_seen_at=user.last_seen_at,
            )
            .returning(EndUser.id)
        )
        rows, previous = [], None
        for day, seen_at, version in user.seen:
            rows.append(
                {
                    "end_user_id": user.id,
                    "day": day,
                    "product_id": product.id,
                    "seen_at": seen_at,
                    "app_version": version,
                    "previous_day": previous[0] if previous else None,
                    "previous_version": previous[2] if previous else None,
                }
            )
            previous = (day, seen_at, version)
        session.execute(insert(EndUserDay), rows)

    reads: list[Read] = []
    for name, published_at in (("A", P_A), ("B", P_B)):
        for user in users:
            exposed_on = exposure_day(user, name, published_at.date())
            if exposed_on is None or rng.random() < 0.35:
                continue
            earliest = max(
                published_at,
                datetime(exposed_on.year, exposed_on.month, exposed_on.day, tzinfo=UTC),
            )
            read_at = earliest + timedelta(minutes=rng.randrange(1, 60 * 24 * 4))
            if read_at < NOW - rollups.LAG:
                reads.append(Read(user, name, read_at, rng.choice(CHANNELS)))
    session.execute(
        insert(ReadReceipt),
        [
            {
                "end_user_id": r.user.id,
                "note_id": notes[r.note].id,
                "read_at": r.read_at,
                "channel": r.channel,
            }
            for r in reads
        ],
    )

    comments = [
        "Love it",
        '=HYPERLINK("http://evil")',
        "100% better",
        "Where is the EXPORT button?",
        None,
    ]
    reactions = []
    for read in reads:
        if rng.random() < 0.4:
            when = read.read_at + timedelta(hours=rng.randrange(1, 30))
            if when >= NOW:
                continue
            reaction = rng.choice(["👍", "👍", "👎", "😕"])
            reactions.append((read.user, read.note, reaction, rng.choice(comments), when))
    session.execute(
        insert(Reaction),
        [
            {
                "end_user_id": user.id,
                "note_id": notes[name].id,
                "reaction": reaction,
                "comment": comment,
                "created_at": when,
                "updated_at": when + timedelta(minutes=5),
            }
            for user, name, reaction, comment, when in reactions
        ],
    )

    world = World(product, other, notes, users, reads, reactions)
    _mail(session, world)
    # Another product's users, days and reads: never in acme's figures.
    stranger = EndUser(
        product_id=other.id,
        external_id="user-001",
        app_version="2.5.0",
        first_seen_at=datetime(2026, 10, 2, 9, tzinfo=UTC),
        last_seen_at=datetime(2026, 10, 2, 9, tzinfo=UTC),
        attributes={"plan": "pro"},
    )
    session.add(stranger)
    session.flush()
    session.add(
        EndUserDay(
            end_user_id=stranger.id,
            day=date(2026, 10, 2),
            product_id=other.id,
            seen_at=stranger.first_seen_at,
            app_version="2.5.0",
        )
    )
    session.add(
        ReadReceipt(
            end_user_id=stranger.id,
            note_id=other_note.id,
            read_at=datetime(2026, 10, 2, 10, tzinfo=UTC),
            channel="widget",
        )
    )
    session.commit()
    for each in (product, other):
        rollups.rebuild(session, each, now=NOW, write_turn=write_turn)
        session.commit()
    return world


def _mail(session: Session, world: World) -> None:
    """Subscribers over the weeks, and note B's e-mail to them in every state."""
    product, start = world.product, datetime(2026, 9, 18, 10, tzinfo=UTC)
    plans = [
        # confirmed on day n after the start; unsubscribed n days later; bounced
        (0, None, False),
        (1, None, False),
        (5, 9, True),  # bounced after it had unsubscribed: counted as bounced only
        (12, None, False),
        (13, 4, False),
        (14, None, True),
        (18, 1, False),  # unsubscribed the day after note B's e-mail: counted
        (18, None, False),
        (19, None, False),
        (19, 10, False),  # left 10 days after the mail went: not counted against it
        (20, None, False),
        (22, None, False),
    ]
    for number, (confirmed_after, left_after, bounced) in enumerate(plans):
        confirmed_at = start + timedelta(days=confirmed_after, hours=number)
        unsubscribed_at = None
        if left_after is not None:
            unsubscribed_at = (
                (P_B + timedelta(days=left_after, hours=2))
                if confirmed_after >= 18
                else (confirmed_at + timedelta(days=left_after))
            )
        status = (
            SubscriberStatus.BOUNCED
            if bounced
            else SubscriberStatus.UNSUBSCRIBED
            if unsubscribed_at is not None
            else SubscriberStatus.CONFIRMED
        )
        subscriber = Subscriber(
            product_id=product.id,
            email=f"reader{number}@example.com",
            status=status,
            created_at=confirmed_at - timedelta(minutes=10),
            confirmed_at=confirmed_at,
            unsubscribed_at=unsubscribed_at,
        )
        session.add(subscriber)
        world.subscribers.append(subscriber)
    session.flush()
    # A pending subscriber never confirmed: no event.
    session.add(Subscriber(product_id=product.id, email="pending@example.com", created_at=start))
    statuses = [
        OutboxStatus.SENT,
        OutboxStatus.SENT,
        OutboxStatus.FAILED,
        OutboxStatus.SENT,
        OutboxStatus.SKIPPED,
        OutboxStatus.SENT,
        OutboxStatus.SENT,
        OutboxStatus.QUEUED,
        OutboxStatus.SENDING,
        OutboxStatus.SENT,
        OutboxStatus.SENT,
        OutboxStatus.SKIPPED,
    ]
    created_at = P_B + timedelta(minutes=1)
    for subscriber, status in zip(world.subscribers, statuses, strict=True):
        sent_at = created_at + timedelta(minutes=3) if status is OutboxStatus.SENT else None
        session.add(
            OutboxMessage(
                product_id=product.id,
                subscriber_id=subscriber.id,
                note_id=world.notes["B"].id,
                kind=OutboxKind.NOTE,
                status=status,
                created_at=created_at,
                next_attempt_at=created_at,
                sent_at=sent_at,
            )
        )
        world.messages.append(("B", status, subscriber, sent_at or created_at))
    # A confirmation message is no note's e-mail.
    session.add(
        OutboxMessage(
            product_id=product.id,
            subscriber_id=world.subscribers[0].id,
            kind=OutboxKind.CONFIRM,
            status=OutboxStatus.SENT,
            created_at=created_at,
            next_attempt_at=created_at,
            sent_at=created_at,
        )
    )


@pytest.fixture
def world(app, session: Session) -> World:
    return build(session)


# Independent figures ------------------------------------------------------------------------


def wilson(readers: int, exposed: int) -> tuple[float, float]:
    interval = stats.binomtest(readers, exposed).proportion_ci(
        confidence_level=0.95, method="wilson"
    )
    return float(interval.low), float(interval.high)


def nearest_rank(values: list[timedelta], percent: int) -> timedelta:
    ordered = sorted(values)
    return ordered[math.ceil(percent * len(ordered) / 100) - 1]


def exposures(world: World, name: str, until: date = TODAY) -> dict[date, list[User]]:
    published_on = world.notes[name].published_at.date()
    found: dict[date, list[User]] = defaultdict(list)
    for user in world.users:
        day = exposure_day(user, name, published_on)
        if day is not None and day <= until:
            found[day].append(user)
    return found


def reads_of(world: World, name: str, until: date = TODAY) -> list[Read]:
    return [r for r in world.reads if r.note == name and r.read_at.date() <= until]


def active(world: World, first: date, last: date) -> dict[User, date]:
    """The users seen from ``first`` to ``last``, each with their first day in it."""
    return {
        user: min(day for day, _, _ in user.seen if first <= day <= last)
        for user in world.users
        if any(first <= day <= last for day, _, _ in user.seen)
    }


def top_and_other(
    counts: dict[str, tuple[int, ...]], fewest: int = 5
) -> list[tuple[str, tuple[int, ...]]]:
    """The 20 values with the most users (the first figure) of those with at least
    ``fewest``, and the rest, with every value fewer users have, summed as "Other"."""
    alone = {value: figures for value, figures in counts.items() if figures[0] >= fewest}
    ranked = sorted(alone.items(), key=lambda item: (*(-n for n in item[1]), item[0]))
    rest = [f for _, f in ranked[20:]] + [f for v, f in counts.items() if v not in alone]
    shown = ranked[:20]
    if rest:
        shown.append(("Other", tuple(sum(f[i] for f in rest) for i in range(len(rest[0])))))
    return shown


# A note ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["A", "B"])
def test_a_notes_exposed_users_and_readers_day_by_day(
    session: Session, world: World, name: str
) -> None:
    note = world.notes[name]
    found = insights.note_insights(session, note, now=NOW)
    published_on = note.published_at.date()
    exposed_on, reads = exposures(world, name), reads_of(world, name)
    wanted, exposed, readers = [], 0, 0
    for day in days(published_on, TODAY):
        exposed += len(exposed_on.get(day, []))
        readers += sum(read.read_at.date() == day for read in reads)
        wanted.append((day, exposed, readers))
    assert [(p.day, p.exposed, p.readers) for p in found.daily] == wanted
    assert exposed > 40 and 0 < readers < exposed  # the data can tell a wrong count
    assert (found.note_id, found.exposed, found.readers) == (note.id, exposed, len(reads))
    assert found.rate.value == pytest.approx(readers / exposed)
    assert (found.rate.low, found.rate.high) == pytest.approx(wilson(readers, exposed))
    for point in found.daily:
        if point.exposed:
            assert (point.rate.low, point.rate.high) == pytest.approx(
                wilson(point.readers, point.exposed)
            )
        else:
            assert point.rate == insights.Rate(None, None, None)

    assert found.reads_by_channel == dict(Counter(read.channel for read in reads))
    assert list(found.reads_by_channel.values()) == sorted(
        found.reads_by_channel.values(), reverse=True
    )

    waits = [read.read_at - note.published_at for read in reads]
    assert found.time_to_read == insights.TimeToRead(
        len(reads), nearest_rank(waits, 50), nearest_rank(waits, 90)
    )

    given = [(reaction, when) for _, n, reaction, _, when in world.reactions if n == name]
    assert found.reactions == {"👍": 0, "👎": 0, "😕": 0} | dict(Counter(r for r, _ in given))
    assert sum(found.reactions.values()) == len(given) > 5
    by_day = Counter((when.date(), reaction) for reaction, when in given)
    assert found.reactions_daily == [
        (day, {r: by_day[day, r] for r in ("👍", "👎", "😕")}) for day in days(published_on, TODAY)
    ]
    assert found.segment is None and found.segments == []
    assert found.counted_until == NOW - rollups.LAG == rollups.counted_until(session, world.product)


def test_a_range_counts_up_to_its_end_and_starts_the_series_at_its_start(
    session: Session, world: World
) -> None:
    note = world.notes["A"]
    start, end = date(2026, 10, 3), date(2026, 10, 6)
    found = insights.note_insights(session, note, start=start, end=end, by="plan", now=NOW)
    exposed_on, reads = exposures(world, "A", end), reads_of(world, "A", end)
    assert [p.day for p in found.daily] == days(start, end)
    for point in found.daily:
        assert point.exposed == sum(
            len(users) for day, users in exposed_on.items() if day <= point.day
        )
        assert point.readers == sum(read.read_at.date() <= point.day for read in reads)
    exposed = sum(len(users) for users in exposed_on.values())
    assert (found.exposed, found.readers) == (exposed, len(reads))
    assert found.readers < len(reads_of(world, "A"))  # later reads are left out
    assert found.reads_by_channel == dict(Counter(read.channel for read in reads))
    waits = [read.read_at - note.published_at for read in reads]
    assert found.time_to_read == insights.TimeToRead(
        len(reads), nearest_rank(waits, 50), nearest_rank(waits, 90)
    )
    exposed_by = Counter(u.value("plan") for users in exposed_on.values() for u in users)
    read_by = Counter(read.user.value("plan") for read in reads)
    plans = {value: (exposed_by[value], read_by[value]) for value in exposed_by | read_by}
    assert [(row.value, row.exposed, row.readers) for row in found.segments] == [
        (value, *figures) for value, figures in top_and_other(plans)
    ]

    # A start before publication starts the series on the day it went out; an end in the
    # future stops it today.
    whole = insights.note_insights(
        session, note, start=date(2026, 9, 1), end=date(2026, 12, 1), now=NOW
    )
    assert [p.day for p in whole.daily] == days(note.published_at.date(), TODAY)
    # A range before publication counts nothing.
    before = insights.note_insights(
        session, note, start=date(2026, 9, 1), end=date(2026, 9, 30), now=NOW
    )
    assert (before.exposed, before.readers, before.daily, before.reads_by_channel) == (0, 0, [], {})
    assert before.time_to_read == insights.TimeToRead(0, None, None)


@pytest.mark.parametrize("segment", ["team", "plan", "locale", "app_version"])
def test_a_segment_breakdown_has_the_top_20_values_and_other(
    session: Session, world: World, segment: str
) -> None:
    found = insights.note_insights(session, world.notes["A"], by=segment, now=NOW)
    # A user's version where they were exposed is the one the widget saw that day; any
    # other value, and every reader's, is the user's as it is now.
    exposed = Counter(
        u.value(segment) if segment != "app_version" else u.version_on(day) or "(none)"
        for day, users in exposures(world, "A").items()
        for u in users
    )
    read = Counter(r.user.value(segment) for r in reads_of(world, "A"))
    wanted = top_and_other({v: (exposed[v], read[v]) for v in exposed | read})
    assert found.segment == segment
    assert [(row.value, row.exposed, row.readers) for row in found.segments] == [
        (value, *figures) for value, figures in wanted
    ]
    for row in found.segments:
        # Capped at 100 %: a reader's version is the one they run now, which may be newer
        # than the one they were exposed on.
        assert row.rate.value == pytest.approx(min(1, row.readers / row.exposed))
        wanted_interval = wilson(min(row.readers, row.exposed), row.exposed)
        assert (row.rate.low, row.rate.high) == pytest.approx(wanted_interval)
    assert all(row.exposed >= 5 for row in found.segments if row.value != "Other")
    if segment == "team":  # 30 teams, some of fewer than 5 users: those summed
        assert found.segments[-1].value == "Other"
        assert any(0 < exposed[v] < 5 for v in exposed)


def test_a_note_not_published_has_zeros_and_empty_series(session: Session, world: World) -> None:
    found = insights.note_insights(session, world.notes["draft"], by="plan", now=NOW)
    assert (found.exposed, found.readers, found.daily, found.segments) == (0, 0, [], [])
    assert found.rate == insights.Rate(None, None, None)
    assert found.reactions == {"👍": 0, "👎": 0, "😕": 0} and found.reactions_daily == []
    assert found.time_to_read == insights.TimeToRead(0, None, None)
    # Nor does a note still scheduled at ``now``.
    early = insights.note_insights(session, world.notes["B"], now=P_B - timedelta(minutes=1))
    assert (early.exposed, early.daily) == (0, [])


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"by": "shoe_size"}, "by"),
        ({"by": "plan; drop table"}, "by"),
        ({"start": date(2026, 10, 5), "end": date(2026, 10, 4)}, "end"),
        ({"start": date(2025, 10, 1), "end": date(2026, 10, 2)}, "start"),
        ({"start": date(1, 1, 1), "end": date(1, 1, 2)}, "start"),
    ],
)
def test_an_unknown_segment_or_a_range_that_is_none_is_refused(
    session: Session, world: World, arguments: dict, field: str
) -> None:
    with pytest.raises(ValidationFailed) as refused:
        insights.note_insights(session, world.notes["A"], now=NOW, **arguments)
    assert set(refused.value.errors) == {field}
    page = {"start": date(2026, 10, 1), "end": date(2026, 10, 7), "by": None, **arguments}
    with pytest.raises(ValidationFailed) as refused:
        insights.product_insights(session, world.product, now=NOW, **page)
    assert set(refused.value.errors) == {field}


def test_a_year_of_a_leap_year_is_a_range(session: Session, world: World) -> None:
    found = insights.product_insights(
        session, world.product, start=date(2027, 1, 1), end=date(2027, 12, 31), by=None, now=NOW
    )
    assert found.weekly_active == [] and found.subscribers == [] and found.by_rate == []
    assert found.range == insights.Range(
        date(2027, 1, 1), date(2027, 12, 31), "1 Jan 2027 – 31 Dec 2027"
    )
    insights.product_insights(
        session, world.product, start=date(2028, 1, 1), end=date(2028, 12, 31), by=None, now=NOW
    )


# A product ------------------------------------------------------------------------------------


def expected_ranks(world: World, names: list[str], last: date) -> list[tuple]:
    """Each note's (id, exposed, readers, reactions, positive) up to the end of ``last``."""
    ranks = []
    for name in names:
        given = [
            reaction
            for _, n, reaction, _, when in world.reactions
            if n == name and when.date() <= last
        ]
        ranks.append(
            (
                world.notes[name].id,
                sum(len(users) for users in exposures(world, name, last).values()),
                len(reads_of(world, name, last)),
                len(given),
                given.count("👍"),
            )
        )
    return ranks


def shares(counts: Counter[str], fewest: int) -> list[tuple[str, int, float]]:
    total = sum(counts.values())
    ranked = top_and_other({v: (n,) for v, n in counts.items()}, fewest)
    return [(v, n, n / total) for v, (n,) in ranked]


def test_the_product_page_over_a_range(session: Session, world: World) -> None:
    start = date(2026, 9, 28)
    found = insights.product_insights(
        session, world.product, start=start, end=TODAY, by="plan", now=NOW
    )
    assert found.range == insights.Range(start, TODAY, "28 Sep 2026 – 14 Oct 2026")

    # Weekly active users of each day: distinct users seen in the 7 days ending on it.
    assert [(p.week_end, p.users) for p in found.weekly_active] == [
        (day, len(active(world, day - timedelta(days=6), day))) for day in days(start, TODAY)
    ]
    week = active(world, TODAY - timedelta(days=6), TODAY)
    assert len(week) > 100
    version_on = {
        user: next(version for day, _, version in user.seen if day == first)
        for user, first in week.items()
    }
    # Every version, however few run it; a plan fewer than 5 users have is in Other.
    wanted = shares(Counter("(none)" if v is None else v for v in version_on.values()), 1)
    assert [(v.version, v.users, v.share) for v in found.versions] == pytest.approx(wanted)
    assert found.segment == "plan"
    wanted = shares(Counter(user.value("plan") for user in week), 5)
    assert [(row.value, row.users, row.share) for row in found.active_by_segment] == pytest.approx(
        wanted
    )

    ranks = expected_ranks(world, ["A", "B"], TODAY)
    shown = [(r.note_id, r.exposed, r.readers, r.reactions, r.positive) for r in found.by_rate]
    assert sorted(shown) == sorted(ranks)
    rates = [r.rate.value for r in found.by_rate]
    assert rates == sorted(rates, reverse=True)
    for rank in found.by_rate:
        assert rank.rate.value == pytest.approx(rank.readers / rank.exposed)
        assert (rank.rate.low, rank.rate.high) == pytest.approx(wilson(rank.readers, rank.exposed))
        note = session.get(Note, rank.note_id)
        assert (rank.version, rank.title, rank.published_at) == (
            note.version,
            note.title,
            note.published_at,
        )
    assert [r.note_id for r in found.by_reactions] == [
        note_id for note_id, *_ in sorted(ranks, key=lambda r: (-r[3], -r[4], -r[0]))
    ]

    b = world.notes["B"]
    sent = [(s, at) for _, status, s, at in world.messages if status is OutboxStatus.SENT]
    left = [
        s
        for s, at in sent
        if s.unsubscribed_at and at <= s.unsubscribed_at <= at + timedelta(days=7)
    ]
    failed = [s for _, status, s, _ in world.messages if status is OutboxStatus.FAILED]
    web = [r for r in reads_of(world, "B") if r.channel == "email"]
    assert found.email == [
        insights.EmailRow(b.id, "2.5.0", "Dark mode", len(sent), len(failed), len(left), len(web))
    ]
    assert (len(sent), len(failed), len(left)) == (7, 1, 1)

    assert [(p.day, p.confirmed, p.unsubscribed, p.total) for p in found.subscribers] == (
        expected_subscribers(world, start, TODAY)
    )
    assert found.counted_until == NOW - rollups.LAG


def expected_subscribers(world: World, first: date, last: date) -> list[tuple[date, int, int, int]]:
    confirmed = Counter(s.confirmed_at.date() for s in world.subscribers)
    left = Counter(
        s.unsubscribed_at.date()
        for s in world.subscribers
        if s.unsubscribed_at and s.status is not SubscriberStatus.BOUNCED
    )
    bounced = Counter(
        (s.unsubscribed_at or s.created_at).date()
        for s in world.subscribers
        if s.status is SubscriberStatus.BOUNCED
    )
    points = []
    for day in days(first, last):
        total = sum(
            confirmed[d] - left[d] - bounced[d] for d in confirmed | left | bounced if d <= day
        )
        points.append((day, confirmed[day], left[day], total))
    return points


def test_a_past_range_counts_its_notes_up_to_its_end(session: Session, world: World) -> None:
    start, end = date(2026, 9, 28), date(2026, 10, 4)
    found = insights.product_insights(
        session, world.product, start=start, end=end, by=None, now=NOW
    )
    # Only A went out in it, counted as it stood on the range's last day.
    shown = [(r.note_id, r.exposed, r.readers, r.reactions, r.positive) for r in found.by_rate]
    assert shown == expected_ranks(world, ["A"], end)
    assert found.email == [] and found.segment is None and found.active_by_segment == []
    assert [p.week_end for p in found.weekly_active] == days(start, end)
    assert found.weekly_active[-1].users == len(active(world, end - timedelta(days=6), end))
    week = active(world, end - timedelta(days=6), end)
    assert sum(v.users for v in found.versions) == len(week)
    assert found.subscribers[-1] == insights.SubscriberPoint(
        *expected_subscribers(world, start, end)[-1]
    )


def test_a_range_past_today_stops_its_series_today(session: Session, world: World) -> None:
    found = insights.product_insights(
        session, world.product, start=date(2026, 10, 10), end=date(2026, 10, 31), by=None, now=NOW
    )
    assert [p.week_end for p in found.weekly_active] == days(date(2026, 10, 10), TODAY)
    assert found.subscribers[-1].day == TODAY
    assert found.range.end == date(2026, 10, 31)


def test_releases_and_the_range_before_one(session: Session, world: World) -> None:
    a, b = world.notes["A"], world.notes["B"]
    assert insights.releases(session, world.product, now=NOW) == [
        insights.Range(b.published_at.date(), TODAY, "Release 2.5.0"),
        insights.Range(
            a.published_at.date(), b.published_at.date() - timedelta(days=1), "Release 2.4.0"
        ),
    ]
    # Before 2.5.0 went out, 2.4.0's window runs to that day.
    assert insights.releases(session, world.product, now=P_B - timedelta(hours=1)) == [
        insights.Range(a.published_at.date(), P_B.date(), "Release 2.4.0")
    ]
    week = insights.Range(date(2026, 10, 8), date(2026, 10, 14), "this week")
    assert insights.previous_range(week) == insights.Range(
        date(2026, 10, 1), date(2026, 10, 7), "1 Oct 2026 – 7 Oct 2026"
    )
    # The same 2.5.0 window in the figures of a release, compared with the one before.
    current = insights.releases(session, world.product, now=NOW)[0]
    before = insights.previous_range(current)
    assert (before.end - before.start) == (current.end - current.start)
    assert before.end == current.start - timedelta(days=1)


# Comments -----------------------------------------------------------------------------------


def expected_comments(world: World, name: str) -> list[tuple[str, str, datetime]]:
    """A note's comments, newest first (then by the user's id, highest first)."""
    found = [
        (when, user.id, reaction, comment)
        for user, n, reaction, comment, when in world.reactions
        if n == name and comment
    ]
    return [(reaction, comment, when) for when, _, reaction, comment in sorted(found, reverse=True)]


def test_comments_are_paged_searched_and_filtered(session: Session, world: World) -> None:
    note = world.notes["A"]
    wanted = expected_comments(world, "A")
    assert len(wanted) > 7
    pages = math.ceil(len(wanted) / 3)
    seen = []
    for number in range(1, pages + 1):
        page = insights.comments(session, note, page=number, per_page=3)
        assert (page.total, page.page, page.pages) == (len(wanted), number, pages)
        seen.extend((c.reaction, c.comment, c.created_at) for c in page.items)
        assert all(c.updated_at == c.created_at + timedelta(minutes=5) for c in page.items)
    assert seen == wanted
    # A page past the last shows the last; before the first, the first.
    assert insights.comments(session, note, page=99, per_page=3).page == pages
    assert insights.comments(session, note, page=-4, per_page=3).page == 1

    export = insights.comments(session, note, query="  export ")
    assert [(c.reaction, c.comment, c.created_at) for c in export.items] == [
        c for c in wanted if "export" in c[1].lower()
    ]
    assert export.total > 0
    percent = insights.comments(session, note, query="%")
    assert {c.comment for c in percent.items} == {"100% better"}
    confused = insights.comments(session, note, reaction="😕")
    assert [(c.reaction, c.comment, c.created_at) for c in confused.items] == [
        c for c in wanted if c[0] == "😕"
    ]
    none = insights.comments(session, note, query="nobody wrote this")
    assert (none.items, none.total, none.page, none.pages) == ([], 0, 1, 1)
    with pytest.raises(ValidationFailed) as refused:
        insights.comments(session, note, reaction="🔥")
    assert set(refused.value.errors) == {"reaction"}
    with pytest.raises(ValidationFailed) as refused:
        insights.comments(session, note, query="x" * 201)
    assert set(refused.value.errors) == {"q"}


def test_the_comments_export_is_audited_first_and_formula_safe(
    session: Session, world: World
) -> None:
    note, member = world.notes["A"], make_member(session, "pm@example.com")
    lines = insights.comments_csv(session, note, query="", reaction="👍", by=member, now=NOW)
    session.flush()
    audit = session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc())).first()
    assert (audit.action, audit.actor_id, audit.note_id, audit.created_at) == (
        "note.comments_exported",
        member.id,
        note.id,
        NOW,
    )
    assert audit.summary == "“Export to PDF” (2.4.0): Downloaded its comments as CSV, reaction 👍"
    text = "".join(lines)
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["reaction", "comment", "created_at", "updated_at"]
    safe = {'=HYPERLINK("http://evil")': '\'=HYPERLINK("http://evil")'}
    assert rows[1:] == [
        [r, safe.get(c, c), when.isoformat(), (when + timedelta(minutes=5)).isoformat()]
        for r, c, when in expected_comments(world, "A")
        if r == "👍"
    ]
    assert any(row[1].startswith("'=") for row in rows)
    for line in text.splitlines():
        assert line.startswith('"') and line.endswith('"')
        assert not any(cell.startswith("=") for cell in split_as_semicolon_locale(line))


def test_the_comments_export_takes_the_pages_search(session: Session, world: World) -> None:
    note = world.notes["A"]
    # A NUL, which no comment holds and PostgreSQL refuses, is no part of the search.
    lines = insights.comments_csv(session, note, query=" EXP\x00ORT ", by=None, now=NOW)
    session.commit()
    audit = session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc())).first()
    assert audit.summary.endswith("Downloaded its comments as CSV, holding “EXPORT”")
    rows = list(csv.reader(io.StringIO("".join(lines))))
    assert [row[1] for row in rows[1:]] == [
        c for _, c, _ in expected_comments(world, "A") if "export" in c.lower()
    ]
    assert len(rows) > 1
    with pytest.raises(ValidationFailed):
        insights.comments_csv(session, note, reaction="=1+1", by=None, now=NOW)


# Who has not read a note ----------------------------------------------------------------------


def expected_non_readers(world: World, name: str) -> list[User]:
    """Seen since the note went out on a version that includes it (or none), no read;
    most recently seen first."""
    note = world.notes[name]
    read = {r.user.external_id for r in world.reads if r.note == name}
    found = [
        user
        for user in world.users
        if user.last_seen_at >= note.published_at
        and user.version in INCLUDING[name]
        and user.external_id not in read
    ]
    return sorted(found, key=lambda u: (u.last_seen_at, u.id), reverse=True)


def test_the_non_readers_export_lists_who_has_not_read_a_note(
    session: Session, world: World
) -> None:
    note, member = world.notes["B"], make_member(session, "pm@example.com")
    lines = insights.non_readers_csv(
        session,
        note,
        ["plan", " locale", "plan", ""],
        pseudonymise=False,
        key=KEY,
        by=member,
        now=NOW,
    )
    session.flush()
    audit = session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc())).first()
    assert (audit.action, audit.actor_id, audit.note_id) == (
        "note.non_readers_exported",
        member.id,
        note.id,
    )
    assert audit.summary.endswith(
        "Downloaded who has not read it as CSV, with plan, locale; ids as they are"
    )
    text = "".join(lines)
    rows = list(csv.reader(io.StringIO(text)))
    wanted = expected_non_readers(world, "B")
    assert len(wanted) > 20
    assert rows == [
        ["external_id", "last_seen_at", "plan", "locale"],
        *(
            [
                safe(u.external_id),
                u.last_seen_at.isoformat(),
                safe(u.attributes.get("plan", "")),
                u.locale or "",
            ]
            for u in wanted
        ),
    ]
    for line in text.splitlines():
        assert not any(cell[:1] in "=+-@" for cell in split_as_semicolon_locale(line) if cell)


def test_the_non_readers_export_can_pseudonymise_ids(session: Session, world: World) -> None:
    note = world.notes["A"]
    lines = insights.non_readers_csv(
        session, note, [], pseudonymise=True, key=KEY, by=None, now=NOW
    )
    audit = session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc())).first()
    assert audit.summary.endswith("with no attributes; ids pseudonymised")
    rows = list(csv.reader(io.StringIO("".join(lines))))
    wanted = expected_non_readers(world, "A")
    # The day last seen, not the moment, which is one user's alone; in the pseudonyms'
    # order, not by when users were seen, which would match a plain export's rows.
    assert rows[0] == ["pseudonym", "last_seen_on"]
    assert rows[1:] == sorted(
        [
            hmac.new(KEY, u.external_id.encode(), hashlib.sha256).hexdigest(),
            u.last_seen_at.date().isoformat(),
        ]
        for u in wanted
    )
    assert len(wanted) > 40 and len({u.last_seen_at.date() for u in wanted}) > 5
    assert not {u.external_id for u in world.users} & {cell for row in rows for cell in row}
    # Another key, another product's pseudonyms: nothing in common.
    again = list(
        csv.reader(
            io.StringIO(
                "".join(
                    insights.non_readers_csv(
                        session, note, [], pseudonymise=True, key=b"other", by=None, now=NOW
                    )
                )
            )
        )
    )
    assert not {row[0] for row in rows[1:]} & {row[0] for row in again[1:]}


def test_a_pseudonymised_export_keeps_each_users_cells_together(
    session: Session, world: World
) -> None:
    """Sorted by pseudonym, every row still holds its own user's attributes, however
    awkward: a value with a comma, quotes and a line break."""
    note = world.notes["A"]
    awkward = User(
        "awkward",
        "de",
        {"team": "t01", "plan": 'big, "very"\nbig'},
        [(TODAY, NOW - timedelta(hours=1), "2.5.0")],
    )
    session.add(
        EndUser(
            product_id=world.product.id,
            external_id=awkward.external_id,
            locale=awkward.locale,
            app_version=awkward.version,
            attributes=awkward.attributes,
            first_seen_at=awkward.first_seen_at,
            last_seen_at=awkward.last_seen_at,
        )
    )
    session.commit()
    lines = insights.non_readers_csv(
        session, note, ["plan", "locale"], pseudonymise=True, key=KEY, by=None, now=NOW
    )
    rows = list(csv.reader(io.StringIO("".join(lines))))
    wanted = [*expected_non_readers(world, "A"), awkward]
    assert rows[0] == ["pseudonym", "last_seen_on", "plan", "locale"]
    assert rows[1:] == sorted(
        [
            hmac.new(KEY, u.external_id.encode(), hashlib.sha256).hexdigest(),
            u.last_seen_at.date().isoformat(),
            safe(u.attributes.get("plan", "")),
            u.locale or "",
        ]
        for u in wanted
    )
    assert 'big, "very"\nbig' in {row[2] for row in rows}


@pytest.mark.parametrize(
    ("attributes", "error"),
    [
        (["shoe_size"], "This product's users have no “shoe_size”."),
        (["=cmd"], "is not an attribute name"),
    ],
)
def test_the_non_readers_export_refuses_an_unknown_attribute(
    session: Session, world: World, attributes: list[str], error: str
) -> None:
    with pytest.raises(ValidationFailed) as refused:
        insights.non_readers_csv(
            session, world.notes["A"], attributes, pseudonymise=False, key=KEY, by=None, now=NOW
        )
    assert error in refused.value.errors["attribute"]
    with pytest.raises(InvalidTransition):
        insights.non_readers_csv(
            session, world.notes["draft"], [], pseudonymise=False, key=KEY, by=None, now=NOW
        )
    session.flush()
    assert session.scalar(select(AuditEvent.action).order_by(AuditEvent.id.desc())) != (
        "note.non_readers_exported"
    )
    assert set(insights.export_attributes(session, world.notes["A"])) >= {
        "locale",
        "app_version",
        "plan",
        "team",
    }


# The roll-up as it is read ------------------------------------------------------------------------


def test_the_roll_up_rows_are_read_as_they_are_defined(app, session: Session) -> None:
    """Hand-made rows, whose answers follow from the definitions: the buckets of "active"
    rows, values the roll-up folded into "(other)", another product's rows beside."""
    product, other = make_product(session, slug="acme"), make_product(session, slug="other")
    note = make_note(session, product, version="1.0.0", now=at(2026, 9, 1, 9))
    d = date(2026, 10, 1)
    active_rows = [
        (d - timedelta(days=1), 7, 2),  # two new users
        (d, 7, 5),  # five new users
        (d, 1, 2),  # the two of the day before
        (d + timedelta(days=3), 3, 4),  # four of d's
        (d + timedelta(days=3), 7, 1),  # one last seen a week or more before
    ]
    versions = [("1.0.0", 5), ("0.9.0", 2), (rollups.OTHER, 3)]
    segments = [("a", 3, 1), ("b", 5, 0), (rollups.OTHER, 4, 2)]
    rows = []
    for target in (product, other):
        session.add(RollupState(product_id=target.id, counted_until=NOW, segments=["app_version"]))
        key = {"product_id": target.id, "note_id": 0, "metric": "active"}
        for day, bucket, count in active_rows:
            rows.append(
                {**key, "dimension": "", "day": day, "value": "", "bucket": bucket, "count": count}
            )
        for value, count in versions:
            rows.append(
                {
                    **key,
                    "dimension": "seg:app_version",
                    "day": d,
                    "value": value,
                    "bucket": 7,
                    "count": count,
                }
            )
        for value, exposed, read in segments:
            for metric, count in (("exposed", exposed), ("read", read)):
                rows.append(
                    {
                        "product_id": target.id,
                        "note_id": note.id,
                        "metric": metric,
                        "dimension": "seg:app_version",
                        "day": d,
                        "value": value,
                        "bucket": 0,
                        "count": count,
                    }
                )
    session.execute(insert(Rollup), rows)
    session.commit()
    found = insights.product_insights(
        session, product, start=d, end=d + timedelta(days=4), by="app_version", now=NOW
    )
    # Each week counts the 7 users of d - 1 and d once; from d + 3, the one back after a
    # week too, but not the four seen on d again.
    assert [p.users for p in found.weekly_active] == [7, 7, 7, 8, 8]
    # Versions in use name every version; the breakdown by a segment sums a value of
    # fewer than 5 users into Other, as it does the roll-up's own "(other)".
    wanted = [("1.0.0", 5, 0.5), ("0.9.0", 2, 0.2), ("Other", 3, 0.3)]
    assert [(v.version, v.users, v.share) for v in found.versions] == pytest.approx(wanted)
    wanted = [("1.0.0", 5, 0.5), ("Other", 5, 0.5)]
    assert [(v.value, v.users, v.share) for v in found.active_by_segment] == pytest.approx(wanted)
    broken = insights.note_insights(session, note, by="app_version", now=NOW)
    assert [(s.value, s.exposed, s.readers) for s in broken.segments] == [
        ("b", 5, 0),
        ("Other", 7, 3),
    ]


def test_a_page_costs_a_handful_of_queries(session: Session, world: World) -> None:
    """However many users and days: the roll-up's rows are read in grouped queries, a few
    per page, never one per user, day or note."""
    statements: list[str] = []
    engine = session.get_bind()

    def count(_conn, _cursor, statement, *_args) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        note = world.notes["A"]
        session.expire_all()
        insights.note_insights(session, note, by="team", now=NOW)
        on_note = len(statements)
        # What grows with the note's readers is read from the raw tables as little as
        # the exact figures allow: its reactions once, its receipts for the time to read
        # only (a count and a walk from the nearer end to each percentile).
        raw = Counter(
            table
            for statement in statements
            for table in ("reaction", "read_receipt")
            if f"FROM {table} " in statement
        )
        assert raw == {"reaction": 1, "read_receipt": 3}, raw
        statements.clear()
        insights.product_insights(
            session, world.product, start=date(2026, 9, 1), end=TODAY, by="plan", now=NOW
        )
        on_product = len(statements)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert on_note <= 12 and on_product <= 12, (on_note, on_product)


# More notes than a ranking shows --------------------------------------------------------------


@dataclass(eq=False)
class Runner:
    """An end user of :func:`many_notes`: the days the widget saw them, with the time and
    the minor version seen (3.<minor>.0; -1 is 2.9.0, which includes no note; None, no
    version, includes every note)."""

    external_id: str
    seen: list[tuple[date, datetime, int | None]]
    id: int = 0

    @property
    def version(self) -> str:
        """The version now, as a segment's value."""
        return many_version(self.seen[-1][2])


@dataclass
class Many:
    """What :func:`many_notes` wrote, to count from."""

    product: Product
    notes: list[Note]  # the minor version of notes[i] is i
    users: list[Runner]
    reads: list[tuple[Runner, int, datetime]]  # user, note (its minor), read_at
    reactions: list[tuple[int, datetime]]  # note (its minor), created_at

    def exposed(self, minor: int, last: date) -> list[tuple[Runner, date, int | None]]:
        """The users note ``minor`` went out to by the end of ``last``: seen on or after its
        publication day on a version that includes it, with that first day and version."""
        published_on = self.notes[minor].published_at.date()
        found = []
        for user in self.users:
            first = next(
                (
                    (day, version)
                    for day, _, version in user.seen
                    if day >= published_on and (version is None or version >= minor)
                ),
                None,
            )
            if first is not None and first[0] <= last:
                found.append((user, *first))
        return found

    def readers(self, minor: int, last: date) -> list[Runner]:
        return [user for user, n, read_at in self.reads if n == minor and read_at.date() <= last]


def many_version(minor: int | None) -> str:
    return "(none)" if minor is None else "2.9.0" if minor < 0 else f"3.{minor}.0"


def many_notes(session: Session, product: Product, *, now: datetime, count: int = 25) -> Many:
    """``count`` notes of ``product``, 3.0.0 forty days before ``now`` and 3.1.0 onwards one
    a day up to yesterday; 90 users seen on some days of the last 45, each moving to the
    newest version some days after it came out (one in ten with no version, one in five
    stuck on 2.9.0); half of those each note went out to read it, the stuck users read
    the newest note by e-mail (more readers than it reached), a third of the readers
    react. Everything happens before 23:00 yesterday, so the roll-up built at ``now`` has
    counted it. Commits and rebuilds the product's roll-up."""
    rng = random.Random(2016)
    today = now.astimezone(UTC).date()
    latest = datetime.combine(today, datetime.min.time(), UTC) - timedelta(hours=1)
    published = [today - timedelta(days=40)] + [
        today - timedelta(days=count - minor) for minor in range(1, count)
    ]
    notes = [
        make_note(
            session,
            product,
            version=f"3.{minor}.0",
            title=f"Change {minor}",
            now=datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=9),
        )
        for minor, day in enumerate(published)
    ]
    users = []
    for number in range(90):
        lag, chance = rng.randrange(4), rng.choice([0.3, 0.6, 0.9])
        seen = []
        for day in days(today - timedelta(days=45), today - timedelta(days=1)):
            if rng.random() >= chance:
                continue
            out = [minor for minor, on in enumerate(published) if on <= day - timedelta(days=lag)]
            minor = None if number % 10 == 0 else -1 if number % 5 == 1 else max(out, default=-1)
            hour = rng.randrange(0, 23)
            seen.append(
                (day, datetime.combine(day, datetime.min.time(), UTC).replace(hour=hour), minor)
            )
        if seen:
            users.append(Runner(f"runner-{number:02d}", seen))
    for user in users:
        user.id = session.scalar(
            insert(EndUser)
            .values(
                product_id=product.id,
                external_id=user.external_id,
                app_version=None if user.seen[-1][2] is None else user.version,
                attributes={"plan": rng.choice(["free", "pro"])},
                first_seen_at=user.seen[0][1],
                last_seen_at=user.seen[-1][1],
            )
            .returning(EndUser.id)
        )
        rows, previous = [], None
        for day, seen_at, minor in user.seen:
            rows.append(
                {
                    "end_user_id": user.id,
                    "day": day,
                    "product_id": product.id,
                    "seen_at": seen_at,
                    "app_version": None if minor is None else many_version(minor),
                    "previous_day": previous[0] if previous else None,
                    "previous_version": (
                        None
                        if previous is None or previous[2] is None
                        else many_version(previous[2])
                    ),
                }
            )
            previous = (day, seen_at, minor)
        session.execute(insert(EndUserDay), rows)
    many = Many(product, notes, users, [], [])
    for minor, note in enumerate(notes):
        for user, day, _ in many.exposed(minor, today):
            seen_at = next(at for on, at, _ in user.seen if on == day)
            read_at = max(note.published_at, seen_at) + timedelta(minutes=rng.randrange(1, 3000))
            if rng.random() < 0.5 and read_at <= latest:
                many.reads.append((user, minor, read_at))
    newest = len(notes) - 1
    for user in users:
        if user.seen[-1][2] == -1:
            many.reads.append((user, newest, notes[newest].published_at + timedelta(hours=1)))
    session.execute(
        insert(ReadReceipt),
        [
            {
                "end_user_id": user.id,
                "note_id": notes[minor].id,
                "read_at": read_at,
                "channel": "email" if user.seen[-1][2] == -1 else rng.choice(CHANNELS),
            }
            for user, minor, read_at in many.reads
        ],
    )
    reacted = []
    for user, minor, read_at in many.reads:
        when = read_at + timedelta(minutes=30)
        if rng.random() < 0.35 and when <= latest:
            reacted.append(
                {
                    "end_user_id": user.id,
                    "note_id": notes[minor].id,
                    "reaction": rng.choice(["👍", "👎", "😕"]),
                    "comment": None,
                    "created_at": when,
                    "updated_at": when,
                }
            )
            many.reactions.append((minor, when))
    session.execute(insert(Reaction), reacted)
    session.commit()
    rollups.rebuild(session, product, now=now, write_turn=write_turn)
    session.commit()
    return many


@pytest.fixture
def many(app, session: Session) -> Many:
    return many_notes(session, make_product(session, slug="many"), now=NOW)


def test_the_totals_count_every_note_in_the_range_not_only_the_ranked(
    session: Session, many: Many
) -> None:
    """More notes than the rankings show: the headline figures count all of them, each
    up to the range's end, the rate capping each note's readers at its reach."""
    newest = len(many.notes) - 1
    assert len(many.readers(newest, TODAY)) > len(many.exposed(newest, TODAY))
    for start, end in (
        (TODAY - timedelta(days=27), TODAY),
        (TODAY - timedelta(days=40), TODAY - timedelta(days=3)),
    ):
        found = insights.product_insights(
            session, many.product, start=start, end=end, by=None, now=NOW
        )
        counted = [
            minor
            for minor, note in enumerate(many.notes)
            if start <= note.published_at.date() <= end
        ]
        assert len(counted) > insights.TOP_NOTES
        assert len(found.by_rate) == len(found.by_reactions) == insights.TOP_NOTES
        exposed = [len(many.exposed(minor, end)) for minor in counted]
        readers = [len(many.readers(minor, end)) for minor in counted]
        capped = sum(min(r, e) for r, e in zip(readers, exposed, strict=True))
        totals = found.totals
        assert (totals.notes, totals.exposed, totals.readers) == (
            len(counted),
            sum(exposed),
            sum(readers),
        )
        assert totals.reactions == sum(
            1 for minor, when in many.reactions if minor in counted and when.date() <= end
        )
        assert totals.rate.value == pytest.approx(capped / sum(exposed))
        assert (totals.rate.low, totals.rate.high) == pytest.approx(wilson(capped, sum(exposed)))
        # What the ranked 20 alone would have said.
        assert totals.exposed > sum(rank.exposed for rank in found.by_rate)


def test_a_rate_lies_within_its_interval_at_nobody_and_at_everyone() -> None:
    """The interval holds its rate, 0 and 100 % included, where floating point would put
    its ends a hair inside; readers past the users reached read as 100 %."""
    for exposed in range(1, 2_000):
        for readers in (0, 1, exposed // 2, exposed, exposed + 3):
            rate = insights.read_rate(readers, exposed)
            assert 0 <= rate.low <= rate.value <= rate.high <= 1, (readers, exposed, rate)
            low, high = wilson(min(readers, exposed), exposed)
            assert (rate.low, rate.high) == pytest.approx((low, high), abs=1e-12)
        assert insights.read_rate(exposed + 3, exposed).value == 1.0
        assert insights.read_rate(exposed, exposed).high == 1.0
        assert insights.read_rate(0, exposed).low == 0.0


def many_segments(many: Many, minor: int, last: date = TODAY) -> list[tuple[str, int, int]]:
    """Note ``minor``'s app_version breakdown up to the end of ``last``, counted here: a
    user reached under the version the widget saw that day, a reader under the version
    they run now."""
    exposed = Counter(many_version(version) for _, _, version in many.exposed(minor, last))
    read = Counter(many_version(user.seen[-1][2]) for user in many.readers(minor, last))
    return [
        (v, e, r) for v, (e, r) in top_and_other({v: (exposed[v], read[v]) for v in exposed | read})
    ]


def test_a_value_with_more_readers_than_users_reached_reads_100_percent(
    session: Session, many: Many
) -> None:
    """Users move to newer versions between being reached and reading: under the newer
    version there are more readers than users reached, a rate capped at 100 % whose
    interval still holds it."""
    minor = len(many.notes) - 8
    found = insights.note_insights(session, many.notes[minor], by="app_version", now=NOW)
    wanted = many_segments(many, minor)
    assert [(row.value, row.exposed, row.readers) for row in found.segments] == wanted
    assert any(0 < e < r for _, e, r in wanted)
    for row in found.segments:
        if row.exposed == 0:
            assert row.rate == insights.Rate(None, None, None)
            continue
        assert row.rate.value == min(row.readers, row.exposed) / row.exposed
        assert row.rate.low <= row.rate.value <= row.rate.high <= 1
        if row.readers >= row.exposed:
            assert row.rate.value == row.rate.high == 1.0


# What a page never shows, and what it bounds --------------------------------------------------


def seen_and_read(
    session: Session,
    product: Product,
    note: Note,
    people: list[tuple[str, dict[str, str], datetime, datetime | None]],
) -> None:
    """End users of ``product``, each (id, attributes, seen at, read ``note`` at or None)
    seen once on the note's version, with the day row the widget writes, and a receipt
    if they read it."""
    for external_id, attributes, seen_at, read_at in people:
        user_id = session.scalar(
            insert(EndUser)
            .values(
                product_id=product.id,
                external_id=external_id,
                app_version=note.version,
                attributes=attributes,
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
                app_version=note.version,
            )
        )
        if read_at is not None:
            session.execute(
                insert(ReadReceipt).values(
                    end_user_id=user_id, note_id=note.id, read_at=read_at, channel="widget"
                )
            )
    session.commit()


def test_no_breakdown_shows_a_value_fewer_than_5_users_have(app, session: Session) -> None:
    """Broken down by an attribute each user has alone (a seat number), a row would
    be one user and whether they read: a value fewer than 5 users were exposed under (a
    note's breakdown) or active under (the product's) is summed into Other, beside the
    values past the top 20; values of 5 users or more are shown."""
    product = make_product(session, slug="crowd")
    note = make_note(session, product, version="1.0.0", now=P_A)
    # 24 teams of 5 to 8 users, and 6 of 1 to 4: more teams of 5 than a breakdown shows.
    sizes = [5 + n % 4 for n in range(24)] + [1 + n % 4 for n in range(6)]
    people, number = [], 0
    for team, size in enumerate(sizes):
        for _ in range(size):
            seen_at = at(2026, 10, 8 + number % 7, 8)  # in the week to TODAY
            read_at = seen_at + timedelta(hours=1) if number % 3 == 0 else None
            attributes = {"seat": f"seat-{number}", "team": f"team-{team:02d}"}
            people.append((f"user-{number}", attributes, seen_at, read_at))
            number += 1
    seen_and_read(session, product, note, people)
    rollups.rebuild(session, product, now=NOW, write_turn=write_turn)
    session.commit()
    everyone, readers = len(people), sum(read_at is not None for *_, read_at in people)

    by_seat = insights.note_insights(session, note, by="seat", now=NOW)
    assert [(r.value, r.exposed, r.readers) for r in by_seat.segments] == [
        ("Other", everyone, readers)
    ]
    teams: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for _, attributes, _, read_at in people:
        teams[attributes["team"]][0] += 1
        teams[attributes["team"]][1] += read_at is not None
    large = sorted(
        ((team, e, r) for team, (e, r) in teams.items() if e >= 5),
        key=lambda row: (-row[1], -row[2], row[0]),
    )
    assert len(large) == 24
    shown = large[:20]
    rest = [(e, r) for team, (e, r) in teams.items() if (team, e, r) not in shown]
    by_team = insights.note_insights(session, note, by="team", now=NOW)
    assert [(r.value, r.exposed, r.readers) for r in by_team.segments] == [
        *shown,
        ("Other", sum(e for e, _ in rest), sum(r for _, r in rest)),
    ]

    found = insights.product_insights(
        session, product, start=date(2026, 10, 8), end=TODAY, by="seat", now=NOW
    )
    assert [(r.value, r.users, r.share) for r in found.active_by_segment] == [
        ("Other", everyone, 1.0)
    ]
    # An attribute that looks like personal data is never a segment.
    with pytest.raises(ValidationFailed):
        insights.note_insights(session, note, by="email", now=NOW)
    # Versions in use name versions, never users: every one is shown.
    assert [(v.version, v.users) for v in found.versions] == [("1.0.0", everyone)]


def test_a_note_published_long_ago_draws_its_last_366_days_and_counts_from_publication(
    app, session: Session
) -> None:
    """An import dated year 1 would draw a point for each of 740,000 days: the series
    keeps the last 366 days of the range, its first point counting everything since
    publication."""
    product = make_product(session, slug="old")
    note = make_note(session, product, version="1.0.0", now=at(1, 1, 1, 9))
    seen_and_read(
        session,
        product,
        note,
        [
            ("early", {}, at(2020, 5, 1, 8), at(2020, 5, 1, 9)),
            ("late", {}, at(2026, 10, 2, 8), at(2026, 10, 3, 8)),
            ("unread", {}, at(2026, 10, 12, 8), None),
        ],
    )
    rollups.rebuild(session, product, now=NOW, write_turn=write_turn)
    session.commit()
    found = insights.note_insights(session, note, now=NOW)
    first = TODAY - timedelta(days=insights.MAX_RANGE_DAYS - 1)
    assert [p.day for p in found.daily] == days(first, TODAY)
    assert (found.daily[0].exposed, found.daily[0].readers) == (1, 1)  # 2020's
    assert (found.daily[-1].exposed, found.daily[-1].readers) == (3, 2)
    assert (found.exposed, found.readers) == (3, 2)
    assert [day for day, _ in found.reactions_daily] == days(first, TODAY)
    # A range of its own is capped the same way; a short one is drawn whole.
    ended = insights.note_insights(session, note, end=date(2025, 1, 31), now=NOW)
    end = date(2025, 1, 31)
    assert [p.day for p in ended.daily] == days(end - timedelta(days=365), end)
    assert (ended.exposed, ended.readers) == (1, 1)
    week = insights.note_insights(
        session, note, start=date(2026, 10, 1), end=date(2026, 10, 7), now=NOW
    )
    assert [(p.day, p.exposed, p.readers) for p in week.daily][1:3] == [
        (date(2026, 10, 2), 2, 1),
        (date(2026, 10, 3), 2, 2),
    ]
    # Its release reaches back to year 1: the window keeps its last 366 days.
    assert insights.releases(session, product, now=NOW) == [
        insights.Range(first, TODAY, "Release 1.0.0, its last 366 days")
    ]


def test_time_to_read_counts_the_readers_the_roll_up_has_counted(
    session: Session, world: World
) -> None:
    """Readers come from the roll-up, up to its last run: the time to read counts the
    same receipts, not one read since, and none before the roll-up's first run."""
    note = world.notes["A"]
    readers = {r.user.id for r in reads_of(world, "A")}
    late = next(u for u in world.users if u.id not in readers and u.version in INCLUDING["A"])
    session.add(
        ReadReceipt(
            end_user_id=late.id,
            note_id=note.id,
            read_at=NOW - timedelta(seconds=5),
            channel="popup",
        )
    )
    session.commit()
    found = insights.note_insights(session, note, now=NOW)
    waits = [read.read_at - note.published_at for read in reads_of(world, "A")]
    assert found.readers == len(waits)
    assert found.time_to_read == insights.TimeToRead(
        len(waits), nearest_rank(waits, 50), nearest_rank(waits, 90)
    )
    session.execute(delete(RollupState).where(RollupState.product_id == world.product.id))
    session.execute(delete(Rollup).where(Rollup.product_id == world.product.id))
    session.commit()
    found = insights.note_insights(session, note, now=NOW)
    assert (found.readers, found.counted_until) == (0, None)
    assert found.time_to_read == insights.TimeToRead(0, None, None)


def test_a_release_longer_than_366_days_keeps_its_last_days(app, session: Session) -> None:
    """Two releases over two years: each window keeps its last 366 days, and says so, so
    that comparing them is one click, not a refusal."""
    product = make_product(session, slug="slow")
    make_note(session, product, version="1.0.0", now=at(2024, 3, 1, 9))
    make_note(session, product, version="2.0.0", now=at(2025, 6, 1, 9))
    make_note(session, product, version="2.1.0", now=at(2026, 10, 10, 9))
    latest, slow, older = insights.releases(session, product, now=NOW)
    assert latest == insights.Range(date(2026, 10, 10), TODAY, "Release 2.1.0")
    assert slow == insights.Range(
        date(2026, 10, 9) - timedelta(days=365),
        date(2026, 10, 9),
        "Release 2.0.0, its last 366 days",
    )
    assert older == insights.Range(
        date(2025, 5, 31) - timedelta(days=365),
        date(2025, 5, 31),
        "Release 1.0.0, its last 366 days",
    )
    for window in (slow, older):
        assert (window.end - window.start).days + 1 == insights.MAX_RANGE_DAYS
        insights.product_insights(
            session, product, start=window.start, end=window.end, by=None, now=NOW
        )
