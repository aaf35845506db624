"""Two-factor sign-in: enrolment with a first code, the second step of signing in, codes
taken once, recovery codes single-use and kept only as hashes, the pending sign-in's five
minutes, the rate limit on codes, the rules for turning it off, and the audit log."""

from __future__ import annotations

import re
from datetime import timedelta

import pyotp
import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from announcements import accounts, audit, two_factor
from announcements.errors import InvalidTransition, ValidationFailed
from announcements.models import AuditEvent, RecoveryCode, TeamMember, utcnow
from app.auth import PENDING_SIGN_IN
from app.mail import tokens
from tests.conftest import AuthActions, csrf_token
from tests.factories import make_member, make_product

CODE = re.compile(r"<li><code>([a-z2-7]{4}(?:-[a-z2-7]{4}){3})</code></li>")
SHOWN_SECRET = re.compile(r'<code id="totp-secret" class="totp-secret">([A-Z2-7 ]+)</code>')
VERIFY = "/console/login/two-factor"
SETUP = "/console/account/two-factor"


def _post(client: FlaskClient, path: str, **form: str):
    token = csrf_token(client)
    return client.post(path, data={"csrf_token": token, **form})


def _give_up(client: FlaskClient, which: str, code: str, prefix: str | None = None):
    """Post one of an enrolled member's forms, proven by ``code``: to turn two-factor off
    (``which`` "off"), to start again with a new device ("new-device") or to make new
    recovery codes ("recovery-codes", prefix "codes"): they share a page, so their fields
    carry a prefix."""
    token = csrf_token(client)
    prefix = prefix or which
    form = {f"{prefix}-code": code, f"{prefix}-csrf_token": token}
    return client.post(f"/console/account/two-factor/{which}", data=form)


def _shown_secret(client: FlaskClient) -> str:
    """The secret the setup page shows this browser, as an app reads it."""
    page = client.get(SETUP)
    assert page.status_code == 200
    found = SHOWN_SECRET.search(page.get_data(as_text=True))
    assert found, "no key on the setup page"
    return found.group(1).replace(" ", "")


def _code(member: TeamMember) -> str:
    """The app's code for ``member`` now."""
    assert member.totp_secret
    return pyotp.TOTP(member.totp_secret).at(utcnow())


def _code_after_last(member: TeamMember, steps: int = 0) -> str:
    """The code of the step ``steps`` after the last one taken: the last one itself with 0
    (still in the window, whatever the clock did since), the next one with 1."""
    assert member.totp_secret and member.totp_last_step is not None
    return pyotp.TOTP(member.totp_secret).at((member.totp_last_step + steps) * 30)


def _enrol(client: FlaskClient, session, member: TeamMember) -> list[str]:
    """Turn two-factor on through the console, as the signed-in ``member``; the codes."""
    secret = _shown_secret(client)
    answer = _post(client, SETUP, code=pyotp.TOTP(secret).at(utcnow()))
    assert answer.status_code == 200, answer.get_data(as_text=True)
    codes = CODE.findall(answer.get_data(as_text=True))
    assert len(codes) == 10
    return codes


def _actions(session) -> list[str]:
    session.expire_all()
    query = select(AuditEvent.action).order_by(AuditEvent.id)
    return list(session.scalars(query))


@pytest.fixture
def member(session, client, auth: AuthActions) -> TeamMember:
    """Signed in, on the product "acme", two-factor not on yet."""
    person = make_member(session, "ana@example.com")
    make_product(session, owner=person, slug="acme", name="Acme")
    auth.login(person.email)
    return person


@pytest.fixture
def enrolled(session, client, auth: AuthActions, member: TeamMember) -> list[str]:
    """``member`` enrolled and signed out again; their recovery codes."""
    codes = _enrol(client, session, member)
    auth.logout()
    return codes


# The service ---------------------------------------------------------------------------


