"""Importing changelogs: the 11 real files in ../shared/testdata/changelogs/, each release
heading a version and each bullet in a note, counted here without the importer's parser;
a second import changing nothing; an edited entry updating its note; git-cliff's JSON;
crafted files answered with a 4xx; other writers and a second import of the same file
going through while an import runs."""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import re
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from sqlalchemy import func, make_url, select
from sqlalchemy.exc import OperationalError
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from announcements import apikeys, importing, note_rules, rendering, services, versions, webhooks
from announcements.errors import ValidationFailed
from announcements.importing import Action
from announcements.models import (
    AuditEvent,
    Category,
    EndUser,
    Note,
    NoteStatus,
    OutboxMessage,
    WebhookDelivery,
    utcnow,
)
from announcements.note_rules import NoteInput
from app import database
from tests.browser import serve
from tests.conftest import SHARED_TESTDATA
from tests.factories import make_product
from tests.test_widget_api import user_hash

CHANGELOGS = SHARED_TESTDATA / "changelogs"
FILES = sorted(p.name for p in CHANGELOGS.glob("*.md") if p.name != "SOURCES.md")
needs_changelogs = pytest.mark.skipif(
    len(FILES) != 11, reason="the 11 real changelogs in ../shared/testdata/changelogs/ are absent"
)

# The independent count: a level-2 heading outside code that holds a dotted number and
# is not [Unreleased] is a release; every list item below it, up to the next level-2
# heading, is one of its entries.
_VERSIONED = re.compile(r"^## (?!.*unreleased).*?\bv?(\d+\.\d+(?:\.\d+)?\S*?)[\]\s)]", re.I)


def releases_and_bullets(text: str) -> tuple[list[str], list[tuple[str, str]]]:
    found: list[str] = []
    bullets: list[tuple[str, str]] = []
    current: str | None = None
    in_code = False
    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            in_code = not in_code
            continue
        if in_code:
            continue
        if line.startswith("## "):
            match = _VERSIONED.match(line + " ")
            current = match.group(1) if match else None
            if current:
                found.append(current)
            continue
        item = re.match(r"^\s*[-*+]\s+(.*\S)", line)
        if item and current:
            bullets.append((current, item.group(1)))
    return found, bullets


def read(name: str) -> str:
    return (CHANGELOGS / name).read_text(encoding="utf-8")


def run(session, product, text: str, **options):
    return importing.import_changelog(session, product, text, by=None, now=utcnow(), **options)


def notes_of(session, product) -> list[Note]:
    return list(session.scalars(select(Note).where(Note.product_id == product.id)))


@needs_changelogs
@pytest.mark.parametrize("name", FILES)
def test_every_release_and_every_bullet_of_a_real_changelog_is_imported(session, name: str) -> None:
    text = read(name)
    expected, bullets = releases_and_bullets(text)
    assert expected, "the independent count found no release"
    product = make_product(session)

    report = run(session, product, text, publish=True)

    notes = notes_of(session, product)
    assert len(notes) == len(expected) == report.count(Action.CREATE)
    assert sorted(versions.parse(n.version) for n in notes) == sorted(
        versions.parse(v) for v in expected
    )
    by_version = {str(versions.parse(n.version)): n.body_md for n in notes}
    for version, bullet in bullets:
        body = by_version[str(versions.parse(version))]
        assert bullet in body, f"{version}: {bullet!r} is in no note"
    assert all(n.status_at(utcnow()) is not NoteStatus.DRAFT for n in notes)
    assert not any(n.email_subscribers for n in notes)

    again = run(session, product, text, publish=True)
    assert not again.changed
    assert again.count(Action.UNCHANGED) == len(expected)
    assert len(notes_of(session, product)) == len(expected)


@needs_changelogs
def test_release_dates_titles_and_categories(session) -> None:
    product = make_product(session)
    run(session, product, read("olivierlacan__keep-a-changelog__CHANGELOG.md"), publish=True)
    note = session.scalar(select(Note).where(Note.version == "1.1.0"))
    assert note.published_at == datetime(2019, 2, 15, tzinfo=UTC)
    assert note.title == "3 new, 2 fixed"
    assert note.category is Category.ADDED
    assert "### Added" in note.body_md and "### Fixed" in note.body_md
    # Reference links keep their definitions, even those written far from the release.
    run(session, product, read("cyphar__filepath-securejoin__CHANGELOG.md"), publish=True)
    note = session.scalar(select(Note).where(Note.version == "0.5.0"))
    assert 'href="https://github.com/cyphar/libpathrs"' in note.body_html
    assert "[COPYING.md]: ./COPYING.md" in note.body_md


