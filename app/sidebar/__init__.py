"""The agent sidebar: one end user as a help desk shows them beside a ticket, opened by a
signed link (:mod:`announcements.sidebar_links`) with no console session."""

from __future__ import annotations

from flask import Blueprint, Flask

bp = Blueprint("sidebar", __name__, url_prefix="/support")

from app.sidebar import views  # noqa: E402,F401 - registers the routes on bp


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
