"""The widget in headless Chromium: the demo host page, and host pages on another origin
that fight it with hostile CSS or a strict Content-Security-Policy.

Screenshots of the widget go to instance/screenshots/ beside the console's.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Iterator

import pytest
from flask import Flask, Response
from playwright.sync_api import expect
from sqlalchemy import select

from announcements import holdback, tickets
from announcements.models import (
    EndUser,
    Note,
    Product,
    Reaction,
    ReadReceipt,
    Subscriber,
    SubscriberStatus,
)
from app.extensions import db
from app.mail import delivery, transport
from tests.browser import PHONE, SCREENSHOTS, serve
from tests.factories import make_note, make_product
from tests.mailserver import SmtpServer

pytestmark = pytest.mark.browser


class HostSite:
    """Pages of a pretend host product on its own origin, each with its own headers."""

    def __init__(self) -> None:
        self.pages: dict[str, tuple[str, str, dict[str, str]]] = {}
        self.app = Flask("host")
        self.app.add_url_rule("/<name>", view_func=self._serve)
        self.url = ""

    def _serve(self, name: str) -> Response:
        body, mimetype, headers = self.pages[name]
        return Response(body, mimetype=mimetype, headers=headers)

    def add(self, name: str, body: str, mimetype: str = "text/html", **headers: str) -> str:
        self.pages[name] = (body, mimetype, headers)
        return f"{self.url}/{name}"


@pytest.fixture(scope="module")
def host_site(live_app: Flask) -> Iterator[HostSite]:
    site = HostSite()
    for url in serve(site.app):
        site.url = url
        with live_app.app_context():
            for product in db.session.scalars(select(Product)):
                product.allowed_origins = [*product.allowed_origins, site.url]
                product.require_identity = product.slug == "lumen"
                product.catalogue_stamp += 1
            db.session.commit()
        yield site


def widget_settings(live_app: Flask, slug: str, user_id: str | None) -> dict:
    with live_app.app_context():
        product = db.session.scalar(select(Product).where(Product.slug == slug))
        settings: dict = {"product": product.widget_key}
        if user_id is not None:
            digest = hmac.new(product.identity_secret.encode(), user_id.encode(), hashlib.sha256)
            settings["user"] = {"id": user_id, "hash": digest.hexdigest(), "version": "2.10.0"}
    return settings


def host_page(
    site: HostSite, live_server: str, settings: dict, *, style: str = "", csp: str = ""
) -> str:
    """A host page that configures the widget from its own script file, as a strict CSP needs."""
    name = uuid.uuid4().hex[:8]
    script = (
        f"window.tidings = {json.dumps(settings)};"
        "window.tidingsEvents = [];"
        "window.tidings.onOpen = function () { tidingsEvents.push('open'); };"
        "window.tidings.onClose = function () { tidingsEvents.push('close'); };"
        "window.tidings.onUnreadCount = function (n) { tidingsEvents.push(n); };"
    )
    site.add(f"{name}.js", script, "text/javascript")
    html = f"""<!doctype html><html><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Host</title>
{f'<link rel="stylesheet" href="{name}.css">' if style else ""}
<script src="{name}.js"></script>
<script src="{live_server}/widget.js" defer></script>
</head><body><h1>Host app</h1><div class="overlay"></div></body></html>"""
    if style:
        site.add(f"{name}.css", style, "text/css")
    headers = {"Content-Security-Policy": csp} if csp else {}
    return site.add(name, html, **headers)


def shadow_active(page) -> str:
    """The class of the element focused inside the widget's shadow root."""
    return page.evaluate(
        "() => { const a = document.querySelector('tidings-widget').shadowRoot.activeElement;"
        " return a ? (a.closest('.modal') ? 'modal' : a.className) : ''; }"
    )


def test_demo_host_badge_panel_and_reload(page, live_server) -> None:
    user = f"fresh-{uuid.uuid4().hex[:6]}"
    badge = page.locator("#whats-new tidings-badge .count")
    modal = page.locator("tidings-widget .modal")
    # A new user on 2.10.0: the latest release is unread; its notice to confirm pops up
    # first, then, once confirmed, its important note.
    page.goto(f"{live_server}/demo/host?user={user}")
    expect(modal).to_contain_text("Replace API tokens created before 2.10")
    with page.expect_response(lambda r: r.url.endswith("/reads")):
        modal.get_by_role("button", name="I understand").click()
        expect(modal).to_contain_text("Funnels: see where people drop off")
    expect(badge).to_have_text("1")
    assert shadow_active(page) == "modal"
    for _ in range(4):  # the focus stays in the modal
        page.keyboard.press("Tab")
        assert shadow_active(page) == "modal"
    page.keyboard.press("Escape")
    expect(modal).to_have_count(0)

    with page.expect_response(lambda r: r.url.endswith("/reads")):
        page.click("#whats-new")
    panel = page.locator("tidings-widget .panel")
    expect(panel).to_be_visible()
    expect(panel.locator(".note h3").first).to_have_text("Replace API tokens created before 2.10")
    expect(panel).not_to_contain_text("Try workspaces")  # 3.0 beta is newer than 2.10.0
    expect(badge).to_be_hidden()
    assert page.evaluate("Tidings.unreadCount()") == 0
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / "widget-demo-host-desktop.png")
    page.keyboard.press("Escape")
    expect(panel).to_have_count(0)

    with page.expect_response(lambda r: "/notes?" in r.url):
        page.reload()
    page.wait_for_function("Tidings.unreadCount() === 0")
    expect(badge).to_be_hidden()
    expect(page.locator("tidings-widget .modal")).to_have_count(0)  # once, not again


