"""The production set-up: `flask check` names what is wrong in plain words, `flask backup`
copies a live SQLite database that restores whole, and gunicorn with gunicorn.conf.py
logs JSON lines with the request id and finishes its requests on SIGTERM."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import flask_migrate
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, insert, select, text

from announcements.models import Base, EndUser, OutboxMessage, OutboxStatus, utcnow
from app import database
from app.config import DEFAULT_SECRET_KEY
from app.extensions import db
from app.mail.jobs import JOBS_KEY
from tests.conftest import (
    make_app,
    schema_database,
)
from tests.factories import (
    make_end_user,
    make_member,
    make_note,
    make_outbox_message,
    make_product,
)
from tests.mailserver import free_port
from tests.redis_server import RedisServer
from tests.worker import launch, wait_for

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEPLOY = PROJECT_ROOT / "deploy"
REDIS_URL = os.environ.get("TIDINGS_TEST_REDIS_URL")
needs_redis = pytest.mark.skipif(
    not REDIS_URL, reason="Redis is not configured: run the suite with `make test`"
)
# Settings that pass every check but the database's and Redis's.
SOUND = {
    "TIDINGS_ENV": "production",
    "SECRET_KEY": secrets.token_hex(32),
    "BASE_URL": "https://changes.example.com",
    "SMTP_URL": "smtp://mailer:pw@relay.example.com:587",
    "MAIL_FROM": "Example changes <changes@example.com>",
}


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of its own with the models' tables and no migration recorded."""
    with schema_database(request.param, "tidings_ops", tmp_path) as url:
        yield url


def _check(url: str, folder: Path, revision: str | None = "head", **settings: object):
    """Run `flask check` on an app with ``settings`` on the database at ``url``, recorded
    as at ``revision`` of the migrations (None: none recorded)."""
    app = make_app(url, folder, **{**SOUND, **settings})
    try:
        if revision is not None:
            with app.app_context():
                flask_migrate.stamp(revision=revision)
        return app.test_cli_runner().invoke(args=["check"])
    finally:
        database.dispose(app)


def test_a_sound_production_set_up_is_ready_to_serve(empty_url: str, tmp_path: Path) -> None:
    result = _check(empty_url, tmp_path / "instance")
    assert result.exit_code == 0, result.output
    assert "Checking the production configuration." in result.output
    assert "schema up to date" in result.output
    assert "ok    BASE_URL: https://changes.example.com" in result.output
    assert "relay.example.com:587 (STARTTLS; not contacted)" in result.output
    assert "FAIL" not in result.output
    assert result.output.rstrip().endswith("Ready to serve.")


def test_each_problem_is_said_in_plain_words(tmp_path: Path) -> None:
    result = _check(
        f"sqlite:///{tmp_path / 'missing.db'}",
        tmp_path / "instance",
        revision=None,
        SECRET_KEY="too-short",
        BASE_URL="http://changes.example.com",
        LIVE_URL="http://live.example.com",
        SMTP_URL=None,
        MAIL_FROM="Tidings <tidings@localhost>",
    )
    assert result.exit_code == 1
    lines = result.output.splitlines()
    expected = [
        "FAIL  SECRET_KEY: is 9 characters long: use at least 32 random ones",
        f"FAIL  database: no SQLite {tmp_path / 'missing.db'}: create it with `flask db upgrade`",
        "FAIL  BASE_URL: http://changes.example.com is not https",
        "FAIL  LIVE_URL: http://live.example.com is not https: widgets on https pages",
        "FAIL  SMTP_URL: is unset: mail is written as .eml files under instance/mail/",
        "FAIL  MAIL_FROM: Tidings <tidings@localhost> is the default",
    ]
    for start in expected:
        assert any(line.strip().startswith(start) for line in lines), (start, result.output)
    assert lines[-1] == "6 problems to fix before serving."
    # Nothing was made where the database should be.
    assert not (tmp_path / "missing.db").exists()


def test_in_development_the_defaults_are_only_warned_about(tmp_path: Path, empty_url) -> None:
    result = _check(
        empty_url,
        tmp_path / "instance",
        TIDINGS_ENV="development",
        SECRET_KEY=DEFAULT_SECRET_KEY,
        SMTP_URL=None,
    )
    assert result.exit_code == 0, result.output
    assert "warn  SECRET_KEY: is unset (the development default)" in result.output
    assert "warn  SMTP_URL: is unset" in result.output


def test_a_database_behind_the_code_is_told_to_upgrade(empty_url: str, tmp_path: Path) -> None:
    unrecorded = _check(empty_url, tmp_path / "a", revision=None)
    assert unrecorded.exit_code == 1
    assert "has no schema yet: run `flask db upgrade`" in unrecorded.output
    scripts = ScriptDirectory(str(PROJECT_ROOT / "migrations"))
    head = scripts.get_current_head()
    previous = scripts.get_revision(head).down_revision
    older = _check(empty_url, tmp_path / "b", revision=previous)
    assert older.exit_code == 1
    assert f"is at revision {previous}, this code needs {head}: run `flask db upgrade`" in (
        older.output
    )


