"""The console in headless Chromium: writing and publishing a note, and every page at
desktop and phone widths.

The page tests leave screenshots in instance/screenshots/ to look at after a run.
"""

from __future__ import annotations

import email
import email.policy
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect
from sqlalchemy import select, update

from announcements import webhooks
from announcements.models import Note, OutboxStatus, WebhookDelivery, WebhookEvent, utcnow
from app import webhooks as webhook_calls
from app.extensions import db
from app.mail import delivery as delivery_run
from app.mail import transport
from tests.browser import DESKTOP, PHONE, SCREENSHOTS, assert_fits
from tests.conftest import PASSWORD
from tests.mailserver import SmtpServer

pytestmark = pytest.mark.browser


def log_in(page, live_server: str, email: str) -> None:
    page.goto(f"{live_server}/console/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server}/console/")


def test_a_product_manager_writes_previews_and_publishes_a_note(page, live_server) -> None:
    log_in(page, live_server, "pm@example.com")
    page.get_by_text("Create your first product").click()
    page.fill("input[name=name]", "Acme")
    page.fill("input[name=slug]", "acme")
    page.click("button:has-text('Create product')")
    page.get_by_text("Acme is ready").wait_for()

    page.get_by_role("link", name="Write a note").click()
    page.fill("input[name=version]", "2.10.0")
    page.fill("input[name=title]", "Funnels")
    page.fill(
        "textarea[name=body_md]",
        "See **where** people drop off.\n\n- steps\n\n<script>alert(1)</script>",
    )
    preview = page.locator("#preview")
    preview.locator("strong", has_text="where").wait_for()
    assert preview.locator("li").inner_text() == "steps"
    assert preview.locator("script").count() == 0
    assert page.locator("#preview-title").inner_text() == "Funnels"

    page.click("button[value=publish]")
    page.get_by_text("“Funnels” is live in 2.10.0.").wait_for()
    page.get_by_role("link", name="Release notes").click()
    row = page.locator(".note-row", has_text="Funnels")
    assert "Published" in row.inner_text()
    assert page.locator(".version-head h2").first.inner_text() == "2.10.0"


def test_a_bad_version_is_shown_beside_the_field(page, live_server) -> None:
    log_in(page, live_server, "pm@example.com")
    page.goto(f"{live_server}/console/p/acme/notes/new")
    page.fill("input[name=version]", "next week")
    page.fill("input[name=title]", "Something")
    page.click("button[value=save]")
    error = page.locator(".field-error")
    assert "is not a version we can order" in error.first.inner_text()
    assert page.locator("input[name=version]").get_attribute("aria-invalid") == "true"


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_every_console_page_fits_the_screen(page, live_server, viewport) -> None:
    label = "phone" if viewport is PHONE else "desktop"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def check(name: str) -> None:
        assert_fits(page, name, boxes=False)
        page.screenshot(path=SCREENSHOTS / f"{name}-{label}.png", full_page=True)

    page.goto(f"{live_server}/console/login")
    check("login")
    page.goto(f"{live_server}/console/forgot-password")
    check("forgot-password")
    log_in(page, live_server, "demo@example.com")
    check("products")
    page.goto(f"{live_server}/console/account")
    check("account")
    for name in ("notes", "subscribers", "settings", "team", "api-keys", "webhooks", "audit"):
        page.goto(f"{live_server}/console/p/lumen/{name}")
        check(name)
    page.goto(f"{live_server}/api/v1/docs")
    page.locator("section.op").first.wait_for()
    check("api-docs")
    page.goto(f"{live_server}/console/p/lumen/notes")
    page.locator(".note-title", has_text="Funnels: see where").click()
    page.locator("#preview li").first.wait_for()
    check("editor")


def test_an_owner_creates_an_api_key_that_is_shown_once(page, live_server) -> None:
    log_in(page, live_server, "demo@example.com")
    page.goto(f"{live_server}/console/p/lumen/api-keys")
    page.fill("input[name=name]", "GitHub Actions")
    page.check("input[value='notes:write']")
    page.click("button:has-text('Create key')")
    shown = page.locator("#new-key code.big").inner_text()
    assert shown.startswith("tid_")
    row = page.locator("tr", has_text="GitHub Actions")
    assert "notes:write" in row.inner_text() and shown not in page.locator("table").inner_text()
    page.goto(f"{live_server}/console/p/lumen/api-keys")
    assert page.locator("#new-key").count() == 0


