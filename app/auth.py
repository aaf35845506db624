"""Who is logged in, and what their role lets them do on a product."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Flask, abort, g
from flask_login import UserMixin, current_user, login_required
from sqlalchemy import select

from announcements.models import Membership, Product, Role, TeamMember
from app.extensions import db, login_manager


class LoggedInMember(UserMixin):
    """Flask-Login's view of a team member; the session stores only the id."""

    def __init__(self, member: TeamMember) -> None:
        self.member = member
        self.id = member.id

    @property
    def is_active(self) -> bool:
        return self.member.is_active


def _load_member(member_id: str) -> LoggedInMember | None:
    if not member_id.isdigit():
        return None
    member = db.session.get(TeamMember, int(member_id))
    return LoggedInMember(member) if member is not None and member.is_active else None


def current_member() -> TeamMember:
    """The logged-in team member; only call behind login_required."""
    member: TeamMember = current_user.member
    return member


def role_required(needed: Role) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Load the product named by the ``slug`` in the URL and check the member's role on it.

    A product the member does not belong to is 404, so its existence is not revealed;
    a role below ``needed`` is 403. The view receives ``product`` instead of ``slug``.
    """

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        @login_required
        def wrapped(slug: str, **kwargs: Any) -> Any:
            row = db.session.execute(
                select(Product, Membership)
                .join(Membership, Membership.product_id == Product.id)
                .where(Product.slug == slug, Membership.member_id == current_user.id)
            ).first()
            if row is None:
                abort(404)
            product, membership = row
            if not membership.role.allows(needed):
                abort(403)
            g.product = product
            g.role = membership.role
            return view(product=product, **kwargs)

        return wrapped

    return decorator


def init_app(app: Flask) -> None:
    login_manager.init_app(app)
    login_manager.login_view = "console.login"
    login_manager.login_message = "Log in to continue."
    login_manager.login_message_category = "info"
    login_manager.session_protection = "basic"
    login_manager.user_loader(_load_member)