def test_reactions_and_comments_are_sent(page, live_app, live_server) -> None:
    user = f"reactor-{uuid.uuid4().hex[:6]}"
    page.goto(f"{live_server}/demo/host?user={user}")
    expect(page.locator("tidings-widget .modal")).to_be_visible()
    page.keyboard.press("Escape")
    page.click("#whats-new")
    first = page.locator("tidings-widget .note").first
    with page.expect_response(lambda r: r.url.endswith("/reactions")) as sent:
        first.get_by_role("button", name="Confusing").click()
    assert sent.value.status == 200
    expect(first.get_by_role("button", name="Confusing")).to_have_attribute("aria-pressed", "true")
    first.get_by_role("textbox").fill("Which dates?")
    with page.expect_response(lambda r: r.url.endswith("/reactions")) as sent:
        first.get_by_role("button", name="Send").click()
    assert json.loads(sent.value.request.post_data)["comment"] == "Which dates?"
    assert sent.value.status == 200
    # Received and kept: the reaction and the comment, on the note at the top of the panel.
    title = first.locator("h3").inner_text()
    with live_app.app_context():
        kept = db.session.execute(
            select(Note.title, Reaction.reaction, Reaction.comment)
            .join(Note, Note.id == Reaction.note_id)
            .join(EndUser, EndUser.id == Reaction.end_user_id)
            .where(EndUser.external_id == user)
        ).all()
    assert [tuple(row) for row in kept] == [(title, "😕", "Which dates?")]


def test_email_subscription_with_one_click_from_the_panel(page, live_app, live_server) -> None:
    user = f"mailer-{uuid.uuid4().hex[:6]}"
    page.goto(f"{live_server}/demo/host?user={user}")
    expect(page.locator("tidings-widget .modal")).to_be_visible()
    page.keyboard.press("Escape")
    page.click("#whats-new")
    mail = page.locator("tidings-widget .mail")
    expect(mail).to_contain_text("Get these updates by email too.")
    with page.expect_response(lambda r: r.url.endswith("/subscription")) as sent:
        mail.get_by_role("button", name="Email me").click()
    assert sent.value.status == 200
    expect(mail).to_contain_text(f"Updates also go to {user}@example.com by email.")
    with live_app.app_context():
        subscriber = db.session.scalar(
            select(Subscriber).where(Subscriber.email == f"{user}@example.com")
        )
        assert subscriber is not None and subscriber.status is SubscriberStatus.CONFIRMED
    page.screenshot(path=SCREENSHOTS / "widget-email-subscribed.png")
    page.reload()
    expect(page.locator("tidings-widget .modal")).to_be_visible()  # the notice, not confirmed
    page.keyboard.press("Escape")
    page.click("#whats-new")
    expect(mail).to_contain_text("Updates also go to")


def test_an_address_the_host_did_not_sign_is_sent_a_confirmation_link(
    page, live_app, live_server, host_site, smtp_server: SmtpServer
) -> None:
    settings = widget_settings(live_app, "lumen", f"unsigned-{uuid.uuid4().hex[:6]}")
    settings["user"]["email"] = "someone@example.com"  # no email_hash: the host vouches nothing
    page.goto(host_page(host_site, live_server, settings))
    expect(page.locator("tidings-widget .modal")).to_be_visible()
    page.keyboard.press("Escape")
    page.locator("tidings-widget .launcher").click()
    mail = page.locator("tidings-widget .mail")
    expect(mail).to_contain_text("Get these updates by email too.")
    with page.expect_response(lambda r: r.url.endswith("/subscription")) as sent:
        mail.get_by_role("button", name="Email me").click()
    assert sent.value.status == 202
    expect(mail).to_contain_text("Check someone@example.com for a link to confirm.")
    # And the link is sent: a sending run hands the SMTP server one confirmation for it.
    with live_app.app_context():
        sender = transport.Smtp(smtp_server.url)
        try:
            delivery.deliver_due(sender)
        finally:
            sender.close()
    [confirmation] = smtp_server.recorder.to("someone@example.com")
    assert confirmation["Subject"].startswith("Confirm your subscription")
    assert "/subscriptions/confirm/" in confirmation.get_body(("plain",)).get_content()


