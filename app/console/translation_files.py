"""Notes → Translations: download a language's translations as an XLIFF 2.0 or PO file
for a translator's tool, and upload the filled file, trying it first as a dry run."""

from __future__ import annotations

import io

from flask import redirect, render_template, request, send_file, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import BooleanField, RadioField
from wtforms.fields.choices import SelectChoice

from announcements import importing, languages, translation_files
from announcements.errors import ValidationFailed
from announcements.models import Product, Role, utcnow
from app.auth import current_member, role_required
from app.console import bp
from app.console.common import refused
from app.extensions import db
from app.i18n import current_locale


class TranslationImportForm(FlaskForm):
    file = FileField(lazy_gettext("XLIFF or PO file"))
    publish = RadioField(
        lazy_gettext("Save the translations as"),
        choices=[
            SelectChoice("published", lazy_gettext("Published: readers of the language see them")),
            SelectChoice("draft", lazy_gettext("Drafts: publish them from each note later")),
        ],
        default="published",
    )
    dry_run = BooleanField(lazy_gettext("Dry run: only report what would change"))


@bp.route("/p/<slug>/notes/translations", methods=["GET", "POST"])
@role_required(Role.EDITOR)
def notes_translations(product: Product) -> ResponseReturnValue:
    """The Translations page; a POST imports a filled file (or tries it, as a dry run)."""
    form = TranslationImportForm()
    report: translation_files.Report | None = None
    if form.validate_on_submit():
        with refused(form):
            upload = form.file.data
            if upload is None or not getattr(upload, "filename", ""):
                raise ValidationFailed({"file": _("Choose the file to upload.")})
            report = translation_files.import_file(
                db.session(),
                product,
                upload.read(importing.MAX_FILE_BYTES + 1),
                publish=form.publish.data == "published",
                dry_run=bool(form.dry_run.data),
                by=current_member(),
                now=utcnow(),
            )
            db.session.commit()
    failed = request.method == "POST" and report is None
    reader = current_locale()
    names = {tag: languages.display_name(tag, reader) for tag in product.languages}
    return render_template(
        "console/translation_files.html",
        product=product,
        form=form,
        report=report,
        languages=list(names.items()),
        names=names,
        default_name=languages.display_name(product.default_locale, reader),
        coverage=translation_files.coverage(db.session(), product),
        formats=translation_files.FORMATS,
        Outcome=translation_files.Outcome,
    ), 422 if failed else 200


@bp.get("/p/<slug>/notes/translations/export")
@role_required(Role.EDITOR)
def notes_translations_export(product: Product) -> ResponseReturnValue:
    """Download the notes and their translations into one language as XLIFF 2.0 or PO."""
    with refused():
        exported = translation_files.export(
            db.session(),
            product,
            request.args.get("locale", ""),
            request.args.get("format", "xliff"),
            version=request.args.get("version"),
            now=utcnow(),
        )
        return send_file(
            io.BytesIO(exported.data),
            mimetype=exported.mimetype,
            as_attachment=True,
            download_name=exported.filename,
        )
    return redirect(url_for("console.notes_translations", slug=product.slug))
