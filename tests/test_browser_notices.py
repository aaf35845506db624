"""Notices in headless Chromium: a notice users must confirm blocks as a modal until
"I understand"; ``Tidings.beforeSupport`` on the demo host shows the unread note that
answers what the user is about to ask; and a note an agent sends to one user pops up for
them and reaches the real SMTP server once, delivered by a running ``flask worker``.

Screenshots of the notice and the help dialog, at desktop and phone widths, go to
instance/screenshots/ beside the others, to be looked at after a run.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from playwright.sync_api import expect
from sqlalchemy import select

from announcements.models import (
    Acknowledgement,
    AgentSend,
    EndUser,
    HelpRequest,
    HelpShown,
    OutboxKind,
    OutboxMessage,
    OutboxStatus,
    Product,
    ReadReceipt,
    Subscriber,
    SubscriberStatus,
)
from app.extensions import db
from tests.browser import PHONE, SCREENSHOTS
from tests.factories import make_member, make_note, make_product
from tests.mailserver import SmtpServer
from tests.test_browser_console import log_in
from tests.test_browser_widget import host_page, host_site, shadow_active, widget_settings
from tests.worker import launch, wait_for

pytestmark = pytest.mark.browser

__all__ = ["host_site"]  # a fixture, used by name

DESKTOP = {"width": 1280, "height": 800}
SIZES = pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])


def wait_for_notes(page) -> None:
    """Until the widget has drawn its first answer: the host's unread-count callback ran,
    and with it any modal the answer opens."""
    page.wait_for_function("window.tidingsEvents && tidingsEvents.length > 0")


def shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    width = page.viewport_size["width"]
    # Animations finished first: a modal fading in would be caught half transparent.
    page.screenshot(
        path=SCREENSHOTS / f"{name}-{'phone' if width < 500 else 'desktop'}.png",
        animations="disabled",
    )


def rows(live_app: Flask, statement) -> list[tuple]:
    with live_app.app_context():
        return [tuple(row) for row in db.session.execute(statement).all()]


@SIZES
def test_a_notice_to_confirm_blocks_until_i_understand(page, live_app, live_server, host_site):
    with live_app.app_context():
        product = make_product(db.session, allowed_origins=(host_site.url,), grace_releases=20)
        terms = make_note(
            db.session,
            product,
            version="2.9.0",
            title="New terms of service",
            requires_acknowledgement=True,
        )
        passwords = make_note(
            db.session,
            product,
            version="2.10.0",
            title="Passwords now need 12 characters",
            body_md="From **1 June** a shorter password no longer signs you in.",
            category="Security",
            requires_acknowledgement=True,
        )
        dark = make_note(
            db.session,
            product,
            version="2.10.0",
            title="Dark mode",
            is_important=True,
            email_subscribers=False,
        )
        ids = {"terms": terms.id, "passwords": passwords.id, "dark": dark.id}
        slug = product.slug
    user = f"ack-{uuid.uuid4().hex[:6]}"
    url = host_page(host_site, live_server, widget_settings(live_app, slug, user))
    modal = page.locator("tidings-widget .modal")
    acknowledged = (
        select(Acknowledgement.note_id)
        .join(EndUser, EndUser.id == Acknowledgement.end_user_id)
        .where(EndUser.external_id == user)
    )

    # The newest notice to confirm comes first, ahead of the important note; showing it
    # records the read as a popup.
    with page.expect_request(lambda r: r.url.endswith("/reads")) as read:
        page.goto(url)
    expect(modal).to_contain_text("Passwords now need 12 characters")
    assert read.value.post_data_json["note_ids"] == [ids["passwords"]]
    assert read.value.post_data_json["channel"] == "popup"
    expect(modal).to_have_attribute("role", "alertdialog")
    expect(modal.get_by_role("button", name="I understand")).to_be_focused()
    shot(page, "widget-notice")
    # It blocks: the host's page cannot be clicked, and the focus stays in the notice.
    heading = page.locator("h1").bounding_box()
    covering = page.evaluate(
        "([x, y]) => { const hit = document.elementFromPoint(x, y);"
        " const inner = hit.shadowRoot && hit.shadowRoot.elementFromPoint(x, y);"
        " return [hit.tagName, Boolean(inner && inner.closest('.veil'))]; }",
        [heading["x"] + 10, heading["y"] + heading["height"] / 2],
    )
    assert covering == ["TIDINGS-WIDGET", True]
    for _ in range(4):
        page.keyboard.press("Tab")
        assert shadow_active(page) == "modal"

    # Closed without confirming, by Escape or a click beside it: it does not count, stays
    # away for this page view, and is back on the next.
    page.keyboard.press("Escape")
    expect(modal).to_have_count(0)
    page.evaluate("() => Tidings.refresh()")
    page.wait_for_timeout(300)
    expect(modal).to_have_count(0)
    page.reload()
    expect(modal).to_contain_text("Passwords now need 12 characters")
    page.mouse.click(4, 4)
    expect(modal).to_have_count(0)
    assert rows(live_app, acknowledged) == []
    page.reload()
    expect(modal).to_contain_text("Passwords now need 12 characters")

    # "I understand" records it; the older notice follows, then the important note.
    with page.expect_response(lambda r: r.url.endswith("/acknowledgements")) as answer:
        modal.get_by_role("button", name="I understand").click()
    assert answer.value.status == 204
    assert answer.value.request.post_data_json["note_id"] == ids["passwords"]
    expect(modal).to_contain_text("New terms of service")
    with page.expect_response(lambda r: r.url.endswith("/acknowledgements")):
        modal.get_by_role("button", name="I understand").click()
    expect(modal).to_contain_text("Dark mode")
    modal.get_by_role("button", name="Got it").click()
    expect(modal).to_have_count(0)
    assert sorted(rows(live_app, acknowledged)) == sorted([(ids["passwords"],), (ids["terms"],)])
    receipts = rows(
        live_app,
        select(ReadReceipt.note_id, ReadReceipt.channel)
        .join(EndUser, EndUser.id == ReadReceipt.end_user_id)
        .where(EndUser.external_id == user),
    )
    assert sorted(receipts) == sorted((note_id, "popup") for note_id in ids.values())

    page.reload()
    wait_for_notes(page)
    expect(modal).to_have_count(0)
    page.locator("tidings-widget .launcher").click()
    panel = page.locator("tidings-widget .panel")
    expect(panel.locator(".acked")).to_have_count(2)


def test_an_anonymous_user_confirms_in_their_browser(page, live_app, live_server, host_site):
    with live_app.app_context():
        product = make_product(db.session, allowed_origins=(host_site.url,), require_identity=False)
        make_note(db.session, product, title="Cookies: what we keep", requires_acknowledgement=True)
        slug = product.slug
    posted: list[str] = []
    page.on("request", lambda r: posted.append(r.url) if r.method == "POST" else None)
    page.goto(host_page(host_site, live_server, widget_settings(live_app, slug, None)))
    modal = page.locator("tidings-widget .modal")
    expect(modal).to_contain_text("Cookies: what we keep")
    page.keyboard.press("Escape")
    page.reload()
    expect(modal).to_contain_text("Cookies: what we keep")
    modal.get_by_role("button", name="I understand").click()
    page.reload()
    wait_for_notes(page)
    expect(modal).to_have_count(0)
    assert posted == [], "an anonymous user's reads and confirmations stay in the browser"


EXPORT_NOTE = "Empty exports now say which filter hid the rows"


@pytest.fixture(scope="module")
def export_note(live_app: Flask) -> int:
    """A note in the demo's Lumen, unread by its users, that answers a question about exports."""
    with live_app.app_context():
        lumen = db.session.scalar(select(Product).where(Product.slug == "lumen"))
        note = make_note(
            db.session,
            lumen,
            version="2.10.0",
            title=EXPORT_NOTE,
            category="Fixed",
            body_md="An export with no rows now names the filter that removed them.",
            support_topics=["export"],
            email_subscribers=False,
        )
        return note.id


