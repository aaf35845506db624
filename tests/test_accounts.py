"""Console accounts: invitations by e-mail, passwords only their owner knows, sessions that
end when they should (logout, password change or reset, deactivation)."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select, update

from announcements import accounts
from announcements.errors import NotFound
from announcements.models import AuditEvent, ConsoleSession, Invitation, Membership, Role, utcnow
from tests.conftest import PASSWORD, AuthActions, csrf_token
from tests.factories import add_member, make_member, make_product
from tests.mailserver import SmtpServer

LINK = re.compile(r"https?://\S+/console/(?:invitations|reset-password)/[A-Za-z0-9_.\-]+")


@pytest.fixture
def owner(app, session, client, auth, smtp_server: SmtpServer):
    app.config["SMTP_URL"] = smtp_server.url
    member = make_member(session, "owner@example.com")
    make_product(session, owner=member, slug="acme", name="Acme")
    auth.login(member.email)
    return member


def _post(client: FlaskClient, path: str, **form: str):
    return client.post(path, data={"csrf_token": csrf_token(client), **form})


def _link_in(smtp_server: SmtpServer, address: str, *, wait: float = 0.0) -> str:
    """The one console link in the newest mail to ``address``, waiting up to ``wait`` s."""
    deadline = time.monotonic() + wait
    while not smtp_server.recorder.to(address) and time.monotonic() < deadline:
        time.sleep(0.05)
    mail = smtp_server.recorder.to(address)[-1]
    text = mail.get_body(("plain",)).get_content()
    [link] = set(LINK.findall(text))
    return urlsplit(link).path


def _is_signed_in(client: FlaskClient) -> bool:
    return client.get("/console/").status_code == 200


def _copy_of(client: FlaskClient, app) -> FlaskClient:
    """A second browser holding a copy of ``client``'s session cookie."""
    other = app.test_client()
    cookie = client.get_cookie("session")
    assert cookie is not None
    other.set_cookie("session", cookie.value)
    return other


def test_an_invitation_is_mailed_and_the_invitee_chooses_their_own_password(
    app, client, session, owner, smtp_server: SmtpServer
) -> None:
    response = _post(client, "/console/p/acme/team", email="New@Example.com", role="editor")
    assert response.status_code == 302
    page = client.get("/console/p/acme/team").get_data(as_text=True)
    assert "Invitation sent to new@example.com" in page and "Invited, not yet joined" in page
    assert "one-time password" not in page
    assert accounts.find_by_email(session, "new@example.com") is None
    link = _link_in(smtp_server, "new@example.com")
    [mail] = smtp_server.recorder.to("new@example.com")
    assert mail["Subject"] == "Join Acme on Tidings"

    invitee = app.test_client()
    form = invitee.get(link)
    assert form.status_code == 200 and "Create my account" in form.get_data(as_text=True)
    short = _post(invitee, link, name="Nia", password="short")
    assert short.status_code == 422 and "at least 10 characters" in short.get_data(as_text=True)
    assert accounts.find_by_email(session, "new@example.com") is None

    joined = _post(invitee, link, name="Nia", password="nia's own password")
    assert joined.status_code == 302 and joined.headers["Location"] == "/console/p/acme/"
    assert _is_signed_in(invitee)
    member = accounts.find_by_email(session, "new@example.com")
    assert member is not None and member.name == "Nia"
    assert accounts.authenticate(session, "new@example.com", "nia's own password") is member
    role = session.scalar(select(Membership.role).where(Membership.member_id == member.id))
    assert role is Role.EDITOR
    # Used once: the same link now opens nothing, for anyone.
    again = app.test_client().get(link)
    assert again.status_code == 404 and "expired, was used already" in again.get_data(as_text=True)
    assert session.scalar(select(func.count()).select_from(Invitation)) == 0


def test_an_invitation_expires_after_48_hours(session, owner) -> None:
    product = owner.memberships[0].product
    now = utcnow()
    invited = accounts.invite(session, product, "late@example.com", Role.VIEWER, by=owner, now=now)
    session.commit()
    assert accounts.invitation_for(session, invited.token, now=now + timedelta(hours=47))
    with pytest.raises(NotFound):
        accounts.invitation_for(session, invited.token, now=now + timedelta(hours=48, seconds=1))


