"""The widget's hot path under load, against a bare Flask endpoint in the same run.

Seeds a product with 200 notes over 40 versions in English and French (three in four
notes translated, one in ten of those a draft), 1,000,000 end users (half of them
French) and 10,000,000 read receipts, serves the app with gunicorn, and drives it with
wrk on loopback: GET notes for random users with valid hashes, in the default language
and in French (``locale=fr``, the same page in its translations), GET help (their unread
notes that match what they are about to ask support, ranked), POST reads of random notes,
the product's Atom feed (fresh, and revalidated to a 304), a poll whose answer the user
already holds (``If-None-Match`` → 304), and a bare endpoint returning constant JSON under
the same server settings (measured in rounds with the others). With Redis
(``TIDINGS_TEST_REDIS_URL``, as ``scripts/with-redis.sh`` sets it) a second server keeps
the widget's answers there, and GET notes, the 304 poll and POST reads are measured on it
too: the 304 is then answered without a query (``announcements.state_cache``). Prints the
median req/s, p50 and p99 and the ratio to the bare endpoint, and French GET notes against
default-language ones (by wrk, and by the CPU time each takes in process, batches of the
two taking turns), for SQLite and for PostgreSQL.

    make bench                      # both databases, the full sizes
    .venv/bin/python bench/widget_bench.py --db sqlite --users 100000 --receipts 1000000

PostgreSQL comes from TIDINGS_TEST_POSTGRES_URL (``make bench`` starts one with
scripts/with-postgres.sh, durable settings). wrk comes from Debian's packages.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import random
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis
from sqlalchemy import make_url
from sqlalchemy.orm import Session

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import common  # noqa: E402

from announcements import accounts, services, translations  # noqa: E402
from announcements.models import Category  # noqa: E402
from announcements.services import Intent, NoteInput, ProductSettings  # noqa: E402

BODY = """\
This release makes **reports faster** and easier to share.

- Export any chart as PNG or CSV
- Schedule a report to arrive every Monday
- Share a read-only link with people outside your workspace

