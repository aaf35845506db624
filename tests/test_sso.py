"""Single sign-on against a real OpenID Connect provider (tests/oidc_provider.py): the
code flow with PKCE end to end, every check on the provider's answer, how accounts are
found, linked and created, and products that allow no password."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from joserfc.jwk import RSAKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from announcements import accounts
from announcements.models import (
    AuditEvent,
    Membership,
    Product,
    Role,
    SsoIdentity,
    TeamMember,
    utcnow,
)
from app.mail import tokens
from tests.conftest import PASSWORD, AuthActions, csrf_token
from tests.factories import add_member, make_member, make_product
from tests.oidc_provider import (  # noqa: F401 (the fixture)
    BASE_URL,
    REDIRECT_URI,
    OidcProvider,
    oidc_provider_fixture,
)

ALICE = "alice@example.com"


@pytest.fixture
def sso_app(app: Flask, app_factory: Callable[..., Flask], oidc_provider: OidcProvider) -> Flask:
    """Tidings with the provider configured, on the test database (``app`` empties it)."""
    return app_factory(**oidc_provider.config(BASE_URL=BASE_URL))


@pytest.fixture
def visitor(sso_app: Flask) -> FlaskClient:
    return sso_app.test_client()


def start(visitor: FlaskClient, next_url: str | None = None) -> str:
    """Click "Continue with …": the URL of the provider's authorisation endpoint."""
    answer = visitor.get("/console/login/sso", query_string={"next": next_url} if next_url else {})
    assert answer.status_code == 302, answer.get_data(as_text=True)
    return answer.headers["Location"]


def provider_answer(visitor: FlaskClient, provider: OidcProvider, login: str) -> str:
    """Start a sign-on and sign in at the provider as ``login``: the callback's path."""
    back = provider.sign_in(start(visitor), login, redirect_uri=REDIRECT_URI)
    return back.removeprefix(BASE_URL)


def sign_on(visitor: FlaskClient, provider: OidcProvider, login: str):
    return visitor.get(provider_answer(visitor, provider, login))


def sso_product(
    session: Session,
    owner: TeamMember | None = None,
    *,
    require_sso: bool = False,
    sso_provision_role: Role | None = None,
    **settings: Any,
) -> Product:
    """A product with its single sign-on settings, which the Team page's form sets."""
    made = make_product(session, owner, **settings)
    made.require_sso = require_sso
    made.sso_provision_role = sso_provision_role
    session.commit()
    return made


def refusals(session: Session) -> list[AuditEvent]:
    session.expire_all()
    return list(
        session.scalars(
            select(AuditEvent).where(AuditEvent.action == "sso.refused").order_by(AuditEvent.id)
        )
    )


def assert_refused(answer, session: Session, reason: str, status: int = 403) -> None:
    """The console's problem page, with the reason, and one audit entry saying it."""
    page = answer.get_data(as_text=True)
    assert answer.status_code == status, page
    assert "Single sign-on did not work" in page
    assert reason in page
    events = refusals(session)
    assert [event.summary for event in events][-1:] == [f"Single sign-on refused ({reason})"]


def signed_in_as(visitor: FlaskClient) -> str | None:
    page = visitor.get("/console/account")
    if page.status_code != 200:
        return None
    for email in (ALICE, "carol@example.com"):
        if email in page.get_data(as_text=True):
            return email
    return "someone"


# The flow ------------------------------------------------------------------


