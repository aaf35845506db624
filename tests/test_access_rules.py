"""The Team page's sign-in rules: owners only, CSRF, refusals that change nothing (an
owner cannot require what their own account lacks), single sign-on shown only when the
instance has an identity provider, every change audited; and a member of a product that
requires two-factor sign-in reaching nothing but enrolment until they turn it on."""

from __future__ import annotations

from datetime import timedelta

import pyotp
import pytest
from sqlalchemy import select

from announcements import two_factor
from announcements.models import AuditEvent, Product, Role, SsoIdentity, utcnow
from tests.conftest import AuthActions, csrf_token
from tests.factories import add_member, make_member, make_product
from tests.test_console_access import console_requests, world  # noqa: F401

ACCESS = "/console/p/acme/team/access"
SETUP = "/console/account/two-factor"
OIDC = {
    "OIDC_ISSUER": "https://id.example.com",
    "OIDC_CLIENT_ID": "tidings",
    "OIDC_CLIENT_SECRET": "s3cret",
    "OIDC_PROVIDER_NAME": "Example ID",
}


def _enrol(session, member) -> None:
    now = utcnow() - timedelta(minutes=1)  # its step is behind any code a test types now
    secret = two_factor.start_enrolment(member, None)
    two_factor.confirm_enrolment(session, member, secret, pyotp.TOTP(secret).at(now), now=now)
    session.commit()


def _rules(session, slug: str = "acme") -> tuple[bool, bool, Role | None]:
    session.expire_all()
    product = session.scalar(select(Product).where(Product.slug == slug))
    return product.require_two_factor, product.require_sso, product.sso_provision_role


def _access_events(session) -> list[str]:
    session.expire_all()
    return list(
        session.scalars(
            select(AuditEvent.summary)
            .where(AuditEvent.action == "product.access_rules")
            .order_by(AuditEvent.id)
        )
    )


@pytest.fixture
def owner(session):
    member = make_member(session, "owner@example.com")
    make_product(session, owner=member, slug="acme", name="Acme")
    return member


def test_the_team_page_shows_the_rules_without_sso_when_none_is_configured(
    client, auth: AuthActions, owner
) -> None:
    auth.login(owner.email)
    page = client.get("/console/p/acme/team").get_data(as_text=True)
    assert "Sign-in rules" in page and 'name="require_two_factor"' in page
    assert 'name="require_sso"' not in page and 'name="sso_provision_role"' not in page
    # The form once sat in the page's title: once, in the page, and the title plain text.
    assert page.count('id="sign-in-rules"') == 1
    title = page[page.index("<title>") : page.index("</title>")]
    assert "<form" not in title and "&lt;form" not in title


def test_requiring_two_factor_is_refused_until_the_owner_has_it(
    client, session, auth: AuthActions, owner
) -> None:
    auth.login(owner.email)
    refused = client.post(
        ACCESS, data={"csrf_token": csrf_token(client), "require_two_factor": "y"}
    )
    assert refused.status_code == 422
    assert "Turn on two-factor sign-in for your own account first" in refused.get_data(as_text=True)
    assert _rules(session) == (False, False, None) and _access_events(session) == []
    _enrol(session, owner)  # in the session already open
    saved = client.post(ACCESS, data={"csrf_token": csrf_token(client), "require_two_factor": "y"})
    assert saved.status_code == 302
    assert _rules(session) == (True, False, None)
    assert _access_events(session) == ["Two-factor sign-in is now required."]
    # Saving again changes nothing and records nothing; unticking is always allowed.
    client.post(ACCESS, data={"csrf_token": csrf_token(client), "require_two_factor": "y"})
    client.post(ACCESS, data={"csrf_token": csrf_token(client)})
    assert _rules(session) == (False, False, None)
    assert _access_events(session) == [
        "Two-factor sign-in is now required.",
        "Two-factor sign-in is no longer required.",
    ]


def _sign_in_with_code(client, auth: AuthActions, member):
    """Sign ``member`` in with their password and the next step's code."""
    auth.login(member.email)
    code = pyotp.TOTP(member.totp_secret).at((member.totp_last_step + 1) * 30)
    return client.post(
        "/console/login/two-factor", data={"csrf_token": csrf_token(client), "code": code}
    )


