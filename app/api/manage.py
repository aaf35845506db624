"""The management API under /api/v1/products/<slug>/: notes, versions, subscribers and
changelog imports, for pipelines and scripts holding a scoped API key.

Each route is declared once with :func:`operation`, which registers the view, checks
the key and its scope, validates the request with the pydantic model it names, and
records the operation for the OpenAPI document.
"""

from __future__ import annotations

import base64
import binascii
import functools
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from flask import current_app, g, jsonify, request
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ValidationError
from sqlalchemy import Select, func, select

from announcements import apikeys, importing, services, versions
from announcements.catalogue import note_url
from announcements.errors import Forbidden, Malformed, Unauthenticated, ValidationFailed
from announcements.models import (
    ApiKey,
    ApiScope,
    Note,
    NoteStatus,
    Product,
    Subscriber,
    SubscriberStatus,
    TeamMember,
    status_clause,
    utcnow,
)
from announcements.note_rules import NoteInput
from announcements.services import Intent
from app.api import bp, schemas
from app.converters import MAX_ID
from app.extensions import db, limiter
from app.mail import jobs

PREFIX = "/products/<slug>"


@dataclass(frozen=True)
class Operation:
    """One route as the OpenAPI document describes it."""

    method: str
    rule: str
    name: str
    summary: str
    scope: ApiScope
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    form: type[BaseModel] | None = None
    answer: type[BaseModel] | None = None
    status: int = 200
    errors: tuple[int, ...] = field(default=())


OPERATIONS: list[Operation] = []


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _presented_key() -> ApiKey | None:
    """The live key the call presents, if any; checked once a request."""
    if "presented_key" not in g:
        token = _bearer()
        g.presented_key = apikeys.authenticate(db.session, token) if token else None
    key: ApiKey | None = g.presented_key
    return key


def _rate_key() -> str:
    """Calls with a valid key count against that key; every other call against the client's
    address, so that a made-up key with a real key's visible prefix spends nothing of it."""
    key = _presented_key()
    if key is not None:
        return f"api:key:{key.prefix}"
    return f"api:address:{request.remote_addr or 'unknown'}"


def _rate_limit() -> str:
    return str(current_app.config["RATELIMIT_API"])


def _authorize(slug: str, scope: ApiScope) -> tuple[Product, ApiKey]:
    if _bearer() is None:
        raise Unauthenticated("Send an API key as “Authorization: Bearer <key>”.")
    key = _presented_key()
    if key is None:
        raise Unauthenticated("This API key is not valid, or it was revoked.")
    product = db.session.get(Product, key.product_id)
    if product is None or product.slug != slug:
        raise Forbidden("This key belongs to another product.")
    if scope.value not in key.scopes:
        raise Forbidden(f"This key lacks the “{scope.value}” scope.")
    apikeys.touch(db.session, key, utcnow())
    return product, key


def _invalid(error: ValidationError) -> ValidationFailed:
    """pydantic's errors as Tidings' own: a message per field."""
    errors: dict[str, str] = {}
    for problem in error.errors():
        name = ".".join(str(part) for part in problem["loc"]) or "body"
        errors.setdefault(name, problem["msg"])
    return ValidationFailed(errors)


def _json_body(model: type[BaseModel]) -> BaseModel:
    data = request.get_data(cache=False)
    if not data.strip():
        raise Malformed({"body": "Send the fields as a JSON object."})
    try:
        return model.model_validate_json(data)
    except ValidationError as error:
        if any(problem["type"] == "json_invalid" for problem in error.errors()):
            raise Malformed({"body": "The body is not valid JSON."}) from None
        raise _invalid(error) from None


def operation(
    method: str, rule: str, *, summary: str, scope: ApiScope, **described: Any
) -> Callable[[Callable[..., ResponseReturnValue]], Callable[..., ResponseReturnValue]]:
    """Register a management-API route and describe it for the OpenAPI document."""

    def decorator(view: Callable[..., ResponseReturnValue]) -> Callable[..., ResponseReturnValue]:
        spec = Operation(method, PREFIX + rule, view.__name__, summary, scope, **described)
        OPERATIONS.append(spec)

        @functools.wraps(view)
        def handle(slug: str, **values: Any) -> ResponseReturnValue:
            product, key = _authorize(slug, scope)
            g.api_key = key
            if spec.body is not None:
                values["body"] = _json_body(spec.body)
            for name, model, given in (
                ("query", spec.query, request.args),
                ("form", spec.form, request.form),
            ):
                if model is not None:
                    try:
                        values[name] = model.model_validate(given.to_dict())
                    except ValidationError as error:
                        raise _invalid(error) from None
            return view(product, **values)

        limited = limiter.limit(_rate_limit, key_func=_rate_key)(handle)
        bp.add_url_rule(PREFIX + rule, view.__name__, limited, methods=[method])
        return view

    return decorator


