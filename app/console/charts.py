"""Chart geometry for the console's server-drawn SVG charts (``console/_charts.html``).

Scales are worked out here, in plain functions that tests can check, rather than in
Jinja arithmetic. Across the chart, positions are percentages of its width, so the SVG
stretches to any screen while its text keeps the page's own size (a viewBox would shrink
the labels to unreadable on a phone); down the chart, positions are pixels of a fixed
height.

Figures and days are written in the language the console speaks, with Babel's
separators and month names ("1,234" and "2 Nov" in English, "1 234" and "2 nov." in
French); outside a request, as in the geometry's tests, in English.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from babel import Locale, dates, numbers
from flask_babel import get_locale

from announcements import languages

# Pixels: room above the plot for the marker's label, and below it for the dates.
CHART_HEIGHT = 240
PLOT_TOP = 26
PLOT_BOTTOM = 206
# Share of each bar's slot the bar fills; the rest is the gap between bars.
BAR_FILL = 0.72


@dataclass(frozen=True)
class Tick:
    """A labelled place on an axis: ``at`` is a percentage across or a pixel down."""

    at: float
    label: str
    # Where the label hangs from ``at``: "start", "middle" or "end" (SVG text-anchor).
    anchor: str = "middle"
    # Dropped on narrow screens, where every second label would collide.
    minor: bool = False


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    text: str  # the value as its tooltip writes it
    x: float  # per cent
    width: float  # per cent
    y: float  # px
    height: float  # px


@dataclass(frozen=True)
class Span:
    """A stretch across the chart, in per cent: where it starts and how wide it is."""

    x: float
    width: float


@dataclass(frozen=True)
class BarChart:
    bars: list[Bar]
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    # A vertical line (per cent across) and its label, such as a note's publication.
    marker: Tick | None
    # A shaded stretch, such as the attribution window.
    band: Span | None
    # Pixels left of the plot for the value labels (see ``gutter``).
    gutter: int
    height: int = CHART_HEIGHT
    top: int = PLOT_TOP
    bottom: int = PLOT_BOTTOM
    plot_height: int = PLOT_BOTTOM - PLOT_TOP


def nice_step(span: float, count: int) -> float:
    """A step of 1, 2 or 5 times a power of ten that splits ``span`` into at most about
    ``count`` parts: the steps people read axes in."""
    if span <= 0:
        return 1.0
    rough = span / max(count, 1)
    power = 10 ** math.floor(math.log10(rough))
    for factor in (1, 2, 5):
        if factor * power >= rough:
            return float(factor * power)
    return float(10 * power)


def axis(maximum: float, count: int = 4, *, whole: bool = False) -> list[float]:
    """Tick values from 0 up to the first step at or above ``maximum``. ``whole``: the
    values count things, so a step is never a fraction."""
    step = nice_step(maximum, count)
    if whole:
        step = max(step, 1.0)
    top = step * max(math.ceil(maximum / step - 1e-9), 1)
    return [round(step * i, 10) for i in range(round(top / step) + 1)]


def speaking() -> Locale:
    """The language the request speaks, for Babel; English outside a request."""
    return get_locale() or Locale.parse(languages.INTERFACE_DEFAULT)


@functools.cache
def _signs(locale: Locale) -> dict[int, str]:
    """What a figure as Python writes it ("-1,234.5") becomes in ``locale``: its own
    separators and signs, from Babel. Python writes the digits, grouped by thousands as
    the console's languages group them: a page of a year's figures writes thousands of
    them, and Babel's own formatting took 30 ms of a 40 ms page."""
    return str.maketrans(
        {
            ",": numbers.get_group_symbol(locale),
            ".": numbers.get_decimal_symbol(locale),
            "-": numbers.get_minus_sign_symbol(locale),
            "+": numbers.get_plus_sign_symbol(locale),
        }
    )


