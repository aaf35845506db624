"""Fixtures: the app on SQLite and on PostgreSQL, a client, and logging in as each role.

Every test that uses ``app`` runs once per database. PostgreSQL comes from
``TIDINGS_TEST_POSTGRES_URL``, which ``make test`` sets after starting a throw-away
server; without it the PostgreSQL runs are skipped with that reason.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest
from flask import Flask, g
from flask.testing import FlaskClient
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.orm import Session

from announcements.models import Base
from app import create_app, database
from app.extensions import db

pytest_plugins = [
    "tests.browser",
    "tests.i18n_helpers",
    "tests.mailserver",
    "tests.receiver",
    "tests.worker",
    "tests.redis_server",  # after the two it imports, so that pytest rewrites theirs too
]


def pytest_configure(config: pytest.Config) -> None:
    """Give each xdist worker a redis-server of its own rather than the one `make test`
    starts for all: the Redis tests empty their databases and count what a channel
    carries, and a pub/sub channel is the whole server's, whatever the database. Started
    before any test module reads the URL; stopped as the worker exits."""
    if not os.environ.get("TIDINGS_TEST_REDIS_URL") or not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    # Imported here, once pytest has loaded it as a plugin (with its asserts rewritten).
    from tests.redis_server import RedisServer

    folder = Path(tempfile.mkdtemp(prefix="tidings-redis-"))
    server = RedisServer(folder)
    server.start()

    def stop() -> None:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)

    atexit.register(stop)
    os.environ["TIDINGS_TEST_REDIS_URL"] = server.url


POSTGRES_URL = os.environ.get("TIDINGS_TEST_POSTGRES_URL")
# The web's own threads (app/health.py): the alert mail it sends and the minute's chores.
WEB_THREADS = ("tidings-alerts", "tidings-minute")
WEB_THREADS_WAIT = 30.0  # seconds; the slowest thread writes one minute and watches
SHARED_TESTDATA = Path(__file__).resolve().parents[2] / "shared" / "testdata"
PASSWORD = "correct horse battery"
HTTPS_BASE_URL = "https://changes.example.com"


# The files that take longest, slowest first (`scripts/test.sh --durations=0`): xdist
# hands whole files to its workers in the order collected, so these go out first and no
# worker is left with one of them after the others have finished.
SLOW_FILES = (
    "test_live.py",
    "test_browser_",
    "test_two_hosts.py",
    "test_redis_down.py",
    "test_demo_",
    "test_ops.py",
    "test_api_fuzz.py",
    "test_cli.py",
    "test_traffic.py",
    "test_mail_worker.py",
    "test_deploy.py",
    "test_rate_limits.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return next(
            (at for at, slow in enumerate(SLOW_FILES) if name.startswith(slow)), len(SLOW_FILES)
        )

    items.sort(key=rank)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    """Before any fixture of a test is torn down, wait for the threads the web started in
    it to end. They run as in production (after a request, on their own), but a thread
    that outlived its test would hold a connection to a database the ``app`` fixture is
    emptying or dropping, and leak it: so for every test, whichever fixture made its app.
    One still running after the wait is an error of the test that started it."""
    web_threads = [thread for thread in threading.enumerate() if thread.name in WEB_THREADS]
    for thread in web_threads:
        thread.join(timeout=WEB_THREADS_WAIT)
    stuck = [thread.name for thread in web_threads if thread.is_alive()]
    yield
    if stuck:
        pytest.fail(f"{item.nodeid}: {', '.join(stuck)} still ran after {WEB_THREADS_WAIT:g} s")


def create_postgres_database(prefix: str) -> str:
    """Create an empty database on the test server and return its URL."""
    assert POSTGRES_URL
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)


def drop_postgres_database(url: str) -> None:
    assert POSTGRES_URL
    name = make_url(url).database
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@contextlib.contextmanager
def schema_database(kind: str, prefix: str, folder: Path) -> Iterator[str]:
    """A database of its own with the models' tables (on PostgreSQL, dropped after; on
    SQLite, a file in ``folder``), and no migration recorded."""
    if kind == "postgresql":
        if not POSTGRES_URL:
            pytest.skip("PostgreSQL is not configured: run the suite with `make test`")
        url = create_postgres_database(prefix)
    else:
        url = f"sqlite:///{folder / f'{prefix}.db'}"
    engine = create_engine(url)
    Base.metadata.create_all(engine)
    engine.dispose()
    try:
        yield url
    finally:
        if kind == "postgresql":
            drop_postgres_database(url)


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """An empty schema on one database, shared by the session and emptied after each test."""
    with schema_database(request.param, "tidings_test", tmp_path_factory.mktemp("sqlite")) as url:
        yield url


def _empty_all_tables() -> None:
    """Delete every row, children first. On PostgreSQL a DELETE of a test's few rows took
    6 ms where TRUNCATE of every table took 110 ms, a third of the suite's PostgreSQL time;
    ids go on counting, as SQLite's AUTOINCREMENT tables always did here."""
    for table in reversed(Base.metadata.sorted_tables):
        db.session.execute(table.delete())
    db.session.commit()


