"""Writing, previewing, publishing and archiving release notes."""

from __future__ import annotations

import re
from typing import Any

from flask import (
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue

from announcements import (
    mailing_list,
    note_rules,
    outbox,
    queries,
    reads,
    rendering,
    services,
    targeting,
)
from announcements.errors import ValidationFailed
from announcements.models import (
    Category,
    Note,
    NoteStatus,
    Product,
    Role,
    utcnow,
)
from announcements.services import Intent, NoteInput
from app.auth import current_member, role_required
from app.console import bp, timezones
from app.console.common import refused
from app.console.forms import (
    CATEGORY_FILTERS,
    STATUS_FILTERS,
    NoteForm,
)
from app.converters import page_arg
from app.extensions import db
from app.mail import jobs

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
        db.session(), product, now=now, status=status, category=category, text=text, page=page
    )
    return render_template(
        "console/notes.html",
        product=product,
        listing=listing,
        now=now,
        filters={"status": status_arg, "category": category_arg, "q": text},
        status_filters=STATUS_FILTERS,
        category_filters=CATEGORY_FILTERS,
        counts=queries.note_counts(db.session(), product, now=now),
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
    numbers: dict[str, int | None] = {}
    for name, rule in (
        ("holdback_percent", note_rules.HOLDBACK_RULE),
        ("escalate_after_days", note_rules.ESCALATION_RULE),
    ):
        try:
            numbers[name] = _posted_whole(getattr(form, name).data or "")
        except ValueError:
            errors[name] = rule
            numbers[name] = None
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
        support_topics=[
            topic for topic in (form.support_topics.data or "").split(",") if topic.strip()
        ],
        holdback_percent=numbers["holdback_percent"] or 0,
        requires_acknowledgement=bool(form.requires_acknowledgement.data),
        escalate_after_days=numbers["escalate_after_days"],
    )
    return data, times["publish_at"], errors


def _posted_whole(text: str) -> int | None:
    """A whole number as typed (the hold-back share, the days before escalating), None
    when blank; ValueError when it is not one (checked as text first: int() takes "²" and
    numbers of thousands of digits badly)."""
    text = text.strip()
    if not text:
        return None
    if not WHOLE_TEXT.fullmatch(text):
        raise ValueError(text)
    return int(text)


AUDIENCE_FIELDS = ("attribute", "op", "value")
WHOLE_TEXT = re.compile(r"[0-9]{1,3}")


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
            readership=queries.readership(db.session(), note) if note else None,
            reactions=reads.REACTIONS,
            delivery=mailing_list.delivery(db.session(), note) if note else None,
            mail_pause=outbox.pause_of(db.session(), note.id) if note else None,
        ),
        status,
    )


def _save_from_editor(product: Product, form: NoteForm, note: Note | None) -> ResponseReturnValue:
    """Create or update a note from the editor's form, or show the form with its errors."""
    if form.validate_on_submit():
        data, publish_at, errors = _note_input(form)
        with refused(form):
            if errors:
                raise ValidationFailed(errors)
            intent, by, now = _intent(form), current_member(), utcnow()
            if note is None:
                note = services.create_note(
                    db.session(),
                    product,
                    data,
                    intent=intent,
                    publish_at=publish_at,
                    by=by,
                    now=now,
                )
            else:
                services.update_note(
                    db.session(), note, data, intent=intent, publish_at=publish_at, by=by, now=now
                )
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
    found = services.get_note(db.session(), product, note_id)
    form = NoteForm(obj=found)
    form.publish_at.data = timezones.to_local_input(found.published_at)
    form.expires_at.data = timezones.to_local_input(found.expires_at)
    form.audience.data = (found.audience or {}).get("match", "all")
    form.support_topics.data = ", ".join(found.support_topics)
    return _render_editor(product, form, found)


@bp.post("/p/<slug>/notes/<id:note_id>")
@role_required(Role.EDITOR)
def note_save(product: Product, note_id: int) -> ResponseReturnValue:
    """Save changes to a note, and publish, schedule or unschedule it if asked."""
    found = services.get_note(db.session(), product, note_id)
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
    found = services.get_note(db.session(), product, note_id)
    service, message = NOTE_ACTIONS[action]
    with refused():
        service(db.session(), found, by=current_member(), now=utcnow())
        jobs.wake()
        flash(message.format(title=found.title), "success")
    return redirect(url_for("console.note", slug=product.slug, note_id=found.id))


@bp.post("/p/<slug>/notes/<id:note_id>/delete")
@role_required(Role.EDITOR)
def note_delete(product: Product, note_id: int) -> ResponseReturnValue:
    """Delete a draft."""
    found = services.get_note(db.session(), product, note_id)
    title = found.title
    with refused():
        services.delete_draft(db.session(), found, by=current_member(), now=utcnow())
        flash(f"Deleted the draft “{title}”.", "success")
        return redirect(url_for("console.notes", slug=product.slug))
    return redirect(url_for("console.note", slug=product.slug, note_id=note_id))


@bp.post("/p/<slug>/preview")
@role_required(Role.EDITOR)
def preview(product: Product) -> ResponseReturnValue:
    """Render Markdown exactly as publishing will, for the editor's live preview."""
    body = request.form.get("body_md", "")
    problem = note_rules.body_problem(body)
    if problem is not None:
        return jsonify(error=problem), 413
    return jsonify(html=rendering.render(body))