@SIZES
def test_before_support_on_the_demo_host_shows_the_answer_first(
    page, live_app, live_server, export_note
):
    title, note_id = EXPORT_NOTE, export_note
    user = f"asker-{uuid.uuid4().hex[:6]}"
    page.goto(f"{live_server}/demo/host?user={user}")
    # What pops up first for a new user (the demo's notice to confirm), closed.
    expect(page.locator("tidings-widget .modal")).to_be_visible()
    shot(page, "demo-host-first-modal")
    page.keyboard.press("Escape")

    page.get_by_role("button", name="Contact support").click()
    page.get_by_label("What do you need help with?").fill("my export is empty")
    with page.expect_response(lambda r: "/help?" in r.url) as found:
        page.get_by_role("button", name="Continue").click()
    assert found.value.status == 200
    shown = [n["id"] for n in found.value.json()["notes"]]
    assert shown[0] == note_id, "the note about empty exports is the best match"
    help_dialog = page.locator("tidings-widget .modal.help")
    expect(help_dialog).to_contain_text("Before you contact us")
    expect(help_dialog.locator(".hnote h3").first).to_have_text(title)
    expect(help_dialog.locator(".hnote")).to_have_count(len(shown))
    shot(page, "widget-help")

    with page.expect_response(lambda r: "/help/" in r.url) as decided:
        help_dialog.locator(".hnote", has_text=title).get_by_role(
            "button", name="This answers my question"
        ).click()
    assert decided.value.status == 204
    expect(help_dialog).to_have_count(0)
    expect(page.locator("#support-value")).to_have_text(f'{{"shown":{len(shown)},"answered":true}}')
    expect(page.locator("#support-outcome")).to_contain_text("no ticket was opened")
    shot(page, "demo-host-support")

    asked = (
        select(HelpRequest.id, HelpRequest.query, HelpRequest.outcome, HelpRequest.answered_note_id)
        .join(EndUser, EndUser.id == HelpRequest.end_user_id)
        .where(EndUser.external_id == user)
    )
    [(request_id, query, outcome, answered)] = rows(live_app, asked)
    assert (query, outcome, answered) == ("my export is empty", "answered", note_id)
    listed = rows(
        live_app,
        select(HelpShown.note_id, HelpShown.position)
        .where(HelpShown.help_request_id == request_id)
        .order_by(HelpShown.position),
    )
    assert listed == [(shown_id, position) for position, shown_id in enumerate(shown)]
    assert rows(
        live_app,
        select(ReadReceipt.channel)
        .join(EndUser, EndUser.id == ReadReceipt.end_user_id)
        .where(EndUser.external_id == user, ReadReceipt.note_id == note_id),
    ) == [("help",)]


