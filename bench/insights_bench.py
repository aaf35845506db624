"""Insights at size: the product's Insights page, a note's insights page and the API's note
insights, each with a segment breakdown, against the console's notes list measured in the
same run.

Seeds a product with 1,000,000 end users (a locale, a version, and a plan, a country and
a role among their attributes), 200 notes in 50 releases two weeks apart (the newest ten
days ago, a fifth of them important and e-mailed), eight weeks of the days the widget saw
each user as ``reads.see`` writes them (each user at their own rate, fewer at weekends,
moving to each release some days after it came out, a few stuck on an old one: about
5,400,000 rows), 10,000,000 read receipts over the widget's, e-mail's, help's and agents'
channels (each user reads a share of the notes out while they used the product, up to
their version; the reads are not matched to their day rows), a reaction from one reader
in fifty, and 5,000 subscribers with the e-mails of the important notes. Bulk inserts:
executemany on SQLite, COPY on PostgreSQL. Then it counts the roll-up with ``rollups.rebuild``, as
``flask rollups rebuild`` does, and times, through the Flask test client logged in as the
product's owner, each the median of several calls:

- the baseline: the console's notes list, GET /console/p/bench/notes;
- GET /console/p/bench/insights?by=country (the product page: its default range);
- GET /console/p/bench/notes/<id>/insights?by=country for the newest release's first note
  and for a note a year old (a long daily series);
- GET /api/v1/products/bench/notes/<id>/insights?by=country for the newest (scope
  insights:read).

Each is printed with its ratio to the baseline, against the bar of 500 ms a page.

    .venv/bin/python bench/insights_bench.py                                 # SQLite, full size
    .venv/bin/python bench/insights_bench.py --users 100000 --receipts 1000000
    scripts/bench.sh insights                    # SQLite and PostgreSQL, full size

PostgreSQL comes from --postgres URL or TIDINGS_TEST_POSTGRES_URL; the bench makes a
database of its own on that server and drops it after.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import math
import os
import random
import secrets
import sys
import tempfile
import time
from array import array
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import common  # noqa: E402

from announcements import accounts, apikeys, rollups, services  # noqa: E402
from announcements.models import Category, Note, Product  # noqa: E402
from announcements.services import Intent, NoteInput, ProductSettings  # noqa: E402
from app.database import dispose, write_turn  # noqa: E402
from app.extensions import db  # noqa: E402

PASSWORD = "bench password 1"  # noqa: S105 - a throw-away account
SEGMENT = "country"
READ_CALLS = 5
BAR = 0.5  # seconds a page may take
RELEASE_EVERY = timedelta(days=14)
NEWEST_RELEASE = timedelta(days=10)
IMPORTANT_EVERY = 5  # every fifth note is important, and e-mailed
LEAD_IN_DAYS = 7  # drawn before the history, so its first rows know the day before
USERS_AT_ONCE = 50_000
EPOCH = date(1970, 1, 1).toordinal()
CHURNED = 0.3  # users who stopped coming at some point
STUCK = 0.1  # users who stop upgrading at some release
WEEKEND_VISITS = 0.25  # a weekend day's chance of a visit, of a working day's
UPGRADE_DAYS = 5.0  # how long users take to install a release, on average
REACTING = 0.02
SUBSCRIBERS = 5_000
# The attributes users are segmented by, with how common each value is.
LOCALES = ["en"] * 12 + ["de", "fr", "es", "pt", "it", "nl", "ja", "pl", "sv", "ar", "zh"]
PLANS = ["free"] * 6 + ["pro"] * 3 + ["team"] * 2 + ["enterprise"]
COUNTRIES = [f"C{number:02d}" for number in range(40)]
COUNTRY_WEIGHTS = [1 / (rank + 1) for rank in range(len(COUNTRIES))]  # Zipf, as countries are
ROLES = ["member"] * 6 + ["admin"] * 2 + ["viewer"] * 2 + ["owner", "billing"]
CHANNELS = ["widget", "popup", "email", "help", "agent"]
CHANNEL_WEIGHTS = [58, 22, 12, 6, 2]


@dataclass(frozen=True)
class Release:
    """A release as the seed made it: its version, day and notes."""

    version: str
    day: date  # the UTC day it came out
    note_ids: list[int]  # its notes, in order
    published_at: list[datetime]


def create_notes(url: str, args: argparse.Namespace, now: datetime) -> tuple[int, list[Release]]:
    """The schema, the owner and the product's notes, through the services; the product's
    id and its releases, oldest first."""
    engine = common.empty_schema(url)
    started = time.perf_counter()
    releases: list[Release] = []
    per_release = max(1, args.notes // args.releases)
    categories = list(Category)
    with Session(engine) as session:
        owner = accounts.create_member(session, "bench@example.com", PASSWORD)
        product = services.create_product(
            session, ProductSettings(name="Bench", slug="bench"), by=owner, now=now
        )
        for number in range(args.releases):
            out = now - NEWEST_RELEASE - RELEASE_EVERY * (args.releases - 1 - number)
            ids, times = [], []
            for position in range(per_release):
                count = number * per_release + position
                published = out + timedelta(hours=position)
                note = services.create_note(
                    session,
                    product,
                    NoteInput(
                        version=f"1.{number}.0",
                        title=f"Release note {count}",
                        category=categories[count % len(categories)].value,
                        body_md="Something new, and how to use it.",
                        is_important=count % IMPORTANT_EVERY == 0,
                    ),
                    intent=Intent.PUBLISH,
                    by=owner,
                    now=published,
                )
                ids.append(note.id)
                times.append(published)
            releases.append(Release(f"1.{number}.0", out.date(), ids, times))
        product_id = product.id
    engine.dispose()
    took = time.perf_counter() - started
    print(f"  {args.notes} notes in {args.releases} releases in {took:.1f}s")
    return product_id, releases


@dataclass
class Drawn:
    """What the receipts are drawn from, per user id (index): when they were first and
    last seen, and the newest release they ran."""

    first_seen: array[float]
    last_seen: array[float]
    release: array[int]


def seed(url: str, args: argparse.Namespace, now: datetime) -> None:
    """Fill the database; print how long each part took."""
    product_id, releases = create_notes(url, args, now)
    engine = create_engine(url)
    dialect = engine.dialect.name
    rng = random.Random(16)
    started = time.perf_counter()
    with common.bulk_load(engine) as (raw, cursor), without_indexes(raw, cursor, SLOW_INDEXES):
        drawn = load_users_and_days(cursor, dialect, rng, args, product_id, releases, now)
        raw.commit()
        counts = [
            cursor.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608
            for table in ("end_user", "end_user_day")
        ]
        took = time.perf_counter() - started
        print("  {:,} end users and {:,} of their days in {:.1f}s".format(*counts, took))
        started = time.perf_counter()
        reactions = load_receipts(cursor, dialect, rng, args, releases, drawn, now)
        raw.commit()
        count = cursor.execute("SELECT count(*) FROM read_receipt").fetchone()[0]
        took = time.perf_counter() - started
        print(f"  {count:,} read receipts and {reactions:,} reactions in {took:.1f}s")
        started = time.perf_counter()
        mails = load_subscribers(cursor, dialect, rng, product_id, releases, now)
        raw.commit()
        took = time.perf_counter() - started
        print(f"  {SUBSCRIBERS:,} subscribers and {mails:,} note e-mails in {took:.1f}s")
    engine.dispose()


# The indexes a bulk load would update row by row in random order: dropped for the load
# and built again after, one sort each. (``common.load_read_receipts`` does the same for
# the receipts' (note, user) index.)
SLOW_INDEXES = [
    ("ix_read_receipt_note_id_read_at", "read_receipt", "note_id, read_at"),
    ("ix_end_user_day_product_id_seen_at", "end_user_day", "product_id, seen_at"),
]


@contextmanager
def without_indexes(
    raw: Any, cursor: Any, indexes: Sequence[tuple[str, str, str]]
) -> Iterator[None]:
    """Drop ``indexes`` (name, table, columns) for what runs inside, and build them after."""
    for name, _, _ in indexes:
        cursor.execute(f"DROP INDEX {name}")
    yield
    started = time.perf_counter()
    for name, table, columns in indexes:
        cursor.execute(f"CREATE INDEX {name} ON {table} ({columns})")
    raw.commit()
    print(f"  {len(indexes)} indexes built again in {time.perf_counter() - started:.1f}s")


def load_users_and_days(
    cursor: Any,
    dialect: str,
    rng: random.Random,
    args: argparse.Namespace,
    product_id: int,
    releases: list[Release],
    now: datetime,
) -> Drawn:
    """Users, signed up over the releases' two years, and their days in the history, as
    the widget would have written them; a chunk of users at a time, so that their rows
    are not all held at once."""
    history = _History.of(now, args.days, releases)
    drawn = Drawn(array("d"), array("d"), array("i"))
    user_columns = (
        "id, product_id, external_id, attributes, locale, app_version, first_seen_at, last_seen_at"
    )
    day_columns = (
        "end_user_id, day, product_id, seen_at, app_version, previous_day, previous_version"
    )
    countries = list(itertools.accumulate(COUNTRY_WEIGHTS))
    for first in range(1, args.users + 1, USERS_AT_ONCE):
        users: list[tuple[object, ...]] = []
        rows: list[tuple[object, ...]] = []
        for number in range(first, min(first + USERS_AT_ONCE, args.users + 1)):
            user = history.user(rng)
            previous = user.before
            for ordinal, moment in user.visits:
                version = user.release_on(ordinal)
                if ordinal >= history.start:
                    rows.append(
                        (
                            number,
                            _day(ordinal),
                            product_id,
                            _stamp(moment, dialect),
                            _version(releases, version),
                            None if previous is None else _day(previous[0]),
                            None if previous is None else _version(releases, previous[1]),
                        )
                    )
                previous = (ordinal, version)
            attributes = {
                "plan": rng.choice(PLANS),
                "country": rng.choices(COUNTRIES, cum_weights=countries)[0],
                "role": rng.choice(ROLES),
            }
            ran = user.release_on(int(user.last_seen))
            users.append(
                (
                    number,
                    product_id,
                    f"user-{number}",
                    json.dumps(attributes),
                    rng.choice(LOCALES),
                    _version(releases, ran),
                    _stamp(user.signed_up, dialect),
                    _stamp(user.last_seen, dialect),
                )
            )
            drawn.first_seen.append(user.signed_up)
            drawn.last_seen.append(user.last_seen)
            drawn.release.append(ran)
        if first == 1:
            common.load_end_users(cursor, dialect, user_columns, users, args.users)
        else:
            common.bulk_insert(cursor, dialect, "end_user", user_columns, users)
        common.bulk_insert(cursor, dialect, "end_user_day", day_columns, rows)
    return drawn


@dataclass(frozen=True)
class _User:
    """One user as drawn. Moments are fractional day ordinals: the integer part is the
    day's ``date.toordinal()``, the rest the time of day."""

    signed_up: float
    last_seen: float
    visits: list[tuple[int, float]]  # (day, first sighting) of each day they came
    before: tuple[int, int] | None  # (day, release) of their last visit before those
    releases: list[int]  # the days the releases came out
    lag: float  # days they take to install a release
    installed: int  # the release they installed when they signed up
    stuck: int  # the newest release they will upgrade to

    def release_on(self, day: int) -> int:
        """The index of the release they ran on ``day``; -1 for the one before them all."""
        newest = bisect.bisect_right(self.releases, day - self.lag) - 1
        return max(min(newest, self.stuck), self.installed)


