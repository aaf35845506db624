"""Render, preview and import times of input whose cost grows with the square of its
length, before the bound and after it, in the same run.

Before: the baseline commit's rendering and changelog modules (read with ``git show``),
unbounded, each input in a forked process stopped at ``--cap`` seconds of CPU time; the
import column is the old importer's CPU work without the database (read the file, make
each release's title and body, render it). After: this tree, as a user meets it: a render,
the editor's preview through the app, and an import into a SQLite database, with what came
of it (rendered, imported or refused). Both give CPU time, that of the render workers
included, which other work on the machine does not stretch; after also gives wall time.

    .venv/bin/python bench/render_bench.py                     # every input, about 15 minutes
    .venv/bin/python bench/render_bench.py --only "8,000" --cap 20
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import common  # noqa: E402

from announcements import accounts, importing, rendering, services  # noqa: E402
from announcements.errors import ValidationFailed  # noqa: E402
from announcements.models import Product, utcnow  # noqa: E402
from announcements.services import ProductSettings  # noqa: E402
from app.extensions import db  # noqa: E402

# The last commit whose renders and imports ran unbounded.
BASELINE = "3d74d69"
CHANGELOGS = ROOT.parent / "shared" / "testdata" / "changelogs"
LIMIT = importing.MAX_BODY_BYTES
PASSWORD = "bench password 1"  # noqa: S105 - a throw-away account


def fill(unit: str, size: int = LIMIT) -> str:
    return (unit * (size // len(unit) + 1))[:size]


# Note bodies: the audit's brackets (issue 12) at three sizes, then each kind of run that
# Python-Markdown or bleach reads with backtracking or nesting, at the body limit.
BODIES = {
    "2,000 [": "[" * 2000,
    "4,000 [": "[" * 4000,
    "8,000 [": "[" * 8000,
    "[ to the limit": fill("["),
    "![": fill("!["),
    "[a](": fill("[a]("),
    "<http://": fill("<http://"),
    "*a": fill("*a"),
    "***a": fill("***a"),
    "**a* ": fill("**a* "),
    "`a": fill("`a"),
    "``` lines": fill("```\n"),
    "nested lists": "".join("  " * depth + "- x\n" for depth in range(2000))[:LIMIT],
    "nested quotes": fill(">", LIMIT - 2) + " x",
    "quotes of lists": fill("> - "),
    "unclosed <!--": fill("<!--"),
    "whitespace line": "a" + fill(" \t", LIMIT - 1),
    "<a": fill("<a"),
    "<b>": fill("<b>"),
    "<ul><li>": fill("<ul><li>"),
    "<details>": fill("<details>"),
    "&": fill("&"),
    "\\": fill("\\"),
    # What the extensions for changelogs read (issue 13): bare addresses, strikethrough,
    # task lists, nesting by relative indents, lists right below a line of text.
    "http://a ": fill("http://a "),
    "www.a ": fill("www.a "),
    "a@b.co ": fill("a@b.co "),
    "~~a": fill("~~a"),
    "- [ ] ": fill("- [ ] "),
    "zigzag indents": "".join(" " * (n * 7 % 23) + "- x\n" for n in range(20_000))[:LIMIT],
    "a\\n- b": fill("a\n- b\n"),
}
# Changelog files that the old reader's patterns read in time that grows with the square.
FILES = {
    "# a + 5,000 ' \\t'": "# a" + " \t" * 5000,
    "# a + 20 KB ' \\t' + b": "# a" + fill(" \t", 20_000) + "b",
    "8,000 unclosed <!--": "<!--" * 8000,
    "release + 20 KB ' \\t'": "## 1.0.0" + fill(" \t", 20_000) + "x",
    "bullet of 50 KB [": "## 1.0.0\n### Added\n- " + fill("[", 50_000) + "\n",
    "release of 8,000 [": "## 1.0.0\n\n" + "[" * 8000 + "\n",
}


def baseline_modules(revision: str) -> tuple[types.ModuleType, types.ModuleType]:
    """The baseline's rendering and changelog modules, read from git."""
    loaded = []
    for name in ("rendering", "changelog"):
        source = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{revision}:announcements/{name}.py"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        module = types.ModuleType(f"baseline_{name}")
        sys.modules[module.__name__] = module  # dataclasses look their module up
        exec(compile(source, f"{revision}:announcements/{name}.py", "exec"), module.__dict__)  # noqa: S102
        loaded.append(module)
    return loaded[0], loaded[1]


def _old_import(old: tuple[types.ModuleType, types.ModuleType], text: str) -> None:
    rendering_then, changelog_then = old
    parsed = changelog_then.parse(text)
    for release in parsed.releases:
        body = release.body(parsed.links)
        release.fingerprint(body)
        rendering_then.render(body)


def _measure(work: Callable[[], object], cap: float, answer: Connection) -> None:
    # SIGPROF's default action ends the process once it has used ``cap`` of CPU time.
    signal.signal(signal.SIGPROF, signal.SIG_DFL)
    signal.setitimer(signal.ITIMER_PROF, cap)
    started = time.process_time()
    work()
    answer.send(time.process_time() - started)


