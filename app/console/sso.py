"""Single sign-on for the console through OpenID Connect."""

from __future__ import annotations

from app.console import bp  # noqa: F401
