"""Input whose cost grows with the square of its length, to Python-Markdown, to bleach or
to the changelog reader: each is rendered or refused with a clear message, within a bound.

Before the bound, on the 2-core test machine (bench/render_bench.py has the figures):
"[" * 8000 took 8 s to render and "[a](" over 100 KB 128 s; the reader took 20 s over a
release heading that ends in 20 KB of spaces and tabs. Renders now run in a worker that
stops them after ``rendering.CPU_SECONDS`` of CPU time, so the tests here assert what a
user gets, never a duration; the reader runs under a CPU-time limit (not a clock) fifty
times what it needs and a small part of what it took.
"""

from __future__ import annotations

import contextlib
import io
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from announcements import apikeys, importing, rendering
from announcements.errors import ValidationFailed
from announcements.models import Note, utcnow
from tests.conftest import SHARED_TESTDATA, csrf_token
from tests.factories import make_note, make_product
from tests.test_console import _note_form, editor_on_acme  # noqa: F401 - a fixture used here
from tests.test_rendering import policy_violations

LIMIT = importing.MAX_BODY_BYTES


def fill(unit: str, size: int = LIMIT) -> str:
    """``unit`` repeated to ``size`` characters."""
    return (unit * (size // len(unit) + 1))[:size]


# At least ten times the budget on this machine, so refused wherever Tidings runs.
FAR_OVER = {
    "8,000 brackets": "[" * 8000,
    "link openers": fill("[a]("),
    "autolink openers": fill("<http://"),
    "unclosed tags": fill("<a"),
    "nested list tags": fill("<ul><li>"),
    "bold tags": fill("<b>"),
}
# Each run that Python-Markdown or bleach reads with backtracking or nesting, at the limit.
FAMILIES = {
    "brackets": fill("["),
    "image openers": fill("!["),
    "references": fill("[a]: "),
    "emphasis runs": fill("*a"),
    "strong emphasis runs": fill("***a"),
    "underscores": fill("_a"),
    "mixed emphasis": fill("*_"),
    "emphasis words": fill("**a* "),
    "code spans": fill("`a"),
    "fences": fill("```\n"),
    "nested lists": "".join("  " * depth + "- x\n" for depth in range(2000))[:LIMIT],
    "nested ordered lists": "".join("    " * depth + "1. x\n" for depth in range(1000))[:LIMIT],
    "nested quotes": fill(">", LIMIT - 2) + " x",
    "quotes of lists": fill("> - "),
    "quote ladder": "".join(">" * depth + " x\n" for depth in range(400))[:LIMIT],
    "unclosed comments": fill("<!--"),
    "long line of whitespace": "a" + fill(" \t", LIMIT - 1),
    "heading and whitespace": "# a" + fill(" \t", LIMIT - 4) + "b",
    "entities": fill("&#"),
    "ampersands": fill("&"),
    "open angles": fill("<"),
    "blockquote tags": fill("<blockquote>"),
    "details tags": fill("<details>"),
    "table tags": fill("<table><tr><td>"),
    "backslashes": fill("\\"),
    # What the extensions for changelogs read: bare addresses, tildes, task boxes, and
    # lists nested by relative indents.
    "bare addresses": fill("http://a "),
    "bare address runs": fill("https://a.b/" + "(" * 20),
    "www addresses": fill("www.a "),
    "www runs": fill("www."),
    "e-mail addresses": fill("a@b.co "),
    "e-mail runs": fill("a.b@"),
    "tildes": fill("~~a"),
    "lone tildes": fill("~"),
    "task boxes": fill("- [ ] [x] "),
    "nested task lists": "".join("  " * (depth % 40) + "- [x] a\n" for depth in range(10_000))[
        :LIMIT
    ],
    "zigzag indents": "".join(" " * (depth * 7 % 23) + "- x\n" for depth in range(20_000))[:LIMIT],
    "items under lines": fill("a\n- b\n"),
}


@pytest.mark.parametrize("body", FAR_OVER.values(), ids=FAR_OVER.keys())
def test_markdown_far_over_the_budget_is_refused_with_a_clear_message(body: str) -> None:
    with pytest.raises(rendering.TooIntricate) as refused:
        rendering.render(body)
    assert "takes too long to format" in refused.value.errors["body_md"]


@pytest.mark.parametrize("body", FAMILIES.values(), ids=FAMILIES.keys())
def test_each_costly_kind_of_markdown_renders_safely_or_is_refused(body: str) -> None:
    try:
        html = rendering.render(body)
    except rendering.TooIntricate as refused:
        assert "takes too long to format" in refused.errors["body_md"]
    else:
        assert not policy_violations(html)


def test_an_honest_body_at_the_limit_renders() -> None:
    changelogs = sorted((SHARED_TESTDATA / "changelogs").glob("*CHANGELOG.md"))
    if not changelogs:
        pytest.skip("the real changelogs in ../shared/testdata/changelogs/ are absent")
    text = "\n\n".join(path.read_text(encoding="utf-8") for path in changelogs)
    body = text.encode()[:LIMIT].decode(errors="ignore")
    assert "<h2>" in rendering.render(body)


def test_a_budget_bounds_a_series_of_renders_and_the_next_render_still_works() -> None:
    honest = fill("Some *text* and a [link](https://example.com).\n\n", 20_000)
    budget = rendering.Budget(10.0)
    assert rendering.render(honest, budget).startswith("<p>Some <em>text</em>")
    assert 0 < budget.seconds < 10
    with pytest.raises(rendering.TooIntricate):
        rendering.render("**a**", rendering.Budget(0))
    # The body needs more CPU time than this: its worker stops it.
    with pytest.raises(rendering.TooIntricate):
        rendering.render(honest, rendering.Budget(0.001))
    assert rendering.render("*b*") == "<p><em>b</em></p>"


def test_renders_in_parallel_each_get_their_own_answer() -> None:
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda n: rendering.render(f"**{n}**"), range(40)))
    assert answers == [f"<p><strong>{n}</strong></p>" for n in range(40)]


