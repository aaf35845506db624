"""Two-factor sign-in for console members, and the sign-in rules an owner sets on a product.

A member enrols by scanning a TOTP secret (RFC 6238: six digits, 30-second steps) and
confirming it with a first code; they then get ten single-use recovery codes, shown once
and kept as hashes. At sign-in, after the password or single sign-on, a code from the app
or one recovery code is asked for. A TOTP code is taken once: the step it belongs to is
kept (``TeamMember.totp_last_step``) and a code of that step or an earlier one is refused,
so a code read over someone's shoulder is worthless once used.

Recovery codes hold 80 random bits, so, as for API keys, a fast hash (SHA-256) is the
right one: a slow one guards guessable passwords, and a hash lookup finds the code without
trying each of the member's rows.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
from datetime import datetime

import pyotp
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from announcements import accounts, audit
from announcements.errors import InvalidTransition, ValidationFailed
from announcements.models import (
    Product,
    RecoveryCode,
    Role,
    SsoIdentity,
    TeamMember,
)

ISSUER = "Tidings"
STEP_SECONDS = 30
# Codes of the step before and after the current one are taken too: a phone's clock a
# little off, or a code typed as it changed, still signs in.
STEPS_AROUND = 1
RECOVERY_CODES = 10
RECOVERY_GROUPS = 4  # of four base32 characters (80 bits), typed as xxxx-xxxx-xxxx-xxxx
_BASE32 = "abcdefghijklmnopqrstuvwxyz234567"


class Proof(enum.StrEnum):
    """What a member gave as their second factor."""

    APP = "app"
    RECOVERY_CODE = "recovery_code"


def is_enrolled(member: TeamMember) -> bool:
    """Whether signing in asks this member for a second factor."""
    return member.totp_enabled_at is not None and member.totp_secret is not None


def start_enrolment(member: TeamMember, pending: str | None) -> str:
    """The secret the member is to scan: ``pending``, the one this browser was shown
    already (so a code scanned from an earlier view of the page still confirms), or a new
    one. It is stored only once a code confirms it: a secret copied by someone who once
    had the member's session is never the one the member goes on to use."""
    if is_enrolled(member):
        raise InvalidTransition("Two-factor sign-in is already on for this account.")
    return pending or pyotp.random_base32()


def provisioning_uri(member: TeamMember, secret: str) -> str:
    """The otpauth:// address an authenticator app reads from the QR code."""
    return pyotp.TOTP(secret).provisioning_uri(name=member.email, issuer_name=ISSUER)


def confirm_enrolment(
    session: Session, member: TeamMember, secret: str, code: str, *, now: datetime
) -> list[str]:
    """Turn two-factor sign-in on with ``secret`` and a first code from the app; return the
    recovery codes, which are never shown again. Raise ValidationFailed for a wrong code."""
    if is_enrolled(member):
        raise InvalidTransition("Two-factor sign-in is already on for this account.")
    _take_app_code(session, member, secret, code, now=now)
    member.totp_secret = secret
    member.totp_enabled_at = now
    codes = new_recovery_codes(session, member, now=now)
    audit.record_account(
        session,
        member,
        member,
        "account.two_factor_enabled",
        f"{member.email} turned on two-factor sign-in.",
        now=now,
    )
    return codes


def new_recovery_codes(session: Session, member: TeamMember, *, now: datetime) -> list[str]:
    """Replace the member's recovery codes with ten new ones and return them; the old
    ones, used or not, stop working."""
    session.execute(delete(RecoveryCode).where(RecoveryCode.member_id == member.id))
    codes = [_recovery_code() for _ in range(RECOVERY_CODES)]
    session.add_all(
        RecoveryCode(member_id=member.id, code_hash=_digest(code), created_at=now) for code in codes
    )
    return codes


def renew_recovery_codes(
    session: Session, member: TeamMember, code: str, *, now: datetime
) -> list[str]:
    """New recovery codes asked for by an enrolled member, proven by a current code or a
    recovery code (a session alone, perhaps someone else's, cannot mint a second factor),
    audited."""
    if not is_enrolled(member):
        raise InvalidTransition("Turn on two-factor sign-in first.")
    verify(session, member, code, now=now)
    codes = new_recovery_codes(session, member, now=now)
    audit.record_account(
        session,
        member,
        member,
        "account.recovery_codes_renewed",
        f"{member.email} made new recovery codes; the old ones stopped working.",
        now=now,
    )
    return codes


