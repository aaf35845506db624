"""Console → Status (owners): is Tidings doing its work for this product? The worker, the
job queue, the mail, the webhooks, the last scheduled note, the widget's traffic of the
last hour, and the alerts the owners were sent; what needs attention first.

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

from announcements import monitoring
from announcements.models import Product, Role, utcnow
from app import health
from app.auth import role_required
from app.console import bp, charts, timezones
from app.console.charts import Figure
from app.extensions import db
from app.mail import jobs

# What each kind of alert is called in the history (its mail's subject says more).
ALERT_NAMES = {
    monitoring.AlertKind.WORKER_SILENT: "Worker silent",
    monitoring.AlertKind.MAIL_FAILING: "Mail failing",
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
        return f"over {monitoring.LATENCY_BUCKETS_MS[-1] / 1000:g} s"
    if milliseconds >= 1000:
        return f"≤ {milliseconds / 1000:g} s"
    return f"≤ {milliseconds:g} ms"


@bp.app_template_filter("error_percent")
def error_percent(value: float | None, unit: bool = True) -> str:
    """A share of errors: two significant figures under 1 %, where the one decimal of the
    Insights pages' rates would say "0.0 %" of a rate that matters; a dash for none.
    ``unit=False`` leaves out the "%", for the low end of a range."""
    if value is None:
        return "—"
    percent = value * 100
    written = f"{percent:.2g}" if percent < 1 else f"{percent:.1f}"
    return f"{written} %" if unit else written


@bp.app_template_filter("worker_process")
def worker_process(name: str) -> tuple[str, str]:
    """A worker's name (``outbox.worker_name()``: host, pid and start) as its host and
    "pid N", the two an operator looks for; another name whole, with nothing beside."""
    host, _, rest = name.rpartition(":")
    host, _, pid = host.rpartition(":")
    return (host, f"pid {pid}") if host and pid.isdigit() and rest.isdigit() else (name, "")


def ago(status: monitoring.Status, moment: datetime) -> str:
    """How long before the page's ``now`` a time was, in words: "40 s ago"."""
    return f"{monitoring.describe_span(max(status.now - moment, timedelta(0)))} ago"


def when(status: monitoring.Status, moment: datetime) -> str:
    """A time in the member's zone: the time alone on the page's day, the day too before."""
    same_day = timezones.local(moment, "%Y-%m-%d") == timezones.local(status.now, "%Y-%m-%d")
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
                "No worker has run yet",
                "Nothing is e-mailed, no webhook is called and scheduled e-mails wait until "
                "one runs: start it with flask worker.",
            )
        )
    elif not worker.alive:
        items.append(
            Attention(
                "error",
                "The worker is silent",
                f"Its last heartbeat was {ago(status, worker.last_beat_at)}, at "
                f"{when(status, worker.last_beat_at)}. Until a worker "
                f"runs, no mail or webhook goes out.{told}",
            )
        )
    pause = status.outbox.pause
    if pause is not None:
        items.append(
            Attention(
                "error",
                "Sending is paused",
                f"The mail server has refused us since "
                f"{when(status, pause.since)}: {pause.error}. The next try "
                f"is at {when(status, pause.retry_at)}; the messages wait, and no "
                "subscriber is counted as bounced for it.",
            )
        )
    failing = open_alerts.get(monitoring.AlertKind.MAIL_FAILING)
    if failing is not None and failing.is_failing:
        items.append(
            Attention(
                "error" if failing.alerted_at else "warning",
                "Mail is failing",
                f"Messages have waited after failed attempts, and none has been sent, since "
                f"{when(status, failing.failing_since)}."
                f"{_told(status, failing)}",
            )
        )
    webhooks = status.webhooks
    if webhooks.failing:
        items.append(
            Attention(
                "warning",
                "Webhook calls are failing",
                f"{webhooks.failing:,} call{'s' if webhooks.failing != 1 else ''} of the last "
                f"24 hours {'is' if webhooks.failing == 1 else 'are'} failing: "
                f"{webhooks.retrying:,} to be tried again, {webhooks.failed:,} given up on.",
            )
        )
    items += [
        Attention("warning", "Data stopped arriving", data_warning(status, warning))
        for warning in status.warnings
    ]
    return items


def data_warning(status: monitoring.Status, warning: monitoring.DataWarning) -> str:
    """What a warning that data stopped arriving says, its times in the member's zone."""
    if isinstance(warning, monitoring.WidgetSilent):
        return (
            f"No widget request in the last {monitoring.describe_span(warning.window)}, "
            f"though the widget had requests at this time of day on {warning.usual_days} of "
            f"the previous {warning.of_days} days. Check that the host app still loads the "
            "widget with this product's key."
        )
    return (
        f"No ticket from {warning.desk} ({warning.source}) since "
        f"{when(status, warning.last_ticket_at)}, {ago(status, warning.last_ticket_at)}: "
        f"longer than any gap between its tickets in the {warning.history.days} days before "
        f"(at most {monitoring.describe_span(warning.longest_gap)}). Check the connection "
        "in the help desk."
    )


def _told(status: monitoring.Status, alert: monitoring.AlertRow | None) -> str:
    """Whether the owners were e-mailed about an open alert, or when they will be."""
    if alert is None:
        return ""
    if alert.alerted_at is not None:
        return f" The owners were e-mailed at {when(status, alert.alerted_at)}."
    due = alert.failing_since + monitoring.THRESHOLDS[monitoring.AlertKind(alert.kind)]
    return f" The owners are e-mailed at {when(status, due)} if it lasts."


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
    title = "Widget requests per minute, last hour"
    chart = charts.bar_chart([r.label for r in rows], [r.requests for r in rows], max_labels=6)
    if not traffic.requests:
        return Figure(chart, title, f"{title}: no requests.", rows)
    busiest = max(rows, key=lambda r: r.requests)
    summary = (
        f"{title}, {rows[0].label} to {rows[-1].label} ({timezones.zone_name()}): "
        f"{traffic.requests:,} requests, {traffic.errors:,} answered with an error; the most "
        f"in one minute, {busiest.requests:,}, at {busiest.label}."
    )
    return Figure(chart, title, summary, rows)


@bp.get("/p/<slug>/status")
@role_required(Role.OWNER)
def status(product: Product) -> ResponseReturnValue:
    """Is Tidings working for the product: what needs attention, then each part's figures."""
    health.watch_logged()
    figures = monitoring.status(db.session(), product, now=utcnow(), pending=jobs.waiting())
    return render_template(
        "console/status.html",
        product=product,
        s=figures,
        attention=attention(figures),
        tiles=tiles(figures),
        traffic=traffic_figure(figures.traffic),
        ago=lambda moment: ago(figures, moment),
        when=lambda moment: when(figures, moment),
        alert_names=ALERT_NAMES,
        silent_after=monitoring.describe_span(monitoring.WORKER_SILENT_AFTER),
        settles_after=monitoring.describe_span(monitoring.ALERT_SETTLES_AFTER),
    )
