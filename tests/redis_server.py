"""A throw-away redis-server of a test's own (Debian's, on a free loopback port, nothing
kept on disk): for the tests that stop and start Redis under a running app, and for each
xdist worker (tests/conftest.py), since a pub/sub channel is the whole server's."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from flask import Flask

from app.extensions import db
from tests.mailserver import free_port
from tests.worker import wait_for

REDIS_SERVER = shutil.which("redis-server")


class RedisServer:
    """A throw-away redis-server on a loopback port that stays its own across restarts,
    with nothing kept on disk: a restart comes back empty, as a Redis without
    persistence does."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.folder = folder
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert REDIS_SERVER and self.process is None
        with (self.folder / "server.log").open("ab") as log:
            self.process = subprocess.Popen(
                [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
                + ["--appendonly", "no", "--dir", str(self.folder), "--daemonize", "no"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for(self.answers, 10, "redis-server to answer")

    def stop(self) -> None:
        """Kill it (no goodbye to its clients, as a crash) and wait until it is gone."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)
        self.process = None

    def answers(self) -> bool:
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5, socket_timeout=0.5)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own, started, to stop and start again."""
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed: run the suite with `make test`")
    folder = tmp_path / "redis"
    folder.mkdir()
    server = RedisServer(folder)
    server.start()
    yield server
    if server.process is not None:
        server.process.send_signal(signal.SIGCONT)  # a test that failed while it hung
        server.stop()


@pytest.fixture
def redis_url() -> str:
    """A database of the suite's Redis for this test alone (each xdist worker has a server
    of its own), emptied; the test skips without one, as outside ``make test``."""
    started = os.environ.get("TIDINGS_TEST_REDIS_URL")
    if not started:
        pytest.skip("Redis is not configured: run the suite with `make test`")
    url = started.rsplit("/", 1)[0] + "/1"
    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture
def cached(app: Flask, app_factory: Callable[..., Flask], redis_url: str) -> Iterator[Flask]:
    """The app with Redis configured, its context pushed (``app`` empties the tables)."""
    application = app_factory(REDIS_URL=redis_url)
    with application.app_context():
        yield application
        db.session.remove()