def recovery_codes_left(session: Session, member: TeamMember) -> int:
    count = session.scalar(
        select(func.count())
        .select_from(RecoveryCode)
        .where(RecoveryCode.member_id == member.id, RecoveryCode.used_at.is_(None))
    )
    return count or 0


def verify(session: Session, member: TeamMember, code: str, *, now: datetime) -> Proof:
    """Check a second factor: six digits from the app, or one unused recovery code, which
    is then used up. Raise ValidationFailed, naming the field ``code``."""
    secret = member.totp_secret
    if secret is None or not is_enrolled(member):
        raise InvalidTransition("Two-factor sign-in is not on for this account.")
    typed = "".join(code.split())
    if _digits(typed):
        _take_app_code(session, member, secret, typed, now=now)
        return Proof.APP
    _use_recovery_code(session, member, typed, now=now)
    return Proof.RECOVERY_CODE


def verify_sign_in(session: Session, member: TeamMember, code: str, *, now: datetime) -> Proof:
    """The second step of signing in: ``verify``, and a recovery code's use audited, so
    the owners see a sign-in that did without the member's device."""
    proof = verify(session, member, code, now=now)
    if proof is Proof.RECOVERY_CODE:
        audit.record_account(
            session,
            member,
            member,
            "account.two_factor_recovered",
            f"{member.email} signed in with a recovery code; "
            f"{recovery_codes_left(session, member)} left.",
            now=now,
        )
    return proof


def requiring_products(session: Session, member: TeamMember) -> list[Product]:
    """The products the member belongs to whose owners require two-factor sign-in."""
    return accounts.products_requiring(session, member, Product.require_two_factor)


def must_enrol(session: Session, member: TeamMember) -> bool:
    """Whether the member has to turn two-factor sign-in on before doing anything else."""
    return not is_enrolled(member) and bool(requiring_products(session, member))


def remove(
    session: Session, member: TeamMember, code: str, *, now: datetime, new_device: bool = False
) -> None:
    """Turn two-factor sign-in off, proven by a current code or a recovery code; refused
    while a product of the member's requires it. With ``new_device`` it is allowed even
    then: the member, still required to enrol, is sent to set up the new device before
    anything else (and before signing in next time)."""
    required = requiring_products(session, member)
    if required and not new_device:
        raise ValidationFailed(
            {
                "code": (
                    f"{', '.join(p.name for p in required)} "
                    f"{'requires' if len(required) == 1 else 'require'} two-factor sign-in, "
                    "so it stays on. To move it to a new phone, use “Set up a new device”."
                )
            }
        )
    proof = verify(session, member, code, now=now)
    _forget(session, member)
    proven = "a recovery code" if proof is Proof.RECOVERY_CODE else "a code from the app"
    if new_device:
        action, summary = "account.two_factor_reset", "is moving two-factor sign-in to a new device"
    else:
        action, summary = "account.two_factor_removed", "turned off two-factor sign-in"
    audit.record_account(
        session, member, member, action, f"{member.email} {summary} ({proven}).", now=now
    )


def turn_off_for(session: Session, member: TeamMember, *, now: datetime) -> None:
    """Turn a member's two-factor sign-in off without a code: for an operator, when the
    member lost both their device and their recovery codes. A product that requires it
    sends them to enrol again as they next sign in."""
    _forget(session, member)
    audit.record_account(
        session,
        member,
        None,
        "account.two_factor_removed",
        f"An operator turned off two-factor sign-in for {member.email}.",
        now=now,
    )


# Sign-in rules of a product ------------------------------------------------------------


