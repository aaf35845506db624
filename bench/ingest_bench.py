"""A burst of help-desk deliveries through a real server, counted: none may be lost.

Creates an empty database with one product and a Help Scout connection, serves the app
with gunicorn on loopback (rate limits on, as in production), and sends N signed
``convo.created`` deliveries (default 1,000), each a different ticket, from several
client threads as fast as the server answers. Then counts the rows stored. Beside it,
in the same run, the same clients send as many requests to a bare endpoint returning
constant JSON under the same server: the baseline the delivery rate is a ratio of.

Prints deliveries/s, the baseline's requests/s, their ratio, the answers by status and
``lost`` (deliveries sent minus tickets stored), for SQLite and for PostgreSQL.

    .venv/bin/python bench/ingest_bench.py --db sqlite
    scripts/with-postgres.sh .venv/bin/python bench/ingest_bench.py --db both
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import http.client
import json
import os
import secrets
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import common  # noqa: E402

from announcements import accounts, services, support_desks  # noqa: E402
from announcements.models import SupportConnection, SupportDesk, Ticket  # noqa: E402
from announcements.services import ProductSettings  # noqa: E402


def seed(url: str) -> SupportConnection:
    """An empty schema, a product and its Help Scout connection."""
    engine = common.empty_schema(url)
    with Session(engine, expire_on_commit=False) as session:
        owner = accounts.create_member(session, "bench@example.com", secrets.token_hex(8))
        now = datetime.now(UTC)
        product = services.create_product(
            session, ProductSettings(name="Bench", slug="bench"), by=owner, now=now
        )
        connection = support_desks.connect(session, product, SupportDesk.HELPSCOUT, now=now)
        session.commit()
    engine.dispose()
    return connection


def stored(url: str) -> int:
    engine = create_engine(url)
    with engine.connect() as connection:
        found = connection.scalar(select(func.count()).select_from(Ticket))
    engine.dispose()
    return int(found or 0)


Request = tuple[str, str, bytes, dict[str, str]]


def delivery(connection: SupportConnection, number: int) -> Request:
    """A signed Help Scout delivery of ticket ``number``."""
    body = json.dumps(
        {
            "id": 100_000 + number,
            "createdAt": "2026-01-05T10:00:00Z",
            "primaryCustomer": {"email": f"user{number}@example.com"},
            "tags": ["export"] if number % 3 == 0 else ["billing"],
            "subject": f"Ticket {number}",
        }
    ).encode()
    digest = hmac.new(connection.secret.encode(), body, hashlib.sha1).digest()
    headers = {
        "Content-Type": "application/json",
        "X-HelpScout-Event": "convo.created",
        "X-HelpScout-Signature": base64.b64encode(digest).decode(),
    }
    return "POST", f"/api/v1/support/inbound/{connection.id}/{connection.token}", body, headers


def burst(port: int, requests: list[Request], clients: int) -> tuple[float, Counter[int]]:
    """Send every request from ``clients`` threads, each on one kept-alive connection;
    the seconds it took and the answers by status."""
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    shares = [requests[start::clients] for start in range(clients)]

    def client(share: list[Request]) -> None:
        wire = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for method, path, body, headers in share:
            wire.request(method, path, body=body or None, headers=headers)
            answer = wire.getresponse()
            answer.read()
            with lock:
                statuses[answer.status] += 1
        wire.close()

    threads = [threading.Thread(target=client, args=(share,)) for share in shares]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, statuses


def run(url: str, label: str, args: argparse.Namespace, drop: Callable[[], None]) -> None:
    connection = seed(url)
    port = common.free_port()
    server = common.serve(url, port, args.workers, args.threads)
    try:
        bare: list[Request] = [("GET", "/bench/bare", b"", {})] * args.deliveries
        burst(port, bare[: args.clients * 5], args.clients)  # warm the workers up
        bare_seconds, _ = burst(port, bare, args.clients)
        deliveries = [delivery(connection, n) for n in range(args.deliveries)]
        seconds, statuses = burst(port, deliveries, args.clients)
    finally:
        server.terminate()
        server.wait(timeout=30)
    count = stored(url)
    rate, baseline = args.deliveries / seconds, args.deliveries / bare_seconds
    answers = ", ".join(f"{status}: {n}" for status, n in sorted(statuses.items()))
    print(
        f"{label}: {args.deliveries} deliveries in {seconds:.2f}s = {rate:.0f} deliveries/s; "
        f"bare endpoint {baseline:.0f} req/s; ratio {rate / baseline:.2f}; "
        f"answers {answers}; stored {count}; lost={args.deliveries - count}"
    )
    drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--deliveries", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    print(
        f"gunicorn gthread, {args.workers} workers x {args.threads} threads; "
        f"{args.clients} client threads; {os.cpu_count()} CPUs"
    )
    databases = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    with tempfile.TemporaryDirectory(prefix="tidings-ingest-") as scratch:
        for database in databases:
            if database == "sqlite":
                run(f"sqlite:///{Path(scratch) / 'bench.db'}", "SQLite", args, lambda: None)
                continue
            admin = os.environ.get("TIDINGS_TEST_POSTGRES_URL")
            if not admin:
                print("PostgreSQL: skipped, TIDINGS_TEST_POSTGRES_URL is not set")
                continue
            url, drop = common.postgres_database(admin, "tidings_ingest")
            run(url, "PostgreSQL", args, drop)


if __name__ == "__main__":
    main()