def test_before_support_resolves_on_every_way_out(page, live_app, live_server, host_site):
    with live_app.app_context():
        product = make_product(db.session, allowed_origins=(host_site.url,), grace_releases=20)
        note = make_note(
            db.session,
            product,
            title="CSV export keeps your column order",
            support_topics=["export"],
        )
        make_note(db.session, product, title="Dark mode")
        note_id, slug = note.id, product.slug
    user = f"outs-{uuid.uuid4().hex[:6]}"
    page.goto(host_page(host_site, live_server, widget_settings(live_app, slug, user)))
    wait_for_notes(page)
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    ask = (
        "q => { window.answer = null;"
        " Tidings.beforeSupport({query: q}).then(a => { window.answer = a; }); }"
    )
    help_dialog = page.locator("tidings-widget .modal.help")

    # Nothing matches: it resolves at once, shows nothing and records nothing.
    assert page.evaluate("Tidings.beforeSupport({query: 'weather forecast'})") == {
        "shown": 0,
        "answered": False,
    }
    assert page.evaluate("Tidings.beforeSupport({query: '   '})") == {"shown": 0, "answered": False}
    assert page.evaluate("Tidings.beforeSupport()") == {"shown": 0, "answered": False}
    expect(help_dialog).to_have_count(0)

    # "I still need help".
    with page.expect_response(lambda r: r.url.endswith("/help")):
        page.evaluate(ask, "csv export")
    expect(help_dialog.locator(".hnote")).to_have_count(1)
    with page.expect_response(lambda r: "/help/" in r.url) as decided:
        help_dialog.get_by_role("button", name="I still need help").click()
    assert decided.value.status == 204
    assert page.evaluate("window.answer") == {"shown": 1, "answered": False}

    # Closed: answered is false, and no outcome is recorded.
    with page.expect_response(lambda r: r.url.endswith("/help")):
        page.evaluate(ask, "export")
    expect(help_dialog).to_be_visible()
    page.keyboard.press("Escape")
    page.wait_for_function("window.answer !== null")
    assert page.evaluate("window.answer") == {"shown": 1, "answered": False}
    page.wait_for_timeout(300)
    assert len([url for url in posts if "/help/" in url]) == 1
    outcomes = rows(
        live_app,
        select(HelpRequest.outcome, HelpRequest.answered_note_id)
        .join(EndUser, EndUser.id == HelpRequest.end_user_id)
        .where(EndUser.external_id == user)
        .order_by(HelpRequest.id),
    )
    assert outcomes == [("needs_help", None), (None, None)]
    assert (
        rows(
            live_app,
            select(ReadReceipt.note_id)
            .join(EndUser, EndUser.id == ReadReceipt.end_user_id)
            .where(EndUser.external_id == user, ReadReceipt.note_id == note_id),
        )
        == []
    ), "nobody said the note answered them"


@pytest.fixture
def worker(live_app: Flask, live_server: str, tmp_path: Path) -> Iterator[Callable[[str], None]]:
    """Start `flask worker` on the live server's database and job queue, sending to an SMTP
    URL; it is stopped after the test."""
    started: list[subprocess.Popen] = []

    def start(smtp_url: str) -> None:
        log = tmp_path / "worker.log"
        started.append(
            launch(
                smtp_url,
                log,
                database_url=live_app.config["SQLALCHEMY_DATABASE_URI"],
                instance=Path(live_app.instance_path),
                SECRET_KEY=live_app.config["SECRET_KEY"],
                BASE_URL=live_server,
            )
        )
        # The consumer says it started once the worker's first sweep is over.
        wait_for(lambda: b"consumer started" in log.read_bytes(), 60, "the worker")

    yield start
    for process in started:
        process.terminate()
        process.wait(timeout=30)


