"""The console's Support section: help-desk connections (owners), Support impact and a
note's figures (every role), its CSV, and who may do what."""

from __future__ import annotations

import copy
import csv
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import lxml.html
import pytest
from sqlalchemy import func, select

from announcements import holdback, support_desks
from announcements.models import (
    AuditEvent,
    Product,
    Role,
    SupportConnection,
    SupportDesk,
    SupportImpact,
    utcnow,
)
from app.mail import jobs
from tests.conftest import AuthActions, csrf_token
from tests.factories import add_member, make_member, make_note, make_product

PUBLISHED = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)
COMPUTED = datetime(2026, 10, 9, 10, 7, tzinfo=UTC)
WINDOW = 14


def _daily(days_after: int) -> list[dict[str, Any]]:
    """Tickets on each day from P - W to P + days_after: a known, uneven series."""
    first = PUBLISHED.date() - timedelta(days=WINDOW)
    count = WINDOW + days_after + 1
    return [
        {"date": (first + timedelta(days=i)).isoformat(), "tickets": (i * 7) % 5}
        for i in range(count)
    ]


def note_figures(note_id: int, version: str, title: str, **changes: Any) -> dict[str, Any]:
    """A note's roll-up as the design documents it, with figures that are easy to spot."""
    figures: dict[str, Any] = {
        "scope": f"note:{note_id}",
        "note_id": note_id,
        "version": version,
        "title": title,
        "published_at": PUBLISHED.isoformat(),
        "window_days": WINDOW,
        "window_end": (PUBLISHED + timedelta(days=WINDOW)).isoformat(),
        "window_open": True,
        "topics": ["export"],
        "exposed": 5120,
        "readers": 2300,
        "non_readers": 2820,
        "tickets_readers": 12,
        "tickets_non_readers": 41,
        "rate_readers": {"per_1000": 5.22, "low": 2.70, "high": 9.11},
        "rate_non_readers": {"per_1000": 14.54, "low": 10.43, "high": 19.72},
        "difference": {"percent_fewer": 64.0, "low": 31.0, "high": 82.0},
        "verdict": "Readers opened 64 % fewer tickets about export (95 % CI 31–82 %).",
        "before": {"tickets": 30, "active_users": 4000, "per_1000": 7.5},
        "after": {"tickets": 53, "active_users": 5200, "per_1000": 10.19},
        "unmatched_tickets": 4,
        "help": {"shown": 40, "answered": 12, "needs_help": 9},
        "holdback": {
            "percent": 20,
            "treated": {"users": 4100, "tickets": 30, "per_1000": 7.32, "low": 4.94, "high": 10.45},
            "control": {
                "users": 1020,
                "tickets": 23,
                "per_1000": 22.55,
                "low": 14.29,
                "high": 33.83,
            },
            "effect": {"percent_fewer": 67.6, "low": 44.0, "high": 81.0},
            "verdict": "Telling users cut tickets about export by 68 % (95 % CI 44–81 %): "
            "the causal estimate.",
        },
        "daily": _daily(8),
    }
    figures.update(changes)
    return figures


def release_figures(version: str, **changes: Any) -> dict[str, Any]:
    figures = note_figures(0, version, f"Release {version}", holdback=None)
    figures.update(
        scope=f"release:{version}",
        note_id=None,
        exposed=6000,
        readers=2500,
        non_readers=3500,
        verdict="Not enough data yet.",
        difference={"percent_fewer": 10.0, "low": -20.0, "high": 35.0},
        unmatched_tickets=9,
    )
    figures.update(changes)
    return figures


def add_rollup(session, product, figures: dict[str, Any], computed_at=COMPUTED) -> None:
    session.add(
        SupportImpact(
            product_id=product.id,
            scope=figures["scope"],
            version=figures["version"],
            note_id=figures["note_id"],
            figures=copy.deepcopy(figures),
            computed_at=computed_at,
        )
    )
    session.commit()


