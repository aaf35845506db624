"""The JSON APIs under /api/v1/: the widget's endpoints for end users, and the
management API for pipelines with its OpenAPI document."""

from __future__ import annotations

from flask import Blueprint, Flask

from announcements.catalogue import CatalogueCache
from app.extensions import csrf

bp = Blueprint("api", __name__, url_prefix="/api/v1")

from app.api import insights, manage, openapi, privacy, support, widget  # noqa: E402, F401 - register the routes on bp


def init_app(app: Flask) -> None:
    # The API authenticates each call itself (HMAC, keys); there is no session to forge.
    csrf.exempt(bp)
    app.extensions[widget.CACHE_KEY] = CatalogueCache(app.config["BASE_URL"])
    app.register_blueprint(bp)
    app.add_url_rule("/widget.js", "widget_script", widget.script)
