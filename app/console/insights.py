"""Insights: how far a product's notes reached and who read them, from the worker's daily
roll-up (``announcements.insights``): the product's page, a note's page, its comments, and
the exports of its comments and of who has not read it.

Days are UTC calendar days, as the roll-up counts them. Each chart is drawn by ``charts``
with its figures in a table beside it; the range picker is a GET form, so a range can be
linked to, and a range or segment the domain refuses is said beside the picker (422).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from flask import (
    current_app,
    g,
    render_template,
    request,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext
from wtforms.fields.choices import SelectChoice

from announcements import insights, reads, rollups
from announcements.audit import owned
from announcements.errors import ValidationFailed
from announcements.models import Note, Product, Role, utcnow
from app.auth import current_member, role_required
from app.console import bp, charts
from app.console.charts import Figure, day_label, day_labels, number, speaking
from app.console.common import csv_download, refused
from app.console.forms import InsightsRangeForm, NonReadersForm
from app.converters import page_arg
from app.extensions import db

# The range the product's page shows unless asked, and the ranges offered in one click.
DEFAULT_DAYS = 28
PRESET_DAYS = (7, 28, 90)
DAY_TEXT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
COMPARISONS = ("previous", "release")

# How the pages name the built-in segments and the channels a read can come from; any
# other name is shown as the product sends it.
SEGMENT_LABELS = {"app_version": lazy_gettext("App version"), "locale": lazy_gettext("Language")}
CHANNEL_LABELS = {
    "widget": lazy_gettext("Widget panel"),
    "popup": lazy_gettext("Popup"),
    "email": lazy_gettext("E-mail, read on the web"),
    "help": lazy_gettext("Before contacting support"),
    "agent": lazy_gettext("Sent by an agent"),
}


@bp.app_template_filter("rate_percent")
def rate_percent(value: float | None) -> str:
    """A fraction as the Insights pages write a rate: "42.5 %", a dash for none."""
    if value is None:
        return "—"
    return _("%(percent)s %%", percent=number(value * 100, ".1f"))


@bp.app_template_filter("time_to_read")
def time_to_read(value: timedelta | None) -> str:
    """A time to read in the two largest units that matter: "45 s", "3 min", "2 h 5 min",
    "3 d 4 h"; a dash for none.

    Not ``monitoring.describe_span``, which says "3 days" for 3 days and 23 hours: the page
    says "9 in 10 read within" it, which would then be false by most of a day."""
    if value is None:
        return "—"
    seconds = int(value.total_seconds())
    if seconds < 60:
        return _("%(seconds)s s", seconds=seconds)
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if hours == 0:
        return _("%(minutes)s min", minutes=minutes)
    if days == 0:
        if minutes % 60:
            return _("%(hours)s h %(minutes)s min", hours=hours, minutes=minutes % 60)
        return _("%(hours)s h", hours=hours)
    if hours % 24:
        return _("%(days)s d %(hours)s h", days=days, hours=hours % 24)
    return _("%(days)s d", days=days)


def segment_label(name: str) -> str:
    """A segment as the pages name it."""
    return str(SEGMENT_LABELS.get(name, name))


def channel_label(name: str) -> str:
    """A read's channel as the pages name it."""
    return str(CHANNEL_LABELS.get(name, name))


@bp.app_context_processor
def _insights_helpers() -> dict[str, Any]:
    """The names, day labels, figures and rules the Insights templates write; the days and
    figures in the request's language, looked up once for the page's hundreds of them."""
    locale = speaking()
    return {
        "segment_label": segment_label,
        "channel_label": channel_label,
        "day_label": functools.partial(day_label, locale=locale),
        "number": functools.partial(number, locale=locale),
        "fewest_users": insights.MIN_SEGMENT_USERS,
    }


# The range picker ---------------------------------------------------------------------------


