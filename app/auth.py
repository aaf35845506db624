"""Who is logged in, and what their role lets them do on a product."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import wraps
from typing import Any

from flask import Flask, abort, g, redirect, session, url_for
from flask_login import UserMixin, current_user, login_required, login_user, logout_user
from sqlalchemy import select
from werkzeug.wrappers import Response

from announcements import accounts, two_factor
from announcements.models import Membership, Product, Role, TeamMember, utcnow
from app.extensions import db, login_manager


class LoggedInMember(UserMixin):
    """Flask-Login's view of a team member. The session cookie stores only the token of
    a server-side session (see ``accounts.start_session``), never the member's id, so a
    session can be ended for good: logging out deletes it."""

    def __init__(self, member: TeamMember, token: str) -> None:
        self.member = member
        self.id = member.id
        self.token = token

    def get_id(self) -> str:
        return self.token

    @property
    def is_active(self) -> bool:
        return self.member.is_active


def _load_member(token: str) -> LoggedInMember | None:
    member = accounts.session_member(db.session(), token, now=utcnow())
    return LoggedInMember(member, token) if member is not None else None


def current_member() -> TeamMember:
    """The logged-in team member; only call behind login_required."""
    member: TeamMember = current_user.member
    return member


def sign_in(member: TeamMember) -> None:
    """Start a server-side session for ``member`` and put its token in the cookie."""
    token = accounts.start_session(db.session(), member, now=utcnow())
    db.session.commit()
    login_user(LoggedInMember(member, token))


# A first factor proven, the second not yet: kept in the signed session cookie, which
# says nothing secret (a member's id, where they were going), for long enough to open
# an app and type a code, so a password typed on a shared computer and left there does
# not wait for whoever comes next.
PENDING_SIGN_IN = "two_factor_pending"
PENDING_LIFETIME = timedelta(minutes=5)


def finish_sign_in(member: TeamMember, *, next_url: str) -> Response:
    """Where every way of proving who one is ends (a password, a reset link, an
    invitation, single sign-on): the member is signed in and sent on to ``next_url``, or,
    when they have two-factor sign-in, asked for their code first (see
    ``pending_sign_in``). What the first step changed (a new password, an identity
    linked) is committed here either way: it stands whether or not the second follows."""
    db.session.commit()
    if two_factor.is_enrolled(member):
        session[PENDING_SIGN_IN] = {
            "member": member.id,
            "next": next_url,
            "at": utcnow().timestamp(),
        }
        return redirect(url_for("console.two_factor_verify"))
    sign_in(member)
    return redirect(next_url)


@dataclass(frozen=True)
class PendingSignIn:
    """A sign-in waiting for its second factor: whose, and where it was going."""

    member: TeamMember
    next_url: str


def pending_member_id() -> int | None:
    """The id of the member whose sign-in waits in this browser for a second factor, as
    the cookie says, whether or not it is still good."""
    kept: Any = session.get(PENDING_SIGN_IN)
    member = kept.get("member") if isinstance(kept, dict) else None
    return member if isinstance(member, int) else None


def pending_sign_in(now: datetime) -> PendingSignIn | None:
    """The sign-in this browser started that waits for a second factor, while it lasts
    and its member may still sign in with one; None (and forgotten) otherwise."""
    kept: Any = session.get(PENDING_SIGN_IN)
    try:
        started = datetime.fromtimestamp(float(kept["at"]), UTC)
        member = db.session.get(TeamMember, int(kept["member"]))
        next_url = str(kept["next"])
    except (TypeError, KeyError, ValueError):
        member = None
    if (
        member is None
        or not member.is_active
        or not two_factor.is_enrolled(member)
        or now - started > PENDING_LIFETIME
    ):
        session.pop(PENDING_SIGN_IN, None)
        return None
    return PendingSignIn(member, next_url)


def forget_pending_sign_in() -> None:
    """The sign-in is done, or given up: the cookie waits for no code any more."""
    session.pop(PENDING_SIGN_IN, None)


def sign_out() -> None:
    """End this browser's session on the server as well as in its cookie."""
    accounts.end_session(db.session(), current_user.token)
    db.session.commit()
    logout_user()


def session_token() -> str:
    """The token of the signed-in browser's session; only call behind login_required."""
    token: str = current_user.token
    return token


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
