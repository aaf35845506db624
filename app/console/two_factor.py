"""Two-factor sign-in: enrolment, the second step of signing in, recovery, and sending a
member whose product requires it to enrol before anything else."""

from __future__ import annotations

import segno
from flask import current_app, flash, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext, ngettext
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from markupsafe import Markup
from wtforms import StringField
from wtforms.validators import InputRequired

from announcements import accounts, two_factor
from announcements.models import TeamMember, utcnow
from app.auth import (
    current_member,
    forget_pending_sign_in,
    pending_member_id,
    pending_sign_in,
    session_token,
    sign_in,
)
from app.console import bp
from app.console.common import refused
from app.extensions import db, limiter

# Where the secret being set up waits for the code that confirms it: this browser's
# session, so one copied from another session is never the one the member confirms.
SETTING_UP = "two_factor_setting_up"
# The enrolled member's forms, told apart by their fields' prefixes.
RENEW, NEW_DEVICE, OFF = "codes", "new-device", "off"

# The pages a member who must enrol may still open: enrolment itself, and the way out.
# (Static files are served outside the console blueprint, so its hook never sees them.)
OPEN_BEFORE_ENROLMENT = {"console.two_factor", "console.logout"}


class CodeForm(FlaskForm):
    code = StringField(
        lazy_gettext("Code"),
        validators=[InputRequired(lazy_gettext("Enter the code."))],
    )


@bp.before_request
def _enrolment_first() -> ResponseReturnValue | None:
    """A member of a product that requires two-factor sign-in, and who has not turned it
    on, is sent to turn it on from every console page until they do."""
    if (
        request.endpoint in OPEN_BEFORE_ENROLMENT
        or not current_user.is_authenticated
        or not two_factor.must_enrol(db.session(), current_member())
    ):
        return None
    return redirect(url_for("console.two_factor"))


def _limit() -> str:
    return str(current_app.config["RATELIMIT_TWO_FACTOR"])


def _member_key() -> str:
    """Counts the codes tried for one member, wherever they come from: the member waiting
    at the second step of signing in, or the one signed in who turns it off."""
    pending = pending_member_id()
    if pending is not None:
        return f"two-factor:{pending}"
    if current_user.is_authenticated:
        return f"two-factor:{current_user.id}"
    return f"two-factor:{request.remote_addr}"


def _qr_code(uri: str) -> Markup:
    """The otpauth address as an inline SVG QR code an authenticator app scans."""
    svg = segno.make(uri, error="m").svg_inline(
        scale=5,
        border=2,  # the frame around it adds to the quiet zone
        title=_("QR code to scan with your authenticator app"),
        svgclass="qr-code",
    )
    return Markup(svg)  # noqa: S704 - segno's own SVG; the title is ours, escaped by it


def _grouped(secret: str) -> str:
    """The secret in groups of four, easier to copy by hand; apps ignore the spaces."""
    return " ".join(secret[at : at + 4] for at in range(0, len(secret), 4))


# One's own account --------------------------------------------------------------


@bp.route("/account/two-factor", methods=["GET", "POST"], endpoint="two_factor")
@login_required
def two_factor_page() -> ResponseReturnValue:
    """Turn two-factor sign-in on (scan, confirm with a first code, keep the recovery
    codes), or, once on, manage it. The secret being set up is kept in this browser's
    session until a code confirms it, never in the database before."""
    member = current_member()
    if two_factor.is_enrolled(member):
        if request.method == "POST":
            flash(_("Two-factor sign-in is already on."), "info")
            return redirect(url_for("console.two_factor"))
        return _manage_page(member)
    form = CodeForm()
    kept = session.get(SETTING_UP)
    pending = kept["secret"] if isinstance(kept, dict) and kept.get("member") == member.id else None
    secret = two_factor.start_enrolment(member, pending)
    session[SETTING_UP] = {"member": member.id, "secret": secret}
    if form.validate_on_submit():
        with refused(form):
            codes = two_factor.confirm_enrolment(
                db.session(), member, secret, form.code.data or "", now=utcnow()
            )
            # A browser signed in before, perhaps with a leaked password, would otherwise
            # go on without ever giving a code.
            accounts.end_sessions(db.session(), member, keep=session_token())
            db.session.commit()
            session.pop(SETTING_UP, None)
            flash(
                _("Every other session of your account ended."),
                "success",
            )
            return _recovery_codes_page(codes, first=True)
    return render_template(
        "console/two_factor_setup.html",
        form=form,
        qr_code=_qr_code(two_factor.provisioning_uri(member, secret)),
        secret=_grouped(secret),
        requiring=two_factor.requiring_products(db.session(), member),
    ), 422 if form.errors else 200