def _range_form(product: Product) -> InsightsRangeForm:
    """The picker as asked in the query string, its segments those the roll-up counts."""
    form = InsightsRangeForm(request.args)
    names = rollups.segments(db.session(), product)
    form.by.choices = [
        SelectChoice("", _("Nothing")),
        *(SelectChoice(name, segment_label(name)) for name in names),
    ]
    return form


def _day(text: str | None) -> date | None:
    """A day as the date input sends it (2026-10-01); None when blank; ValueError else."""
    text = (text or "").strip()
    if not text:
        return None
    if not DAY_TEXT.fullmatch(text):
        raise ValueError(text)
    return date.fromisoformat(text)


@dataclass(frozen=True)
class Asked:
    """The range and segment the picker asked for; a date left blank is None."""

    start: date | None
    end: date | None
    by: str | None


def _asked(form: InsightsRangeForm) -> Asked:
    """The picker's dates and segment; ValidationFailed naming a date that is none, or a
    range the domain would refuse: checked here, before a default range is counted back
    from its end (from 5 January of year 1, 27 days back is off the calendar)."""
    days, errors = {}, {}
    for name in ("start", "end"):
        try:
            days[name] = _day(form[name].data)
        except ValueError:
            errors[name] = _("Enter a day such as %(example)s.", example="2026-10-01")
    if errors:
        raise ValidationFailed(errors)
    insights.check_range(days["start"], days["end"])
    return Asked(days["start"], days["end"], form.by.data or None)


def _show_range(form: InsightsRangeForm, shown: insights.Range) -> None:
    """Fill the picker's dates with the range shown (a default, or a release's window)."""
    form.start.data, form.end.data = shown.start.isoformat(), shown.end.isoformat()


# Figures -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stat:
    """A headline figure, and when comparing, the other range's and the change."""

    key: str
    label: str
    value: str
    previous: str | None = None
    change: str | None = None
    # "up", "down" or "same": how the change is coloured.
    direction: str | None = None
    # A rate whose 95 % interval is written under the figure.
    interval: insights.Rate | None = None


def _stat(
    key: str,
    label: str,
    value: float | None,
    *other: float | None,
    fraction: bool = False,
    interval: insights.Rate | None = None,
) -> Stat:
    """A figure and, when comparing, the other range's (``other``) and the change: counts
    written whole, fractions as rates; a rate's change in points, a count's in per cent;
    ``interval``'s ends are written under it."""

    def written(v: float | None) -> str:
        return rate_percent(v) if fraction else "—" if v is None else number(v, ",.0f")

    if not other:
        return Stat(key, label, written(value), interval=interval)
    [previous] = other
    if previous is None or value is None:
        return Stat(key, label, written(value), written(previous), interval=interval)
    difference = value - previous
    direction = "up" if difference > 0 else "down" if difference < 0 else "same"
    if direction == "same":
        change = _("no change")
    elif fraction:
        change = _("%(change)s points", change=number(difference * 100, "+.1f"))
    elif previous:
        change = _("%(percent)s %%", percent=number(difference / previous * 100, "+.0f"))
    else:
        change = _("up from none")
    return Stat(key, label, written(value), written(previous), change, direction, interval)


def _share(part: int, whole: int) -> float | None:
    """``part`` as a fraction of ``whole``; None of nothing."""
    return part / whole if whole else None


def _aligned(values: Sequence[float], count: int) -> list[float | None]:
    """``values`` laid beside a series of ``count`` points, day by day from the start: cut
    or padded with gaps (a release's window is rarely as long as the one before)."""
    return [*values[:count], *([None] * (count - len(values)))]


@dataclass(frozen=True)
class Period:
    """A range's figures and what the page calls it: a release by its name, any other
    range by its dates."""

    figures: insights.ProductInsights
    name: str

    @property
    def label(self) -> str:
        dates = self.figures.range.label
        return dates if self.name == dates else f"{self.name} ({dates})"


