"""Insights in headless Chromium on the demo as ``flask demo`` loads it: the product's page
with a segment breakdown and a comparison, a note's page broken down by a segment, its
comments and the exports of who has not read it and of the comments; the figures counted
again here in SQL over the demo's raw tables; the tables behind the charts; nothing wider
than the screen at desktop and phone widths; no script or CSP error (the ``page``
fixture).

Screenshots go to instance/screenshots/ (insights-*.png), to be looked at after a run.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import bindparam, text

from announcements import rollups, versions
from announcements.models import Product
from app.extensions import db
from tests.browser import DESKTOP, PHONE, SCREENSHOTS, assert_fits
from tests.test_browser_console import log_in
from tests.test_browser_support import shoot, stored, words

pytestmark = pytest.mark.browser


@dataclass(frozen=True)
class Counted:
    """The demo's figures as this test counts them from the raw rows."""

    counted_until: datetime
    segment: str  # an attribute the demo's users have, beyond the built-ins
    weekly_active: int  # users seen in the 7 days to today
    note_id: int
    title: str
    readers: int
    non_readers: int  # exposed, by the users' own rows, without a receipt
    comments: int


def count(session, sql: str, **params) -> int:
    query = text(sql)
    if "including" in params:
        query = query.bindparams(bindparam("including", expanding=True))
    return int(session.scalar(query, params) or 0)


@pytest.fixture(scope="module")
def counted(live_app) -> Counted:
    with live_app.app_context():
        session = db.session()
        lumen = session.query(Product).filter_by(slug="lumen").one()
        until = rollups.counted_until(session, lumen)
        assert until is not None, "the demo counts its roll-up"
        names = rollups.segments(session, lumen)
        extra = [name for name in names if name not in rollups.BUILT_IN_SEGMENTS]
        assert extra, "the demo's users carry attributes to break figures down by"
        today = until.astimezone(UTC).date()
        weekly = count(
            session,
            "SELECT count(DISTINCT end_user_id) FROM end_user_day WHERE product_id = :product"
            " AND day >= :first AND day <= :last AND seen_at <= :until",
            product=lumen.id,
            first=(today - timedelta(days=6)).isoformat(),
            last=today.isoformat(),
            until=stored(until),
        )
        # The note most reacted to (so most commented on) of those published in the last
        # 28 days, the default range, from which the page's ranking links to it.
        note_id, title, version, published = session.execute(
            text(
                "SELECT n.id, n.title, n.version, n.published_at FROM note n"
                " WHERE n.product_id = :product AND n.published_at >= :since"
                " AND n.published_at <= :until AND n.is_internal = :no AND n.archived_at IS NULL"
                " ORDER BY (SELECT count(*) FROM reaction r WHERE r.note_id = n.id) DESC,"
                " n.id LIMIT 1"
            ),
            {
                "product": lumen.id,
                "since": stored(until - timedelta(days=27)),
                "until": stored(until),
                "no": False,
            },
        ).one()
        readers = count(
            session,
            "SELECT count(*) FROM read_receipt WHERE note_id = :note AND read_at <= :until",
            note=note_id,
            until=stored(until),
        )
        present = session.scalars(
            text("SELECT DISTINCT app_version FROM end_user WHERE product_id = :product"),
            {"product": lumen.id},
        )
        wanted = versions.parse(version)
        including = [
            v for v in present if v and versions.is_valid(v) and versions.parse(v) >= wanted
        ]
        non_readers = count(
            session,
            "SELECT count(*) FROM end_user u WHERE u.product_id = :product"
            " AND u.last_seen_at >= :published"
            " AND (u.app_version IS NULL OR u.app_version IN :including)"
            " AND NOT EXISTS (SELECT 1 FROM read_receipt r"
            " WHERE r.end_user_id = u.id AND r.note_id = :note)",
            product=lumen.id,
            published=published,
            including=including or [""],
            note=note_id,
        )
        comments = count(
            session,
            "SELECT count(*) FROM reaction WHERE note_id = :note"
            " AND comment IS NOT NULL AND comment != ''",
            note=note_id,
        )
        db.session.remove()
    return Counted(until, extra[0], weekly, note_id, title, readers, non_readers, comments)