def _answer(model: BaseModel, status: int = 200) -> ResponseReturnValue:
    return jsonify(model.model_dump(mode="json")), status


def _actor() -> TeamMember | None:
    """Who the audit log names for a call: whoever created the key."""
    key: ApiKey = g.api_key
    return db.session.get(TeamMember, key.created_by_id) if key.created_by_id else None


# Cursors: the id of the last item of a page, so a page never shifts under a reader.

Page = tuple[list[Any], str | None]


def _cursor_after(raw: str | None) -> int | None:
    if raw is None:
        return None
    try:
        value = int(base64.urlsafe_b64decode(raw.encode() + b"==").decode())
    except (binascii.Error, UnicodeDecodeError, ValueError):
        value = 0
    # A number past any id would reach the database, which cannot compare with it.
    if not 0 < value <= MAX_ID:
        raise ValidationFailed({"cursor": "This cursor is not one we gave out."})
    return value


def _page(statement: Select[Any], id_column: Any, cursor: str | None, limit: int) -> Page:
    """A page of ``statement``'s rows, newest first, and the cursor of the next page."""
    after = _cursor_after(cursor)
    if after is not None:
        statement = statement.where(id_column < after)
    rows = list(db.session.scalars(statement.order_by(id_column.desc()).limit(limit + 1)))
    if len(rows) <= limit:
        return rows, None
    last = str(rows[limit - 1].id).encode()
    return rows[:limit], base64.urlsafe_b64encode(last).decode().rstrip("=")


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
}
# Fields a PATCH may leave out but not clear.
NOT_NULL = ("version", "title", "category", "body_md", "important", "internal")


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


@operation(
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
    notes, next_cursor = _page(statement, Note.id, query.cursor, query.limit)
    return _answer(
        schemas.NoteList(notes=[_note(note, now) for note in notes], next_cursor=next_cursor)
    )


@operation(
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
        db.session,
        product,
        NoteInput(**_domain_fields(body.model_dump(exclude_none=True))),
        intent=intent,
        publish_at=body.publish_at,
        by=_actor(),
        now=now,
    )
    jobs.wake()
    return _answer(_note(note, now), 201)


@operation(
    "GET",
    "/notes/<id:note_id>",
    summary="Read one note",
    scope=ApiScope.NOTES_READ,
    answer=schemas.Note,
    errors=(404,),
)
def get_note(product: Product, note_id: int) -> ResponseReturnValue:
    return _answer(_note(services.get_note(db.session, product, note_id), utcnow()))


@operation(
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
    note = services.get_note(db.session, product, note_id)
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
        db.session, note, data, intent=intent, publish_at=body.publish_at, by=_actor(), now=now
    )
    jobs.wake()
    return _answer(_note(note, now))


@operation(
    "POST",
    "/notes/<id:note_id>/publish",
    summary="Publish a draft or scheduled note now",
    scope=ApiScope.NOTES_WRITE,
    answer=schemas.Note,
    errors=(404, 409),
)
def publish_note(product: Product, note_id: int) -> ResponseReturnValue:
    return _move(product, note_id, services.publish)


@operation(
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
    note = services.get_note(db.session, product, note_id)
    service(db.session, note, by=_actor(), now=now)
    jobs.wake()
    return _answer(_note(note, now))


@operation(
    "DELETE",
    "/notes/<id:note_id>",
    summary="Delete a draft (a published note is archived instead)",
    scope=ApiScope.NOTES_WRITE,
    status=204,
    errors=(404, 409),
)
def delete_note(product: Product, note_id: int) -> ResponseReturnValue:
    note = services.get_note(db.session, product, note_id)
    services.delete_draft(db.session, note, by=_actor(), now=utcnow())
    return "", 204


@operation(
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
    return _answer(
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


@operation(
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
    rows, next_cursor = _page(statement, Subscriber.id, query.cursor, query.limit)
    return _answer(
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


@operation(
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
        db.session,
        product,
        importing.read_text(upload.read()),
        publish=form.publish,
        dry_run=form.dry_run,
        unreleased_as=form.unreleased_as,
        by=_actor(),
        now=utcnow(),
    )
    return _answer(schemas.ImportReport.model_validate(report.as_dict()))
