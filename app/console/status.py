"""Console → Status (owners): is Tidings doing its work for this product? The worker, the
job queue, the mail, the webhooks, the last scheduled note, the last retention run, the
widget's traffic of the last hour, and the alerts the owners were sent; what needs
attention first.

Opening the page runs the web's watch once (``health.watch_logged``): an owner who comes
to look because something seems wrong sees the alert, and sets off its mail, even when the
worker that would have is the thing that died. A watch that fails is logged and the page
drawn all the same: it is where the owner finds out what is wrong.

Mail and webhook errors are this product's only: an error names its recipient, and the
counts of every product are all the page says about the others. For the same reason an
alert is shown by what it is and when, never by its stored detail, which quotes whichever
product's message was stuck.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import render_template
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext, ngettext

from announcements import monitoring, retention
from announcements.models import Product, RetentionRun, Role, utcnow
from app import health
from app.auth import role_required
from app.console import bp, charts, timezones
from app.console.charts import Figure, number
from app.extensions import db
from app.mail import jobs

# What each kind of alert is called in the history (its mail's subject says more).
ALERT_NAMES = {
    monitoring.AlertKind.WORKER_SILENT: lazy_gettext("Worker silent"),
    monitoring.AlertKind.MAIL_FAILING: lazy_gettext("Mail failing"),
}


# The widget's tile turns amber when, with 95 % confidence, more than this share of its
# requests failed: a few errors in a quiet hour are noise, one request in a hundred
# failing is something its users notice.
WIDGET_ERRORS_NOTICED = 0.01


@dataclass(frozen=True)
class Attention:
    """Something at the top of the page: ``level`` "error" (nothing goes out) or
    "warning" (something is late or failing), a short ``title`` and what it means."""

    level: str
    title: str
    text: str


@dataclass(frozen=True)
class MinuteRow:
    label: str
    requests: int
    errors: int


@bp.app_template_filter("latency")
def latency(milliseconds: float | None) -> str:
    """A p95 latency as the bucket bound it is: "≤ 50 ms", "≤ 2.5 s", "over 5 s"."""
    if milliseconds is None:
        return "—"
    if math.isinf(milliseconds):
        return _("over %(seconds)s s", seconds=number(monitoring.LATENCY_BUCKETS_MS[-1] / 1000))
    if milliseconds >= 1000:
        return f"≤ {number(milliseconds / 1000)} s"
    return f"≤ {number(milliseconds)} ms"


@bp.app_template_filter("error_percent")
def error_percent(value: float | None, unit: bool = True) -> str:
    """A share of errors: two significant figures under 1 %, where the one decimal of the
    Insights pages' rates would say "0.0 %" of a rate that matters; a dash for none.
    ``unit=False`` leaves out the "%", for the low end of a range."""
    if value is None:
        return "—"
    percent = value * 100
    written = number(percent, ".2g" if percent < 1 else ".1f")
    return f"{written} %" if unit else written


@bp.app_template_filter("worker_process")
def worker_process(name: str) -> tuple[str, str]:
    """A worker's name (``outbox.worker_name()``: host, pid and start) as its host and
    "pid N", the two an operator looks for; another name whole, with nothing beside."""
    host, _colon, rest = name.rpartition(":")
    host, _colon, pid = host.rpartition(":")
    if host and pid.isdigit() and rest.isdigit():
        return host, _("pid %(pid)s", pid=pid)
    return name, ""


def span(length: timedelta) -> str:
    """``monitoring.describe_span`` in the member's language: its "s", "min" and "h" are
    symbols every language writes so; the days it gives from 48 hours on are words."""
    if length >= timedelta(hours=48):
        return ngettext("%(num)s day", "%(num)s days", length.days)
    return monitoring.describe_span(length)


def ago(status: monitoring.Status, moment: datetime) -> str:
    """How long before the page's ``now`` a time was, in words: "40 s ago"."""
    return _("%(span)s ago", span=span(max(status.now - moment, timedelta(0))))


