"""Health for machines, and the web's part in Tidings watching itself.

- ``GET /healthz``: the process answers; nothing else is checked.
- ``GET /readyz``: the database answers, a worker is alive (its heartbeat at most five
  minutes old) and, when ``REDIS_URL`` is set, Redis answers; 503 naming the part that
  fails. It only reads: anyone may call it, as often as they like, so it never takes the
  write turn that the widget's writes wait for. It is for monitoring, not a load
  balancer's probe: it is 503 while the worker or Redis is down, which the web being up
  does not mend. Without Redis every web process goes on serving, degraded (its own rate
  limits, widgets polling rather than told, mail by the worker's own minute), so a
  monitor should hear of it, and a balancer that took every process out would make it
  an outage; balancers ask ``/healthz``.
- ``GET /metrics``: Prometheus text, read from the database at scrape time, so every
  process answers alike; only with ``Authorization: Bearer $METRICS_TOKEN``, and not at
  all (404) when no token is configured.

No login, CSRF check or rate limit applies to them: scrapers and load balancers call them
often and carry no session.

:func:`init_app` also times the widget's requests into this process's
:class:`~announcements.monitoring.TrafficRecorder` (those whose widget key named a
product), and after any request, at most once a minute per process, starts a thread that
writes the finished minutes of traffic and runs the watch: the dead worker cannot tell
anyone it died, so the web does. The Status page runs the watch too.
"""

from __future__ import annotations

import hmac
import logging
import math
import threading
import time
from collections.abc import Iterator
from datetime import datetime

from flask import Blueprint, Flask, Response, abort, current_app, g, request
from flask.typing import ResponseReturnValue
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from announcements import monitoring, outbox
from announcements.models import OutboxKind, Product, utcnow
from app.database import write_turn
from app.extensions import csrf, db, limiter
from app.mail import delivery, jobs, transport

log = logging.getLogger(__name__)

bp = Blueprint("health", __name__)

RECORDER_KEY = "tidings.traffic"
REDIS_AWAY = (
    "Redis (REDIS_URL) does not answer. The web goes on serving: rate limits count in each "
    "process's memory, open widgets poll for news, and mail and webhook calls wait in the "
    "database for the worker's own minute."
)
# Where the widget request's start time waits for its end: the WSGI environ, which no
# hook clears.
_STARTED = "tidings.started"


def _no_store(body: dict[str, object], status: int = 200) -> ResponseReturnValue:
    return body, status, {"Cache-Control": "no-store"}


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """Liveness: the process answers."""
    return _no_store({"status": "ok"})


@bp.get("/readyz")
def readyz() -> ResponseReturnValue:
    """Readiness: the database answers and a worker is alive; 503 naming what fails.
    Reads the heartbeats and nothing else: the minute's chores and the worker's tick
    watch, whoever asks here and however often."""
    now = utcnow()
    try:
        worker = monitoring.worker_health(db.session(), now=now)
    except SQLAlchemyError:
        log.exception("readyz: the database did not answer")
        db.session.rollback()
        return _no_store(
            {"status": "unavailable", "database": "unreachable", "failing": ["database"]}, 503
        )
    age = None if worker.age is None else round(worker.age.total_seconds())
    failing = [] if worker.alive else ["worker"]
    body: dict[str, object] = {
        "status": "ready",
        "database": "ok",
        "worker": {"alive": worker.alive, "heartbeat_age_seconds": age},
    }
    if not worker.alive:
        if worker.age is None:
            reason = "No worker has ever sent a heartbeat: start one with `flask worker`."
        else:
            silent = monitoring.describe_span(monitoring.WORKER_SILENT_AFTER)
            reason = (
                f"The newest worker heartbeat is {monitoring.describe_span(worker.age)} old "
                f"(alive means at most {silent})."
            )
        body["worker"] = {"alive": False, "heartbeat_age_seconds": age, "reason": reason}
    if current_app.config["REDIS_URL"]:
        # The job queue's Redis: the one REDIS_URL names for every use.
        if jobs.waiting() is None:
            body["redis"] = "unreachable"
            body["redis_reason"] = REDIS_AWAY
            failing.append("redis")
        else:
            body["redis"] = "ok"
    if not failing:
        return _no_store(body)
    body["status"] = "unavailable"
    body["failing"] = failing
    return _no_store(body, 503)


