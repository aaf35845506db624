"""Support impact in headless Chromium on the demo as ``flask demo`` loads it: the figures
the pages show, counted again here in plain SQL over the demo's tables; the verdicts; the
daily chart and its table; the CSV export; nothing wider than the screen at desktop and
phone widths; and an owner connecting a help desk.

The counts here follow the rule in the README, written out in SQL by hand, and never read
the roll-up's figures: a page that drew its numbers from a wrong roll-up would fail.
Screenshots go to instance/screenshots/ beside the console's, to be looked at after a run.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from scipy import stats
from sqlalchemy import bindparam, text
from sqlalchemy.orm import Session

from announcements import versions
from app.extensions import db
from tests.browser import DESKTOP, PHONE, SCREENSHOTS, assert_fits
from tests.test_browser_console import log_in

pytestmark = pytest.mark.browser

HELD_BACK = "Session cookies now expire after 12 hours"
TOPIC_NOTE = "Export any chart as PNG or CSV"
# Scheduled reports confused nobody in the demo: its verdict stays undecided.
UNDECIDED_NOTE = "Scheduled reports by email"


# Counting again, in SQL ------------------------------------------------------------------


def stored(moment: datetime) -> str:
    """A UTC time as SQLite holds it in the demo's tables, to compare stored times with."""
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S.%f}"


def read_time(value: str) -> datetime:
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


@dataclass(frozen=True)
class Group:
    users: int
    tickets: int


@dataclass(frozen=True)
class Counted:
    """One note's figures as this test counts them."""

    note_id: int
    version: str
    published_at: datetime
    window_end: datetime
    topics: list[str]
    holdback_percent: int
    exposed: int
    readers: Group
    non_readers: Group
    unmatched: int
    before: Group  # tickets, and users active in the window before
    after: Group
    treated: Group | None
    control: Group | None
    daily: dict[date, int]  # every day of the series, with its topic tickets