def make_app(database_url: str, instance_path: Path, **overrides: object) -> Flask:
    config = {
        "TESTING": True,
        "TIDINGS_ENV": "testing",
        "SECRET_KEY": "test-secret",
        "SQLALCHEMY_DATABASE_URI": database_url,
        "RATELIMIT_ENABLED": False,
        "MAIL_RATE": 0,
        "WEBHOOK_ALLOW_PRIVATE": True,  # the test receivers listen on loopback
    }
    config.update(overrides)
    application = create_app(config, instance_path=instance_path)
    application.before_request(_fresh_g)
    return application


def _fresh_g() -> None:
    """The tests hold an app context open, and Flask reuses it, with its ``g``, for every
    request: empty ``g`` as each request in production starts, so that what one test
    client's request cached there (Flask-Login's user, the CSRF token) is not another's."""
    vars(g).clear()


@pytest.fixture
def app_factory(database_url: str, tmp_path: Path) -> Iterator[Callable[..., Flask]]:
    """Make further apps on the test database (other settings); their pools are closed after."""
    made: list[Flask] = []

    def factory(**overrides: object) -> Flask:
        made.append(make_app(database_url, tmp_path / f"instance-{len(made)}", **overrides))
        return made[-1]

    yield factory
    for extra in made:
        database.dispose(extra)


@pytest.fixture
def app(database_url: str, tmp_path: Path) -> Iterator[Flask]:
    application = make_app(database_url, tmp_path / "instance")
    with application.app_context():
        yield application
        db.session.remove()
        _empty_all_tables()
        database.dispose(application)


@pytest.fixture(scope="module")
def demo_app(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    """An app on a database of its own with the demo loaded once for the module, for the
    tests that read what the demo made: a load takes seconds, on PostgreSQL tens."""
    kind = make_url(database_url).get_backend_name()
    with schema_database(kind, "tidings_demo", tmp_path_factory.mktemp("demo")) as url:
        application = make_app(url, tmp_path_factory.mktemp("demo-instance"))
        loaded = application.test_cli_runner().invoke(args=["demo"])
        assert loaded.exit_code == 0, loaded.output
        yield application
        database.dispose(application)


@pytest.fixture
def demo_session(demo_app: Flask) -> Iterator[Session]:
    with demo_app.app_context():
        yield db.session
        db.session.remove()


@pytest.fixture
def https_base_url(app: Flask) -> str:
    """The app's public address is ``HTTPS_BASE_URL``, as in production: the links a mail
    carries are absolute and on https. For the modules that request it."""
    app.config["BASE_URL"] = HTTPS_BASE_URL
    return HTTPS_BASE_URL


@pytest.fixture
def session(app: Flask) -> Session:
    return db.session


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask):
    return app.test_cli_runner()


CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


def csrf_token(client: FlaskClient) -> str:
    """A CSRF token valid for this client's session, read from a console page."""
    page = client.get("/console/login", follow_redirects=True).get_data(as_text=True)
    match = CSRF_META.search(page)
    assert match, "the console pages carry a csrf-token meta tag"
    return match.group(1)


class AuthActions:
    def __init__(self, client: FlaskClient) -> None:
        self._client = client

    def login(self, email: str, password: str = PASSWORD, next: str = ""):
        form = {"email": email, "password": password, "next": next}
        return self._client.post(
            "/console/login", data={**form, "csrf_token": csrf_token(self._client)}
        )

    def logout(self):
        return self._client.post("/console/logout", data={"csrf_token": csrf_token(self._client)})


@pytest.fixture
def auth(client: FlaskClient) -> AuthActions:
    return AuthActions(client)
