"""Email throughput: the outbox worker against a minimal smtplib client, same server, same run.

Seeds one product with N confirmed subscribers (default 10,000), publishes a note with
"email subscribers" ticked (which queues N messages), starts aiosmtpd on loopback in
its own process (a sink that accepts everything), and measures in alternating rounds:

- ceiling: the same N messages, composed beforehand, sent by a bare ``smtplib``
  client over one connection (what the server and loopback allow);
- worker: ``deliver_due`` sending the queued outbox, with everything it does per
  message: claim, decide, compose, send, record in its own commit.

Prints the median messages per second of each and their ratio.

    make bench-mail
    .venv/bin/python bench/mail_bench.py --db sqlite --messages 2000 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine, insert, make_url, select, text, update

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import common  # noqa: E402

from announcements import accounts, services  # noqa: E402
from announcements.models import (  # noqa: E402
    Frequency,
    OutboxMessage,
    OutboxStatus,
    Subscriber,
    SubscriberStatus,
    utcnow,
)
from announcements.services import Intent, NoteInput, ProductSettings  # noqa: E402
from app import create_app  # noqa: E402
from app.extensions import db  # noqa: E402
from app.mail import compose, delivery, transport  # noqa: E402

BODY = """\
Reports are **faster** and easier to share.

- Export any chart as PNG or CSV
- Schedule a report to arrive every Monday
- Share a read-only link with people outside your workspace

See the [guide](https://docs.example.com/reports) for details.
"""


def start_sink(port: int) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            f"127.0.0.1:{port}",
            "-c",
            "aiosmtpd.handlers.Sink",
        ],
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise SystemExit("aiosmtpd did not start")


def seed(count: int) -> int:
    """A product, ``count`` confirmed subscribers and a note that queued their messages."""
    owner = accounts.create_member(db.session, "bench@example.com", "bench password 1")
    product = services.create_product(
        db.session, ProductSettings(name="Lumen", slug="lumen"), by=owner, now=utcnow()
    )
    now = utcnow()
    db.session.execute(
        insert(Subscriber),
        [
            {
                "product_id": product.id,
                "email": f"reader{number}@example.com",
                "status": SubscriberStatus.CONFIRMED,
                "frequency": Frequency.EVERY,
                "categories": [],
                "hard_bounces": 0,
                "created_at": now,
                "confirmed_at": now,
            }
            for number in range(count)
        ],
    )
    db.session.commit()
    note = services.create_note(
        db.session,
        product,
        NoteInput("2.10.0", "Faster reports", "Changed", BODY, is_important=True),
        intent=Intent.PUBLISH,
        by=owner,
        now=utcnow(),
    )
    return note.id


def requeue(note_id: int) -> None:
    db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.note_id == note_id)
        .values(status=OutboxStatus.QUEUED, next_attempt_at=utcnow(), attempts=0, sent_at=None)
    )
    db.session.commit()


def composed(note_id: int) -> list[tuple[str, bytes]]:
    rows = db.session.scalars(select(OutboxMessage).where(OutboxMessage.note_id == note_id))
    return [
        (
            row.subscriber.email,
            compose.release_note(row.subscriber, row.note, compose.message_id_for(row.id)).data,
        )
        for row in rows
    ]


def ceiling(port: int, messages: list[tuple[str, bytes]]) -> float:
    client = smtplib.SMTP("127.0.0.1", port)
    started = time.perf_counter()
    for recipient, data in messages:
        client.sendmail("tidings@localhost", [recipient], data)
    elapsed = time.perf_counter() - started
    client.quit()
    return len(messages) / elapsed


def worker(port: int, count: int) -> float:
    sender = transport.Smtp(f"smtp://127.0.0.1:{port}?starttls=off")
    started = time.perf_counter()
    report = delivery.deliver_due(sender)
    elapsed = time.perf_counter() - started
    sender.close()
    if report.sent != count:
        raise SystemExit(f"the worker sent {report.sent} of {count}: {report}")
    return count / elapsed


def database(kind: str, folder: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{folder / 'bench.db'}"
    base = os.environ.get("TIDINGS_TEST_POSTGRES_URL")
    if not base:
        raise SystemExit("PostgreSQL: set TIDINGS_TEST_POSTGRES_URL (make bench-mail does)")
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    name = f"tidings_mail_bench_{os.getpid()}"
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(base).set(database=name).render_as_string(hide_password=False)


def run(kind: str, count: int, rounds: int, port: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        url = database(kind, Path(folder))
        common.empty_schema(url).dispose()
        app = create_app(
            {
                "TIDINGS_ENV": "testing",
                "SECRET_KEY": "bench",
                "SQLALCHEMY_DATABASE_URI": url,
                "MAIL_RATE": 0,
                "MAIL_BATCH": 50,
            },
            instance_path=Path(folder) / "instance",
        )
        with app.app_context():
            note_id = seed(count)
            messages = composed(note_id)
            size = statistics.mean(len(data) for _, data in messages)
            print(f"{kind}: {count:,} messages of {size / 1024:.1f} KB on average")
            ceilings, workers = [], []
            for _ in range(rounds):
                ceilings.append(ceiling(port, messages))
                requeue(note_id)
                workers.append(worker(port, count))
            best = statistics.median(ceilings)
            ours = statistics.median(workers)
            print(f"  {'':28} {'msg/s':>7}   msg/s of each round")
            print(
                f"  {'ceiling (bare smtplib)':28} {best:7.0f}   "
                + " ".join(f"{value:.0f}" for value in ceilings)
            )
            print(
                f"  {'worker (outbox, per message)':28} {ours:7.0f}   "
                + " ".join(f"{value:.0f}" for value in workers)
            )
            print(f"  worker / ceiling: {ours / best:.0%}")
            db.session.remove()
            db.engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    port = common.free_port()
    sink = start_sink(port)
    try:
        kinds = ["sqlite", "postgresql"] if options.db == "both" else [options.db]
        for kind in kinds:
            run(kind, options.messages, options.rounds, port)
    finally:
        sink.terminate()
        sink.wait()


if __name__ == "__main__":
    main()
