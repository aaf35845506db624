"""Console views: parse the form, call one service, answer."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from flask import (
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required, logout_user
from flask_wtf import FlaskForm

from announcements import (
    accounts,
    apikeys,
    outbox,
    queries,
    reads,
    rendering,
    services,
    subscriptions,
    targeting,
    webhooks,
)
from announcements.audit import owned
from announcements.errors import InvalidTransition, NotFound, ValidationFailed
from announcements.models import (
    Category,
    Note,
    NoteStatus,
    Product,
    Role,
    SubscriberStatus,
    Webhook,
    WebhookEvent,
    utcnow,
)
from announcements.services import Intent, NoteInput, ProductSettings
from app import webhooks as calls
from app.auth import current_member, role_required, session_token, sign_in, sign_out
from app.console import bp, timezones
from app.console.forms import (
    CATEGORY_FILTERS,
    STATUS_FILTERS,
    ApiKeyForm,
    ChangePasswordForm,
    ForgotPasswordForm,
    LoginForm,
    MemberForm,
    NewPasswordForm,
    NoteForm,
    ProductForm,
    RoleForm,
    WebhookForm,
)
from app.converters import page_arg
from app.extensions import db, limiter
from app.mail import account_mail, compose, delivery, jobs, tokens, transport
from app.mail.tokens import BadToken, Purpose


def _login_limit() -> str:
    return str(current_app.config["RATELIMIT_LOGIN"])


def _login_email_key() -> str:
    return "login:" + request.form.get("email", "").strip().lower()


@contextlib.contextmanager
def _refusal_flashed() -> Iterator[None]:
    """Make a change whose thing may be in a state that forbids it: then undo it and say
    why on the next page, and skip the rest of the block, which reports the success."""
    try:
        yield
    except InvalidTransition as error:
        db.session.rollback()
        flash(error.message, "error")


def _show_errors(form: FlaskForm, error: ValidationFailed) -> None:
    """Put the domain's messages beside the fields they are about."""
    for name, message in error.errors.items():
        field = form._fields.get(name)
        if field is None:
            flash(message, "error")
        else:
            field.errors = [*field.errors, message]


def _safe_next(target: str | None) -> str:
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


@bp.app_context_processor
def _template_helpers() -> dict[str, Any]:
    return {
        "local_time": timezones.local,
        "zone_name": timezones.zone_name,
        "Role": Role,
    }


# Session --------------------------------------------------------------------


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
@limiter.limit(_login_limit, methods=["POST"], key_func=_login_email_key)
def login() -> ResponseReturnValue:
    """Log a team member in."""
    if current_user.is_authenticated:
        return redirect(url_for("console.products"))
    form = LoginForm(next=request.args.get("next", ""))
    if form.validate_on_submit():
        member = accounts.authenticate(db.session, form.email.data or "", form.password.data or "")
        if member is not None:
            sign_in(member)
            return redirect(_safe_next(form.next.data))
        form.password.errors = ["That email and password do not match an account."]
    status = 200 if request.method == "GET" or not form.errors else 422
    return render_template("console/login.html", form=form), status


@bp.post("/logout")
@login_required
def logout() -> ResponseReturnValue:
    """Log out: the session ends on the server, so a copy of the cookie is worthless."""
    sign_out()
    flash("You are logged out.", "info")
    return redirect(url_for("console.login"))