@dataclass(frozen=True)
class _History:
    """The days drawn (the lead-in, then the history) and the releases' days."""

    first: int  # the lead-in's first day
    start: int  # the history's first day
    now: float
    weekend: list[bool]  # by day from ``first``
    releases: list[int]
    born: float  # when the first users signed up

    @classmethod
    def of(cls, now: datetime, days: int, releases: list[Release]) -> _History:
        today = now.date().toordinal()
        first = today - days - LEAD_IN_DAYS
        weekend = [date.fromordinal(day).weekday() >= 5 for day in range(first, today + 1)]
        out = [release.day.toordinal() for release in releases]
        return cls(first, today - days, _ordinal(now), weekend, out, out[0] - 30.0)

    def user(self, rng: random.Random) -> _User:
        """A user: when they signed up, whether and when they stopped coming, how often
        they come (the chance on a working day), how soon they upgrade and whether they
        stop at some release; then the days they came."""
        signed_up = self.born + rng.random() * (self.now - self.born)
        leaves = signed_up + rng.random() * (self.now - signed_up)
        if rng.random() >= CHURNED:
            leaves = self.now
        lag = rng.expovariate(1 / UPGRADE_DAYS)
        last_release = len(self.releases) - 1
        stuck = rng.randrange(len(self.releases)) if rng.random() < STUCK else last_release
        installed = bisect.bisect_right(self.releases, int(signed_up)) - 1
        keen = max(0.001, rng.betavariate(1, 5))
        visits = self._visits(rng, keen, signed_up, leaves)
        before = None  # the day of their last visit before the lead-in, if any
        if int(signed_up) < self.first and leaves > self.first:
            before = max(int(signed_up), self.first - rng.randint(1, 14))
        if visits:
            last_seen = visits[-1][1]
        elif before is not None:
            last_seen = max(signed_up, before + 0.5)
        else:
            last_seen = max(signed_up, leaves - rng.random())
        user = _User(signed_up, last_seen, visits, None, self.releases, lag, installed, stuck)
        if before is None:
            return user
        return replace(user, before=(before, user.release_on(before)))

    def _visits(
        self, rng: random.Random, keen: float, signed_up: float, leaves: float
    ) -> list[tuple[int, float]]:
        """The days from the lead-in on that a user came, each with their first
        sighting: the day they signed up, then at their own rate, rarer at weekends,
        until they left."""
        end = min(self.now, leaves)
        visits = []
        day = max(self.first, int(signed_up))
        if day == int(signed_up) and signed_up < end:
            visits.append((day, signed_up))
            day += 1
        while True:
            day += int(math.log(1 - rng.random()) / math.log(1 - keen))  # days without one
            if day >= end:
                return visits
            if not self.weekend[day - self.first] or rng.random() < WEEKEND_VISITS:
                visits.append((day, day + min(1.0, end - day) * rng.uniform(0.25, 0.85)))
            day += 1