def test_code_flow_with_pkce_signs_a_member_in_and_links_the_identity(
    session, visitor, oidc_provider
) -> None:
    alice = make_member(session, ALICE)
    make_product(session, alice, slug="acme")
    oidc_provider.proxy.requests.clear()

    authorize = start(visitor, next_url="/console/p/acme/notes")
    query = parse_qs(urlsplit(authorize).query)
    assert query["code_challenge_method"] == ["S256"]
    assert len(query["code_challenge"][0]) == 43  # base64url of a SHA-256 digest
    assert query["scope"] == ["openid email profile"] and query["nonce"][0]
    back = oidc_provider.sign_in(authorize, "alice", redirect_uri=REDIRECT_URI)
    answer = visitor.get(back.removeprefix(BASE_URL))

    assert answer.status_code == 302
    assert answer.headers["Location"] == "/console/p/acme/notes"
    assert signed_in_as(visitor) == ALICE
    # What reached the provider: the authorisation request with the challenge, and the
    # code exchanged with its verifier.
    [(_, authorize_path, _)] = [
        r for r in oidc_provider.proxy.requests if r[1].startswith("/auth?")
    ]
    assert "code_challenge_method=S256" in authorize_path
    [(_, _, token_body)] = [r for r in oidc_provider.proxy.requests if r[1] == "/token"]
    assert "code_verifier" in parse_qs(token_body.decode())
    session.expire_all()
    [identity] = session.scalars(select(SsoIdentity))
    assert (identity.member_id, identity.issuer, identity.subject) == (
        alice.id,
        oidc_provider.issuer,
        "sub-alice",
    )
    linked = session.scalars(select(AuditEvent).where(AuditEvent.action == "sso.linked")).all()
    assert [event.product_id for event in linked] == [alice.memberships[0].product_id]


def test_a_linked_identity_finds_its_member_after_their_address_changes(
    session, visitor, oidc_provider
) -> None:
    alice = make_member(session, ALICE)
    session.add(SsoIdentity(member_id=alice.id, issuer=oidc_provider.issuer, subject="sub-alice"))
    alice.email = "alice.renamed@example.com"
    session.commit()
    assert sign_on(visitor, oidc_provider, "alice").status_code == 302
    assert "alice.renamed@example.com" in visitor.get("/console/account").get_data(as_text=True)


def test_an_unverified_address_matches_no_account(session, visitor, oidc_provider) -> None:
    make_product(session, make_member(session, ALICE))
    # mallory's provider account claims alice's address without having verified it.
    assert_refused(sign_on(visitor, oidc_provider, "mallory"), session, "unverified_email")
    assert signed_in_as(visitor) is None
    assert session.scalars(select(SsoIdentity)).all() == []
    [event] = refusals(session)
    assert event.product_id is None and event.actor_id is None  # an instance event


def test_a_deactivated_member_is_refused_and_their_products_see_it(
    session, visitor, oidc_provider
) -> None:
    alice = make_member(session, ALICE)
    product = make_product(session, alice)
    alice.is_active = False
    session.commit()
    assert_refused(sign_on(visitor, oidc_provider, "alice"), session, "deactivated")
    assert [event.product_id for event in refusals(session)] == [product.id]


# Provisioning ----------------------------------------------------------------


def test_no_account_and_no_provisioning_is_refused(session, visitor, oidc_provider) -> None:
    sso_product(session, sso_provision_role=None)
    assert_refused(sign_on(visitor, oidc_provider, "carol"), session, "no_account")
    assert accounts.find_by_email(session, "carol@example.com") is None


def test_provisioning_creates_the_account_on_products_that_give_a_role(
    session, app_factory, oidc_provider
) -> None:
    owner = make_member(session)
    viewers = sso_product(session, owner, slug="viewers", sso_provision_role=Role.VIEWER)
    editors = sso_product(session, owner, slug="editors", sso_provision_role=Role.EDITOR)
    closed = make_product(session, owner, slug="closed")
    visitor = app_factory(**oidc_provider.config(BASE_URL=BASE_URL, OIDC_PROVISIONING=True))
    client = visitor.test_client()

    assert sign_on(client, oidc_provider, "carol").status_code == 302

    session.expire_all()
    carol = accounts.find_by_email(session, "carol@example.com")
    assert carol is not None and carol.name == "Carol New"
    roles = {m.product.slug: m.role for m in carol.memberships}
    assert roles == {"viewers": Role.VIEWER, "editors": Role.EDITOR}
    assert closed.slug not in roles
    created = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "sso.account_created")
    ).all()
    assert {event.product_id for event in created} == {viewers.id, editors.id}
    # The password nobody knows does not open the account.
    assert accounts.authenticate(session, "carol@example.com", PASSWORD) is None


