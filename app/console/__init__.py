"""The product manager's console, under /console/: one blueprint, one module per resource."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("console", __name__, url_prefix="/console")

# Each module registers its routes on bp.
from app.console import (  # noqa: E402,F401
    common,
    email,
    images,
    insights,
    integrations,
    lookup,
    notes,
    preferences,
    privacy,
    products,
    retention,
    signin,
    sso,
    status,
    support,
    support_import,
    support_sidebar,
    team,
    translation_files,
    two_factor,
)
