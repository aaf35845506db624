"""Importing ticket history from CSV at size: a Zendesk-shaped export through
``ticket_import.import_tickets``, against a plain executemany insert of the same rows
measured in the same run.

Seeds a product with 10,000 end users (each with a keyed address, as the widget stores it),
writes a Zendesk ticket export of 20,000 rows (the real header list from
../shared/testdata/support/csv-headers when it is there, else the columns the import
reads; requesters by external id and address, by address only, or unknown), then times:

- the first import (every row new);
- the same file again (every row unchanged);
- the file with every tenth row's tags edited (a tenth updated, the rest unchanged).

Each is printed in rows per second beside the baseline, an executemany of the same rows
into a scratch table with the ticket table's columns and one commit: the cost of writing
the rows with nothing decided about them.

    .venv/bin/python bench/ticket_import_bench.py
    .venv/bin/python bench/ticket_import_bench.py --rows 100000
    PG_DURABLE=1 scripts/with-postgres.sh .venv/bin/python bench/ticket_import_bench.py

PostgreSQL comes from --postgres URL or TIDINGS_TEST_POSTGRES_URL; the bench makes a
database of its own on that server and drops it after.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, insert, select, text
from sqlalchemy.orm import Session

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import common  # noqa: E402

from announcements import accounts, services, ticket_import, tickets  # noqa: E402
from announcements.models import EndUser, Product, Ticket  # noqa: E402
from announcements.services import ProductSettings  # noqa: E402
from app.database import dispose  # noqa: E402
from app.extensions import db  # noqa: E402

HEADERS = ROOT.parent / "shared" / "testdata" / "support" / "csv-headers"
# The columns the import reads from a Zendesk export, when the real list is absent.
ZENDESK_COLUMNS = [
    "Id",
    "Requester",
    "Requester id",
    "Requester external id",
    "Requester email",
    "Subject",
    "Tags",
    "Created at",
]
TAGS = ["export", "billing", "sync", "login", "bug", "question", "feature_request"]
SUBJECTS = ["Export fails", "Cannot log in", "Invoice is wrong", "Sync stuck", "How do I…"]


def zendesk_headers() -> list[str]:
    path = HEADERS / "zendesk-ticket-csv-export.headers.txt"
    if not path.exists():
        return ZENDESK_COLUMNS
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def export(rows: int, users: int, now: datetime, *, edited_every: int = 0) -> bytes:
    """A Zendesk export of ``rows`` tickets over the last 200 days; with ``edited_every``,
    that share of rows carries one more tag."""
    rng = random.Random(14)
    headers = zendesk_headers()
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(headers)
    for number in range(1, rows + 1):
        user = rng.randint(1, users)
        kind = rng.random()
        tags = rng.sample(TAGS, rng.randint(0, 3))
        if edited_every and number % edited_every == 0:
            tags.append("edited")
        created = now - timedelta(days=rng.uniform(1, 200))
        cells = {
            "Id": str(100_000 + number),
            "Requester": f"Customer {user}",
            "Requester id": str(900_000 + user),
            # Most desks send both, some only the address, a few people the app never saw.
            "Requester external id": f"user-{user}" if kind < 0.6 else "",
            "Requester email": f"user{user}@example.com"
            if kind < 0.9
            else f"x{number}@elsewhere.example.org",
            "Subject": rng.choice(SUBJECTS),
            "Tags": " ".join(tags),
            "Created at": created.strftime("%Y-%m-%d %H:%M:%S +0000"),
        }
        writer.writerow([cells.get(header, "") for header in headers])
    return out.getvalue().encode()


def seed(url: str, users: int, now: datetime) -> None:
    engine = common.empty_schema(url)
    with Session(engine) as session:
        owner = accounts.create_member(session, "bench@example.com", "bench password 1")
        product = services.create_product(
            session, ProductSettings(name="Bench", slug="bench"), by=owner, now=now
        )
        session.execute(
            insert(EndUser),
            [
                {
                    "product_id": product.id,
                    "external_id": f"user-{number}",
                    "email_key": tickets.email_key(common.SECRET_KEY, f"user{number}@example.com"),
                    "first_seen_at": now,
                    "last_seen_at": now,
                }
                for number in range(1, users + 1)
            ],
        )
        session.commit()
    engine.dispose()


def baseline(session: Session, data: bytes, now: datetime) -> float:
    """Seconds to executemany the file's rows, read with csv and nothing else, into a
    scratch table shaped like ``ticket``, and commit."""
    connection = session.connection()
    connection.execute(text("DROP TABLE IF EXISTS scratch_ticket"))
    connection.execute(text("CREATE TABLE scratch_ticket AS SELECT * FROM ticket WHERE 1 = 0"))
    session.commit()
    reader = csv.DictReader(io.StringIO(data.decode(), newline=""))
    product_id = session.scalar(select(Product.id))
    rows = [
        {
            "id": number,
            "product_id": product_id,
            "source": "zendesk",
            "external_id": row["Id"],
            "created_at": now,
            "received_at": now,
            "updated_at": now,
            "requester_external_id": row["Requester external id"] or None,
            "requester_key": row["Requester email"],
            "tags": "[]",
            "tag_text": "|" + row["Tags"].replace(" ", "|") + "|",
            "subject": row["Subject"],
            "subject_key": row["Subject"].casefold(),
        }
        for number, row in enumerate(reader, start=1)
    ]
    names = list(rows[0])
    statement = text(
        f"INSERT INTO scratch_ticket ({', '.join(names)}) "
        f"VALUES ({', '.join(':' + name for name in names)})"
    )
    started = time.perf_counter()
    session.execute(statement, rows)
    session.commit()
    took = time.perf_counter() - started
    session.execute(text("DROP TABLE scratch_ticket"))
    session.commit()
    return took


def measure(url: str, folder: Path, args: argparse.Namespace, now: datetime) -> None:
    seed(url, args.users, now)
    app = common.make_app(url, folder)
    fresh = export(args.rows, args.users, now)
    edited = export(args.rows, args.users, now, edited_every=10)
    with app.app_context():
        session = db.session()
        product = session.scalars(select(Product).where(Product.slug == "bench")).one()
        plain = baseline(session, fresh, now)

        def run(data: bytes) -> Callable[[], ticket_import.Report]:
            return lambda: ticket_import.import_tickets(
                session,
                product,
                ticket_import.read_csv(data),
                secret_key=common.SECRET_KEY,
                now=now,
            )

        print(f"\n  {'':34} {'time':>8} {'rows/s':>9} {'baseline / this':>16}  outcome")
        print(f"  {'baseline: executemany, one commit':34} {plain:7.2f}s {args.rows / plain:9,.0f}")
        for name, work in (
            ("import, every row new", run(fresh)),
            ("again, every row unchanged", run(fresh)),
            ("again, a tenth edited", run(edited)),
        ):
            started = time.perf_counter()
            report = work()
            took = time.perf_counter() - started
            print(
                f"  {name:34} {took:7.2f}s {args.rows / took:9,.0f} {plain / took:15.3f}x"
                f"  {report.summary}"
            )
        matched = session.scalar(
            select(func.count()).select_from(Ticket).where(Ticket.end_user_id.is_not(None))
        )
        print(f"  tickets matched to a user: {matched:,} of {args.rows:,}")
        db.session.remove()
    dispose(app)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_database_options(parser)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=10_000)
    args = parser.parse_args()
    now = datetime.now(UTC)
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    print(f"{args.rows:,} rows, {args.users:,} end users, batches of {ticket_import.BATCH_ROWS}")
    with tempfile.TemporaryDirectory(prefix="tidings-import-bench-") as scratch:
        folder = Path(scratch)
        common.each_database(args, folder, lambda url: measure(url, folder, args, now))
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