def test_a_note_sent_to_a_user_pops_up_and_is_mailed_once(
    page, live_app, live_server, host_site, smtp_server: SmtpServer, worker
):
    title = "Exports now keep your filters"
    agent = f"agent-{uuid.uuid4().hex[:6]}@example.com"
    with live_app.app_context():
        product = make_product(
            db.session,
            owner=make_member(db.session, agent, name="Sam from support"),
            allowed_origins=(host_site.url,),
            grace_releases=20,
        )
        note = make_note(db.session, product, title=title, email_subscribers=False)
        product_id, note_id, slug = product.id, note.id, product.slug
    user = f"sent-{uuid.uuid4().hex[:6]}"
    address = f"{user}@example.com"
    url = host_page(host_site, live_server, widget_settings(live_app, slug, user))
    modal = page.locator("tidings-widget .modal")
    # The user has read it already, in the panel: nothing pops up.
    page.goto(url)
    with page.expect_response(lambda r: r.url.endswith("/reads")):
        page.locator("tidings-widget .launcher").click()
    page.keyboard.press("Escape")
    page.reload()
    wait_for_notes(page)
    expect(modal).to_have_count(0)

    worker(smtp_server.url)
    with live_app.app_context():
        end_user_id = db.session.scalar(
            select(EndUser.id).where(EndUser.product_id == product_id, EndUser.external_id == user)
        )
        db.session.add(
            Subscriber(
                product_id=product_id,
                email=address,
                status=SubscriberStatus.CONFIRMED,
                end_user_id=end_user_id,
            )
        )
        db.session.commit()

    # The agent sends it from the user's page in the console.
    console = page.context.new_page()
    log_in(console, live_server, agent)
    console.goto(f"{live_server}/console/p/{slug}/support/users/{end_user_id}")
    send = console.get_by_role("button", name=f"Send “{title}” to this user")
    send.click()
    sent_note = console.locator(f"#note-{note_id}")
    expect(sent_note.locator(".un-sent")).to_contain_text(
        "it pops up on their next page view, and it was e-mailed to their subscription"
    )

    # Pinned: it pops up on the next page view, and reading it there is the send's read.
    with page.expect_request(lambda r: r.url.endswith("/reads")) as read:
        page.reload()
    expect(modal).to_contain_text(title)
    expect(modal).to_contain_text("Sent to you by our support team")
    assert read.value.post_data_json["channel"] == "popup"
    shot(page, "widget-sent-by-support")
    modal.get_by_role("button", name="Got it").click()
    sends = select(AgentSend.read_at, AgentSend.emailed, AgentSend.agent).where(
        AgentSend.note_id == note_id
    )
    wait_for(lambda: rows(live_app, sends)[0][0] is not None, 10, "the send's read")
    assert rows(live_app, sends)[0][1:] == (True, "Sam from support")
    page.reload()
    wait_for_notes(page)
    expect(modal).to_have_count(0)

    # One e-mail, delivered by the worker to the SMTP server.
    outbox = select(OutboxMessage.status).where(
        OutboxMessage.note_id == note_id, OutboxMessage.kind == OutboxKind.AGENT
    )
    wait_for(lambda: rows(live_app, outbox) == [(OutboxStatus.SENT,)], 60, "the e-mail sent")
    # (The worker also sends what the demo's own products queued, to their addresses.)
    [mail] = smtp_server.recorder.to(address)
    assert title in mail["Subject"]

    # Sent again: it pops up again, but the outbox holds one e-mail of a kind per
    # subscriber and note, so no second one goes out.
    console.get_by_role("button", name=f"Send “{title}” to this user").click()
    expect(sent_note.locator(".un-sent")).to_contain_text("not e-mailed again, as it was before")
    expect(sent_note.locator(".un-sends li")).to_have_count(2)
    page.reload()
    expect(modal).to_contain_text(title)
    expect(modal).to_contain_text("Sent to you by our support team")
    modal.get_by_role("button", name="Got it").click()
    wait_for(
        lambda: all(read_at is not None for read_at, *_ in rows(live_app, sends)),
        10,
        "the second send's read",
    )
    assert [emailed for _, emailed, _ in rows(live_app, sends)] == [True, False]
    assert rows(live_app, outbox) == [(OutboxStatus.SENT,)]
    time.sleep(2)  # the send woke the worker: time for it to send a second e-mail, were there one
    assert len(smtp_server.recorder.to(address)) == 1
    console.close()
