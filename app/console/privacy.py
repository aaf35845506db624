"""An end user's or a subscriber's data, on request: export and erasure."""

from __future__ import annotations

from app.console import bp  # noqa: F401
