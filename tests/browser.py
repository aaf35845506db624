"""Browser fixtures: a live Tidings server with the demo loaded, and headless Chromium.

Loaded by conftest as a plugin. The browser tests skip with a reason when
Chromium is missing; ``make test`` installs it from Debian's packages.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import create_engine
from werkzeug.serving import BaseWSGIServer, make_server

from announcements.models import Base
from tests.conftest import PASSWORD, make_app

SCREENSHOTS = Path(__file__).resolve().parents[1] / "instance" / "screenshots"
DESKTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def live_listener() -> Iterator[BaseWSGIServer]:
    """The live server's socket, bound before its app is made, so that the app's BASE_URL
    is where it is served: the absolute URLs Tidings builds (uploaded images) then work."""
    server = make_server("127.0.0.1", 0, Flask(__name__), threaded=True)  # its app: below
    yield server
    server.server_close()


@pytest.fixture(scope="module")
def live_app(tmp_path_factory, live_listener: BaseWSGIServer) -> Flask:
    """The app on its own SQLite file, with pm@example.com and the demo data."""
    folder = tmp_path_factory.mktemp("live")
    url = f"sqlite:///{folder / 'live.db'}"
    engine = create_engine(url)
    Base.metadata.create_all(engine)
    engine.dispose()
    base_url = f"http://127.0.0.1:{live_listener.server_port}"
    app = make_app(url, folder / "instance", WTF_CSRF_SSL_STRICT=False, BASE_URL=base_url)
    live_listener.app = app
    runner = app.test_cli_runner()
    created = runner.invoke(
        args=["users", "create", "pm@example.com", "--all-products", "--password-stdin"],
        input=PASSWORD + "\n",
    )
    # Loaded after pm@example.com exists, so pm starts with no products of their own.
    demo = runner.invoke(args=["demo"], env={"DEMO_PASSWORD": PASSWORD})
    assert (created.exit_code, demo.exit_code) == (0, 0), created.output + demo.output
    return app


@pytest.fixture(scope="module")
def live_server(live_app: Flask, live_listener: BaseWSGIServer) -> Iterator[str]:
    thread = threading.Thread(target=live_listener.serve_forever, daemon=True)
    thread.start()
    yield live_app.config["BASE_URL"]
    live_listener.shutdown()


def shoot(page, name: str) -> None:
    """A whole-page screenshot of ``page`` into ``SCREENSHOTS``, from its top, for a person
    to look at."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)


def assert_fits(page, name: str, *, boxes: bool = True) -> None:
    """Nothing on ``page`` wider than its screen; with ``boxes``, nothing in ``main``
    scrolling sideways inside its box or cut off by it either. ``name`` says which page
    failed. It measures once the page has loaded: before its stylesheet applies, a
    page laid out bare is wider than any phone."""
    page.wait_for_load_state()
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    width = page.viewport_size["width"]
    assert overflow <= 0, f"{name} is {overflow}px wider than a {width}px screen"
    if boxes:
        assert_fits_inside(page, "main", name)


def assert_fits_inside(page, selector: str, name: str | None = None) -> None:
    """Nothing in ``selector`` scrolls sideways inside its box or is cut off by it (a box
    of 1 px is text kept for screen readers only); ``name``, the selector unless given,
    says which page failed."""
    page.wait_for_load_state()
    scrolled = page.evaluate(
        f"[...document.querySelectorAll('{selector} *')].filter(e => e.clientWidth > 1"
        " && e.scrollWidth > e.clientWidth + 1"
        " && getComputedStyle(e).overflowX != 'visible')"
        ".map(e => `${e.tagName}.${e.className} ${e.firstElementChild?.className ?? ''}"
        " in ${e.closest('section')?.getAttribute('aria-labelledby')}"
        " ${e.scrollWidth}px in ${e.clientWidth}px`)"
    )
    assert scrolled == [], f"{name or selector} scrolls sideways inside {scrolled}"


def serve(app: Flask) -> Iterator[str]:
    """Serve a WSGI app on a free loopback port in a thread; yield its URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Chromium is not installed: run the suite with `make test`")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def viewport() -> dict[str, int]:
    return DESKTOP


@pytest.fixture
def page(browser, viewport):
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    # A 422 form answer is logged as "Failed to load resource"; that is not a script error.
    page.on(
        "console",
        lambda msg: (
            errors.append(msg.text)
            if msg.type == "error" and not msg.text.startswith("Failed to load resource")
            else None
        ),
    )
    page.script_errors = errors
    yield page
    context.close()
    assert errors == [], "the page logged errors (a CSP violation, a script error)"
