"""Every console route, for every kind of visitor: logged out, each role, and outsiders.

The table below names the least role each endpoint needs; a console route missing from
it fails the first test, so a new route cannot ship without being placed in the matrix.
"""

from __future__ import annotations

import hashlib
import re

import pytest
from flask import Flask
from sqlalchemy import func, select

from announcements import accounts, apikeys, support_desks, webhooks
from announcements.models import (
    ApiKey,
    AuditEvent,
    EndUser,
    Invitation,
    Role,
    Subscriber,
    SupportConnection,
    Webhook,
    WebhookDelivery,
    utcnow,
)
from app.extensions import db
from app.mail import tokens
from app.mail.tokens import Purpose
from tests.conftest import AuthActions, csrf_token
from tests.factories import add_member, make_member, make_note, make_product

PUBLIC = None
LOGGED_IN = "logged-in"
INVITATION_TOKEN = "a-known-invitation-token"
NEEDS: dict[str, Role | str | None] = {
    "console.login": PUBLIC,
    "console.forgot_password": PUBLIC,
    "console.reset_password": PUBLIC,
    "console.invitation": PUBLIC,
    "console.logout": LOGGED_IN,
    "console.account": LOGGED_IN,
    "console.end_other_sessions": LOGGED_IN,
    "console.account_language": LOGGED_IN,
    "console.products": LOGGED_IN,
    "console.product_new": LOGGED_IN,
    "console.product_home": Role.VIEWER,
    "console.notes": Role.VIEWER,
    "console.note": Role.VIEWER,
    "console.note_new": Role.EDITOR,
    "console.note_save": Role.EDITOR,
    "console.note_action": Role.EDITOR,
    "console.note_delete": Role.EDITOR,
    "console.preview": Role.EDITOR,
    "console.translation_save": Role.EDITOR,
    "console.translation_delete": Role.EDITOR,
    "console.image_upload": Role.EDITOR,
    "console.note_delivery": Role.VIEWER,
    "console.note_email": Role.EDITOR,
    "console.note_test_email": Role.EDITOR,
    "console.subscribers": Role.VIEWER,
    "console.subscribers_csv": Role.EDITOR,
    "console.subscriber_remove": Role.EDITOR,
    "console.settings": Role.OWNER,
    "console.rotate_secret": Role.OWNER,
    "console.language_add": Role.OWNER,
    "console.language_default": Role.OWNER,
    "console.language_remove": Role.OWNER,
    "console.team": Role.OWNER,
    "console.team_role": Role.OWNER,
    "console.team_remove": Role.OWNER,
    "console.team_invitation": Role.OWNER,
    "console.team_active": Role.OWNER,
    "console.audit": Role.OWNER,
    "console.api_keys": Role.OWNER,
    "console.api_key_revoke": Role.OWNER,
    "console.webhooks_page": Role.OWNER,
    "console.webhook_toggle": Role.OWNER,
    "console.webhook_delete": Role.OWNER,
    "console.webhook_test": Role.OWNER,
    "console.webhook_retry": Role.OWNER,
    "console.support_import": Role.EDITOR,
    "console.support_impact": Role.VIEWER,
    "console.support_impact_csv": Role.VIEWER,
    "console.support_note": Role.VIEWER,
    "console.support_refresh": Role.EDITOR,
    "console.support_connections": Role.OWNER,
    "console.support_secret": Role.OWNER,
    "console.support_disconnect": Role.OWNER,
    "console.support_lookup": Role.VIEWER,
    "console.support_user": Role.VIEWER,
    "console.support_send": Role.VIEWER,
    "console.support_sidebar": Role.VIEWER,
    "console.support_sidebar_rotate": Role.OWNER,
    "console.support_unacknowledged_csv": Role.OWNER,
    "console.insights": Role.VIEWER,
    "console.insights_note": Role.VIEWER,
    "console.insights_comments": Role.VIEWER,
    "console.insights_comments_csv": Role.EDITOR,
    "console.insights_non_readers_csv": Role.EDITOR,
    "console.status": Role.OWNER,
    "console.notes_translations": Role.EDITOR,
    "console.notes_translations_export": Role.EDITOR,
    "console.sso_start": PUBLIC,
    "console.sso_callback": PUBLIC,
    "console.two_factor": LOGGED_IN,
    "console.two_factor_recovery_codes": LOGGED_IN,
    "console.two_factor_off": LOGGED_IN,
    "console.two_factor_new_device": LOGGED_IN,
    "console.two_factor_verify": PUBLIC,
    "console.team_access": Role.OWNER,
    "console.privacy": Role.OWNER,
    "console.subscriber_export": Role.OWNER,
    "console.subscriber_erase": Role.OWNER,
    "console.retention": Role.OWNER,
}


