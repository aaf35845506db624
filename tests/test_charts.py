"""Chart geometry: the scales and shapes the console's SVG charts are drawn from."""

from __future__ import annotations

import re
from datetime import date

import pytest
from flask_babel import refresh

from app.console.charts import (
    HBAR_GAP,
    HBAR_HEIGHT,
    LABEL_CHARACTER,
    LABEL_ROOM,
    MAX_DOTS,
    PLOT_BOTTOM,
    PLOT_TOP,
    Interval,
    Span,
    axis,
    bar_chart,
    day_label,
    hbar_chart,
    interval_chart,
    line_chart,
    nice_step,
    number,
    shorten,
)


@pytest.mark.parametrize(
    ("span", "count", "step"),
    [(0, 4, 1), (4, 4, 1), (17, 4, 5), (22.5, 4, 10), (0.4, 4, 0.1), (123_456, 4, 50_000)],
)
def test_steps_are_one_two_or_five_times_a_power_of_ten(span, count, step) -> None:
    assert nice_step(span, count) == pytest.approx(step)


def test_an_axis_starts_at_zero_and_reaches_the_maximum() -> None:
    assert axis(17) == [0, 5, 10, 15, 20]
    assert axis(20) == [0, 5, 10, 15, 20]  # a maximum on a step ends there
    assert axis(0) == [0, 1]  # nothing to show still draws an axis
    assert axis(0.4) == [0, 0.1, 0.2, 0.3, 0.4]


def test_an_axis_of_counts_has_no_fractional_steps() -> None:
    assert axis(2, whole=True) == [0, 1, 2]
    assert axis(2) == [0, 0.5, 1, 1.5, 2]


def test_tick_labels_separate_thousands_and_drop_a_zero_fraction() -> None:
    assert [number(v) for v in (0.0, 5.0, 2.5, 150_000.0)] == ["0", "5", "2.5", "150,000"]


def test_bars_fill_their_slots_and_stand_on_the_axis() -> None:
    chart = bar_chart(["1 Oct", "2 Oct", "3 Oct", "4 Oct"], [0, 4, 2, 1])
    assert [bar.label for bar in chart.bars] == ["1 Oct", "2 Oct", "3 Oct", "4 Oct"]
    # Four slots of 25 %, each bar centred in its own.
    assert [bar.x + bar.width / 2 for bar in chart.bars] == pytest.approx([12.5, 37.5, 62.5, 87.5])
    assert all(0 < bar.width < 25 for bar in chart.bars)
    assert all(bar.y + bar.height == pytest.approx(PLOT_BOTTOM) for bar in chart.bars)
    # The tallest bar reaches the top tick (4), the others in proportion.
    assert [bar.height for bar in chart.bars] == pytest.approx(
        [0, PLOT_BOTTOM - PLOT_TOP, (PLOT_BOTTOM - PLOT_TOP) / 2, (PLOT_BOTTOM - PLOT_TOP) / 4]
    )
    assert chart.gutter == LABEL_CHARACTER + LABEL_ROOM  # room for one figure
    assert [(t.label, t.at) for t in chart.y_ticks] == [
        ("0", PLOT_BOTTOM),
        ("1", pytest.approx(PLOT_BOTTOM - 45)),
        ("2", pytest.approx(PLOT_BOTTOM - 90)),
        ("3", pytest.approx(PLOT_BOTTOM - 135)),
        ("4", PLOT_TOP),
    ]
    assert chart.marker is None and chart.band is None


def test_date_labels_are_thinned_and_every_second_is_minor() -> None:
    labels = [f"day {i}" for i in range(29)]
    chart = bar_chart(labels, [1] * 29, max_labels=8)
    shown = [tick.label for tick in chart.x_ticks]
    assert shown == [f"day {i}" for i in range(0, 29, 4)]
    assert [tick.minor for tick in chart.x_ticks] == [False, True] * 4
    # Each label sits under its bar; those at the edges hang inwards.
    assert chart.x_ticks[1].at == pytest.approx(4.5 / 29 * 100, abs=1e-4)
    assert chart.x_ticks[0].anchor == "start" and chart.x_ticks[-1].anchor == "end"
    assert {tick.anchor for tick in chart.x_ticks[1:-1]} == {"middle"}