def test_an_unreachable_postgresql_is_named_without_its_password(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://tidings:s3cret@127.0.0.1:{free_port()}/tidings"
    result = _check(url, tmp_path / "instance", revision=None)
    assert result.exit_code == 1
    assert f"FAIL  database: PostgreSQL 127.0.0.1:{url.split(':')[-1]} is unreachable" in (
        result.output
    )
    assert "s3cret" not in result.output


@needs_redis
def test_a_reachable_redis_is_named_with_its_version(empty_url: str, tmp_path: Path) -> None:
    result = _check(empty_url, tmp_path / "instance", REDIS_URL=REDIS_URL)
    assert result.exit_code == 0, result.output
    assert "ok    REDIS_URL: Redis " in result.output


def test_redis_going_down_fails_the_check(
    redis_server: RedisServer, empty_url: str, tmp_path: Path
) -> None:
    url = redis_server.url
    up = _check(empty_url, tmp_path / "a", REDIS_URL=url)
    assert up.exit_code == 0, up.output
    redis_server.stop()
    down = _check(empty_url, tmp_path / "b", REDIS_URL=url)
    assert down.exit_code == 1
    port = url.split(":")[-1].split("/")[0]
    assert f"FAIL  REDIS_URL: Redis at 127.0.0.1:{port} is unreachable" in down.output


# Backups -----------------------------------------------------------------------------------

BATCH = 50  # end users the writer adds in each transaction


def _rows(url: str) -> dict[str, set[str]]:
    """Every row of every table of the models, each as JSON (its JSON columns are lists
    and dicts, which a set cannot hold)."""
    engine = create_engine(url)
    with engine.connect() as connection:
        found = {
            table.name: {
                json.dumps(list(row), default=str, sort_keys=True)
                for row in connection.execute(select(table))
            }
            for table in Base.metadata.sorted_tables
        }
    engine.dispose()
    return found


def test_a_backup_taken_while_writes_go_on_restores_every_row(tmp_path: Path) -> None:
    source = tmp_path / "live" / "tidings.db"
    source.parent.mkdir()
    url = f"sqlite:///{source}"
    engine = create_engine(url)
    Base.metadata.create_all(engine)
    engine.dispose()
    app = make_app(url, tmp_path / "live")
    with app.app_context():
        owner = make_member(db.session)
        product = make_product(db.session, owner=owner, slug="lumen", name="Lumen")
        make_note(db.session, product, version="1.0.0", title="First light", status="published")
        make_note(db.session, product, version="1.1.0", title="Scheduled", status="draft")
        make_end_user(db.session, product, "ann")
        product_id = product.id
        # Enough rows that the copy takes a while, as a real one does.
        now = utcnow()
        db.session.execute(
            insert(EndUser),
            [
                {
                    "product_id": product_id,
                    "external_id": f"bulk-{n}",
                    "first_seen_at": now - timedelta(days=1),
                    "last_seen_at": now,
                    "attributes": {"plan": "pro", "seats": n},
                }
                for n in range(60_000)
            ],
        )
        db.session.commit()
    before = _rows(url)

    # Another process's writer, as the web's would be: batches of end users, each batch
    # one transaction, from before the backup starts until after it ends.
    stop = threading.Event()
    committed: list[int] = []
    failures: list[BaseException] = []

    def write() -> None:
        writer = sqlite3.connect(source, timeout=30)
        try:
            batch = 0
            while not stop.is_set():
                # As SQLAlchemy writes a UTC time into SQLite.
                stamp = utcnow().strftime("%Y-%m-%d %H:%M:%S.%f")
                with writer:
                    writer.executemany(
                        "INSERT INTO end_user (product_id, external_id, attributes, "
                        "first_seen_at, last_seen_at) VALUES (?, ?, '{}', ?, ?)",
                        [(product_id, f"w{batch}-{n}", stamp, stamp) for n in range(BATCH)],
                    )
                committed.append(batch)
                batch += 1
        except BaseException as error:
            failures.append(error)
        finally:
            writer.close()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        while len(committed) < 3:
            time.sleep(0.01)
        done_before = len(committed)
        result = app.test_cli_runner().invoke(args=["backup", str(tmp_path / "copy.db")])
        done_during = len(committed)
        while len(committed) < done_during + 3:
            time.sleep(0.01)
    finally:
        stop.set()
        writer.join(timeout=30)
        database.dispose(app)
    assert not failures
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Backed up {source} to {tmp_path / 'copy.db'} (")

    # Restoring is putting the file in place; the app then finds every row it had.
    restored_folder = tmp_path / "restored"
    restored_folder.mkdir()
    shutil.copy(tmp_path / "copy.db", restored_folder / "tidings.db")
    assert not (tmp_path / "copy.db.partial").exists()
    restored_url = f"sqlite:///{restored_folder / 'tidings.db'}"
    after = _rows(restored_url)
    for table, rows in before.items():
        assert rows <= after[table], table
    # The copy is one moment: each of the writer's transactions is in it whole or not at
    # all, and every one committed before the backup began is in it.
    with sqlite3.connect(restored_folder / "tidings.db") as copy:
        batches = dict(
            copy.execute(
                "SELECT substr(external_id, 1, instr(external_id, '-') - 1), count(*) "
                "FROM end_user WHERE external_id LIKE 'w%' GROUP BY 1"
            ).fetchall()
        )
    assert set(batches.values()) == {BATCH}
    assert {f"w{n}" for n in range(done_before)} <= set(batches)
    with sqlite3.connect(restored_folder / "tidings.db") as copy:
        assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert copy.execute("PRAGMA journal_mode").fetchone() == ("delete",)

    restored = make_app(restored_url, restored_folder)
    try:
        page = restored.test_client().get("/changelog/lumen")
        assert page.status_code == 200
        assert "First light" in page.get_data(as_text=True)
    finally:
        database.dispose(restored)


def test_a_backup_never_overwrites_a_file(tmp_path: Path, app, runner) -> None:
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        result = runner.invoke(args=["backup", str(tmp_path / "copy.dump")])
        assert result.exit_code == 1
        assert "back it up with pg_dump, pg_dump --format=custom" in result.output
        assert f"--file={tmp_path / 'copy.dump'}" in result.output
        return
    existing = tmp_path / "yesterday.db"
    existing.write_bytes(b"keep me")
    result = runner.invoke(args=["backup", str(existing)])
    assert result.exit_code == 1
    assert f"{existing} exists already: name a new file." in result.output
    assert existing.read_bytes() == b"keep me"
    nowhere = runner.invoke(args=["backup", str(tmp_path / "no" / "such" / "folder.db")])
    assert nowhere.exit_code == 1
    assert "There is no folder" in nowhere.output
    # A copy holds the identity secrets: its owner's alone, whatever the umask.
    previous = os.umask(0o022)
    try:
        made = runner.invoke(args=["backup", str(tmp_path / "today.db")])
    finally:
        os.umask(previous)
    assert made.exit_code == 0, made.output
    assert (tmp_path / "today.db").stat().st_mode & 0o777 == 0o600


def test_postgresql_is_backed_up_with_pg_dump(tmp_path: Path) -> None:
    url = "postgresql+psycopg://tidings:s3cret@db.internal:5433/tidings"
    app = make_app(url, tmp_path / "instance")
    result = app.test_cli_runner().invoke(args=["backup", "/backups/tidings.dump"])
    assert result.exit_code == 1
    assert (
        "pg_dump --format=custom --file=/backups/tidings.dump --host=db.internal --port=5433 "
        "--username=tidings tidings" in result.output
    )
    assert "s3cret" not in result.output


# gunicorn ----------------------------------------------------------------------------------


# Prints the settings gunicorn.conf.py makes, read in a process of its own: the live
# section patches the standard library for gevent, which this process must not be.
READ_SETTINGS = """
import json, runpy
from gevent import monkey
settings = runpy.run_path("gunicorn.conf.py")
names = ["wsgi_app", "worker_class", "workers", "bind", "worker_connections", "threads"]
found = {name: settings.get(name) for name in names}
print(json.dumps({**found, "patched": monkey.is_module_patched("socket")}))
"""


def _gunicorn_settings(**environment: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", READ_SETTINGS],
        cwd=PROJECT_ROOT,
        env={**os.environ, "SECRET_KEY": secrets.token_hex(32), **environment},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_live_section_serves_streams_with_gevent() -> None:
    live = json.loads(_gunicorn_settings(TIDINGS_PROCESS="live", WEB_CONCURRENCY="3").stdout)
    assert live == {
        "wsgi_app": "app.live:create_live_app()",
        "worker_class": "gevent",
        "workers": 3,
        "bind": ["127.0.0.1:8001"],
        "worker_connections": 10_000,
        "threads": None,
        "patched": True,
    }
    web = json.loads(_gunicorn_settings(TIDINGS_PROCESS="web").stdout)
    assert (web["wsgi_app"], web["worker_class"], web["bind"], web["patched"]) == (
        "wsgi:app",
        "gthread",
        ["127.0.0.1:8000"],
        False,
    )
    wrong = _gunicorn_settings(TIDINGS_PROCESS="both")
    assert wrong.returncode == 1
    assert "TIDINGS_PROCESS must be web or live, not 'both'" in wrong.stderr


# The app gunicorn serves in the test below: Tidings, plus a view that takes its time.
SLOW_APP = """
import logging, time
from wsgi import app

@app.get("/slow")
def slow():
    logging.getLogger("tests.slow").info("started")
    time.sleep(2)
    logging.getLogger("tests.slow").info("finished")
    return "done"
"""


def test_gunicorn_logs_json_lines_and_finishes_requests_on_sigterm(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'tidings.db'}")
    Base.metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(text("SELECT 1"))
    engine.dispose()
    (tmp_path / "slow_app.py").write_text(SLOW_APP)
    port = free_port()
    env = {
        **os.environ,
        "TIDINGS_ENV": "production",
        "SECRET_KEY": secrets.token_hex(32),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'tidings.db'}",
        "BASE_URL": f"http://127.0.0.1:{port}",
        "TIDINGS_PROCESS": "web",
        "PYTHONPATH": f"{tmp_path}{os.pathsep}{PROJECT_ROOT}",
    }
    env.pop("LOG_FORMAT", None)
    log = (tmp_path / "gunicorn.log").open("wb")
    server = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("gunicorn")),
            "--config",
            str(PROJECT_ROOT / "gunicorn.conf.py"),
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "slow_app:app",
        ],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=2)  # noqa: S310
                break
            except OSError:
                assert server.poll() is None, (tmp_path / "gunicorn.log").read_text()
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.2)
        answers: list[tuple[int, str, str]] = []

        def ask_slowly() -> None:
            with urllib.request.urlopen(f"{base}/slow", timeout=30) as answer:  # noqa: S310
                answers.append(
                    (answer.status, answer.read().decode(), answer.headers["X-Request-Id"])
                )

        asking = threading.Thread(target=ask_slowly)
        asking.start()
        deadline = time.monotonic() + 10
        while b'"started"' not in (tmp_path / "gunicorn.log").read_bytes():
            assert time.monotonic() < deadline, "the slow view never started"
            time.sleep(0.05)
        server.send_signal(signal.SIGTERM)
        asking.join(timeout=30)
        assert server.wait(timeout=30) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        log.close()
    # The request in flight when SIGTERM came was answered in full.
    [(status, body, request_id)] = answers
    assert (status, body) == (200, "done")
    lines = [json.loads(line) for line in (tmp_path / "gunicorn.log").read_text().splitlines()]
    mine = [line for line in lines if line["logger"] == "tests.slow"]
    assert [line["message"] for line in mine] == ["started", "finished"]
    assert {line["request_id"] for line in mine} == {request_id}
    [access] = [line for line in lines if line.get("path") == "/slow"]
    assert access["logger"] == "gunicorn.access"
    assert (access["request_id"], access["status"], access["method"]) == (request_id, 200, "GET")
    assert access["duration_ms"] >= 2000
    assert any(line["message"] == "Handling signal: term" for line in lines)