def _ordinal(moment: datetime) -> float:
    """A moment as a fractional day ordinal."""
    return moment.timestamp() / 86_400 + EPOCH


def _day(ordinal: int) -> str:
    return date.fromordinal(ordinal).isoformat()


def _stamp(ordinal: float, dialect: str) -> object:
    """A moment given as a fractional day ordinal, as the bulk loaders write it."""
    return common.stamp(datetime.fromtimestamp((ordinal - EPOCH) * 86_400, UTC), dialect)


def _version(releases: list[Release], index: int) -> str:
    """The version of release ``index``; before the first, the one users ran before."""
    return releases[index].version if index >= 0 else "0.9.0"


def load_receipts(
    cursor: Any,
    dialect: str,
    rng: random.Random,
    args: argparse.Namespace,
    releases: list[Release],
    drawn: Drawn,
    now: datetime,
) -> int:
    """Receipts, user by user (the table's key order): each user reads a share of the
    notes that came out while they used the product, up to their version, in the days
    after; one reader in fifty reacts. Returns how many reactions."""
    notes = [
        (note_id, _ordinal(published), index)
        for index, release in enumerate(releases)
        for note_id, published in zip(release.note_ids, release.published_at, strict=True)
    ]
    times = [moment for _, moment, _ in notes]
    firsts = [bisect.bisect_left(times, first) for first in drawn.first_seen]
    windows = []
    for number, first in enumerate(firsts):
        last = bisect.bisect_right(times, drawn.last_seen[number])
        release = drawn.release[number]
        while last > first and notes[last - 1][2] > release:
            last -= 1
        windows.append(max(0, last - first))
    share = min(1.0, args.receipts / max(1, sum(windows)))
    now_ordinal = _ordinal(now)
    reactions: list[tuple[object, ...]] = []

    def rows() -> Iterator[tuple[object, ...]]:
        for number, (first, window) in enumerate(zip(firsts, windows, strict=True)):
            expected = window * share
            count = min(window, max(0, round(rng.gauss(expected, math.sqrt(expected + 0.01)))))
            for index in sorted(rng.sample(range(first, first + window), count)):
                note_id, published, _ = notes[index]
                begin = max(published, drawn.first_seen[number])
                read = min(begin + rng.expovariate(1 / 3), drawn.last_seen[number], now_ordinal)
                at = _stamp(read, dialect)
                channel = rng.choices(CHANNELS, CHANNEL_WEIGHTS)[0]
                if rng.random() < REACTING:
                    reaction = rng.choice(["👍", "👍", "👍", "👎", "😕"])
                    reactions.append((number + 1, note_id, reaction, None, at, at))
                yield (number + 1, note_id, at, channel)

    common.load_read_receipts(cursor, dialect, rows())
    common.bulk_insert(
        cursor,
        dialect,
        "reaction",
        "end_user_id, note_id, reaction, comment, created_at, updated_at",
        reactions,
    )
    return len(reactions)


