"""The public changelog in headless Chromium, at desktop and phone widths."""

from __future__ import annotations

import pytest

from tests.browser import DESKTOP, PHONE, SCREENSHOTS

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_public_changelog_fits_the_screen(page, live_server, viewport) -> None:
    label = "phone" if viewport is PHONE else "desktop"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for name, path in [
        ("changelog", "/changelog/lumen"),
        ("changelog-fixed", "/changelog/lumen?category=Fixed"),
        ("version", "/changelog/lumen/2.10.0"),
    ]:
        page.goto(f"{live_server}{path}")
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{name} is {overflow}px wider than a {viewport['width']}px screen"
        page.screenshot(path=SCREENSHOTS / f"public-{name}-{label}.png", full_page=True)
    accent = page.evaluate("getComputedStyle(document.body).getPropertyValue('--accent')")
    assert accent.strip() == "#4f46e5"  # the product's colour, set without inline style


def test_a_permalink_lands_on_its_note(page, live_server) -> None:
    page.goto(f"{live_server}/changelog/lumen")
    page.get_by_role("link", name="2.10.0").click()
    page.wait_for_url(f"{live_server}/changelog/lumen/2.10.0")
    # The version's own notes, each at its anchor, and nothing from other versions.
    assert "Funnels" in page.locator("h3").first.inner_text()
    assert page.locator("h3", has_text="Funnels").count() == 1
    assert page.locator("article[id^=note-] h3").all_inner_texts() == [
        "Funnels: see where people drop off",
        "Dates in exported PDFs",
    ]
    anchor = page.locator("article", has_text="Funnels").get_attribute("id")
    page.goto(f"{live_server}/changelog/lumen/2.10.0#{anchor}")
    assert page.evaluate("location.hash") == f"#{anchor}"