@bp.route("/forgot-password", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
@limiter.limit(_login_limit, methods=["POST"], key_func=_login_email_key)
def forgot_password() -> ResponseReturnValue:
    """Send a link to choose a new password; the answer is the same for any address."""
    form = ForgotPasswordForm()
    if form.validate_on_submit():
        email = (form.email.data or "").strip()
        member = accounts.find_by_email(db.session, email)
        if member is not None and member.is_active:
            token = tokens.make(
                Purpose.PASSWORD_RESET,
                {"m": member.id, "h": accounts.password_fingerprint(member)},
            )
            account_mail.send_in_background(
                member.email,
                "Choose a new Tidings password",
                "password_reset",
                email=member.email,
                action_url=compose.external("console.reset_password", token=token),
            )
        flash(
            f"If {email} has an account, a link to choose a new password is on its way. "
            "It works once, for an hour.",
            "info",
        )
        return redirect(url_for("console.login"))
    return render_template("console/forgot_password.html", form=form), 422 if form.errors else 200


@bp.route("/reset-password/<token>", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
def reset_password(token: str) -> ResponseReturnValue:
    """Choose a new password from an e-mailed link; every session of the account ends."""
    try:
        payload = tokens.read(Purpose.PASSWORD_RESET, token)
        member = accounts.member_for_reset(db.session, payload.get("m"), payload.get("h"))
    except (BadToken, NotFound) as error:
        return _link_problem("This reset link does not work", error.message)
    form = NewPasswordForm()
    if form.validate_on_submit():
        try:
            accounts.set_password(db.session, member, form.password.data or "")
        except ValidationFailed as error:
            db.session.rollback()
            _show_errors(form, error)
        else:
            if current_user.is_authenticated:
                logout_user()
            sign_in(member)
            flash(
                "Your password is changed, and every other session of your account ended.",
                "success",
            )
            return redirect(url_for("console.products"))
    return render_template(
        "console/password_new.html", form=form, email=member.email, invitation=None
    ), 422 if form.errors else 200


@bp.route("/account", methods=["GET", "POST"])
@login_required
def account() -> ResponseReturnValue:
    """Change one's own password, and end one's sessions elsewhere."""
    form = ChangePasswordForm()
    if form.validate_on_submit():
        try:
            accounts.change_password(
                db.session,
                current_member(),
                form.current_password.data or "",
                form.new_password.data or "",
                keep=session_token(),
            )
        except ValidationFailed as error:
            db.session.rollback()
            _show_errors(form, error)
        else:
            db.session.commit()
            flash("Your password is changed. Every other session of your account ended.", "success")
            return redirect(url_for("console.account"))
    return render_template(
        "console/account.html",
        form=form,
        other_sessions=accounts.session_count(db.session, current_member()) - 1,
    ), 422 if form.errors else 200


@bp.post("/account/sessions/end-others")
@login_required
def end_other_sessions() -> ResponseReturnValue:
    """Sign out every other browser signed in to this account."""
    accounts.end_sessions(db.session, current_member(), keep=session_token())
    db.session.commit()
    flash("Every other session of your account ended.", "success")
    return redirect(url_for("console.account"))


@bp.route("/invitations/<invitation_token>", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
def invitation(invitation_token: str) -> ResponseReturnValue:
    """Accept an invitation: a new account chooses its password; an existing one must be
    signed in as itself."""
    try:
        invited = accounts.invitation_for(db.session, invitation_token, now=utcnow())
    except NotFound as error:
        return _link_problem("This invitation does not work", error.message)
    product = invited.product
    existing = accounts.find_by_email(db.session, invited.email)
    if existing is not None:
        if not current_user.is_authenticated:
            flash(f"Log in as {invited.email} to join {product.name}.", "info")
            return redirect(url_for("console.login", next=request.path))
        if request.method == "POST":
            with _refusal_flashed():
                accounts.accept(db.session, invited, member=current_member(), now=utcnow())
                db.session.commit()
                flash(f"You joined {product.name} as {invited.role.value}.", "success")
                return redirect(url_for("console.product_home", slug=product.slug))
        return render_template("console/invitation.html", invitation=invited)
    form = NewPasswordForm()
    if form.validate_on_submit():
        try:
            member = accounts.accept(
                db.session,
                invited,
                password=form.password.data or "",
                name=form.name.data or "",
                now=utcnow(),
            )
        except ValidationFailed as error:
            db.session.rollback()
            _show_errors(form, error)
        else:
            if current_user.is_authenticated:
                sign_out()
            sign_in(member)
            flash(f"Welcome to {product.name}.", "success")
            return redirect(url_for("console.product_home", slug=product.slug))
    return render_template(
        "console/password_new.html", form=form, email=invited.email, invitation=invited
    ), 422 if form.errors else 200


def _link_problem(title: str, message: str) -> ResponseReturnValue:
    return render_template("console/link_problem.html", title=title, message=message), 404


# Products -------------------------------------------------------------------


@bp.get("/")
@login_required
def products() -> ResponseReturnValue:
    """The products the member belongs to."""
    rows = queries.products_of(db.session, current_member())
    now = utcnow()
    counts = {product.id: queries.note_counts(db.session, product, now=now) for product, _ in rows}
    return render_template("console/products.html", rows=rows, counts=counts)


@bp.route("/products/new", methods=["GET", "POST"])
@login_required
def product_new() -> ResponseReturnValue:
    """Create a product; its creator becomes its owner."""
    form = ProductForm()
    if form.validate_on_submit():
        try:
            product = services.create_product(
                db.session, _settings_from(form), by=current_member(), now=utcnow()
            )
        except ValidationFailed as error:
            db.session.rollback()
            _show_errors(form, error)
        else:
            flash(f"{product.name} is ready. Write its first release note.", "success")
            return redirect(url_for("console.notes", slug=product.slug))
    return render_template("console/product_new.html", form=form), 422 if form.errors else 200


def _settings_from(form: ProductForm) -> ProductSettings:
    origins = [line.strip().rstrip("/") for line in (form.allowed_origins.data or "").splitlines()]
    return ProductSettings(
        name=form.name.data or "",
        slug=(form.slug.data or "").strip().lower(),
        allowed_origins=tuple(origin for origin in origins if origin),
        require_identity=bool(form.require_identity.data),
        default_locale=(form.default_locale.data or "").strip(),
        logo_url=(form.logo_url.data or "").strip() or None,
        accent_color=(form.accent_color.data or "").strip(),
        grace_releases=form.grace_releases.data if form.grace_releases.data is not None else 1,
        noindex=bool(form.noindex.data),
        email_from_name=form.email_from_name.data,
        email_reply_to=form.email_reply_to.data,
        digest_weekday=form.digest_weekday.data or 0,
        digest_hour=form.digest_hour.data or 0,
    )


@bp.get("/p/<slug>/")
@role_required(Role.VIEWER)
def product_home(product: Product) -> ResponseReturnValue:
    """A product's start page is its notes."""
    return redirect(url_for("console.notes", slug=product.slug))


@bp.route("/p/<slug>/settings", methods=["GET", "POST"])
@role_required(Role.OWNER)
def settings(product: Product) -> ResponseReturnValue:
    """A product's settings, identity secret included."""
    form = ProductForm(obj=product)
    if request.method == "GET":
        form.allowed_origins.data = "\n".join(product.allowed_origins)
    if form.validate_on_submit():
        try:
            services.update_product(
                db.session, product, _settings_from(form), by=current_member(), now=utcnow()
            )
        except ValidationFailed as error:
            db.session.rollback()
            _show_errors(form, error)
        else:
            flash("Settings saved.", "success")
            return redirect(url_for("console.settings", slug=product.slug))
    status = 422 if form.errors else 200
    return render_template("console/settings.html", product=product, form=form), status


@bp.post("/p/<slug>/settings/rotate-secret")
@role_required(Role.OWNER)
def rotate_secret(product: Product) -> ResponseReturnValue:
    """Replace the identity secret."""
    services.rotate_identity_secret(db.session, product, by=current_member(), now=utcnow())
    flash(
        "New identity secret created. Update it on your servers: hashes made with the old "
        "one are now refused.",
        "warning",
    )
    return redirect(url_for("console.settings", slug=product.slug))


# Notes ----------------------------------------------------------------------


@bp.get("/p/<slug>/notes")
@role_required(Role.VIEWER)
def notes(product: Product) -> ResponseReturnValue:
    """The product's notes grouped by version, filtered and searched."""
    status_arg = request.args.get("status", "")
    category_arg = request.args.get("category", "")
    status = NoteStatus(status_arg) if status_arg in NoteStatus._value2member_map_ else None
    category = Category(category_arg) if category_arg in Category._value2member_map_ else None
    text = request.args.get("q", "")[:200]
    page = page_arg()
    now = utcnow()
    listing = queries.notes_by_version(
        db.session, product, now=now, status=status, category=category, text=text, page=page
    )
    return render_template(
        "console/notes.html",
        product=product,
        listing=listing,
        now=now,
        filters={"status": status_arg, "category": category_arg, "q": text},
        status_filters=STATUS_FILTERS,
        category_filters=CATEGORY_FILTERS,
        counts=queries.note_counts(db.session, product, now=now),
    )


def _note_input(form: NoteForm) -> tuple[NoteInput, Any, dict[str, str]]:
    """The editor's input, its publish time, and any times that could not be read."""
    errors: dict[str, str] = {}
    times = {}
    for name in ("publish_at", "expires_at"):
        try:
            times[name] = timezones.parse_local(getattr(form, name).data or "")
        except ValueError:
            errors[name] = "Enter a date and time, e.g. 2026-12-01 09:00."
            times[name] = None
    data = NoteInput(
        audience=_posted_audience(form),
        version=form.version.data or "",
        title=form.title.data or "",
        category=form.category.data or "",
        body_md=(form.body_md.data or "").replace("\r\n", "\n"),
        is_important=bool(form.is_important.data),
        is_internal=bool(form.is_internal.data),
        email_subscribers=bool(form.email_subscribers.data),
        expires_at=times["expires_at"],
    )
    return data, times["publish_at"], errors


AUDIENCE_FIELDS = ("attribute", "op", "value")


def _posted_conditions() -> list[dict[str, str]]:
    """The editor's audience rows, blank ones left out."""
    columns = (request.form.getlist(f"audience_{name}") for name in AUDIENCE_FIELDS)
    rows = [dict(zip(AUDIENCE_FIELDS, row, strict=True)) for row in zip(*columns, strict=False)]
    return [row for row in rows if row["attribute"].strip() or row["value"].strip()]


def _posted_audience(form: NoteForm) -> dict[str, Any] | None:
    conditions = _posted_conditions()
    return {"match": form.audience.data, "conditions": conditions} if conditions else None


def _audience_rows(note: Note | None) -> list[dict[str, str]]:
    """The condition rows to show: what was posted or saved, and two blank ones to add."""
    if request.method == "POST":
        shown = _posted_conditions()
    else:
        saved = (note.audience or {}).get("conditions", []) if note else []
        shown = [
            {**condition, "value": ", ".join(value) if isinstance(value, list) else value or ""}
            for condition in saved
            for value in [condition.get("value")]
        ]
    blank = {"attribute": "", "op": "eq", "value": ""}
    return (shown + [blank, blank])[: max(len(shown), targeting.MAX_CONDITIONS)]


def _intent(form: NoteForm) -> Intent:
    raw = form.intent.data or Intent.SAVE.value
    return Intent(raw) if raw in Intent._value2member_map_ else Intent.SAVE


def _saved_message(note: Note) -> str:
    status = note.status_at(utcnow())
    if status is NoteStatus.PUBLISHED:
        return f"“{note.title}” is live in {note.version}."
    if status is NoteStatus.SCHEDULED and note.published_at is not None:
        when = timezones.local(note.published_at)
        return f"“{note.title}” will be published on {when} ({timezones.zone_name()})."
    return f"Draft “{note.title}” saved."


def _render_editor(product: Product, form: NoteForm, note: Note | None) -> ResponseReturnValue:
    status = 422 if form.errors or request.method == "POST" else 200
    return (
        render_template(
            "console/note_edit.html",
            product=product,
            form=form,
            note=note,
            status=note.status_at(utcnow()) if note else NoteStatus.DRAFT,
            can_edit=g.role.allows(Role.EDITOR),
            audience_rows=_audience_rows(note),
            operators=targeting.OPERATORS,
            readership=queries.readership(db.session, note) if note else None,
            reactions=reads.REACTIONS,
            delivery=subscriptions.delivery(db.session, note) if note else None,
            mail_pause=outbox.pause_of(db.session, note.id) if note else None,
        ),
        status,
    )


def _save_from_editor(product: Product, form: NoteForm, note: Note | None) -> ResponseReturnValue:
    """Create or update a note from the editor's form, or show the form with its errors."""
    if form.validate_on_submit():
        data, publish_at, errors = _note_input(form)
        try:
            if errors:
                raise ValidationFailed(errors)
            intent, by, now = _intent(form), current_member(), utcnow()
            if note is None:
                note = services.create_note(
                    db.session, product, data, intent=intent, publish_at=publish_at, by=by, now=now
                )
            else:
                services.update_note(
                    db.session, note, data, intent=intent, publish_at=publish_at, by=by, now=now
                )
        except ValidationFailed as error:
            db.session.rollback()
            _show_errors(form, error)
        except InvalidTransition as error:
            db.session.rollback()
            flash(error.message, "error")
        else:
            jobs.wake()  # any mail and webhook calls the save queued go out now
            flash(_saved_message(note), "success")
            return redirect(url_for("console.note", slug=product.slug, note_id=note.id))
    return _render_editor(product, form, note)


@bp.route("/p/<slug>/notes/new", methods=["GET", "POST"])
@role_required(Role.EDITOR)
def note_new(product: Product) -> ResponseReturnValue:
    """Write a new note."""
    form = NoteForm()
    if request.method == "GET":
        form.version.data = request.args.get("version", "")
    return _save_from_editor(product, form, None)


@bp.get("/p/<slug>/notes/<id:note_id>")
@role_required(Role.VIEWER)
def note(product: Product, note_id: int) -> ResponseReturnValue:
    """One note, in the editor (read-only for viewers)."""
    found = services.get_note(db.session, product, note_id)
    form = NoteForm(obj=found)
    form.publish_at.data = timezones.to_local_input(found.published_at)
    form.expires_at.data = timezones.to_local_input(found.expires_at)
    form.audience.data = (found.audience or {}).get("match", "all")
    return _render_editor(product, form, found)


@bp.post("/p/<slug>/notes/<id:note_id>")
@role_required(Role.EDITOR)
def note_save(product: Product, note_id: int) -> ResponseReturnValue:
    """Save changes to a note, and publish, schedule or unschedule it if asked."""
    found = services.get_note(db.session, product, note_id)
    return _save_from_editor(product, NoteForm(), found)


NOTE_ACTIONS = {
    "publish": (services.publish, "Published “{title}”."),
    "archive": (services.archive, "Archived “{title}”. It no longer shows anywhere public."),
    "restore": (services.restore, "Restored “{title}”."),
}


@bp.post("/p/<slug>/notes/<id:note_id>/<any(publish, archive, restore):action>")
@role_required(Role.EDITOR)
def note_action(product: Product, note_id: int, action: str) -> ResponseReturnValue:
    """Publish, archive or restore a note."""
    found = services.get_note(db.session, product, note_id)
    service, message = NOTE_ACTIONS[action]
    with _refusal_flashed():
        service(db.session, found, by=current_member(), now=utcnow())
        jobs.wake()
        flash(message.format(title=found.title), "success")
    return redirect(url_for("console.note", slug=product.slug, note_id=found.id))


@bp.post("/p/<slug>/notes/<id:note_id>/delete")
@role_required(Role.EDITOR)
def note_delete(product: Product, note_id: int) -> ResponseReturnValue:
    """Delete a draft."""
    found = services.get_note(db.session, product, note_id)
    title = found.title
    with _refusal_flashed():
        services.delete_draft(db.session, found, by=current_member(), now=utcnow())
        flash(f"Deleted the draft “{title}”.", "success")
        return redirect(url_for("console.notes", slug=product.slug))
    return redirect(url_for("console.note", slug=product.slug, note_id=note_id))


@bp.post("/p/<slug>/preview")
@role_required(Role.EDITOR)
def preview(product: Product) -> ResponseReturnValue:
    """Render Markdown exactly as publishing will, for the editor's live preview."""
    body = request.form.get("body_md", "")
    if len(body.encode("utf-8")) > services.MAX_BODY_BYTES:
        return jsonify(error="The body is over 100 KB."), 413
    return jsonify(html=rendering.render(body))


# Team and audit -------------------------------------------------------------


@bp.route("/p/<slug>/team", methods=["GET", "POST"])
@role_required(Role.OWNER)
def team(product: Product) -> ResponseReturnValue:
    """Who works on the product, with which role, and who is invited."""
    form = MemberForm()
    refused = False
    if form.validate_on_submit():
        if _invitation_sent(product, form.email.data or "", Role(form.role.data), form):
            return redirect(url_for("console.team", slug=product.slug))
        refused = True
    return render_template(
        "console/team.html",
        product=product,
        form=form,
        memberships=queries.team(db.session, product),
        invitations=accounts.pending_invitations(db.session, product),
        now=utcnow(),
        role_form=RoleForm(),
    ), 422 if form.errors or refused else 200


def _invitation_sent(product: Product, email: str, role: Role, form: FlaskForm | None) -> bool:
    """Invite ``email`` and mail the link; say what went wrong beside ``form``, or in a
    flash message when there is no form on the page."""
    try:
        invited = accounts.invite(
            db.session, product, email, role, by=current_member(), now=utcnow()
        )
        account_mail.send(
            invited.invitation.email,
            f"Join {product.name} on Tidings",
            "invitation",
            product_name=product.name,
            inviter=current_member().display_name,
            role=role.value,
            action_url=compose.external("console.invitation", invitation_token=invited.token),
        )
    except ValidationFailed as error:
        db.session.rollback()
        if form is None:
            for message in error.errors.values():
                flash(message, "error")
        else:
            _show_errors(form, error)
        return False
    except account_mail.NotSent as error:
        db.session.rollback()
        flash(f"The invitation could not be e-mailed, so none was made: {error}", "error")
        return False
    db.session.commit()
    flash(f"Invitation sent to {invited.invitation.email}. The link works for 48 hours.", "success")
    return True


@bp.post("/p/<slug>/team/invitations/<id:invitation_id>/<any(resend, withdraw):step>")
@role_required(Role.OWNER)
def team_invitation(product: Product, invitation_id: int, step: str) -> ResponseReturnValue:
    """Send an invitation again with a fresh link, or withdraw it."""
    invited = accounts.get_invitation(db.session, product, invitation_id)
    if step == "resend":
        _invitation_sent(product, invited.email, invited.role, None)
    else:
        accounts.withdraw_invitation(
            db.session, product, invited, by=current_member(), now=utcnow()
        )
        db.session.commit()
        flash(f"The invitation to {invited.email} is withdrawn.", "success")
    return redirect(url_for("console.team", slug=product.slug))


@bp.post("/p/<slug>/team/<id:member_id>/<any(deactivate, reactivate):activity>")
@role_required(Role.OWNER)
def team_active(product: Product, member_id: int, activity: str) -> ResponseReturnValue:
    """Stop an account from signing in anywhere, ending its sessions, or let it again."""
    member = services.get_team_member(db.session, product, member_id)
    with _refusal_flashed():
        accounts.set_active(
            db.session, product, member, activity == "reactivate", by=current_member(), now=utcnow()
        )
        db.session.commit()
        flash(f"{member.email} is {activity}d.", "success")
    return redirect(url_for("console.team", slug=product.slug))


@bp.post("/p/<slug>/team/<id:member_id>/role")
@role_required(Role.OWNER)
def team_role(product: Product, member_id: int) -> ResponseReturnValue:
    """Change someone's role."""
    form = RoleForm()
    member = services.get_team_member(db.session, product, member_id)
    if form.validate_on_submit():
        with _refusal_flashed():
            services.set_role(
                db.session, product, member, Role(form.role.data), by=current_member(), now=utcnow()
            )
            flash(f"{member.email} is now {form.role.data}.", "success")
    else:
        flash("Choose a role from the list.", "error")
    return redirect(url_for("console.team", slug=product.slug))


@bp.post("/p/<slug>/team/<id:member_id>/remove")
@role_required(Role.OWNER)
def team_remove(product: Product, member_id: int) -> ResponseReturnValue:
    """Take someone off the product."""
    member = services.get_team_member(db.session, product, member_id)
    with _refusal_flashed():
        services.remove_member(db.session, product, member, by=current_member(), now=utcnow())
        flash(f"{member.email} no longer has access to {product.name}.", "success")
    return redirect(url_for("console.team", slug=product.slug))


@bp.get("/p/<slug>/audit")
@role_required(Role.OWNER)
def audit(product: Product) -> ResponseReturnValue:
    """Who changed what, newest first."""
    page = page_arg()
    events, has_more = queries.audit_trail(db.session, product, page=page)
    return render_template(
        "console/audit.html", product=product, events=events, page=page, has_more=has_more
    )


# Email ------------------------------------------------------------------------


@bp.get("/p/<slug>/notes/<id:note_id>/delivery")
@role_required(Role.VIEWER)
def note_delivery(product: Product, note_id: int) -> ResponseReturnValue:
    """How the note's emails stand, for the note page to follow while they go out, and
    why they wait when the mail server refuses us."""
    found = services.get_note(db.session, product, note_id)
    pause = outbox.pause_of(db.session, found.id)
    paused = pause and {
        "error": pause.error,
        "since": pause.since.isoformat(),
        "retry_at": pause.retry_at.isoformat(),
    }
    return jsonify({**subscriptions.delivery(db.session, found), "paused": paused})


@bp.post("/p/<slug>/notes/<id:note_id>/email")
@role_required(Role.EDITOR)
def note_email(product: Product, note_id: int) -> ResponseReturnValue:
    """Send a published note to the subscribers who want it and have not had it."""
    found = services.get_note(db.session, product, note_id)
    with _refusal_flashed():
        queued = services.email_note(db.session, found, by=current_member(), now=utcnow())
        jobs.wake()
        if queued:
            people = "subscriber" if queued == 1 else "subscribers"
            flash(f"Sending “{found.title}” to {queued:,} {people}.", "success")
        else:
            flash("Every subscriber who wants this note already has it.", "info")
    return redirect(url_for("console.note", slug=product.slug, note_id=found.id))


@bp.post("/p/<slug>/notes/<id:note_id>/test-email")
@role_required(Role.EDITOR)
def note_test_email(product: Product, note_id: int) -> ResponseReturnValue:
    """Send the note, as subscribers will get it, to the person asking; at once."""
    found = services.get_note(db.session, product, note_id)
    address = current_member().email
    sender = transport.from_config(current_app.config["SMTP_URL"], current_app.instance_path)
    try:
        delivery.send_test(found, address, sender)
    except delivery.NotSent as error:
        flash(f"The test could not be sent to {address}: {error}", "error")
    else:
        flash(f"Sent a test of “{found.title}” to {address}.", "success")
    return redirect(url_for("console.note", slug=product.slug, note_id=found.id))


@bp.get("/p/<slug>/subscribers")
@role_required(Role.VIEWER)
def subscribers(product: Product) -> ResponseReturnValue:
    """The product's email subscribers: counts by status, search, export, remove."""
    status_arg = request.args.get("status", "")
    known = SubscriberStatus._value2member_map_
    status = SubscriberStatus(status_arg) if status_arg in known else None
    text = request.args.get("q", "")[:200]
    page = page_arg()
    found, has_more = subscriptions.search(db.session, product, text=text, status=status, page=page)
    return render_template(
        "console/subscribers.html",
        product=product,
        subscribers=found,
        has_more=has_more,
        page=page,
        counts=subscriptions.status_counts(db.session, product),
        filters={"status": status_arg, "q": text},
        statuses=list(SubscriberStatus),
        can_edit=g.role.allows(Role.EDITOR),
    )


@bp.get("/p/<slug>/subscribers.csv")
@role_required(Role.EDITOR)
def subscribers_csv(product: Product) -> ResponseReturnValue:
    """Every subscriber of the product as CSV."""
    rows = subscriptions.export_csv(db.session, product, by=current_member(), now=utcnow())
    filename = f"{product.slug}-subscribers-{utcnow():%Y-%m-%d}.csv"
    return current_app.response_class(
        stream_with_context(rows),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@bp.post("/p/<slug>/subscribers/<id:subscriber_id>/remove")
@role_required(Role.EDITOR)
def subscriber_remove(product: Product, subscriber_id: int) -> ResponseReturnValue:
    """Delete a subscriber and what was queued for them."""
    removed = subscriptions.remove(
        db.session, product, subscriber_id, by=current_member(), now=utcnow()
    )
    flash(f"Removed {removed.email}. Nothing more will be sent to them.", "success")
    return redirect(url_for("console.subscribers", slug=product.slug))


# API keys and webhooks ----------------------------------------------------------


@bp.route("/p/<slug>/api-keys", methods=["GET", "POST"])
@role_required(Role.OWNER)
def api_keys(product: Product) -> ResponseReturnValue:
    """The product's API keys; a new key is shown once, on the page that created it."""
    form = ApiKeyForm()
    created = None
    if form.validate_on_submit():
        try:
            key, raw = apikeys.create(
                db.session,
                product,
                form.name.data or "",
                form.scopes.data or [],
                by=current_member(),
                now=utcnow(),
            )
        except ValidationFailed as error:
            db.session.rollback()
            _show_errors(form, error)
        else:
            created = (key, raw)
            form = ApiKeyForm(formdata=None)
    status = 422 if form.errors else 200
    return render_template(
        "console/api_keys.html",
        product=product,
        form=form,
        keys=apikeys.for_product(db.session, product),
        created=created,
    ), status


@bp.post("/p/<slug>/api-keys/<id:key_id>/revoke")
@role_required(Role.OWNER)
def api_key_revoke(product: Product, key_id: int) -> ResponseReturnValue:
    with _refusal_flashed():
        key = apikeys.revoke(db.session, product, key_id, by=current_member(), now=utcnow())
        flash(
            f"Revoked {key.prefix}… “{key.name}”. Calls with it are refused from now on.", "success"
        )
    return redirect(url_for("console.api_keys", slug=product.slug))


@bp.route("/p/<slug>/webhooks", methods=["GET", "POST"])
@role_required(Role.OWNER)
def webhooks_page(product: Product) -> ResponseReturnValue:
    """The product's webhooks and what their receivers answered lately."""
    form = WebhookForm()
    if form.validate_on_submit():
        try:
            webhooks.create(
                db.session,
                product,
                form.url.data or "",
                form.events.data or [],
                form.format.data or "",
                by=current_member(),
                now=utcnow(),
                allow_private=current_app.config["WEBHOOK_ALLOW_PRIVATE"],
            )
        except ValidationFailed as error:
            db.session.rollback()
            _show_errors(form, error)
        else:
            flash("Webhook added. Verify its calls with the signing secret shown below.", "success")
            return redirect(url_for("console.webhooks_page", slug=product.slug))
    status = 422 if form.errors else 200
    return render_template(
        "console/webhooks.html",
        product=product,
        form=form,
        hooks=webhooks.for_product(db.session, product),
        deliveries=webhooks.recent_deliveries(db.session, product),
    ), status


@bp.post("/p/<slug>/webhooks/<id:webhook_id>/<any(pause, resume):change>")
@role_required(Role.OWNER)
def webhook_toggle(product: Product, webhook_id: int, change: str) -> ResponseReturnValue:
    webhook = owned(db.session, Webhook, product, webhook_id)
    webhooks.set_active(db.session, webhook, change == "resume", by=current_member(), now=utcnow())
    flash(f"Webhook {'resumed' if change == 'resume' else 'paused'}.", "success")
    return redirect(url_for("console.webhooks_page", slug=product.slug))


@bp.post("/p/<slug>/webhooks/<id:webhook_id>/test")
@role_required(Role.OWNER)
def webhook_test(product: Product, webhook_id: int) -> ResponseReturnValue:
    """Call the webhook now, signed like any call, with the latest note; say what came back."""
    webhook = owned(db.session, Webhook, product, webhook_id)
    now = utcnow()
    note = webhooks.sample(db.session, product, now=now)
    call = calls.Call(webhook, WebhookEvent.PUBLISHED.value, None, now, note)
    status, error, took = calls.timed(call)
    if calls.succeeded(status):
        flash(f"Test call answered with HTTP {status} in {took} ms.", "success")
    else:
        flash(f"The test call failed: {error}", "error")
    return redirect(url_for("console.webhooks_page", slug=product.slug))


@bp.post("/p/<slug>/webhooks/calls/<id:delivery_id>/retry")
@role_required(Role.OWNER)
def webhook_retry(product: Product, delivery_id: int) -> ResponseReturnValue:
    """Send a failed call once more, or a waiting one now, by the worker."""
    with _refusal_flashed():
        webhooks.retry(db.session, product, delivery_id, by=current_member(), now=utcnow())
        jobs.wake()
        flash("The call goes out again in a moment; its result shows below.", "success")
    return redirect(url_for("console.webhooks_page", slug=product.slug))


@bp.post("/p/<slug>/webhooks/<id:webhook_id>/delete")
@role_required(Role.OWNER)
def webhook_delete(product: Product, webhook_id: int) -> ResponseReturnValue:
    webhook = owned(db.session, Webhook, product, webhook_id)
    webhooks.delete(db.session, webhook, by=current_member(), now=utcnow())
    flash("Webhook removed, with its delivery log.", "success")
    return redirect(url_for("console.webhooks_page", slug=product.slug))