@needs_changelogs
def test_an_edited_entry_updates_its_note_and_nothing_else(session) -> None:
    product = make_product(session)
    text = read("hynek__svcs__CHANGELOG.md")
    run(session, product, text, publish=True)
    before = {n.version: n.updated_at for n in notes_of(session, product)}
    head, heading, rest = text.partition("## [23.9.0]")
    edited = head + heading + rest.replace("### Added", "### Added\n\n- A line added by hand.", 1)
    report = run(session, product, edited, publish=True)
    updated = [c.version for c in report.changes if c.action is Action.UPDATE]
    assert updated == ["23.9.0"] and report.count(Action.CREATE) == 0
    note = session.scalar(select(Note).where(Note.version == updated[0]))
    assert "A line added by hand." in note.body_md
    assert note.published_at is not None
    after = {n.version: n.updated_at for n in notes_of(session, product)}
    assert [v for v in after if after[v] != before[v]] == updated


@needs_changelogs
def test_a_dry_run_reports_and_writes_nothing(session) -> None:
    product = make_product(session)
    report = run(session, product, read("rust-lang__log__CHANGELOG.md"), dry_run=True)
    assert report.count(Action.CREATE) == 1
    assert notes_of(session, product) == []
    reasons = [p.reason for p in report.problems]
    assert any("[Unreleased] was skipped" in r for r in reasons)
    assert any("names no version" in r for r in reasons)  # "## Older"
    assert session.scalar(select(func.count()).select_from(AuditEvent)) == 1  # the creation


def test_unreleased_is_imported_only_when_given_a_version(session) -> None:
    product = make_product(session)
    text = "## [Unreleased]\n### Added\n- Dark mode\n\n## [1.0.0] - 2024-01-02\n- First\n"
    assert run(session, product, text, dry_run=True).count(Action.CREATE) == 1
    report = run(session, product, text, unreleased_as="1.1.0", publish=True)
    assert report.count(Action.CREATE) == 2
    upcoming = session.scalar(select(Note).where(Note.version == "1.1.0"))
    assert upcoming.title == "Dark mode"
    assert upcoming.published_at is None  # not released yet: a draft, even with publish


def test_drafts_keep_their_release_date_when_published_later(session) -> None:
    product = make_product(session)
    run(session, product, "## 2.0.0 - 2023-05-06\n### Fixed\n- Crash on start\n")
    note = session.scalar(select(Note))
    assert note.status_at(utcnow()) is NoteStatus.DRAFT
    services.publish(session, note, by=None, now=utcnow())
    assert note.published_at == datetime(2023, 5, 6, tzinfo=UTC)


def test_closed_headings_yanked_releases_nested_bullets_and_odd_sections(session) -> None:
    text = """# Changelog #

## [0.3.0] - 2024-03-01 [YANKED] ##
### Breaking ####
- Renamed `open` to `open_file`
  - the old name is gone
### Performance Stuff
* Faster lookups

## 0.2.0 (2024-02-01)
### 🐛 Bug Fixes
- **parser:** handle tabs ([#12](https://example.com/12)) ([abcdef1](https://example.com/c))
"""
    product = make_product(session)
    report = run(session, product, text, publish=True)
    assert report.count(Action.CREATE) == 2
    yanked = session.scalar(select(Note).where(Note.version == "0.3.0"))
    assert yanked.title == "2 changed (yanked)"
    assert yanked.is_important  # a breaking change
    assert "the old name is gone" in yanked.body_md
    assert any("Performance Stuff" in p.text for p in report.problems)
    fix = session.scalar(select(Note).where(Note.version == "0.2.0"))
    assert fix.title == "parser: handle tabs"
    assert fix.category is Category.FIXED
    assert fix.published_at == datetime(2024, 2, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("heading", "released"),
    [
        ("## 1.4.0 - March 3, 2024", datetime(2024, 3, 3, tzinfo=UTC)),
        ("## [1.4.0] - 3rd Mar 2024", datetime(2024, 3, 3, tzinfo=UTC)),
        ("## 1.4.0 (Sept. 14, 2023)", datetime(2023, 9, 14, tzinfo=UTC)),
        ("## 1.4.0 — 14 September 2023", datetime(2023, 9, 14, tzinfo=UTC)),
        ("## 1.4.0 / 2023/09/14", datetime(2023, 9, 14, tzinfo=UTC)),
        ("## 1.4.0 - Smarch 3, 2024", None),
    ],
)
def test_release_dates_written_in_words(session, heading: str, released) -> None:
    product = make_product(session)
    report = run(session, product, f"{heading}\n### Added\n- Dark mode\n", publish=True)
    [note] = notes_of(session, product)
    assert note.version == "1.4.0" and note.title == "Dark mode"
    if released is None:  # not a date: imported undated, and said so
        assert any("Smarch 3, 2024" in problem.text for problem in report.problems)
        assert note.published_at != datetime(2024, 3, 3, tzinfo=UTC)
    else:
        assert report.problems == []
        assert note.published_at == released