# A form posted with nothing but its CSRF token finds its fields missing: 422. Every other
# permitted POST is an action that redirects (its flash says whether it was done), but
# the preview and the two Insights exports, which answer at once; every permitted GET is a
# page, but the product's home, which redirects to its notes.
FORM_POSTS = {
    "console.account",
    "console.api_keys",
    "console.forgot_password",
    "console.image_upload",
    "console.invitation",
    "console.language_add",
    "console.language_default",
    "console.note_new",
    "console.note_save",
    "console.notes_translations",
    "console.privacy",
    "console.product_new",
    "console.reset_password",
    "console.retention",
    "console.settings",
    "console.support_connections",
    "console.support_import",
    "console.support_secret",
    "console.team",
    "console.translation_save",
    "console.two_factor",
    "console.webhooks_page",
}


def permitted_status(endpoint: str, method: str) -> int:
    """What a visitor allowed on ``endpoint`` gets for a bare request."""
    # Single sign-on is not configured here: its routes are not found.
    if endpoint in ("console.sso_start", "console.sso_callback"):
        return 404
    if method == "GET":
        # The exports refuse here (the note is no notice; the product has no other
        # language), back to their pages; the second step of signing in has no sign-in
        # waiting for it, and sends a signed-in member on to the console.
        return (
            302
            if endpoint
            in (
                "console.product_home",
                "console.support_unacknowledged_csv",
                "console.notes_translations_export",
                "console.two_factor_verify",
            )
            else 200
        )
    # The preview answers with HTML, the two Insights exports (who has not read the
    # note, its comments) with their CSV, a subscriber's export with its JSON.
    if endpoint in (
        "console.preview",
        "console.insights_non_readers_csv",
        "console.insights_comments_csv",
        "console.subscriber_export",
    ):
        return 200
    return 422 if endpoint in FORM_POSTS else 302


def audit_events(session) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).select_from(AuditEvent))


def console_requests(app: Flask, product, note, member) -> list[tuple[str, str, str]]:
    """(endpoint, method, path) for every console route, with real ids and tokens filled in."""
    subscriber = db.session.scalar(select(Subscriber.id).where(Subscriber.product_id == product.id))
    key = db.session.scalar(select(ApiKey.id).where(ApiKey.product_id == product.id))
    webhook = db.session.scalar(select(Webhook.id).where(Webhook.product_id == product.id))
    call = db.session.scalar(
        select(WebhookDelivery.id).where(WebhookDelivery.webhook_id == webhook)
    )
    values = {
        "delivery_id": call,
        "key_id": key,
        "webhook_id": webhook,
        "change": "pause",
        "slug": product.slug,
        "note_id": note.id,
        "member_id": member.id,
        "subscriber_id": subscriber,
        "action": "archive",
        "invitation_id": db.session.scalar(
            select(Invitation.id).where(Invitation.product_id == product.id)
        ),
        "step": "resend",
        "activity": "deactivate",
        "token": tokens.make(
            Purpose.PASSWORD_RESET, {"m": member.id, "h": accounts.password_fingerprint(member)}
        ),
        "invitation_token": INVITATION_TOKEN,
        "connection_id": db.session.scalar(
            select(SupportConnection.id).where(SupportConnection.product_id == product.id)
        ),
        "user_id": db.session.scalar(select(EndUser.id).where(EndUser.product_id == product.id)),
        "tag": "fr",
        "locale": "fr",
    }
    found = []
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("console."):
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", lambda m: str(values[m.group(1)]), rule.rule)
        path = re.sub(r"<any\([^)]*\):action>", "archive", path)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            found.append((rule.endpoint, method, path))
    return found


@pytest.fixture
def world(session):
    owner = make_member(session, "owner@example.com")
    product = make_product(session, owner=owner, slug="acme")
    people = {
        role: add_member(session, product, role, f"{role.value}@example.com")
        for role in (Role.VIEWER, Role.EDITOR)
    }
    people[Role.OWNER] = owner
    note = make_note(session, product)
    session.add(Subscriber(product_id=product.id, email="reader@example.com"))
    session.add(EndUser(product_id=product.id, external_id="ana"))
    session.commit()
    apikeys.create(session, product, "ci", ["notes:read"], by=owner, now=utcnow())
    webhooks.create(
        session,
        product,
        "http://127.0.0.1:9/x",  # nothing listens: a test call fails at once
        ["note.published"],
        "json",
        by=owner,
        now=utcnow(),
        allow_private=True,
    )
    make_note(session, product, version="1.1.0", title="Announced")  # a webhook call to retry
    support_desks.connect(session, product, "zendesk", actor=owner, now=utcnow())
    invited = accounts.invite(
        session, product, "invitee@example.com", Role.EDITOR, by=owner, now=utcnow()
    )
    invited.invitation.token_hash = hashlib.sha256(INVITATION_TOKEN.encode()).hexdigest()
    session.commit()
    outsider = make_member(session, "outsider@example.com")
    make_product(session, owner=outsider, slug="elsewhere")
    return product, note, people, outsider


