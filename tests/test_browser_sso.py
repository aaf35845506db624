"""Single sign-on in Chromium: "Continue with …" on the sign-in page, the real
provider's own sign-in form, and back in the console, signed in."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from flask import Flask
from sqlalchemy import create_engine
from werkzeug.serving import BaseWSGIServer

from announcements.models import Base, Role
from app import database
from app.extensions import db
from tests.browser import PHONE, assert_fits, shoot
from tests.conftest import PASSWORD, make_app
from tests.factories import add_member, make_member, make_product
from tests.oidc_provider import OidcProvider, running_provider


@pytest.fixture(scope="module")
def sso_provider(live_listener: BaseWSGIServer) -> Iterator[OidcProvider]:
    base_url = f"http://127.0.0.1:{live_listener.server_port}"
    with running_provider([f"{base_url}/console/login/sso/callback"]) as provider:
        yield provider


@pytest.fixture(scope="module")
def sso_server(
    tmp_path_factory: pytest.TempPathFactory,
    live_listener: BaseWSGIServer,
    sso_provider: OidcProvider,
) -> Iterator[str]:
    """Tidings with the provider configured, on its own SQLite file, with alice an
    editor of Acme."""
    folder = tmp_path_factory.mktemp("sso-live")
    url = f"sqlite:///{folder / 'live.db'}"
    engine = create_engine(url)
    Base.metadata.create_all(engine)
    engine.dispose()
    base_url = f"http://127.0.0.1:{live_listener.server_port}"
    app: Flask = make_app(
        url,
        folder / "instance",
        WTF_CSRF_SSL_STRICT=False,
        **sso_provider.config(BASE_URL=base_url),
    )
    with app.app_context():
        owner = make_member(db.session, "owner@example.com")
        acme = make_product(db.session, owner, name="Acme", slug="acme")
        acme.require_sso = True
        add_member(db.session, acme, Role.EDITOR, "alice@example.com")
        db.session.commit()
    live_listener.app = app
    thread = threading.Thread(target=live_listener.serve_forever, daemon=True)
    thread.start()
    yield base_url
    live_listener.shutdown()
    database.dispose(app)


def test_a_member_continues_with_the_provider_and_lands_in_the_console(page, sso_server) -> None:
    page.goto(f"{sso_server}/console/login?next=/console/p/acme/notes")
    page.get_by_role("link", name="Continue with Example ID").click()

    # The provider's own sign-in form.
    page.locator("input[name=login]").fill("alice")
    page.locator("input[name=password]").fill("anything")
    page.locator("button[type=submit]").click()

    page.wait_for_url(f"{sso_server}/console/p/acme/notes")
    page.goto(f"{sso_server}/console/account")
    assert "alice@example.com" in page.content()


def test_the_sign_in_page_with_single_sign_on_fits_desktop_and_phone(browser, sso_server) -> None:
    for label, viewport in (("desktop", {"width": 1280, "height": 800}), ("phone", PHONE)):
        context = browser.new_context(viewport=viewport)
        page = context.new_page()
        page.goto(f"{sso_server}/console/login")
        assert_fits(page, f"the sign-in page ({label})")
        shoot(page, f"login-sso-{label}")
        # A member of a product that requires single sign-on, trying a password.
        page.fill("input[name=email]", "alice@example.com")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        assert "Members of Acme sign in with Example ID" in page.content()
        shoot(page, f"login-sso-refused-{label}")
        page.goto(f"{sso_server}/console/login/sso/callback?state=forged&code=x")
        assert_fits(page, f"the single sign-on problem page ({label})")
        shoot(page, f"sso-problem-{label}")
        context.close()