def test_provisioning_with_no_product_giving_a_role_is_refused(
    session, app_factory, oidc_provider
) -> None:
    make_product(session)
    client = app_factory(**oidc_provider.config(BASE_URL=BASE_URL, OIDC_PROVISIONING=True))
    answer = sign_on(client.test_client(), oidc_provider, "carol")
    assert_refused(answer, session, "no_product")
    assert "no product takes new members" in answer.get_data(as_text=True)
    assert accounts.find_by_email(session, "carol@example.com") is None


def test_a_pending_invitation_is_accepted_by_signing_on(session, visitor, oidc_provider) -> None:
    owner = make_member(session)
    product = sso_product(session, owner, slug="acme", require_sso=True)
    accounts.invite(session, product, "carol@example.com", Role.EDITOR, by=owner, now=utcnow())
    session.commit()

    answer = sign_on(visitor, oidc_provider, "carol")

    assert answer.status_code == 302
    session.expire_all()
    carol = accounts.find_by_email(session, "carol@example.com")
    assert carol is not None
    assert [(m.product.slug, m.role) for m in carol.memberships] == [("acme", Role.EDITOR)]


# Refused answers -------------------------------------------------------------


def test_a_mismatched_state_is_refused(session, visitor, oidc_provider) -> None:
    make_member(session, ALICE)
    callback = provider_answer(visitor, oidc_provider, "alice")
    forged = callback.replace("state=", "state=x")
    assert_refused(visitor.get(forged), session, "state", 400)
    assert signed_in_as(visitor) is None


def test_a_callback_from_another_browser_is_refused(
    session, visitor, sso_app, oidc_provider
) -> None:
    make_member(session, ALICE)
    callback = provider_answer(visitor, oidc_provider, "alice")
    # The attacker's own sign-in, sent to a victim's visitor (login CSRF).
    assert_refused(sso_app.test_client().get(callback), session, "state", 400)


def test_a_used_callback_cannot_be_replayed(session, visitor, sso_app, oidc_provider) -> None:
    make_member(session, ALICE)
    callback = provider_answer(visitor, oidc_provider, "alice")
    cookie = visitor.get_cookie("session")
    assert cookie is not None
    assert visitor.get(callback).status_code == 302
    AuthActions(visitor).logout()

    # The same visitor: the state was spent.
    assert_refused(visitor.get(callback), session, "state", 400)
    # A copy of the cookie from before the callback still holds the state: the
    # provider refuses the code a second time.
    thief = sso_app.test_client()
    thief.set_cookie("session", cookie.value)
    assert_refused(thief.get(callback), session, "code_refused", 400)
    assert signed_in_as(thief) is None


def _tampered(
    session: Session,
    visitor: FlaskClient,
    provider: OidcProvider,
    change: Callable[[dict[str, Any]], dict[str, Any]],
    key: RSAKey | None = None,
):
    make_member(session, ALICE)
    callback = provider_answer(visitor, provider, "alice")
    provider.rewrite_id_token(change, key)
    answer = visitor.get(callback)
    assert provider.proxy.rewrite_token is None, "the token answer was rewritten"
    assert signed_in_as(visitor) is None
    return answer


def test_an_id_token_signed_by_another_key_is_refused(session, visitor, oidc_provider) -> None:
    other = RSAKey.generate_key(2048, parameters={"kid": oidc_provider.key.kid})
    answer = _tampered(session, visitor, oidc_provider, lambda claims: claims, other)
    assert_refused(answer, session, "signature")


def test_an_id_token_with_an_unknown_key_id_is_refused(session, visitor, oidc_provider) -> None:
    other = RSAKey.generate_key(2048, parameters={"kid": "someone-else"})
    answer = _tampered(session, visitor, oidc_provider, lambda claims: claims, other)
    assert_refused(answer, session, "signature")


def test_an_unsigned_id_token_is_refused(session, visitor, oidc_provider) -> None:
    make_member(session, ALICE)
    callback = provider_answer(visitor, oidc_provider, "alice")

    def unsigned(answer: dict[str, Any]) -> dict[str, Any]:
        claims = answer["id_token"].split(".")[1]
        header = base64.urlsafe_b64encode(json.dumps({"alg": "none"}).encode()).rstrip(b"=")
        return {**answer, "id_token": f"{header.decode()}.{claims}."}

    oidc_provider.proxy.rewrite_token = unsigned
    assert_refused(visitor.get(callback), session, "signature")