def test_every_console_route_is_in_the_matrix(app: Flask) -> None:
    endpoints = {r.endpoint for r in app.url_map.iter_rules() if r.endpoint.startswith("console.")}
    assert endpoints == set(NEEDS)


def _call(client, method: str, path: str, token: str | None):
    data = {"csrf_token": token} if token else {}
    return client.open(path, method=method, data=data if method == "POST" else None)


def test_logged_out_visitors_are_sent_to_login(app, client, world) -> None:
    product, note, people, _ = world
    token = csrf_token(client)
    for endpoint, method, path in console_requests(app, product, note, people[Role.VIEWER]):
        if NEEDS[endpoint] is PUBLIC:
            continue
        response = _call(client, method, path, token)
        assert response.status_code == 302, (method, path)
        assert response.headers["Location"].startswith("/console/login"), (method, path)


@pytest.mark.parametrize("role", [Role.VIEWER, Role.EDITOR, Role.OWNER])
def test_each_role_reaches_exactly_what_it_may(
    app, client, auth: AuthActions, world, role: Role
) -> None:
    product, note, people, _ = world
    auth.login(people[role].email)
    token = csrf_token(client)
    # Act on the editor's membership, and remove it last, so every other request still
    # finds the editor on the team and the logged-in member keeps access; disconnect the
    # help desk only after its secret's form has been tried, and remove or erase the
    # subscriber only after it has been exported.
    last = (
        "console.subscriber_erase",
        "console.subscriber_remove",
        "console.support_disconnect",
        "console.team_remove",
    )
    requests = sorted(
        console_requests(app, product, note, people[Role.EDITOR]),
        key=lambda request: last.index(request[0]) + 1 if request[0] in last else 0,
    )
    for endpoint, method, path in requests:
        if endpoint in ("console.logout", "console.login"):
            continue
        needed = NEEDS[endpoint]
        response = _call(client, method, path, token)
        if isinstance(needed, Role) and not role.allows(needed):
            assert response.status_code == 403, (role, method, path)
        else:
            expected = permitted_status(endpoint, method)
            assert response.status_code == expected, (role, method, path, response.status_code)
        if response.status_code == 302:  # reached the view, not sent away to log in
            assert not response.headers["Location"].startswith("/console/login"), (method, path)


def test_outsiders_get_404_for_products_they_do_not_belong_to(
    app, client, auth, session, world
) -> None:
    product, note, people, outsider = world
    auth.login(outsider.email)
    token = csrf_token(client)
    before = audit_events(session)
    for endpoint, method, path in console_requests(app, product, note, people[Role.VIEWER]):
        if isinstance(NEEDS[endpoint], Role):
            assert _call(client, method, path, token).status_code == 404, (method, path)
    assert audit_events(session) == before  # and nothing was done on the way


def test_another_products_note_is_404_even_for_its_owner(client, auth, session, world) -> None:
    product, note, people, _ = world
    other = make_product(session, owner=people[Role.OWNER], slug="other")
    auth.login(people[Role.OWNER].email)
    assert client.get(f"/console/p/{other.slug}/notes/{note.id}").status_code == 404
    token = csrf_token(client)
    response = client.post(
        f"/console/p/{other.slug}/notes/{note.id}/archive", data={"csrf_token": token}
    )
    assert response.status_code == 404
    session.refresh(note)  # as the database has it, not as this session last saw it
    assert note.archived_at is None


def test_team_routes_only_reach_people_on_the_product(client, auth, session, world):
    product, _, people, outsider = world
    auth.login(people[Role.OWNER].email)
    token = csrf_token(client)
    for action, form in (("role", {"role": "editor"}), ("remove", {})):
        response = client.post(
            f"/console/p/{product.slug}/team/{outsider.id}/{action}",
            data={**form, "csrf_token": token},
        )
        assert response.status_code == 404
    session.expire_all()
    assert [m.member.email for m in product.memberships if m.member_id == outsider.id] == []
    assert [(m.product.slug, m.role) for m in outsider.memberships] == [("elsewhere", Role.OWNER)]


def test_every_console_post_without_a_csrf_token_is_refused(
    app, client, auth, session, world
) -> None:
    product, note, people, _ = world
    auth.login(people[Role.OWNER].email)
    before = audit_events(session)
    for _endpoint, method, path in console_requests(app, product, note, people[Role.EDITOR]):
        if method != "POST":
            continue
        for token in (None, "forged-token"):
            response = _call(client, "POST", path, token)
            assert response.status_code == 400, (path, token)
            assert "The form expired" in response.get_data(as_text=True)
    assert audit_events(session) == before  # every change is audited: none was made
    session.refresh(note)
    assert note.archived_at is None
