"""The agent sidebar in headless Chromium, as a help desk shows it: in a 320 px iframe of a
page on another site (``localhost`` framing ``127.0.0.1``, each on a port of its own),
opened by a signed link; refusing an expired one in the same frame; sending a note from
it. And the console's Agent sidebar page at desktop and phone widths.

Screenshots go to instance/screenshots/, to be looked at after a run.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from html import escape
from urllib.parse import urlencode

import pytest
from flask import Flask, request
from sqlalchemy import select

from announcements import sidebar_links
from announcements.models import AgentSend, Product, utcnow
from app.demo_data import DEMO_EMAIL, DEMO_HOST_PRODUCT, DEMO_HOST_USER
from app.extensions import db
from tests.browser import PHONE, SCREENSHOTS, assert_fits, serve
from tests.test_browser_console import log_in

pytestmark = pytest.mark.browser

COLUMN = 320


@pytest.fixture(scope="module")
def desk(live_app: Flask) -> Iterator[str]:
    """A pretend help desk on another site: its page frames the link in ``?src=``."""
    host = Flask("desk")

    @host.get("/ticket")
    def ticket() -> str:
        src = escape(request.args["src"])
        return (
            "<!doctype html><title>Ticket #1042</title>"
            "<body style='margin:0;display:flex;font:14px sans-serif'>"
            "<main style='flex:1;padding:1rem'><h1>Ticket #1042</h1><p>Export is empty</p></main>"
            f"<iframe id='app' src='{src}' width='{COLUMN}' height='900'"
            " style='border:0;border-left:1px solid #ddd'></iframe></body>"
        )

    for url in serve(host):
        yield url.replace("127.0.0.1", "localhost")


def signed(live_app: Flask, *, age: timedelta = timedelta(0), agent: str = "Sam Support") -> str:
    """A sidebar link for the demo's host user, made ``age`` ago."""
    with live_app.app_context():
        product = db.session.scalar(select(Product).where(Product.slug == DEMO_HOST_PRODUCT))
        assert product is not None
        params = sidebar_links.sign(product, DEMO_HOST_USER, agent=agent, now=utcnow() - age)
        db.session.remove()
    return sidebar_links.url(live_app.config["BASE_URL"], params)


def open_in_desk(page, desk: str, link: str):
    page.goto(f"{desk}/ticket?" + urlencode({"src": link}))
    return page.frame_locator("#app")


@pytest.mark.parametrize("viewport", [{"width": 1100, "height": 900}])
def test_the_sidebar_shows_in_a_desks_320px_frame_on_another_site(
    page, live_server, live_app, desk, viewport
) -> None:
    frame = open_in_desk(page, desk, signed(live_app))
    frame.get_by_role("heading", name=DEMO_HOST_USER).wait_for()
    assert frame.locator("article.note").count() > 0
    inner = page.frames[1]
    assert inner.url.startswith(live_server)
    width = inner.evaluate("document.documentElement.scrollWidth")
    assert width <= COLUMN, f"the sidebar is {width}px wide in a {COLUMN}px column"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.locator("#app").screenshot(path=SCREENSHOTS / "sidebar-320.png")

    # The agent sends the first note; the frame shows it sent, with no cookie to help.
    first = frame.locator("article.note").first
    title = first.locator("h3").inner_text()
    first.get_by_role("button", name="Send to this user").click()
    frame.get_by_text(f"Sent “{title}”").wait_for()
    assert page.context.cookies() == []
    with live_app.app_context():
        sends = db.session.scalars(select(AgentSend).where(AgentSend.agent == "Sam Support"))
        assert [(s.via, s.end_user.external_id, s.note.title) for s in sends] == [
            ("sidebar", DEMO_HOST_USER, title)
        ]
        db.session.remove()
    page.locator("#app").screenshot(path=SCREENSHOTS / "sidebar-320-sent.png")


@pytest.mark.parametrize("viewport", [{"width": 1100, "height": 900}])
def test_an_expired_link_is_refused_in_the_frame(
    page, live_server, live_app, desk, viewport
) -> None:
    frame = open_in_desk(page, desk, signed(live_app, age=timedelta(minutes=11)))
    frame.get_by_role("heading", name="This link does not open the sidebar").wait_for()
    text = frame.locator("body").inner_text()
    assert "expired" in text and DEMO_HOST_USER not in text
    assert frame.locator("article.note").count() == 0
    page.locator("#app").screenshot(path=SCREENSHOTS / "sidebar-320-expired.png")


@pytest.mark.parametrize(
    "viewport", [{"width": 1280, "height": 900}, PHONE], ids=["desktop", "phone"]
)
def test_the_console_page_fits_and_its_trial_link_opens_the_sidebar(
    page, live_server, viewport
) -> None:
    label = "phone" if viewport is PHONE else "desktop"
    log_in(page, live_server, DEMO_EMAIL)
    page.goto(f"{live_server}/console/p/{DEMO_HOST_PRODUCT}/support/sidebar")
    page.fill("#try-user", DEMO_HOST_USER)
    page.fill("#try-agent", "Dana Demo")
    page.get_by_role("button", name="Make a signed link").click()
    preview = page.frame_locator("iframe.sidebar-preview")
    preview.get_by_role("heading", name=DEMO_HOST_USER).wait_for()
    assert_fits(page, "the sidebar page", boxes=False)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"support-sidebar-{label}.png", full_page=True)