def test_an_answer_without_an_id_token_is_refused(session, visitor, oidc_provider) -> None:
    make_member(session, ALICE)
    callback = provider_answer(visitor, oidc_provider, "alice")
    oidc_provider.proxy.rewrite_token = lambda answer: {
        k: v for k, v in answer.items() if k != "id_token"
    }
    assert_refused(visitor.get(callback), session, "no_id_token")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda c: {**c, "nonce": "another-sign-in"}, "claim_nonce"),
        (lambda c: {k: v for k, v in c.items() if k != "nonce"}, "claim_nonce"),
        (lambda c: {**c, "iss": "https://evil.example.com"}, "claim_iss"),
        (lambda c: {**c, "aud": "another-client"}, "claim_aud"),
        (lambda c: {**c, "aud": ["another-client"]}, "claim_aud"),
        (
            lambda c: {**c, "iat": int(time.time()) - 7200, "exp": int(time.time()) - 3600},
            "expired",
        ),
    ],
    ids=["other-nonce", "no-nonce", "issuer", "audience", "audience-list", "expired"],
)
def test_an_id_token_with_a_wrong_claim_is_refused(
    session, visitor, oidc_provider, change, reason
) -> None:
    """Signed by the provider's own key, so only the claim is wrong."""
    assert_refused(_tampered(session, visitor, oidc_provider, change), session, reason)


def test_the_provider_refusing_is_a_clear_page(session, visitor, oidc_provider) -> None:
    start(visitor)
    answer = visitor.get("/console/login/sso/callback?error=access_denied&state=whatever")
    assert_refused(answer, session, "access_denied")
    assert "cancelled or refused" in answer.get_data(as_text=True)


def test_a_cancelled_sign_in_at_the_provider_comes_back_refused(
    session, visitor, oidc_provider
) -> None:
    """The provider's own "Cancel" link: it answers error=access_denied."""
    browser_at_provider = requests.Session()
    browser_at_provider.trust_env = False
    page = browser_at_provider.get(start(visitor), timeout=10)
    abort = page.url.rstrip("/") + "/abort"
    back = browser_at_provider.get(abort, allow_redirects=False, timeout=10)
    while not back.headers["Location"].startswith(REDIRECT_URI):
        back = browser_at_provider.get(back.headers["Location"], allow_redirects=False, timeout=10)
    answer = visitor.get(back.headers["Location"].removeprefix(BASE_URL))
    assert_refused(answer, session, "access_denied")


@pytest.mark.parametrize(
    "query",
    [
        "",
        "code=abc",
        "state=garbage",
        "code=abc&state=garbage",
        "error=server_error",
        "error=%00%ff&state=%ff",
        "iss=https%3A%2F%2Fevil.example.com&code=abc&state=x",
        "code=" + "x" * 5000,
    ],
)
def test_crafted_callbacks_get_a_page_never_a_500(session, visitor, oidc_provider, query) -> None:
    answer = visitor.get(f"/console/login/sso/callback?{query}")
    assert answer.status_code in (400, 403), answer.get_data(as_text=True)
    assert "Single sign-on did not work" in answer.get_data(as_text=True)
    assert len(refusals(session)) == 1


def test_a_missing_code_with_the_right_state_is_refused(session, visitor, oidc_provider) -> None:
    callback = provider_answer(visitor, oidc_provider, "alice")
    state = parse_qs(urlsplit(callback).query)["state"][0]
    answer = visitor.get("/console/login/sso/callback?" + urlencode({"state": state}))
    assert_refused(answer, session, "code_refused", 400)


def test_an_unreachable_provider_is_a_clear_page(session, app_factory) -> None:
    down = app_factory(
        OIDC_ISSUER="http://127.0.0.1:9",  # discard: nothing listens
        OIDC_CLIENT_ID="tidings",
        OIDC_CLIENT_SECRET="secret",
        OIDC_PROVIDER_NAME="Example ID",
    ).test_client()
    for path in ("/console/login/sso", "/console/login/sso/callback?code=a&state=b"):
        answer = down.get(path)
        assert answer.status_code == 502
        assert "Example ID could not be reached" in answer.get_data(as_text=True)
    assert len(refusals(session)) == 2