# The worker's stop ------------------------------------------------------------------------

STOPPING_MAIL = 6  # confirmations queued while the worker sends two a second


def test_the_worker_units_stop_signal_lets_the_running_send_finish(
    app, session, smtp_server, tmp_path: Path
) -> None:
    """deploy/systemd/tidings-worker.service stops the worker with SIGINT: Huey's consumer
    takes no new task and lets the running one, a sending run, end; every message goes
    out once and the worker exits cleanly."""
    unit = (DEPLOY / "systemd" / "tidings-worker.service").read_text()
    assert "\nKillSignal=SIGINT\n" in unit
    log = tmp_path / "worker.log"
    worker = launch(
        smtp_server.url,
        log,
        database_url=app.config["SQLALCHEMY_DATABASE_URI"],
        instance=Path(app.instance_path),
        MAIL_RATE="2",
    )
    try:
        wait_for(lambda: b"consumer started" in log.read_bytes(), 60, "the worker")
        product = make_product(session)
        for n in range(STOPPING_MAIL):
            make_outbox_message(session, product, email=f"reader{n}@example.com")
        app.extensions[JOBS_KEY].wake()
        wait_for(lambda: len(smtp_server.recorder.received) >= 1, 60, "the first message")
        worker.send_signal(signal.SIGINT)
        assert worker.wait(timeout=60) == 0, log.read_text()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    received = [r.recipients[0] for r in smtp_server.recorder.received]
    assert sorted(received) == sorted(f"reader{n}@example.com" for n in range(STOPPING_MAIL))
    session.rollback()
    statuses = session.scalars(select(OutboxMessage.status)).all()
    assert statuses == [OutboxStatus.SENT] * STOPPING_MAIL