def set_access_rules(
    session: Session,
    product: Product,
    *,
    require_two_factor: bool,
    require_sso: bool,
    sso_provision_role: Role | None,
    by: TeamMember,
    now: datetime,
) -> list[str]:
    """Set how the product's members must sign in; return what changed, each audited.

    An owner cannot newly require what they do not have themselves (two-factor sign-in
    turned on, an account linked at the identity provider): they would be sent away from
    their own product at once.
    """
    errors = {}
    if require_two_factor and not product.require_two_factor and not is_enrolled(by):
        errors["require_two_factor"] = (
            "Turn on two-factor sign-in for your own account first, under Your account."
        )
    if require_sso and not product.require_sso and not _has_sso_identity(session, by):
        errors["require_sso"] = (
            "Sign in with single sign-on yourself first, so that your account is linked "
            "to the identity provider."
        )
    if errors:
        raise ValidationFailed(errors)
    changes = []
    if require_two_factor != product.require_two_factor:
        product.require_two_factor = require_two_factor
        changes.append(
            "Two-factor sign-in is now required."
            if require_two_factor
            else "Two-factor sign-in is no longer required."
        )
    if require_sso != product.require_sso:
        product.require_sso = require_sso
        changes.append(
            "Single sign-on is now required; passwords are refused."
            if require_sso
            else "Single sign-on is no longer required; passwords work again."
        )
    if sso_provision_role != product.sso_provision_role:
        product.sso_provision_role = sso_provision_role
        changes.append(
            f"People new to Tidings who sign in with single sign-on join as "
            f"{sso_provision_role.value}."
            if sso_provision_role
            else "People new to Tidings who sign in with single sign-on are not added."
        )
    for change in changes:
        audit.record(session, product, by, "product.access_rules", change, now=now)
    return changes


# Inside --------------------------------------------------------------------------------


def _digits(typed: str) -> bool:
    """Whether ``typed`` is made of the ASCII digits an app shows: ``isdigit`` alone also
    takes Arabic-Indic, superscript and full-width digits, which no code is made of."""
    return typed.isascii() and typed.isdigit()


def _take_app_code(
    session: Session, member: TeamMember, secret: str, code: str, *, now: datetime
) -> None:
    """Accept a code of ``secret`` of the current step or one beside it, never of a step
    already used: the step is kept by one conditional UPDATE, so two requests racing
    with the same code cannot both have it."""
    typed = "".join(code.split())
    if not (_digits(typed) and len(typed) == 6):
        raise ValidationFailed({"code": "Enter the 6-digit code your authenticator app shows."})
    totp = pyotp.TOTP(secret)
    current = int(now.timestamp()) // STEP_SECONDS
    for step in range(current - STEPS_AROUND, current + STEPS_AROUND + 1):
        if hmac.compare_digest(totp.at(step * STEP_SECONDS), typed):
            taken = session.execute(
                update(TeamMember)
                .where(
                    TeamMember.id == member.id,
                    or_(TeamMember.totp_last_step.is_(None), TeamMember.totp_last_step < step),
                )
                .values(totp_last_step=step)
                .execution_options(synchronize_session=False)
            )
            if taken.rowcount != 1:  # type: ignore[attr-defined]
                raise ValidationFailed(
                    {"code": "That code was used already. Wait for the next one and enter it."}
                )
            set_committed_value(member, "totp_last_step", step)
            return
    raise ValidationFailed(
        {"code": "That code is not right. Check that your phone's clock is set automatically."}
    )


def _use_recovery_code(session: Session, member: TeamMember, typed: str, *, now: datetime) -> None:
    """Mark the member's unused recovery code ``typed`` used, in one statement, so two
    sign-ins racing with the same code cannot both have it."""
    used = session.execute(
        update(RecoveryCode)
        .where(
            RecoveryCode.member_id == member.id,
            RecoveryCode.code_hash == _digest(_normalized(typed)),
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if used.rowcount != 1:  # type: ignore[attr-defined]
        raise ValidationFailed(
            {"code": "That is not one of your recovery codes, or it was used already."}
        )


def _forget(session: Session, member: TeamMember) -> None:
    """Two-factor sign-in off: its secret, step and codes gone."""
    member.totp_secret = None
    member.totp_enabled_at = None
    member.totp_last_step = None
    session.execute(delete(RecoveryCode).where(RecoveryCode.member_id == member.id))


def _has_sso_identity(session: Session, member: TeamMember) -> bool:
    found = session.scalar(select(SsoIdentity.id).where(SsoIdentity.member_id == member.id))
    return found is not None


def _recovery_code() -> str:
    letters = "".join(secrets.choice(_BASE32) for _ in range(RECOVERY_GROUPS * 4))
    return "-".join(letters[at : at + 4] for at in range(0, len(letters), 4))


def _normalized(code: str) -> str:
    """A recovery code as typed, any case, with or without its dashes, as it was made."""
    letters = "".join(code.lower().replace("-", "").split())
    return "-".join(letters[at : at + 4] for at in range(0, len(letters), 4))


def _digest(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()