def compared_line(
    current: Period,
    previous: Period | None,
    series: Callable[[insights.ProductInsights], Sequence[tuple[date, int]]],
) -> charts.LineChart:
    """A line of a range's ``series`` (each day with its figure) and, when comparing, the
    other range's beside it, day for day from the start."""
    shown = series(current.figures)
    lines: list[tuple[str, Sequence[float | None]]] = [(current.name, [n for _, n in shown])]
    if previous is not None:
        before = [n for _, n in series(previous.figures)]
        lines.append((previous.name, _aligned(before, len(shown))))
    return charts.line_chart(day_labels(day for day, _ in shown), lines)


def weekly_figure(current: Period, previous: Period | None) -> Figure:
    """Weekly active users, with the other range's beside them, day for day, when
    comparing."""
    points = current.figures.weekly_active
    title = _("Weekly active users")
    chart = compared_line(
        current, previous, lambda figures: [(p.week_end, p.users) for p in figures.weekly_active]
    )
    if not points:
        return Figure(chart, title, _("%(title)s: no users seen in the range.", title=title))
    peak = max(points, key=lambda p: p.users)
    facts = {
        "title": title,
        "first": day_label(points[0].week_end),
        "last": day_label(points[-1].week_end),
        "end": number(points[-1].users),
        "most": number(peak.users),
        "peak": day_label(peak.week_end),
    }
    if previous is None or not previous.figures.weekly_active:
        summary = _(
            "%(title)s, each point the users the widget saw in the 7 days to that day, "
            "%(first)s to %(last)s: %(end)s at the end, the most %(most)s on %(peak)s.",
            **facts,
        )
    else:
        summary = _(
            "%(title)s, each point the users the widget saw in the 7 days to that day, "
            "%(first)s to %(last)s: %(end)s at the end, the most %(most)s on %(peak)s; "
            "%(then)s at the end of %(period)s.",
            **facts,
            then=number(previous.figures.weekly_active[-1].users),
            period=previous.label,
        )
    return Figure(chart, title, summary)


def subscribers_figure(current: Period, previous: Period | None) -> Figure:
    """Confirmed subscribers over the range, with the other range's when comparing."""
    points = current.figures.subscribers
    title = _("Subscribers")
    chart = compared_line(
        current, previous, lambda figures: [(p.day, p.total) for p in figures.subscribers]
    )
    if not points:
        return Figure(chart, title, _("%(title)s: none in the range.", title=title))
    summary = _(
        "%(title)s each day, %(first)s to %(last)s: %(start)s to %(end)s; %(joined)s confirmed "
        "and %(left)s unsubscribed in the range.",
        title=title,
        first=day_label(points[0].day),
        last=day_label(points[-1].day),
        start=number(points[0].total),
        end=number(points[-1].total),
        joined=number(sum(p.confirmed for p in points)),
        left=number(sum(p.unsubscribed for p in points)),
    )
    return Figure(chart, title, summary)


def share_figure(title: str, rows: Sequence[tuple[str, int, float | None]]) -> Figure:
    """Horizontal bars of (label, count, share of the whole) rows, largest first as given,
    each written as "1,234 · 45.0 %"."""
    texts = [f"{number(count)} · {rate_percent(share)}" for _label, count, share in rows]
    chart = charts.hbar_chart([row[0] for row in rows], [row[1] for row in rows], texts=texts)
    said = "; ".join(f"{row[0]}: {text}" for row, text in zip(rows, texts, strict=True))
    return Figure(chart, title, f"{title}. {said or _('None yet')}.")


@dataclass(frozen=True)
class Ranked:
    """A note in a ranking, with how long its bar is (per cent of the column) and the
    figure written beside it."""

    note: insights.NoteRank
    bar: float
    figure: str


def _ranked(notes: Sequence[insights.NoteRank], measure: str) -> list[Ranked]:
    """Notes with bars: a read rate's is the rate itself; reactions', a share of the most."""
    if measure == "rate":
        return [
            Ranked(n, round(min(n.rate.value or 0, 1) * 100, 2), rate_percent(n.rate.value))
            for n in notes
        ]
    most = max((n.reactions for n in notes), default=0)
    return [
        Ranked(n, round(n.reactions / most * 100, 2) if most else 0, number(n.reactions))
        for n in notes
    ]