See the [guide](https://docs.example.com/reports) for details.
"""
PLANS = ["free", "pro", "team", "enterprise"]
# What users type before they contact support: every note's body matches some of these
# words, so help ranks each user's ~190 unread notes, the most it will ever rank here.
QUERIES = [
    "export is empty",
    "csv export of a chart",
    "schedule a weekly report",
    "share a link with a client",
    "reports are slow",
]
TOPICS = [["export-csv"], ["scheduled-reports"], ["sharing"], []]
TRANSLATED_BODY = """\
Cette version rend les **rapports plus rapides** et plus faciles à partager.

- Exportez n'importe quel graphique en PNG ou CSV
- Programmez un rapport chaque lundi
- Partagez un lien en lecture seule hors de votre espace

Voir le [guide](https://docs.example.com/reports) pour les détails.
"""
# The language of even-numbered users; the others read the default, English.
OTHER_LANGUAGE = "fr"
SAMPLE_USERS = 20_000
# Users whose polls are revalidated (304), apart from those whose reads are posted, whose
# answers change as the benchmark goes.
REVALIDATED_USERS = 2_000


@dataclass(frozen=True)
class Seeded:
    widget_key: str
    secret: str
    note_ids: list[int]
    latest_version: str


def seed(url: str, users: int, receipts: int, notes: int, versions: int) -> Seeded:
    """Create the schema and fill it; print how long each part took."""
    engine = common.empty_schema(url)
    now = datetime.now(UTC)
    started = time.perf_counter()
    with Session(engine) as session:
        owner = accounts.create_member(session, "bench@example.com", secrets.token_hex(8))
        product = services.create_product(
            session, ProductSettings(name="Bench", slug="bench"), by=owner, now=now
        )
        translations.set_languages(session, product, "en", [OTHER_LANGUAGE], by=owner, now=now)
        per_version = max(1, notes // versions)
        categories = list(Category)
        note_ids = []
        for number in range(notes):
            audience = None
            if number % 10 == 3:
                audience = {
                    "match": "all",
                    "conditions": [{"attribute": "plan", "op": "in", "value": ["pro", "team"]}],
                }
            note = services.create_note(
                session,
                product,
                NoteInput(
                    version=f"1.{number // per_version}.0",
                    title=f"Release note {number}",
                    category=categories[number % len(categories)].value,
                    body_md=BODY,
                    is_important=number % 25 == 0,
                    audience=audience,
                    support_topics=TOPICS[number % len(TOPICS)],
                ),
                intent=Intent.PUBLISH,
                by=owner,
                now=now - timedelta(hours=notes - number),
            )
            note_ids.append(note.id)
            if number % 4 != 3:  # a quarter never translated: the chain falls back
                translations.save(
                    session,
                    note,
                    OTHER_LANGUAGE,
                    title=f"Note de version {number}",
                    body_md=TRANSLATED_BODY,
                    publish=number % 10 != 1,  # some drafts, which nobody is shown
                    by=owner,
                    now=now,
                )
        session.commit()
        seeded = Seeded(
            widget_key=product.widget_key,
            secret=product.identity_secret,
            note_ids=note_ids,
            latest_version=f"1.{(notes - 1) // per_version}.0",
        )
        product_id = product.id
    print(f"  {notes} notes over {versions} versions in {time.perf_counter() - started:.1f}s")

    dialect = engine.dialect.name
    first_seen = common.stamp(now - timedelta(days=400), dialect)
    last_seen = common.stamp(now, dialect)  # active users: seen within the hour
    read_at = common.stamp(now - timedelta(days=1), dialect)
    rng = random.Random(7)
    latest = seeded.latest_version  # what the host reports; the users run the latest release

    def user_rows():
        for number in range(1, users + 1):
            attributes = json.dumps({"plan": PLANS[number % len(PLANS)]})
            yield (
                number,
                product_id,
                f"user-{number}",
                attributes,
                OTHER_LANGUAGE if number % 2 == 0 else "en",
                latest,
                first_seen,
                last_seen,
            )

    per_user = receipts / users

    def receipt_rows():
        for number in range(1, users + 1):
            count = min(len(note_ids), int(rng.random() * 2 * per_user + 0.5))
            for note_id in sorted(rng.sample(note_ids, count)):
                yield (number, note_id, read_at, "widget")

    user_columns = (
        "id, product_id, external_id, attributes, locale, app_version, first_seen_at, last_seen_at"
    )
    started = time.perf_counter()
    with common.bulk_load(engine) as (raw, cursor):
        common.load_end_users(cursor, dialect, user_columns, user_rows(), users)
        raw.commit()
        print(f"  {users:,} end users in {time.perf_counter() - started:.1f}s")
        started = time.perf_counter()
        common.load_read_receipts(cursor, dialect, receipt_rows())
        raw.commit()
        count = cursor.execute("SELECT count(*) FROM read_receipt").fetchone()[0]
        print(f"  {count:,} read receipts in {time.perf_counter() - started:.1f}s")
    engine.dispose()
    return seeded


def _identity(seeded: Seeded, number: int) -> str:
    """The query that names user ``number`` with a valid hash."""
    user_id = f"user-{number}"
    user_hash = hmac.new(seeded.secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()
    return f"user_id={user_id}&user_hash={user_hash}"


def request_files(folder: Path, seeded: Seeded, users: int) -> tuple[Path, Path, Path, Path]:
    """GET paths of notes (English and French readers apart) and of help, and POST
    bodies, for a sample of users, each with a valid hash."""
    rng = random.Random(11)
    skipped = revalidated(users)
    paths, other_paths, help_paths, bodies = [], [], [], []
    for number in rng.sample(range(1, users + 1), min(SAMPLE_USERS, users)):
        if number in skipped:
            continue
        plan = PLANS[number % len(PLANS)]
        query = _identity(seeded, number)
        query += f"&version={seeded.latest_version}&attr.plan={plan}"
        if number % 2 == 0:
            # As the widget asks: the reader's language, the one stored for them.
            other_paths.append(
                f"/api/v1/widget/{seeded.widget_key}/notes?{query}&locale={OTHER_LANGUAGE}"
            )
        else:
            paths.append(f"/api/v1/widget/{seeded.widget_key}/notes?{query}")
            asked = urllib.parse.quote(rng.choice(QUERIES))
            help_paths.append(f"/api/v1/widget/{seeded.widget_key}/help?q={asked}&{query}")
        note_ids = rng.sample(seeded.note_ids, 2)
        user_id = f"user-{number}"
        user_hash = hmac.new(seeded.secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()
        bodies.append(
            json.dumps({"user_id": user_id, "user_hash": user_hash, "note_ids": note_ids})
        )
    get_file, post_file = folder / "get_paths.txt", folder / "post_bodies.txt"
    help_file, other_file = folder / "help_paths.txt", folder / "other_paths.txt"
    get_file.write_text("\n".join(paths) + "\n")
    other_file.write_text("\n".join(other_paths) + "\n")
    help_file.write_text("\n".join(help_paths) + "\n")
    post_file.write_text("\n".join(bodies) + "\n")
    return get_file, other_file, help_file, post_file


def revalidated(users: int) -> frozenset[int]:
    """The users whose polls are revalidated: none of the others' requests write for them,
    so their answers stay the same."""
    return frozenset(range(1, users + 1, max(1, users // REVALIDATED_USERS)))


def poll_file(folder: Path, seeded: Seeded, users: int, base: str) -> Path:
    """Paths of GET notes of the :func:`revalidated` users, each with the ETag of its
    answer, asked of the server at ``base`` once (which keeps it, when it has Redis)."""
    lines = []
    for number in sorted(revalidated(users)):
        query = f"{_identity(seeded, number)}&version={seeded.latest_version}"
        path = f"/api/v1/widget/{seeded.widget_key}/notes?{query}"
        with urllib.request.urlopen(base + path, timeout=10) as answer:  # noqa: S310 - loopback
            lines.append(f"{path} {answer.headers['ETag']}")
    file = folder / "poll_paths.txt"
    file.write_text("\n".join(lines) + "\n")
    return file


@dataclass(frozen=True)
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int
    cpu_us: float = 0.0  # the server's CPU time per request


TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def cpu_seconds(server: subprocess.Popen[bytes]) -> float:
    """The CPU time, user and system, that the server's workers have used so far.

    Throughput on a shared machine moves with everyone's load; the CPU time a request
    costs moves far less, so it is the figure that tells two ways of serving apart.
    """
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # After the command name in parentheses: state, ppid, ..., utime, stime.
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:  # the process ended meanwhile
            continue
        if int(fields[1]) == server.pid:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / TICKS_PER_SECOND


UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(value: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", value)
    if match is None:
        raise SystemExit(f"wrk printed a latency this script cannot read: {value}")
    return float(match.group(1)) * UNITS[match.group(2)]


def load(url: str, seconds: int, connections: int, script: list[str] | None = None) -> Result:
    """Drive ``url`` with wrk; ``script`` is a Lua file and its arguments, or wrk options."""
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script and script[0].endswith(".lua"):
        command += ["-s", script[0], url, "--", *script[1:]]
    else:
        command += [*(script or []), url]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    percentiles = dict(re.findall(r"^\s+(50|99)(?:\.000)?%\s+(\S+)$", output, re.MULTILINE))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    requests = int(re.search(r"(\d+) requests in", output).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: .*", output)
    if errors:
        print("  wrk:", errors.group(0))
    return Result(
        rps,
        _ms(percentiles["50"]),
        _ms(percentiles["99"]),
        int(bad.group(1)) if bad else 0,
        requests,
    )


def timed_load(
    server: subprocess.Popen[bytes], url: str, args: argparse.Namespace, script: list[str] | None
) -> Result:
    """:func:`load` for the scenario's length, with the server's CPU time per request."""
    before = cpu_seconds(server)
    result = load(url, args.seconds, args.connections, script)
    used = cpu_seconds(server) - before
    return replace(result, cpu_us=used / max(result.requests, 1) * 1_000_000)


def in_process(url: str, folder: Path, files: tuple[Path, Path], batches: int = 12) -> None:
    """The CPU time of a GET notes in the process that answers it, through the test
    client: default-language and French batches of users (200 each) taking turns, so the two
    are compared under the same load; on a busy machine wrk's throughput moves too much
    to tell a few per cent apart."""
    app = common.make_app(url, folder)
    client = app.test_client()
    default, other = ([line for line in file.read_text().split() if line] for file in files)

    def cpu_us(paths: list[str]) -> float:
        started = time.process_time()
        for path in paths:
            if client.get(path).status_code != 200:
                raise SystemExit(f"GET {path} failed")
        return (time.process_time() - started) / len(paths) * 1_000_000

    cpu_us(default[:100] + other[:100])  # warm the catalogue and the process
    size = max(1, min(200, len(default) // batches, len(other) // batches))
    pairs = [
        (cpu_us(default[start : start + size]), cpu_us(other[start : start + size]))
        for start in range(0, size * batches, size)
    ]
    first = statistics.median(a for a, _ in pairs)
    second = statistics.median(b for _, b in pairs)
    paired = statistics.median(b / a for a, b in pairs)
    print(
        f"  in process, CPU per GET notes: default {first:.0f} µs, {OTHER_LANGUAGE} "
        f"{second:.0f} µs: {second / first:.1%} (batch by batch {paired:.1%})"
    )


def measure(url: str, seeded: Seeded, users: int, args: argparse.Namespace, folder: Path) -> None:
    get_file, other_file, help_file, post_file = request_files(folder, seeded, users)
    in_process(url, folder, (get_file, other_file))
    port = common.free_port()
    server = common.serve(url, port, args.workers, args.threads)
    servers = [server]
    base = f"http://127.0.0.1:{port}"
    reads_path = f"/api/v1/widget/{seeded.widget_key}/reads"
    get_notes = [str(ROOT / "bench/get_notes.lua"), str(get_file)]
    try:
        feed_url = f"{base}/changelog/bench/feed.atom"
        with urllib.request.urlopen(feed_url, timeout=10) as answer:  # noqa: S310 - loopback
            feed_etag = answer.headers["ETag"]
        scenarios = {
            "bare": (server, f"{base}/bench/bare", None),
            "feed 200": (server, feed_url, None),
            "feed 304": (server, feed_url, ["-H", f"If-None-Match: {feed_etag}"]),
            "GET notes": (server, base, get_notes),
            f"GET notes {OTHER_LANGUAGE}": (
                server,
                base,
                [str(ROOT / "bench/get_notes.lua"), str(other_file)],
            ),
            "GET help": (server, base, [str(ROOT / "bench/get_notes.lua"), str(help_file)]),
            "POST reads": (
                server,
                base,
                [str(ROOT / "bench/post_reads.lua"), str(post_file), reads_path],
            ),
        }
        polls = poll_file(folder, seeded, users, base)
        scenarios["GET notes 304"] = (server, base, [str(ROOT / "bench/get_304.lua"), str(polls)])
        if redis_url := bench_redis():
            other = common.free_port()
            servers.append(
                common.serve(url, other, args.workers, args.threads, redis_url=redis_url)
            )
            kept = f"http://127.0.0.1:{other}"
            # Asked once, so each answer is kept: the polls below are answered from Redis.
            kept_polls = poll_file(folder, seeded, users, kept)
            scenarios["GET notes, Redis"] = (servers[-1], kept, get_notes)
            scenarios["GET notes 304, Redis"] = (
                servers[-1],
                kept,
                [str(ROOT / "bench/get_304.lua"), str(kept_polls)],
            )
            scenarios["POST reads, Redis"] = (
                servers[-1],
                kept,
                [str(ROOT / "bench/post_reads.lua"), str(post_file), reads_path],
            )
        # The same GET notes served with another state reader, by a server of its own.
        for reader in args.readers:
            other = common.free_port()
            servers.append(common.serve(url, other, args.workers, args.threads, reader))
            scenarios[f"GET {reader}"] = (servers[-1], f"http://127.0.0.1:{other}", get_notes)
        for _, target, script in scenarios.values():  # warm the workers and their caches
            load(target, 3, args.connections, script)
        # Rounds of every scenario in turn, so a noisy moment on a shared machine hits
        # them all alike, every other round in the reverse order, so no scenario always
        # follows the same one; each figure is the median of its rounds.
        runs: dict[str, list[Result]] = {name: [] for name in scenarios}
        for number in range(args.rounds):
            order = list(scenarios.items())
            for name, (serving, target, script) in order[:: -1 if number % 2 else 1]:
                runs[name].append(timed_load(serving, target, args, script))
    finally:
        for running in servers:
            running.terminate()
            running.wait(timeout=30)
    results = {name: _median(found) for name, found in runs.items()}
    baseline = results["bare"].rps
    print(
        f"  {'endpoint':<21} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'vs bare':>7} "
        f"{'CPU µs/req':>10} {'errors':>6}   req/s of each round"
    )
    for name, result in results.items():
        rounds = " ".join(f"{run.rps:.0f}" for run in runs[name])
        print(
            f"  {name:<21} {result.rps:>7.0f} {result.p50_ms:>7.2f} {result.p99_ms:>7.2f} "
            f"{result.rps / baseline:>7.0%} {result.cpu_us:>10.0f} {result.errors:>6}   {rounds}"
        )
    # The two GET notes side by side: the ratio of their medians, and the median of their
    # ratios round by round (a round's two runs came close together, under the same load).
    default, other = runs["GET notes"], runs[f"GET notes {OTHER_LANGUAGE}"]
    paired = statistics.median(b.rps / a.rps for a, b in zip(default, other, strict=True))
    first, second = results["GET notes"], results[f"GET notes {OTHER_LANGUAGE}"]
    print(
        f"  GET notes in {OTHER_LANGUAGE} vs the default language (the bar: within 5 %): "
        f"req/s {second.rps / first.rps:.1%} (round by round {paired:.1%}), "
        f"CPU per request {second.cpu_us / first.cpu_us:.1%}, "
        f"p50 {second.p50_ms / first.p50_ms:.1%}"
    )


def bench_redis() -> str | None:
    """A Redis database of the benchmark's own, emptied, on the server scripts/with-redis.sh
    started; None without one. Emptied for each database: both seed product 1, and the
    stamps kept of the first would outrank the second's."""
    url = os.environ.get("TIDINGS_TEST_REDIS_URL")
    if not url:
        print("  Redis: skipped, TIDINGS_TEST_REDIS_URL is not set (scripts/with-redis.sh)")
        return None
    url = url.rsplit("/", 1)[0] + "/1"
    redis.Redis.from_url(url).flushdb()
    return url


def _median(results: list[Result]) -> Result:
    return Result(
        rps=statistics.median(r.rps for r in results),
        p50_ms=statistics.median(r.p50_ms for r in results),
        p99_ms=statistics.median(r.p99_ms for r in results),
        errors=sum(r.errors for r in results),
        requests=sum(r.requests for r in results),
        cpu_us=statistics.median(r.cpu_us for r in results),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--receipts", type=int, default=10_000_000)
    parser.add_argument("--notes", type=int, default=200)
    parser.add_argument("--versions", type=int, default=40)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--readers",
        type=lambda names: [name for name in names.split(",") if name],
        default=["core", "reference"],
        help="state readers to serve GET notes with too, beside the app's (comma-separated)",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install wrk (make bench installs it)")
    databases = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    print(
        f"gunicorn gthread, {args.workers} workers x {args.threads} threads; wrk 2 threads, "
        f"{args.connections} connections, {args.rounds} rounds of {args.seconds}s; "
        f"{os.cpu_count()} CPUs"
    )
    with tempfile.TemporaryDirectory(prefix="tidings-bench-") as scratch:
        folder = Path(scratch)
        for database in databases:
            if database == "sqlite":
                url = f"sqlite:///{folder / 'bench.db'}"
            else:
                admin = os.environ.get("TIDINGS_TEST_POSTGRES_URL")
                if not admin:
                    print("PostgreSQL: skipped, TIDINGS_TEST_POSTGRES_URL is not set (make bench)")
                    continue
                # The app reaches PostgreSQL through its Unix socket, as on a single host;
                # on this kind of VM a loopback TCP round trip costs twice as much.
                url = (
                    make_url(admin)
                    .set(database="postgres", host=None, port=None)
                    .update_query_dict(
                        {
                            "host": os.environ["TIDINGS_TEST_POSTGRES_SOCKET"],
                            "port": str(make_url(admin).port),
                        }
                    )
                    .render_as_string(False)
                )
            print(f"{database}:")
            seeded = seed(url, args.users, args.receipts, args.notes, args.versions)
            measure(url, seeded, args.users, args, folder)


if __name__ == "__main__":
    main()