def test_a_signed_address_reaches_the_server_only_as_its_keyed_hash(
    page, live_app, live_server, host_site
) -> None:
    """The widget posts the host's signed address once per tab, so the user's
    help-desk tickets can find them, and never puts it in a URL, where access logs and
    proxies would keep it; an unsigned one it keeps to itself."""
    signed_user, unsigned_user = (f"{kind}-{uuid.uuid4().hex[:6]}" for kind in "su")
    requests: list[tuple[str, str]] = []
    page.on("request", lambda request: requests.append((request.method, request.url)))
    with live_app.app_context():
        secret = db.session.scalar(select(Product.identity_secret).where(Product.slug == "lumen"))
    pages = {}
    for user_id, sign in ((signed_user, True), (unsigned_user, False)):
        settings = widget_settings(live_app, "lumen", user_id)
        settings["user"]["email"] = f"{user_id}@example.com"
        if sign:
            message = f"email:{user_id}\n{user_id}@example.com".encode()
            settings["user"]["email_hash"] = hmac.new(
                secret.encode(), message, hashlib.sha256
            ).hexdigest()
        pages[user_id] = host_page(host_site, live_server, settings)

    with page.expect_response(lambda r: r.url.endswith("/identity")) as posted:
        page.goto(pages[signed_user])
    assert posted.value.status == 204
    assert posted.value.request.method == "POST"
    assert posted.value.request.post_data_json["email"] == f"{signed_user}@example.com"
    # A later page view in the same tab sends nothing: its notes, and a refresh
    # after them (whose request follows any POST the first load made), bring no other POST.
    with page.expect_response(lambda r: "/notes?" in r.url) as answered:
        page.reload()
    assert answered.value.status == 200
    with page.expect_response(lambda r: "/notes?" in r.url):
        page.evaluate("() => Tidings.refresh()")
    with page.expect_response(lambda r: "/notes?" in r.url) as answered:
        page.goto(pages[unsigned_user])
    assert answered.value.status == 200
    with page.expect_response(lambda r: "/notes?" in r.url):
        page.evaluate("() => Tidings.refresh()")

    identity = f"{live_server}/api/v1/widget/{settings['product']}/identity"
    assert [sent for sent in requests if sent[1].endswith("/identity")] == [("POST", identity)]
    assert [url for _, url in requests if "/notes?" in url], "the notes requests were seen"
    assert not [url for _, url in requests if "example.com" in url.lower()]
    with live_app.app_context():
        keys = dict(
            db.session.execute(
                select(EndUser.external_id, EndUser.email_key).where(
                    EndUser.external_id.in_([signed_user, unsigned_user])
                )
            ).all()
        )
        expected = tickets.email_key(live_app.config["SECRET_KEY"], f"{signed_user}@example.com")
    assert keys == {signed_user: expected, unsigned_user: None}
    assert expected is not None and "@" not in expected


def test_a_held_back_user_gets_no_badge_or_popup_yet_their_read_is_recorded(
    page, live_app, live_server, host_site
) -> None:
    """The control group of a hold-back finds the note only in the panel; opening it there
    records the read, as for anyone, so they can count among its readers."""
    with live_app.app_context():
        product = make_product(db.session, allowed_origins=(host_site.url,), grace_releases=20)
        held = make_note(
            db.session, product, title="Held back", is_important=True, holdback_percent=50
        )
        told = make_note(db.session, product, title="Told")
        product_id, slug, held_id, told_id = product.id, product.slug, held.id, told.id
    user = next(f"held-{n}" for n in range(1000) if holdback.in_control(held_id, f"held-{n}", 50))
    page.goto(host_page(host_site, live_server, widget_settings(live_app, slug, user)))
    launcher = page.locator("tidings-widget .launcher")
    expect(launcher.locator(".count")).to_have_text("1")  # the other note only
    expect(page.locator("tidings-widget .modal")).to_have_count(0)  # important, yet quiet

    with page.expect_response(lambda r: r.url.endswith("/reads")) as sent:
        launcher.click()
    assert sent.value.status == 204
    expect(page.locator("tidings-widget .panel")).to_contain_text("Held back")
    page.wait_for_function("Tidings.unreadCount() === 0")
    expect(launcher.locator(".count")).to_be_hidden()
    with live_app.app_context():
        stored = db.session.execute(
            select(ReadReceipt.note_id, ReadReceipt.channel)
            .join(EndUser, EndUser.id == ReadReceipt.end_user_id)
            .where(EndUser.external_id == user, EndUser.product_id == product_id)
        ).all()
    assert sorted(stored) == sorted([(held_id, "widget"), (told_id, "widget")])


