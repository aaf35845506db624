"""Uploading a help desk's ticket history as CSV: read its headers, map its columns, try
it as a dry run, import it, and see the rows that could not be used."""

from __future__ import annotations

from typing import Any

from flask import abort, current_app, render_template, request
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user

from announcements import ticket_import
from announcements.errors import ValidationFailed
from announcements.models import Product, Role, utcnow
from announcements.ticket_import import FIELDS
from app.auth import current_member, role_required
from app.console import bp
from app.console.common import refused
from app.console.forms import TicketImportForm
from app.extensions import db

# The file and the form fields and multipart framing around it.
MAX_BODY = ticket_import.MAX_BYTES + 64 * 1024
# The bad rows the page lists; the rest are counted.
LISTED_BAD_ROWS = 100


@bp.url_value_preprocessor
def _room_for_a_csv(endpoint: str | None, values: dict[str, Any] | None) -> None:
    """Let an upload past MAX_CONTENT_LENGTH (2 MB) up to the import's limit, and refuse a
    larger one by its Content-Length with a page that says why. Flask runs this before
    the CSRF check, which reads the body: in the view it would be too late. Only for a
    signed-in member: nobody else gets a server to read 50 MB (the view checks the role)."""
    if endpoint != "console.support_import" or request.method != "POST":
        return
    if not current_user.is_authenticated:
        return
    request.max_content_length = MAX_BODY
    if (request.content_length or 0) > MAX_BODY:
        abort(413, description=_too_big())


def _too_big() -> str:
    return _(
        "The file is over %(size)s MB. Split it in parts, or import it with flask import-tickets.",
        size=ticket_import.MAX_BYTES // 1024 // 1024,
    )


@bp.route("/p/<slug>/support/import", methods=["GET", "POST"])
@role_required(Role.EDITOR)
def support_import(product: Product) -> ResponseReturnValue:
    """Upload a CSV export of tickets: read its headers, or import it (or a dry run)."""
    form = TicketImportForm()
    headers: list[str] = []
    detected: ticket_import.Columns | None = None
    report: ticket_import.Report | None = None
    if form.validate_on_submit():
        reading_headers = request.form.get("step") == "headers"
        with refused(form):
            upload = form.file.data
            if upload is None or not getattr(upload, "filename", ""):
                raise ValidationFailed({"file": _("Choose the CSV file to upload.")})
            csv_file = ticket_import.read_csv(upload.read(ticket_import.MAX_BYTES + 1))
            headers = csv_file.headers
            detected = ticket_import.columns(headers, form.mapping())
            if not reading_headers:
                report = ticket_import.import_tickets(
                    db.session(),
                    product,
                    csv_file,
                    secret_key=current_app.config["SECRET_KEY"],
                    now=utcnow(),
                    mapping=form.mapping(),
                    source=form.source.data,
                    date_format=(form.date_format.data or "").strip() or None,
                    dry_run=bool(form.dry_run.data),
                    by=current_member(),
                )
    failed = request.method == "POST" and report is None and detected is None
    return render_template(
        "console/support_import.html",
        product=product,
        form=form,
        fields=FIELDS,
        headers=headers,
        detected=detected,
        report=report,
        listed=LISTED_BAD_ROWS,
        max_mb=ticket_import.MAX_BYTES // 1024 // 1024,
    ), 422 if failed or form.errors else 200
