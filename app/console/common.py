"""What every console view shares: saying why a change was refused, and the helpers
its templates use."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from flask import (
    current_app,
    flash,
    stream_with_context,
)
from flask.typing import ResponseReturnValue
from flask_babel import lazy_gettext
from flask_wtf import FlaskForm

from announcements.errors import InvalidTransition, ValidationFailed
from announcements.models import (
    NoteStatus,
    Role,
)
from app.console import bp, timezones
from app.extensions import db

# How the console names a role in a sentence ("You are editor here") and a note's status
# on its badge.
ROLE_NAMES = {
    Role.VIEWER: lazy_gettext("viewer"),
    Role.EDITOR: lazy_gettext("editor"),
    Role.OWNER: lazy_gettext("owner"),
}
STATUS_NAMES = {
    NoteStatus.DRAFT: lazy_gettext("Draft"),
    NoteStatus.SCHEDULED: lazy_gettext("Scheduled"),
    NoteStatus.PUBLISHED: lazy_gettext("Published"),
    NoteStatus.ARCHIVED: lazy_gettext("Archived"),
}


@bp.app_template_global()
def role_name(role: Role) -> str:
    """A role as a sentence names it, in the console's language."""
    return str(ROLE_NAMES[role])


@bp.app_template_global()
def status_name(status: NoteStatus) -> str:
    """A note's status as its badge names it, in the console's language."""
    return str(STATUS_NAMES[status])


def attachment(body: Iterator[str] | str, filename: str, mimetype: str) -> ResponseReturnValue:
    """A file the browser saves as ``filename`` rather than shows."""
    return current_app.response_class(
        body,
        mimetype=mimetype,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def csv_download(lines: Iterator[str] | str, filename: str) -> ResponseReturnValue:
    """A CSV file to save as ``filename``: streamed a line at a time when given lines
    (the request's context kept for them), or whole."""
    body = lines if isinstance(lines, str) else stream_with_context(lines)
    return attachment(body, filename, "text/csv")


@contextlib.contextmanager
def refused(form: FlaskForm | None = None) -> Iterator[None]:
    """Make a change the domain may refuse. On a refusal, undo it, say why (beside the
    fields of ``form`` that a ValidationFailed names, else in a flash message), and skip
    the rest of the block, which reports the success."""
    try:
        yield
    except ValidationFailed as error:
        db.session.rollback()
        for name, message in error.errors.items():
            field = form._fields.get(name) if form is not None else None
            if field is None:
                flash(message, "error")
            else:
                field.errors = [*field.errors, message]
    except InvalidTransition as error:
        db.session.rollback()
        flash(error.message, "error")


@bp.app_context_processor
def _template_helpers() -> dict[str, Any]:
    return {
        "local_time": timezones.local,
        "zone_name": timezones.zone_name,
        "Role": Role,
    }
