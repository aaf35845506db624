"""Signing in and out, one's own account, password resets and invitations."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import (
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext
from flask_login import current_user, login_required, logout_user

from announcements import accounts, sso
from announcements.errors import NotFound
from announcements.models import Invitation, TeamMember, utcnow
from app.auth import current_member, finish_sign_in, session_token, sign_out
from app.console import bp
from app.console.common import refused, role_name
from app.console.forms import (
    ChangePasswordForm,
    ConsoleLanguageForm,
    ForgotPasswordForm,
    LoginForm,
    NewPasswordForm,
)
from app.extensions import db, limiter
from app.mail import account_mail, compose, tokens
from app.mail.tokens import BadToken, Purpose


def login_limit() -> str:
    """The rate limit on every way of signing in (``RATELIMIT_LOGIN``)."""
    return str(current_app.config["RATELIMIT_LOGIN"])


def _login_email_key() -> str:
    return "login:" + request.form.get("email", "").strip().lower()


def sso_provider() -> str | None:
    """The name of the single sign-on provider the sign-in page offers, or None when no
    provider is configured."""
    if not current_app.config["OIDC_ISSUER"]:
        return None
    return str(current_app.config["OIDC_PROVIDER_NAME"])


def _sso_only(
    member: TeamMember | None, invitation: Invitation | None = None, *, here: bool = False
) -> str | None:
    """Why a password may not be used, or None if it may: a product of ``member``'s, or
    the one ``invitation`` joins, requires single sign-on; ``here``: the page shows the
    provider's button. Without a configured provider nobody could sign in at all, so the
    rule waits until an operator configures one."""
    provider = sso_provider()
    if provider is None:
        return None
    products = sso.products_requiring_sso(db.session(), member) if member else []
    if invitation is not None and invitation.product.require_sso:
        products.append(invitation.product.name)
    if not products:
        return None
    if here:
        return _(
            "Members of %(products)s sign in with %(provider)s, not a password: use "
            "“Continue with %(provider)s” above.",
            products=", ".join(products),
            provider=provider,
        )
    return _(
        "Members of %(products)s sign in with %(provider)s, not a password: use "
        "“Continue with %(provider)s” on the log-in page.",
        products=", ".join(products),
        provider=provider,
    )


def safe_next(target: str | None) -> str:
    """Only follow a ``next`` that stays on this site, inside the console, and is one line
    of plain characters (a CR or LF would split the Location header)."""
    if (
        target
        and target.startswith("/console")
        and target.isprintable()
        and "\\" not in target
        and not urlsplit(target).netloc
    ):
        return target
    return url_for("console.products")


# Session --------------------------------------------------------------------


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(login_limit, methods=["POST"])
@limiter.limit(login_limit, methods=["POST"], key_func=_login_email_key)
def login() -> ResponseReturnValue:
    """Log a team member in."""
    if current_user.is_authenticated:
        return redirect(url_for("console.products"))
    form = LoginForm(next=request.args.get("next", ""))
    if form.validate_on_submit():
        member = accounts.authenticate(
            db.session(), form.email.data or "", form.password.data or ""
        )
        if member is None:
            form.password.errors = [_("That email and password do not match an account.")]
        elif refusal := _sso_only(member, here=True):
            form.password.errors = [refusal]
        else:
            return finish_sign_in(member, next_url=safe_next(form.next.data))
    status = 200 if request.method == "GET" or not form.errors else 422
    return render_template("console/login.html", form=form, sso_provider=sso_provider()), status


@bp.post("/logout")
@login_required
def logout() -> ResponseReturnValue:
    """Log out: the session ends on the server, so a copy of the cookie is worthless."""
    sign_out()
    flash(_("You are logged out."), "info")
    return redirect(url_for("console.login"))


@bp.route("/forgot-password", methods=["GET", "POST"])
@limiter.limit(login_limit, methods=["POST"])
@limiter.limit(login_limit, methods=["POST"], key_func=_login_email_key)
def forgot_password() -> ResponseReturnValue:
    """Send a link to choose a new password; the answer is the same for any address."""
    form = ForgotPasswordForm()
    if form.validate_on_submit():
        email = (form.email.data or "").strip()
        member = accounts.find_by_email(db.session(), email)
        if member is not None and member.is_active:
            token = tokens.make(
                Purpose.PASSWORD_RESET,
                {"m": member.id, "h": accounts.password_fingerprint(member)},
            )
            account_mail.send_in_background(
                member.email,
                lazy_gettext("Choose a new Tidings password"),
                "password_reset",
                locale=member.locale,
                email=member.email,
                action_url=compose.external("console.reset_password", token=token),
            )
        flash(
            _(
                "If %(email)s has an account, a link to choose a new password is on its way. "
                "It works once, for an hour.",
                email=email,
            ),
            "info",
        )
        return redirect(url_for("console.login"))
    return render_template("console/forgot_password.html", form=form), 422 if form.errors else 200


@bp.route("/reset-password/<token>", methods=["GET", "POST"])
@limiter.limit(login_limit, methods=["POST"])
def reset_password(token: str) -> ResponseReturnValue:
    """Choose a new password from an e-mailed link; every session of the account ends."""
    try:
        payload = tokens.read(Purpose.PASSWORD_RESET, token)
        member = accounts.member_for_reset(db.session(), payload.get("m"), payload.get("h"))
    except (BadToken, NotFound) as error:
        return _link_problem(_("This reset link does not work"), error.message)
    form = NewPasswordForm()
    if refusal := _sso_only(member):
        # A password would sign no one in: say so before one is typed, and refuse it.
        if request.method == "POST":
            form.password.errors = [refusal]
        else:
            flash(refusal, "warning")
    elif form.validate_on_submit():
        with refused(form):
            accounts.set_password(db.session(), member, form.password.data or "")
            if current_user.is_authenticated:
                logout_user()
            flash(
                _("Your password is changed, and every other session of your account ended."),
                "success",
            )
            return finish_sign_in(member, next_url=url_for("console.products"))
    return render_template(
        "console/password_new.html", form=form, email=member.email, invitation=None
    ), 422 if form.errors else 200


@bp.route("/account", methods=["GET", "POST"])
@login_required
def account() -> ResponseReturnValue:
    """Choose the console's language, change one's own password, and end one's sessions
    elsewhere."""
    form = ChangePasswordForm()
    if form.validate_on_submit():
        with refused(form):
            accounts.change_password(
                db.session(),
                current_member(),
                form.current_password.data or "",
                form.new_password.data or "",
                keep=session_token(),
            )
            db.session.commit()
            flash(
                _("Your password is changed. Every other session of your account ended."),
                "success",
            )
            return redirect(url_for("console.account"))
    return render_template(
        "console/account.html",
        form=form,
        language_form=ConsoleLanguageForm(formdata=None, locale=current_member().locale or ""),
        other_sessions=accounts.session_count(db.session(), current_member(), now=utcnow()) - 1,
    ), 422 if form.errors else 200


@bp.post("/account/sessions/end-others")
@login_required
def end_other_sessions() -> ResponseReturnValue:
    """Sign out every other browser signed in to this account."""
    accounts.end_sessions(db.session(), current_member(), keep=session_token())
    db.session.commit()
    flash(_("Every other session of your account ended."), "success")
    return redirect(url_for("console.account"))


@bp.route("/invitations/<invitation_token>", methods=["GET", "POST"])
@limiter.limit(login_limit, methods=["POST"])
def invitation(invitation_token: str) -> ResponseReturnValue:
    """Accept an invitation: a new account chooses its password; an existing one must be
    signed in as itself."""
    try:
        invited = accounts.invitation_for(db.session(), invitation_token, now=utcnow())
    except NotFound as error:
        return _link_problem(_("This invitation does not work"), error.message)
    product = invited.product
    existing = accounts.find_by_email(db.session(), invited.email)
    if existing is not None:
        if not current_user.is_authenticated:
            flash(
                _(
                    "Log in as %(email)s to join %(product)s.",
                    email=invited.email,
                    product=product.name,
                ),
                "info",
            )
            return redirect(url_for("console.login", next=request.path))
        if request.method == "POST":
            with refused():
                accounts.accept(db.session(), invited, member=current_member(), now=utcnow())
                db.session.commit()
                flash(
                    _(
                        "You joined %(product)s as %(role)s.",
                        product=product.name,
                        role=role_name(invited.role),
                    ),
                    "success",
                )
                return redirect(url_for("console.product_home", slug=product.slug))
        return render_template("console/invitation.html", invitation=invited)
    form = NewPasswordForm()
    if refusal := _sso_only(None, invited):
        # The account is made by signing in through the provider with the invited
        # address (``announcements.sso`` accepts the invitation then).
        if request.method == "POST":
            form.password.errors = [refusal]
        else:
            flash(refusal, "warning")
    elif form.validate_on_submit():
        with refused(form):
            member = accounts.accept(
                db.session(),
                invited,
                password=form.password.data or "",
                name=form.name.data or "",
                now=utcnow(),
            )
            if current_user.is_authenticated:
                sign_out()
            flash(_("Welcome to %(product)s.", product=product.name), "success")
            return finish_sign_in(
                member,
                next_url=url_for("console.product_home", slug=product.slug),
            )
    return render_template(
        "console/password_new.html", form=form, email=invited.email, invitation=invited
    ), 422 if form.errors else 200


def _link_problem(title: str, message: str) -> ResponseReturnValue:
    return render_template("console/link_problem.html", title=title, message=message), 404