def test_a_secret_is_stored_only_once_a_first_code_confirms_it(session) -> None:
    member = make_member(session)
    now = utcnow()
    secret = two_factor.start_enrolment(member, None)
    assert two_factor.start_enrolment(member, secret) == secret
    assert two_factor.start_enrolment(member, None) != secret
    assert not two_factor.is_enrolled(member) and member.totp_secret is None
    uri = two_factor.provisioning_uri(member, secret)
    assert uri.startswith("otpauth://totp/Tidings:") and f"secret={secret}" in uri
    with pytest.raises(ValidationFailed, match="not right"):
        two_factor.confirm_enrolment(session, member, secret, "000000", now=now)
    # Six digits of another script than the app's are refused, not compared.
    for typed in ("12345", "١٢٣٤٥٦", "１２３４５６", "¹²³⁴⁵⁶"):
        with pytest.raises(ValidationFailed, match="6-digit"):
            two_factor.confirm_enrolment(session, member, secret, typed, now=now)
    assert member.totp_secret is None
    code = pyotp.TOTP(secret).at(now)
    codes = two_factor.confirm_enrolment(session, member, secret, code, now=now)
    assert two_factor.is_enrolled(member) and member.totp_secret == secret
    assert len(set(codes)) == 10
    with pytest.raises(InvalidTransition):
        two_factor.start_enrolment(member, None)


def test_two_requests_with_one_code_cannot_both_have_it(app_factory, session) -> None:
    """The step is taken by a conditional UPDATE: a second session that loaded the member
    before the first took the code finds it taken."""
    member = make_member(session)
    now = utcnow() - timedelta(minutes=1)
    secret = two_factor.start_enrolment(member, None)
    two_factor.confirm_enrolment(session, member, secret, pyotp.TOTP(secret).at(now), now=now)
    session.commit()
    later = utcnow()
    code = pyotp.TOTP(secret).at(later)
    first, second = Session(session.get_bind()), Session(session.get_bind())
    try:
        racers = [racer.get(TeamMember, member.id) for racer in (first, second)]
        assert two_factor.verify(first, racers[0], code, now=later) is two_factor.Proof.APP
        first.commit()
        with pytest.raises(ValidationFailed, match="used already"):
            two_factor.verify(second, racers[1], code, now=later)
    finally:
        first.close()
        second.close()


def test_a_code_is_taken_once_and_its_neighbours_in_time_too(session) -> None:
    member = make_member(session)
    now = utcnow()
    secret = two_factor.start_enrolment(member, None)
    totp = pyotp.TOTP(secret)
    two_factor.confirm_enrolment(session, member, secret, totp.at(now), now=now)
    with pytest.raises(ValidationFailed, match="used already"):
        two_factor.verify(session, member, totp.at(now), now=now + timedelta(seconds=5))
    # The code of the step before, typed late, is older than the one taken: refused too.
    with pytest.raises(ValidationFailed, match="used already"):
        two_factor.verify(session, member, totp.at(now - timedelta(seconds=30)), now=now)
    later = now + timedelta(seconds=30)
    assert two_factor.verify(session, member, totp.at(later), now=later) is two_factor.Proof.APP
    much_later = now + timedelta(minutes=5)
    with pytest.raises(ValidationFailed, match="not right"):  # two minutes out of step
        two_factor.verify(
            session, member, totp.at(much_later - timedelta(minutes=2)), now=much_later
        )


def test_recovery_codes_work_once_in_any_case_and_are_kept_only_as_hashes(session) -> None:
    member = make_member(session)
    now = utcnow()
    secret = two_factor.start_enrolment(member, None)
    codes = two_factor.confirm_enrolment(
        session, member, secret, pyotp.TOTP(secret).at(now), now=now
    )
    session.commit()
    proof = two_factor.verify(session, member, codes[0].upper().replace("-", " "), now=now)
    assert proof is two_factor.Proof.RECOVERY_CODE
    with pytest.raises(ValidationFailed, match="used already"):
        two_factor.verify(session, member, codes[0], now=now)
    with pytest.raises(ValidationFailed, match="not one of your recovery codes"):
        two_factor.verify(session, member, "aaaa-bbbb-cccc-dddd", now=now)
    assert two_factor.recovery_codes_left(session, member) == 9
    session.commit()
    # No column of any table holds a code as it was shown.
    stored = " ".join(
        str(value)
        for table in ("recovery_code", "team_member", "audit_event")
        for row in session.execute(text(f"SELECT * FROM {table}"))  # noqa: S608
        for value in row
    )
    assert not [code for code in codes if code in stored or code.replace("-", "") in stored]
    hashes = session.scalars(select(RecoveryCode.code_hash)).all()
    assert len(hashes) == 10 and all(len(h) == 64 for h in hashes)