def test_git_cliff_context_json(session) -> None:
    context = [
        {
            "version": None,
            "commits": [{"message": "wip", "group": "Features"}],
            "timestamp": 0,
        },
        {
            "version": "v1.2.0",
            "timestamp": 1700000000,
            "commits": [
                {
                    "id": "a1",
                    "message": "add export\n\nlong body",
                    "group": "<!-- 0 -->🚀 Features",
                    "scope": "cli",
                    "breaking": False,
                },
                {"id": "a2", "message": "drop python 3.8", "group": "Features", "breaking": True},
                {"id": "a3", "message": "fix crash", "group": "🐛 Bug Fixes", "scope": None},
            ],
            "previous": {"version": "v1.1.0"},
        },
    ]
    product = make_product(session)
    report = run(session, product, json.dumps(context), publish=True)
    assert report.format == "git-cliff context (JSON)"
    assert report.count(Action.CREATE) == 1
    note = session.scalar(select(Note))
    assert note.version == "v1.2.0"
    assert note.published_at == datetime.fromtimestamp(1700000000, UTC).replace(
        hour=0, minute=0, second=0
    )
    assert "- **cli:** add export" in note.body_md
    assert "[**breaking**] drop python 3.8" in note.body_md
    assert "### Bug Fixes" in note.body_md
    assert note.is_important
    assert any("unreleased" in p.reason for p in report.problems)
    assert not run(session, product, json.dumps(context), publish=True).changed


def test_a_release_that_breaks_a_note_rule_is_skipped_in_the_rules_words(session) -> None:
    product = make_product(session)
    huge = "x" * note_rules.MAX_BODY_BYTES
    report = run(session, product, f"## 1.1.0\n- {huge}\n\n## 1.0.0\n- Fine\n")
    skipped = {c.version: c.reason for c in report.changes if c.action is Action.SKIP}
    assert skipped == {"1.1.0": "The body is over 100 KB. Split it into several notes or trim it."}
    assert [n.version for n in notes_of(session, product)] == ["1.0.0"]


def test_long_titles_are_cut_to_the_note_rules_limit(session) -> None:
    product = make_product(session)
    text = f"## [1.0.0] - 2024-01-02 [YANKED]\n### Added\n- {'x' * 300}\n"
    run(session, product, text, publish=True)
    [note] = notes_of(session, product)
    assert len(note.title) == note_rules.MAX_TITLE_LENGTH
    assert note.title.endswith("… (yanked)")


def test_an_edited_entry_keeps_what_the_changelog_does_not_say(session) -> None:
    product = make_product(session)
    run(session, product, "## 1.0.0\n- Dark mode\n", publish=True)
    [note] = notes_of(session, product)
    audience = {"match": "all", "conditions": [{"attribute": "plan", "op": "eq", "value": "pro"}]}
    edited = replace(NoteInput.of(note), audience=audience, is_internal=True)
    services.update_note(session, note, edited, by=None, now=utcnow())
    run(session, product, "## 1.0.0\n- Dark mode for everyone\n", publish=True)
    session.expire_all()
    [note] = notes_of(session, product)
    assert note.title == "Dark mode for everyone"
    assert (note.audience, note.is_internal) == (audience, True)


def test_an_import_queues_no_mail_and_calls_no_webhook(session) -> None:
    product = make_product(session)
    webhooks.create(
        session,
        product,
        "https://hooks.example.com/x",
        ["note.published"],
        "json",
        by=None,
        now=utcnow(),
    )
    run(session, product, "## 1.0.0\n### Security\n- Patched a hole\n", publish=True)
    [note] = notes_of(session, product)
    assert note.is_important and note.status_at(utcnow()) is NoteStatus.PUBLISHED
    assert session.scalar(select(func.count()).select_from(WebhookDelivery)) == 0
    assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"\xff\xfe\x00binary", "UTF-8"),
        (b"# a\x00b", "not a text file"),
        (b"x" * (importing.MAX_FILE_BYTES + 1), "over 2 MB"),
    ],
)
def test_files_that_are_not_changelogs_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(ValidationFailed) as error:
        importing.read_text(data)
    assert message in error.value.errors["file"]


