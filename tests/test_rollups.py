"""The daily roll-up against counts made here, in plain Python, from the rows each test
wrote: after a rebuild, after a day-by-day sequence of increments (a note archived on
the way), and the two against each other; the cap on values; which attributes become
segments; subscribers over time; products kept apart; a run that fails leaves the last
roll-up as it was, and a product that fails leaves the others counted; two first runs at
once count once. On SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, insert, select, text
from sqlalchemy.orm import Session

from announcements import rollups
from announcements.models import (
    EndUser,
    EndUserDay,
    Note,
    OutboxKind,
    OutboxMessage,
    OutboxStatus,
    Product,
    ReadReceipt,
    Rollup,
    RollupState,
    Subscriber,
    SubscriberStatus,
)
from app.database import write_turn
from app.extensions import db
from tests.factories import make_note, make_product

FIRST_DAY = date(2026, 2, 2)
DAYS = 14
END = datetime.combine(FIRST_DAY + timedelta(days=DAYS), time(12), tzinfo=UTC)
CHANNELS = ["widget", "popup", "email", "agent"]
PLANS = ["free", "pro", "team"]
COUNTRIES = ["fr", "us", "jp", "br"]

# When the increments run each day (hour, minute): in the morning, and in the afternoon
# after a release came out (not after the day's first visits).
RUNS = [(10, 5), (15, 30)]

Key = tuple[int, str, str, date, str, int]  # note, metric, dimension, day, value, bucket


def at(day: int, hour: int = 0, minute: int = 0) -> datetime:
    """The moment ``hour:minute`` UTC on the test's ``day``-th day."""
    return datetime.combine(FIRST_DAY + timedelta(days=day), time(hour, minute), tzinfo=UTC)


