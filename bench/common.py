"""What the benchmark scripts share: the app served by gunicorn or driven by the test
client, the databases a run measures (SQLite, and a scratch PostgreSQL database made and
dropped again), and the bulk loads that fill them at size.

The scripts run as ``.venv/bin/python bench/<name>.py``, so this folder is on
``sys.path``; each imports ``common`` after putting the repository root there too.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import statistics
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import Engine, create_engine, make_url, text

from announcements.models import Base
from app import create_app

ROOT = Path(__file__).resolve().parent.parent
RECEIPT_COLUMNS = "end_user_id, note_id, read_at, channel"
# The test-client app's key (make_app), for scripts that sign or hash with it beforehand.
SECRET_KEY = "bench"  # noqa: S105 - a throw-away key


def timed(work: Callable[[], object]) -> tuple[float, Any]:
    """How long ``work()`` took, in seconds, and what it returned."""
    started = time.perf_counter()
    outcome = work()
    return time.perf_counter() - started, outcome


def median_of(work: Callable[[], object], calls: int) -> float:
    """The median of ``calls`` timings of ``work()``, in seconds."""
    return statistics.median(timed(work)[0] for _ in range(calls))


def free_port() -> int:
    """A loopback port that no one is listening on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def serve(
    url: str,
    port: int,
    workers: int,
    threads: int,
    reader: str | None = None,
    redis_url: str | None = None,
) -> subprocess.Popen[bytes]:
    """Serve bench_app.py with gunicorn on loopback, configured for production, and wait
    until it answers; ``reader`` names another state reader for the widget (bench_app.py),
    ``redis_url`` the Redis it keeps its answers in (none unless given).
    """
    environment = {
        **os.environ,
        "TIDINGS_BENCH_STATE_READER": reader or "",
        "REDIS_URL": redis_url or "",
        "DATABASE_URL": url,
        "TIDINGS_ENV": "production",
        "SECRET_KEY": secrets.token_hex(16),
        "BASE_URL": f"http://127.0.0.1:{port}",
    }
    server = subprocess.Popen(
        [
            str(ROOT / ".venv/bin/gunicorn"),
            "--config",
            str(ROOT / "bench/gunicorn_bench.conf.py"),
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "--worker-class",
            "gthread",
            "--keep-alive",
            "30",
            "--log-level",
            "warning",
            "--chdir",
            str(ROOT),
            "--pythonpath",
            str(ROOT / "bench"),
            "bench_app:app",
        ],
        env=environment,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/bench/bare", timeout=1)  # noqa: S310
            return server
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("gunicorn did not start")


def make_app(url: str, folder: Path) -> Flask:
    """The app on ``url`` for the test client, with an instance folder of its own in
    ``folder``; no CSRF tokens and no rate limits, so a timed call measures the work and
    not the guards in front of it."""
    return create_app(
        {
            "TIDINGS_ENV": "testing",
            "SECRET_KEY": SECRET_KEY,
            "SQLALCHEMY_DATABASE_URI": url,
            "WTF_CSRF_ENABLED": False,
            "RATELIMIT_ENABLED": False,
        },
        instance_path=folder / f"instance-{uuid.uuid4().hex[:6]}",
    )


def postgres_database(admin_url: str, prefix: str) -> tuple[str, Callable[[], None]]:
    """A new database, named ``prefix`` and a random tail, on the server ``admin_url``
    reaches; and how to drop it again."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return make_url(admin_url).set(database=name).render_as_string(hide_password=False), drop


def add_database_options(parser: argparse.ArgumentParser) -> None:
    """``--db`` and ``--postgres``, as :func:`each_database` reads them."""
    parser.add_argument(
        "--db",
        choices=["sqlite", "postgresql", "both"],
        help="default: SQLite, and PostgreSQL too when a server is given",
    )
    parser.add_argument("--postgres", help="a PostgreSQL server's URL (else from the environment)")


def each_database(args: argparse.Namespace, folder: Path, work: Callable[[str], None]) -> None:
    """Run ``work`` on the URL of each database the options ask for, under its name:
    SQLite in ``folder``, then PostgreSQL in a database of the bench's own on the server
    from --postgres or TIDINGS_TEST_POSTGRES_URL, dropped after however the work ends."""
    postgres = args.postgres or os.environ.get("TIDINGS_TEST_POSTGRES_URL")
    chosen = args.db or ("both" if postgres else "sqlite")
    for database in ["sqlite", "postgresql"] if chosen == "both" else [chosen]:
        if database == "sqlite":
            print("sqlite:")
            work(f"sqlite:///{folder / 'bench.db'}")
        elif postgres:
            print("postgresql:")
            url, drop = postgres_database(postgres, "tidings_bench")
            try:
                work(url)
            finally:
                drop()
        else:
            print("postgresql: skipped, give --postgres URL or TIDINGS_TEST_POSTGRES_URL")


def empty_schema(url: str) -> Engine:
    """An engine on ``url`` whose schema was dropped and made again, every table empty."""
    engine = create_engine(url)
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    return engine


def stamp(moment: datetime, dialect: str) -> object:
    """How the bulk loaders write a timestamp: SQLite's naive UTC text, or an aware value."""
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f") if dialect == "sqlite" else moment


@contextmanager
def bulk_load(engine: Engine) -> Iterator[tuple[Any, Any]]:
    """A DB-API connection and cursor set for loading known-good rows fast, closed after;
    then, when the load went through, fresh planner statistics, as a live database has.

    SQLite stops syncing each commit to disk; PostgreSQL stops checking foreign keys,
    which its triggers do row by row.
    """
    sqlite = engine.dialect.name == "sqlite"
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute(
            "PRAGMA synchronous=OFF" if sqlite else "SET session_replication_role = replica"
        )
        yield raw, cursor
    finally:
        raw.close()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("ANALYZE" if sqlite else "VACUUM ANALYZE"))


