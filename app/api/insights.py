"""Insights in the management API, for teams to put in their own reports: the
support-impact figures, per note and per release, and a note's reach and reading.

Both are read from the worker's roll-ups (``announcements.support_impact``,
``announcements.insights``): a call costs a few grouped queries however many users the
product has.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask.typing import ResponseReturnValue

from announcements import insights, services, support_impact
from announcements.models import ApiScope, Product, utcnow
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


@operations.operation(
    "GET",
    "/notes/<id:note_id>/insights",
    summary="A note's exposed users, readers, read rate, channels, time to read and reactions",
    scope=ApiScope.INSIGHTS_READ,
    query=schemas.InsightsQuery,
    answer=schemas.NoteInsights,
    errors=(404, 422),
)
def note_insights(
    product: Product, note_id: int, query: schemas.InsightsQuery
) -> ResponseReturnValue:
    note = services.get_note(db.session(), product, note_id)
    found = insights.note_insights(
        db.session(), note, by=query.by, start=query.start, end=query.end, now=utcnow()
    )
    rate = found.rate
    return operations.answer(
        schemas.NoteInsights(
            note_id=found.note_id,
            exposed=found.exposed,
            readers=found.readers,
            read_rate=rate.value,
            read_rate_ci=None if rate.low is None or rate.high is None else (rate.low, rate.high),
            reads_by_channel=found.reads_by_channel,
            daily=[
                schemas.InsightsDay(date=point.day, exposed=point.exposed, readers=point.readers)
                for point in found.daily
            ],
            time_to_read=schemas.TimeToRead(
                readers=found.time_to_read.readers,
                median_seconds=_seconds(found.time_to_read.median),
                p90_seconds=_seconds(found.time_to_read.p90),
            ),
            reactions=found.reactions,
            segments=(
                [
                    schemas.InsightsSegment(
                        value=row.value,
                        exposed=row.exposed,
                        readers=row.readers,
                        read_rate=row.rate.value,
                    )
                    for row in found.segments
                ]
                if found.segment is not None
                else None
            ),
            counted_until=found.counted_until,
        )
    )


def _seconds(span: timedelta | None) -> float | None:
    return None if span is None else span.total_seconds()