def test_a_file_without_releases_says_so_and_a_bad_version_is_refused(session) -> None:
    product = make_product(session)
    report = run(session, product, "Just some notes\n\n- one\n")
    assert report.changes == []
    assert "no release headings" in report.problems[0].reason
    with pytest.raises(ValidationFailed):
        run(session, product, "## 1.0.0\n- x\n", unreleased_as="next")


@needs_changelogs
def test_the_cli_imports_and_dry_runs(app, runner, session) -> None:
    product = make_product(session, slug="acme")
    path = CHANGELOGS / "changesets__changesets__packages-types__CHANGELOG.md"
    dry = runner.invoke(args=["import-changelog", "acme", str(path), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "read as changesets" in dry.output and "Would import: 10 new." in dry.output
    assert notes_of(session, product) == []
    done = runner.invoke(args=["import-changelog", "acme", str(path), "--publish"])
    assert "Imported: 10 new." in done.output
    again = runner.invoke(args=["import-changelog", "acme", str(path)])
    assert "Nothing to change: 10 unchanged." in again.output
    missing = runner.invoke(args=["import-changelog", "nope", str(path)])
    assert missing.exit_code != 0 and "No product" in missing.output
    binary = Path(app.instance_path) / "x.md"
    binary.write_bytes(b"\x00\x01")
    refused = runner.invoke(args=["import-changelog", "acme", str(binary)])
    assert (
        refused.exit_code != 0 and "not UTF-8" in refused.output or "not a text" in refused.output
    )


def test_progress_is_reported_release_by_release(session) -> None:
    product = make_product(session)
    text = "".join(f"## 1.{n}.0 - 2024-01-{n + 1:02d}\n- Change {n}\n\n" for n in range(5))
    seen: list[tuple[int, int]] = []
    run(session, product, text, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(n, 5) for n in range(1, 6)]


# Crafted files, concurrent writers and parallel imports ---------------------


def api_key(session, product) -> dict[str, str]:
    scopes = ["import", "notes:write"]
    _, raw = apikeys.create(session, product, "ci", scopes, by=None, now=utcnow())
    return {"Authorization": f"Bearer {raw}"}


def send(client, headers: dict[str, str], text: str, **form: str):
    return client.post(
        "/api/v1/products/acme/import",
        headers=headers,
        data={"file": (io.BytesIO(text.encode()), "CHANGELOG.md"), **form},
        content_type="multipart/form-data",
    )


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("[" * 1000 + "]" * 1000, id="a list 1,000 deep"),
        pytest.param(
            '{"version": "1.0.0", "commits": ' + "[" * 5000 + "]" * 5000 + "}", id="commits"
        ),
    ],
)
def test_json_nested_too_deep_is_refused(client, session, text: str) -> None:
    product = make_product(session, slug="acme")
    answer = send(client, api_key(session, product), text)
    assert answer.status_code == 422
    assert "nested too deeply" in answer.json["errors"]["file"]
    assert notes_of(session, product) == []


def test_json_nested_almost_too_deep_is_reported_not_shown_whole(session) -> None:
    nested = "[" * 900 + "]" * 900
    text = f'[{nested}, {{"version": "1.0.0", "commits": [{nested}, {{"message": "ok"}}]}}]'
    product = make_product(session)
    report = run(session, product, text)
    assert report.count(Action.CREATE) == 1
    assert [p.reason for p in report.problems] == [
        "release 1 is not an object",
        "a commit in 1.0.0 has no message",
    ]
    assert all(len(p.text) < 100 for p in report.problems)


def test_a_git_cliff_timestamp_past_the_year_9999_is_left_out(client, session) -> None:
    product = make_product(session, slug="acme")
    context = [{"version": "1.0.0", "timestamp": 99999999999999, "commits": [{"message": "x"}]}]
    answer = send(client, api_key(session, product), json.dumps(context), publish="true")
    assert answer.status_code == 200
    assert "is not a date" in answer.json["problems"][0]["reason"]
    [note] = notes_of(session, product)
    assert note.released_at is None and note.published_at is not None


