"""Two-factor sign-in: enrolment, the second step of signing in, recovery."""

from __future__ import annotations

from app.console import bp  # noqa: F401
