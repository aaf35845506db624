"""The small framework the management API is written in: declare an operation once and
get its route, key and scope check, rate limit, request validation and OpenAPI entry;
plus the JSON answer, the audit actor and cursor paging every endpoint shares.
"""

from __future__ import annotations

import base64
import binascii
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import current_app, g, jsonify, request
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ValidationError
from sqlalchemy import Select

from announcements import apikeys
from announcements.errors import Forbidden, Malformed, Unauthenticated, ValidationFailed
from announcements.models import (
    ApiKey,
    ApiScope,
    Product,
    TeamMember,
    utcnow,
)
from app.api import bp
from app.converters import MAX_ID
from app.extensions import db, limiter

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
        g.presented_key = apikeys.authenticate(db.session(), token) if token else None
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
    apikeys.touch(db.session(), key, utcnow())
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


def answer(model: BaseModel, status: int = 200) -> ResponseReturnValue:
    return jsonify(model.model_dump(mode="json")), status


def actor() -> TeamMember | None:
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


def page(statement: Select[Any], id_column: Any, cursor: str | None, limit: int) -> Page:
    """A page of ``statement``'s rows, newest first, and the cursor of the next page."""
    after = _cursor_after(cursor)
    if after is not None:
        statement = statement.where(id_column < after)
    rows = list(db.session.scalars(statement.order_by(id_column.desc()).limit(limit + 1)))
    if len(rows) <= limit:
        return rows, None
    last = str(rows[limit - 1].id).encode()
    return rows[:limit], base64.urlsafe_b64encode(last).decode().rstrip("=")