def test_writes_go_through_while_an_import_renders(app, client, session, monkeypatch) -> None:
    """An API write, a subscription and a new widget user while an import renders (each
    was a 500 "database is locked" during an import that rendered for 14 s)."""
    product = make_product(session, slug="acme")
    headers = api_key(session, product)
    rendering_second, writes_done = threading.Event(), threading.Event()
    render = rendering.render
    calls: list[str] = []

    def slow_second_render(body: str, budget: rendering.Budget | None = None) -> str:
        calls.append(body)
        if len(calls) == 2:  # the importer before this one wrote the first release's note
            rendering_second.set()
            writes_done.wait(timeout=30)
        return render(body, budget)

    monkeypatch.setattr(rendering, "render", slow_second_render)
    text = "## 1.1.0\n- Two\n\n## 1.0.0\n- One\n"
    with ThreadPoolExecutor(1) as pool:
        imported = pool.submit(send, app.test_client(), headers, text)
        assert rendering_second.wait(timeout=30)
        try:
            note = {"version": "2.0.0", "title": "Meanwhile", "category": "Added"}
            created = client.post("/api/v1/products/acme/notes", headers=headers, json=note)
            subscribed = client.post("/changelog/acme/subscribe", data={"email": "a@example.com"})
            user = {"user_id": "new-user", "user_hash": user_hash(product, "new-user")}
            seen = client.get(f"/api/v1/widget/{product.widget_key}/notes", query_string=user)
        finally:
            writes_done.set()
        assert imported.result(timeout=60).json["counts"]["create"] == 2
    assert (created.status_code, subscribed.status_code, seen.status_code) == (201, 202, 200)
    assert len(notes_of(session, product)) == 3
    assert session.scalar(select(func.count()).select_from(EndUser)) == 1


def test_a_database_still_locked_after_the_busy_timeout_is_a_503_to_retry(
    app_factory, database_url, session, monkeypatch
) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite's write lock")
    monkeypatch.setattr(database, "BUSY_TIMEOUT_MS", 50)
    impatient = app_factory()
    product = make_product(session, slug="acme")
    headers = api_key(session, product)
    holder = sqlite3.connect(make_url(database_url).database, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process writing
    try:
        note = {"version": "2.0.0", "title": "Later", "category": "Added"}
        refused = impatient.test_client().post(
            "/api/v1/products/acme/notes", headers=headers, json=note
        )
    finally:
        holder.rollback()
        holder.close()
    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "2"
    assert "Try again" in refused.json["error"]
    assert notes_of(session, product) == []


def test_a_postgresql_deadlock_is_a_503_to_retry_too(app, client) -> None:
    cause = psycopg.errors.DeadlockDetected("deadlock detected")

    def deadlocked() -> str:
        raise OperationalError("UPDATE product …", {}, cause)

    app.add_url_rule("/api/v1/deadlocked", view_func=deadlocked)
    answer = client.get("/api/v1/deadlocked")
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "2"


def post_import(base: str, headers: dict[str, str], text: str) -> tuple[int, dict]:
    """POST ``text`` to the import endpoint of the server at ``base``, over HTTP."""
    boundary, body = encode_multipart(
        {"file": FileStorage(io.BytesIO(text.encode()), "CHANGELOG.md"), "publish": "true"}
    )
    connection = http.client.HTTPConnection(urlsplit(base).netloc, timeout=60)
    try:
        connection.request(
            "POST",
            "/api/v1/products/acme/import",
            body,
            {**headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        answer = connection.getresponse()
        data = answer.read()
    finally:
        connection.close()
    is_json = answer.getheader("Content-Type") == "application/json"
    return answer.status, json.loads(data) if is_json else {"page": data.decode()}


def test_two_imports_of_one_file_at_once_write_each_note_once(app, session, monkeypatch) -> None:
    """Both read the product's notes before either writes (found: the second failed with a
    500 on the unique import key)."""
    product = make_product(session, slug="acme")
    headers = api_key(session, product)
    both_have_read = threading.Barrier(2, timeout=30)
    first_render = threading.local()
    render = rendering.render

    def render_when_both_have_read(body: str, budget: rendering.Budget | None = None) -> str:
        if not getattr(first_render, "done", False):
            first_render.done = True
            both_have_read.wait()
        return render(body, budget)

    monkeypatch.setattr(rendering, "render", render_when_both_have_read)
    text = "".join(f"## 1.{n}.0 - 2024-01-{n + 1:02d}\n- Change {n}\n\n" for n in range(5))
    with contextlib.contextmanager(serve)(app) as base, ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: post_import(base, headers, text), range(2)))
    assert [status for status, _ in answers] == [200, 200], answers
    counts = sorted((body["counts"]["create"], body["counts"]["unchanged"]) for _, body in answers)
    assert counts == [(0, 5), (5, 0)]
    assert len(notes_of(session, product)) == 5
