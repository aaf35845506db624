"""The public changelog in French and in Arabic, in headless Chromium, desktop and phone.

The demo's Lumen speaks English, French and Arabic, with notes translated into both, one
French translation outdated and notes missing theirs. Right to left is checked by where
things sit on the screen, not only by the attribute. Screenshots go to /tmp/shots-17/.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from flask_babel import force_locale, gettext

from tests.browser import DESKTOP, PHONE, assert_fits
from tests.i18n_helpers import needs_catalogue

pytestmark = pytest.mark.browser

SHOTS = Path(tempfile.gettempdir()) / "shots-17"
VIEWPORTS = pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])


def box(page, selector: str) -> dict[str, float]:
    found = page.locator(selector).first.bounding_box()
    assert found is not None, f"{selector} is not on the screen"
    return found


def texts_by_language(page) -> dict[str, list[str]]:
    """The notes' titles by the language their element says, with its computed direction."""
    found: dict[str, list[str]] = {}
    for lang, direction, title in page.evaluate(
        "[...document.querySelectorAll('article .note-text')].map(e =>"
        " [e.lang, getComputedStyle(e).direction, e.querySelector('h3').innerText])"
    ):
        found.setdefault(f"{lang} {direction}", []).append(title)
    return found


@VIEWPORTS
@pytest.mark.parametrize("locale", ["fr", "ar"])
def test_the_changelog_in_french_and_arabic(page, live_server, viewport, locale) -> None:
    label = "phone" if viewport is PHONE else "desktop"
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.goto(f"{live_server}/changelog/lumen?locale={locale}")
    rtl = locale == "ar"
    html = page.locator("html")
    assert (html.get_attribute("lang"), html.get_attribute("dir")) == (
        locale,
        "rtl" if rtl else "ltr",
    )
    assert_fits(page, f"the {locale} changelog", boxes=False)  # code blocks scroll inside
    page.screenshot(path=SHOTS / f"public-{locale}-{label}.png", full_page=True)
    # Notes in the language, and the untranslated in English, each written its own way.
    shown = texts_by_language(page)
    assert shown.get(f"{locale} {'rtl' if rtl else 'ltr'}"), shown
    assert shown.get("en ltr"), f"no note falls back to English: {shown}"
    assert set(shown) == {f"{locale} {'rtl' if rtl else 'ltr'}", "en ltr"}
    # The page reads from the right in Arabic: the header starts with the product's name
    # on the right, and a note's category comes before (right of) its link.
    brand, feeds = box(page, ".masthead .brand"), box(page, ".masthead .feeds")
    pill, anchor = box(page, ".note-meta .pill"), box(page, ".note-meta .anchor")
    if rtl:
        assert brand["x"] > feeds["x"] + feeds["width"] - 1
        assert pill["x"] > anchor["x"]
    else:
        assert brand["x"] + brand["width"] < feeds["x"] + 1
        assert pill["x"] < anchor["x"]
    # An Arabic note's title ends at the right edge of its note; an English one at the left.
    for lang, edge in (("ar", "right"), ("en", "left")) if rtl else ():
        title = box(page, f".note-text[lang={lang}] h3")
        note = box(page, f"article:has(.note-text[lang={lang}])")
        if edge == "right":
            assert abs(title["x"] + title["width"] - (note["x"] + note["width"])) <= 2
        else:
            assert abs(title["x"] - note["x"]) <= 2


@VIEWPORTS
def test_the_switcher_and_the_permalinks_keep_the_language(page, live_server, viewport) -> None:
    label = "phone" if viewport is PHONE else "desktop"
    page.goto(f"{live_server}/changelog/lumen", wait_until="load")
    switcher = page.locator("nav.languages")
    assert switcher.get_by_role("link").all_inner_texts() == ["English", "Français", "العربية"]
    switcher.get_by_role("link", name="العربية").click()
    page.wait_for_url(f"{live_server}/changelog/lumen?locale=ar")
    assert page.locator("html").get_attribute("dir") == "rtl"
    version = page.locator(".release h2 a").first
    number = version.inner_text()
    version.click()
    page.wait_for_url(f"{live_server}/changelog/lumen/{number}?locale=ar")
    assert page.locator("html").get_attribute("lang") == "ar"
    assert page.locator(".note-text[lang=ar]").count() >= 1
    assert_fits(page, "an Arabic permalink", boxes=False)
    page.screenshot(path=SHOTS / f"public-ar-version-{label}.png", full_page=True)
    page.get_by_role("link", name="Français").click()
    page.wait_for_url(f"{live_server}/changelog/lumen/{number}?locale=fr")
    assert page.locator("html").get_attribute("dir") == "ltr"
    # Searching keeps the language too.
    page.goto(f"{live_server}/changelog/lumen?locale=fr")
    page.fill("#q", "a")
    page.press("#q", "Enter")
    page.wait_for_url("**/changelog/lumen?q=a&locale=fr")


@needs_catalogue("fr", "Search releases")
def test_the_french_page_s_words_are_french(page, live_app, live_server) -> None:
    page.goto(f"{live_server}/changelog/lumen?locale=fr")
    with live_app.test_request_context(), force_locale("fr"):
        placeholder, button = gettext("Search releases"), gettext("Search")
    assert page.locator("#q").get_attribute("placeholder") == placeholder
    assert page.locator(".filters button").inner_text() == button
