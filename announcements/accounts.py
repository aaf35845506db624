"""Team members' accounts: passwords, signed-in sessions, invitations and deactivation.

Nobody ever learns someone else's password: a new teammate is invited by an e-mailed
link that lives 48 hours and works once, and chooses their own password when they
accept; an existing account must be signed in as itself to accept.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session
from werkzeug.security import check_password_hash, generate_password_hash

from announcements import audit, services
from announcements.errors import InvalidTransition, NotFound, ValidationFailed
from announcements.models import (
    ConsoleSession,
    Invitation,
    Membership,
    Product,
    Role,
    TeamMember,
)
from announcements.subscriptions import normalized_address

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024
SESSION_LIFETIME = timedelta(days=14)
INVITATION_LIFETIME = timedelta(hours=48)
# Checked against when the address is unknown, so a wrong address takes as long as
# a wrong password and the login form does not reveal who has an account.
_UNKNOWN_MEMBER_HASH = generate_password_hash("not a real password", method="scrypt")


def hash_password(password: str) -> str:
    """A salted scrypt hash of ``password``."""
    return generate_password_hash(password, method="scrypt")


def validate_password(password: str, field: str = "password") -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationFailed(
            {field: f"Use at least {MIN_PASSWORD_LENGTH} characters for the password."}
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValidationFailed({field: f"Use at most {MAX_PASSWORD_LENGTH} characters."})


def find_by_email(session: Session, email: str) -> TeamMember | None:
    return session.scalar(
        select(TeamMember).where(func.lower(TeamMember.email) == email.strip().lower())
    )


def new_member(session: Session, email: str, password: str, *, name: str = "") -> TeamMember:
    """Add a console account to the session; raise ValidationFailed for a bad address or
    password. The caller commits, with whatever else belongs to the same change."""
    email = normalized_address(email)
    if find_by_email(session, email) is not None:
        raise ValidationFailed({"email": f"{email} already has an account."})
    validate_password(password)
    member = TeamMember(email=email, name=name.strip()[:120], password_hash=hash_password(password))
    session.add(member)
    session.flush()
    return member


def create_member(session: Session, email: str, password: str, *, name: str = "") -> TeamMember:
    """Create a console account on its own."""
    member = new_member(session, email, password, name=name)
    session.commit()
    return member


def authenticate(session: Session, email: str, password: str) -> TeamMember | None:
    """The active member with this address and password, or None."""
    member = find_by_email(session, email)
    if member is None:
        check_password_hash(_UNKNOWN_MEMBER_HASH, password)
        return None
    if not check_password_hash(member.password_hash, password) or not member.is_active:
        return None
    return member


# Sessions -------------------------------------------------------------------


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def products_requiring(
    session: Session, member: TeamMember, rule: InstrumentedAttribute[bool]
) -> list[Product]:
    """The member's products whose owners set ``rule`` (``Product.require_two_factor``,
    ``Product.require_sso``), by name."""
    return list(
        session.scalars(
            select(Product)
            .join(Membership, Membership.product_id == Product.id)
            .where(Membership.member_id == member.id, rule.is_(True))
            .order_by(Product.name)
        )
    )


def start_session(session: Session, member: TeamMember, *, now: datetime) -> str:
    """Record a new signed-in browser and return the token its cookie carries."""
    token = secrets.token_urlsafe(32)
    session.execute(
        delete(ConsoleSession).where(
            ConsoleSession.member_id == member.id, ConsoleSession.expires_at <= now
        )
    )
    session.add(
        ConsoleSession(
            member_id=member.id,
            token_hash=_digest(token),
            created_at=now,
            expires_at=now + SESSION_LIFETIME,
        )
    )
    member.last_login_at = now
    return token


def session_member(session: Session, token: str, *, now: datetime) -> TeamMember | None:
    """The active member a session token belongs to, while the session lasts."""
    return session.scalar(
        select(TeamMember)
        .join(ConsoleSession, ConsoleSession.member_id == TeamMember.id)
        .where(
            ConsoleSession.token_hash == _digest(token),
            ConsoleSession.expires_at > now,
            TeamMember.is_active.is_(True),
        )
    )


def end_session(session: Session, token: str) -> None:
    session.execute(delete(ConsoleSession).where(ConsoleSession.token_hash == _digest(token)))


def session_count(session: Session, member: TeamMember, *, now: datetime) -> int:
    """How many browsers are signed in to ``member``'s account now."""
    count = session.scalar(
        select(func.count())
        .select_from(ConsoleSession)
        .where(ConsoleSession.member_id == member.id, ConsoleSession.expires_at > now)
    )
    return count or 0


def end_sessions(session: Session, member: TeamMember, *, keep: str | None = None) -> None:
    """End every session of ``member``, but the one whose token is ``keep``."""
    query = delete(ConsoleSession).where(ConsoleSession.member_id == member.id)
    if keep is not None:
        query = query.where(ConsoleSession.token_hash != _digest(keep))
    session.execute(query)


# Passwords ------------------------------------------------------------------


def set_password(
    session: Session, member: TeamMember, password: str, *, keep: str | None = None
) -> None:
    """Give ``member`` a new password and end their other sessions, which may be
    someone else's who knew the old one."""
    validate_password(password)
    member.password_hash = hash_password(password)
    end_sessions(session, member, keep=keep)


def change_password(
    session: Session, member: TeamMember, current: str, new: str, *, keep: str
) -> None:
    """A signed-in member's own change, which needs the password they have now."""
    if not check_password_hash(member.password_hash, current):
        raise ValidationFailed({"current_password": "That is not your current password."})
    validate_password(new, "new_password")
    if check_password_hash(member.password_hash, new):
        raise ValidationFailed({"new_password": "Choose a password other than the current one."})
    set_password(session, member, new, keep=keep)