def test_no_password_is_shown_and_an_existing_account_must_sign_in_to_accept(
    app, client, session, owner, smtp_server: SmtpServer
) -> None:
    """The audit's attack: owners of two products add the same account; the first used
    to learn a password for it and could read the second product's secrets."""
    other_owner = make_member(session, "other@example.com")
    secret_product = make_product(session, owner=other_owner, slug="secret")
    response = _post(client, "/console/p/acme/team", email="other@example.com", role="viewer")
    assert "one-time password" not in client.get(response.headers["Location"]).get_data(
        as_text=True
    )
    assert accounts.authenticate(session, "other@example.com", PASSWORD) is not None
    on_acme = select(Membership).where(
        Membership.member_id == other_owner.id, Membership.product_id != secret_product.id
    )
    assert session.scalar(on_acme) is None  # not on the team until they accept
    link = _link_in(smtp_server, "other@example.com")

    # The inviting owner opens the link: it is not theirs to accept.
    mismatch = client.get(link).get_data(as_text=True)
    assert "This invitation is for other@example.com" in mismatch
    client.post(link, data={"csrf_token": csrf_token(client)})
    assert session.scalar(select(func.count()).select_from(Invitation)) == 1

    invitee = app.test_client()
    assert invitee.get(link).headers["Location"].startswith("/console/login?next=/console/")
    AuthActions(invitee).login("other@example.com", next=link)
    accepted = invitee.post(link, data={"csrf_token": csrf_token(invitee)})
    assert accepted.status_code == 302
    roles = dict(
        session.execute(
            select(Membership.product_id, Membership.role).where(
                Membership.member_id == other_owner.id
            )
        ).all()
    )
    assert roles == {secret_product.id: Role.OWNER, owner.memberships[0].product_id: Role.VIEWER}


def test_an_invitation_that_cannot_be_mailed_is_not_made(
    app, client, session, owner, smtp_server: SmtpServer
) -> None:
    smtp_server.recorder.replies["nobody@example.com"] = "550 5.1.1 no such user"
    response = _post(client, "/console/p/acme/team", email="nobody@example.com", role="editor")
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "could not be e-mailed, so none was made" in page and "550" in page
    assert session.scalar(select(func.count()).select_from(Invitation)) == 0


def test_team_addresses_use_the_subscribers_address_rules(client, session, owner) -> None:
    for address in ("someone@localhost", "a b@example.com"):
        response = _post(client, "/console/p/acme/team", email=address, role="editor")
        assert response.status_code == 422
        assert "not an email address we can use" in response.get_data(as_text=True)
    assert session.scalar(select(func.count()).select_from(Invitation)) == 0


def test_invitations_can_be_sent_again_with_a_new_link_or_withdrawn(
    app, client, session, owner, smtp_server: SmtpServer
) -> None:
    _post(client, "/console/p/acme/team", email="twice@example.com", role="editor")
    first = _link_in(smtp_server, "twice@example.com")
    invitation_id = session.scalar(select(Invitation.id))
    _post(client, f"/console/p/acme/team/invitations/{invitation_id}/resend")
    second = _link_in(smtp_server, "twice@example.com")
    assert first != second
    assert app.test_client().get(first).status_code == 404
    assert app.test_client().get(second).status_code == 200
    _post(client, f"/console/p/acme/team/invitations/{invitation_id}/withdraw")
    assert app.test_client().get(second).status_code == 404
    actions = session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()
    assert actions[-3:] == ["member.invited", "member.invited", "member.invitation_withdrawn"]


def test_logging_out_ends_the_session_for_a_copied_cookie_too(app, client, session, owner) -> None:
    copy = _copy_of(client, app)
    assert _is_signed_in(copy)
    AuthActions(client).logout()
    assert not _is_signed_in(client)
    assert not _is_signed_in(copy)
    assert session.scalar(select(func.count()).select_from(ConsoleSession)) == 0