def parsed(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def includes(version: str | None, note_version: str) -> bool:
    """Whether a user on ``version`` is shown a note of ``note_version``: no version, or
    one not older."""
    return version is None or parsed(version) >= parsed(note_version)


@dataclass
class Visit:
    """A day row as the widget wrote it."""

    day: date
    seen_at: datetime
    version: str | None
    previous_day: date | None
    previous_version: str | None


@dataclass
class User:
    id: int
    locale: str | None
    attributes: dict[str, str]
    visits: list[Visit] = field(default_factory=list)

    @property
    def version(self) -> str | None:
        return self.visits[-1].version

    def segment(self, name: str) -> str:
        """The user's value of a segment as they are now, as the roll-up stores it."""
        raw = {"locale": self.locale, "app_version": self.version}.get(
            name, self.attributes.get(name)
        )
        return raw[: rollups.VALUE_LENGTH] if raw else rollups.NONE


@dataclass(frozen=True)
class Read:
    user: User
    note_id: int
    read_at: datetime
    channel: str


@dataclass(frozen=True)
class Message:
    note_id: int
    status: OutboxStatus
    created_at: datetime
    sent_at: datetime | None
    unsubscribed_at: datetime | None


@dataclass
class Signup:
    status: SubscriberStatus
    created_at: datetime
    confirmed_at: datetime | None
    unsubscribed_at: datetime | None
    last_failure: datetime | None = None  # its newest message that failed


@dataclass
class World:
    """One product's raw rows, as written."""

    product: Product
    notes: dict[int, tuple[str, datetime]]  # counted notes: id -> (version, published_at)
    internal: int  # an internal note, read by some: never counted
    users: list[User]
    reads: list[Read]
    messages: list[Message]
    signups: list[Signup]
    segments: list[str]
    archived: dict[int, datetime] = field(default_factory=dict)  # note id -> archived_at

    def archive(self, session: Session, note_id: int, moment: datetime) -> None:
        """Archive one of the counted notes at ``moment``."""
        session.get_one(Note, note_id).archived_at = moment
        session.commit()
        self.archived[note_id] = moment


# Building a world ------------------------------------------------------------------------


def _notes(session: Session, product: Product) -> tuple[dict[int, tuple[str, datetime]], int]:
    """Releases over the fortnight (one in the afternoon, after the day's first visits),
    an older version's note published late, and notes that are never counted; with the
    internal one's id."""
    counted = {}
    for version, day, hour in [
        ("1.0.0", 0, 8),
        ("1.1.0", 3, 15),
        ("1.1.0", 3, 15),
        ("2.0.0", 7, 12),
        ("1.0.5", 9, 9),
    ]:
        note = make_note(session, product, version=version, now=at(day, hour))
        counted[note.id] = (version, at(day, hour))
    internal = make_note(session, product, version="1.0.0", is_internal=True, now=at(5, 10))
    make_note(session, product, version="1.0.0", status="draft", now=at(5, 10))
    make_note(session, product, version="3.0.0", status="scheduled", now=END)
    return counted, internal.id


def _attributes(rng: random.Random) -> dict[str, str]:
    attributes = {"country": rng.choice(COUNTRIES)}
    if rng.random() < 0.7:
        attributes["plan"] = rng.choice(PLANS)
    if rng.random() < 0.75:
        attributes["team.size"] = str(rng.randint(1, 3))
    if rng.random() < 0.1:
        attributes["beta"] = "yes"  # too few users have it to be a segment
    if rng.random() < 0.2:
        attributes["locale"] = "xx"  # the built-in's name: the built-in is counted
    if rng.random() < 0.2:
        attributes["not a name"] = "?"  # not an attribute the widget accepts
    if rng.random() < 0.1:
        attributes["plan"] = ""  # empty counts as none
    if rng.random() < 0.05:
        attributes["country"] = "far away " * 20  # cut to 128 characters
    return attributes


def _visits(rng: random.Random, user: User) -> None:
    """Visits on some days, versions only going up after each release; some users never
    say a version."""
    versionless = rng.random() < 0.15
    version = rng.choice(["1.0.0", "1.0.0", "1.1.0"])
    first = rng.randrange(DAYS)
    previous: Visit | None = None
    for day in range(first, DAYS + 1):
        if day != first and rng.random() < 0.45:
            continue
        if day >= 3 and parsed(version) < (1, 1, 0) and rng.random() < 0.5:
            version = "1.1.0"
        if day >= 7 and rng.random() < 0.4:
            version = "2.0.0"
        hour = rng.randrange(24) if day < DAYS else rng.randrange(11)
        seen_at = at(day, hour, rng.randrange(60))
        if rng.random() < 0.1:
            seen_at = watermark_of(day)  # on the edge of a run: counted by that run
        visit = Visit(
            day=seen_at.date(),
            seen_at=seen_at,
            version=None if versionless else version,
            previous_day=previous.day if previous else None,
            previous_version=previous.version if previous else None,
        )
        user.visits.append(visit)
        previous = visit


def build(session: Session, seed: int, *, users: int = 40) -> World:
    """A product with notes, users and their day rows, receipts, subscribers and the
    notes' e-mail, every row stamped before END."""
    rng = random.Random(seed)
    product = make_product(session)
    notes, internal = _notes(session, product)
    people: list[User] = []
    for number in range(users):
        user = User(0, rng.choice(["en", "de", "pt-BR", None]), _attributes(rng))
        _visits(rng, user)
        user.id = session.execute(
            insert(EndUser)
            .values(
                product_id=product.id,
                external_id=f"user-{number}",  # the same ids in every product
                locale=user.locale,
                attributes=user.attributes,
                app_version=user.version,
                first_seen_at=user.visits[0].seen_at,
                last_seen_at=user.visits[-1].seen_at,
            )
            .returning(EndUser.id)
        ).scalar_one()
        session.execute(
            insert(EndUserDay),
            [
                {
                    "end_user_id": user.id,
                    "product_id": product.id,
                    "day": visit.day,
                    "seen_at": visit.seen_at,
                    "app_version": visit.version,
                    "previous_day": visit.previous_day,
                    "previous_version": visit.previous_version,
                }
                for visit in user.visits
            ],
        )
        people.append(user)
    reads = []
    for user in people:
        for note_id, (_, published_at) in [*notes.items(), (internal, (None, at(5, 10)))]:
            if rng.random() < 0.4:
                read_at = published_at + (END - timedelta(hours=1) - published_at) * rng.random()
                if rng.random() < 0.1 and read_at.date() < END.date():
                    read_at = watermark_of((read_at.date() - FIRST_DAY).days + 1)
                reads.append(Read(user, note_id, read_at, rng.choice(CHANNELS)))
    session.execute(
        insert(ReadReceipt),
        [
            {
                "end_user_id": read.user.id,
                "note_id": read.note_id,
                "read_at": read.read_at,
                "channel": read.channel,
            }
            for read in reads
        ],
    )
    signups, messages = _mail(session, rng, product, notes)
    session.commit()
    return World(product, notes, internal, people, reads, messages, signups, segments_of(people))


def segments_of(users: list[User]) -> list[str]:
    """The built-ins, then the attributes (names the widget accepts, not a built-in's)
    that at least SEGMENT_MIN_USERS users have, the commonest first."""
    having = Counter(name for user in users for name in user.attributes)
    names = [
        name
        for name, count in having.items()
        if count >= rollups.SEGMENT_MIN_USERS
        and name not in ("locale", "app_version")
        and " " not in name
    ]
    names.sort(key=lambda name: (-having[name], name))
    return ["locale", "app_version", *names][: rollups.MAX_SEGMENTS]


def _mail(
    session: Session, rng: random.Random, product: Product, notes: dict[int, tuple[str, datetime]]
) -> tuple[list[Signup], list[Message]]:
    """Subscribers of every status, and the e-mail of three notes to them: sent (some
    unsubscribing within the week after, some later), bounced, skipped and waiting."""
    signups: list[Signup] = []
    subscribers: list[tuple[int, Signup]] = []
    for number in range(16):
        created = at(rng.randrange(3), rng.randrange(24))
        status = rng.choice(list(SubscriberStatus))
        confirmed = None if status is SubscriberStatus.PENDING else created + timedelta(hours=1)
        unsubscribed = None
        if status is SubscriberStatus.UNSUBSCRIBED or (
            status is SubscriberStatus.BOUNCED and rng.random() < 0.5
        ):
            unsubscribed = at(rng.randrange(4, DAYS), rng.randrange(24))
        subscriber_id = session.execute(
            insert(Subscriber)
            .values(
                product_id=product.id,
                email=f"s{number}@example.com",
                status=status,
                created_at=created,
                confirmed_at=confirmed,
                unsubscribed_at=unsubscribed,
                link_key=f"key-{product.id}-{number}",
            )
            .returning(Subscriber.id)
        ).scalar_one()
        signup = Signup(status, created, confirmed, unsubscribed)
        signups.append(signup)
        subscribers.append((subscriber_id, signup))
    messages: list[Message] = []
    ids = list(notes)
    for note_id in (ids[0], ids[2], ids[3]):
        published_at = notes[note_id][1]
        session.get_one(Note, note_id).emailed_at = published_at
        for subscriber_id, signup in subscribers:
            created = published_at + timedelta(hours=rng.choice([0, 0, 10]))
            status = rng.choice(list(OutboxStatus))
            sent = created + timedelta(hours=2) if status is OutboxStatus.SENT else None
            if status is OutboxStatus.FAILED:
                signup.last_failure = max(created, signup.last_failure or created)
            session.add(
                OutboxMessage(
                    product_id=product.id,
                    subscriber_id=subscriber_id,
                    note_id=note_id,
                    kind=OutboxKind.NOTE,
                    status=status,
                    created_at=created,
                    next_attempt_at=created,
                    sent_at=sent,
                )
            )
            messages.append(Message(note_id, status, created, sent, signup.unsubscribed_at))
            # Mail of other kinds is not the note's e-mail.
            session.add(
                OutboxMessage(
                    product_id=product.id,
                    subscriber_id=subscriber_id,
                    note_id=note_id,
                    kind=OutboxKind.AGENT,
                    status=OutboxStatus.SENT,
                    created_at=created,
                    sent_at=created,
                )
            )
    return signups, messages


# What the roll-up should hold, counted here ------------------------------------------------


def expected(world: World, until: datetime) -> Counter[Key]:
    """Every roll-up count for raw rows stamped at or before ``until``, from the rows as
    built; e-mail (of the notes published by then) and subscribers as they are (they are
    recounted in full)."""
    counts: Counter[Key] = Counter()
    dimensions = [("", None)] + [(f"seg:{name}", name) for name in world.segments]

    def keys(
        note_id: int, metric: str, day: date, user: User, version_then: str | None
    ) -> Iterator[tuple[int, str, str, date, str]]:
        """The count's key for everyone and for each segment: the version as it was
        then, the other segments as they are now."""
        for dimension, name in dimensions:
            if name is None:
                value = ""
            elif name == "app_version":
                value = version_then or rollups.NONE
            else:
                value = user.segment(name)
            yield (note_id, metric, dimension, day, value)

    for user in world.users:
        visits = [visit for visit in user.visits if visit.seen_at <= until]
        for visit in visits:
            gap = (visit.day - visit.previous_day).days if visit.previous_day else 7
            for key in keys(0, "active", visit.day, user, visit.version):
                counts[(*key, min(gap, 7))] += 1
        for note_id, (version, published_at) in world.notes.items():
            if published_at > until:
                continue
            # Exposed on the first day, from publication day to the day it was archived,
            # on a version that includes the note.
            archived = world.archived.get(note_id)
            last_day = archived.date() if archived else date.max
            first = next(
                (
                    visit
                    for visit in visits
                    if published_at.date() <= visit.day <= last_day
                    and includes(visit.version, version)
                ),
                None,
            )
            if first is not None:
                for key in keys(note_id, "exposed", first.day, user, first.version):
                    counts[(*key, 0)] += 1
    for read in world.reads:
        if read.read_at <= until and read.note_id in world.notes:
            read_on = read.read_at.date()
            counts[(read.note_id, "read", "channel", read_on, read.channel, 0)] += 1
            for key in keys(read.note_id, "read", read_on, read.user, read.user.version):
                counts[(*key, 0)] += 1
    for message in world.messages:
        if world.notes[message.note_id][1] > until:
            continue  # its note is not counted yet (mail goes after publication)
        status = {
            OutboxStatus.SENT: "sent",
            OutboxStatus.FAILED: "bounced",
            OutboxStatus.SKIPPED: "skipped",
        }.get(message.status, "waiting")
        day = message.created_at.date()
        counts[(message.note_id, "email", "status", day, status, 0)] += 1
        if (
            message.sent_at is not None
            and message.unsubscribed_at is not None
            and message.sent_at <= message.unsubscribed_at <= message.sent_at + timedelta(days=7)
        ):
            counts[(message.note_id, "email", "status", day, "unsubscribed", 0)] += 1
    for signup in world.signups:
        if signup.confirmed_at is None:
            continue  # never joined, so never left
        counts[(0, "subscribers", "event", signup.confirmed_at.date(), "confirmed", 0)] += 1
        if signup.status is SubscriberStatus.BOUNCED:
            when = signup.unsubscribed_at or signup.last_failure or signup.confirmed_at
            counts[(0, "subscribers", "event", when.date(), "bounced", 0)] += 1
        elif signup.status is SubscriberStatus.UNSUBSCRIBED:
            when = signup.unsubscribed_at or signup.confirmed_at
            counts[(0, "subscribers", "event", when.date(), "unsubscribed", 0)] += 1
    return counts


def stored(session: Session, product: Product, *, zeros: bool = False) -> Counter[Key]:
    """The product's roll-up rows; without ``zeros``, those that count something."""
    session.expire_all()
    rows = session.execute(
        select(
            Rollup.note_id,
            Rollup.metric,
            Rollup.dimension,
            Rollup.day,
            Rollup.value,
            Rollup.bucket,
            Rollup.count,
        ).where(Rollup.product_id == product.id)
    )
    return Counter({tuple(row[:6]): row[6] for row in rows if zeros or row[6]})


def watermark(session: Session, product: Product) -> tuple[datetime, list[str]] | None:
    session.expire_all()
    state = session.get(RollupState, product.id)
    return None if state is None else (state.counted_until, list(state.segments))


def refresh_all(session: Session, now: datetime) -> dict[str, int]:
    return rollups.refresh_all(session, now=now, write_turn=write_turn)


def increments() -> Iterator[datetime]:
    """The runs of each day, then one at END."""
    for day in range(DAYS):
        for hour, minute in RUNS:
            yield at(day, hour, minute)
    yield END


def watermark_of(day: int) -> datetime:
    """Up to when the day's morning run counts."""
    return at(day, *RUNS[0]) - rollups.LAG


def differences(got: Counter[Key], want: Counter[Key]) -> dict[Key, tuple[int, int]]:
    return {key: (got[key], want[key]) for key in set(got) | set(want) if got[key] != want[key]}


# The tests ------------------------------------------------------------------------------------


@pytest.fixture
def world(app: Flask, session: Session) -> World:
    return build(session, 7)


def counted_notes(session: Session, product: Product) -> set[int]:
    """The notes the product's roll-up has rows for, zeros too."""
    return {note_id for note_id, *_ in stored(session, product, zeros=True)} - {0}


def test_a_rebuild_counts_every_metric_as_the_raw_rows_say(session: Session, world: World) -> None:
    archived = list(world.notes)[1]  # published on day 3, exposed until day 8
    world.archive(session, archived, at(8, 13))
    written = rollups.rebuild(session, world.product, now=END, write_turn=write_turn)
    want = expected(world, END - rollups.LAG)
    got = stored(session, world.product)
    assert differences(got, want) == {}
    assert written == len(stored(session, world.product, zeros=True))
    # The archived note keeps its exposure, which stops after its archive day; the
    # internal one, read by some, has no row at all.
    exposed_on = {
        day for note_id, metric, _, day, _, _ in got if (note_id, metric) == (archived, "exposed")
    }
    assert exposed_on and max(exposed_on) <= at(8).date()
    assert counted_notes(session, world.product) == set(world.notes)
    assert any(read.note_id == world.internal for read in world.reads)
    assert {metric for _, metric, *_ in want} == {
        "active",
        "exposed",
        "read",
        "email",
        "subscribers",
    }
    assert rollups.counted_until(session, world.product) == END - rollups.LAG
    assert rollups.segments(session, world.product) == world.segments
    # The world has what the rules are about: values cut, users without a value.
    assert any(len(value) == rollups.VALUE_LENGTH for _, _, _, _, value, _ in want)
    assert any(value == rollups.NONE for _, _, _, _, value, _ in want)


def test_increments_day_by_day_count_what_a_rebuild_counts(session: Session, world: World) -> None:
    other = build(session, 8)
    # Archived in the middle of a day, between two runs: exposed until that day's end.
    archived, archived_at = list(world.notes)[1], at(8, 13)
    ran = []
    for now in increments():
        if now > archived_at and archived not in world.archived:
            world.archive(session, archived, archived_at)
        ran.append(refresh_all(session, now))
        # Each run counts up to its watermark, and only that.
        want = expected(world, now - rollups.LAG)
        assert differences(stored(session, world.product), want) == {}, now
    assert differences(stored(session, other.product), expected(other, END - rollups.LAG)) == {}
    assert all(set(run) == {world.product.slug, other.product.slug} for run in ran)
    assert rollups.counted_until(session, world.product) == END - rollups.LAG
    assert rollups.segments(session, world.product) == world.segments

    after_increments = stored(session, world.product, zeros=True)
    rollups.rebuild(session, world.product, now=END, write_turn=write_turn)
    assert stored(session, world.product, zeros=True) == after_increments
    assert watermark(session, world.product) == (END - rollups.LAG, world.segments)
    # The archived note had users exposed after it was archived, and after its day.
    exposed_on = {
        day
        for note_id, metric, _, day, _, _ in after_increments
        if (note_id, metric) == (archived, "exposed")
    }
    assert exposed_on and max(exposed_on) == archived_at.date()
    assert any(
        visit.seen_at > archived_at and visit.day > archived_at.date()
        for user in world.users
        for visit in user.visits
    )
    assert counted_notes(session, world.product) == set(world.notes)


def test_a_run_again_at_the_same_time_adds_nothing(session: Session, world: World) -> None:
    rollups.refresh(session, world.product, now=at(5, 12), write_turn=write_turn)
    before = stored(session, world.product)
    rollups.refresh(session, world.product, now=at(5, 12), write_turn=write_turn)
    assert stored(session, world.product) == before
    assert before == expected(world, at(5, 12) - rollups.LAG)


def test_products_never_mix(session: Session, world: World) -> None:
    other = build(session, 9)
    empty = make_product(session)
    done = refresh_all(session, END)
    assert done[empty.slug] == 0
    assert stored(session, empty) == Counter()
    for each in (world, other):
        assert differences(stored(session, each.product), expected(each, END - rollups.LAG)) == {}
    # Rebuilding one leaves the other's rows alone.
    before = stored(session, other.product, zeros=True)
    rollups.rebuild(session, world.product, now=END, write_turn=write_turn)
    assert stored(session, other.product, zeros=True) == before


def test_a_segment_keeps_its_100_commonest_values_and_sums_the_rest(
    session: Session, app: Flask
) -> None:
    product = make_product(session)
    day = at(1, 9)
    teams = [f"team-{number:03}" for number in range(130)]
    # The first 20 teams have three users each, the others one: those 20 are kept first,
    # then the singles in the order of their names.
    members = [team for number, team in enumerate(teams) for _ in range(3 if number < 20 else 1)]
    users = []
    for number, team in enumerate(members):
        users.append(
            session.execute(
                insert(EndUser)
                .values(
                    product_id=product.id,
                    external_id=f"u{number}",
                    attributes={"team": team},
                    first_seen_at=day,
                    last_seen_at=day,
                )
                .returning(EndUser.id)
            ).scalar_one()
        )
    session.execute(
        insert(EndUserDay),
        [
            {"end_user_id": user, "product_id": product.id, "day": day.date(), "seen_at": day}
            for user in users
        ],
    )
    session.commit()
    rollups.rebuild(session, product, now=at(1, 10), write_turn=write_turn)
    rows = {
        value: count
        for (note_id, metric, dimension, _, value, bucket), count in stored(
            session, product
        ).items()
        if (metric, dimension) == ("active", "seg:team")
    }
    kept = teams[:20] + sorted(teams[20:])[:80]
    assert rows == {**{team: 3 if team in teams[:20] else 1 for team in kept}, "(other)": 30}

    # Later the same day: stored values are added to, new ones go to "(other)".
    later = at(1, 11)
    newcomers = []
    for number, team in enumerate(["team-000", "team-129", "team-new"]):
        newcomers.append(
            session.execute(
                insert(EndUser)
                .values(
                    product_id=product.id,
                    external_id=f"late{number}",
                    attributes={"team": team},
                    first_seen_at=later,
                    last_seen_at=later,
                )
                .returning(EndUser.id)
            ).scalar_one()
        )
    session.execute(
        insert(EndUserDay),
        [
            {"end_user_id": user, "product_id": product.id, "day": later.date(), "seen_at": later}
            for user in newcomers
        ],
    )
    session.commit()
    rollups.refresh(session, product, now=at(1, 12), write_turn=write_turn)
    grown = {
        value: count
        for (_, metric, dimension, _, value, _), count in stored(session, product).items()
        if (metric, dimension) == ("active", "seg:team")
    }
    assert grown == {**rows, "team-000": 4, "(other)": 32}
    assert sum(grown.values()) == len(members) + 3


@pytest.mark.parametrize("step", ["rebuild", "refresh"])
def test_a_run_that_fails_halfway_leaves_the_last_roll_up(
    session: Session, world: World, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    rollups.refresh(session, world.product, now=at(6, 12), write_turn=write_turn)
    before, state = stored(session, world.product, zeros=True), watermark(session, world.product)
    assert before and state is not None
    real_add: Callable[..., None] = rollups._add

    def add_half_then_fail(session: Session, rows: list[dict[str, Any]]) -> None:
        real_add(session, rows[: len(rows) // 2])
        assert session.scalar(
            select(func.count()).select_from(Rollup).where(Rollup.product_id == world.product.id)
        ), "the first half is written before the failure"
        raise RuntimeError("the database went away")

    monkeypatch.setattr(rollups, "_add", add_half_then_fail)
    with pytest.raises(RuntimeError):
        if step == "rebuild":
            rollups.rebuild(session, world.product, now=END, write_turn=write_turn)
        else:
            rollups.refresh(session, world.product, now=END, write_turn=write_turn)
    assert stored(session, world.product, zeros=True) == before
    assert watermark(session, world.product) == state

    monkeypatch.setattr(rollups, "_add", real_add)
    rollups.refresh(session, world.product, now=END, write_turn=write_turn)
    assert differences(stored(session, world.product), expected(world, END - rollups.LAG)) == {}


def test_a_run_that_finds_the_watermark_moved_writes_nothing(
    session: Session, world: World, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two workers at once: the one that commits second counted the same rows, and adds
    nothing."""
    rollups.refresh(session, world.product, now=at(6, 12), write_turn=write_turn)
    real_count = rollups._count_subscribers

    def another_run_meanwhile(session: Session, product_id: int) -> Any:
        monkeypatch.setattr(rollups, "_count_subscribers", real_count)  # that run counts
        # A session of its own, as another process would have.
        with Session(db.engine) as elsewhere:
            product = elsewhere.get_one(Product, product_id)
            assert rollups.refresh(elsewhere, product, now=END) > 0
        return real_count(session, product_id)

    monkeypatch.setattr(rollups, "_count_subscribers", another_run_meanwhile)
    assert rollups.refresh(session, world.product, now=END, write_turn=write_turn) == 0
    monkeypatch.undo()
    assert differences(stored(session, world.product), expected(world, END - rollups.LAG)) == {}


def test_a_product_that_fails_leaves_the_others_counted(
    session: Session, app: Flask, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    broken = build(session, 10, users=10)  # made first, so counted first
    world = build(session, 11, users=10)
    real_count = rollups._count_subscribers

    def failing_for_one(session: Session, product_id: int) -> Any:
        if product_id == broken.product.id:
            # A database error: on PostgreSQL the transaction is aborted with it.
            session.execute(text("SELECT no_such_column FROM rollup"))
        return real_count(session, product_id)

    monkeypatch.setattr(rollups, "_count_subscribers", failing_for_one)
    with caplog.at_level(logging.ERROR):
        done = refresh_all(session, END)
    assert done == {world.product.slug: len(stored(session, world.product, zeros=True))}
    assert differences(stored(session, world.product), expected(world, END - rollups.LAG)) == {}
    assert stored(session, broken.product, zeros=True) == Counter()
    assert watermark(session, broken.product) is None
    (failed,) = [record for record in caplog.records if record.exc_info]
    assert broken.product.slug in failed.getMessage()

    # Mended, the next run counts it.
    monkeypatch.undo()
    assert set(refresh_all(session, END)) == {broken.product.slug, world.product.slug}
    assert differences(stored(session, broken.product), expected(broken, END - rollups.LAG)) == {}


def test_two_first_runs_at_once_count_once(
    session: Session, world: World, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two workers counting a product that has no roll-up yet, at the same time: the
    first holds its new watermark uncommitted while the second comes to write its own.
    The second then writes nothing, rather than failing on the duplicate (PostgreSQL) or
    counting the product a second time."""
    real_add, real_commit = rollups._add, rollups._commit
    holding, second_writes, release = threading.Event(), threading.Event(), threading.Event()

    def add_then_hold(session: Session, rows: list[dict[str, Any]]) -> None:
        real_add(session, rows)
        if threading.current_thread().name == "first":
            holding.set()
            assert release.wait(30)

    def commit(session: Session, run: Any, now: datetime, turn: Any) -> int:
        if threading.current_thread().name == "second":
            second_writes.set()
        return real_commit(session, run, now, turn)

    monkeypatch.setattr(rollups, "_add", add_then_hold)
    monkeypatch.setattr(rollups, "_commit", commit)
    written: dict[str, int | BaseException] = {}

    def run() -> None:
        name = threading.current_thread().name
        try:
            with app.app_context(), Session(db.engine) as own:
                product = own.get_one(Product, world.product.id)
                written[name] = rollups.refresh(own, product, now=END, write_turn=write_turn)
        except BaseException as error:  # reported by the assertions below
            written[name] = error

    first = threading.Thread(target=run, name="first")
    second = threading.Thread(target=run, name="second")
    first.start()
    assert holding.wait(30)
    second.start()
    assert second_writes.wait(30)
    # Let it reach the write and wait there for the first's turn (SQLite) or row
    # (PostgreSQL); it would find the state either way.
    second.join(timeout=0.5)
    release.set()
    first.join(timeout=30)
    second.join(timeout=30)
    assert written["second"] == 0, written
    assert written["first"] == len(stored(session, world.product, zeros=True))
    assert differences(stored(session, world.product), expected(world, END - rollups.LAG)) == {}
    assert watermark(session, world.product) == (END - rollups.LAG, world.segments)


def _seen(
    session: Session,
    product: Product,
    external_id: str,
    attributes: dict[str, str],
    moment: datetime,
) -> None:
    """An end user the widget saw for the first time at ``moment``, with its day row."""
    user = session.execute(
        insert(EndUser)
        .values(
            product_id=product.id,
            external_id=external_id,
            attributes=attributes,
            first_seen_at=moment,
            last_seen_at=moment,
        )
        .returning(EndUser.id)
    ).scalar_one()
    session.execute(
        insert(EndUserDay).values(
            end_user_id=user, product_id=product.id, day=moment.date(), seen_at=moment
        )
    )
    session.commit()


def test_an_attribute_becomes_a_segment_once_enough_users_have_it(
    session: Session, app: Flask
) -> None:
    product = make_product(session)
    built_ins = ["locale", "app_version"]
    # One caller makes up 50 attribute names: none becomes a segment.
    _seen(session, product, "junk", {f"junk{number}": "x" for number in range(50)}, at(0, 8))
    for number in range(rollups.SEGMENT_MIN_USERS - 1):
        _seen(session, product, f"user-{number}", {"plan": "pro"}, at(0, 9))
    rollups.refresh(session, product, now=at(0, 10), write_turn=write_turn)  # the first: a rebuild
    assert rollups.segments(session, product) == built_ins

    # The next run sees one more user with the plan: with those known, enough.
    _seen(session, product, "last", {"plan": "free"}, at(0, 11))
    _seen(session, product, "junk-again", {f"junk{number}": "y" for number in range(50)}, at(0, 11))
    rollups.refresh(session, product, now=at(0, 12), write_turn=write_turn)
    assert rollups.segments(session, product) == [*built_ins, "plan"]

    def plans() -> dict[str, int]:
        return {
            value: count
            for (_, metric, dimension, _, value, _), count in stored(session, product).items()
            if (metric, dimension) == ("active", "seg:plan")
        }

    # Counted from then on; a rebuild counts it over the past too.
    assert plans() == {"free": 1, rollups.NONE: 1}
    rollups.rebuild(session, product, now=at(0, 12), write_turn=write_turn)
    assert plans() == {"pro": 19, "free": 1, rollups.NONE: 2}

    # A rebuild chooses afresh: segments a roll-up once kept without enough users go.
    session.get_one(RollupState, product.id).segments = [*built_ins, "junk1", "junk2"]
    session.commit()
    rollups.rebuild(session, product, now=at(0, 12), write_turn=write_turn)
    assert rollups.segments(session, product) == [*built_ins, "plan"]
    assert not any(
        dimension.startswith("seg:junk") for _, _, dimension, *_ in stored(session, product)
    )


def test_subscribers_who_never_confirmed_never_leave_the_total(
    session: Session, app: Flask
) -> None:
    """Summed day by day as the Insights page sums them (confirmed less unsubscribed less
    bounced), the subscribers never go below zero and end at those confirmed now."""
    product = make_product(session)
    confirmed, pending = SubscriberStatus.CONFIRMED, SubscriberStatus.PENDING
    bounced, left = SubscriberStatus.BOUNCED, SubscriberStatus.UNSUBSCRIBED
    # name, status, created, confirmed, unsubscribed, days of failed messages (days)
    people: list[tuple[str, SubscriberStatus, int, int | None, int | None, list[int]]] = [
        ("pending-then-bounced", bounced, 0, None, None, [0, 1]),
        ("pending-then-left", left, 0, None, 1, []),
        ("bounced-later", bounced, 1, 1, None, [2, 4]),
        ("bounced-long-ago", bounced, 1, 2, None, []),  # its failed mail since deleted
        ("left", left, 2, 2, 3, []),
        ("stays", confirmed, 0, 1, None, [1]),  # one failure did not stop them
        ("stays-too", confirmed, 3, 3, None, []),
        ("pending", pending, 4, None, None, []),
    ]
    want: Counter[tuple[date, str]] = Counter()
    for number, (name, status, created, joined, unsubscribed, failures) in enumerate(people):
        subscriber = Subscriber(
            product_id=product.id,
            email=f"{name}@example.com",
            status=status,
            created_at=at(created, 8),
            confirmed_at=None if joined is None else at(joined, 9),
            unsubscribed_at=None if unsubscribed is None else at(unsubscribed, 10),
            link_key=f"key-{number}",
        )
        session.add(subscriber)
        session.flush()
        for day in failures:
            session.add(
                OutboxMessage(
                    product_id=product.id,
                    subscriber_id=subscriber.id,
                    kind=OutboxKind.CONFIRM if joined is None else OutboxKind.DIGEST,
                    status=OutboxStatus.FAILED,
                    created_at=at(day, 12),
                    next_attempt_at=at(day, 12),
                )
            )
        if joined is None:
            continue  # never joined: neither in nor out
        want[(at(joined).date(), "confirmed")] += 1
        if status is bounced:
            when = at(unsubscribed) if unsubscribed is not None else at(max(failures or [joined]))
            want[(when.date(), "bounced")] += 1
        elif status is left:
            assert unsubscribed is not None
            want[(at(unsubscribed).date(), "unsubscribed")] += 1
    session.commit()
    rollups.rebuild(session, product, now=at(6), write_turn=write_turn)

    got = Counter(
        {
            (day, value): count
            for (_, metric, _, day, value, _), count in stored(session, product).items()
            if metric == "subscribers"
        }
    )
    assert got == want
    total, totals = 0, []
    for day in sorted({day for day, _ in got}):
        total += got[(day, "confirmed")] - got[(day, "unsubscribed")] - got[(day, "bounced")]
        totals.append(total)
    assert min(totals) >= 0
    assert totals[-1] == sum(status is confirmed for _, status, *_ in people) == 2