def fits(page, name: str, viewport: dict[str, int]) -> None:
    """Nothing wider than the screen, nothing scrolling sideways inside its box (a box of
    1 px is text kept for screen readers); then the whole page as a picture."""
    assert_fits(page, name)
    label = "phone" if viewport is PHONE else "desktop"
    shoot(page, f"insights-{name}-{label}.png")


def figure_day(day: date) -> str:
    return f"{day.day} {day:%b}"


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_insights_on_the_demo(page, live_server, counted: Counted, viewport) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    log_in(page, live_server, "demo@example.com")
    segment = counted.segment

    # The product's page, broken down by an attribute the demo's users have.
    page.goto(f"{live_server}/console/p/lumen/insights")
    page.get_by_label("Break down by").select_option(segment)
    page.get_by_role("button", name="Show").click()
    page.wait_for_url(f"**/insights?*by={segment}*")
    weekly = page.locator("[data-stat=weekly] .stat-value")
    assert words(weekly) == f"{counted.weekly_active:,}"
    # Every chart is an image with its figures said, and its numbers in a table.
    charts = page.locator("main svg[role=img]")
    assert charts.count() >= 4
    for i in range(charts.count()):
        assert len(charts.nth(i).get_attribute("aria-label") or "") > 20
    assert page.locator("svg.chart-line .chart-path").count() >= 2
    breakdown = page.locator("section#segment")
    assert breakdown.locator("svg.chart-hbar .chart-hbar-fill").count() >= 2
    table = page.locator("section[aria-labelledby=weekly-title] details table")
    assert not table.is_visible()
    page.locator("section[aria-labelledby=weekly-title] summary").click()
    last = table.locator("tbody tr").last.locator("td")
    today = counted.counted_until.astimezone(UTC).date()
    assert [words(last.nth(0)), words(last.nth(1))] == [
        figure_day(today),
        f"{counted.weekly_active:,}",
    ]
    fits(page, "product", viewport)

    # The same range against the one before, in one click.
    page.get_by_role("link", name="Compare with the previous period").click()
    page.get_by_text("compared with").first.wait_for()
    assert page.locator("[data-stat=weekly] .stat-change").count() == 1
    assert page.locator("svg.chart-compare .chart-series-2 .chart-path").count() >= 1
    fits(page, "compare", viewport)

    # A note's page from the ranking, broken down by the same attribute.
    page.get_by_role("link", name="Stop comparing").click()
    page.locator("section[aria-labelledby=by-rate-title]").get_by_role(
        "link", name=counted.title
    ).click()
    page.get_by_role("heading", name=counted.title, level=1).wait_for()
    page.get_by_label("Break down by").select_option(segment)
    page.get_by_role("button", name="Show").click()
    page.wait_for_url(f"**/notes/{counted.note_id}/insights?*by={segment}*")
    assert words(page.locator("dd[data-figure=readers]")) == f"{counted.readers:,}"
    assert page.locator(".chart-segments svg[role=img] .point").count() >= 2
    assert page.locator("svg.chart-line .chart-series-2 .chart-path").count() >= 1
    fits(page, "note", viewport)

    # Who has not read it: the owner ticks a column and downloads the list.
    export = page.locator("section#export")
    export.get_by_label(segment, exact=True).check()
    with page.expect_download() as download:
        export.get_by_role("button", name="Download CSV").click()
    rows = list(csv.reader(io.StringIO(download.value.path().read_text(encoding="utf-8"))))
    assert rows[0] == ["external_id", "last_seen_at", segment]
    assert len(rows) - 1 == counted.non_readers > 0

    # Every comment, searchable.
    page.get_by_role("link", name="Comments", exact=False).first.click()
    page.get_by_role("heading", name="Comments", level=1).wait_for()
    assert page.locator("li.comment").count() == min(counted.comments, 50)
    fits(page, "comments", viewport)
    # Their export is a form posted with the page's CSRF token, as it is audited.
    with page.expect_download() as download:
        page.get_by_role("button", name="Download CSV").click()
    rows = list(csv.reader(io.StringIO(download.value.path().read_text(encoding="utf-8"))))
    assert rows[0][:2] == ["reaction", "comment"] and len(rows) - 1 == counted.comments
