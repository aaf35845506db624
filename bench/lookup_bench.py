"""Looking one end user up among a million: the support lookup against the widget's own
GET notes for the same user, measured in the same run.

Seeds what the widget benchmark seeds (``widget_bench.seed``: a product with 200 notes
over 40 versions, 1,000,000 end users, 10,000,000 read receipts), then what a lookup
reads besides: 200,000 tickets, 100,000 subscribers linked to users, 100,000 reactions
and 20,000 notes sent by agents, spread over random users. Then, for a sample of random
users, through the Flask test client (no network, one process), times:

- the baseline: GET /api/v1/widget/<key>/notes for that user, with a valid hash;
- ``lookup.profile`` alone;
- GET /api/v1/products/bench/end-users/<external_id> (scope support:read);
- the console's page for the user, Support → Look up.

Prints each one's median and slowest call in milliseconds and its ratio to the baseline;
the target is the console page and the API under 100 ms.

    .venv/bin/python bench/lookup_bench.py                                   # SQLite, full size
    .venv/bin/python bench/lookup_bench.py --users 100000 --receipts 1000000
    scripts/with-postgres.sh .venv/bin/python bench/lookup_bench.py --db both

PostgreSQL comes from --postgres URL or TIDINGS_TEST_POSTGRES_URL; the bench makes a
database of its own on that server and drops it after.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import common  # noqa: E402
import widget_bench  # noqa: E402

from announcements import accounts, apikeys, lookup, services  # noqa: E402
from announcements.models import EndUser, Product, Role, utcnow  # noqa: E402
from app.database import dispose  # noqa: E402
from app.extensions import db  # noqa: E402

PASSWORD = "bench password 1"  # noqa: S105 - a throw-away account
TAGS = ["export", "billing", "sync", "login", "bug"]
REACTIONS = ["👍", "👎", "😕"]


def seed_support(url: str, seeded: widget_bench.Seeded, args: argparse.Namespace) -> None:
    """What a lookup reads beyond the widget's tables, for random users; and an agent."""
    engine = create_engine(url)
    dialect = engine.dialect.name
    now = datetime.now(UTC)
    rng = random.Random(15)
    with Session(engine) as session:
        product = session.scalars(select(Product).where(Product.slug == "bench")).one()
        product_id = product.id
        agent = accounts.create_member(session, "agent@example.com", PASSWORD)
        services.set_role(session, product, agent, Role.VIEWER, by=None, now=now)
        session.commit()

    def moment(days: float) -> object:
        return common.stamp(now - timedelta(days=days), dialect)

    def ticket_rows() -> Iterator[tuple[object, ...]]:
        for number in range(1, args.tickets + 1):
            user = rng.randint(1, args.users)
            tags = rng.sample(TAGS, rng.randint(0, 2))
            created = moment(rng.uniform(0, 300))
            yield (
                product_id,
                "bench",
                f"t{number}",
                created,
                created,
                created,
                user,
                f"user-{user}",
                json.dumps(tags),
                "|" + "".join(f"{tag}|" for tag in tags),
                "",
                f"Question {number}",
            )

    def subscriber_rows() -> Iterator[tuple[object, ...]]:
        for number, user in enumerate(rng.sample(range(1, args.users + 1), args.subscribers)):
            yield (
                product_id,
                f"reader{number}@example.com",
                "confirmed",
                "every",
                "[]",
                user,
                0,
                f"key{number}",
                moment(100),
            )

    def reaction_rows() -> Iterator[tuple[object, ...]]:
        pairs = {
            (rng.randint(1, args.users), rng.choice(seeded.note_ids)) for _ in range(args.reactions)
        }
        for user, note_id in sorted(pairs):
            yield (user, note_id, rng.choice(REACTIONS), "A comment", moment(3), moment(3))

    def send_rows() -> Iterator[tuple[object, ...]]:
        for _ in range(args.sends):
            yield (
                product_id,
                rng.choice(seeded.note_ids),
                rng.randint(1, args.users),
                "Dana",
                "console",
                moment(rng.uniform(0, 30)),
                1 if dialect == "sqlite" else True,
            )

    loads = [
        (
            "ticket",
            "product_id, source, external_id, created_at, received_at, updated_at, "
            "end_user_id, requester_external_id, tags, tag_text, subject_key, subject",
            ticket_rows,
        ),
        (
            "subscriber",
            "product_id, email, status, frequency, categories, end_user_id, hard_bounces, "
            "link_key, created_at",
            subscriber_rows,
        ),
        (
            "reaction",
            "end_user_id, note_id, reaction, comment, created_at, updated_at",
            reaction_rows,
        ),
        (
            "agent_send",
            "product_id, note_id, end_user_id, agent, via, sent_at, emailed",
            send_rows,
        ),
    ]
    started = time.perf_counter()
    with common.bulk_load(engine) as (raw, cursor):
        for table, columns, rows in loads:
            common.bulk_insert(cursor, dialect, table, columns, rows())
            raw.commit()
        counts = [
            cursor.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608
            for table, _, _ in loads
        ]
    engine.dispose()
    print(
        "  {:,} tickets, {:,} subscribers, {:,} reactions, {:,} agent sends".format(*counts)
        + f" in {time.perf_counter() - started:.1f}s"
    )