@pytest.fixture
def world(session):
    """Acme with a member of each role, two releases rolled up, and a stranger's product."""
    owner = make_member(session, "owner@example.com")
    product = make_product(session, owner=owner, slug="acme", name="Acme")
    people = {
        role: add_member(session, product, role, f"{role.value}@example.com")
        for role in (Role.VIEWER, Role.EDITOR)
    }
    people[Role.OWNER] = owner
    export = make_note(session, product, version="2.4.0", title="Export to CSV")
    export.holdback_percent = 20
    faster = make_note(session, product, version="2.4.0", title="Faster start")
    older = make_note(session, product, version="2.3.0", title="Dark mode")
    session.commit()
    add_rollup(session, product, release_figures("2.4.0"))
    add_rollup(session, product, note_figures(export.id, "2.4.0", "Export to CSV"))
    add_rollup(
        session, product, note_figures(faster.id, "2.4.0", "Faster start", topics=[], holdback=None)
    )
    add_rollup(
        session,
        product,
        release_figures("2.3.0", verdict="Readers opened 12 % more tickets (95 % CI 1–30 %)."),
        computed_at=COMPUTED - timedelta(minutes=30),
    )
    add_rollup(
        session,
        product,
        note_figures(
            older.id,
            "2.3.0",
            "Dark mode",
            topics=[],
            holdback=None,
            rate_non_readers={"per_1000": None, "low": None, "high": None},
            non_readers=0,
        ),
        computed_at=COMPUTED - timedelta(minutes=30),
    )
    make_product(session, owner=make_member(session), slug="elsewhere")
    return product, {"export": export, "faster": faster, "older": older}, people


def page(client, path: str):
    answer = client.get(path)
    return answer, lxml.html.fromstring(answer.get_data(as_text=True))


def text(node) -> str:
    return " ".join(node.text_content().split())


def find(node, tag: str, css_class: str | None = None) -> list:
    """The ``tag`` elements under ``node``, those with ``css_class`` if given."""
    if css_class is None:
        return node.xpath(f".//{tag}")
    return node.xpath(
        f'.//{tag}[contains(concat(" ", normalize-space(@class), " "), " {css_class} ")]'
    )


def audit_count(session) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).select_from(AuditEvent))


# Impact --------------------------------------------------------------------------------------


def test_impact_shows_each_release_newest_first_with_its_notes_figures(
    client, auth: AuthActions, world
) -> None:
    _, notes, people = world
    auth.login(people[Role.VIEWER].email)
    answer, tree = page(client, "/console/p/acme/support/impact")
    assert answer.status_code == 200
    releases = find(tree, "section", "impact-release")
    assert [text(find(r, "h2")[0]) for r in releases] == ["2.4.0", "2.3.0"]
    newest = releases[0]
    summary, note, _ = find(newest, "tbody")
    cells = [text(td) for td in find(find(summary, "tr")[0], "td")]
    assert cells[:3] == ["6,000", "2,500", "3,500"]
    row = find(note, "tr")[0]
    assert text(find(row, "th")[0]).startswith("Export to CSV")
    assert find(row, "a")[0].get("href") == (
        f"/console/p/acme/support/impact/notes/{notes['export'].id}"
    )
    cells = [text(td) for td in find(row, "td")]
    assert cells == [
        "5,120",
        "2,300",
        "2,820",
        "5.22 95 % CI 2.70–9.11 12 tickets",
        "14.54 95 % CI 10.43–19.72 41 tickets",
        "12 of 40 shown 9 still needed help",
    ]
    verdicts = [text(p) for p in find(find(note, "tr", "verdict-row")[0], "p")]
    assert verdicts == [
        "Readers opened 64 % fewer tickets about export (95 % CI 31–82 %).",
        "Causal estimate Telling users cut tickets about export by 68 % (95 % CI 44–81 %): "
        "the causal estimate. 20 % held back: 1,020 users.",
        "Before → after, per 1,000 active users: 7.50 → 10.19 so far (30 → 53 tickets) · "
        "Unmatched tickets: 4",
    ]
    assert find(note, "p", "found")
    # The release's own verdict found nothing: said plainly, not as a finding.
    assert text(find(summary, "p", "verdict")[0]) == "Not enough data yet."
    assert not find(summary, "p", "found")
    # A release of one note is its note's row alone: a row of its own would repeat it.
    older = releases[1]
    [only] = find(older, "tbody")
    assert "Dark mode" in text(only) and "All of" not in text(older)
    assert "every ticket (no topics set)" in text(older)
    assert "no users" in text(only)