def load_subscribers(
    cursor: Any,
    dialect: str,
    rng: random.Random,
    product_id: int,
    releases: list[Release],
    now: datetime,
) -> int:
    """Subscribers who joined over the two years, a few gone since, and the important
    notes e-mailed to those there when each went out: most sent, some bounced. Returns
    how many messages."""
    start = datetime.combine(releases[0].day, datetime.min.time(), UTC)
    joined = sorted(start + (now - start) * rng.random() for _ in range(SUBSCRIBERS))
    left = [at + (now - at) * rng.random() if rng.random() < 0.1 else None for at in joined]
    subscribers = [
        (
            number,
            product_id,
            f"subscriber{number}@example.com",
            "unsubscribed" if left[number - 1] else "confirmed",
            "every",
            "[]",
            "en",
            0,
            secrets.token_urlsafe(16),
            common.stamp(joined[number - 1], dialect),
            common.stamp(joined[number - 1], dialect),
            None if left[number - 1] is None else common.stamp(left[number - 1], dialect),
        )
        for number in range(1, SUBSCRIBERS + 1)
    ]
    common.bulk_insert(
        cursor,
        dialect,
        "subscriber",
        "id, product_id, email, status, frequency, categories, locale, hard_bounces, "
        "link_key, created_at, confirmed_at, unsubscribed_at",
        subscribers,
    )
    if dialect != "sqlite":
        cursor.execute("SELECT setval('subscriber_id_seq', %s)", (SUBSCRIBERS,))
    messages = []
    count = 0
    for release in releases:
        for note_id, published in zip(release.note_ids, release.published_at, strict=True):
            count += 1
            if (count - 1) % IMPORTANT_EVERY:
                continue
            there = bisect.bisect_right(joined, published)
            for number in range(1, there + 1):
                gone = left[number - 1]
                if gone is not None and gone <= published:
                    continue
                failed = rng.random() < 0.02
                sent = published + timedelta(minutes=rng.uniform(1, 20))
                messages.append(
                    (
                        product_id,
                        number,
                        note_id,
                        "note",
                        "failed" if failed else "sent",
                        1,
                        common.stamp(published, dialect),
                        common.stamp(published, dialect),
                        None if failed else common.stamp(sent, dialect),
                    )
                )
    common.bulk_insert(
        cursor,
        dialect,
        "outbox_message",
        "product_id, subscriber_id, note_id, kind, status, attempts, created_at, "
        "next_attempt_at, sent_at",
        messages,
    )
    return len(messages)