def count_notes(session) -> int:
    return session.scalar(select(func.count()).select_from(Note))


def test_the_api_refuses_a_body_too_long_to_format_and_saves_nothing(client, session) -> None:
    product = make_product(session, slug="acme")
    note = make_note(session, product, body_md="Before.")
    _, raw = apikeys.create(session, product, "ci", ["notes:write"], by=None, now=utcnow())
    headers = {"Authorization": f"Bearer {raw}"}
    body = {"version": "2.0.0", "title": "Brackets", "category": "Added", "body_md": "[" * 8000}
    created = client.post("/api/v1/products/acme/notes", headers=headers, json=body)
    assert created.status_code == 422
    assert "takes too long to format" in created.json["errors"]["body_md"]
    assert count_notes(session) == 1
    edited = client.patch(
        f"/api/v1/products/acme/notes/{note.id}", headers=headers, json={"body_md": "[" * 8000}
    )
    assert edited.status_code == 422 and "body_md" in edited.json["errors"]
    session.expire_all()
    assert (note.body_md, note.body_html) == ("Before.", "<p>Before.</p>")


@pytest.mark.usefixtures("editor_on_acme")
def test_the_editor_shows_the_refusal_beside_the_body_and_saves_nothing(client, session) -> None:
    form = _note_form(client, body_md="[" * 8000)
    response = client.post("/console/p/acme/notes/new", data=form)
    assert response.status_code == 422
    assert "takes too long to format" in response.get_data(as_text=True)
    assert count_notes(session) == 0


@pytest.mark.usefixtures("editor_on_acme")
def test_the_preview_says_why_it_shows_nothing(client) -> None:
    # What the browser's fetch() sends with the editor's request.
    headers = {"X-CSRFToken": csrf_token(client), "Sec-Fetch-Dest": "empty"}
    response = client.post("/console/p/acme/preview", data={"body_md": "[" * 8000}, headers=headers)
    assert response.status_code == 422
    assert "takes too long to format" in response.json["error"]


def test_an_import_whose_release_takes_too_long_to_format_writes_nothing(client, session) -> None:
    product = make_product(session, slug="acme")
    _, raw = apikeys.create(session, product, "ci", ["import"], by=None, now=utcnow())
    text = "## 1.1.0\n- " + "[" * 8000 + "\n\n## 1.0.0\n- Fine\n"
    response = client.post(
        "/api/v1/products/acme/import",
        headers={"Authorization": f"Bearer {raw}"},
        data={"file": (io.BytesIO(text.encode()), "CHANGELOG.md")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 422
    assert "Release 1.1.0 (line 1) takes too long to format" in response.json["errors"]["file"]
    assert count_notes(session) == 0


@contextlib.contextmanager
def cpu_limit(seconds: float) -> Iterator[None]:
    """Fail once this block has used ``seconds`` of its thread's CPU time.

    The verdict counts this thread only: the worker running the test may also run a live
    server for other tests, whose threads' time is not the reader's. The process's CPU
    timer stops the block at ten times that, so a pattern that would run for minutes
    fails the test rather than holding the suite."""

    def stop(_signal: int, _frame: object) -> None:
        raise TimeoutError(f"over {10 * seconds} s of the process's CPU time")

    previous = signal.signal(signal.SIGPROF, stop)
    signal.setitimer(signal.ITIMER_PROF, 10 * seconds)
    started = time.thread_time()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)
    used = time.thread_time() - started
    assert used < seconds, f"{used:.2f} s of CPU time, over {seconds} s"


# Each took the old patterns 1 s to 20 s on this machine; each is read in under 0.02 s.
READER_INPUTS = {
    "the brief's heading": "# a" + " \t" * 5000,
    "a heading that goes on after its whitespace": "# a" + " \t" * 10000 + "b",
    "a release heading that does": "## 1.0.0" + fill(" \t", 20_000) + "x",
    "unclosed comments": "<!--" * 25000,
    "a bullet of brackets": "## 1.0.0\n### Added\n- " + fill("[", 50_000) + "\n",
    "a section name of digits": "## 1.0.0\n### " + fill("1", 50_000) + "a\n- x\n",
    "release-please headings": "## 1.0.0\n### Features\n- x\n" + fill("## [\n", 50_000),
    "links and releases": "".join(f"## 1.0.{n}\n- [l{n}]\n" for n in range(1000))
    + "".join(f"[l{n}]: https://example.com/{n}\n" for n in range(1000)),
}


@pytest.mark.parametrize("text", READER_INPUTS.values(), ids=READER_INPUTS.keys())
def test_the_changelog_reader_takes_time_in_proportion_to_the_file(session, text: str) -> None:
    product = make_product(session)
    with cpu_limit(1.0):
        try:
            importing.import_changelog(session, product, text, dry_run=True, by=None, now=utcnow())
        except ValidationFailed as refused:  # the bullet of brackets is too long to format
            assert "takes too long to format" in refused.errors["file"]