def number(value: float, spec: str = "", *, locale: Locale | None = None) -> str:
    """A figure as the charts and pages write it, in ``locale`` (by default the language
    the request speaks, which a loop over many figures looks up once): thousands
    separated, no ".0" on a whole number; or as the format ``spec`` says (".1f", "+.0f")."""
    if not spec:
        spec = ",.0f" if value == int(value) else ",.10g"
    return format(value, spec).translate(_signs(locale or speaking()))


def _anchor(at: float) -> str:
    """Labels near an edge hang inwards, so they are not cut off."""
    return "start" if at < 6 else "end" if at > 94 else "middle"


# Pixels per character of a 12 px axis label (figures and separators), and between the
# longest label and the plot.
LABEL_CHARACTER = 7
LABEL_ROOM = 10


def gutter(ticks: Sequence[Tick]) -> int:
    """Pixels for the value labels left of a plot: drawn inside it, they would sit on the
    bars or the line that start at its left edge."""
    return max((len(t.label) for t in ticks), default=0) * LABEL_CHARACTER + LABEL_ROOM


def _x_ticks(labels: Sequence[str], positions: Sequence[float], max_labels: int) -> list[Tick]:
    """Labels under the points at ``positions`` (per cent), thinned to about ``max_labels``
    and every second one minor, so a phone shows half of them without collisions."""
    every = max(math.ceil(len(labels) / max(max_labels, 1)), 1)
    return [
        Tick(positions[i], labels[i], _anchor(positions[i]), minor=(i // every) % 2 == 1)
        for i in range(0, len(labels), every)
    ]


def bar_chart(
    labels: Sequence[str],
    values: Sequence[float],
    *,
    marker: tuple[float, str] | None = None,
    band: tuple[float, float] | None = None,
    max_labels: int = 8,
) -> BarChart:
    """Geometry of a bar per value, with a value axis from 0, date labels thinned to about
    ``max_labels``, and an optional marker and shaded band.

    ``marker`` is (position, label) and ``band`` is (start, end), positions counted in
    bars from the left edge of the first: 2.5 is the middle of the third bar. Both are
    clipped to the chart.
    """
    if len(labels) != len(values):
        raise ValueError("one label per value")
    count = len(values)
    ticks = axis(max(values, default=0), whole=all(v == int(v) for v in values))
    top_value = ticks[-1]
    plot_height = PLOT_BOTTOM - PLOT_TOP
    slot = 100 / count if count else 100

    def across(position: float) -> float:
        return round(min(max(position, 0), count) * slot, 4)

    def down(value: float) -> float:
        return round(PLOT_BOTTOM - value / top_value * plot_height, 2)

    locale = speaking()
    bars = [
        Bar(
            label=label,
            value=value,
            text=number(value, locale=locale),
            x=round(i * slot + slot * (1 - BAR_FILL) / 2, 4),
            width=round(slot * BAR_FILL, 4),
            y=down(value),
            height=round(PLOT_BOTTOM - down(value), 2),
        )
        for i, (label, value) in enumerate(zip(labels, values, strict=True))
    ]
    y_ticks = [Tick(down(v), number(v), "end") for v in ticks]
    return BarChart(
        bars=bars,
        y_ticks=y_ticks,
        x_ticks=_x_ticks(labels, [across(i + 0.5) for i in range(count)], max_labels),
        gutter=gutter(y_ticks),
        marker=(
            None if marker is None or count == 0 else Tick(across(marker[0]), marker[1], "start")
        ),
        band=(
            None
            if band is None or count == 0
            else Span(across(band[0]), round(across(band[1]) - across(band[0]), 4))
        ),
    )


@dataclass(frozen=True)
class Interval:
    """An estimate and its confidence interval; ``point`` None when there is none (no
    users in the group)."""

    label: str
    point: float | None
    low: float | None
    high: float | None


@dataclass(frozen=True)
class IntervalRow:
    label: str
    point: float | None  # per cent across, None: nothing to draw
    low: float | None
    high: float | None
    y: float  # px, the row's centre line


@dataclass(frozen=True)
class IntervalChart:
    rows: list[IntervalRow]
    x_ticks: list[Tick]
    height: int
    axis_y: int


# Pixels per row of an interval chart, and for the axis labels under the rows.
ROW_HEIGHT = 44
AXIS_ROOM = 30


def interval_chart(
    intervals: Sequence[Interval], *, count: int = 4, unit: str = ""
) -> IntervalChart:
    """Geometry of horizontal interval bars (a point and whiskers from low to high), one
    row each, on one shared axis from 0 that covers every high end; ``unit`` follows each
    axis label ("%")."""
    reach = max(
        (v for i in intervals for v in (i.point, i.high) if v is not None),
        default=0.0,
    )
    ticks = axis(reach, count)
    top_value = ticks[-1]

    def across(value: float) -> float:
        return round(min(max(value, 0), top_value) / top_value * 100, 4)

    def maybe(value: float | None) -> float | None:
        return None if value is None else across(value)

    rows = [
        IntervalRow(
            label=interval.label,
            point=maybe(interval.point),
            low=maybe(interval.low),
            high=maybe(interval.high),
            y=ROW_HEIGHT * i + ROW_HEIGHT - 12,
        )
        for i, interval in enumerate(intervals)
    ]
    axis_y = ROW_HEIGHT * len(intervals) + 6
    return IntervalChart(
        rows=rows,
        x_ticks=[
            Tick(across(v), number(v) + (f" {unit}" if unit else ""), _anchor(across(v)))
            for v in ticks
        ],
        height=axis_y + AXIS_ROOM,
        axis_y=axis_y,
    )


# Lines -------------------------------------------------------------------------------------

# A series' points are marked when they are at least this far apart on a phone's chart
# (about 330 px): closer, the dots would run into a thick line.
MAX_DOTS = 32


@dataclass(frozen=True)
class Point:
    label: str
    value: float
    text: str  # the value as its tooltip writes it, to a tenth at most
    x: float  # per cent
    y: float  # px


@dataclass(frozen=True)
class Line:
    """One series: its points, and the same as SVG path data for the line and the area
    under it. The paths are drawn in a plot that stretches across the chart (x from 0 to
    100, y in pixels), since path data cannot be written in per cent."""

    name: str
    points: list[Point]
    path: str
    area: str


@dataclass(frozen=True)
class LineChart:
    lines: list[Line]
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    # Whether the points are far enough apart to mark each one (with its figure on hover).
    dots: bool
    # Pixels left of the plot for the value labels: a line runs to the plot's left edge,
    # where labels drawn inside it would sit on the line.
    gutter: int
    height: int = CHART_HEIGHT
    top: int = PLOT_TOP
    bottom: int = PLOT_BOTTOM


def _path(points: Sequence[Point | None]) -> tuple[str, str]:
    """The line through ``points`` and the area under it, broken where a point is None
    (a day with no figure, such as a rate of nobody)."""
    lines, areas = [], []
    run: list[Point] = []
    for point in [*points, None]:
        if point is not None:
            run.append(point)
            continue
        if run:
            coordinates = " ".join(f"{p.x:g},{p.y:g}" for p in run)
            lines.append(f"M{coordinates}")
            first, last = run[0].x, run[-1].x
            areas.append(f"M{first:g},{PLOT_BOTTOM} L{coordinates} L{last:g},{PLOT_BOTTOM}Z")
        run = []
    return " ".join(lines), " ".join(areas)


def line_chart(
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None]]],
    *,
    unit: str = "",
    max_labels: int = 8,
) -> LineChart:
    """Geometry of one or more series over the same ``labels`` (days, weeks), on one value
    axis from 0; a value None leaves a gap. The first point is at the left edge and the
    last at the right; a single point stands in the middle. ``unit`` follows each value
    axis label ("%")."""
    count = len(labels)
    if any(len(values) != count for _, values in series):
        raise ValueError("one label per value")
    known = [v for _, values in series for v in values if v is not None]
    ticks = axis(max(known, default=0), whole=all(v == int(v) for v in known))
    top_value = ticks[-1]
    plot_height = PLOT_BOTTOM - PLOT_TOP
    positions = [round(i / (count - 1) * 100, 4) if count > 1 else 50.0 for i in range(count)]

    def down(value: float) -> float:
        return round(PLOT_BOTTOM - value / top_value * plot_height, 2)

    lines, locale = [], speaking()
    for name, values in series:
        points = [
            None
            if value is None
            else Point(label, value, number(round(value, 1), locale=locale), x, down(value))
            for label, value, x in zip(labels, values, positions, strict=True)
        ]
        path, area = _path(points)
        lines.append(Line(name, [p for p in points if p is not None], path, area))
    suffix = f" {unit}" if unit else ""
    y_ticks = [Tick(down(v), number(v) + suffix, "end") for v in ticks]
    return LineChart(
        lines=lines,
        y_ticks=y_ticks,
        x_ticks=_x_ticks(labels, positions, max_labels),
        dots=count <= MAX_DOTS,
        gutter=gutter(y_ticks),
    )