def median_of(work: Callable[[], object]) -> float:
    return common.median_of(work, READ_CALLS)


def measure(url: str, folder: Path, now: datetime) -> None:
    """Count the roll-up, then time the pages and the API against the baseline."""
    app = common.make_app(url, folder)
    client = app.test_client()
    with app.app_context():
        session = db.session()
        product = session.scalars(select(Product).where(Product.slug == "bench")).one()
        took, rows = common.timed(
            lambda: rollups.rebuild(session, product, now=now, write_turn=write_turn)
        )
        session.commit()
        print(f"  roll-up rebuilt: {rows:,} rows in {took:.1f}s")
        _, key = apikeys.create(session, product, "bench", ["insights:read"], by=None, now=now)
        session.commit()
        notes = session.scalars(
            select(Note).where(Note.product_id == product.id).order_by(Note.published_at, Note.id)
        ).all()
        newest = next(note for note in notes if note.version == notes[-1].version)
        year_old = min(notes, key=lambda note: abs((now - note.published_at).days - 365))
        db.session.remove()
    client.post("/console/login", data={"email": "bench@example.com", "password": PASSWORD})

    def get(path: str, **headers: str) -> None:
        answer = client.get(path, headers=headers)
        if answer.status_code != 200:
            raise SystemExit(f"{path} answered {answer.status_code}")

    pages = [
        ("the console's notes list (baseline)", "/console/p/bench/notes", {}),
        ("product Insights", f"/console/p/bench/insights?by={SEGMENT}", {}),
        (
            f"note {newest.version} insights",
            f"/console/p/bench/notes/{newest.id}/insights?by={SEGMENT}",
            {},
        ),
        (
            f"note {year_old.version} insights ({(now - year_old.published_at).days} days old)",
            f"/console/p/bench/notes/{year_old.id}/insights?by={SEGMENT}",
            {},
        ),
        (
            f"API note {newest.version} insights",
            f"/api/v1/products/bench/notes/{newest.id}/insights?by={SEGMENT}",
            {"Authorization": f"Bearer {key}"},
        ),
    ]
    timings = []
    for _, path, headers in pages:
        get(path, **headers)  # once first: templates compiled, caches warm
        timings.append(median_of(lambda path=path, headers=headers: get(path, **headers)))
    baseline = timings[0]
    print(f"\n  each with ?by={SEGMENT}; the product page over its default range")
    print(f"  {'':44} {'median':>9}  {'/ baseline':>10}  under {BAR * 1000:.0f} ms")
    for (name, path, _), seconds in zip(pages, timings, strict=True):
        verdict = "" if path == pages[0][1] else ("yes" if seconds < BAR else "NO")
        print(f"  {name:44} {seconds * 1000:6.0f} ms  {seconds / baseline:9.2f}x  {verdict}")
    dispose(app)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_database_options(parser)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--receipts", type=int, default=10_000_000)
    parser.add_argument("--notes", type=int, default=200)
    parser.add_argument("--releases", type=int, default=50)
    parser.add_argument("--days", type=int, default=56, help="days of the widget's history")
    args = parser.parse_args()
    now = datetime.now(UTC)
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="tidings-insights-bench-") as scratch:
        folder = Path(scratch)

        def bench(url: str) -> None:
            seed(url, args, now)
            measure(url, folder, now)

        common.each_database(args, folder, bench)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
