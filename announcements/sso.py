"""Single sign-on: which console account an identity proven by the OpenID Connect
provider belongs to, and which accounts may no longer sign in with a password.

The web layer (``app.console.sso``) checks the provider's answer (state, PKCE, the ID
token's signature, issuer, audience, expiry and nonce) and hands over an ``Identity``;
this module only decides whose it is. An identity is matched by its issuer and subject
first, so a member whose address changes at the provider is still found; else by an
address the provider says it has verified, and the identity is then linked to the
account. An unverified address is never matched: at many providers anyone can type
any address, and matching it would hand them that member's account.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from announcements import accounts, audit, services
from announcements.errors import ValidationFailed
from announcements.models import (
    Invitation,
    Product,
    SsoIdentity,
    TeamMember,
)


@dataclass(frozen=True)
class Identity:
    """Who the provider says signed in: the ID token's issuer and subject, and the
    address it gives with whether it verified it."""

    issuer: str
    subject: str
    email: str | None
    email_verified: bool
    name: str = ""


class SignInRefused(Exception):
    """A single sign-on that must not sign anyone in. ``reason`` names the check that
    refused it (for the audit log and the tests), ``message`` says it to the person,
    ``status`` is the HTTP status of the page that says so, and ``member`` is the
    account it concerns when one is known."""

    def __init__(
        self, reason: str, message: str, *, status: int = 403, member: TeamMember | None = None
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.status = status
        self.member = member


def member_for(
    session: Session, identity: Identity, *, provisioning: bool, now: datetime
) -> TeamMember:
    """The account ``identity`` signs in to: the one linked to it; else the account with
    its verified address (the identity is linked); else a new account joining the
    products that invited the address, or, with ``provisioning``, every product that
    takes members from single sign-on. Raise SignInRefused when there is none."""
    linked = session.scalar(
        select(SsoIdentity).where(
            SsoIdentity.issuer == identity.issuer, SsoIdentity.subject == identity.subject
        )
    )
    if linked is not None:
        member = session.get_one(TeamMember, linked.member_id)
        _ensure_active(member)
        linked.last_used_at = now
        return member
    if not identity.email:
        raise SignInRefused(
            "no_email",
            "Your identity provider did not give an e-mail address, so no account could be "
            "found for you. Ask its administrator to release your address to Tidings.",
        )
    if not identity.email_verified:
        raise SignInRefused(
            "unverified_email",
            f"Your identity provider has not verified {identity.email}, so it cannot sign "
            "you in to the account with that address. Verify it there, then try again.",
        )
    existing = accounts.find_by_email(session, identity.email)
    if existing is not None:
        _ensure_active(existing)
        _link(session, existing, identity, now=now)
        audit.record_account(
            session,
            existing,
            existing,
            "sso.linked",
            f"Linked {existing.email} to their account at {identity.issuer}",
            now=now,
        )
        return existing
    member = _from_invitations(session, identity.email, identity, now=now) or _provision(
        session, identity.email, identity, provisioning=provisioning, now=now
    )
    _link(session, member, identity, now=now)
    return member


def _ensure_active(member: TeamMember) -> None:
    if not member.is_active:
        raise SignInRefused(
            "deactivated",
            "This account is deactivated. Ask an owner of your product to reactivate it.",
            member=member,
        )


def _link(session: Session, member: TeamMember, identity: Identity, *, now: datetime) -> None:
    """Remember the identity, so the next sign-in finds the member by it. A member has
    one identity at an issuer: a second subject claiming the same address is refused
    rather than given the account too."""
    other = session.scalar(
        select(SsoIdentity.subject).where(
            SsoIdentity.member_id == member.id, SsoIdentity.issuer == identity.issuer
        )
    )
    if other is not None:
        raise SignInRefused(
            "linked_to_another",
            f"The account {member.email} is linked to another account at your identity "
            "provider. Sign in with that one.",
            member=member,
        )
    session.add(
        SsoIdentity(
            member_id=member.id,
            issuer=identity.issuer,
            subject=identity.subject,
            created_at=now,
            last_used_at=now,
        )
    )


def _new_account(session: Session, email: str, identity: Identity) -> TeamMember:
    """An account for ``email``, ``identity``'s verified address. Its password is random
    and known to no one; the member signs in through the provider, or chooses one by a
    reset link."""
    try:
        return accounts.new_member(session, email, secrets.token_urlsafe(32), name=identity.name)
    except ValidationFailed as error:
        raise SignInRefused("unusable_email", error.message) from error


def _from_invitations(
    session: Session, email: str, identity: Identity, *, now: datetime
) -> TeamMember | None:
    """A new account that accepts every pending invitation to the verified ``email``:
    the provider proved the address as the invitation's e-mail would have. None when no
    invitation waits for it."""
    invitations = list(
        session.scalars(
            select(Invitation)
            .where(func.lower(Invitation.email) == email.lower(), Invitation.expires_at > now)
            .order_by(Invitation.id)
        )
    )
    if not invitations:
        return None
    member = _new_account(session, email, identity)
    for invitation in invitations:
        accounts.accept(session, invitation, member=member, now=now)
    return member


def _provision(
    session: Session, email: str, identity: Identity, *, provisioning: bool, now: datetime
) -> TeamMember:
    """A new account on every product that takes members from single sign-on, each with
    the role it gives them. An account on no product could see nothing, so with no such
    product the sign-in is refused instead."""
    if not provisioning:
        raise SignInRefused(
            "no_account",
            f"There is no Tidings account for {email}. Ask an owner of your product to invite you.",
        )
    roles = [
        (product, role)
        for product in session.scalars(select(Product).order_by(Product.id))
        if (role := product.sso_provision_role) is not None
    ]
    if not roles:
        raise SignInRefused(
            "no_product",
            f"There is no Tidings account for {email}, and no product takes new members "
            "from single sign-on yet. Ask an owner of your product to invite you, or to "
            "choose a role for members who sign in this way.",
        )
    member = _new_account(session, email, identity)
    for product, role in roles:
        services.assign_role(session, product, member, role, by=None, now=now)
    audit.record_account(
        session,
        member,
        None,
        "sso.account_created",
        f"Created the account {member.email} at its first single sign-on",
        now=now,
    )
    return member


def products_requiring_sso(session: Session, member: TeamMember) -> list[str]:
    """The names of the member's products whose owners require single sign-on: while
    there is one, the member cannot sign in with a password."""
    return [
        product.name
        for product in accounts.products_requiring(session, member, Product.require_sso)
    ]


def record_refusal(session: Session, refusal: SignInRefused, *, now: datetime) -> None:
    """Write a refused sign-on to the audit log of the member's products (to the
    instance's when no account is known). The summary names the failed check and
    nothing the request carried, so a crafted callback cannot write into the log."""
    audit.record_account(
        session,
        refusal.member,
        None,
        "sso.refused",
        f"Single sign-on refused ({refusal.reason})",
        now=now,
    )
