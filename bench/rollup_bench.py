"""The daily roll-up catching up on a day: one ``rollups.refresh`` over a day of
1,000,000 new read receipts and the day's 1,000,000 end-user days, against a plain
COUNT(*) of the same receipts grouped by note, measured in the same run.

Seeds (bulk inserts: executemany on SQLite, COPY on PostgreSQL) a product with 200 notes
over 40 versions published over the last 200 days, the newest release in the afternoon
of the day counted, and 1,000,000 end users with a locale, a version and two attributes
(plan, country: four segments with the built-ins). Before that day: 1,000,000 older
receipts, counted by a rebuild whose watermark is the day's start. On the day: every
user seen once (most seen the day before, some after a longer gap, some new, some
upgrading to the new release after it came out) and 1,000,000 receipts, mostly of the
newest notes, in every channel. Then times one ``refresh`` up to the day's end: the
worker's run after a day it did not run (it runs every 10 minutes), on SQLite through the
app's write queue.

The bar: under a minute.

    .venv/bin/python bench/rollup_bench.py                              # SQLite, full size
    .venv/bin/python bench/rollup_bench.py --users 100000 --receipts 100000
    scripts/with-postgres.sh .venv/bin/python bench/rollup_bench.py     # and PostgreSQL

PostgreSQL comes from --postgres URL or TIDINGS_TEST_POSTGRES_URL; the bench makes a
database of its own on that server and drops it after.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from pathlib import Path

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import common  # noqa: E402

from announcements import accounts, rollups, services  # noqa: E402
from announcements.models import Product, Rollup  # noqa: E402
from announcements.services import Intent, NoteInput, ProductSettings  # noqa: E402
from app.database import dispose, write_turn  # noqa: E402
from app.extensions import db  # noqa: E402

PASSWORD = "bench password 1"  # noqa: S105 - a throw-away account
BAR_SECONDS = 60
VERSIONS = 40
LOCALES = ["en", "de", "fr", "es", "pt-BR", "ja", "it", "nl", "pl", "sv"]
PLANS = ["free", "pro", "team"]
COUNTRIES = ["us", "de", "fr", "gb", "br", "jp", "in", "es", "it", "nl", "ca", "au"]
CHANNELS = ["widget", "widget", "widget", "popup", "email", "feed", "help", "agent"]
BASELINE = (
    "SELECT note_id, count(*) FROM read_receipt"
    " WHERE read_at > :since AND read_at <= :until GROUP BY note_id"
)
BASELINE_CALLS = 5


def at(day: date, hours: float = 0) -> datetime:
    return datetime.combine(day, clock(), tzinfo=UTC) + timedelta(hours=hours)


def seed(url: str, args: argparse.Namespace, day: date) -> None:
    """Create the schema and fill it; print how long each part took."""
    engine = common.empty_schema(url)
    dialect = engine.dialect.name
    rng = random.Random(16)
    started = time.perf_counter()
    versions = [f"1.{number}.0" for number in range(VERSIONS)]
    per_version = args.notes // VERSIONS
    with Session(engine) as session:
        owner = accounts.create_member(session, "bench@example.com", PASSWORD)
        product = services.create_product(
            session, ProductSettings(name="Bench", slug="bench"), by=owner, now=at(day, -5000)
        )
        published = []
        for number in range(args.notes):
            release = min(number // per_version, VERSIONS - 1)
            # A release every five days; the newest at 14:00 on the day counted.
            published.append(
                at(day, 14)
                - timedelta(days=5 * (VERSIONS - 1 - release))
                + timedelta(minutes=number % per_version)
            )
            services.create_note(
                session,
                product,
                NoteInput(
                    version=versions[release],
                    title=f"Release note {number}",
                    category="Added",
                    body_md="Something new.",
                ),
                intent=Intent.PUBLISH,
                by=owner,
                now=published[-1],
            )
        session.commit()
        product_id = product.id
        note_ids = [
            note_id
            for (note_id,) in session.execute(text("SELECT id FROM note ORDER BY published_at, id"))
        ]
    print(f"  {args.notes} notes over {VERSIONS} versions in {time.perf_counter() - started:.1f}s")

    newest, previous = versions[-1], versions[-2]
    weights = [1 + number for number in range(VERSIONS - 1)]
    # Each user's version before the day, and whether they are new that day.
    before = [rng.choices(versions[:-1], weights=weights)[0] for _ in range(args.users)]
    new_users = {number for number in range(args.users) if rng.random() < 0.03}

    def user_rows() -> Iterator[tuple[object, ...]]:
        for number in range(args.users):
            version = before[number]
            if version == previous and rng.random() < 0.3:
                version = newest
            first = at(day, rng.uniform(0, 24)) if number in new_users else at(day, -24 * 300)
            attributes = {"plan": rng.choice(PLANS), "country": rng.choice(COUNTRIES)}
            yield (
                number + 1,
                product_id,
                f"user-{number}",
                json.dumps(attributes),
                rng.choice(LOCALES),
                version,
                common.stamp(first, dialect),
                common.stamp(at(day, 23), dialect),
            )

    def day_rows() -> list[tuple[object, ...]]:
        """The day's rows, in the order the widget writes them: by time."""
        upgraded, rows = at(day, 14), []
        for number in range(args.users):
            seen = at(day, rng.uniform(0, 24))
            version = before[number]
            if version == previous and seen > upgraded and rng.random() < 0.3:
                version = newest
            if number in new_users:
                previous_day, previous_version = None, None
            else:
                gap = 1 if rng.random() < 0.9 else rng.randint(2, 40)
                previous_day, previous_version = day - timedelta(days=gap), before[number]
            rows.append(
                (
                    number + 1,
                    day.isoformat(),
                    product_id,
                    common.stamp(seen, dialect),
                    version,
                    previous_day.isoformat() if previous_day else None,
                    previous_version,
                )
            )
        return sorted(rows, key=lambda row: row[3])

    # Receipts: one a user of the older notes before the day, one of the newest 20 on
    # it; never the same pair twice.
    old_notes, new_notes = note_ids[:-20], note_ids[-20:]

    def receipt_rows() -> list[tuple[object, ...]]:
        """The receipts, by time as they are written."""
        rows = []
        for number in range(args.old_receipts):
            user = number % args.users + 1
            index = (number // args.users + user) % len(old_notes)
            note = old_notes[index]
            # Read in the days after it came out, as notes are.
            read_at = min(published[index] + timedelta(days=rng.expovariate(1 / 2)), at(day, -1))
            rows.append((user, note, common.stamp(read_at, dialect), rng.choice(CHANNELS)))
        for number in range(args.receipts):
            user = number % args.users + 1
            note = new_notes[(number // args.users + user) % len(new_notes)]
            read_at = at(day, rng.uniform(0, 24))
            rows.append((user, note, common.stamp(read_at, dialect), rng.choice(CHANNELS)))
        return sorted(rows, key=lambda row: row[2])

    user_columns = (
        "id, product_id, external_id, attributes, locale, app_version, first_seen_at, last_seen_at"
    )
    day_columns = (
        "end_user_id, day, product_id, seen_at, app_version, previous_day, previous_version"
    )
    started = time.perf_counter()
    with common.bulk_load(engine) as (raw, cursor):
        common.load_end_users(cursor, dialect, user_columns, user_rows(), args.users)
        raw.commit()
        print(f"  {args.users:,} end users in {time.perf_counter() - started:.1f}s")
        started = time.perf_counter()
        common.bulk_insert(cursor, dialect, "end_user_day", day_columns, day_rows())
        raw.commit()
        print(f"  the day's end-user days in {time.perf_counter() - started:.1f}s")
        started = time.perf_counter()
        common.load_read_receipts(cursor, dialect, receipt_rows())
        raw.commit()
        print(f"  read receipts in {time.perf_counter() - started:.1f}s")
        counts = [
            cursor.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608
            for table in ("end_user", "end_user_day", "read_receipt")
        ]
        print("  rows: {:,} end users, {:,} end-user days, {:,} read receipts".format(*counts))
    engine.dispose()


def measure(url: str, folder: Path, day: date) -> None:
    app = common.make_app(url, folder)
    since, until = at(day), at(day, 24)
    with app.app_context():
        session = db.session()
        product = session.scalars(select(Product).where(Product.slug == "bench")).one()
        started = time.perf_counter()
        rollups.rebuild(session, product, now=since + rollups.LAG, write_turn=write_turn)
        print(
            f"  rebuild of the days before (untimed part) in {time.perf_counter() - started:.1f}s"
        )
        if rollups.counted_until(session, product) != since:
            raise SystemExit("the rebuild did not count up to the day")
        window = {"since": since, "until": until}
        if session.get_bind().dialect.name == "sqlite":
            window = {name: common.stamp(moment, "sqlite") for name, moment in window.items()}

        baseline_seconds = common.median_of(
            lambda: session.execute(text(BASELINE), window).all(), BASELINE_CALLS
        )
        refresh_seconds, rows = common.timed(
            lambda: rollups.refresh(
                session, product, now=until + rollups.LAG, write_turn=write_turn
            )
        )
        read = session.scalar(
            select(func.sum(Rollup.count)).where(
                Rollup.product_id == product.id,
                Rollup.metric == "read",
                Rollup.dimension == "",
                Rollup.day == day,
            )
        )
        active = session.scalar(
            select(func.sum(Rollup.count)).where(
                Rollup.product_id == product.id,
                Rollup.metric == "active",
                Rollup.dimension == "",
                Rollup.day == day,
            )
        )
        segments = rollups.segments(session, product)
        db.session.remove()

    def line(name: str, seconds: float) -> None:
        print(f"  {name:52} {seconds:8.2f} s  {seconds / baseline_seconds:8.1f}x")

    print(f"\n  {'':52} {'time':>10}  {'/ baseline':>9}")
    line("baseline: COUNT(*) of the day's receipts by note", baseline_seconds)
    line(f"refresh: the day caught up ({rows:,} rows written)", refresh_seconds)
    print(f"  counted: {read:,} receipts, {active:,} active users; segments: {', '.join(segments)}")
    verdict = "yes" if refresh_seconds < BAR_SECONDS else "NO"
    print(f"  the day caught up in under {BAR_SECONDS} s: {verdict}")
    dispose(app)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_database_options(parser)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--receipts", type=int, default=1_000_000, help="on the day")
    parser.add_argument("--old-receipts", type=int, default=1_000_000, help="before it")
    parser.add_argument("--notes", type=int, default=200)
    args = parser.parse_args()
    # Yesterday, so that every row is in the past.
    day = datetime.now(UTC).date() - timedelta(days=1)
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="tidings-rollup-bench-") as scratch:
        folder = Path(scratch)

        def bench(url: str) -> None:
            seed(url, args, day)
            measure(url, folder, day)

        common.each_database(args, folder, bench)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