def test_impact_says_how_fresh_the_figures_are(client, auth, world) -> None:
    _, _, people = world
    auth.login(people[Role.VIEWER].email)
    _, tree = page(client, "/console/p/acme/support/impact")
    # The stalest figures on the page, 30 minutes before the newest.
    assert text(find(tree, "p", "freshness")[0]) == (
        "Figures as of 09:37 UTC, 09 Oct, refreshed hourly."
    )


def test_an_empty_impact_page_tells_an_owner_how_to_start(client, auth, session) -> None:
    owner = make_member(session, "owner@example.com")
    product = make_product(session, owner=owner, slug="fresh", name="Fresh")
    viewer = add_member(session, product, Role.VIEWER, "viewer@example.com")
    auth.login(owner.email)
    answer, tree = page(client, "/console/p/fresh/support/impact")
    assert answer.status_code == 200
    empty = find(tree, "section", "empty")[0]
    assert "No figures yet" in text(empty)
    links = {a.get("href") for a in find(empty, "a")}
    assert links == {"/console/p/fresh/support/connections", "/console/p/fresh/support/import"}
    assert "Export CSV" not in text(tree)  # nothing to export yet
    auth.logout()
    auth.login(viewer.email)
    _, tree = page(client, "/console/p/fresh/support/impact")
    empty = find(tree, "section", "empty")[0]
    assert "once an owner of Fresh connects the help desk" in text(empty)
    assert find(empty, "a") == []
    auth.logout()
    auth.login(add_member(session, product, Role.EDITOR, "editor@example.com").email)
    _, tree = page(client, "/console/p/fresh/support/impact")
    empty = find(tree, "section", "empty")[0]
    assert [a.get("href") for a in find(empty, "a")] == ["/console/p/fresh/support/import"]


def test_the_support_link_and_tabs_follow_the_role(client, auth, world) -> None:
    _, _, people = world
    for role, tabs in (
        (Role.VIEWER, ["Impact", "Look up", "Agent sidebar"]),
        (Role.EDITOR, ["Impact", "Look up", "Import history", "Agent sidebar"]),
        (Role.OWNER, ["Impact", "Look up", "Connections", "Import history", "Agent sidebar"]),
    ):
        auth.login(people[role].email)
        _, tree = page(client, "/console/p/acme/notes")
        nav = tree.xpath('//nav[@class="sidenav"]//a[text()="Support"]')
        assert [a.get("href") for a in nav] == ["/console/p/acme/support/impact"], role
        _, tree = page(client, "/console/p/acme/support/impact")
        assert [text(a) for a in find(find(tree, "nav", "tabs")[0], "a")] == tabs, role
        refresh = tree.xpath('//form[@action="/console/p/acme/support/impact/refresh"]')
        assert bool(refresh) == role.allows(Role.EDITOR), role
        auth.logout()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/console/p/acme/support/connections"),
        ("POST", "/console/p/acme/support/connections"),
        ("POST", "/console/p/acme/support/connections/{connection}/secret"),
        ("POST", "/console/p/acme/support/connections/{connection}/disconnect"),
    ],
)
def test_only_owners_reach_connections(client, auth, session, world, method, path) -> None:
    product, _, people = world
    connection = support_desks.connect(session, product, "zendesk", now=utcnow())
    session.commit()
    path = path.format(connection=connection.id)
    before = audit_count(session)
    for role in (Role.VIEWER, Role.EDITOR):
        auth.login(people[role].email)
        data = {"csrf_token": csrf_token(client), "desk": "intercom", "secret": "s3cret"}
        answer = client.open(path, method=method, data=data if method == "POST" else None)
        assert answer.status_code == 403, (role, method, path)
        auth.logout()
    assert audit_count(session) == before
    assert connections_of(session, product) == [("zendesk", "zendesk", "")]


