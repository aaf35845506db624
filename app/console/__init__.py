"""The product manager's console, under /console/."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("console", __name__, url_prefix="/console")

from app.console import views  # noqa: E402,F401 - registers the routes on bp
