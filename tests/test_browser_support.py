"""Support impact in headless Chromium, at desktop and phone widths: the figures of a
roll-up, the daily chart and its table, and nothing wider than the screen.

Screenshots go to /tmp/shots/ to be looked at after a run.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from sqlalchemy import delete, select

from announcements.models import Note, Product, SupportImpact
from app.extensions import db
from tests.browser import DESKTOP, PHONE
from tests.test_browser_console import log_in
from tests.test_support_console import add_rollup, note_figures, release_figures

pytestmark = pytest.mark.browser

SHOTS = Path(tempfile.gettempdir()) / "shots"


@pytest.fixture(scope="module")
def rolled_up(live_app) -> str:
    """Lumen's newest note with a known roll-up, and its release's; the note's title."""
    with live_app.app_context():
        session = db.session
        product = session.scalar(select(Product).where(Product.slug == "lumen"))
        assert product is not None
        note = session.scalars(
            select(Note)
            .where(Note.product_id == product.id, Note.published_at.is_not(None))
            .order_by(Note.published_at.desc())
        ).first()
        assert note is not None
        session.execute(delete(SupportImpact).where(SupportImpact.product_id == product.id))
        title = note.title
        add_rollup(session, product, release_figures(note.version))
        add_rollup(session, product, note_figures(note.id, note.version, title))
        return title


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_support_impact_shows_the_figures_and_the_chart(
    page, live_server, rolled_up: str, viewport
) -> None:
    label = "phone" if viewport is PHONE else "desktop"
    SHOTS.mkdir(parents=True, exist_ok=True)

    def check(name: str) -> None:
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{name} is {overflow}px wider than a {viewport['width']}px screen"
        page.screenshot(path=SHOTS / f"support-{name}-{label}.png", full_page=True)

    log_in(page, live_server, "demo@example.com")
    page.goto(f"{live_server}/console/p/lumen/notes")
    page.get_by_role("link", name="Support", exact=True).click()
    page.wait_for_url(f"{live_server}/console/p/lumen/support/impact")
    row = page.locator("tbody.impact-note tr").first
    assert rolled_up in row.inner_text()
    cells = row.locator("td")
    assert cells.nth(0).inner_text() == "5,120"
    assert "5.22" in cells.nth(3).inner_text() and "2.70–9.11" in cells.nth(3).inner_text()
    assert "Readers opened 64 % fewer tickets about export" in page.locator("main").inner_text()
    check("impact")

    row.get_by_role("link", name=rolled_up).click()
    chart = page.get_by_role("img", name="Tickets per day about export")
    assert chart.count() == 1
    assert chart.locator(".chart-bars rect").count() == 23  # 14 days before, the day, 8 after
    assert page.locator(".chart-marker text").text_content() == "Published 1 Oct"
    table = page.locator("details.chart-table table")
    assert not table.is_visible()
    page.get_by_text("Show as table").click()
    assert table.locator("tbody tr").count() == 23
    readers = page.get_by_role("img", name="Tickets per 1,000 readers and non-readers")
    assert readers.locator("circle.point").count() == 2
    check("note")


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_an_owner_connects_a_help_desk(page, live_server, viewport) -> None:
    label = "phone" if viewport is PHONE else "desktop"
    SHOTS.mkdir(parents=True, exist_ok=True)
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
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"connections is {overflow}px wider than the screen"
    page.screenshot(path=SHOTS / f"support-connections-{label}.png", full_page=True)