def test_refresh_is_for_editors_and_asks_the_worker(app, client, auth, session, world) -> None:
    product, _, people = world
    queue = app.extensions[jobs.JOBS_KEY].huey
    auth.login(people[Role.VIEWER].email)
    token = csrf_token(client)
    assert (
        client.post(
            "/console/p/acme/support/impact/refresh", data={"csrf_token": token}
        ).status_code
        == 403
    )
    assert queue.pending_count() == 0
    auth.logout()
    auth.login(people[Role.EDITOR].email)
    token = csrf_token(client)
    for bad in (None, "forged-token"):
        answer = client.post(
            "/console/p/acme/support/impact/refresh", data={"csrf_token": bad} if bad else {}
        )
        assert answer.status_code == 400
        assert "The form expired" in answer.get_data(as_text=True)
    assert queue.pending_count() == 0
    answer = client.post(
        "/console/p/acme/support/impact/refresh",
        data={"csrf_token": token},
        follow_redirects=True,
    )
    assert answer.request.path == "/console/p/acme/support/impact"
    assert "Counting again" in answer.get_data(as_text=True)
    [task] = queue.pending()
    assert (task.name, task.args) == ("tidings.refresh_support", (product.id,))


def test_a_product_is_recounted_at_most_once_a_minute_and_only_editors_spend_it(
    app_factory, session, world
) -> None:
    _, _, people = world
    limited = app_factory(RATELIMIT_ENABLED=True)
    queue = limited.extensions[jobs.JOBS_KEY].huey
    path = "/console/p/acme/support/impact/refresh"
    viewer, editor = limited.test_client(), limited.test_client()
    AuthActions(viewer).login(people[Role.VIEWER].email)
    AuthActions(editor).login(people[Role.EDITOR].email)
    refused = [viewer.post(path, data={"csrf_token": csrf_token(viewer)}) for _ in range(3)]
    assert [r.status_code for r in refused] == [403] * 3  # spends nothing
    answers = [editor.post(path, data={"csrf_token": csrf_token(editor)}) for _ in range(3)]
    assert [r.status_code for r in answers] == [302, 429, 429]
    assert queue.pending_count() == 1


def test_refresh_says_so_when_the_worker_cannot_be_reached(
    app, client, auth, world, monkeypatch
) -> None:
    _, _, people = world
    queue = app.extensions[jobs.JOBS_KEY]

    def unreachable(product_id: int) -> None:
        raise ConnectionError("no queue")

    monkeypatch.setattr(queue, "refresh_support", unreachable)
    auth.login(people[Role.EDITOR].email)
    answer = client.post(
        "/console/p/acme/support/impact/refresh",
        data={"csrf_token": csrf_token(client)},
        follow_redirects=True,
    )
    page = answer.get_data(as_text=True)
    assert "recounted within the hour" in page and "Counting again" not in page


# A note's page ---------------------------------------------------------------------------------


def test_a_notes_page_draws_its_daily_tickets_with_a_table_beside(client, auth, world) -> None:
    _, notes, people = world
    auth.login(people[Role.VIEWER].email)
    answer, tree = page(client, f"/console/p/acme/support/impact/notes/{notes['export'].id}")
    assert answer.status_code == 200
    [chart] = tree.xpath('//svg[contains(@class, "chart-bar")]')
    assert chart.get("role") == "img"
    assert chart.get("aria-label") == (
        "Tickets per day about export, 14 days before publication to today, 17 Sep to 9 Oct "
        "(UTC days): 27 tickets before publication on 1 Oct, 19 from that day on; the most "
        "in one day, 4, on 19 Sep."
    )
    assert text(find(chart, "title")[0]).startswith("Tickets per day about export")
    bars = chart.xpath('.//g[@class="chart-bars"]/rect')
    daily = _daily(8)
    assert len(bars) == len(daily) == 23
    assert [b.xpath("string(title)") for b in bars[:2]] == ["17 Sep: 0", "18 Sep: 2"]
    assert text(chart.xpath('.//g[@class="chart-marker"]/text')[0]) == "Published 1 Oct"
    assert chart.xpath('.//rect[@class="chart-band"]')
    # The same days as a table, for screen readers and for anyone who wants the numbers.
    [table] = tree.xpath('//details[contains(@class, "chart-table")]//table')
    rows = [[text(td) for td in tr.xpath("td")] for tr in table.xpath("tbody/tr")]
    assert rows[0] == ["17 Sep", "0", "before"]
    assert rows[14] == ["1 Oct", "3", "published"]
    assert rows[-1] == ["9 Oct", "4", "in the window"]
    assert [int(r[1]) for r in rows] == [d["tickets"] for d in daily]


