"""Two-factor sign-in in headless Chromium, as a person does it: turn it on by reading the
key off the enrolment page (as an authenticator app reads the QR code), confirm with the
app's code, keep the recovery codes, sign out, and sign in with the password and a code.
On a desktop and a phone, nothing wider than the screen; screenshots of the enrolment
page, the recovery codes and the second step go to instance/screenshots/ to be looked at.
"""

from __future__ import annotations

import time
from urllib.parse import unquote

import pyotp
import pytest
from sqlalchemy import select

from announcements import services
from announcements.models import Product, Role, utcnow
from app.extensions import db
from tests.browser import PHONE, SCREENSHOTS, assert_fits, shoot
from tests.conftest import PASSWORD
from tests.factories import make_member
from tests.test_browser_console import log_in

pytestmark = pytest.mark.browser

DESKTOP = {"width": 1280, "height": 900}


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_enrol_by_reading_the_qr_secret_then_sign_in_with_a_code(
    page, live_app, live_server, viewport
) -> None:
    label = "phone" if viewport is PHONE else "desktop"
    email = f"two-factor-{label}@example.com"
    with live_app.app_context():
        member = make_member(db.session, email)
        product = db.session.scalar(select(Product).order_by(Product.id))
        services.set_role(db.session, product, member, Role.OWNER, by=None, now=utcnow())
        db.session.commit()
        product_name = product.name
        db.session.remove()

    log_in(page, live_server, email)
    page.goto(f"{live_server}/console/account")
    page.get_by_role("link", name="Turn on two-factor sign-in").click()
    page.get_by_role("heading", name="Turn on two-factor sign-in").wait_for()
    assert_fits(page, f"enrolment on a {label}")
    shoot(page, f"two-factor-enrol-{label}")

    # The QR code is an inline SVG named for screen readers; the key beside it is what it
    # holds, as an app reads it.
    qr = page.locator("svg.qr-code")
    assert qr.locator("title").text_content() == "QR code to scan with your authenticator app"
    assert qr.bounding_box()["width"] >= 150
    secret = page.locator("#totp-secret").inner_text().replace(" ", "")
    assert len(secret) == 32
    totp = pyotp.TOTP(secret)

    page.fill("input[name=code]", "000000")
    page.get_by_role("button", name="Turn on two-factor sign-in").click()
    page.get_by_text("That code is not right").wait_for()
    first = totp.now()
    page.fill("input[name=code]", first)
    page.get_by_role("button", name="Turn on two-factor sign-in").click()
    page.get_by_role("heading", name="Save your recovery codes").wait_for()
    assert_fits(page, f"recovery codes on a {label}")
    shoot(page, f"two-factor-recovery-codes-{label}")
    codes = page.locator("#recovery-codes code").all_inner_texts()
    assert len(codes) == 10 and len(set(codes)) == 10
    download = page.get_by_role("link", name="Download")
    assert unquote(download.get_attribute("href")).split(",", 1)[1].split() == codes
    page.get_by_role("link", name="I saved them, continue").click()
    page.wait_for_url(f"{live_server}/console/")

    page.get_by_role("button", name="Log out").click()
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server}/console/login/two-factor")
    page.get_by_role("heading", name="Enter your code").wait_for()
    assert_fits(page, f"the second step on a {label}")
    shoot(page, f"two-factor-verify-{label}")
    # The code that turned it on is not taken again; the next one (in its window) is.
    page.fill("input[name=code]", first)
    page.click("button[type=submit]")
    page.get_by_text("That code was used already").wait_for()
    page.fill("input[name=code]", totp.at(time.time() + 30))
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server}/console/")

    # Signed in; the account page says it is on, and the team page shows the rules.
    page.goto(f"{live_server}/console/account/two-factor")
    page.get_by_text("10 of your ten recovery codes are left.").wait_for()
    assert_fits(page, f"two-factor settings on a {label}")
    shoot(page, f"two-factor-manage-{label}")
    with live_app.app_context():
        slug = db.session.scalar(select(Product.slug).where(Product.name == product_name))
        db.session.remove()
    page.goto(f"{live_server}/console/p/{slug}/team#sign-in-rules")
    page.get_by_role("heading", name="Sign-in rules").wait_for()
    assert_fits(page, f"the team page on a {label}", boxes=False)  # its table scrolls
    page.locator("#sign-in-rules").screenshot(path=SCREENSHOTS / f"team-rules-{label}.png")
