"""The live event stream under load, against a bare gevent SSE endpoint in the same run.

Serves the live process (``gunicorn -k gevent 'app.live:create_live_app()'``, one worker)
on SQLite and on PostgreSQL, each without and with Redis, and opens 10,000 concurrent
event streams to it from client processes (bench/live_client.py: asyncio on raw
sockets, each process from a loopback address of its own, since 10,000 streams and a
burst of 20,000 more to one port would use up one address's ephemeral ports). Measures:

- memory per connection: the worker's RSS with every stream open, less its RSS before,
  over the number opened;
- a note published through the services layer: the share of the open streams that get
  the ``catalogue`` event within 2 s (the target is 99 %), and p50/p99 of the delay, from
  the call to the service to the event's bytes reaching the client;
- a burst of 20,000 more connection attempts at once, while the main app (gunicorn
  gthread, bench_app.py) answers its bare endpoint and GET notes: their success rate and
  p99 during the burst, what became of the attempts, the worker's memory and files at
  the peak, and whether the 10,000 streams still get the next publish.

The same 10,000 streams to bench/live_bare.py (no Tidings code, the same gunicorn worker)
give the baseline for memory and delay; the live process's figures are printed as
ratios to it.

    make bench                                  # the widget's benchmark, then this one
    scripts/bench.sh live                       # this one alone, with PostgreSQL and Redis
    .venv/bin/python bench/live_bench.py --db sqlite --connections 2000 --burst 4000

PostgreSQL comes from TIDINGS_TEST_POSTGRES_URL (scripts/with-postgres.sh), Redis from
TIDINGS_TEST_REDIS_URL (scripts/with-redis.sh); without them those runs are skipped.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import re
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import common  # noqa: E402

from announcements import accounts, services  # noqa: E402
from announcements.models import Category, Product, TeamMember  # noqa: E402
from announcements.services import Intent, NoteInput, ProductSettings  # noqa: E402
from app.api.widget import expected_hash  # noqa: E402
from app.extensions import db  # noqa: E402

# How long after a publish the bench waits for the last stream, at most.
NOTIFY_WINDOW = 10.0
TARGET_SECONDS = 2.0
TARGET_SHARE = 0.99
# How long after a publish that missed its target the bench tries again.
RECOVERY_SECONDS = 30.0
LIVE_APP = "app.live:create_live_app()"
# The main app is probed this often during the burst, each endpoint in turn.
PROBE_PAUSE = 0.05


def raise_file_limit() -> None:
    """Let this process and its children open as many files as the hard limit allows."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def get(port: int, path: str, timeout: float = 2.0, method: str = "GET") -> tuple[int, float]:
    """A request on a new loopback connection: its status (0 if it failed) and seconds."""
    started = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path)
        status = connection.getresponse().status
    except OSError:
        status = 0
    finally:
        connection.close()
    return status, time.monotonic() - started