def measure(url: str, seeded: widget_bench.Seeded, args: argparse.Namespace, folder: Path) -> None:
    app = common.make_app(url, folder)
    client = app.test_client()
    rng = random.Random(16)
    numbers = rng.sample(range(1, args.users + 1), args.sample)
    with app.app_context():
        session = db.session()
        product = session.scalars(select(Product).where(Product.slug == "bench")).one()
        _, key = apikeys.create(session, product, "bench", ["support:read"], by=None, now=utcnow())
        session.commit()
        ids = dict(
            session.execute(
                select(EndUser.external_id, EndUser.id).where(
                    EndUser.external_id.in_([f"user-{n}" for n in numbers])
                )
            ).all()
        )
        db.session.remove()
    client.post("/console/login", data={"email": "agent@example.com", "password": PASSWORD})
    api_headers = {"Authorization": f"Bearer {key}"}

    def get(path: str, **headers: str) -> None:
        answer = client.get(path, headers=headers)
        if answer.status_code != 200:
            raise SystemExit(f"{path} answered {answer.status_code}")

    def widget(number: int) -> None:
        user_id = f"user-{number}"
        user_hash = hmac.new(seeded.secret.encode(), user_id.encode(), hashlib.sha256)
        plan = widget_bench.PLANS[number % len(widget_bench.PLANS)]
        get(
            f"/api/v1/widget/{seeded.widget_key}/notes?user_id={user_id}"
            f"&user_hash={user_hash.hexdigest()}&version={seeded.latest_version}&attr.plan={plan}"
        )

    def profile(number: int) -> None:
        with app.app_context():
            session = db.session()
            product = session.scalars(select(Product).where(Product.slug == "bench")).one()
            user = session.get_one(EndUser, ids[f"user-{number}"])
            found = lookup.profile(session, product, user, now=utcnow())
            if not found.notes:
                raise SystemExit(f"user-{number}'s lookup listed no note")
            db.session.remove()

    scenarios: dict[str, Callable[[int], None]] = {
        "baseline: widget GET notes": widget,
        "lookup.profile": profile,
        "API GET end-users/<id>": lambda n: get(
            f"/api/v1/products/bench/end-users/user-{n}", **api_headers
        ),
        "console user page": lambda n: get(f"/console/p/bench/support/users/{ids[f'user-{n}']}"),
    }
    for work in scenarios.values():  # warm the catalogue, the pools and the templates
        work(numbers[0])
    times: dict[str, list[float]] = {name: [] for name in scenarios}
    for _ in range(args.rounds):
        for number in numbers:
            for name, work in scenarios.items():
                times[name].append(common.timed(lambda: work(number))[0])  # noqa: B023 - called at once
    baseline = statistics.median(times["baseline: widget GET notes"])
    print(
        f"\n  {len(numbers)} random users x {args.rounds} rounds"
        f"\n  {'':30} {'median ms':>10} {'slowest ms':>11} {'/ baseline':>11}"
    )
    for name, found in times.items():
        median = statistics.median(found)
        print(
            f"  {name:30} {median * 1000:>10.1f} {max(found) * 1000:>11.1f} "
            f"{median / baseline:>10.1f}x"
        )
    worst = max(
        statistics.median(times[n]) for n in ("API GET end-users/<id>", "console user page")
    )
    print(f"  console page and API under 100 ms (median): {'yes' if worst < 0.1 else 'NO'}")
    dispose(app)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_database_options(parser)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--receipts", type=int, default=10_000_000)
    parser.add_argument("--notes", type=int, default=200)
    parser.add_argument("--versions", type=int, default=40)
    parser.add_argument("--tickets", type=int, default=200_000)
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--reactions", type=int, default=100_000)
    parser.add_argument("--sends", type=int, default=20_000)
    parser.add_argument("--sample", type=int, default=20, help="random users looked up")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="tidings-lookup-bench-") as scratch:
        folder = Path(scratch)

        def bench(url: str) -> None:
            seeded = widget_bench.seed(url, args.users, args.receipts, args.notes, args.versions)
            seed_support(url, seeded, args)
            measure(url, seeded, args, folder)

        common.each_database(args, folder, bench)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