def test_a_notes_page_compares_readers_and_the_holdback(client, auth, world) -> None:
    _, notes, people = world
    auth.login(people[Role.VIEWER].email)
    _, tree = page(client, f"/console/p/acme/support/impact/notes/{notes['export'].id}")
    charts = tree.xpath('//svg[contains(@class, "chart-interval")]')
    assert [c.get("aria-label") for c in charts] == [
        "Tickets per 1,000 readers and non-readers. Readers: 5.22 per 1,000 (95 % CI "
        "2.70–9.11). Non-readers: 14.54 per 1,000 (95 % CI 10.43–19.72).",
        "Tickets per 1,000 users told and held back. Told: 7.32 per 1,000 (95 % CI "
        "4.94–10.45). Held back: 22.55 per 1,000 (95 % CI 14.29–33.83).",
    ]
    assert [len(c.xpath(".//circle")) for c in charts] == [2, 2]
    page_text = text(tree)
    assert "Causal estimate" in page_text
    assert "Telling users cut tickets about export by 68 % (95 % CI 44–81 %)" in page_text
    [volume] = tree.xpath('//section[@aria-labelledby="volume-title"]//dl')
    assert [[text(e) for e in div.xpath("dt|dd")] for div in volume.xpath("div")] == [
        ["Before", "7.50", "30 tickets, 4,000 active users"],
        ["After, so far", "10.19", "53 tickets, 5,200 active users"],
    ]

    _, tree = page(client, f"/console/p/acme/support/impact/notes/{notes['older'].id}")
    [chart] = tree.xpath('//svg[contains(@class, "chart-interval")]')
    assert "Non-readers: no users" in chart.get("aria-label")
    assert len(chart.xpath(".//circle")) == 1  # nothing drawn for a group of no one
    assert "No hold-back was set on this note before it went out." in text(tree)
    assert "Hold back a share of users (up to 50 %) on a note before publishing it" in text(tree)
    assert "Tickets per day, 14 days" in text(tree)  # no topics: every ticket


def test_a_note_not_counted_yet_or_of_another_product(client, auth, session, world) -> None:
    product, _, people = world
    draft = make_note(session, product, status="draft", version="2.5.0", title="Soon")
    auth.login(people[Role.OWNER].email)
    answer, tree = page(client, f"/console/p/acme/support/impact/notes/{draft.id}")
    assert answer.status_code == 200
    assert "No figures for this note yet" in text(tree)
    assert not tree.xpath("//svg")
    stranger = session.scalar(select(Product).where(Product.slug == "elsewhere"))
    theirs = make_note(session, stranger, title="Theirs")
    assert client.get(f"/console/p/acme/support/impact/notes/{theirs.id}").status_code == 404


def test_which_group_a_user_is_in(client, auth, session, world) -> None:
    _, notes, people = world
    export = notes["export"]
    auth.login(people[Role.VIEWER].email)
    held = next(f"user-{i}" for i in range(1000) if holdback.in_control(export.id, f"user-{i}", 20))
    told = next(
        f"user-{i}" for i in range(1000) if not holdback.in_control(export.id, f"user-{i}", 20)
    )
    for user, group in ((held, "Held back"), (told, "Told")):
        answer, tree = page(client, f"/console/p/acme/support/impact/notes/{export.id}?user={user}")
        assert answer.status_code == 200
        [row] = tree.xpath('//section[@id="lookup"]//tbody/tr')
        cells = [text(cell) for cell in row.xpath("th|td")]
        assert cells[0].startswith("Export to CSV (2.4.0, 20 % held back")
        assert cells[1:] == [
            group,
            "Not recorded: only users the note went out to are, at the worker's next count",
        ]
        assert row.get("class") == "current"
        assert tree.xpath('//input[@name="user"]')[0].get("value") == user


