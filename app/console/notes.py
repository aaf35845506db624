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
from flask_babel import gettext as _
from flask_babel import lazy_gettext

from announcements import (
    languages,
    mailing_list,
    note_rules,
    outbox,
    queries,
    reads,
    rendering,
    services,
    targeting,
    translations,
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
    TranslationForm,
)
from app.console.products import language_labels
from app.converters import page_arg
from app.extensions import db
from app.i18n import current_locale
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
            errors[name] = _("Enter a date and time, e.g. 2026-12-01 09:00.")
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


def _audience_rows(note: Note | None, *, posted: bool) -> list[dict[str, str]]:
    """The condition rows to show: what was posted or saved, and two blank ones to add."""
    if posted:
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
        return _("“%(title)s” is live in %(version)s.", title=note.title, version=note.version)
    if status is NoteStatus.SCHEDULED and note.published_at is not None:
        return _(
            "“%(title)s” will be published on %(when)s (%(zone)s).",
            title=note.title,
            when=timezones.local(note.published_at),
            zone=timezones.zone_name(),
        )
    return _("Draft “%(title)s” saved.", title=note.title)


def _render_editor(
    product: Product,
    form: NoteForm,
    note: Note | None,
    *,
    language: str | None = None,
    translation_form: TranslationForm | None = None,
) -> ResponseReturnValue:
    """The editor: the note's own text and settings, and a tab per other language of the
    product; ``language`` is the tab shown, ``translation_form`` that tab's form as
    posted."""
    status = 422 if form.errors or request.method == "POST" else 200
    shown = language if note and language in product.languages else product.default_locale
    panels = (
        []
        if note is None
        else [
            _panel(note, tag, translation_form if tag == shown else None)
            for tag in product.languages
        ]
    )
    return (
        render_template(
            "console/note_edit.html",
            product=product,
            form=form,
            note=note,
            language=shown,
            default_language=language_labels(product.default_locale),
            panels=panels,
            untranslated=[] if note else [language_labels(tag) for tag in product.languages],
            status=note.status_at(utcnow()) if note else NoteStatus.DRAFT,
            can_edit=g.role.allows(Role.EDITOR),
            audience_rows=_audience_rows(
                note, posted=request.method == "POST" and translation_form is None
            ),
            operators=targeting.OPERATORS,
            readership=queries.readership(db.session(), note) if note else None,
            reactions=reads.REACTIONS,
            delivery=mailing_list.delivery(db.session(), note) if note else None,
            mail_pause=outbox.pause_of(db.session(), note.id) if note else None,
        ),
        status,
    )


def _panel(note: Note, tag: str, posted: TranslationForm | None) -> dict[str, Any]:
    """One language's tab: its translation's status and form (``posted``, when the tab's
    form was posted), and, when it is outdated, what the default text changed since it
    was published."""
    translation = translations.find(note, tag)
    form = posted or TranslationForm(prefix=tag, formdata=None, obj=translation)
    return {
        **language_labels(tag),
        "fallback": language_labels(translations.fallback(note, tag))["name"],
        "status": translations.status(note, translation),
        "translation": translation,
        "form": form,
        "changes": translations.changes_since(translation, note) if translation else [],
    }


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


def _note_form(note: Note) -> NoteForm:
    """The editor's form as the note is saved."""
    form = NoteForm(obj=note, formdata=None)
    form.publish_at.data = timezones.to_local_input(note.published_at)
    form.expires_at.data = timezones.to_local_input(note.expires_at)
    form.audience.data = (note.audience or {}).get("match", "all")
    form.support_topics.data = ", ".join(note.support_topics)
    return form


@bp.get("/p/<slug>/notes/<id:note_id>")
@role_required(Role.VIEWER)
def note(product: Product, note_id: int) -> ResponseReturnValue:
    """One note, in the editor (read-only for viewers), open at the tab of
    ``?language=``."""
    found = services.get_note(db.session(), product, note_id)
    return _render_editor(product, _note_form(found), found, language=request.args.get("language"))


@bp.post("/p/<slug>/notes/<id:note_id>")
@role_required(Role.EDITOR)
def note_save(product: Product, note_id: int) -> ResponseReturnValue:
    """Save changes to a note, and publish, schedule or unschedule it if asked."""
    found = services.get_note(db.session(), product, note_id)
    return _save_from_editor(product, NoteForm(), found)


