"""Who works on a product: invitations, roles, deactivation, how they must sign in, and the
audit log."""

from __future__ import annotations

from flask import (
    current_app,
    flash,
    redirect,
    render_template,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext
from flask_wtf import FlaskForm
from wtforms import BooleanField, SelectField
from wtforms.fields.choices import SelectChoice

from announcements import (
    accounts,
    queries,
    services,
    two_factor,
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
    ROLE_CHOICES,
    MemberForm,
    RoleForm,
)
from app.console.signin import sso_provider
from app.converters import page_arg
from app.extensions import db
from app.mail import account_mail, compose

# Team and audit -------------------------------------------------------------


class AccessRulesForm(FlaskForm):
    require_two_factor = BooleanField(
        lazy_gettext("Require two-factor sign-in"),
        description=lazy_gettext(
            "Everyone on the team enters a code from an authenticator app after their "
            "password. Whoever has not turned it on is asked to before anything else."
        ),
    )
    require_sso = BooleanField(
        lazy_gettext("Require single sign-on"),
        description=lazy_gettext(
            "Everyone on the team signs in through the identity provider; passwords, "
            "password resets and invitations with a password are refused."
        ),
    )
    sso_provision_role = SelectField(
        lazy_gettext("People new to Tidings who sign in with single sign-on"),
        choices=[SelectChoice("", lazy_gettext("Are not added to this product")), *ROLE_CHOICES],
    )

    @classmethod
    def of(cls, product: Product) -> AccessRulesForm:
        """The form showing the product's rules as they are."""
        return cls(
            formdata=None,
            require_two_factor=product.require_two_factor,
            require_sso=product.require_sso,
            sso_provision_role=product.sso_provision_role.value
            if product.sso_provision_role
            else "",
        )


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
    return _team_page(product, form=form), 422 if form.errors or not_sent else 200


@bp.post("/p/<slug>/team/access")
@role_required(Role.OWNER)
def team_access(product: Product) -> ResponseReturnValue:
    """Set how the team must sign in: two-factor, single sign-on (when the instance has
    an identity provider), and the role single sign-on gives people it creates."""
    form = AccessRulesForm()
    sso = sso_provider() is not None
    if not sso:  # neither shown nor accepted: the rules stay as they are
        del form.require_sso, form.sso_provision_role
    if form.validate_on_submit():
        require_sso, role = product.require_sso, product.sso_provision_role
        if sso:
            require_sso = form.require_sso.data
            role = Role(form.sso_provision_role.data) if form.sso_provision_role.data else None
        with refused(form):
            changes = two_factor.set_access_rules(
                db.session(),
                product,
                require_two_factor=form.require_two_factor.data,
                require_sso=require_sso,
                sso_provision_role=role,
                by=current_member(),
                now=utcnow(),
            )
            db.session.commit()
            flash(
                _("The sign-in rules are saved.") if changes else _("Nothing changed."),
                "success" if changes else "info",
            )
            return redirect(url_for("console.team", slug=product.slug, _anchor="sign-in-rules"))
    return _team_page(product, access_form=form), 422


def _team_page(
    product: Product,
    *,
    form: MemberForm | None = None,
    access_form: AccessRulesForm | None = None,
) -> str:
    return render_template(
        "console/team.html",
        product=product,
        form=form or MemberForm(formdata=None),
        memberships=queries.team(db.session(), product),
        invitations=accounts.pending_invitations(db.session(), product),
        now=utcnow(),
        role_form=RoleForm(),
        access_form=access_form or AccessRulesForm.of(product),
        sso_configured=sso_provider() is not None,
        provisioning=current_app.config["OIDC_PROVISIONING"],
        provider=sso_provider(),
    )


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