@dataclass(frozen=True)
class ProductPage:
    """Everything the product's page shows of one range, and of the one compared."""

    shown: insights.ProductInsights
    previous: insights.ProductInsights | None
    label: str
    previous_label: str | None
    # The range's last day counted (today, for a range that ends later).
    last: date
    stats: list[Stat]
    weekly: Figure
    versions: Figure
    segment: Figure | None
    subscribers: Figure
    by_rate: list[Ranked]
    by_reactions: list[Ranked]


def _totals(figures: insights.ProductInsights) -> dict[str, float | None]:
    """The figures of a range that the page compares: weekly active users at its end, the
    notes published in it (every one, not only the 20 ranked) with their readers and read
    rate, e-mails, subscribers at its end."""
    return {
        "weekly": figures.weekly_active[-1].users if figures.weekly_active else None,
        "notes": figures.totals.notes,
        "readers": figures.totals.readers,
        "rate": figures.totals.rate.value,
        "sent": sum(e.sent for e in figures.email),
        "subscribers": figures.subscribers[-1].total if figures.subscribers else None,
    }


def product_page(period: Period, other: Period | None) -> ProductPage:
    """Everything the product's page draws, from one range's figures and the other's."""
    shown, previous = period.figures, other.figures if other else None
    now = _totals(shown)
    before = _totals(previous) if previous else None

    def stat(
        label: str, key: str, *, fraction: bool = False, interval: insights.Rate | None = None
    ) -> Stat:
        compared = () if before is None else (before[key],)
        return _stat(key, label, now[key], *compared, fraction=fraction, interval=interval)

    stats = [
        stat(_("Weekly active"), "weekly"),
        stat(_("Notes published"), "notes"),
        stat(_("Their readers"), "readers"),
        stat(_("Read rate"), "rate", fraction=True, interval=shown.totals.rate),
        stat(_("E-mails sent"), "sent"),
        stat(_("Subscribers"), "subscribers"),
    ]
    last = shown.weekly_active[-1].week_end if shown.weekly_active else shown.range.end
    end = day_label(last)
    return ProductPage(
        shown=shown,
        previous=previous,
        label=period.label,
        previous_label=other.label if other else None,
        last=last,
        stats=stats,
        weekly=weekly_figure(period, other),
        versions=share_figure(
            _("Versions in use, the 7 days to %(day)s", day=end),
            [(v.version, v.users, v.share) for v in shown.versions],
        ),
        segment=(
            share_figure(
                _(
                    "Active users by %(segment)s, the 7 days to %(day)s",
                    segment=segment_label(shown.segment),
                    day=end,
                ),
                [(row.value, row.users, row.share) for row in shown.active_by_segment],
            )
            if shown.segment
            else None
        ),
        subscribers=subscribers_figure(period, other),
        by_rate=_ranked(shown.by_rate, "rate"),
        by_reactions=_ranked(shown.by_reactions, "reactions"),
    )


# The product's page -------------------------------------------------------------------------


def _ranges(
    product: Product, asked: Asked, compare: str, now: datetime
) -> tuple[insights.Range, insights.Range | None]:
    """The range to show and, for "release", the one to compare it with, each named after
    its release; a range of dates is left unnamed (""), for the domain's label. The
    previous period is worked out from the range shown."""
    if compare not in ("", *COMPARISONS):
        raise ValidationFailed(
            {"compare": _("Compare with the previous period or with the previous release.")}
        )
    if compare == "release":
        windows = insights.releases(db.session(), product, now=now)
        if len(windows) < 2:
            raise ValidationFailed({"compare": _("There is no earlier release to compare with.")})
        return windows[0], windows[1]
    span, today = timedelta(days=DEFAULT_DAYS - 1), now.date()
    if asked.start is None:
        end = asked.end or today
        return insights.Range(end - span, end, ""), None
    return insights.Range(asked.start, asked.end or today, ""), None