def test_new_recovery_codes_replace_the_old_ones(session) -> None:
    member = make_member(session)
    now = utcnow()
    secret = two_factor.start_enrolment(member, None)
    old = two_factor.confirm_enrolment(session, member, secret, pyotp.TOTP(secret).at(now), now=now)
    with pytest.raises(ValidationFailed):  # a session alone does not make new ones
        two_factor.renew_recovery_codes(session, member, "000000", now=now)
    new = two_factor.renew_recovery_codes(session, member, old[0], now=now)
    assert not set(old) & set(new)
    with pytest.raises(ValidationFailed):
        two_factor.verify(session, member, old[1], now=now)
    assert two_factor.verify(session, member, new[1], now=now) is two_factor.Proof.RECOVERY_CODE


def test_turning_off_needs_a_code_and_no_product_requiring_it(session) -> None:
    member = make_member(session)
    product = make_product(session, owner=member, name="Acme")
    now = utcnow()
    secret = two_factor.start_enrolment(member, None)
    codes = two_factor.confirm_enrolment(
        session, member, secret, pyotp.TOTP(secret).at(now), now=now
    )
    product.require_two_factor = True
    with pytest.raises(ValidationFailed, match="Acme requires two-factor sign-in"):
        two_factor.remove(session, member, codes[0], now=now)
    assert two_factor.recovery_codes_left(session, member) == 10  # nothing used
    # A new device is allowed: the old secret and codes gone, a new one to set up.
    two_factor.remove(session, member, codes[0], now=now, new_device=True)
    assert member.totp_secret is None and not two_factor.is_enrolled(member)
    assert two_factor.must_enrol(session, member)
    assert two_factor.recovery_codes_left(session, member) == 0
    product.require_two_factor = False
    secret = two_factor.start_enrolment(member, None)
    two_factor.confirm_enrolment(session, member, secret, pyotp.TOTP(secret).at(now), now=now)
    with pytest.raises(ValidationFailed, match="not right"):
        two_factor.remove(session, member, "000000", now=now + timedelta(seconds=30))
    later = now + timedelta(seconds=30)
    two_factor.remove(session, member, pyotp.TOTP(member.totp_secret).at(later), now=later)
    assert member.totp_secret is None and not two_factor.must_enrol(session, member)


# The console ---------------------------------------------------------------------------


def test_enrolment_shows_a_qr_code_and_the_key_then_the_codes_once(client, session, member) -> None:
    page = client.get(SETUP).get_data(as_text=True)
    secret = _shown_secret(client)
    assert "<svg" in page and "QR code to scan" in page
    assert " ".join(secret[at : at + 4] for at in range(0, len(secret), 4)) in page
    # A reload shows the same secret, so a code scanned from the first view confirms;
    # the database holds none until a code confirms it, and another browser of the same
    # member is shown another.
    assert _shown_secret(client) == secret
    session.refresh(member)
    assert member.totp_secret is None
    other = client.application.test_client()
    with client.session_transaction() as kept, other.session_transaction() as copied:
        copied.update({k: v for k, v in kept.items() if k != "two_factor_setting_up"})
    assert _shown_secret(other) != secret
    wrong = _post(client, SETUP, code="000000")
    assert wrong.status_code == 422 and "That code is not right" in wrong.get_data(as_text=True)
    codes = _enrol(client, session, member)
    assert len(codes) == 10
    again = client.get(SETUP).get_data(as_text=True)
    assert "10 of your ten recovery codes are left" in again
    assert not [code for code in codes if code in again]
    assert "account.two_factor_enabled" in _actions(session)


def test_signing_in_asks_for_a_code_then_goes_where_it_was_going(
    client, session, auth, member, enrolled
) -> None:
    answer = auth.login(member.email, next="/console/p/acme/notes")
    assert answer.headers["Location"] == VERIFY
    assert client.get("/console/").status_code == 302  # not signed in yet
    page = client.get(VERIFY)
    assert page.status_code == 200 and member.email in page.get_data(as_text=True)
    session.refresh(member)
    # The code confirming enrolment was this step's: it is not taken again.
    used = _post(client, VERIFY, code=_code_after_last(member))
    assert used.status_code == 422 and "used already" in used.get_data(as_text=True)
    wrong = _post(client, VERIFY, code="123 456")
    assert wrong.status_code == 422
    assert client.get("/console/").status_code == 302
    answer = _post(client, VERIFY, code=_code_after_last(member, 1))
    assert answer.status_code == 302 and answer.headers["Location"] == "/console/p/acme/notes"
    assert client.get("/console/").status_code == 200
    assert client.get(VERIFY).headers["Location"] == "/console/"


