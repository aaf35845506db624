"""Team members' accounts: creating them and checking their passwords."""

from __future__ import annotations

import re

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from announcements.errors import ValidationFailed
from announcements.models import TeamMember

MIN_PASSWORD_LENGTH = 10
EMAIL_PATTERN = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
# Checked against when the address is unknown, so a wrong address takes as long as
# a wrong password and the login form does not reveal who has an account.
_UNKNOWN_MEMBER_HASH = generate_password_hash("not a real password")


def hash_password(password: str) -> str:
    """A salted scrypt hash of ``password``."""
    return generate_password_hash(password, method="scrypt")


def validate_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationFailed(
            {"password": f"Use at least {MIN_PASSWORD_LENGTH} characters for the password."}
        )


def find_by_email(session: Session, email: str) -> TeamMember | None:
    return session.scalar(
        select(TeamMember).where(func.lower(TeamMember.email) == email.strip().lower())
    )


def create_member(session: Session, email: str, password: str, *, name: str = "") -> TeamMember:
    """Create a console account; raise ValidationFailed for a bad address or password."""
    email = email.strip().lower()
    if not EMAIL_PATTERN.fullmatch(email) or len(email) > 254:
        raise ValidationFailed({"email": f"“{email}” is not an email address."})
    if find_by_email(session, email) is not None:
        raise ValidationFailed({"email": f"{email} already has an account."})
    validate_password(password)
    member = TeamMember(email=email, name=name.strip(), password_hash=hash_password(password))
    session.add(member)
    session.commit()
    return member


def set_password(session: Session, member: TeamMember, password: str) -> None:
    validate_password(password)
    member.password_hash = hash_password(password)
    session.commit()


def authenticate(session: Session, email: str, password: str) -> TeamMember | None:
    """The active member with this address and password, or None."""
    member = find_by_email(session, email)
    if member is None:
        check_password_hash(_UNKNOWN_MEMBER_HASH, password)
        return None
    if not check_password_hash(member.password_hash, password) or not member.is_active:
        return None
    return member
