"""Support → Look up in headless Chromium on the demo data: an agent finds a customer by
the id the app gives them and opens their page, at a laptop's 1280 px and a phone's
390 px, and nothing is wider than the screen.

Screenshots of the search, a search that finds nobody and the user's page (whole, its
top as first seen, and its first note at full size) go to instance/screenshots/ beside
the others, to be looked at after a run.
"""

from __future__ import annotations

import re

import pytest
from flask import Flask
from playwright.sync_api import expect
from sqlalchemy import select

from announcements.models import AgentSend, EndUser, Product, Ticket
from app.extensions import db
from tests.browser import PHONE, SCREENSHOTS, assert_fits
from tests.test_browser_console import log_in

pytestmark = pytest.mark.browser

LAPTOP = {"width": 1280, "height": 800}


@pytest.fixture(scope="module")
def customer(live_app: Flask) -> tuple[int, str]:
    """A demo customer of Lumen with the most on their page: an agent sent them a note
    from the console, and they have tickets. Their row id and the app's id for them."""
    with live_app.app_context():
        found = db.session.execute(
            select(EndUser.id, EndUser.external_id)
            .join(Product, Product.id == EndUser.product_id)
            .join(AgentSend, AgentSend.end_user_id == EndUser.id)
            .join(Ticket, Ticket.end_user_id == EndUser.id)
            .where(Product.slug == "lumen", AgentSend.via == "console")
            .order_by(EndUser.id)
            .limit(1)
        ).one()
        return found.id, found.external_id


def fits(page, name: str) -> None:
    """Nothing is wider than the screen; then a screenshot of the whole page."""
    assert_fits(page, name, boxes=False)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{name}-{page.viewport_size['width']}.png", full_page=True)


@pytest.mark.parametrize("viewport", [LAPTOP, PHONE], ids=["1280", "390"])
def test_look_up_and_a_users_page_fit_the_screen(
    page, live_server, customer: tuple[int, str], viewport
) -> None:
    user_id, external_id = customer
    log_in(page, live_server, "demo@example.com")
    page.goto(f"{live_server}/console/p/lumen/support/impact")
    page.get_by_role("link", name="Look up").click()
    page.wait_for_url(f"{live_server}/console/p/lumen/support/lookup")
    expect(page.get_by_role("heading", name="Look up a user")).to_be_visible()
    fits(page, "support-lookup")

    search = page.get_by_label("User id or e-mail address")
    search.fill("nobody-by-this-id")
    page.get_by_role("button", name="Look up").click()
    expect(page.get_by_role("status")).to_contain_text("No user of Lumen")
    fits(page, "support-lookup-missing")

    search.fill(external_id)
    page.get_by_role("button", name="Look up").click()
    # (The page may say how the user was found, in its query string.)
    page.wait_for_url(re.compile(rf"/console/p/lumen/support/users/{user_id}(\?.*)?$"))
    expect(page.get_by_role("heading", name=external_id, exact=True)).to_be_visible()
    expect(page.locator(".user-note").first).to_be_visible()
    expect(page.locator(".un-sends li").first).to_contain_text("(console)")
    expect(page.locator(".user-tickets tbody tr").first).to_be_visible()
    fits(page, "support-user")
    # At full size: the top of the page as first seen, and the first note's row.
    width = page.viewport_size["width"]
    page.screenshot(path=SCREENSHOTS / f"support-user-top-{width}.png")
    page.locator(".user-note").first.screenshot(path=SCREENSHOTS / f"support-user-note-{width}.png")