def _period(product: Product, window: insights.Range, by: str | None, now: datetime) -> Period:
    """The product's figures over ``window``, named after it."""
    figures = insights.product_insights(
        db.session(), product, start=window.start, end=window.end, by=by, now=now
    )
    return Period(figures, window.label or figures.range.label)


@bp.get("/p/<slug>/insights", endpoint="insights")
@role_required(Role.VIEWER)
def product_insights(product: Product) -> ResponseReturnValue:
    """What the product's notes reached: weekly active users, versions in use, notes by
    read rate and by reactions, e-mail, subscribers; a range, a segment, a comparison."""
    form = _range_form(product)
    compare = request.args.get("compare", "")
    now = utcnow()
    page = None
    with refused(form):
        asked = _asked(form)
        window, other = _ranges(product, asked, compare, now)
        shown = _period(product, window, asked.by, now)
        if compare == "previous":
            other = insights.previous_range(shown.figures.range)
        # The other range is compared in its totals only: no segment breakdown.
        previous = _period(product, other, None, now) if other is not None else None
        _show_range(form, shown.figures.range)
        page = product_page(shown, previous)
    releases = insights.releases(db.session(), product, now=now)
    return render_template(
        "console/insights.html",
        product=product,
        form=form,
        page=page,
        compare=compare if page else "",
        can_compare_releases=len(releases) >= 2,
        presets=[(days, now.date() - timedelta(days=days - 1), now.date()) for days in PRESET_DAYS],
    ), (200 if page else 422)


# A note's page ------------------------------------------------------------------------------


def cumulative_figure(daily: Sequence[insights.DayPoint]) -> Figure:
    """Users exposed to the note and its readers, counted up day by day since publication."""
    title = _("Exposed users and readers since publication")
    chart = charts.line_chart(
        day_labels(p.day for p in daily),
        [
            (_("Exposed"), [p.exposed for p in daily]),
            (_("Readers"), [p.readers for p in daily]),
        ],
    )
    if not daily:
        return Figure(chart, title, _("%(title)s: nobody yet.", title=title))
    last = daily[-1]
    summary = _(
        "%(title)s, %(first)s to %(last)s: %(exposed)s exposed and %(readers)s readers by the "
        "end, a read rate of %(rate)s.",
        title=title,
        first=day_label(daily[0].day),
        last=day_label(last.day),
        exposed=number(last.exposed),
        readers=number(last.readers),
        rate=rate_percent(last.rate.value),
    )
    return Figure(chart, title, summary)


def rate_figure(daily: Sequence[insights.DayPoint]) -> Figure:
    """The read rate as it grew: readers so far among those exposed so far, in per cent."""
    title = _("Read rate since publication")
    values = [None if p.rate.value is None else round(p.rate.value * 100, 2) for p in daily]
    # Half a card wide on a desktop: fewer dates fit under it.
    chart = charts.line_chart(
        day_labels(p.day for p in daily), [(_("Read rate"), values)], unit="%", max_labels=5
    )
    if not daily:
        return Figure(chart, title, _("%(title)s: nobody exposed yet.", title=title))
    summary = _(
        "%(title)s, %(first)s to %(last)s: %(rate)s at the end.",
        title=title,
        first=day_label(daily[0].day),
        last=day_label(daily[-1].day),
        rate=rate_percent(daily[-1].rate.value),
    )
    return Figure(chart, title, summary)


def channel_figure(found: insights.NoteInsights) -> Figure:
    """Readers by the channel of their first read."""
    return share_figure(
        _("Reads by channel"),
        [
            (channel_label(channel), count, _share(count, found.readers))
            for channel, count in found.reads_by_channel.items()
        ],
    )


@dataclass(frozen=True)
class ReactionDay:
    """A day's reactions, for the table under their chart."""

    label: str
    counts: dict[str, int]
    total: int