def test_a_note_is_sent_to_subscribers_and_the_page_follows_the_send(
    page, live_app, live_server, smtp_server: SmtpServer
) -> None:
    log_in(page, live_server, "demo@example.com")
    page.goto(f"{live_server}/console/p/lumen/notes")
    page.locator(".note-title", has_text="Dates in exported PDFs").click()
    delivery = page.locator("section.delivery")
    expect(delivery).to_contain_text("Not emailed")
    page.once("dialog", lambda dialog: dialog.accept())
    delivery.get_by_role("button", name="Send to subscribers").click()
    expect(page.locator(".flash")).to_contain_text("to 4 subscribers")
    expect(delivery.locator("[data-count=queued]")).to_have_text("4")
    with live_app.app_context():
        note = db.session.scalars(select(Note).where(Note.title == "Dates in exported PDFs")).one()
        subject = f"{note.product.name} {note.version}: {note.title}"
        sender = transport.Smtp(smtp_server.url)
        try:
            report = delivery_run.deliver_due(sender)
        finally:
            sender.close()
    assert report.sent == 4
    # Four subscribers, one message each, as the SMTP server received them.
    received = smtp_server.recorder.per_recipient()
    assert len(received) == 4 and set(received.values()) == {1}
    assert [item.message["Subject"] for item in smtp_server.recorder.received] == [subject] * 4
    # The page asks for the counts every two seconds while anything is queued.
    expect(delivery.locator("[data-count=sent]")).to_have_text("4", timeout=10_000)
    expect(delivery.locator("[data-count=queued]")).to_have_text("0")
    page.screenshot(path=SCREENSHOTS / "note-delivery-desktop.png")


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_an_owner_adds_a_webhook_tests_it_and_retries_a_failed_call(
    page, live_app, live_server, receiver, viewport
) -> None:
    label = "phone" if viewport is PHONE else "desktop"
    log_in(page, live_server, "demo@example.com")
    page.goto(f"{live_server}/console/p/lumen/webhooks")
    page.fill("input[name=url]", receiver.url)
    page.check("input[value='note.published']")
    page.click("button:has-text('Add webhook')")
    card = page.locator(".webhook", has_text=receiver.url)
    card.get_by_role("button", name="Send a test call").click()
    expect(page.locator(".flash")).to_contain_text("Test call answered with HTTP 200")
    assert len(receiver.calls) == 1
    with live_app.app_context():  # a call that failed every try
        note = db.session.scalars(select(Note).where(Note.title.like("Funnels: see where%"))).one()
        webhooks.queue(db.session, note, WebhookEvent.PUBLISHED, at=utcnow(), now=utcnow())
        db.session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.status == OutboxStatus.QUEUED)
            .values(status=OutboxStatus.FAILED, attempts=8, response_status=503)
            .values(last_error="HTTP 503: receiver is down")
        )
        db.session.commit()
    page.reload()
    assert_fits(page, "webhooks", boxes=False)
    page.screenshot(path=SCREENSHOTS / f"webhooks-{label}.png", full_page=True)
    page.get_by_role("button", name="Retry now").click()
    expect(page.locator(".flash")).to_contain_text("goes out again in a moment")
    with live_app.app_context():
        assert webhook_calls.deliver_due()["sent"] == 1
    page.reload()
    expect(page.locator("table")).to_contain_text("sent")
    assert len(receiver.calls) == 2
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator(".webhook", has_text=receiver.url).get_by_role("button", name="Remove").click()
    expect(page.locator(".flash")).to_contain_text("Webhook removed")


def test_an_owner_invites_a_teammate_who_joins_with_a_password_of_their_own(
    page, browser, live_app, live_server
) -> None:
    log_in(page, live_server, "demo@example.com")
    page.goto(f"{live_server}/console/p/ledger/team")
    page.fill("input[name=email]", "newcomer@example.com")
    page.click("button:has-text('Send invitation')")
    expect(page.locator(".flash")).to_contain_text("Invitation sent to newcomer@example.com")
    expect(page.locator("tr", has_text="newcomer@example.com")).to_contain_text("Editor")
    page.screenshot(path=SCREENSHOTS / "team-invited-desktop.png", full_page=True)

    mail_folder = Path(live_app.instance_path) / "mail"
    [invitation] = [
        message
        for message in (
            email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            for path in mail_folder.glob("*.eml")
        )
        if message["To"] == "newcomer@example.com"
    ]
    link = re.search(
        r"http\S+/console/invitations/\S+", invitation.get_body(("plain",)).get_content()
    )
    assert link is not None
    newcomer = browser.new_context(viewport=PHONE).new_page()
    newcomer.goto(urlsplit(link.group(0))._replace(netloc=urlsplit(live_server).netloc).geturl())
    newcomer.fill("input[name=name]", "Noor")
    newcomer.fill("input[name=password]", "noor's own passphrase")
    newcomer.screenshot(path=SCREENSHOTS / "invitation-phone.png", full_page=True)
    newcomer.click("button:has-text('Create my account')")
    expect(newcomer.locator(".flash")).to_contain_text("Welcome to Ledger")
    expect(newcomer.locator(".who")).to_have_text("newcomer@example.com")