def gunicorn(
    target: str,
    port: int,
    environment: dict[str, str],
    connections: int,
    log: Path,
    options: tuple[str, ...] = (),
) -> subprocess.Popen[bytes]:
    """``target`` under one gunicorn gevent worker on loopback, up and answering /healthz;
    every setting that matters is given here, and ``options`` added. What it logs goes
    to ``log`` (see :func:`logged`)."""
    server = subprocess.Popen(
        [
            str(ROOT / ".venv/bin/gunicorn"),
            "--worker-class",
            "gevent",
            "--workers",
            "1",
            "--worker-connections",
            str(connections),
            "--backlog",
            "2048",
            "--bind",
            f"127.0.0.1:{port}",
            "--graceful-timeout",
            "5",
            "--log-level",
            "warning",
            "--chdir",
            str(ROOT),
            "--pythonpath",
            str(ROOT / "bench"),
            *options,
            target,
        ],
        env={**os.environ, **environment},
        stderr=log.open("ab"),
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and server.poll() is None:
        if get(port, "/healthz")[0] == 200:
            return server
        time.sleep(0.2)
    stop(server)
    sys.stderr.write(log.read_text()[-5000:])
    raise SystemExit(f"gunicorn {target} did not start")


def logged(log: Path) -> str:
    """What a server logged, in brief: how many errors, and of which kinds."""
    kinds = Counter(
        line.strip()[:110]
        for line in log.read_text(errors="replace").splitlines()
        if re.match(r"[\w.]+(Error|Exception|Exit): ", line)
    )
    if not kinds:
        return "no errors"
    return "; ".join(f"{count:,}x {kind}" for kind, count in kinds.most_common(3))


def stop(server: subprocess.Popen[bytes]) -> None:
    """Stop a server, gracefully if it will."""
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


@contextmanager
def running(server: subprocess.Popen[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    try:
        yield server
    finally:
        stop(server)


def worker_pids(master: subprocess.Popen[bytes]) -> list[int]:
    """The gunicorn master's workers."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:  # ended meanwhile
            continue
        if int(fields[1]) == master.pid:
            pids.append(int(stat.parent.name))
    return pids


def rss_kib(master: subprocess.Popen[bytes]) -> int:
    """The resident memory of the master's workers, in KiB."""
    total = 0
    for pid in worker_pids(master):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """The CPU time, user and system, that the processes ``pids`` have used so far."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:  # ended meanwhile
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / TICKS_PER_SECOND


def settle(master: subprocess.Popen[bytes], most: float = 60.0) -> float:
    """Wait until the master's workers are idle again (under a tenth of a core over half
    a second), at most ``most`` seconds; how long it took."""
    started = time.monotonic()
    while time.monotonic() < started + most:
        used = cpu_seconds(worker_pids(master))
        time.sleep(0.5)
        if cpu_seconds(worker_pids(master)) - used < 0.05:
            break
    return time.monotonic() - started


def open_files(master: subprocess.Popen[bytes]) -> int:
    """The files (sockets included) the master's workers hold open."""
    return sum(len(os.listdir(f"/proc/{pid}/fd")) for pid in worker_pids(master))


class Clients:
    """The client processes (bench/live_client.py), each from its own loopback address,
    driven together: each command goes to all of them, and waits for all their answers."""

    def __init__(self, count: int, port: int) -> None:
        self.processes = [
            subprocess.Popen(
                [
                    sys.executable,
                    str(ROOT / "bench/live_client.py"),
                    "--port",
                    str(port),
                    "--source",
                    f"127.0.1.{number + 1}",
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for number in range(count)
        ]

    def ask(self, *commands: str) -> list[dict[str, Any]]:
        """One command for each client, or the same one for all; their answers."""
        lines = commands if len(commands) > 1 else commands * len(self.processes)
        for process, line in zip(self.processes, lines, strict=True):
            assert process.stdin is not None  # noqa: S101 - made with stdin=PIPE
            process.stdin.write(line + "\n")
            process.stdin.flush()
        answers = []
        for process in self.processes:
            assert process.stdout is not None  # noqa: S101 - made with stdout=PIPE
            line = process.stdout.readline()
            if not line:
                raise SystemExit("a client process ended")
            answers.append(json.loads(line))
        return answers

    def files(self, paths: list[str], folder: Path, name: str) -> list[str]:
        """``paths`` dealt out to the clients, a file each; the names of the files."""
        files = []
        for number in range(len(self.processes)):
            file = folder / f"{name}-{number}.txt"
            file.write_text("\n".join(paths[number :: len(self.processes)]) + "\n")
            files.append(str(file))
        return files

    def stop(self) -> None:
        """End the clients: each closes its streams when its stdin closes."""
        for process in self.processes:
            if process.stdin is not None:
                process.stdin.close()
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def clients_of(count: int, port: int) -> Iterator[Clients]:
    clients = Clients(count, port)
    try:
        yield clients
    finally:
        clients.stop()


def outcomes_of(answers: list[dict[str, Any]]) -> Counter[str]:
    found: Counter[str] = Counter()
    for answer in answers:
        found.update(answer["outcomes"])
    return found


def failures(outcomes: Counter[str]) -> str:
    return ", ".join(f"{count:,} {what}" for what, count in outcomes.most_common() if what != "200")


@dataclass(frozen=True)
class Opened:
    """The streams opened, and the worker's memory before and after."""

    attempts: int
    outcomes: Counter[str]
    seconds: float
    kib_before: int
    kib_after: int
    server_cpu: float

    @property
    def count(self) -> int:
        return self.outcomes["200"]

    @property
    def kib_each(self) -> float:
        return (self.kib_after - self.kib_before) / max(self.count, 1)

    def lines(self, bare: Opened | None = None) -> list[str]:
        failed = failures(self.outcomes)
        memory = (
            f"memory {self.kib_each:.1f} KiB per connection (worker RSS "
            f"{self.kib_before / 1024:.0f} → {self.kib_after / 1024:.0f} MiB)"
        )
        if bare is not None:
            memory += f", {self.kib_each / bare.kib_each:.1f}x bare"
        return [
            f"opened {self.count:,} of {self.attempts:,} streams in {self.seconds:.1f} s "
            f"({self.count / self.seconds:,.0f}/s; worker CPU "
            f"{self.server_cpu / max(self.count, 1) * 1000:.2f} ms per stream)"
            f"{'; failed: ' + failed if failed else ''}",
            memory,
        ]


def open_streams(
    clients: Clients, server: subprocess.Popen[bytes], files: list[str], attempts: int, at_once: int
) -> Opened:
    """Open the streams in ``files``, ``at_once`` attempts in flight per client, and measure
    the worker's memory before and after."""
    before, workers = rss_kib(server), worker_pids(server)
    cpu, started = cpu_seconds(workers), time.monotonic()
    outcomes = outcomes_of(clients.ask(*(f"open {file} {at_once}" for file in files)))
    seconds = time.monotonic() - started
    settle(server)  # the last streams settle into waiting
    cpu = cpu_seconds(workers) - cpu
    return Opened(attempts, outcomes, seconds, before, rss_kib(server), cpu)


@dataclass(frozen=True)
class Delivery:
    """How one publish reached the open streams: each notified stream's delay, and the CPU
    time the server's worker and the clients spent from the publish to the last event."""

    open: int
    delays: list[float]
    server_cpu: float
    clients_cpu: float

    @property
    def within_target(self) -> float:
        return sum(1 for delay in self.delays if delay <= TARGET_SECONDS) / max(self.open, 1)

    def percentile(self, share: float) -> float:
        """The delay by which ``share`` of the open streams had the event; inf if never."""
        ordered = sorted(self.delays)
        rank = max(1, round(share * self.open))
        return ordered[rank - 1] if rank <= len(ordered) else float("inf")

    def line(self, bare: Delivery | None = None) -> str:
        if not self.delays:
            return (
                f"none of {self.open:,} open streams notified within {NOTIFY_WINDOW:.0f} s "
                f"(worker CPU meanwhile {self.server_cpu:.1f} s)"
            )
        p50, p99 = self.percentile(0.5), self.percentile(0.99)
        text = (
            f"{len(self.delays):,} of {self.open:,} open streams notified, "
            f"{self.within_target:.2%} within {TARGET_SECONDS:.0f} s (target {TARGET_SHARE:.0%}); "
            f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
            f"last {max(self.delays, default=0) * 1000:.0f} ms; CPU per event: worker "
            f"{self.server_cpu / max(len(self.delays), 1) * 1e6:.0f} µs, clients "
            f"{self.clients_cpu / max(len(self.delays), 1) * 1e6:.0f} µs"
        )
        if bare is not None:
            text += (
                f"; {p50 / bare.percentile(0.5):.1f}x and {p99 / bare.percentile(0.99):.1f}x bare"
            )
        return text


def deliver(
    clients: Clients, server: subprocess.Popen[bytes], publish: Callable[[], float]
) -> Delivery:
    """Arm the clients, publish (``publish()`` returns the moment it began), and wait until
    every open stream has the event or the window has passed."""
    opened = sum(answer["open"] for answer in clients.ask("arm"))
    workers, client_pids = worker_pids(server), [process.pid for process in clients.processes]
    server_cpu, clients_cpu = cpu_seconds(workers), cpu_seconds(client_pids)
    started = publish()
    while time.monotonic() < started + NOTIFY_WINDOW:
        time.sleep(0.1)
        if sum(answer["pending"] for answer in clients.ask("pending")) == 0:
            break
    server_cpu, clients_cpu = (
        cpu_seconds(workers) - server_cpu,
        cpu_seconds(client_pids) - clients_cpu,
    )
    answers = clients.ask(f"report {started}")
    delays = [delay for answer in answers for delay in answer["delays"]]
    return Delivery(opened, delays, server_cpu, clients_cpu)


def baseline(args: argparse.Namespace, folder: Path) -> tuple[Opened, Delivery]:
    """The bare gevent SSE endpoint: the same streams, its memory and delay."""
    port = common.free_port()
    with (
        running(gunicorn("live_bare:app", port, {}, args.cap, folder / "bare.log")) as server,
        clients_of(args.clients, port) as clients,
    ):
        files = clients.files(["/events"] * args.connections, folder, "bare")
        time.sleep(1)
        opened = open_streams(clients, server, files, args.connections, args.at_once)

        def publish() -> float:
            started = time.monotonic()
            get(port, "/publish", method="POST")
            return started

        delivery = deliver(clients, server, publish)
        clients.ask("close")
    for line in [*opened.lines(), delivery.line()]:
        print(f"  {line}")
    return opened, delivery


def traced(
    target: str,
    environment: dict[str, str],
    paths: list[str],
    args: argparse.Namespace,
    folder: Path,
) -> None:
    """Open the streams to ``target`` with tracemalloc in its worker (bench/live_trace.py),
    and print the lines of code that allocated the most per stream meanwhile."""
    answer = folder / "trace.txt"
    port = common.free_port()
    # A snapshot stops the worker for a while: its heartbeat must not time out meanwhile.
    options = ("--config", str(ROOT / "bench/live_trace.py"), "--timeout", "600")
    environment = {**environment, "TIDINGS_TRACE_FILE": str(answer)}
    with (
        running(
            gunicorn(target, port, environment, args.cap, folder / "traced.log", options)
        ) as server,
        clients_of(args.clients, port) as clients,
    ):
        clients.ask(*(f"open {file} 1" for file in clients.files(paths[:50], folder, "warm")))
        clients.ask("close")
        settle(server)
        ask_trace(answer)
        opened = open_streams(
            clients, server, clients.files(paths, folder, "traced"), len(paths), args.at_once
        )
        total, *rows = ask_trace(answer)
        clients.ask("close")
    each = max(opened.count, 1)
    print(
        f"  {opened.count:,} streams: traced {int(total) / each / 1024:.1f} KiB per stream of "
        f"{opened.kib_each:.1f} KiB RSS (this RSS includes tracemalloc's own bookkeeping)"
    )
    for row in rows:
        size, count, where = row.split(" ", 2)
        where = where.split("site-packages/")[-1].replace(str(ROOT) + "/", "")
        print(f"    {int(size) / each:>7.0f} B {int(count) / each:>5.1f} blocks  {where}")


def ask_trace(answer: Path) -> list[str]:
    """Ask the traced worker for a snapshot (bench/live_trace.py) and read its answer."""
    answer.unlink(missing_ok=True)
    answer.with_name(answer.name + ".ask").touch()
    deadline = time.monotonic() + 120
    while not answer.exists():
        if time.monotonic() > deadline:
            raise SystemExit("the traced worker did not answer")
        time.sleep(0.2)
    return answer.read_text().splitlines()


@dataclass(frozen=True)
class Seeded:
    product_id: int
    owner_id: int
    widget_key: str
    secret: str


def seed(url: str) -> Seeded:
    """An empty schema, then a product with a few published notes: the streams' subject."""
    engine = common.empty_schema(url)
    now = datetime.now(UTC)
    with Session(engine) as session:
        owner = accounts.create_member(session, "bench@example.com", secrets.token_hex(8))
        product = services.create_product(
            session, ProductSettings(name="Bench", slug="bench"), by=owner, now=now
        )
        for number in range(10):
            services.create_note(
                session,
                product,
                NoteInput(
                    version=f"1.{number}.0",
                    title=f"Release {number}",
                    category=Category.ADDED.value,
                    body_md="Faster.",
                ),
                intent=Intent.PUBLISH,
                by=owner,
                now=now,
            )
        seeded = Seeded(product.id, owner.id, product.widget_key, product.identity_secret)
    engine.dispose()
    return seeded


def live_environment(url: str) -> dict[str, str]:
    """The live process's settings: production, on ``url``."""
    return {
        "DATABASE_URL": url,
        "TIDINGS_ENV": "production",
        "SECRET_KEY": secrets.token_hex(16),
        "BASE_URL": "http://127.0.0.1",
    }


def identity(seeded: Seeded, number: int) -> str:
    """The query naming user ``number``, with a valid hash."""
    user_id = f"user-{number}"
    return f"user_id={user_id}&user_hash={expected_hash(seeded.secret, user_id)}"


def stream_paths(seeded: Seeded, users: range) -> list[str]:
    """The event stream's address for each user in ``users``."""
    return [f"/api/v1/widget/{seeded.widget_key}/events?{identity(seeded, n)}" for n in users]


class Probe(threading.Thread):
    """Requests the main app's endpoints in turn, each on a new connection, until
    stopped; how each answered (200 or not) and how long it took, and the live worker's
    peak memory and open files meanwhile."""

    def __init__(self, port: int, paths: dict[str, str], live: subprocess.Popen[bytes]) -> None:
        super().__init__(daemon=True)
        self.port, self.paths, self.live = port, paths, live
        self.answers: dict[str, list[tuple[bool, float]]] = {name: [] for name in paths}
        self.stopping = threading.Event()
        self.peak_kib = self.peak_files = 0

    def run(self) -> None:
        for name in itertools.cycle(self.paths):
            if self.stopping.wait(PROBE_PAUSE):
                return
            status, seconds = get(self.port, self.paths[name], timeout=5)
            self.answers[name].append((status == 200, seconds))
            # Between requests, the live worker's memory and files at their highest.
            self.peak_kib = max(self.peak_kib, rss_kib(self.live))
            self.peak_files = max(self.peak_files, open_files(self.live))

    def line(self) -> str:
        parts = []
        for name, answers in self.answers.items():
            ok = sum(1 for good, _ in answers if good)
            times = sorted(seconds for _, seconds in answers)
            p99 = times[min(len(times) - 1, round(0.99 * len(times)))] if times else 0
            parts.append(
                f"{name} {ok / max(len(answers), 1):.1%} of {len(answers)} answered "
                f"(p50 {statistics.median(times or [0]) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms)"
            )
        return "; ".join(parts)


def measure(
    url: str,
    seeded: Seeded,
    redis: str | None,
    args: argparse.Namespace,
    folder: Path,
    bare: tuple[Opened, Delivery],
) -> None:
    """One configuration: the streams, a publish, the burst, and a publish after it."""
    os.environ["REDIS_URL"] = redis or ""  # the live process, the main app and this one's
    app = common.make_app(url, folder)

    def publish() -> float:
        """A new note, published through the services layer, as the console does."""
        with app.app_context():
            session = db.session()
            product = session.get_one(Product, seeded.product_id)
            owner = session.get_one(TeamMember, seeded.owner_id)
            started = time.monotonic()
            services.create_note(
                session,
                product,
                NoteInput(
                    version="2.0.0",
                    title=f"Live {secrets.token_hex(4)}",
                    category=Category.FIXED.value,
                    body_md="Now.",
                    is_important=True,
                ),
                intent=Intent.PUBLISH,
                by=owner,
                now=datetime.now(UTC),
            )
        return started

    port, main_port = common.free_port(), common.free_port()
    log = folder / f"live-{port}.log"
    held = stream_paths(seeded, range(args.connections))
    burst = stream_paths(seeded, range(args.connections, args.connections + args.burst))
    notes_paths = {
        "bare": "/bench/bare",
        "GET notes": f"/api/v1/widget/{seeded.widget_key}/notes?{identity(seeded, 0)}",
    }
    with (
        running(
            common.serve(url, main_port, args.main_workers, args.main_threads, redis_url=redis)
        ),
        running(gunicorn(LIVE_APP, port, live_environment(url), args.cap, log)) as live,
        clients_of(args.clients, port) as clients,
    ):
        for path in notes_paths.values():  # warm the main app
            get(main_port, path, timeout=10)
        warm = clients.files(held[: args.clients], folder, "warm")
        clients.ask(*(f"open {file} 1" for file in warm))  # warm the live worker
        clients.ask("close")
        time.sleep(1)
        opened = open_streams(
            clients, live, clients.files(held, folder, "held"), len(held), args.at_once
        )
        for line in opened.lines(bare[0]):
            print(f"    {line}")
        print(f"    publish: {deliver(clients, live, publish).line(bare[1])}")

        probe = Probe(main_port, notes_paths, live)
        probe.start()
        started = time.monotonic()
        outcomes = outcomes_of(
            clients.ask(*(f"burst {f}" for f in clients.files(burst, folder, "burst")))
        )
        seconds = time.monotonic() - started
        probe.stopping.set()
        probe.join()
        clients.ask("unburst")
        health = get(port, "/healthz", timeout=10)[0]
        # The worker goes on with attempts its backlog still held, whose clients gave up.
        busy = settle(live)
        print(
            f"    burst of {args.burst:,} attempts in {seconds:.1f} s: {outcomes['200']:,} "
            f"streams opened, {failures(outcomes) or 'no failures'}; "
            f"worker at its peak {probe.peak_kib / 1024:.0f} MiB, {probe.peak_files:,} files "
            f"(worker_connections {args.cap:,})"
        )
        print(f"    main app during the burst: {probe.line()}")
        print(
            f"    live /healthz after the burst: {health or 'no answer'}; idle after {busy:.1f} s"
        )
        after = deliver(clients, live, publish)
        print(f"    publish after the burst, once idle: {after.line(bare[1])}")
        if after.within_target < TARGET_SHARE:
            # Attempts still queued in the worker (for a database connection) time out
            # within 30 s; does the signal come back then?
            time.sleep(RECOVERY_SECONDS)
            again = deliver(clients, live, publish)
            print(f"    publish {RECOVERY_SECONDS:.0f} s later: {again.line(bare[1])}")
        clients.ask("close")
    print(f"    the live process's log: {logged(log)}")
    os.environ.pop("REDIS_URL")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_database_options(parser)
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--burst", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=4, help="client processes")
    parser.add_argument(
        "--at-once", type=int, default=50, help="stream openings in flight per client"
    )
    parser.add_argument(
        "--cap", type=int, default=15_000, help="the live worker's worker_connections"
    )
    parser.add_argument("--main-workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--main-threads", type=int, default=2)
    parser.add_argument(
        "--trace-memory",
        action="store_true",
        help="instead: what a stream's memory is made of, bare and live on SQLite (tracemalloc)",
    )
    parser.add_argument(
        "--redis", help="a Redis server's URL (else from TIDINGS_TEST_REDIS_URL); also run without"
    )
    args = parser.parse_args()
    raise_file_limit()
    redis = args.redis or os.environ.get("TIDINGS_TEST_REDIS_URL")
    print(
        f"live stream: gunicorn gevent, 1 worker, worker_connections {args.cap:,}; "
        f"{args.connections:,} streams from {args.clients} client processes, then a burst of "
        f"{args.burst:,}; file limit {resource.getrlimit(resource.RLIMIT_NOFILE)[0]:,}; "
        f"{os.cpu_count()} CPUs"
    )
    with tempfile.TemporaryDirectory(prefix="tidings-live-bench-") as scratch:
        folder = Path(scratch)
        # Servers start here, so that a gunicorn.conf.py in the project (its access log)
        # does not change what is measured; the paths they are given are absolute.
        os.chdir(folder)
        if args.trace_memory:
            print("bare gevent SSE endpoint, traced:")
            traced("live_bare:app", {}, ["/events"] * args.connections, args, folder)
            url = f"sqlite:///{folder / 'bench.db'}"
            seeded = seed(url)
            print("live process on SQLite, traced:")
            held = stream_paths(seeded, range(args.connections))
            traced(LIVE_APP, live_environment(url), held, args, folder)
            return
        print("bare gevent SSE endpoint (bench/live_bare.py):")
        bare = baseline(args, folder)

        def work(url: str) -> None:
            seeded = seed(url)
            for server in [None, redis] if redis else [None]:
                print(f"  {'with Redis' if server else 'without Redis'}:")
                measure(url, seeded, server, args, folder, bare)
            if not redis:
                print("  with Redis: skipped, give --redis URL or TIDINGS_TEST_REDIS_URL")

        common.each_database(args, folder, work)


if __name__ == "__main__":
    main()