def count_note(session: Session, title: str) -> Counted:
    """Lumen's note ``title`` counted from the rows: exposure, reading, tickets and groups."""
    note = (
        session.execute(
            text(
                "SELECT n.id, n.version, n.published_at, n.support_topics, n.holdback_percent,"
                " p.id AS product_id, p.support_window_days"
                " FROM note n JOIN product p ON p.id = n.product_id"
                " WHERE p.slug = 'lumen' AND n.title = :title AND n.archived_at IS NULL"
            ),
            {"title": title},
        )
        .mappings()
        .one()
    )
    published = read_time(note["published_at"])
    window = timedelta(days=note["support_window_days"])
    end = published + window
    assert end < datetime.now(UTC), f"the demo's “{title}” should have a closed window"
    topics = json.loads(note["support_topics"])
    present = session.scalars(
        text(
            "SELECT DISTINCT app_version FROM end_user"
            " WHERE product_id = :product AND app_version IS NOT NULL"
        ),
        {"product": note["product_id"]},
    )
    wanted = versions.parse(note["version"])
    including = [v for v in present if versions.is_valid(v) and versions.parse(v) >= wanted]
    assert including, "some demo users run a version with the note"

    # A ticket about one of the topics: tagged with it, or saying it in the subject.
    about = " OR ".join(
        f"t.tag_text LIKE :tag{i} OR t.subject_key LIKE :subject{i}" for i in range(len(topics))
    )
    params: dict[str, Any] = {
        "product": note["product_id"],
        "note": note["id"],
        "published": stored(published),
        "end": stored(end),
        "before": stored(published - window),
        "including": including,
        **{f"tag{i}": f"%|{topic}|%" for i, topic in enumerate(topics)},
        **{f"subject{i}": f"%{topic}%" for i, topic in enumerate(topics)},
    }
    topic_clause = f"({about})" if topics else "1 = 1"
    exposed = (
        "u.product_id = :product AND u.last_seen_at >= :published AND u.first_seen_at < :end"
        " AND (u.app_version IS NULL OR u.app_version IN :including)"
    )
    is_reader = (
        "EXISTS (SELECT 1 FROM read_receipt r WHERE r.end_user_id = u.id AND r.note_id = :note)"
    )
    in_window = "t.created_at >= :published AND t.created_at < :end"

    def rows(sql: str) -> list[Any]:
        query = text(sql)
        if ":including" in sql:
            query = query.bindparams(bindparam("including", expanding=True))
        used = {k: v for k, v in params.items() if f":{k}" in sql}
        return list(session.execute(query, used))

    users = dict(
        rows(f"SELECT {is_reader} AS reader, count(*) FROM end_user u WHERE {exposed} GROUP BY 1")
    )
    tickets = dict(
        rows(
            f"SELECT {is_reader} AS reader, count(*) FROM ticket t"
            f" JOIN end_user u ON u.id = t.end_user_id"
            f" WHERE {exposed} AND {in_window} AND {topic_clause} GROUP BY 1"
        )
    )
    [[unmatched]] = rows(
        "SELECT count(*) FROM ticket t WHERE t.product_id = :product AND t.end_user_id IS NULL"
        f" AND {in_window} AND {topic_clause}"
    )

    def volume(start: str, stop: str) -> Group:
        [[active]] = rows(
            f"SELECT count(*) FROM end_user u WHERE u.product_id = :product"
            f" AND u.first_seen_at < {stop} AND u.last_seen_at >= {start}"
        )
        [[count]] = rows(
            "SELECT count(*) FROM ticket t WHERE t.product_id = :product"
            f" AND t.created_at >= {start} AND t.created_at < {stop} AND {topic_clause}"
        )
        return Group(active, count)

    treated = control = None
    if note["holdback_percent"]:
        groups = dict(
            rows(
                "SELECT h.control, count(*) FROM holdback_assignment h"
                f" JOIN end_user u ON u.id = h.end_user_id WHERE h.note_id = :note AND {exposed}"
                " GROUP BY 1"
            )
        )
        group_tickets = dict(
            rows(
                "SELECT h.control, count(*) FROM holdback_assignment h"
                " JOIN end_user u ON u.id = h.end_user_id"
                " JOIN ticket t ON t.end_user_id = u.id"
                f" WHERE h.note_id = :note AND {exposed} AND {in_window} AND {topic_clause}"
                " GROUP BY 1"
            )
        )
        treated = Group(groups.get(0, 0), group_tickets.get(0, 0))
        control = Group(groups.get(1, 0), group_tickets.get(1, 0))

    per_day = dict(
        rows(
            "SELECT date(t.created_at), count(*) FROM ticket t WHERE t.product_id = :product"
            f" AND t.created_at >= :before AND t.created_at < :end AND {topic_clause}"
            " GROUP BY 1"
        )
    )
    first, last = (published - window).date(), (end - timedelta(microseconds=1)).date()
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    return Counted(
        note_id=note["id"],
        version=note["version"],
        published_at=published,
        window_end=end,
        topics=topics,
        holdback_percent=note["holdback_percent"],
        exposed=users.get(0, 0) + users.get(1, 0),
        readers=Group(users.get(1, 0), tickets.get(1, 0)),
        non_readers=Group(users.get(0, 0), tickets.get(0, 0)),
        unmatched=unmatched,
        before=volume(":before", ":published"),
        after=volume(":published", ":end"),
        treated=treated,
        control=control,
        daily={day: per_day.get(day.isoformat(), 0) for day in days},
    )


@pytest.fixture(scope="module")
def counted(live_app) -> dict[str, Counted]:
    with live_app.app_context():
        found = {title: count_note(db.session(), title) for title in (HELD_BACK, TOPIC_NOTE)}
        db.session.remove()
    return found


# How the pages write a figure ---------------------------------------------------------------


def n(value: int) -> str:
    return f"{value:,}"


def rate(group: Group) -> str:
    """Tickets per 1,000 users with the exact 95 % Poisson interval, as the pages write it."""
    low = 0.0 if group.tickets == 0 else stats.chi2.ppf(0.025, 2 * group.tickets) / 2
    high = stats.chi2.ppf(0.975, 2 * group.tickets + 2) / 2
    scale = 1000 / group.users
    return f"{group.tickets * scale:,.2f} 95 % CI {low * scale:,.2f}–{high * scale:,.2f}"


def shoot(page, name: str) -> None:
    """The whole page from its top: scrolled down, the sticky header would be drawn over
    the middle of a full-page picture."""
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=SCREENSHOTS / name, full_page=True)


def words(locator) -> str:
    return " ".join(locator.inner_text().split())


def day_label(day: date) -> str:
    return f"{day.day} {day:%b}"