def test_single_sign_on_rules_when_an_identity_provider_is_configured(
    app_factory, session, owner
) -> None:
    app = app_factory(**OIDC)
    client = app.test_client()
    auth = AuthActions(client)
    auth.login(owner.email)
    page = client.get("/console/p/acme/team").get_data(as_text=True)
    assert 'name="require_sso"' in page and "Example ID" in page
    assert 'name="sso_provision_role"' in page
    form = {"csrf_token": csrf_token(client), "require_sso": "y", "sso_provision_role": "editor"}
    refused = client.post(ACCESS, data=form)
    assert refused.status_code == 422
    assert "Sign in with single sign-on yourself first" in refused.get_data(as_text=True)
    assert _rules(session) == (False, False, None)
    bad_role = client.post(ACCESS, data={**form, "require_sso": "", "sso_provision_role": "god"})
    assert bad_role.status_code == 422 and _rules(session) == (False, False, None)
    session.add(SsoIdentity(member_id=owner.id, issuer=OIDC["OIDC_ISSUER"], subject="owner-1"))
    session.commit()
    assert client.post(ACCESS, data=form).status_code == 302
    assert _rules(session) == (False, True, Role.EDITOR)
    assert _access_events(session) == [
        "Single sign-on is now required; passwords are refused.",
        "People new to Tidings who sign in with single sign-on join as editor.",
    ]
    client.post(ACCESS, data={**form, "sso_provision_role": ""})
    assert _rules(session) == (False, True, None)


def test_without_an_identity_provider_the_sso_rules_are_left_as_they_are(
    client, session, auth: AuthActions, owner
) -> None:
    product = session.scalar(select(Product).where(Product.slug == "acme"))
    product.require_sso, product.sso_provision_role = True, Role.VIEWER
    session.commit()
    auth.login(owner.email)
    form = {"csrf_token": csrf_token(client), "sso_provision_role": "owner"}
    assert client.post(ACCESS, data=form).status_code == 302
    assert _rules(session) == (False, True, Role.VIEWER)


@pytest.mark.parametrize("role", [Role.VIEWER, Role.EDITOR])
def test_only_owners_set_the_rules(client, session, auth: AuthActions, owner, role) -> None:
    product = session.scalar(select(Product).where(Product.slug == "acme"))
    member = add_member(session, product, role)
    _enrol(session, member)
    _sign_in_with_code(client, auth, member)
    answer = client.post(ACCESS, data={"csrf_token": csrf_token(client), "require_two_factor": "y"})
    assert answer.status_code == 403
    assert _rules(session) == (False, False, None)


def test_the_rules_need_a_csrf_token(client, session, auth: AuthActions, owner) -> None:
    _enrol(session, owner)
    _sign_in_with_code(client, auth, owner)
    for token in (None, "forged"):
        data = {"require_two_factor": "y", **({"csrf_token": token} if token else {})}
        assert client.post(ACCESS, data=data).status_code == 400
    assert _rules(session) == (False, False, None)


def test_a_member_who_must_enrol_reaches_nothing_else(
    app,
    client,
    session,
    auth: AuthActions,
    world,  # noqa: F811
) -> None:
    product, note, people, _ = world
    product.require_two_factor = True
    session.commit()
    editor = people[Role.EDITOR]
    auth.login(editor.email)
    token = csrf_token(client)
    for endpoint, method, path in console_requests(app, product, note, people[Role.VIEWER]):
        if endpoint in ("console.two_factor", "console.logout"):
            continue
        answer = client.open(path, method=method, data={"csrf_token": token})
        assert answer.status_code == 302, (method, path, answer.status_code)
        assert answer.headers["Location"] == SETUP, (method, path)
    page = client.get(SETUP).get_data(as_text=True)
    assert f"{product.name} requires two-factor sign-in. Turn it on to continue." in page
    # Enrolled, the member reaches the product again.
    with client.session_transaction() as kept:
        secret = kept["two_factor_setting_up"]["secret"]
    code = pyotp.TOTP(secret).at(utcnow())
    assert client.post(SETUP, data={"csrf_token": token, "code": code}).status_code == 200
    assert client.get(f"/console/p/{product.slug}/notes").status_code == 200
    # A member of other products only is not held back by this one's rule.
    outsider = make_member(session, "free@example.com")
    make_product(session, owner=outsider, slug="free")
    other = app.test_client()
    AuthActions(other).login(outsider.email)
    assert other.get("/console/p/free/notes").status_code == 200
    # The way out stays open.
    assert client.post("/console/logout", data={"csrf_token": token}).status_code == 302