@bp.post("/account/two-factor/recovery-codes")
@login_required
@limiter.limit(_limit)
@limiter.limit(_limit, key_func=_member_key)
def two_factor_recovery_codes() -> ResponseReturnValue:
    """Replace one's recovery codes with ten new ones, shown once, proven by a code from
    the app or a recovery code."""
    member = current_member()
    if not two_factor.is_enrolled(member):
        flash(_("Two-factor sign-in is not on."), "info")
        return redirect(url_for("console.two_factor"))
    form = CodeForm(prefix=RENEW)
    if form.validate_on_submit():
        with refused(form):
            codes = two_factor.renew_recovery_codes(
                db.session(), member, form.code.data or "", now=utcnow()
            )
            db.session.commit()
            return _recovery_codes_page(codes, first=False)
    return _manage_page(member, {RENEW: form}), 422


@bp.post("/account/two-factor/off")
@login_required
@limiter.limit(_limit)
@limiter.limit(_limit, key_func=_member_key)
def two_factor_off() -> ResponseReturnValue:
    """Turn two-factor sign-in off, proven by a code from the app or a recovery code."""
    return _given_up(prefix=OFF)


@bp.post("/account/two-factor/new-device")
@login_required
@limiter.limit(_limit)
@limiter.limit(_limit, key_func=_member_key)
def two_factor_new_device() -> ResponseReturnValue:
    """Start again with a new device (the old one lost or replaced), proven by a code from
    the app or a recovery code."""
    return _given_up(prefix=NEW_DEVICE)


def _given_up(*, prefix: str) -> ResponseReturnValue:
    member = current_member()
    if not two_factor.is_enrolled(member):
        flash(_("Two-factor sign-in is not on."), "info")
        return redirect(url_for("console.two_factor"))
    form = CodeForm(prefix=prefix)
    new_device = prefix == NEW_DEVICE
    if form.validate_on_submit():
        with refused(form):
            two_factor.remove(
                db.session(), member, form.code.data or "", now=utcnow(), new_device=new_device
            )
            db.session.commit()
            if new_device:
                flash(
                    _("Scan the new code with your new device, then enter the code it shows."),
                    "info",
                )
            else:
                flash(_("Two-factor sign-in is off."), "success")
            return redirect(url_for("console.two_factor"))
    return _manage_page(member, {prefix: form}), 422


def _manage_page(member: TeamMember, refused_form: dict[str, CodeForm] | None = None) -> str:
    """The page of an enrolled member: its three forms, each by its prefix, the one just
    refused (``{prefix: form}``) with what was typed and why."""
    forms = {prefix: CodeForm(prefix=prefix, formdata=None) for prefix in (RENEW, NEW_DEVICE, OFF)}
    forms.update(refused_form or {})
    return render_template(
        "console/two_factor_manage.html",
        renew_form=forms[RENEW],
        new_device_form=forms[NEW_DEVICE],
        off_form=forms[OFF],
        codes_left=two_factor.recovery_codes_left(db.session(), member),
        requiring=two_factor.requiring_products(db.session(), member),
    )


def _recovery_codes_page(codes: list[str], *, first: bool) -> str:
    """The recovery codes, in this answer only: they are kept as hashes, and no page can
    show them again."""
    return render_template(
        "console/two_factor_codes.html", codes=codes, first=first, as_text="\n".join(codes)
    )


# The second step of signing in ------------------------------------------------------


@bp.route("/login/two-factor", methods=["GET", "POST"])
@limiter.limit(_limit, methods=["POST"])
@limiter.limit(_limit, methods=["POST"], key_func=_member_key)
def two_factor_verify() -> ResponseReturnValue:
    """Ask the member who proved their password (or single sign-on) for a code from their
    app or a recovery code, then sign them in."""
    if current_user.is_authenticated:
        return redirect(url_for("console.products"))
    now = utcnow()
    pending = pending_sign_in(now)
    if pending is None:
        flash(_("That sign-in expired, or was never started. Enter your password again."), "info")
        return redirect(url_for("console.login"))
    form = CodeForm()
    if form.validate_on_submit():
        with refused(form):
            proof = two_factor.verify_sign_in(
                db.session(), pending.member, form.code.data or "", now=now
            )
            forget_pending_sign_in()
            sign_in(pending.member)  # commits the step or the code used with the session
            if proof is two_factor.Proof.APP:
                return redirect(pending.next_url)
            left = two_factor.recovery_codes_left(db.session(), pending.member)
            flash(
                ngettext(
                    "You signed in with a recovery code, and have %(num)d left. If your "
                    "phone is lost, set up a new device; make new codes when few are left.",
                    "You signed in with a recovery code, and have %(num)d left. If your "
                    "phone is lost, set up a new device; make new codes when few are left.",
                    left,
                ),
                "warning",
            )
            return redirect(url_for("console.two_factor"))
    return render_template(
        "console/two_factor_verify.html", form=form, email=pending.member.email
    ), 422 if form.errors else 200
