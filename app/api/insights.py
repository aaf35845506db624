"""Insights in the management API: the support-impact figures, per note and per release,
for teams to put in their own reports.

They are the worker's roll-up (``announcements.support_impact``), read as stored: a call
costs a few rows however many users the product has.
"""

from __future__ import annotations

from typing import Any

from flask.typing import ResponseReturnValue

from announcements import support_impact
from announcements.models import ApiScope, Product
from app.api import operations, schemas
from app.extensions import db


def _interval(rate: dict[str, Any]) -> tuple[float, float] | None:
    return None if rate["per_1000"] is None else (rate["low"], rate["high"])


def _figures(figures: dict[str, Any]) -> schemas.ImpactFigures:
    """The stored figures in the API's shape: the rates flattened to a value and an
    interval, the chart's days left to the console."""
    return schemas.ImpactFigures.model_validate(
        {
            **figures,
            "rate_readers_per_1000": figures["rate_readers"]["per_1000"],
            "rate_readers_ci": _interval(figures["rate_readers"]),
            "rate_non_readers_per_1000": figures["rate_non_readers"]["per_1000"],
            "rate_non_readers_ci": _interval(figures["rate_non_readers"]),
        }
    )


@operations.operation(
    "GET",
    "/support-impact",
    summary="Tickets among readers and non-readers of each note and release",
    scope=ApiScope.INSIGHTS_READ,
    answer=schemas.SupportImpactReport,
)
def support_impact_report(product: Product) -> ResponseReturnValue:
    releases = support_impact.report(db.session(), product)
    return operations.answer(
        schemas.SupportImpactReport(
            computed_at=max((r.computed_at for r in releases), default=None),
            notes=[_figures(note) for release in releases for note in release.notes],
            releases=[_figures(release.figures) for release in releases],
        )
    )
