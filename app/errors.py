"""Errors to HTTP in one place: HTML pages for people, JSON for the API."""

from __future__ import annotations

import logging
import sqlite3

import psycopg
from flask import Flask, jsonify, render_template, request
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException, InternalServerError

from announcements.errors import (
    DomainError,
    Forbidden,
    InvalidTransition,
    Malformed,
    NotFound,
    Unauthenticated,
    ValidationFailed,
)
from app.extensions import db

log = logging.getLogger(__name__)

# The first class an error is an instance of gives its status.
STATUS_FOR = {
    Malformed: 400,
    Unauthenticated: 401,
    Forbidden: 403,
    NotFound: 404,
    ValidationFailed: 422,
    InvalidTransition: 409,
}


# What a client is asked to wait before it tries again while the database is busy. The
# longest write, an import of 2 MB (3,000 releases), holds the lock for under a second.
RETRY_AFTER_SECONDS = 2


def _wants_json() -> bool:
    """The API, and the console's own scripts: fetch() asks for ``Sec-Fetch-Dest: empty``,
    and the editor's preview shows the ``error`` of the JSON it gets."""
    return request.path.startswith("/api/") or request.headers.get("Sec-Fetch-Dest") == "empty"


def _answer(
    status: int, title: str, message: str, headers: dict[str, str] | None = None
) -> ResponseReturnValue:
    if _wants_json():
        return jsonify(error=message), status, headers or {}
    page = render_template("error.html", status=status, title=title, message=message)
    return page, status, headers or {}


def _http_error(error: HTTPException) -> ResponseReturnValue:
    status = error.code or 500
    messages = {
        403: "Your role on this product does not allow that. Ask an owner for access.",
        404: "There is nothing here. The link may be old, or you may not have access.",
        429: "Too many attempts in a short time. Wait a minute and try again.",
    }
    return _answer(status, error.name, messages.get(status, error.description or error.name))


def _csrf_error(error: CSRFError) -> ResponseReturnValue:
    return _answer(
        400,
        "The form expired",
        "This form was open too long or came from another site. Go back, reload and try again.",
    )


def _domain_error(error: DomainError) -> ResponseReturnValue:
    status = next((s for kind, s in STATUS_FOR.items() if isinstance(error, kind)), 400)
    if _wants_json() and isinstance(error, ValidationFailed):
        return jsonify(error=error.message, errors=error.errors), status
    if isinstance(error, Unauthenticated) and request.path.startswith("/api/v1/products/"):
        challenge = {"WWW-Authenticate": 'Bearer realm="tidings"'}
        return jsonify(error=error.message), status, challenge
    return _answer(status, "That could not be done", error.message)


def _is_busy(error: OperationalError) -> bool:
    """Whether the database turned the request away for now, so that the same request may
    work when tried again: SQLite's write lock still held when the busy timeout ran out,
    or PostgreSQL ending a transaction that deadlocked or could not be serialised."""
    cause = error.orig
    if isinstance(cause, sqlite3.OperationalError):
        # Errors the sqlite3 module raises itself, such as a column it cannot decode,
        # carry no SQLite error code.
        return getattr(cause, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_BUSY
    # SQLSTATE class 40, transaction rollback: a deadlock or a serialisation failure.
    return isinstance(cause, psycopg.Error) and (cause.sqlstate or "").startswith("40")


def _database_error(error: OperationalError) -> ResponseReturnValue:
    if not _is_busy(error):
        raise error  # a server error, answered and logged by _server_error
    db.session.rollback()
    log.warning("database busy on %s %s: %s", request.method, request.path, error.orig)
    return _answer(
        503,
        "Busy",
        "Tidings is busy writing other changes. Try again in a moment.",
        {"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def _server_error(error: InternalServerError) -> ResponseReturnValue:
    db.session.rollback()
    log.exception("unhandled error on %s %s", request.method, request.path)
    return _answer(500, "Something went wrong", "The error was logged. Try again in a moment.")


def init_app(app: Flask) -> None:
    app.register_error_handler(CSRFError, _csrf_error)
    app.register_error_handler(DomainError, _domain_error)
    app.register_error_handler(OperationalError, _database_error)
    app.register_error_handler(InternalServerError, _server_error)
    app.register_error_handler(HTTPException, _http_error)
