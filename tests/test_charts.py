"""Chart geometry: the scales and shapes the console's SVG charts are drawn from."""

from __future__ import annotations

import pytest

from app.console.charts import (
    PLOT_BOTTOM,
    PLOT_TOP,
    Interval,
    Span,
    axis,
    bar_chart,
    interval_chart,
    nice_step,
    number,
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


def test_a_group_with_no_estimate_has_a_row_and_nothing_drawn() -> None:
    chart = interval_chart([Interval("Control", None, None, None), Interval("Told", 3, 1, 6)])
    assert chart.rows[0].point is None and chart.rows[0].label == "Control"
    assert chart.rows[1].high == pytest.approx(100)
