"""Tidings on several machines, in one: app instances and the live process under gunicorn
with the project's gunicorn.conf.py, and `flask worker`s, each a real process of its own,
all on one PostgreSQL and one Redis.

``Cluster`` starts them with the settings every host shares and stops them all after.
``HoldingSmtpServer`` is a mail server that can hold its answer to the messages it has
taken, so that a test can kill a worker while a message is with the server; and
``client_ports`` tells which process a connection to it is from.
"""

from __future__ import annotations

import asyncio
import email
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from tests.mailserver import Recorder, SmtpServer, free_port
from tests.worker import launch

PROJECT_ROOT = Path(__file__).resolve().parents[1]
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))
# A bound, not the usual: five processes importing the app at once are ready in about 8 s
# on two cores, and took 30 s with the cores shared by three other test runs.
START_TIMEOUT = 90.0
STOP_TIMEOUT = 10.0
WORKER_STARTED = b"consumer started"  # Huey's line once the worker's first sweep is queued


@dataclass
class Process:
    """One started process: a web or live host (``url`` set), or a worker."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    url: str = ""

    def tail(self, size: int = 2000) -> str:
        return self.log.read_bytes()[-size:].decode(errors="replace")


class Cluster:
    """Processes on one database and one Redis, as on separate machines: each its own
    instance folder, port and log; ``settings`` are the environment all of them share."""

    def __init__(self, folder: Path, *, database_url: str, **settings: str) -> None:
        self.folder = folder
        self.database_url = database_url
        self.settings = {
            "TIDINGS_ENV": "testing",
            "SECRET_KEY": "test-secret",
            "DATABASE_URL": database_url,
            **settings,
        }
        self.started: list[Process] = []

    def _gunicorn(self, name: str, process: str, app: str, settings: dict[str, str]) -> Process:
        """gunicorn with the project's gunicorn.conf.py, as in production, as the kind of
        ``process`` it names (web or live); one worker, on a port of its own."""
        port = free_port()
        log = self.folder / f"{name}.log"
        with log.open("wb") as output:
            popen = subprocess.Popen(
                [GUNICORN, "--bind", f"127.0.0.1:{port}", app],
                cwd=PROJECT_ROOT,
                env={
                    **os.environ,
                    **self.settings,
                    "TIDINGS_PROCESS": process,
                    "WEB_CONCURRENCY": "1",
                    **settings,
                },
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a group of its own, its workers in it: see stop()
            )
        process = Process(name, popen, log, f"http://127.0.0.1:{port}")
        self.started.append(process)
        return process

    def web(self, name: str, **settings: str) -> Process:
        """An app instance, with an instance folder of its own."""
        instance = self.folder / name
        return self._gunicorn(
            name, "web", f"app:create_app(instance_path={str(instance)!r})", settings
        )

    def live(self, name: str, **settings: str) -> Process:
        """The live process."""
        return self._gunicorn(name, "live", "app.live:create_live_app()", settings)

    def worker(self, name: str, smtp_url: str, **settings: str) -> Process:
        """A `flask worker` sending to ``smtp_url``."""
        log = self.folder / f"{name}.log"
        popen = launch(
            smtp_url,
            log,
            database_url=self.database_url,
            instance=self.folder / name,
            **{**self.settings, **settings},
        )
        process = Process(name, popen, log)
        self.started.append(process)
        return process

    def wait_ready(self, *processes: Process) -> None:
        """Wait until each host answers /healthz and each worker's consumer runs."""
        deadline = time.monotonic() + START_TIMEOUT
        waiting = list(processes)
        while waiting:
            process = waiting[0]
            if process.popen.poll() is not None:
                raise AssertionError(f"{process.name} exited:\n{process.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{process.name} did not start:\n{process.tail()}")
            if _is_ready(process):
                waiting.pop(0)
            else:
                time.sleep(0.1)

    def kill(self, process: Process) -> None:
        """SIGKILL: the process ends at once, in the middle of whatever it was doing."""
        process.popen.send_signal(signal.SIGKILL)
        process.popen.wait(timeout=STOP_TIMEOUT)

    def stop(self) -> None:
        """Kill every process still running, a gunicorn with its workers (its process
        group). The test is over and nothing of theirs is left to finish; stopped
        gracefully, each spent seconds in its interpreter's last garbage collection on a
        busy machine, 10 s in all."""
        for process in self.started:
            if process.popen.poll() is None:
                if process.url:
                    os.killpg(process.popen.pid, signal.SIGKILL)
                else:
                    process.popen.kill()
        for process in self.started:
            process.popen.wait(timeout=STOP_TIMEOUT)


def _is_ready(process: Process) -> bool:
    if not process.url:
        return WORKER_STARTED in process.log.read_bytes()
    try:
        with urllib.request.urlopen(f"{process.url}/healthz", timeout=2) as answer:  # noqa: S310 - loopback
            return bool(answer.status == 200)
    except OSError:
        return False


@dataclass
class HoldingRecorder(Recorder):
    """A recorder that, while ``holding``, keeps each message it has taken unanswered:
    a server that has the message and has not yet said so. ``answering`` maps the client
    port of each message waiting for its answer to the message's Message-ID."""

    holding: bool = False
    delay: float = 0.0  # seconds before each answer, held or not
    answering: dict[int, str] = field(default_factory=dict)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        reply = await super().handle_DATA(server, session, envelope)
        port = int(session.peer[1])
        parsed = email.message_from_bytes(envelope.content)
        self.answering[port] = str(parsed["Message-ID"])
        try:
            await asyncio.sleep(self.delay)
            while self.holding:
                await asyncio.sleep(0.01)
        finally:  # also when the client is gone and aiosmtpd cancels the wait
            self.answering.pop(port, None)
        return reply


class HoldingSmtpServer(SmtpServer):
    """The test SMTP server with a :class:`HoldingRecorder`."""

    recorder: HoldingRecorder

    def __init__(self, delay: float = 0.0) -> None:
        # Not SmtpServer's: its controller would hold an event loop, sockets and all, that
        # is never started nor closed.
        self.recorder = HoldingRecorder(delay=delay)
        self.port = free_port()
        self.controller = Controller(self.recorder, hostname="127.0.0.1", port=self.port)


def client_ports(pid: int, server_port: int) -> set[int]:
    """The local ports of the TCP connections process ``pid`` holds to ``server_port`` on
    loopback (IPv4, read from /proc)."""
    sockets = set()
    for descriptor in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(descriptor)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            sockets.add(target[len("socket:[") : -1])
    ports = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, inode = fields[1], fields[2], fields[9]
        if inode in sockets and int(remote.rsplit(":", 1)[1], 16) == server_port:
            ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports
