"""The public changelog in headless Chromium, at desktop and phone widths."""

from __future__ import annotations

import email
import email.policy

import pytest
from sqlalchemy import select

from announcements.models import Note, Subscriber
from app.extensions import db
from app.mail import compose
from tests.browser import DESKTOP, PHONE, SCREENSHOTS, assert_fits

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
        assert_fits(page, name, boxes=False)
        page.screenshot(path=SCREENSHOTS / f"public-{name}-{label}.png", full_page=True)
    page.goto(f"{live_server}/changelog/lumen")
    page.fill("#subscribe-email", "not an address")
    page.click(".subscribe button[type=submit]")
    assert "not an email address" in page.locator(".field-error").inner_text()
    page.screenshot(path=SCREENSHOTS / f"public-subscribe-error-{label}.png", full_page=True)
    page.fill("#subscribe-email", f"reader-{label}@example.com")
    page.click(".subscribe button[type=submit]")
    assert "Check your inbox" in page.locator("h1").inner_text()
    page.screenshot(path=SCREENSHOTS / f"public-subscribe-sent-{label}.png", full_page=True)
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
        "Replace API tokens created before 2.10",
    ]
    anchor = page.locator("article", has_text="Funnels").get_attribute("id")
    page.goto(f"{live_server}/changelog/lumen/2.10.0#{anchor}")
    assert page.evaluate("location.hash") == f"#{anchor}"


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_release_note_email_reads_well(page, live_app, viewport) -> None:
    label = "phone" if viewport is PHONE else "desktop"
    with live_app.app_context():
        note = db.session.scalar(select(Note).where(Note.title.startswith("Funnels")))
        subscriber = db.session.scalar(
            select(Subscriber).where(Subscriber.email.startswith("amara"))
        )
        composed = compose.release_note(subscriber, note, compose.message_id_for(1))
    mail = email.message_from_bytes(composed.data, policy=email.policy.default)
    page.set_content(mail.get_body(("html",)).get_content())
    assert_fits(page, "the email", boxes=False)
    card = page.locator("td.card").bounding_box()
    assert card is not None and card["width"] <= 600
    assert page.get_by_role("link", name="Read on the web").is_visible()
    assert page.get_by_role("link", name="Unsubscribe").is_visible()
    page.screenshot(path=SCREENSHOTS / f"email-note-{label}.png", full_page=True)