def reactions_figure(daily: Sequence[tuple[date, dict[str, int]]]) -> Figure:
    """Reactions given each day, all kinds together as bars; the table splits them."""
    title = _("Reactions per day")
    labels = day_labels(day for day, _ in daily)
    rows = [
        ReactionDay(label, counts, sum(counts.values()))
        for label, (_day, counts) in zip(labels, daily, strict=True)
    ]
    chart = charts.bar_chart([r.label for r in rows], [r.total for r in rows], max_labels=5)
    if not rows:
        return Figure(chart, title, _("%(title)s: none yet.", title=title), rows)
    busiest = max(rows, key=lambda r: r.total)
    summary = _(
        "%(title)s, %(first)s to %(last)s: %(total)s in all, the most, %(most)s, on %(busiest)s.",
        title=title,
        first=rows[0].label,
        last=rows[-1].label,
        total=number(sum(r.total for r in rows)),
        most=number(busiest.total),
        busiest=busiest.label,
    )
    return Figure(chart, title, summary, rows)


def segment_figure(found: insights.NoteInsights) -> Figure:
    """The read rate per segment value, with its 95 % interval, in per cent."""
    title = _("Read rate by %(segment)s", segment=segment_label(found.segment or ""))
    intervals, said = [], []
    for row in found.segments:
        r = row.rate
        if r.value is None:
            short = text = _("%(value)s: nobody exposed", value=row.value)
        else:
            short = f"{row.value}: {rate_percent(r.value)}"
            text = _(
                "%(value)s (95 %% CI %(low)s–%(high)s), %(readers)s of %(exposed)s",
                value=short,
                low=rate_percent(r.low),
                high=rate_percent(r.high),
                readers=number(row.readers),
                exposed=number(row.exposed),
            )
        said.append(text)
        percents = [None if v is None else v * 100 for v in (r.value, r.low, r.high)]
        intervals.append(charts.Interval(charts.shorten(short, 40), *percents))
    chart = charts.interval_chart(intervals, unit="%")
    return Figure(chart, title, f"{title}. {'. '.join(said)}.")


@dataclass(frozen=True)
class NotePage:
    """Everything the note's page shows."""

    found: insights.NoteInsights
    cumulative: Figure
    rate: Figure
    channels: Figure
    reactions: Figure
    segment: Figure | None


def note_page(found: insights.NoteInsights) -> NotePage:
    """Everything the note's page draws, from its figures."""
    return NotePage(
        found=found,
        cumulative=cumulative_figure(found.daily),
        rate=rate_figure(found.daily),
        channels=channel_figure(found),
        reactions=reactions_figure(found.reactions_daily),
        segment=segment_figure(found) if found.segment else None,
    )


def _export_form(note: Note) -> NonReadersForm:
    """The non-readers' export, offering the attributes the domain can add as columns."""
    form = NonReadersForm()
    form.attribute.choices = [
        SelectChoice(name, segment_label(name))
        for name in insights.export_attributes(db.session(), note)
    ]
    return form


def _render_note(
    product: Product,
    note: Note,
    form: InsightsRangeForm,
    export: NonReadersForm | None,
    *,
    refused_export: bool = False,
) -> ResponseReturnValue:
    """The note's page: its figures for the range asked (or the form's message, 422), its
    latest comments, and the export form for editors (422 when it refused an export)."""
    now = utcnow()
    page = None
    with refused(form):
        asked = _asked(form)
        found = insights.note_insights(
            db.session(), note, by=asked.by, start=asked.start, end=asked.end, now=now
        )
        page = note_page(found)
    latest = insights.comments(db.session(), note, per_page=3)
    return render_template(
        "console/insights_note.html",
        product=product,
        note=note,
        form=form,
        page=page,
        export=export,
        latest=latest,
        reactions=reads.REACTIONS,
    ), (200 if page and not refused_export else 422)