# The test ---------------------------------------------------------------------------------


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_support_impact_on_the_demo_shows_what_the_tickets_say(
    page, live_server, counted: dict[str, Counted], viewport
) -> None:
    label = "phone" if viewport is PHONE else "desktop"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def fits_and_shoot(name: str) -> None:
        assert_fits(page, name)
        shoot(page, f"support-{name}-{label}.png")

    log_in(page, live_server, "demo@example.com")
    page.goto(f"{live_server}/console/p/lumen/notes")
    page.get_by_role("link", name="Support", exact=True).click()
    page.wait_for_url(f"{live_server}/console/p/lumen/support/impact")

    # (1) Each note's row: exposed, readers, non-readers, and the two rates with the
    # tickets they count, as counted above.
    for title, c in counted.items():
        row = page.locator("tbody.impact-note", has=page.get_by_role("link", name=title))
        cells = row.locator("tr").first.locator("td")
        assert [words(cells.nth(i)) for i in range(5)] == [
            n(c.exposed),
            n(c.readers.users),
            n(c.non_readers.users),
            f"{rate(c.readers)} {n(c.readers.tickets)} tickets",
            f"{rate(c.non_readers)} {n(c.non_readers.tickets)} tickets",
        ], title

    # (2) The verdicts: the hold-back note's effect, labelled as the causal estimate, and
    # the rest said in words only where the data allow.
    held = counted[HELD_BACK]
    assert held.treated is not None and held.control is not None
    assert held.control.users == pytest.approx(held.exposed * 0.2, rel=0.2)
    causal = page.locator("tbody.impact-note", has_text=HELD_BACK).locator("p.verdict.causal")
    assert causal.locator(".badge-causal").inner_text() == "Causal estimate"
    assert_effect(words(causal), held.treated, held.control)
    assert f"20 % held back: {n(held.control.users)} users." in words(causal)
    undecided = page.locator("tbody.impact-note", has_text=UNDECIDED_NOTE)
    assert words(undecided.locator("p.verdict").first) == "Not enough data yet."
    fits_and_shoot("impact")

    # (4) The CSV export holds the rows the page shows.
    with page.expect_download() as download:
        page.get_by_role("link", name="Export CSV").click()
    path = download.value.path()
    exported = {
        (row["version"], row["title"]): row
        for row in csv.DictReader(io.StringIO(path.read_text(encoding="utf-8")))
    }
    shown = page.locator("section.impact-release tbody")
    # The page leaves out the row of a release of one note, which would repeat it; the
    # CSV keeps every release's row.
    assert 10 < shown.count() <= len(exported)
    for i in range(shown.count()):
        body = shown.nth(i)
        version = words(body.locator("xpath=ancestor::section[1]").locator("h2"))
        heading = words(body.locator("th").first.locator("a, strong").first)
        title = f"Release {version}" if heading == f"All of {version}" else heading
        row = exported[(version, title)]
        cells = body.locator("tr").first.locator("td")
        assert [words(cells.nth(k)) for k in range(3)] == [
            n(int(row[key])) for key in ("exposed", "readers", "non_readers")
        ], title
        for cell, group in ((cells.nth(3), "rate_readers"), (cells.nth(4), "rate_non_readers")):
            if row[f"{group}_per_1000"]:
                figures = [float(row[f"{group}_{part}"]) for part in ("per_1000", "low", "high")]
                tickets = int(row[f"tickets_{group.removeprefix('rate_')}"])
                assert words(cell) == (
                    "{:,.2f} 95 % CI {:,.2f}–{:,.2f}".format(*figures) + f" {n(tickets)} ticket"
                    f"{'' if tickets == 1 else 's'}"
                ), title
            else:
                assert words(cell) == "no users", title
        assert words(body.locator("p.verdict").first) == row["verdict"], title
        if row["holdback_verdict"]:
            assert row["holdback_verdict"] in words(body.locator("p.verdict.causal")), title

    # (1, 3) The hold-back note's own page: its figures, then its daily chart.
    page.get_by_role("link", name=HELD_BACK).click()
    page.get_by_role("heading", name=HELD_BACK, level=1).wait_for()
    stats_shown = page.locator("section[aria-label='Who saw it'] dl.stats dd")
    assert [words(stats_shown.nth(i)) for i in range(4)] == [
        n(held.exposed),
        n(held.readers.users),
        n(held.non_readers.users),
        n(held.unmatched),
    ]
    for section, groups in (
        ("readers-title", (("Readers", held.readers), ("Non-readers", held.non_readers))),
        ("holdback-title", (("Told", held.treated), ("Held back", held.control))),
    ):
        body = page.locator(f"section[aria-labelledby={section}] table tbody")
        for name, group in groups:
            row = body.locator("tr", has=page.locator("th", has_text=re.compile(f"^{name}$")))
            assert words(row) == f"{name} {n(group.users)} {n(group.tickets)} {rate(group)}"
    assert_effect(words(page.locator("p.verdict.causal")), held.treated, held.control)
    volume = page.locator("section[aria-labelledby=volume-title] dl.stats")
    for when, group in (("Before", held.before), ("After", held.after)):
        figures = volume.locator("div", has=page.locator("dt", has_text=when))
        assert words(figures.locator("dd").first) == f"{group.tickets * 1000 / group.users:,.2f}"
        assert words(figures.locator("dd.ci")) == (
            f"{n(group.tickets)} tickets, {n(group.users)} active users"
        )

    chart = page.locator("svg.chart-bar[role=img]")
    assert chart.count() == 1
    assert chart.locator("title").first.text_content() == (
        "Tickets per day about login, session, 14 days either side of publication"
    )
    assert chart.locator(".chart-bars rect").count() == len(held.daily) == 29
    published = held.published_at.date()
    assert chart.locator(".chart-marker text").text_content() == f"Published {day_label(published)}"
    bar_titles = chart.locator(".chart-bars rect title").all_text_contents()
    assert bar_titles == [f"{day_label(d)}: {n(count)}" for d, count in held.daily.items()]
    table = page.locator("details.chart-table table")
    assert not table.is_visible()
    page.get_by_text("Show as table").click()
    assert [words(row) for row in table.locator("tbody tr").all()] == [
        f"{day_label(d)} {n(count)} "
        + ("before" if d < published else "published" if d == published else "in the window")
        for d, count in held.daily.items()
    ]
    assert sum(held.daily.values()) > 100, "the demo's topic tickets show on the chart"
    fits_and_shoot("note")

    # The topic note's page shows the same figures as its row.
    page.goto(f"{live_server}/console/p/lumen/support/impact/notes/{counted[TOPIC_NOTE].note_id}")
    export = counted[TOPIC_NOTE]
    assert [words(stats_shown.nth(i)) for i in range(4)] == [
        n(export.exposed),
        n(export.readers.users),
        n(export.non_readers.users),
        n(export.unmatched),
    ]
    daily = page.locator("details.chart-table table tbody tr")
    assert daily.count() == len(export.daily) == 29
    page.get_by_text("Show as table").click()
    assert [words(row.locator("td").nth(1)) for row in daily.all()] == [
        n(count) for count in export.daily.values()
    ]
    holdback = page.locator("section[aria-labelledby=holdback-title]")
    assert "No hold-back was set on this note before it went out." in words(holdback)


