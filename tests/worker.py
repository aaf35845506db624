"""The real background worker (`flask worker`, Huey's consumer) on the test database.

``start_worker(smtp_url)`` starts one more worker process sending to ``smtp_url``; every
process a test started is killed after it. ``wait_for`` polls for what a worker does.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

FLASK = str(Path(sys.executable).with_name("flask"))


def launch(
    smtp_url: str, log: Path, *, database_url: str, instance: Path, **settings: str
) -> subprocess.Popen:
    """Start one `flask worker` on ``database_url`` with the job queue of the app instance
    at ``instance``, sending to ``smtp_url``, its output in ``log``."""
    env = {
        **os.environ,
        "TIDINGS_ENV": "testing",
        "SECRET_KEY": "test-secret",
        "DATABASE_URL": database_url,
        "SMTP_URL": smtp_url,
        "MAIL_RATE": "0",
        **settings,
    }
    with log.open("wb") as output:
        return subprocess.Popen(
            [FLASK, "--app", f"app:create_app(instance_path={str(instance)!r})", "worker"],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )


@pytest.fixture
def start_worker(database_url: str, tmp_path: Path) -> Iterator[Callable[[str], subprocess.Popen]]:
    """Start `flask worker` processes on the test database; all are stopped after the test."""
    started: list[subprocess.Popen] = []

    def start(smtp_url: str) -> subprocess.Popen:
        log = tmp_path / f"worker-{len(started)}.log"
        process = launch(
            smtp_url, log, database_url=database_url, instance=tmp_path / "worker-instance"
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Return once ``condition()`` holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