# Horizontal bars ---------------------------------------------------------------------------

# Pixels per bar and between bars; characters of a label drawn inside its bar (the table
# beside the chart has it in full).
HBAR_HEIGHT = 28
HBAR_GAP = 6
HBAR_LABEL = 28


@dataclass(frozen=True)
class HBar:
    label: str  # as drawn: shortened to fit
    name: str  # in full, for its tooltip
    value: float
    text: str  # the figure written at the bar's end
    width: float  # per cent
    y: float  # px, the bar's top
    middle: float  # px, where its texts are centred


@dataclass(frozen=True)
class HBarChart:
    bars: list[HBar]
    height: int
    bar_height: int = HBAR_HEIGHT


def shorten(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, the cut marked with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def hbar_chart(
    labels: Sequence[str],
    values: Sequence[float],
    *,
    texts: Sequence[str] | None = None,
    max_label: int = HBAR_LABEL,
) -> HBarChart:
    """Geometry of a horizontal bar per value, top to bottom, each as long as its share of
    the largest (which spans the chart), its label inside it at the left and its figure
    (``texts``, else the value) at the right: a label gets the chart's whole width, which
    a phone needs for values such as versions and plans."""
    if len(labels) != len(values) or (texts is not None and len(texts) != len(values)):
        raise ValueError("one label per value")
    largest = max(values, default=0)
    locale = speaking()
    written = texts if texts is not None else [number(v, locale=locale) for v in values]
    slot = HBAR_HEIGHT + HBAR_GAP
    return HBarChart(
        bars=[
            HBar(
                label=shorten(label, max_label),
                name=label,
                value=value,
                text=text,
                width=round(value / largest * 100, 4) if largest > 0 else 0.0,
                y=i * slot,
                middle=i * slot + HBAR_HEIGHT / 2,
            )
            for i, (label, value, text) in enumerate(zip(labels, values, written, strict=True))
        ],
        height=max(len(values) * slot - HBAR_GAP, 0),
    )


# Figures -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    """A chart's geometry, its title, the summary a screen reader announces, and (for a
    series) its rows for the table beside it."""

    chart: BarChart | IntervalChart | LineChart | HBarChart
    title: str
    summary: str
    rows: list[Any] = field(default_factory=list)


@functools.cache
def _months(locale: Locale) -> Mapping[int, str]:
    return dict(dates.get_month_names("abbreviated", locale=locale))


def day_label(day: date, *, locale: Locale | None = None) -> str:
    """A day as the charts label it, with the month's short name in ``locale`` (by
    default the request's language): "2 Nov", "2 nov."."""
    return f"{day.day} {_months(locale or speaking())[day.month]}"


def day_labels(days: Iterable[date]) -> list[str]:
    """Days as the charts label them, the request's language looked up once."""
    locale = speaking()
    return [day_label(day, locale=locale) for day in days]