@bp.get("/metrics")
def metrics() -> ResponseReturnValue:
    """Prometheus text: worker, jobs, outbox, webhooks, widget traffic and alerts."""
    token = current_app.config["METRICS_TOKEN"]
    if not token:
        abort(404)
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), str(token).encode()
    ):
        return (
            {"error": "Send the metrics token: Authorization: Bearer <METRICS_TOKEN>."},
            401,
            {"WWW-Authenticate": 'Bearer realm="metrics"', "Cache-Control": "no-store"},
        )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Figures(db.session(), utcnow(), jobs.waiting()))
    response = Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
    response.headers["Cache-Control"] = "no-store"
    return response


class _Figures(Collector):
    """The metrics, read from the database when scraped."""

    def __init__(self, session: Session, now: datetime, jobs_waiting: int | None) -> None:
        self.session, self.now, self.jobs_waiting = session, now, jobs_waiting

    def collect(self) -> Iterator[Metric]:
        session, now = self.session, self.now
        worker = monitoring.worker_health(session, now=now)
        yield GaugeMetricFamily(
            "tidings_worker_up",
            "1 when a worker's newest heartbeat is at most 5 minutes old.",
            value=int(worker.alive),
        )
        if worker.age is not None:
            yield GaugeMetricFamily(
                "tidings_worker_heartbeat_age_seconds",
                "Seconds since the newest worker heartbeat.",
                value=worker.age.total_seconds(),
            )
        if self.jobs_waiting is not None:
            yield GaugeMetricFamily(
                "tidings_jobs_waiting", "Tasks waiting in the job queue.", value=self.jobs_waiting
            )
        mail = monitoring.outbox_figures(session, now=now).everything
        waiting = GaugeMetricFamily(
            "tidings_outbox_waiting",
            "Messages waiting in the outbox, alert mail to the team included: pending (not "
            "tried yet), retrying (after a failed attempt), paused (held while the mail server "
            "refuses us).",
            labels=["state"],
        )
        for state, count in (
            ("pending", mail.pending),
            ("retrying", mail.retrying),
            ("paused", mail.paused),
        ):
            waiting.add_metric([state], count)
        yield waiting
        yield GaugeMetricFamily(
            "tidings_outbox_failed_last_day",
            "Messages given up on, of those queued in the last 24 hours.",
            value=mail.failed,
        )
        slugs = dict(session.execute(select(Product.id, Product.slug)).all())
        failing = monitoring.webhook_failures_by_product(session, now=now)
        webhooks = GaugeMetricFamily(
            "tidings_webhook_calls_failing",
            "Webhook calls of the last 24 hours retrying or given up on.",
            labels=["product"],
        )
        for product_id, slug in sorted(slugs.items()):
            webhooks.add_metric([slug], failing.get(product_id, 0))
        yield webhooks
        yield from self._traffic(slugs)
        alerts = GaugeMetricFamily(
            "tidings_alert_open", "1 while an alert of this kind is open.", labels=["kind"]
        )
        open_kinds = {alert.kind for alert in monitoring.alerts(session, now=now) if alert.is_open}
        for kind in monitoring.AlertKind:
            alerts.add_metric([kind.value], int(kind.value in open_kinds))
        yield alerts

    def _traffic(self, slugs: dict[int, str]) -> Iterator[Metric]:
        traffic = monitoring.traffic_by_product(self.session, now=self.now)
        requests = GaugeMetricFamily(
            "tidings_widget_requests_last_hour",
            "Widget requests in the last 60 finished minutes, every web process together.",
            labels=["product"],
        )
        errors = GaugeMetricFamily(
            "tidings_widget_errors_last_hour",
            "Widget requests answered with a 5xx in the last 60 finished minutes.",
            labels=["product"],
        )
        p95 = GaugeMetricFamily(
            "tidings_widget_latency_p95_seconds",
            "95th percentile of widget request latency in the last 60 finished minutes, as "
            "the upper bound of its histogram bucket (+Inf: over 5 s).",
            labels=["product"],
        )
        for product_id, slug in sorted(slugs.items()):
            figures = traffic.get(product_id)
            requests.add_metric([slug], figures.requests if figures else 0)
            errors.add_metric([slug], figures.errors if figures else 0)
            if figures is not None and figures.p95_ms is not None:
                seconds = math.inf if math.isinf(figures.p95_ms) else figures.p95_ms / 1000
                p95.add_metric([slug], seconds)
        yield from (requests, errors, p95)


