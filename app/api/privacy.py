"""The privacy API: an end user's data exported and erased (scope ``privacy``)."""

from __future__ import annotations

from app.api import bp  # noqa: F401