NOTE_ACTIONS = {
    "publish": (services.publish, lazy_gettext("Published “%(title)s”.")),
    "archive": (
        services.archive,
        lazy_gettext("Archived “%(title)s”. It no longer shows anywhere public."),
    ),
    "restore": (services.restore, lazy_gettext("Restored “%(title)s”.")),
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
        flash(message % {"title": found.title}, "success")
    return redirect(url_for("console.note", slug=product.slug, note_id=found.id))


@bp.post("/p/<slug>/notes/<id:note_id>/delete")
@role_required(Role.EDITOR)
def note_delete(product: Product, note_id: int) -> ResponseReturnValue:
    """Delete a draft."""
    found = services.get_note(db.session(), product, note_id)
    title = found.title
    with refused():
        services.delete_draft(db.session(), found, by=current_member(), now=utcnow())
        flash(_("Deleted the draft “%(title)s”.", title=title), "success")
        return redirect(url_for("console.notes", slug=product.slug))
    return redirect(url_for("console.note", slug=product.slug, note_id=note_id))


# Translations ---------------------------------------------------------------


@bp.post("/p/<slug>/notes/<id:note_id>/translations/<locale>")
@role_required(Role.EDITOR)
def translation_save(product: Product, note_id: int, locale: str) -> ResponseReturnValue:
    """Save a note's translation as a draft, or publish it (and announce it if asked)."""
    found = services.get_note(db.session(), product, note_id)
    tag = _translatable(product, locale)
    if tag is None:
        return _render_editor(product, _note_form(found), found)
    # The tab's form: its fields carry the language as their prefix.
    form = TranslationForm(prefix=tag)
    if form.validate_on_submit():
        was = translations.status(found, translations.find(found, tag))
        publish = form.intent.data == "publish"
        with refused(form):
            translations.save(
                db.session(),
                found,
                tag,
                title=form.title.data or "",
                body_md=(form.body_md.data or "").replace("\r\n", "\n"),
                publish=publish,
                announce=bool(form.announce.data),
                by=current_member(),
                now=utcnow(),
            )
            db.session.commit()
            jobs.wake()  # the announcement's mail goes out now
            flash(_translation_saved(tag, was, publish, bool(form.announce.data)), "success")
            return redirect(_note_url(product, found, tag))
    return _render_editor(product, _note_form(found), found, language=tag, translation_form=form)


def _translatable(product: Product, locale: str) -> str | None:
    """``locale`` as the translations service writes it (``FR`` is ``fr``), if a note of
    the product can be translated into it; else None, having said why."""
    with refused():
        return translations.check_locale(product, locale)
    return None


def _translation_saved(locale: str, was: str, publish: bool, announce: bool) -> str:
    language = languages.display_name(locale, current_locale())
    if publish and announce:
        return _(
            "Translation into %(language)s published, and e-mailed to the subscribers who "
            "read it and have not read the note.",
            language=language,
        )
    if publish:
        return _(
            "Translation into %(language)s published. Readers of it see it from now on; "
            "nobody was told.",
            language=language,
        )
    if was in ("published", "outdated"):
        return _(
            "Translation into %(language)s moved back to draft: its readers see the next "
            "language of their chain until it is published again.",
            language=language,
        )
    return _(
        "Translation into %(language)s saved as a draft. Readers see it once it is published.",
        language=language,
    )


@bp.post("/p/<slug>/notes/<id:note_id>/translations/<locale>/delete")
@role_required(Role.EDITOR)
def translation_delete(product: Product, note_id: int, locale: str) -> ResponseReturnValue:
    """Delete a note's translation; its readers see the next language of their chain."""
    found = services.get_note(db.session(), product, note_id)
    tag = _translatable(product, locale)
    if tag is None:
        return redirect(_note_url(product, found, locale))
    translation = translations.find(found, tag)
    language = languages.display_name(tag, current_locale())
    if translation is None:
        flash(_("There is no translation into %(language)s to delete.", language=language), "error")
    else:
        translations.delete(db.session(), translation, by=current_member(), now=utcnow())
        db.session.commit()
        flash(_("Deleted the translation into %(language)s.", language=language), "success")
    return redirect(_note_url(product, found, tag))


def _note_url(product: Product, note: Note, language: str) -> str:
    """The editor, open at ``language``'s tab (the default's when the product lacks it)."""
    shown = language if language in product.languages else None
    return url_for("console.note", slug=product.slug, note_id=note.id, language=shown)


@bp.post("/p/<slug>/preview")
@role_required(Role.EDITOR)
def preview(product: Product) -> ResponseReturnValue:
    """Render Markdown exactly as publishing will, for the editor's live preview."""
    body = request.form.get("body_md", "")
    problem = note_rules.body_problem(body)
    if problem is not None:
        return jsonify(error=problem), 413
    return jsonify(html=rendering.render(body))