def when(status: monitoring.Status, moment: datetime) -> str:
    """A time in the member's zone: the time alone on the page's day, the day too before."""
    same_day = timezones.same_day(moment, status.now)
    return timezones.local(moment, "%H:%M" if same_day else "%d %b, %H:%M")


def attention(status: monitoring.Status) -> list[Attention]:
    """What needs the owner first, most serious first: nothing is sent without a worker;
    then mail, webhooks, and data that stopped arriving."""
    items = []
    worker = status.worker
    open_alerts = {alert.kind: alert for alert in status.open_alerts}
    told = _told(status, open_alerts.get(monitoring.AlertKind.WORKER_SILENT))
    if worker.last_beat_at is None:
        items.append(
            Attention(
                "error",
                _("No worker has run yet"),
                _(
                    "Nothing is e-mailed, no webhook is called and scheduled e-mails wait "
                    "until one runs: start it with flask worker."
                ),
            )
        )
    elif not worker.alive:
        items.append(
            Attention(
                "error",
                _("The worker is silent"),
                _(
                    "Its last heartbeat was %(ago)s, at %(time)s. Until a worker runs, no mail "
                    "or webhook goes out.",
                    ago=ago(status, worker.last_beat_at),
                    time=when(status, worker.last_beat_at),
                )
                + told,
            )
        )
    pause = status.outbox.pause
    if pause is not None:
        items.append(
            Attention(
                "error",
                _("Sending is paused"),
                _(
                    "The mail server has refused us since %(since)s: %(error)s. The next try "
                    "is at %(retry)s; the messages wait, and no subscriber is counted as "
                    "bounced for it.",
                    since=when(status, pause.since),
                    error=pause.error,
                    retry=when(status, pause.retry_at),
                ),
            )
        )
    failing = open_alerts.get(monitoring.AlertKind.MAIL_FAILING)
    if failing is not None and failing.is_failing:
        items.append(
            Attention(
                "error" if failing.alerted_at else "warning",
                _("Mail is failing"),
                _(
                    "Messages have waited after failed attempts, and none has been sent, "
                    "since %(time)s.",
                    time=when(status, failing.failing_since),
                )
                + _told(status, failing),
            )
        )
    webhooks = status.webhooks
    if webhooks.failing:
        items.append(
            Attention(
                "warning",
                _("Webhook calls are failing"),
                ngettext(
                    "%(count)s call of the last 24 hours is failing: %(retrying)s to be tried "
                    "again, %(failed)s given up on.",
                    "%(count)s calls of the last 24 hours are failing: %(retrying)s to be "
                    "tried again, %(failed)s given up on.",
                    webhooks.failing,
                    count=number(webhooks.failing),
                    retrying=number(webhooks.retrying),
                    failed=number(webhooks.failed),
                ),
            )
        )
    items += [
        Attention("warning", _("Data stopped arriving"), data_warning(status, warning))
        for warning in status.warnings
    ]
    return items


def retention_attention(status: monitoring.Status, last: RetentionRun | None) -> list[Attention]:
    """The warning that the nightly retention run is late (``retention.overdue``)."""
    if not retention.overdue(last, status.worker, now=status.now):
        return []
    if last is None:
        said = _("It has never run, though a worker has been up for over a day.")
    else:
        said = _(
            "Its last run began %(ago)s, at %(time)s.",
            ago=ago(status, last.started_at),
            time=when(status, last.started_at),
        )
    return [
        Attention(
            "warning",
            _("Retention has not run"),
            said
            + " "
            + _(
                "Until it does, end users, subscribers and delivery details past their "
                "periods are kept. The worker's log says why; flask retention run runs it now."
            ),
        )
    ]