def test_changing_the_password_needs_the_current_one_and_ends_other_sessions(
    app, client, session, owner
) -> None:
    elsewhere = app.test_client()
    AuthActions(elsewhere).login(owner.email)
    stale = app.test_client()
    AuthActions(stale).login(owner.email)
    session.execute(
        update(ConsoleSession)
        .where(ConsoleSession.id == session.scalar(select(func.max(ConsoleSession.id))))
        .values(expires_at=utcnow() - timedelta(minutes=1))
    )
    session.commit()
    page = client.get("/console/account").get_data(as_text=True)
    assert "signed in on 1 other browser besides this one" in page  # not the expired one
    wrong = _post(
        client, "/console/account", current_password="not it at all", new_password="brand new pw 1"
    )
    assert wrong.status_code == 422
    assert "That is not your current password" in wrong.get_data(as_text=True)
    assert _is_signed_in(elsewhere)

    done = _post(
        client, "/console/account", current_password=PASSWORD, new_password="brand new pw 1"
    )
    assert done.status_code == 302
    assert _is_signed_in(client)
    assert "the only browser signed in" in client.get("/console/account").get_data(as_text=True)
    assert not _is_signed_in(elsewhere)
    assert accounts.authenticate(session, owner.email, "brand new pw 1") is not None
    assert accounts.authenticate(session, owner.email, PASSWORD) is None


def test_forgot_password_answers_alike_and_the_reset_link_works_once(
    app, client, session, smtp_server: SmtpServer
) -> None:
    app.config["SMTP_URL"] = smtp_server.url
    member = make_member(session, "pm@example.com")
    signed_in = app.test_client()
    AuthActions(signed_in).login(member.email)

    answers = []
    for address in ("pm@example.com", "nobody-here@example.com"):
        response = _post(client, "/console/forgot-password", email=address)
        answers.append((response.status_code, client.get("/console/login").get_data(as_text=True)))
    assert answers[0][0] == answers[1][0] == 302
    for (_, page), address in zip(
        answers, ("pm@example.com", "nobody-here@example.com"), strict=True
    ):
        assert f"If {address} has an account, a link to choose a new password" in page
    link = _link_in(smtp_server, "pm@example.com", wait=10)
    assert smtp_server.recorder.to("nobody-here@example.com") == []

    browser = app.test_client()
    assert browser.get(link).status_code == 200
    changed = _post(browser, link, password="a fresh password")
    assert changed.status_code == 302 and _is_signed_in(browser)
    assert not _is_signed_in(signed_in)
    assert accounts.authenticate(session, "pm@example.com", "a fresh password") is not None
    reused = app.test_client().get(link)
    assert reused.status_code == 404 and "used already" in reused.get_data(as_text=True)


def test_owners_deactivate_an_account_which_ends_its_sessions(app, client, session, owner) -> None:
    product = owner.memberships[0].product
    editor = add_member(session, product, Role.EDITOR, "ed@example.com")
    editors_browser = app.test_client()
    AuthActions(editors_browser).login(editor.email)
    assert _is_signed_in(editors_browser)

    _post(client, f"/console/p/acme/team/{editor.id}/deactivate")
    assert not _is_signed_in(editors_browser)
    assert AuthActions(editors_browser).login(editor.email).status_code == 422
    _post(client, f"/console/p/acme/team/{editor.id}/reactivate")
    assert AuthActions(editors_browser).login(editor.email).status_code == 302


def test_an_owner_cannot_deactivate_someone_who_also_works_elsewhere(
    client, session, owner
) -> None:
    product = owner.memberships[0].product
    busy = add_member(session, product, Role.EDITOR, "busy@example.com")
    make_product(session, owner=busy, slug="theirs", name="Theirs")
    response = _post(client, f"/console/p/acme/team/{busy.id}/deactivate")
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "busy@example.com also works on Theirs" in page
    session.expire_all()
    assert busy.is_active


@pytest.mark.parametrize("next_", ["/console/\r\nSet-Cookie: x=1", "/console/\n", "//evil.test"])
def test_login_next_with_line_breaks_or_another_host_goes_to_the_console(
    client, session, auth, next_: str
) -> None:
    make_member(session, "pm@example.com")
    response = auth.login("pm@example.com", next=next_)
    assert response.status_code == 302
    assert response.headers["Location"] == "/console/"