def test_the_panel_fits_a_phone(browser, live_server) -> None:
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    page.goto(f"{live_server}/demo/host?user=phone-{uuid.uuid4().hex[:6]}")
    expect(page.locator("tidings-widget .modal")).to_be_visible()
    page.screenshot(path=SCREENSHOTS / "widget-modal-phone.png")
    page.keyboard.press("Escape")
    page.click("#whats-new")
    panel = page.locator("tidings-widget .panel")
    expect(panel).to_be_visible()
    box = panel.bounding_box()
    assert box["x"] >= 0 and box["width"] <= PHONE["width"]
    page.screenshot(path=SCREENSHOTS / "widget-panel-phone.png")
    context.close()


def test_hostile_host_css_does_not_break_the_widget(page, live_app, live_server, host_site) -> None:
    hostile = """
* { all: unset !important; }
html, body { display: block !important; font: 40px/3 serif !important; color: red !important; }
.overlay { display: block !important; position: fixed !important; inset: 0 !important;
  z-index: 2147483647 !important; background: rgba(255, 0, 0, .15) !important; }
button, div, span, section, h2, h3 {
  font-size: 50px !important; border: 5px solid lime !important; }
"""
    settings = widget_settings(live_app, "lumen", f"hostile-{uuid.uuid4().hex[:6]}")
    page.goto(host_page(host_site, live_server, settings, style=hostile))
    modal = page.locator("tidings-widget .modal")
    expect(modal).to_be_visible()
    page.screenshot(path=SCREENSHOTS / "widget-hostile-css-modal.png")
    page.keyboard.press("Escape")
    expect(modal).to_have_count(0)
    launcher = page.locator("tidings-widget .launcher")
    expect(launcher).to_be_visible()
    box = launcher.bounding_box()
    assert 40 <= box["width"] <= 64 and 40 <= box["height"] <= 64
    on_top = page.evaluate(
        f"document.elementFromPoint({box['x'] + box['width'] / 2}, {box['y'] + box['height'] / 2})"
        ".tagName"
    )
    assert on_top == "TIDINGS-WIDGET", "the host's overlay covers the launcher"
    launcher.click()
    panel = page.locator("tidings-widget .panel")
    expect(panel).to_be_visible()
    assert panel.bounding_box()["width"] == pytest.approx(400, abs=1)
    title = panel.locator(".note h3").first
    assert title.evaluate("e => getComputedStyle(e).fontSize") == "15px"
    page.screenshot(path=SCREENSHOTS / "widget-hostile-css.png")
    assert page.evaluate("tidingsEvents").count("open") == 1


def test_a_strict_csp_host_page_still_works(page, live_app, live_server, host_site) -> None:
    csp = (
        f"default-src 'none'; script-src {host_site.url} {live_server}; "
        f"connect-src {live_server}; img-src {live_server} https: data:; style-src {host_site.url}"
    )
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if r.resource_type != "image" else None)
    settings = widget_settings(live_app, "lumen", f"strict-{uuid.uuid4().hex[:6]}")
    page.goto(host_page(host_site, live_server, settings, csp=csp))
    expect(page.locator("tidings-widget .modal")).to_be_visible()
    page.keyboard.press("Escape")
    launcher = page.locator("tidings-widget .launcher")
    # The notice is read as it pops up; closed unconfirmed, nothing else pops up after it.
    expect(launcher.locator(".count")).to_have_text("2")
    assert launcher.get_attribute("aria-label") == "What's new, 2 unread"
    launcher.click()
    expect(page.locator("tidings-widget .panel")).to_be_visible()
    page.wait_for_function("Tidings.unreadCount() === 0")
    page.keyboard.press("Escape")
    assert page.evaluate("tidingsEvents").count("close") == 1
    # Nothing but the host and the Tidings server: no third-party requests.
    assert all(url.startswith((host_site.url, live_server)) for url in requests), requests


def test_anonymous_reads_stay_in_the_browser(page, live_app, live_server, host_site) -> None:
    settings = widget_settings(live_app, "ledger", None)
    page.goto(host_page(host_site, live_server, settings))
    launcher = page.locator("tidings-widget .launcher")
    expect(launcher.locator(".count")).to_have_text("1")  # only the newest release
    launcher.click()
    page.wait_for_function("Tidings.unreadCount() === 0")
    with page.expect_response(lambda r: "/notes?" in r.url):
        page.reload()
    page.wait_for_function("window.Tidings && Tidings.unreadCount() === 0")
    expect(launcher.locator(".count")).to_be_hidden()
