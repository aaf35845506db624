"""Images an editor uploads or pastes into a note; the editor's script gets JSON back."""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any

from flask import current_app, jsonify, request
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _

from announcements import audit, images
from announcements.errors import ValidationFailed
from announcements.models import Product, Role, utcnow
from app.auth import current_member, role_required
from app.console import bp
from app.extensions import db
from app.public import media

# The file and the few hundred bytes of multipart around it. The editor's script refuses
# a larger file before sending it, so only other clients meet werkzeug's 413 past this.
MAX_BODY = images.MAX_BYTES + 16 * 1024
# Markdown's image syntax uses these; an alt text taken from a file name goes without.
_NOT_IN_ALT = re.compile(r"[\[\]\\`*_<>!\x00-\x1f\x7f]+")


@bp.url_value_preprocessor
def _room_for_an_image(endpoint: str | None, values: dict[str, Any] | None) -> None:
    """Let an upload past MAX_CONTENT_LENGTH (2 MB). Flask runs this before every
    before_request function, and two of those, the CSRF check and the NUL guard, read the
    body: setting the limit in the view would be too late."""
    if endpoint == "console.image_upload":
        request.max_content_length = MAX_BODY


def _alt_text(filename: str) -> str:
    """A first alt text from the file's name: "release-chart.png" gives "release chart"."""
    words = _NOT_IN_ALT.sub(" ", PurePosixPath(filename).stem.replace("-", " "))
    return " ".join(words.split())[:100] or "image"


@bp.post("/p/<slug>/images")
@role_required(Role.EDITOR)
def image_upload(product: Product) -> ResponseReturnValue:
    """Keep an image (form field ``image``) for this product's notes; answer its URL and
    the Markdown that shows it."""
    upload = request.files.get("image")
    if upload is None or not upload.filename:
        raise ValidationFailed({"image": _("Choose %(kinds)s to upload.", kinds=images.KINDS)})
    stored = images.store(
        media.folder(),
        product.id,
        upload.read(images.MAX_BYTES + 1),
        media_type=upload.mimetype,
        filename=upload.filename,
    )
    path = media.path(product.id, stored.name)
    if stored.is_new:
        summary = f"Uploaded {path} ({stored.width} × {stored.height})"
        audit.record(
            db.session(), product, current_member(), "image.uploaded", summary, now=utcnow()
        )
        db.session.commit()
    return jsonify(
        url=current_app.config["BASE_URL"] + path,
        markdown=f"![{_alt_text(upload.filename)}]({path})",
    ), 201