def test_the_marker_and_band_are_placed_in_bars_and_clipped_to_the_chart() -> None:
    chart = bar_chart(["a"] * 10, [1] * 10, marker=(4.25, "Published"), band=(4.25, 30))
    assert chart.marker is not None
    assert (chart.marker.at, chart.marker.label) == (42.5, "Published")
    assert chart.band == Span(42.5, 57.5)


def test_an_empty_series_draws_an_empty_chart() -> None:
    chart = bar_chart([], [], marker=(0, "Published"), band=(0, 1))
    assert chart.bars == [] and chart.x_ticks == []
    assert chart.marker is None and chart.band is None
    with pytest.raises(ValueError, match="one label per value"):
        bar_chart(["a"], [1, 2])


def test_intervals_share_one_axis_that_covers_every_high_end() -> None:
    chart = interval_chart(
        [Interval("Readers", 5.22, 2.7, 9.11), Interval("Non-readers", 14.5, 10.4, 19.7)]
    )
    assert [t.label for t in chart.x_ticks] == ["0", "5", "10", "15", "20"]
    readers, others = chart.rows
    assert (readers.low, readers.point, readers.high) == pytest.approx((13.5, 26.1, 45.55))
    assert (others.low, others.point, others.high) == pytest.approx((52, 72.5, 98.5))
    assert readers.y < others.y < chart.axis_y < chart.height


def test_an_interval_axis_can_name_its_unit() -> None:
    chart = interval_chart([Interval("pro", 62.1, 58.6, 65.5)], unit="%")
    assert [t.label for t in chart.x_ticks] == ["0 %", "20 %", "40 %", "60 %", "80 %"]


def test_a_group_with_no_estimate_has_a_row_and_nothing_drawn() -> None:
    chart = interval_chart([Interval("Control", None, None, None), Interval("Told", 3, 1, 6)])
    assert chart.rows[0].point is None and chart.rows[0].label == "Control"
    assert chart.rows[1].high == pytest.approx(100)


def path_points(path: str) -> list[list[tuple[float, float]]]:
    """The runs of (x, y) points an SVG path of M and implicit-L commands goes through."""
    return [
        [(float(x), float(y)) for x, y in re.findall(r"([-\d.]+),([-\d.]+)", run)]
        for run in path.split("M")[1:]
    ]


def test_a_line_runs_from_edge_to_edge_on_a_shared_axis() -> None:
    labels = ["1 Oct", "2 Oct", "3 Oct", "4 Oct", "5 Oct"]
    chart = line_chart(labels, [("Exposed", [0, 10, 20, 30, 35]), ("Readers", [0, 2, 5, 9, 12])])
    exposed, readers = chart.lines
    assert (exposed.name, readers.name) == ("Exposed", "Readers")
    # Across: the first point at the left edge, the last at the right, evenly between.
    assert [p.x for p in exposed.points] == [0, 25, 50, 75, 100]
    # Down: one axis for both series, 0 to 40 in steps of 10; 0 on the axis line.
    assert [t.label for t in chart.y_ticks] == ["0", "10", "20", "30", "40"]
    plot = PLOT_BOTTOM - PLOT_TOP
    assert [p.y for p in exposed.points] == pytest.approx(
        [PLOT_BOTTOM - v / 40 * plot for v in (0, 10, 20, 30, 35)]
    )
    assert readers.points[-1].y == pytest.approx(PLOT_BOTTOM - 12 / 40 * plot)
    assert [(p.label, p.value) for p in readers.points] == list(
        zip(labels, [0, 2, 5, 9, 12], strict=True)
    )
    # The path goes through the points; the area closes on the axis under the first and
    # last of them.
    assert path_points(exposed.path) == [[(p.x, p.y) for p in exposed.points]]
    [area] = path_points(exposed.area)
    assert area[0] == (0, PLOT_BOTTOM) and area[-1] == (100, PLOT_BOTTOM)
    assert area[1:-1] == [(p.x, p.y) for p in exposed.points]
    assert exposed.area.endswith("Z")
    assert chart.dots


