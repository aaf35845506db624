"""The management API under /api/v1/products/<slug>/: notes and their translations,
versions, subscribers and changelog imports, for pipelines and scripts holding a scoped
API key.

Each route is declared once with :func:`operations.operation`, which registers the view,
checks the key and its scope, validates the request with the pydantic model it names,
and records the operation for the OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from flask import current_app, request
from flask.typing import ResponseReturnValue
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from announcements import importing, services, tickets, translations, versions
from announcements.errors import NotFound, ValidationFailed
from announcements.models import (
    ApiScope,
    Note,
    NoteStatus,
    NoteTranslation,
    Product,
    Subscriber,
    SubscriberStatus,
    Ticket,
    status_clause,
    utcnow,
)
from announcements.note_rules import NoteInput
from announcements.serialisation import note_url
from announcements.services import Intent
from app.api import operations, schemas
from app.database import write_turn
from app.extensions import db
from app.mail import jobs

# Notes --------------------------------------------------------------------


def _note(note: Note, now: datetime) -> schemas.Note:
    status = note.status_at(now)
    public = status is NoteStatus.PUBLISHED and not note.is_internal
    return schemas.Note(
        id=note.id,
        version=note.version,
        title=note.title,
        category=note.category,
        body_md=note.body_md,
        html=note.body_html,
        important=note.is_important,
        internal=note.is_internal,
        audience=note.audience,
        email_subscribers=note.email_subscribers,
        support_topics=note.support_topics,
        holdback_percent=note.holdback_percent,
        requires_acknowledgement=note.requires_acknowledgement,
        escalate_after_days=note.escalate_after_days,
        status=status.value,
        published_at=note.published_at,
        expires_at=note.expires_at,
        created_at=note.created_at,
        updated_at=note.updated_at,
        url=(
            note_url(current_app.config["BASE_URL"], note.product.slug, note.version, note.id)
            if public
            else None
        ),
    )


# The API's names for a note's fields, and the domain's.
NOTE_FIELDS = {
    "version": "version",
    "title": "title",
    "category": "category",
    "body_md": "body_md",
    "important": "is_important",
    "internal": "is_internal",
    "expires_at": "expires_at",
    "audience": "audience",
    "email_subscribers": "email_subscribers",
    "support_topics": "support_topics",
    "holdback_percent": "holdback_percent",
    "requires_acknowledgement": "requires_acknowledgement",
    "escalate_after_days": "escalate_after_days",
}
# Fields a PATCH may leave out but not clear.
NOT_NULL = (
    "version",
    "title",
    "category",
    "body_md",
    "important",
    "internal",
    "support_topics",
    "holdback_percent",
    "requires_acknowledgement",
)


def _domain_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """API fields by the domain's names, for the note the domain validates (the audience
    rule as a plain dict; whether a value such as "2.x" can be ordered is the domain's to
    say)."""
    return {NOTE_FIELDS[name]: value for name, value in fields.items() if name in NOTE_FIELDS}


def _intent(publish: bool, publish_at: datetime | None, *, keep: Intent) -> Intent:
    if publish and publish_at is not None:
        raise ValidationFailed({"publish_at": "Send publish or publish_at, not both."})
    if publish:
        return Intent.PUBLISH
    return Intent.SCHEDULE if publish_at is not None else keep


@operations.operation(
    "GET",
    "/notes",
    summary="List notes, newest first",
    scope=ApiScope.NOTES_READ,
    query=schemas.NoteQuery,
    answer=schemas.NoteList,
    errors=(422,),
)
def list_notes(product: Product, query: schemas.NoteQuery) -> ResponseReturnValue:
    now = utcnow()
    statement = select(Note).where(Note.product_id == product.id)
    if query.status is not None:
        statement = statement.where(status_clause(NoteStatus(query.status), now))
    if query.version is not None:
        statement = statement.where(Note.version == query.version.strip())
    if query.category is not None:
        statement = statement.where(Note.category == query.category)
    notes, next_cursor = operations.page(statement, Note.id, query.cursor, query.limit)
    return operations.answer(
        schemas.NoteList(notes=[_note(note, now) for note in notes], next_cursor=next_cursor)
    )


@operations.operation(
    "POST",
    "/notes",
    summary="Write a note: a draft, published now, or scheduled",
    scope=ApiScope.NOTES_WRITE,
    body=schemas.NoteCreate,
    answer=schemas.Note,
    status=201,
    errors=(400, 409, 422),
)
def create_note(product: Product, body: schemas.NoteCreate) -> ResponseReturnValue:
    now = utcnow()
    intent = _intent(body.publish, body.publish_at, keep=Intent.SAVE)
    note = services.create_note(
        db.session(),
        product,
        NoteInput(**_domain_fields(body.model_dump(exclude_none=True))),
        intent=intent,
        publish_at=body.publish_at,
        by=operations.actor(),
        now=now,
    )
    jobs.wake()
    return operations.answer(_note(note, now), 201)


@operations.operation(
    "GET",
    "/notes/<id:note_id>",
    summary="Read one note",
    scope=ApiScope.NOTES_READ,
    answer=schemas.Note,
    errors=(404,),
)
def get_note(product: Product, note_id: int) -> ResponseReturnValue:
    return operations.answer(_note(services.get_note(db.session(), product, note_id), utcnow()))


@operations.operation(
    "PATCH",
    "/notes/<id:note_id>",
    summary="Change a note; only the fields sent change",
    scope=ApiScope.NOTES_WRITE,
    body=schemas.NoteUpdate,
    answer=schemas.Note,
    errors=(400, 404, 409, 422),
)
def update_note(product: Product, note_id: int, body: schemas.NoteUpdate) -> ResponseReturnValue:
    now = utcnow()
    note = services.get_note(db.session(), product, note_id)
    changes = body.model_dump(exclude_unset=True)
    nulls = {
        name: "This field cannot be null." for name in NOT_NULL if changes.get(name, 0) is None
    }
    if nulls:
        raise ValidationFailed(nulls)
    if body.audience is not None:
        changes["audience"] = body.audience.model_dump(exclude_none=True)
    data = replace(NoteInput.of(note), **_domain_fields(changes))
    intent = _intent(body.publish, body.publish_at, keep=Intent.SAVE)
    services.update_note(
        db.session(),
        note,
        data,
        intent=intent,
        publish_at=body.publish_at,
        by=operations.actor(),
        now=now,
    )
    jobs.wake()
    return operations.answer(_note(note, now))


@operations.operation(
    "POST",
    "/notes/<id:note_id>/publish",
    summary="Publish a draft or scheduled note now",
    scope=ApiScope.NOTES_WRITE,
    answer=schemas.Note,
    errors=(404, 409),
)
def publish_note(product: Product, note_id: int) -> ResponseReturnValue:
    return _move(product, note_id, services.publish)


@operations.operation(
    "POST",
    "/notes/<id:note_id>/archive",
    summary="Archive a note: it leaves the widget, the feeds and the public page",
    scope=ApiScope.NOTES_WRITE,
    answer=schemas.Note,
    errors=(404, 409),
)
def archive_note(product: Product, note_id: int) -> ResponseReturnValue:
    return _move(product, note_id, services.archive)


def _move(product: Product, note_id: int, service: Callable[..., Note]) -> ResponseReturnValue:
    """Publish or archive a note and answer with it; any mail or calls go out at once."""
    now = utcnow()
    note = services.get_note(db.session(), product, note_id)
    service(db.session(), note, by=operations.actor(), now=now)
    jobs.wake()
    return operations.answer(_note(note, now))


@operations.operation(
    "DELETE",
    "/notes/<id:note_id>",
    summary="Delete a draft (a published note is archived instead)",
    scope=ApiScope.NOTES_WRITE,
    status=204,
    errors=(404, 409),
)
def delete_note(product: Product, note_id: int) -> ResponseReturnValue:
    note = services.get_note(db.session(), product, note_id)
    services.delete_draft(db.session(), note, by=operations.actor(), now=utcnow())
    return "", 204


# Translations -------------------------------------------------------------------------


def _translation(note: Note, row: NoteTranslation) -> schemas.Translation:
    state = translations.status(note, row)
    assert state != "missing"  # noqa: S101 - a row is never missing; for mypy
    changes = translations.changes_since(row, note)
    return schemas.Translation(
        locale=row.locale,
        title=row.title,
        body_md=row.body_md,
        html=row.body_html,
        status=state,
        source_changed=(
            [
                schemas.SourceChange(
                    field=change.field,
                    before=change.before,
                    after=change.after,
                    diff=list(change.diff),
                )
                for change in changes
            ]
            if state == "outdated"
            else None
        ),
        updated_at=row.updated_at,
        published_at=row.published_at,
    )


def _stored_translation(note: Note, locale: str) -> NoteTranslation:
    """The note's translation into ``locale``; 422 for a language it cannot have, 404 for
    one it has not got yet."""
    tag = translations.check_locale(note.product, locale)
    row = translations.find(note, tag)
    if row is None:
        raise NotFound(f"This note has no {tag} translation yet.")
    return row


@operations.operation(
    "GET",
    "/notes/<id:note_id>/translations",
    summary="Where a note stands in each of the product's languages",
    scope=ApiScope.NOTES_READ,
    answer=schemas.TranslationList,
    errors=(404,),
)
def list_translations(product: Product, note_id: int) -> ResponseReturnValue:
    note = services.get_note(db.session(), product, note_id)
    states = []
    for tag, state in translations.statuses(note).items():
        default = tag == product.default_locale
        row = note if default else translations.find(note, tag)
        states.append(
            schemas.TranslationState(
                locale=tag,
                default=default,
                status=state,
                title=row.title if row else None,
                updated_at=row.updated_at if row else None,
                published_at=row.published_at if row else None,
            )
        )
    return operations.answer(schemas.TranslationList(note_id=note.id, translations=states))


@operations.operation(
    "GET",
    "/notes/<id:note_id>/translations/<locale>",
    summary="Read a note's translation into one language",
    scope=ApiScope.NOTES_READ,
    answer=schemas.Translation,
    errors=(404, 422),
)
def get_translation(product: Product, note_id: int, locale: str) -> ResponseReturnValue:
    note = services.get_note(db.session(), product, note_id)
    return operations.answer(_translation(note, _stored_translation(note, locale)))


@operations.operation(
    "PUT",
    "/notes/<id:note_id>/translations/<locale>",
    summary="Write a note's translation into one of the product's other languages",
    scope=ApiScope.NOTES_WRITE,
    body=schemas.TranslationWrite,
    answer=schemas.Translation,
    errors=(400, 404, 409, 422),
)
def put_translation(
    product: Product, note_id: int, locale: str, body: schemas.TranslationWrite
) -> ResponseReturnValue:
    note = services.get_note(db.session(), product, note_id)
    row = translations.save(
        db.session(),
        note,
        locale,
        title=body.title,
        body_md=body.body_md,
        publish=body.status == "published",
        announce=body.announce,
        by=operations.actor(),
        now=utcnow(),
    )
    db.session.commit()
    if body.announce:
        jobs.wake()
    return operations.answer(_translation(note, row))


@operations.operation(
    "DELETE",
    "/notes/<id:note_id>/translations/<locale>",
    summary="Delete a note's translation: its readers see the next language of their chain",
    scope=ApiScope.NOTES_WRITE,
    status=204,
    errors=(404, 422),
)
def delete_translation(product: Product, note_id: int, locale: str) -> ResponseReturnValue:
    note = services.get_note(db.session(), product, note_id)
    row = _stored_translation(note, locale)
    translations.delete(db.session(), row, by=operations.actor(), now=utcnow())
    db.session.commit()
    return "", 204


@operations.operation(
    "GET",
    "/versions",
    summary="List the product's versions, newest first",
    scope=ApiScope.NOTES_READ,
    answer=schemas.VersionList,
)
def list_versions(product: Product) -> ResponseReturnValue:
    now = utcnow()
    live = status_clause(NoteStatus.PUBLISHED, now)
    rows = db.session.execute(
        select(
            Note.version,
            func.count(),
            func.count().filter(live),
            func.max(Note.published_at).filter(live),
        )
        .where(Note.product_id == product.id)
        .group_by(Note.version)
    ).all()
    found = {row[0]: row for row in rows}
    return operations.answer(
        schemas.VersionList(
            versions=[
                schemas.Version(
                    version=version,
                    notes=found[version][1],
                    published=found[version][2],
                    latest_published_at=found[version][3],
                )
                for version in versions.newest_first(found)
            ]
        )
    )


# Subscribers ----------------------------------------------------------------


@operations.operation(
    "GET",
    "/subscribers",
    summary="List email subscribers, newest first",
    scope=ApiScope.SUBSCRIBERS_READ,
    query=schemas.SubscriberQuery,
    answer=schemas.SubscriberList,
    errors=(422,),
)
def list_subscribers(product: Product, query: schemas.SubscriberQuery) -> ResponseReturnValue:
    statement = select(Subscriber).where(Subscriber.product_id == product.id)
    if query.status is not None:
        statement = statement.where(Subscriber.status == SubscriberStatus(query.status))
    rows, next_cursor = operations.page(statement, Subscriber.id, query.cursor, query.limit)
    return operations.answer(
        schemas.SubscriberList(
            subscribers=[
                schemas.Subscriber(
                    id=row.id,
                    email=row.email,
                    status=row.status.value,
                    frequency=row.frequency.value,
                    categories=list(row.categories or []),
                    locale=row.locale,
                    created_at=row.created_at,
                    confirmed_at=row.confirmed_at,
                )
                for row in rows
            ],
            next_cursor=next_cursor,
        )
    )


# Import -------------------------------------------------------------------


@operations.operation(
    "POST",
    "/import",
    summary="Import a changelog file: one note per release",
    scope=ApiScope.IMPORT,
    form=schemas.ImportForm,
    answer=schemas.ImportReport,
    errors=(400, 413, 422),
)
def import_changelog(product: Product, form: schemas.ImportForm) -> ResponseReturnValue:
    upload = request.files.get("file")
    if upload is None:
        raise ValidationFailed({"file": "Send the changelog as the multipart field “file”."})
    report = importing.import_changelog(
        db.session(),
        product,
        importing.read_text(upload.read()),
        publish=form.publish,
        dry_run=form.dry_run,
        unreleased_as=form.unreleased_as,
        by=operations.actor(),
        now=utcnow(),
    )
    return operations.answer(schemas.ImportReport.model_validate(report.as_dict()))


# Tickets ------------------------------------------------------------------------


def _ticket(row: Ticket) -> schemas.Ticket:
    return schemas.Ticket(
        id=row.id,
        source=row.source,
        external_id=row.external_id,
        created_at=row.created_at,
        received_at=row.received_at,
        updated_at=row.updated_at,
        requester_external_id=row.requester_external_id,
        end_user_external_id=row.end_user.external_id if row.end_user is not None else None,
        app_version=row.app_version,
        tags=list(row.tags),
        subject=row.subject,
    )


@operations.operation(
    "POST",
    "/tickets",
    summary="Store a help-desk ticket, or update it: one per source and external_id",
    scope=ApiScope.TICKETS_WRITE,
    body=schemas.TicketCreate,
    answer=schemas.TicketStored,
    errors=(400, 422),
)
def store_ticket(product: Product, body: schemas.TicketCreate) -> ResponseReturnValue:
    now = utcnow()
    data = tickets.check_ticket(body.model_dump(), now=now)
    with write_turn():
        status = tickets.store(
            db.session(), product, data, secret_key=current_app.config["SECRET_KEY"], now=now
        )
        db.session.commit()
    row = tickets.find(db.session(), product.id, data.source, data.external_id)
    assert row is not None  # noqa: S101 - just stored
    return operations.answer(schemas.TicketStored(status=status, ticket=_ticket(row)))


@operations.operation(
    "GET",
    "/tickets",
    summary="List help-desk tickets, the latest stored first",
    scope=ApiScope.TICKETS_READ,
    query=schemas.TicketQuery,
    answer=schemas.TicketList,
    errors=(422,),
)
def list_tickets(product: Product, query: schemas.TicketQuery) -> ResponseReturnValue:
    statement = (
        select(Ticket).where(Ticket.product_id == product.id).options(selectinload(Ticket.end_user))
    )
    if query.source is not None:
        statement = statement.where(Ticket.source == query.source.strip().lower())
    if query.matched is not None:
        matched = Ticket.end_user_id.is_not(None)
        statement = statement.where(matched if query.matched else ~matched)
    if query.created_after is not None:
        statement = statement.where(Ticket.created_at >= query.created_after)
    if query.created_before is not None:
        statement = statement.where(Ticket.created_at < query.created_before)
    rows, next_cursor = operations.page(statement, Ticket.id, query.cursor, query.limit)
    return operations.answer(
        schemas.TicketList(tickets=[_ticket(row) for row in rows], next_cursor=next_cursor)
    )