def data_warning(status: monitoring.Status, warning: monitoring.DataWarning) -> str:
    """What a warning that data stopped arriving says, its times in the member's zone."""
    if isinstance(warning, monitoring.WidgetSilent):
        return _(
            "No widget request in the last %(span)s, though the widget had requests at this "
            "time of day on %(usual)s of the previous %(days)s days. Check that the host app "
            "still loads the widget with this product's key.",
            span=span(warning.window),
            usual=warning.usual_days,
            days=warning.of_days,
        )
    return _(
        "No ticket from %(desk)s (%(source)s) since %(time)s, %(ago)s: longer than any gap "
        "between its tickets in the %(days)s days before (at most %(gap)s). Check the "
        "connection in the help desk.",
        desk=warning.desk,
        source=warning.source,
        time=when(status, warning.last_ticket_at),
        ago=ago(status, warning.last_ticket_at),
        days=warning.history.days,
        gap=span(warning.longest_gap),
    )


def _told(status: monitoring.Status, alert: monitoring.AlertRow | None) -> str:
    """Whether the owners were e-mailed about an open alert, or when they will be."""
    if alert is None:
        return ""
    if alert.alerted_at is not None:
        return " " + _("The owners were e-mailed at %(time)s.", time=when(status, alert.alerted_at))
    due = alert.failing_since + monitoring.THRESHOLDS[monitoring.AlertKind(alert.kind)]
    return " " + _("The owners are e-mailed at %(time)s if it lasts.", time=when(status, due))


def tiles(status: monitoring.Status) -> dict[str, str]:
    """The state of each tile at the top, drawn as its dot: "ok", "warning", "error", or
    "unknown" where there is nothing to judge by."""
    worker = "ok" if status.worker.alive else "error"
    mail = status.outbox.product
    traffic = status.traffic
    if status.outbox.pause is not None:
        mail_state = "error"
    else:
        mail_state = "warning" if mail.failed or mail.retrying else "ok"
    if not traffic.requests:
        widget = "unknown"
    else:
        low = traffic.error_rate.low or 0.0
        widget = "warning" if low > WIDGET_ERRORS_NOTICED else "ok"
    return {
        "worker": worker,
        "jobs": "unknown" if status.jobs_waiting is None else "ok",
        "mail": mail_state,
        "widget": widget,
    }


def traffic_figure(traffic: monitoring.Traffic) -> Figure:
    """The widget's requests of each minute of the last hour as bars, labelled in the
    member's zone, with the same minutes as rows for the table beside the chart."""
    rows = [
        MinuteRow(timezones.local(m.minute, "%H:%M"), m.requests, m.errors) for m in traffic.minutes
    ]
    title = _("Widget requests per minute, last hour")
    chart = charts.bar_chart([r.label for r in rows], [r.requests for r in rows], max_labels=6)
    if not traffic.requests:
        return Figure(chart, title, _("%(title)s: no requests.", title=title), rows)
    busiest = max(rows, key=lambda r: r.requests)
    summary = _(
        "%(title)s, %(first)s to %(last)s (%(zone)s): %(requests)s requests, %(errors)s "
        "answered with an error; the most in one minute, %(most)s, at %(busiest)s.",
        title=title,
        first=rows[0].label,
        last=rows[-1].label,
        zone=timezones.zone_name(),
        requests=number(traffic.requests),
        errors=number(traffic.errors),
        most=number(busiest.requests),
        busiest=busiest.label,
    )
    return Figure(chart, title, summary, rows)


@bp.get("/p/<slug>/status")
@role_required(Role.OWNER)
def status(product: Product) -> ResponseReturnValue:
    """Is Tidings working for the product: what needs attention, then each part's figures."""
    health.watch_logged()
    figures = monitoring.status(db.session(), product, now=utcnow(), pending=jobs.waiting())
    newest = retention.last_runs(db.session(), product, limit=1)
    last_retention = newest[0] if newest else None
    return render_template(
        "console/status.html",
        product=product,
        s=figures,
        attention=attention(figures) + retention_attention(figures, last_retention),
        last_retention=last_retention,
        tiles=tiles(figures),
        traffic=traffic_figure(figures.traffic),
        ago=lambda moment: ago(figures, moment),
        when=lambda moment: when(figures, moment),
        alert_names=ALERT_NAMES,
        silent_after=span(monitoring.WORKER_SILENT_AFTER),
        settles_after=span(monitoring.ALERT_SETTLES_AFTER),
    )