# The sign-in page and passwords ------------------------------------------------


def test_the_sign_in_page_offers_the_provider_only_when_configured(client, visitor) -> None:
    offered = visitor.get("/console/login?next=/console/p/acme").get_data(as_text=True)
    assert "Continue with Example ID" in offered
    assert "/console/login/sso?next=/console/p/acme" in offered
    assert "Continue with" not in client.get("/console/login").get_data(as_text=True)
    assert client.get("/console/login/sso").status_code == 404
    assert client.get("/console/login/sso/callback?code=a&state=b").status_code == 404


def _require_sso(session: Session) -> TeamMember:
    owner = make_member(session)
    product = sso_product(session, owner, name="Acme", slug="acme", require_sso=True)
    return add_member(session, product, Role.EDITOR, ALICE)


def test_a_product_requiring_sso_refuses_its_members_passwords(session, client, visitor) -> None:
    _require_sso(session)
    answer = AuthActions(visitor).login(ALICE)
    page = answer.get_data(as_text=True)
    assert answer.status_code == 422
    assert "Members of Acme sign in with Example ID" in page
    assert "Continue with Example ID" in page
    assert signed_in_as(visitor) is None
    # A wrong password is still just a wrong password.
    wrong = AuthActions(visitor).login(ALICE, "not the password")
    assert "do not match an account" in wrong.get_data(as_text=True)
    # With no provider configured, nobody could sign in at all: passwords work.
    assert AuthActions(client).login(ALICE).status_code == 302


def test_a_product_requiring_sso_lets_its_members_sign_on(session, visitor, oidc_provider) -> None:
    _require_sso(session)
    assert sign_on(visitor, oidc_provider, "alice").status_code == 302
    assert signed_in_as(visitor) == ALICE


def test_a_password_reset_does_not_sign_in_a_member_who_must_use_sso(
    session, sso_app, visitor
) -> None:
    alice = _require_sso(session)
    # Read before the other app's context: the test's session, asked inside it, would
    # take a connection of that app's pool and keep it past the pool's end.
    fingerprint = {"m": alice.id, "h": accounts.password_fingerprint(alice)}
    with sso_app.test_request_context():
        token = tokens.make(tokens.Purpose.PASSWORD_RESET, fingerprint)
    shown = visitor.get(f"/console/reset-password/{token}")
    assert "sign in with Example ID, not a password" in shown.get_data(as_text=True)
    answer = visitor.post(
        f"/console/reset-password/{token}",
        data={"password": "a brand new password", "csrf_token": csrf_token(visitor)},
    )
    assert answer.status_code == 422
    assert "sign in with Example ID, not a password" in answer.get_data(as_text=True)
    assert signed_in_as(visitor) is None
    assert accounts.authenticate(session, ALICE, PASSWORD) is not None  # unchanged


def test_an_invitation_to_a_product_requiring_sso_takes_no_password(
    session, visitor, oidc_provider
) -> None:
    owner = make_member(session)
    product = sso_product(session, owner, name="Acme", slug="acme", require_sso=True)
    invited = accounts.invite(
        session, product, "carol@example.com", Role.VIEWER, by=owner, now=utcnow()
    )
    session.commit()
    path = f"/console/invitations/{invited.token}"
    answer = visitor.post(
        path,
        data={"name": "Carol", "password": "a long password", "csrf_token": csrf_token(visitor)},
    )
    assert answer.status_code == 422
    assert "Members of Acme sign in with Example ID" in answer.get_data(as_text=True)
    assert accounts.find_by_email(session, "carol@example.com") is None
    # Signing on with the invited address makes the account.
    assert sign_on(visitor, oidc_provider, "carol").status_code == 302
    session.expire_all()
    assert (
        session.scalar(
            select(Membership).where(
                Membership.product_id == product.id, Membership.role == Role.VIEWER
            )
        )
        is not None
    )
    assert utcnow() - timedelta(minutes=1) < session.scalars(select(SsoIdentity)).one().created_at
