"""Who works on a product: invitations, roles, deactivation, and the audit log."""

from __future__ import annotations

from flask import (
    flash,
    redirect,
    render_template,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext
from flask_wtf import FlaskForm

from announcements import (
    accounts,
    queries,
    services,
)
from announcements.models import (
    Product,
    Role,
    utcnow,
)
from app.auth import current_member, role_required
from app.console import bp
from app.console.common import ROLE_NAMES, refused, role_name
from app.console.forms import (
    MemberForm,
    RoleForm,
)
from app.converters import page_arg
from app.extensions import db
from app.mail import account_mail, compose

# Team and audit -------------------------------------------------------------


@bp.route("/p/<slug>/team", methods=["GET", "POST"])
@role_required(Role.OWNER)
def team(product: Product) -> ResponseReturnValue:
    """Who works on the product, with which role, and who is invited."""
    form = MemberForm()
    not_sent = False
    if form.validate_on_submit():
        if _invitation_sent(product, form.email.data or "", Role(form.role.data), form):
            return redirect(url_for("console.team", slug=product.slug))
        not_sent = True
    return render_template(
        "console/team.html",
        product=product,
        form=form,
        memberships=queries.team(db.session(), product),
        invitations=accounts.pending_invitations(db.session(), product),
        now=utcnow(),
        role_form=RoleForm(),
    ), 422 if form.errors or not_sent else 200


def _invitation_sent(product: Product, email: str, role: Role, form: FlaskForm | None) -> bool:
    """Invite ``email`` and mail the link; say what went wrong beside ``form``, or in a
    flash message when there is no form on the page."""
    with refused(form):
        invited = accounts.invite(
            db.session(), product, email, role, by=current_member(), now=utcnow()
        )
        try:
            account_mail.send(
                invited.invitation.email,
                lazy_gettext("Join %(product)s on Tidings", product=product.name),
                "invitation",
                product_name=product.name,
                inviter=current_member().display_name,
                # Named in the language the mail is written in.
                role=ROLE_NAMES[role],
                action_url=compose.external("console.invitation", invitation_token=invited.token),
            )
        except account_mail.NotSent as error:
            db.session.rollback()
            flash(
                _("The invitation could not be e-mailed, so none was made: %(error)s", error=error),
                "error",
            )
            return False
        db.session.commit()
        flash(
            _(
                "Invitation sent to %(email)s. The link works for 48 hours.",
                email=invited.invitation.email,
            ),
            "success",
        )
        return True
    return False


@bp.post("/p/<slug>/team/invitations/<id:invitation_id>/<any(resend, withdraw):step>")
@role_required(Role.OWNER)
def team_invitation(product: Product, invitation_id: int, step: str) -> ResponseReturnValue:
    """Send an invitation again with a fresh link, or withdraw it."""
    invited = accounts.get_invitation(db.session(), product, invitation_id)
    if step == "resend":
        _invitation_sent(product, invited.email, invited.role, None)
    else:
        accounts.withdraw_invitation(
            db.session(), product, invited, by=current_member(), now=utcnow()
        )
        db.session.commit()
        flash(_("The invitation to %(email)s is withdrawn.", email=invited.email), "success")
    return redirect(url_for("console.team", slug=product.slug))


@bp.post("/p/<slug>/team/<id:member_id>/<any(deactivate, reactivate):activity>")
@role_required(Role.OWNER)
def team_active(product: Product, member_id: int, activity: str) -> ResponseReturnValue:
    """Stop an account from signing in anywhere, ending its sessions, or let it again."""
    member = services.get_team_member(db.session(), product, member_id)
    with refused():
        accounts.set_active(
            db.session(),
            product,
            member,
            activity == "reactivate",
            by=current_member(),
            now=utcnow(),
        )
        db.session.commit()
        if activity == "reactivate":
            flash(_("%(email)s is reactivated.", email=member.email), "success")
        else:
            flash(_("%(email)s is deactivated.", email=member.email), "success")
    return redirect(url_for("console.team", slug=product.slug))


@bp.post("/p/<slug>/team/<id:member_id>/role")
@role_required(Role.OWNER)
def team_role(product: Product, member_id: int) -> ResponseReturnValue:
    """Change someone's role."""
    form = RoleForm()
    member = services.get_team_member(db.session(), product, member_id)
    if form.validate_on_submit():
        with refused():
            services.set_role(
                db.session(),
                product,
                member,
                Role(form.role.data),
                by=current_member(),
                now=utcnow(),
            )
            flash(
                _(
                    "%(email)s is now %(role)s.",
                    email=member.email,
                    role=role_name(Role(form.role.data)),
                ),
                "success",
            )
    else:
        flash(_("Choose a role from the list."), "error")
    return redirect(url_for("console.team", slug=product.slug))


@bp.post("/p/<slug>/team/<id:member_id>/remove")
@role_required(Role.OWNER)
def team_remove(product: Product, member_id: int) -> ResponseReturnValue:
    """Take someone off the product."""
    member = services.get_team_member(db.session(), product, member_id)
    with refused():
        services.remove_member(db.session(), product, member, by=current_member(), now=utcnow())
        flash(
            _(
                "%(email)s no longer has access to %(product)s.",
                email=member.email,
                product=product.name,
            ),
            "success",
        )
    return redirect(url_for("console.team", slug=product.slug))


@bp.get("/p/<slug>/audit")
@role_required(Role.OWNER)
def audit(product: Product) -> ResponseReturnValue:
    """Who changed what, newest first."""
    events, page, has_more = queries.audit_trail(db.session(), product, page=page_arg())
    return render_template(
        "console/audit.html", product=product, events=events, page=page, has_more=has_more
    )