@pytest.mark.parametrize("bad", ["x" * 256, "nul\x00byte"])
def test_a_user_id_no_user_can_have_is_refused(client, auth, world, bad) -> None:
    _, notes, people = world
    auth.login(people[Role.VIEWER].email)
    answer = client.get(
        f"/console/p/acme/support/impact/notes/{notes['export'].id}", query_string={"user": bad}
    )
    assert answer.status_code == 422
    tree = lxml.html.fromstring(answer.get_data(as_text=True))
    assert text(find(tree, "p", "field-error")[0]) == "A user id is text of at most 255 characters."
    assert not tree.xpath('//section[@id="lookup"]//table')


# CSV --------------------------------------------------------------------------------------


def test_the_csv_holds_every_release_and_note_with_a_header(client, auth, world) -> None:
    _, notes, people = world
    auth.login(people[Role.VIEWER].email)
    answer = client.get("/console/p/acme/support/impact.csv")
    assert answer.status_code == 200
    assert answer.mimetype == "text/csv"
    assert answer.headers["Content-Disposition"].startswith(
        'attachment; filename="acme-support-impact-'
    )
    rows = list(csv.DictReader(io.StringIO(answer.get_data(as_text=True))))
    assert [(r["scope"], r["title"]) for r in rows] == [
        ("release:2.4.0", "Release 2.4.0"),
        (f"note:{notes['export'].id}", "Export to CSV"),
        (f"note:{notes['faster'].id}", "Faster start"),
        ("release:2.3.0", "Release 2.3.0"),
        (f"note:{notes['older'].id}", "Dark mode"),
    ]
    export = rows[1]
    assert {key: export[key] for key in ("exposed", "readers", "non_readers")} == {
        "exposed": "5120",
        "readers": "2300",
        "non_readers": "2820",
    }
    assert (export["rate_readers_per_1000"], export["rate_readers_low"]) == ("5.22", "2.7")
    assert export["holdback_control_per_1000"] == "22.55"
    assert export["holdback_effect_percent_fewer"] == "67.6"
    assert export["topics"] == "export"
    assert export["window_open"] == "yes"
    assert export["computed_at"] == COMPUTED.isoformat()
    assert export["verdict"].startswith("Readers opened 64 % fewer")
    # A release has no hold-back of its own: blank, not "None".
    assert rows[0]["holdback_percent"] == "" and rows[0]["note_id"] == ""
    # A figure below zero stays a number.
    assert rows[0]["difference_low"] == "-20.0"
    assert rows[4]["rate_non_readers_per_1000"] == ""


def test_text_in_the_csv_is_never_read_as_a_formula(client, auth, session, world) -> None:
    product, notes, people = world
    row = session.scalar(select(SupportImpact).where(SupportImpact.note_id == notes["export"].id))
    row.figures = {
        **row.figures,
        "title": '=HYPERLINK("http://evil.example","Click")',
        "topics": ["@sum", "export"],
        "verdict": "+1 tickets",
    }
    session.commit()
    auth.login(people[Role.VIEWER].email)
    rows = list(
        csv.DictReader(
            io.StringIO(client.get("/console/p/acme/support/impact.csv").get_data(as_text=True))
        )
    )
    assert rows[1]["title"] == '\'=HYPERLINK("http://evil.example","Click")'
    assert rows[1]["topics"] == "'@sum export"
    assert rows[1]["verdict"] == "'+1 tickets"


# Connections -----------------------------------------------------------------------------


def connections_of(session, product) -> list[tuple[str, str, str]]:
    session.expire_all()
    return [
        (c.desk.value, c.source, c.secret)
        for c in session.scalars(
            select(SupportConnection)
            .where(SupportConnection.product_id == product.id)
            .order_by(SupportConnection.id)
        )
    ]