def password_fingerprint(member: TeamMember) -> str:
    """Short and derived from the current hash: a reset link carries it, so the link
    stops working once the password it was made to replace is gone."""
    return hashlib.sha256(member.password_hash.encode()).hexdigest()[:16]


def member_for_reset(session: Session, member_id: object, fingerprint: object) -> TeamMember:
    """The active member a reset link was made for, while their password is unchanged."""
    member = session.get(TeamMember, member_id) if isinstance(member_id, int) else None
    if member is None or not member.is_active or password_fingerprint(member) != fingerprint:
        raise NotFound("This reset link was used already or is no longer valid.")
    return member


# Invitations ----------------------------------------------------------------


@dataclass(frozen=True)
class Invited:
    """A new or renewed invitation, and the token its e-mail carries (never stored)."""

    invitation: Invitation
    token: str


def invite(
    session: Session, product: Product, raw_email: str, role: Role, *, by: TeamMember, now: datetime
) -> Invited:
    """Invite an address to ``product`` with ``role``; inviting it again replaces the link."""
    email = normalized_address(raw_email)
    existing = find_by_email(session, email)
    if existing is not None and session.scalar(
        select(Membership.id).where(
            Membership.product_id == product.id, Membership.member_id == existing.id
        )
    ):
        raise ValidationFailed({"email": f"{email} is on the team already."})
    token = secrets.token_urlsafe(32)
    invitation = session.scalar(
        select(Invitation).where(Invitation.product_id == product.id, Invitation.email == email)
    )
    if invitation is None:
        invitation = Invitation(product_id=product.id, email=email)
        session.add(invitation)
    invitation.role = role
    invitation.token_hash = _digest(token)
    invitation.invited_by = by
    invitation.created_at = now
    invitation.expires_at = now + INVITATION_LIFETIME
    session.flush()
    audit.record(
        session, product, by, "member.invited", f"Invited {email} as {role.value}", now=now
    )
    return Invited(invitation, token)


def pending_invitations(session: Session, product: Product) -> list[Invitation]:
    return list(
        session.scalars(
            select(Invitation)
            .where(Invitation.product_id == product.id)
            .order_by(Invitation.created_at.desc())
        )
    )


def get_invitation(session: Session, product: Product, invitation_id: int) -> Invitation:
    """A pending invitation to ``product``; another product's is NotFound."""
    invitation = session.scalar(
        select(Invitation).where(
            Invitation.id == invitation_id, Invitation.product_id == product.id
        )
    )
    if invitation is None:
        raise NotFound("That invitation was accepted or withdrawn already.")
    return invitation


def withdraw_invitation(
    session: Session, product: Product, invitation: Invitation, *, by: TeamMember, now: datetime
) -> None:
    session.delete(invitation)
    audit.record(
        session,
        product,
        by,
        "member.invitation_withdrawn",
        f"Withdrew the invitation to {invitation.email}",
        now=now,
    )


def invitation_for(session: Session, token: str, *, now: datetime) -> Invitation:
    """The unexpired, unused invitation a link's token opens."""
    invitation = session.scalar(
        select(Invitation).where(
            Invitation.token_hash == _digest(token), Invitation.expires_at > now
        )
    )
    if invitation is None:
        raise NotFound(
            "This invitation has expired, was used already or was withdrawn. "
            "Ask the product's owner to invite you again."
        )
    return invitation


def accept(
    session: Session,
    invitation: Invitation,
    *,
    member: TeamMember | None = None,
    password: str = "",
    name: str = "",
    now: datetime,
) -> TeamMember:
    """Join the team the invitation names, as the signed-in ``member`` whose address it
    was sent to, or as a new account with ``password``; the link is then spent."""
    if member is None:
        member = new_member(session, invitation.email, password, name=name)
    elif member.email != invitation.email:
        raise InvalidTransition(
            f"This invitation is for {invitation.email}; you are signed in as {member.email}."
        )
    services.assign_role(
        session, invitation.product, member, invitation.role, by=invitation.invited_by, now=now
    )
    session.delete(invitation)
    return member


# Deactivation ---------------------------------------------------------------


def _other_products(session: Session, member: TeamMember, by: TeamMember) -> list[str]:
    """Products ``member`` works on that ``by`` does not own."""
    owned = select(Membership.product_id).where(
        Membership.member_id == by.id, Membership.role == Role.OWNER
    )
    return list(
        session.scalars(
            select(Product.name)
            .join(Membership, Membership.product_id == Product.id)
            .where(Membership.member_id == member.id, Membership.product_id.not_in(owned))
        )
    )


def set_active(
    session: Session,
    product: Product,
    member: TeamMember,
    active: bool,
    *,
    by: TeamMember,
    now: datetime,
) -> None:
    """Deactivate (every session ends, no sign-in) or reactivate an account. An owner may
    do it only to an account that works on no product but theirs."""
    if member.id == by.id:
        raise InvalidTransition("You cannot deactivate your own account.")
    others = _other_products(session, member, by)
    if others:
        raise InvalidTransition(
            f"{member.email} also works on {', '.join(sorted(others))}; remove them from "
            f"{product.name} instead."
        )
    member.is_active = active
    if not active:
        end_sessions(session, member)
    action = "member.reactivated" if active else "member.deactivated"
    verb = "Reactivated" if active else "Deactivated"
    audit.record(session, product, by, action, f"{verb} {member.email}", now=now)