def bulk_insert(
    cursor: Any, dialect: str, table: str, columns: str, rows: Iterable[tuple[object, ...]]
) -> None:
    """Insert ``rows`` of ``columns`` (comma-separated) into ``table``: executemany on
    SQLite, COPY on PostgreSQL."""
    if dialect == "sqlite":
        marks = ", ".join("?" for _ in columns.split(","))
        cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)
        return
    with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        _copy_text(copy, rows)


def load_end_users(
    cursor: Any, dialect: str, columns: str, rows: Iterable[tuple[object, ...]], count: int
) -> None:
    """Insert ``count`` end users whose ids are 1 to ``count``; on PostgreSQL move the id
    sequence past them, so that the app's own inserts do not collide with them."""
    bulk_insert(cursor, dialect, "end_user", columns, rows)
    if dialect != "sqlite":
        cursor.execute("SELECT setval('end_user_id_seq', %s)", (count,))


def load_read_receipts(cursor: Any, dialect: str, rows: Iterable[tuple[object, ...]]) -> None:
    """Insert read receipts (``RECEIPT_COLUMNS``) with the table's indexes dropped and
    built again after: one sort instead of millions of index insertions. SQLite keeps
    its primary key, which it cannot drop."""
    if dialect != "sqlite":
        cursor.execute("ALTER TABLE read_receipt DROP CONSTRAINT pk_read_receipt")
    cursor.execute("DROP INDEX ix_read_receipt_note_id_end_user_id")
    bulk_insert(cursor, dialect, "read_receipt", RECEIPT_COLUMNS, rows)
    if dialect != "sqlite":
        cursor.execute(
            "ALTER TABLE read_receipt ADD CONSTRAINT pk_read_receipt "
            "PRIMARY KEY (end_user_id, note_id)"
        )
    cursor.execute(
        "CREATE INDEX ix_read_receipt_note_id_end_user_id ON read_receipt (note_id, end_user_id)"
    )


def _copy_text(copy: Any, rows: Iterable[tuple[object, ...]]) -> None:
    """Feed COPY its text format in large chunks: much faster than a call per row.

    The values here hold no tabs, newlines or backslashes, so none need escaping.
    """
    chunk: list[str] = []
    for row in rows:
        chunk.append("\t".join("\\N" if value is None else str(value) for value in row))
        if len(chunk) == 50_000:
            copy.write("\n".join(chunk) + "\n")
            chunk.clear()
    if chunk:
        copy.write("\n".join(chunk) + "\n")