def test_an_owner_connects_zendesk_and_pastes_its_secret(app, client, auth, session, world) -> None:
    product, _, people = world
    auth.login(people[Role.OWNER].email)
    before = audit_count(session)
    answer = client.post(
        "/console/p/acme/support/connections",
        data={"csrf_token": csrf_token(client), "desk": "zendesk"},
    )
    assert answer.status_code == 302
    [connection] = session.scalars(
        select(SupportConnection).where(SupportConnection.product_id == product.id)
    ).all()
    assert answer.headers["Location"].endswith(f"#connection-{connection.id}")
    assert audit_count(session) == before + 1
    _, tree = page(client, "/console/p/acme/support/connections")
    [card] = tree.xpath(f'//section[@id="connection-{connection.id}"]')
    url = support_desks.inbound_url(app.config["BASE_URL"], connection)
    assert text(card.xpath(f'.//code[@id="url-{connection.id}"]')[0]) == url
    assert card.xpath(f'.//button[@data-copy="url-{connection.id}"]')
    assert "Not set: Zendesk deliveries are refused" in text(card)
    steps = [text(li) for li in card.xpath('.//aside[contains(@class, "setup-steps")]//li')]
    assert len(steps) == len(support_desks.SETUP_STEPS[SupportDesk.ZENDESK])
    assert steps[0] == support_desks.SETUP_STEPS[SupportDesk.ZENDESK][0].text
    assert "0 deliveries · none yet" in text(card)

    answer = client.post(
        f"/console/p/acme/support/connections/{connection.id}/secret",
        data={"csrf_token": csrf_token(client), "secret": "  zendesk-signing-secret  "},
    )
    assert answer.status_code == 302
    assert connections_of(session, product) == [("zendesk", "zendesk", "zendesk-signing-secret")]
    assert audit_count(session) == before + 2
    _, tree = page(client, "/console/p/acme/support/connections")
    [card] = tree.xpath(f'//section[@id="connection-{connection.id}"]')
    # Masked until shown; the copy button copies it either way.
    [secret] = card.xpath(".//details[contains(@class, 'secret')]")
    assert secret.get("open") is None
    assert text(secret.xpath(".//code")[0]) == "zendesk-signing-secret"
    assert card.xpath(f'.//button[@data-copy="secret-{connection.id}"]')
    assert "Replace secret" in text(card)


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ("", "Paste the signing secret Zendesk shows."),
        ("x" * 201, "That is not a signing secret: one line, up to 200 characters."),
    ],
)
def test_a_bad_secret_is_shown_beside_its_field_and_changes_nothing(
    client, auth, session, world, secret, message
) -> None:
    product, _, people = world
    connection = support_desks.connect(session, product, "zendesk", secret="kept", now=utcnow())
    session.commit()
    auth.login(people[Role.OWNER].email)
    before = audit_count(session)
    answer = client.post(
        f"/console/p/acme/support/connections/{connection.id}/secret",
        data={"csrf_token": csrf_token(client), "secret": secret},
    )
    assert answer.status_code == 422
    tree = lxml.html.fromstring(answer.get_data(as_text=True))
    [error] = tree.xpath(f'//p[@id="secret-error-{connection.id}"]')
    assert text(error) == message
    field = tree.xpath(f'//input[@id="secret-input-{connection.id}"]')[0]
    assert field.get("aria-invalid") == "true"
    assert connections_of(session, product) == [("zendesk", "zendesk", "kept")]
    assert audit_count(session) == before


def test_an_unknown_desk_is_refused_beside_the_field(client, auth, session, world) -> None:
    product, _, people = world
    auth.login(people[Role.OWNER].email)
    before = audit_count(session)
    answer = client.post(
        "/console/p/acme/support/connections",
        data={"csrf_token": csrf_token(client), "desk": "fax"},
    )
    assert answer.status_code == 422
    tree = lxml.html.fromstring(answer.get_data(as_text=True))
    assert text(find(tree, "p", "field-error")[0]) == (
        "Choose one of zendesk, intercom, helpscout, freshdesk."
    )
    assert connections_of(session, product) == []
    assert audit_count(session) == before