def test_a_recovery_code_signs_in_once_says_how_many_are_left_and_offers_new_ones(
    client, session, auth, member, enrolled
) -> None:
    auth.login(member.email)
    answer = _post(client, VERIFY, code=enrolled[3].upper())
    assert answer.headers["Location"] == SETUP
    page = client.get(SETUP).get_data(as_text=True)
    assert "You signed in with a recovery code, and have 9 left" in page
    assert "Make new recovery codes" in page and "Set up a new device" in page
    assert "account.two_factor_recovered" in _actions(session)
    auth.logout()
    auth.login(member.email)
    again = _post(client, VERIFY, code=enrolled[3])
    assert again.status_code == 422 and "used already" in again.get_data(as_text=True)
    # New codes, shown once; the rest of the old ones stop working.
    _post(client, VERIFY, code=enrolled[4])
    unproven = _give_up(client, "recovery-codes", "000000", prefix="codes")
    assert unproven.status_code == 422 and "not right" in unproven.get_data(as_text=True)
    renewed = _give_up(client, "recovery-codes", enrolled[6], prefix="codes")
    new = CODE.findall(renewed.get_data(as_text=True))
    assert renewed.status_code == 200 and len(new) == 10
    auth.logout()
    auth.login(member.email)
    assert _post(client, VERIFY, code=enrolled[5]).status_code == 422
    assert _post(client, VERIFY, code=new[0]).status_code == 302
    assert "account.recovery_codes_renewed" in _actions(session)


def test_a_pending_sign_in_expires_after_five_minutes(client, session, auth, member, enrolled):
    auth.login(member.email)
    with client.session_transaction() as cookie:
        cookie[PENDING_SIGN_IN] = {
            **cookie[PENDING_SIGN_IN],
            "at": cookie[PENDING_SIGN_IN]["at"] - 301,
        }
    session.refresh(member)
    answer = _post(client, VERIFY, code=_code_after_last(member, 1))
    assert answer.headers["Location"] == "/console/login"
    assert client.get("/console/").status_code == 302
    # And with no sign-in started at all.
    assert client.get(VERIFY).headers["Location"] == "/console/login"


def test_every_way_of_signing_in_stops_at_the_second_factor(
    client, session, auth, member, enrolled
) -> None:
    """A password reset signs in too: it stops at the code like a password login."""
    token = tokens.make(
        tokens.Purpose.PASSWORD_RESET,
        {"m": member.id, "h": accounts.password_fingerprint(member)},
    )
    answer = _post(client, f"/console/reset-password/{token}", password="a brand new password")
    assert answer.headers["Location"] == VERIFY
    assert client.get("/console/").status_code == 302


def test_a_new_password_stands_while_the_code_is_asked(app_factory, session) -> None:
    """What the first step changed is committed before the second is asked, by an app
    whose every request has its own database session: the new password works, and the
    reset link is spent."""
    app = app_factory()
    member = make_member(session, "reset@example.com")
    make_product(session, owner=member)
    secret = two_factor.start_enrolment(member, None)
    now = utcnow() - timedelta(minutes=1)
    two_factor.confirm_enrolment(session, member, secret, pyotp.TOTP(secret).at(now), now=now)
    session.commit()
    with app.app_context():
        token = tokens.make(
            tokens.Purpose.PASSWORD_RESET,
            {"m": member.id, "h": accounts.password_fingerprint(member)},
        )
    client = app.test_client()
    link = f"/console/reset-password/{token}"
    answer = _post(client, link, password="a brand new password")
    assert answer.headers["Location"] == VERIFY
    session.expire_all()
    assert accounts.authenticate(session, member.email, "a brand new password") is not None
    assert client.get(link).status_code == 404