@bp.get("/p/<slug>/notes/<id:note_id>/insights", endpoint="insights_note")
@role_required(Role.VIEWER)
def note_insights(product: Product, note_id: int) -> ResponseReturnValue:
    """One note: who it reached and who read it, day by day, how fast, through which
    channel, by segment; its reactions and comments; for editors, who has not read it."""
    note = owned(db.session(), Note, product, note_id)
    export = _export_form(note) if g.role.allows(Role.EDITOR) else None
    return _render_note(product, note, _range_form(product), export)


def pseudonym_key(product: Product) -> bytes:
    """The key the export's pseudonyms are made with: one per product, from the app's
    secret, so a user keeps their pseudonym across exports of one product, and cannot be
    followed from one product's exports to another's. Made from the product's id, never
    used again: a slug can change, and a new product can take the old one, and with it
    the pseudonyms of the first product's users."""
    secret = current_app.config["SECRET_KEY"]
    secret = secret if isinstance(secret, bytes) else str(secret).encode()
    message = f"tidings-pseudonym:{product.id}".encode()
    return hmac.new(secret, message, hashlib.sha256).digest()


@bp.post("/p/<slug>/notes/<id:note_id>/non-readers.csv", endpoint="insights_non_readers_csv")
@role_required(Role.EDITOR)
def non_readers_csv(product: Product, note_id: int) -> ResponseReturnValue:
    """The users the note reached who have not read it, with the attributes ticked and
    their ids or pseudonyms: the people a campaign would follow up with."""
    note = owned(db.session(), Note, product, note_id)
    export = _export_form(note)
    if export.validate_on_submit():
        with refused(export):
            now = utcnow()
            lines = insights.non_readers_csv(
                db.session(),
                note,
                export.attribute.data or [],
                pseudonymise=bool(export.pseudonymise.data),
                key=pseudonym_key(product),
                by=current_member(),
                now=now,
            )
            db.session.commit()  # the export is in the audit log before a line goes out
            return csv_download(lines, f"{product.slug}-note-{note.id}-not-read-{now:%Y-%m-%d}.csv")
    return _render_note(product, note, _range_form(product), export, refused_export=True)


# Comments -------------------------------------------------------------------------------------


def _comment_filters(values: Mapping[str, str]) -> tuple[str, str | None]:
    """The comments' search text and reaction, as asked in ``values`` (the query string,
    or the export's form): the domain refuses a search too long or a reaction that is
    none."""
    return values.get("q", ""), values.get("reaction") or None


@bp.get("/p/<slug>/notes/<id:note_id>/comments", endpoint="insights_comments")
@role_required(Role.VIEWER)
def note_comments(product: Product, note_id: int) -> ResponseReturnValue:
    """Every comment left on the note with a reaction, newest first, searched and filtered."""
    note = owned(db.session(), Note, product, note_id)
    query, reaction = _comment_filters(request.args)
    listing = None
    with refused():
        listing = insights.comments(
            db.session(), note, query=query, reaction=reaction, page=page_arg()
        )
    return render_template(
        "console/insights_comments.html",
        product=product,
        note=note,
        listing=listing,
        filters={"q": query, "reaction": reaction or ""},
        reactions=reads.REACTIONS,
        max_search=insights.MAX_SEARCH_LENGTH,
    ), (200 if listing else 422)


@bp.post("/p/<slug>/notes/<id:note_id>/comments.csv", endpoint="insights_comments_csv")
@role_required(Role.EDITOR)
def note_comments_csv(product: Product, note_id: int) -> ResponseReturnValue:
    """The comments as the page lists them (search and reaction applied), as CSV. A POST
    with the form's CSRF token, as it writes to the audit log: a link on another site
    could otherwise put an export there in an editor's name."""
    note = owned(db.session(), Note, product, note_id)
    query, reaction = _comment_filters(request.form)
    now = utcnow()
    lines = insights.comments_csv(
        db.session(), note, query=query, reaction=reaction, by=current_member(), now=now
    )
    db.session.commit()  # the export is in the audit log before a line goes out
    return csv_download(lines, f"{product.slug}-note-{note.id}-comments-{now:%Y-%m-%d}.csv")