def test_help_scout_shows_the_secret_tidings_made_and_freshdesk_the_url_alone(
    client, auth, session, world
) -> None:
    product, _, people = world
    auth.login(people[Role.OWNER].email)
    for desk in ("helpscout", "freshdesk"):
        client.post(
            "/console/p/acme/support/connections",
            data={"csrf_token": csrf_token(client), "desk": desk},
        )
    (_, _, made), (_, _, none) = connections_of(session, product)
    assert len(made) >= 40 and none == ""
    _, tree = page(client, "/console/p/acme/support/connections")
    helpscout, freshdesk = find(tree, "section", "connection")
    assert text(helpscout.xpath(".//details//code")[0]) == made
    assert "paste it into Help Scout as the webhook's Secret Key" in text(helpscout)
    assert not helpscout.xpath(".//form[contains(@class, 'secret-form')]")
    assert not freshdesk.xpath(".//details") and not freshdesk.xpath(
        ".//form[contains(@class, 'secret-form')]"
    )
    assert "the long token in this URL is the credential" in text(freshdesk)
    # Freshdesk's body to paste is set apart as code to copy.
    bodies = freshdesk.xpath(".//aside//pre/code")
    assert [json.loads(text(b)) for b in bodies] == [json.loads(support_desks.FRESHDESK_BODY)]


def test_an_owner_disconnects_and_another_products_connection_is_404(
    client, auth, session, world
) -> None:
    product, _, people = world
    stranger = session.scalar(select(Product).where(Product.slug == "elsewhere"))
    mine = support_desks.connect(session, product, "intercom", now=utcnow())
    theirs = support_desks.connect(session, stranger, "intercom", secret="theirs", now=utcnow())
    session.commit()
    auth.login(people[Role.OWNER].email)
    token = csrf_token(client)
    before = audit_count(session)
    for action, data in (("secret", {"secret": "mine now"}), ("disconnect", {})):
        answer = client.post(
            f"/console/p/acme/support/connections/{theirs.id}/{action}",
            data={"csrf_token": token, **data},
        )
        assert answer.status_code == 404
    assert connections_of(session, stranger) == [("intercom", "intercom", "theirs")]
    answer = client.post(
        f"/console/p/acme/support/connections/{mine.id}/disconnect",
        data={"csrf_token": token},
        follow_redirects=True,
    )
    assert "Intercom (intercom) disconnected." in answer.get_data(as_text=True)
    assert connections_of(session, product) == []
    assert audit_count(session) == before + 1


def test_connection_forms_need_their_csrf_token(client, auth, session, world) -> None:
    product, _, people = world
    connection = support_desks.connect(session, product, "zendesk", secret="kept", now=utcnow())
    session.commit()
    auth.login(people[Role.OWNER].email)
    before = audit_count(session)
    for path, data in (
        ("/console/p/acme/support/connections", {"desk": "intercom"}),
        (f"/console/p/acme/support/connections/{connection.id}/secret", {"secret": "new"}),
        (f"/console/p/acme/support/connections/{connection.id}/disconnect", {}),
    ):
        for token in (None, "forged-token"):
            answer = client.post(path, data={**data, **({"csrf_token": token} if token else {})})
            assert answer.status_code == 400, (path, token)
    assert connections_of(session, product) == [("zendesk", "zendesk", "kept")]
    assert audit_count(session) == before


def test_set_up_steps_show_the_json_body_apart_as_it_is_to_be_pasted(
    client, auth, session, world
) -> None:
    product, _, people = world
    support_desks.connect(session, product, "zendesk")
    session.commit()
    auth.login(people[Role.OWNER].email)
    _, tree = page(client, "/console/p/acme/support/connections")
    [aside] = tree.xpath('//aside[contains(@class, "setup-steps")]')
    steps = support_desks.SETUP_STEPS[SupportDesk.ZENDESK]
    items = aside.xpath(".//li")
    assert [" ".join(li.xpath("text()")[0].split()) for li in items] == [s.text for s in steps]
    [with_body] = [s for s in steps if s.body]
    assert with_body.text.endswith("paste this JSON body:")
    # Laid out to copy: the whole body in one block, its lines kept.
    [code] = aside.xpath(".//pre/code")
    assert code.text_content() == with_body.body == support_desks.ZENDESK_TRIGGER_BODY
    assert json.loads(code.text_content())["ticket"]["id"] == "{{ticket.id}}"
