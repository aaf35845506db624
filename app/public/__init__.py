"""The public face of a product: its changelog page, its feeds and its email subscriptions."""

from __future__ import annotations

from flask import Blueprint, Flask

from announcements import rendering
from announcements.feeds import FeedIndexCache

bp = Blueprint("public", __name__)

from app.public import media, subscriptions, views  # noqa: E402,F401 - registers the routes on bp


def init_app(app: Flask) -> None:
    app.extensions[views.FEED_INDEX_KEY] = FeedIndexCache()
    app.extensions[views.FEED_CACHE_KEY] = {}
    app.register_blueprint(bp)
    app.register_blueprint(subscriptions.bp)
    # Notes rendered in this process show the uploads served by media.media at BASE_URL.
    rendering.serve_media_from(app.config["BASE_URL"])