def assert_effect(sentence: str, treated: Group, control: Group) -> None:
    """The hold-back's verdict gives the effect counted here: the treated group's rate
    against the control group's, with the exact interval that conditions on the total."""
    found = re.search(
        r"cut tickets about login or session by (\d+) % \(95 % CI (\d+)–(\d+) %\)", sentence
    )
    assert found, sentence
    assert sentence.endswith("the causal estimate.") or "the causal estimate." in sentence
    scale = control.users / treated.users
    share = stats.binomtest(treated.tickets, treated.tickets + control.tickets)
    interval = share.proportion_ci(confidence_level=0.95, method="exact")

    def fewer(p: float) -> float:
        return (1 - p / (1 - p) * scale) * 100

    point = fewer(treated.tickets / (treated.tickets + control.tickets))
    expected = [point, fewer(interval.high), fewer(interval.low)]
    assert [int(x) for x in found.groups()] == pytest.approx(expected, abs=0.51)
    assert expected[1] > 0, "the demo's hold-back shows an effect"


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_an_owner_connects_a_help_desk(page, live_server, viewport) -> None:
    label = "phone" if viewport is PHONE else "desktop"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    log_in(page, live_server, "demo@example.com")
    page.goto(f"{live_server}/console/p/lumen/support/impact")
    page.get_by_role("link", name="Connections").click()
    for desk in ("Zendesk", "Help Scout"):
        page.get_by_label("Help desk").select_option(label=desk)
        page.get_by_role("button", name="Connect", exact=True).click()
        page.get_by_text(f"{desk} connected.").wait_for()
    zendesk = page.locator("section.connection", has_text="Zendesk").last
    assert "deliveries are refused until you paste the secret" in zendesk.inner_text()
    secret = zendesk.locator("details.secret")
    assert secret.count() == 0
    zendesk.get_by_label("Zendesk signing secret").fill("pasted-from-zendesk")
    zendesk.get_by_role("button", name="Save secret").click()
    page.get_by_text("Signing secret saved").wait_for()
    zendesk = page.locator("section.connection", has_text="Zendesk").last
    code = zendesk.locator("details.secret code")
    assert not code.is_visible()
    zendesk.locator("details.secret summary").click()
    assert code.inner_text() == "pasted-from-zendesk"
    assert_fits(page, "connections", boxes=False)
    shoot(page, f"support-connections-{label}.png")
