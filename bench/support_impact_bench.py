"""Support impact at size: the worker's roll-up and the page's read path, against a
COUNT(*) over the read receipts measured in the same run.

Seeds a product with 1,000,000 end users, 10,000,000 read receipts and 200,000 tickets
(bulk inserts: executemany on SQLite, COPY on PostgreSQL), 40 published notes over 10
versions with support topics and a 20 % hold-back on the newest release's first note,
then times:

- ``refresh``, the roll-up the worker runs hourly: first cold (it matches the waiting
  tickets and records a million hold-back groups), then again as every hour after;
- the read path: ``report`` alone, the API's GET support-impact, and the console's
  Support impact page through the Flask test client, each the median of several calls.

Each figure is printed with its ratio to the baseline, one read of every receipt (a
COUNT(*) that must visit each row). The target: the page in under 2 s.

    .venv/bin/python bench/support_impact_bench.py                      # full size
    .venv/bin/python bench/support_impact_bench.py --users 100000 --receipts 1000000 \\
        --tickets 20000
    scripts/with-postgres.sh .venv/bin/python bench/support_impact_bench.py   # and PostgreSQL

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
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select, text
from sqlalchemy.orm import Session

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import common  # noqa: E402

from announcements import accounts, apikeys, services, support_impact  # noqa: E402
from announcements.models import Note, Product  # noqa: E402
from announcements.services import Intent, NoteInput, ProductSettings  # noqa: E402
from app.database import dispose, write_turn  # noqa: E402
from app.extensions import db  # noqa: E402

PASSWORD = "bench password 1"  # noqa: S105 - a throw-away account
TOPICS = [["export"], ["billing"], [], ["sync", "login"]]
TAGS = ["export", "billing", "sync", "login", "bug", "question", "feature-request"]
READ_CALLS = 5
# The baseline reads every receipt row: a bare COUNT(*) is answered from the page counts of
# SQLite's smallest index without reading a row, which measures nothing a page does.
BASELINE = "SELECT count(*) FROM read_receipt WHERE read_at IS NOT NULL"


def seed(url: str, args: argparse.Namespace, now: datetime) -> None:
    """Create the schema and fill it; print how long each part took."""
    engine = common.empty_schema(url)
    dialect = engine.dialect.name
    rng = random.Random(14)
    started = time.perf_counter()
    release_versions = [f"1.{number}.0" for number in range(args.versions)]
    per_version = max(1, args.notes // args.versions)
    with Session(engine) as session:
        owner = accounts.create_member(session, "bench@example.com", PASSWORD)
        product = services.create_product(
            session, ProductSettings(name="Bench", slug="bench"), by=owner, now=now
        )
        # A release every three weeks, the newest ten days ago: its window still runs.
        for number in range(args.notes):
            version_number = min(number // per_version, args.versions - 1)
            published = now - timedelta(days=10 + 21 * (args.versions - 1 - version_number))
            note = services.create_note(
                session,
                product,
                NoteInput(
                    version=release_versions[version_number],
                    title=f"Release note {number}",
                    category="Added",
                    body_md="Something new.",
                ),
                intent=Intent.PUBLISH,
                by=owner,
                now=published + timedelta(hours=number % per_version),
            )
            note.support_topics = TOPICS[number % len(TOPICS)]
        newest = session.scalars(
            select(Note).where(Note.version == release_versions[-1]).order_by(Note.id)
        ).first()
        if newest is None:
            raise SystemExit("no note in the newest version")
        newest.holdback_percent = 20
        session.commit()
        product_id = product.id
        note_ids = list(session.scalars(select(Note.id).order_by(Note.id)))
    took = time.perf_counter() - started
    print(f"  {args.notes} notes over {args.versions} versions in {took:.1f}s")

    # Users on a spread of versions (newer ones commoner), a tenth on none the host said;
    # most seen in the last weeks, some long gone.
    weights = [1 + number for number in range(args.versions)]

    def user_rows() -> Iterator[tuple[object, ...]]:
        for number in range(1, args.users + 1):
            first = now - timedelta(days=rng.uniform(0, 400))
            last = max(first, now - timedelta(days=rng.expovariate(1 / 30)))
            version = (
                None if rng.random() < 0.1 else rng.choices(release_versions, weights=weights)[0]
            )
            yield (
                number,
                product_id,
                f"user-{number}",
                "{}",
                version,
                common.stamp(first, dialect),
                common.stamp(last, dialect),
            )

    per_user = args.receipts / args.users
    read_at = common.stamp(now - timedelta(days=1), dialect)

    def receipt_rows() -> Iterator[tuple[object, ...]]:
        for number in range(1, args.users + 1):
            count = min(len(note_ids), int(rng.random() * 2 * per_user + 0.5))
            for note_id in sorted(rng.sample(note_ids, count)):
                yield (number, note_id, read_at, "widget")

    def ticket_rows() -> Iterator[tuple[object, ...]]:
        for number in range(1, args.tickets + 1):
            created = now - timedelta(days=rng.uniform(0, 230))
            user = rng.randint(1, args.users)
            kind = rng.random()
            # Most matched on arrival; some waiting for the roll-up to match them; some
            # from people the widget never saw.
            end_user_id = user if kind < 0.85 else None
            requester = f"user-{user}" if kind < 0.9 else f"ghost-{number}"
            tags = rng.sample(TAGS, rng.randint(0, 2))
            yield (
                product_id,
                "bench",
                f"t{number}",
                common.stamp(created, dialect),
                common.stamp(created, dialect),
                common.stamp(created, dialect),
                end_user_id,
                requester,
                json.dumps(tags),
                "|" + "".join(f"{tag}|" for tag in tags),
                "",
            )

    user_columns = (
        "id, product_id, external_id, attributes, app_version, first_seen_at, last_seen_at"
    )
    ticket_columns = (
        "product_id, source, external_id, created_at, received_at, updated_at, end_user_id, "
        "requester_external_id, tags, tag_text, subject_key"
    )
    started = time.perf_counter()
    with common.bulk_load(engine) as (raw, cursor):
        common.load_end_users(cursor, dialect, user_columns, user_rows(), args.users)
        raw.commit()
        print(f"  {args.users:,} end users in {time.perf_counter() - started:.1f}s")
        started = time.perf_counter()
        common.load_read_receipts(cursor, dialect, receipt_rows())
        raw.commit()
        print(f"  read receipts in {time.perf_counter() - started:.1f}s")
        started = time.perf_counter()
        common.bulk_insert(cursor, dialect, "ticket", ticket_columns, ticket_rows())
        raw.commit()
        print(f"  {args.tickets:,} tickets in {time.perf_counter() - started:.1f}s")
        counts = [
            cursor.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("end_user", "read_receipt", "ticket")
        ]
        print("  rows: {:,} end users, {:,} read receipts, {:,} tickets".format(*counts))
    engine.dispose()


def median_of(work: Callable[[], object]) -> float:
    return common.median_of(work, READ_CALLS)


def measure(url: str, folder: Path, now: datetime) -> None:
    app = common.make_app(url, folder)
    client = app.test_client()
    with app.app_context():
        session = db.session()
        product = session.scalars(select(Product).where(Product.slug == "bench")).one()
        _, key = apikeys.create(session, product, "bench", ["insights:read"], by=None, now=now)
        baseline = median_of(lambda: session.execute(text(BASELINE)).scalar())
        cold, rows = common.timed(
            lambda: support_impact.refresh(session, product, now=now, write_turn=write_turn)
        )
        warm, _ = common.timed(
            lambda: support_impact.refresh(session, product, now=now, write_turn=write_turn)
        )
        read = median_of(lambda: support_impact.report(session, product))
        newest = support_impact.report(session, product)[0].figures
        db.session.remove()
    client.post("/console/login", data={"email": "bench@example.com", "password": PASSWORD})

    def get(path: str, **headers: str) -> None:
        answer = client.get(path, headers=headers)
        if answer.status_code != 200:
            raise SystemExit(f"{path} answered {answer.status_code}")

    api = median_of(
        lambda: get("/api/v1/products/bench/support-impact", Authorization=f"Bearer {key}")
    )
    page_path = "/console/p/bench/support/impact"
    page = (
        median_of(lambda: get(page_path))
        if "console.support_impact" in app.view_functions
        else None
    )

    def line(name: str, seconds: float) -> None:
        print(f"  {name:44} {seconds:9.3f} s  {seconds / baseline:9.3g}x")

    print(f"\n  {'':44} {'time':>11}  {'/ baseline':>10}")
    line("baseline: one read of every receipt", baseline)
    line(f"refresh, first run ({rows} rows)", cold)
    line("refresh, every hour after", warm)
    line("report (the roll-up read)", read)
    line("GET /api/v1/products/bench/support-impact", api)
    if page is None:
        print("  the console's Support impact page is not in this app")
    else:
        line(f"GET {page_path}", page)
        print(f"  page under 2 s: {'yes' if page < 2 else 'NO'}")
    print(
        f"\n  newest release {newest['version']}: {newest['exposed']:,} exposed, "
        f"{newest['readers']:,} readers, {newest['tickets_readers']:,} + "
        f"{newest['tickets_non_readers']:,} tickets, {newest['unmatched_tickets']:,} unmatched. "
        f"{newest['verdict']}"
    )
    dispose(app)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_database_options(parser)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--receipts", type=int, default=10_000_000)
    parser.add_argument("--tickets", type=int, default=200_000)
    parser.add_argument("--notes", type=int, default=40)
    parser.add_argument("--versions", type=int, default=10)
    args = parser.parse_args()
    now = datetime.now(UTC)
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="tidings-impact-bench-") as scratch:
        folder = Path(scratch)

        def bench(url: str) -> None:
            seed(url, args, now)
            measure(url, folder, now)

        common.each_database(args, folder, bench)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