def test_a_missing_value_breaks_the_line() -> None:
    chart = line_chart(["a", "b", "c", "d"], [("Rate", [None, 40.0, None, 20.5])], unit="%")
    [line] = chart.lines
    assert [p.label for p in line.points] == ["b", "d"]
    assert path_points(line.path) == [
        [(pytest.approx(100 / 3, abs=1e-3), line.points[0].y)],
        [(100, line.points[1].y)],
    ]
    assert len(path_points(line.area)) == 2
    assert [t.label for t in chart.y_ticks] == ["0 %", "10 %", "20 %", "30 %", "40 %"]
    # The labels stand left of the plot, in room for the longest of them.
    assert chart.gutter == len("40 %") * LABEL_CHARACTER + LABEL_ROOM
    assert {t.anchor for t in chart.y_ticks} == {"end"}


def test_one_point_stands_in_the_middle_and_none_draws_an_empty_axis() -> None:
    [line] = line_chart(["3 Oct"], [("Users", [7])]).lines
    assert [(p.x, p.value) for p in line.points] == [(50, 7)]
    empty = line_chart([], [("Users", [])])
    assert empty.lines[0].points == [] and empty.lines[0].path == "" and empty.x_ticks == []
    assert [t.label for t in empty.y_ticks] == ["0", "1"]
    with pytest.raises(ValueError, match="one label per value"):
        line_chart(["a", "b"], [("Users", [1, 2]), ("Before", [1])])


def test_a_long_line_is_labelled_sparsely_and_not_dotted() -> None:
    labels = [f"day {i}" for i in range(MAX_DOTS + 1)]
    chart = line_chart(labels, [("Users", [1.5] * len(labels))], max_labels=6)
    assert not chart.dots
    assert [t.label for t in chart.x_ticks] == [f"day {i}" for i in range(0, 33, 6)]
    assert chart.x_ticks[-1].at == pytest.approx(30 / 32 * 100)
    assert [t.minor for t in chart.x_ticks] == [False, True] * 3
    assert chart.x_ticks[0].anchor == "start"
    # Fractions on the axis when the values have them.
    assert [t.label for t in chart.y_ticks] == ["0", "0.5", "1", "1.5"]


def test_horizontal_bars_are_shares_of_the_largest_top_to_bottom() -> None:
    chart = hbar_chart(
        ["2.4.0", "2.3.1", "a plan whose name is far too long to draw"],
        [300, 150, 0],
        texts=["300 · 67 %", "150 · 33 %", "0"],
    )
    assert [b.width for b in chart.bars] == [100, 50, 0]
    assert [b.y for b in chart.bars] == [0, HBAR_HEIGHT + HBAR_GAP, 2 * (HBAR_HEIGHT + HBAR_GAP)]
    assert chart.height == 3 * HBAR_HEIGHT + 2 * HBAR_GAP
    assert [b.text for b in chart.bars] == ["300 · 67 %", "150 · 33 %", "0"]
    long = chart.bars[2]
    assert long.name == "a plan whose name is far too long to draw"
    assert long.label == "a plan whose name is far to…" and len(long.label) == 28
    assert hbar_chart(["x"], [1234.0]).bars[0].text == "1,234"
    assert hbar_chart([], []).height == 0
    assert hbar_chart(["x", "y"], [0, 0]).bars[0].width == 0
    with pytest.raises(ValueError, match="one label per value"):
        hbar_chart(["x"], [1, 2])


def test_labels_are_shortened_with_an_ellipsis_and_days_written_short() -> None:
    assert shorten("short", 10) == "short"
    assert shorten("exactly10!", 10) == "exactly10!"
    assert shorten("a little too long", 10) == "a little…"
    assert day_label(date(2026, 11, 2)) == "2 Nov"


def test_figures_and_days_are_written_in_the_language_the_console_speaks(app) -> None:
    with app.test_request_context("/console/", headers={"Accept-Language": "fr"}):
        refresh()  # the language a request before chose is kept in the tests' shared ``g``
        # French groups thousands with a narrow no-break space and writes a decimal comma.
        assert [number(v) for v in (150_000.0, 2.5, 3)] == ["150\u202f000", "2,5", "3"]
        assert number(12.25, "+.1f") == "+12,2"
        assert day_label(date(2026, 11, 2)) == "2 nov."
        assert hbar_chart(["x"], [1234.0]).bars[0].text == "1\u202f234"
        assert line_chart(["2 nov."], [("a", [1234.5])]).lines[0].points[0].text == "1\u202f234,5"
    with app.test_request_context("/console/", headers={"Accept-Language": "en"}):
        refresh()
        assert [number(150_000.0), day_label(date(2026, 11, 2))] == ["150,000", "2 Nov"]