def test_codes_are_rate_limited_per_member_and_per_address(app_factory, session) -> None:
    app = app_factory(RATELIMIT_ENABLED=True, RATELIMIT_TWO_FACTOR="3 per minute")
    member = make_member(session, "rate@example.com")
    make_product(session, owner=member)
    secret = two_factor.start_enrolment(member, None)
    now = utcnow()
    two_factor.confirm_enrolment(session, member, secret, pyotp.TOTP(secret).at(now), now=now)
    session.commit()
    client = app.test_client()
    AuthActions(client).login(member.email)
    answers = [_post(client, VERIFY, code="000000").status_code for _ in range(4)]
    assert answers == [422, 422, 422, 429]
    # From another address, the same member's allowance is spent too.
    other = app.test_client()
    AuthActions(other).login(member.email)
    form = {"code": "000000", "csrf_token": csrf_token(other)}
    elsewhere = other.post(VERIFY, data=form, environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert elsewhere.status_code == 429


def test_turning_off_in_the_console(client, session, auth, member) -> None:
    codes = _enrol(client, session, member)
    wrong = _give_up(client, "off", "000000")
    assert wrong.status_code == 422 and "not right" in wrong.get_data(as_text=True)
    answer = _give_up(client, "off", codes[0])
    assert answer.headers["Location"] == SETUP
    session.refresh(member)
    assert member.totp_secret is None and member.totp_enabled_at is None
    assert session.scalar(select(func.count()).select_from(RecoveryCode)) == 0
    assert "account.two_factor_removed" in _actions(session)
    auth.logout()
    assert auth.login(member.email).headers["Location"] == "/console/"


def test_turning_off_is_refused_while_a_product_requires_it(client, session, auth, member) -> None:
    codes = _enrol(client, session, member)
    member.memberships[0].product.require_two_factor = True
    session.commit()
    page = client.get(SETUP).get_data(as_text=True)
    assert "Acme requires two-factor sign-in, so it cannot be turned off" in page
    answer = _give_up(client, "off", codes[0])
    assert answer.status_code == 422 and "Acme requires two-factor sign-in" in answer.get_data(
        as_text=True
    )
    session.refresh(member)
    assert two_factor.is_enrolled(member)
    # Moving to a new device is allowed, and sends the member to confirm it at once.
    moved = _give_up(client, "new-device", codes[1])
    assert moved.headers["Location"] == SETUP
    assert client.get("/console/p/acme/notes").headers["Location"] == SETUP
    assert "account.two_factor_reset" in _actions(session)


def test_the_audit_log_shows_enrolment_recovery_and_removal_to_owners(
    client, session, auth, member
) -> None:
    codes = _enrol(client, session, member)
    auth.logout()
    auth.login(member.email)
    _post(client, VERIFY, code=codes[0])
    _give_up(client, "off", codes[1])
    page = client.get("/console/p/acme/audit").get_data(as_text=True)
    for action in (
        "account.two_factor_enabled",
        "account.two_factor_recovered",
        "account.two_factor_removed",
    ):
        assert action in page
    assert "9 left" in page


def test_owners_see_the_instance_events_among_their_products_by_time(
    client, session, auth, member
) -> None:
    earlier = utcnow() - timedelta(hours=1)
    audit.record_account(
        session, None, None, "sso.refused", "A single sign-on for nobody@example.com", now=earlier
    )
    session.commit()
    page = client.get("/console/p/acme/audit").get_data(as_text=True)
    assert "Instance-wide" in page and "sso.refused" in page
    # Newest first: the product's creation (now) before the instance event (an hour ago).
    assert page.index("product.created") < page.index("sso.refused")


def test_a_member_in_no_product_is_not_named_to_every_owner(session) -> None:
    """Instance events are shown to every owner: one about a member of no product would
    name them to people who have nothing to do with them."""
    owner = make_member(session, "owner@example.com")
    make_product(session, owner=owner)
    lonely = make_member(session, "lonely@other.example")
    secret = two_factor.start_enrolment(lonely, None)
    now = utcnow()
    two_factor.confirm_enrolment(session, lonely, secret, pyotp.TOTP(secret).at(now), now=now)
    session.commit()
    summaries = session.scalars(select(AuditEvent.summary)).all()
    assert not [summary for summary in summaries if "lonely@other.example" in summary]


def test_an_operator_turns_it_off_for_someone_who_lost_everything(session) -> None:
    member = make_member(session)
    make_product(session, owner=member)
    now = utcnow()
    secret = two_factor.start_enrolment(member, None)
    two_factor.confirm_enrolment(session, member, secret, pyotp.TOTP(secret).at(now), now=now)
    two_factor.turn_off_for(session, member, now=now)
    session.commit()
    assert not two_factor.is_enrolled(member) and member.totp_secret is None
    assert two_factor.recovery_codes_left(session, member) == 0
    assert _actions(session)[-1] == "account.two_factor_removed"
