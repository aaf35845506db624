"""Images uploaded to notes, served from the instance folder to anyone who has the URL."""

from __future__ import annotations

from pathlib import Path

from flask import abort, current_app, send_file
from flask.typing import ResponseReturnValue

from announcements import images
from app.public import bp

# A file's name is the hash of its bytes, so a URL never comes to show other bytes: any
# cache may keep it for a year without asking again.
CACHE_CONTROL = "public, max-age=31536000, immutable"


def folder() -> Path:
    """Where this instance keeps uploaded images: ``<instance>/media/<product id>/``."""
    return Path(current_app.instance_path) / "media"


def path(product_id: int, name: str) -> str:
    """The path of a product's image under BASE_URL, as notes' Markdown names it."""
    return f"/media/{product_id}/{name}"


@bp.get("/media/<id:product_id>/<name>")
def media(product_id: int, name: str) -> ResponseReturnValue:
    """An uploaded image, as the type its name says, cached for good."""
    path = images.stored_file(folder(), product_id, name)
    if path is None:
        abort(404)
    response = send_file(path, mimetype=images.media_type_of(name), conditional=True, etag=True)
    response.headers["Cache-Control"] = CACHE_CONTROL  # nosniff is on every answer (security)
    return response