# The web's watch ----------------------------------------------------------------------------


def watch() -> list[int]:
    """Watch from the web (the Status page, the minute's thread): open, announce, settle
    and close alerts, in a session of its own, taking the write turn only when something
    changes; when alert mail is due, send it from a thread, as the worker may be what is
    down. Returns the ids of the alert messages queued."""
    now = utcnow()
    with Session(db.engine) as session:
        queued = monitoring.watch(session, now=now, write_turn=write_turn)
        due = monitoring.alerts_due(session, now=now)
    if due:
        _start_sending(current_app._get_current_object())  # type: ignore[attr-defined]
    return queued


def watch_logged() -> None:
    """Watch, logging rather than raising: an answer about health (the Status page) must
    not fail on it, as it is how people learn that something is wrong."""
    try:
        watch()
    except Exception:
        log.exception("watching from the web failed")


# Held while a thread of this process sends alert mail: one sends what is due until none
# is, so a second would only wait on the outbox's claims, and watches one after another
# would pile threads up.
_sending = threading.Lock()


def _start_sending(app: Flask) -> None:
    """Send the alert mail that is due in a thread, unless one of this process does."""
    if not _sending.acquire(blocking=False):
        return
    try:
        threading.Thread(
            target=_send_alerts, args=(app,), name="tidings-alerts", daemon=True
        ).start()
    except BaseException:
        _sending.release()
        raise


def _send_alerts(app: Flask) -> None:
    """Send the alert mail that is due, and nothing else; then let another thread start."""
    try:
        with app.app_context():
            sender = transport.from_config(app.config["SMTP_URL"], app.instance_path)
            try:
                report = delivery.deliver_due(sender, kinds=[OutboxKind.ALERT])
            finally:
                sender.close()
            log.info(
                "alerts: %d sent, %d to retry, %d failed",
                report.sent,
                report.retried,
                report.failed,
            )
    except Exception:
        log.exception("alert mail could not be sent from the web")
    finally:
        _sending.release()


def flush_traffic(now: datetime) -> int:
    """Write this process's finished minutes of widget traffic; returns the rows written."""
    recorder: monitoring.TrafficRecorder = current_app.extensions[RECORDER_KEY]
    if not recorder.has_finished(now):
        return 0
    with Session(db.engine) as session:
        return recorder.flush(session, outbox.worker_name(), now=now, write_turn=write_turn)


class _EveryMinute:
    """Lets one caller through per clock minute, in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: datetime | None = None

    def due(self, now: datetime) -> bool:
        minute = now.replace(second=0, microsecond=0)
        with self._lock:
            if self._last == minute:
                return False
            self._last = minute
            return True


_chores = _EveryMinute()


def _minute_chores(app: Flask) -> None:
    """Write the finished minutes of widget traffic, then watch."""
    with app.app_context():
        try:
            flush_traffic(utcnow())
        except Exception:
            log.exception("widget traffic could not be written")
        watch_logged()


def _start_clock() -> None:
    request.environ[_STARTED] = time.perf_counter()


def _after_request(response: Response) -> Response:
    """Count a widget request whose key named a product (the widget's view puts the
    product's id on ``g`` once it found it: a made-up key counts nowhere); once a minute,
    start the minute's chores in a thread."""
    now = utcnow()
    started = request.environ.get(_STARTED)
    product_id = g.get("widget_product_id")
    if started is not None and product_id is not None:
        recorder: monitoring.TrafficRecorder = current_app.extensions[RECORDER_KEY]
        recorder.record(
            product_id,
            status=response.status_code,
            milliseconds=(time.perf_counter() - started) * 1000,
            at=now,
        )
    if _chores.due(now):
        app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
        threading.Thread(
            target=_minute_chores, args=(app,), name="tidings-minute", daemon=True
        ).start()
    return response


def init_app(app: Flask) -> None:
    """The endpoints, exempt from CSRF and rate limits, and the hooks that time the widget
    and watch once a minute. Called early in create_app, so the clock starts before the
    other hooks run."""
    csrf.exempt(bp)
    limiter.exempt(bp)
    app.register_blueprint(bp)
    app.extensions[RECORDER_KEY] = monitoring.TrafficRecorder()
    app.before_request(_start_clock)
    app.after_request(_after_request)