def before(work: Callable[[], object], cap: float) -> str:
    """CPU seconds ``work`` takes in a forked process, or "> cap" when it was stopped."""
    context = multiprocessing.get_context("fork")
    reader, writer = context.Pipe(duplex=False)
    child = context.Process(target=_measure, args=(work, cap, writer))
    child.start()
    writer.close()
    try:
        seconds: float = reader.recv()
    except EOFError:
        return f">{cap:.0f} s"
    finally:
        child.join()
    return f"{seconds:.3f} s"


def cpu_seconds() -> float:
    """The CPU time of this process and of its render workers, read from /proc."""
    total = time.process_time()
    for worker in multiprocessing.active_children():
        try:
            stat = Path(f"/proc/{worker.pid}/stat").read_text()
        except OSError:
            continue
        # After the command name: utime and stime are the 12th and 13th fields.
        fields = stat.rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def after(work: Callable[[], str]) -> str:
    """CPU and wall seconds of ``work``, and what came of it."""
    cpu, wall = cpu_seconds(), time.perf_counter()
    outcome = work()
    cpu, wall = cpu_seconds() - cpu, time.perf_counter() - wall
    return f"{cpu:.2f} s ({wall:.2f} s wall) {outcome}"


def render_now(body: str) -> str:
    try:
        rendering.render(body)
    except rendering.TooIntricate:
        return "refused"
    return "rendered"


def preview_now(client: FlaskClient, body: str) -> str:
    answer = client.post("/console/p/bench/preview", data={"body_md": body})
    return "rendered" if answer.status_code == 200 else f"refused ({answer.status_code})"


def import_into(app: Flask, number: int) -> Callable[[str], str]:
    """An import of a file into a new product of its own, made before the clock starts."""
    with app.app_context():
        owner = accounts.create_member(db.session, f"import{number}@example.com", PASSWORD)
        settings = ProductSettings(name=f"Import {number}", slug=f"import-{number}")
        product_id = services.create_product(db.session, settings, by=owner, now=utcnow()).id
        db.session.remove()

    def import_now(text: str) -> str:
        with app.app_context():
            product = db.session.get_one(Product, product_id)
            try:
                report = importing.import_changelog(
                    db.session, product, text, publish=True, by=None, now=utcnow()
                )
            except ValidationFailed:
                return "refused"
            finally:
                db.session.remove()
        return f"imported ({report.summary or 'no release'})"

    return import_now


def the_app(folder: Path) -> tuple[Flask, FlaskClient]:
    url = f"sqlite:///{folder / 'bench.db'}"
    common.empty_schema(url).dispose()
    app = common.make_app(url, folder)
    with app.app_context():
        editor = accounts.create_member(db.session, "pm@example.com", PASSWORD)
        settings = ProductSettings(name="Bench", slug="bench")
        services.create_product(db.session, settings, by=editor, now=utcnow())
        db.session.remove()
    client = app.test_client()
    client.post("/console/login", data={"email": "pm@example.com", "password": PASSWORD})
    return app, client


def real_changelogs() -> str:
    """The real changelogs in ../shared/testdata, cut at the body limit: honest work."""
    text = "\n\n".join(path.read_text() for path in sorted(CHANGELOGS.glob("*CHANGELOG.md")))
    return text.encode()[:LIMIT].decode(errors="ignore")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default=BASELINE, help="the commit measured as before")
    parser.add_argument("--cap", type=float, default=30, help="CPU seconds a before run gets")
    parser.add_argument("--only", help="inputs whose name holds this text")
    options = parser.parse_args()
    old = baseline_modules(options.baseline)
    rendering.render("warm up")  # the worker's server starts once per process
    print(f"before: {options.baseline}, CPU time, stopped at {options.cap:.0f} s")
    print(f"after: this tree; a render may use {rendering.CPU_SECONDS} s of CPU")
    print(f"load average at the start: {os.getloadavg()[0]:.2f}")
    header = ("input", "KB", "render before", "render after", "preview after")
    print(f"\n{header[0]:24} {header[1]:>6}  {header[2]:>14}  {header[3]:34}  {header[4]}")
    bodies = BODIES | ({"real changelogs": real_changelogs()} if CHANGELOGS.is_dir() else {})
    with tempfile.TemporaryDirectory() as folder:
        app, client = the_app(Path(folder))
        for name, body in bodies.items():
            if options.only and options.only not in name:
                continue
            then = before(lambda body=body: old[0].render(body), options.cap)
            now = after(lambda body=body: render_now(body))
            shown = after(lambda body=body: preview_now(client, body))
            print(f"{name:24} {len(body) / 1024:6.1f}  {then:>14}  {now:34}  {shown}", flush=True)
        header = ("file", "KB", "import before", "import after")
        print(f"\n{header[0]:24} {header[1]:>6}  {header[2]:>14}  {header[3]}")
        for number, (name, text) in enumerate(FILES.items()):
            if options.only and options.only not in name:
                continue
            then = before(lambda text=text: _old_import(old, text), options.cap)
            import_now = import_into(app, number)
            now = after(lambda text=text, import_now=import_now: import_now(text))
            print(f"{name:24} {len(text) / 1024:6.1f}  {then:>14}  {now}", flush=True)
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
