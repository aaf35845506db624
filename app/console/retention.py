"""How long a product keeps its end users' and subscribers' data."""

from __future__ import annotations

from app.console import bp  # noqa: F401
