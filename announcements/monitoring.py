"""Tidings watching itself: is the worker alive, is mail going out, is data still arriving.

Everything here is read from the database, so every web process and worker sees the same
state and any of them can raise an alert:

- **Heartbeats.** Each worker's minute tick writes its ``WorkerHeartbeat`` (:func:`beat`);
  the worker is alive while the newest beat is at most :data:`WORKER_SILENT_AFTER` old.
- **Widget traffic.** Each web process counts the widget's requests in memory
  (:class:`TrafficRecorder`) per product the request's widget key named, and writes each
  finished minute as ``TrafficMinute`` rows, one per process, minute and product; figures
  sum the rows of every process.
- **Alerts** (:func:`watch`): the worker silent for 5 minutes, mail failing for 15. An
  ``Alert`` row is opened when the condition first holds; the "down" mail is queued once
  it has held past its threshold, by whichever process's conditional UPDATE claims it
  first; the alert closes once the condition has been clear for
  :data:`ALERT_SETTLES_AFTER`, and a "recovered" mail follows, only if the first one
  went. Trouble that comes back before then keeps the alert open, with no new mail: a
  worker in a crash loop or mail that sends one message and fails again is one alert,
  not a storm. One ``OutboxMessage`` of kind ALERT per owner, sent by the outbox like any
  other mail.
- **Status** (:func:`status`): what the console's Status page shows for one product.

The readers commit nothing: the caller runs them in its transaction. :func:`watch` and
:meth:`TrafficRecorder.flush` write, each in the caller's write turn (on SQLite the one
writer at a time), and commit; the watch reads outside it, as most of its runs write
nothing.
"""

from __future__ import annotations

import bisect
import contextlib
import enum
import math
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Float,
    and_,
    delete,
    exists,
    func,
    literal,
    or_,
    select,
    type_coerce,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.functions import FunctionElement

from announcements import outbox
from announcements.insights import Rate, read_rate
from announcements.models import (
    Alert,
    Membership,
    Note,
    OutboxKind,
    OutboxMessage,
    OutboxStatus,
    Product,
    Role,
    SupportConnection,
    TeamMember,
    Ticket,
    TrafficMinute,
    Webhook,
    WebhookDelivery,
    WorkerHeartbeat,
)
from announcements.support_impact import WriteTurn

# The worker is alive while its newest heartbeat is at most this old: the tick beats every
# minute, so five missed ticks in a row.
WORKER_SILENT_AFTER = timedelta(minutes=5)
# Mail is failing when messages wait after a failed attempt or a pause and none has gone
# out for MAIL_SENT_WITHIN: for this long before the owners are told.
MAIL_FAILING_AFTER = timedelta(minutes=15)
# Mail is going out while a message was sent at most this long ago: one message through
# keeps the condition clear this long, then it holds again if nothing follows.
MAIL_SENT_WITHIN = timedelta(minutes=5)
# An alert closes, and its "recovered" mail goes, once its condition has been clear this
# long; trouble that comes back before then is the same episode, with no new mail.
ALERT_SETTLES_AFTER = timedelta(minutes=10)
# The alert's text counts the messages stuck up to this many ("over 10,000"): the watch
# reads the outbox every minute, and a count of a large queue is all of it.
MAIL_COUNTED_UP_TO = 10_000
HEARTBEATS_KEPT = timedelta(days=1)
# A week of history for "usually has requests at this hour", and a day to spare.
TRAFFIC_KEPT = timedelta(days=8)
TRAFFIC_WINDOW = timedelta(minutes=60)
# Upper bounds, in milliseconds, of the widget's latency buckets; one more bucket holds
# the requests slower than the last.
LATENCY_BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)
# A product "usually" has widget requests at this hour when it had some on this many of
# the previous USUAL_OF_DAYS days.
USUAL_DAYS = 5
USUAL_OF_DAYS = 7
# A help-desk connection is judged on the tickets of the 30 days before its newest one,
# and only when they were at least this many.
HELP_DESK_HISTORY = timedelta(days=30)
HELP_DESK_MIN_TICKETS = 10
# Failed messages and webhook calls counted on Status: those queued in the last day.
FAILURES_WITHIN = timedelta(hours=24)
ALERTS_LISTED = 10
# The (minute, product) counters one process holds until they are written, at most. Only
# requests whose widget key named a product are counted, so made-up keys cannot fill it;
# it binds only when writing keeps failing and the minutes wait: later ones are then not
# counted, and memory stays bounded.
MAX_COUNTERS = 10_000

_WAITING = (OutboxStatus.QUEUED, OutboxStatus.SENDING)
_ALERT_MAIL = OutboxMessage.kind == OutboxKind.ALERT


class AlertKind(enum.StrEnum):
    WORKER_SILENT = "worker_silent"
    MAIL_FAILING = "mail_failing"


THRESHOLDS = {
    AlertKind.WORKER_SILENT: WORKER_SILENT_AFTER,
    AlertKind.MAIL_FAILING: MAIL_FAILING_AFTER,
}


def _minute(moment: datetime) -> datetime:
    """The start of the minute ``moment`` falls in."""
    return moment.replace(second=0, microsecond=0)


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def describe_span(span: timedelta) -> str:
    """A span as people say it: "40 s", "12 min", "3 h 20 min", "5 days"."""
    seconds = int(span.total_seconds())
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{hours // 24} days"


def _insert(session: Session) -> Any:
    """The dialect's INSERT, which has ON CONFLICT."""
    return (postgresql if session.get_bind().dialect.name == "postgresql" else sqlite).insert


# Heartbeats ---------------------------------------------------------------------------------


def beat(session: Session, worker: str, *, now: datetime) -> None:
    """Record that ``worker`` (``outbox.worker_name()``) is alive at ``now``."""
    statement = _insert(session)(WorkerHeartbeat).values(name=worker, started_at=now, beat_at=now)
    session.execute(statement.on_conflict_do_update(index_elements=["name"], set_={"beat_at": now}))


def prune(session: Session, *, now: datetime) -> dict[str, int]:
    """Delete heartbeats and traffic too old to be shown; how many rows of each."""
    beats = session.execute(
        delete(WorkerHeartbeat).where(WorkerHeartbeat.beat_at < now - HEARTBEATS_KEPT)
    )
    minutes = session.execute(
        delete(TrafficMinute).where(TrafficMinute.minute < now - TRAFFIC_KEPT)
    )
    return {
        "heartbeats": int(getattr(beats, "rowcount", 0) or 0),
        "traffic_minutes": int(getattr(minutes, "rowcount", 0) or 0),
    }


@dataclass(frozen=True)
class WorkerRow:
    """One worker process as its heartbeat shows it: ``name`` is host:pid:start."""

    name: str
    started_at: datetime
    beat_at: datetime


@dataclass(frozen=True)
class WorkerHealth:
    """Whether a worker is alive: its newest heartbeat at most WORKER_SILENT_AFTER old.

    ``last_beat_at`` and ``age`` are None when no worker ever beat; ``workers`` lists the
    heartbeats kept (a day's), newest first, dead processes included.
    """

    alive: bool
    last_beat_at: datetime | None
    age: timedelta | None
    workers: list[WorkerRow]


def worker_health(session: Session, *, now: datetime) -> WorkerHealth:
    """The workers' heartbeats at ``now``."""
    rows = [
        WorkerRow(name, started_at, beat_at)
        for name, started_at, beat_at in session.execute(
            select(
                WorkerHeartbeat.name, WorkerHeartbeat.started_at, WorkerHeartbeat.beat_at
            ).order_by(WorkerHeartbeat.beat_at.desc(), WorkerHeartbeat.name)
        )
    ]
    if not rows:
        return WorkerHealth(alive=False, last_beat_at=None, age=None, workers=[])
    age = max(now - rows[0].beat_at, timedelta(0))
    return WorkerHealth(
        alive=age <= WORKER_SILENT_AFTER, last_beat_at=rows[0].beat_at, age=age, workers=rows
    )


# Widget traffic -----------------------------------------------------------------------------


def latency_bucket(milliseconds: float) -> int:
    """The index of the latency bucket a request of ``milliseconds`` falls in."""
    return bisect.bisect_left(LATENCY_BUCKETS_MS, milliseconds)


def p95_ms(histogram: Sequence[int]) -> float | None:
    """The 95th percentile of a latency histogram, as the upper bound of the bucket it falls
    in (95 % of the requests took at most this long); ``math.inf`` when it falls in the
    last bucket (over 5 s), None for no requests."""
    total = sum(histogram)
    if total == 0:
        return None
    rank = math.ceil(0.95 * total)
    seen = 0
    for index, count in enumerate(histogram):
        seen += count
        if seen >= rank:
            return float(LATENCY_BUCKETS_MS[index]) if index < len(LATENCY_BUCKETS_MS) else math.inf
    return math.inf  # not reached: the counts add up to ``total``


def merged(histograms: Iterable[Sequence[int]]) -> list[int]:
    """Latency histograms added bucket by bucket."""
    total = [0] * (len(LATENCY_BUCKETS_MS) + 1)
    for histogram in histograms:
        for index, count in enumerate(histogram):
            total[index] += count
    return total


@dataclass
class _Counts:
    requests: int = 0
    errors: int = 0
    latency: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_MS) + 1))

    def add(self, requests: int, errors: int, latency: Sequence[int]) -> None:
        self.requests += requests
        self.errors += errors
        self.latency = merged([self.latency, latency])


class TrafficRecorder:
    """One process's widget requests, counted in memory per minute and product until
    :meth:`flush` writes the finished minutes.

    A request is counted under the product its widget key named, once the widget's view
    found it (``app.api.widget`` says so on ``g``): a key no product has is not counted,
    so no client can fill the counters with made-up keys. A request recorded after its
    minute was flushed counts in the first minute not yet flushed, so a process writes
    each of its minutes once.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[datetime, int], _Counts] = {}
        self._flushed_before: datetime | None = None

    def record(self, product_id: int, *, status: int, milliseconds: float, at: datetime) -> None:
        """Count one widget request for the product that ended at ``at`` with ``status``
        (5xx is an error)."""
        minute = _minute(at)
        bucket = latency_bucket(milliseconds)
        with self._lock:
            if self._flushed_before is not None and minute < self._flushed_before:
                minute = self._flushed_before
            counts = self._counts.get((minute, product_id))
            if counts is None:
                if len(self._counts) >= MAX_COUNTERS:
                    return
                counts = self._counts[(minute, product_id)] = _Counts()
            counts.requests += 1
            counts.errors += status >= 500
            counts.latency[bucket] += 1

    def has_finished(self, now: datetime) -> bool:
        """Whether a minute before ``now``'s has counts waiting to be written."""
        current = _minute(now)
        with self._lock:
            return any(minute < current for minute, _product in self._counts)

    def flush(
        self,
        session: Session,
        process: str,
        *,
        now: datetime,
        write_turn: WriteTurn = contextlib.nullcontext,
    ) -> int:
        """Add the minutes finished before ``now`` to the ``TrafficMinute`` rows of
        ``process`` and commit, in ``write_turn``; returns how many rows were written.
        When the write fails the counts are put back, to be written by the next flush,
        and the error raised. Requests of a product deleted since are dropped."""
        current = _minute(now)
        with self._lock:
            taken = {key: counts for key, counts in self._counts.items() if key[0] < current}
            for key in taken:
                del self._counts[key]
            self._flushed_before = max(self._flushed_before or current, current)
        if not taken:
            return 0
        try:
            with write_turn():
                written = self._write(session, process, taken)
                session.commit()
        except BaseException:
            session.rollback()
            self._put_back(taken)
            raise
        return written

    def _put_back(self, taken: dict[tuple[datetime, int], _Counts]) -> None:
        """Hold again the counts a failed flush took, adding any counted since."""
        with self._lock:
            for key, counts in taken.items():
                held = self._counts.setdefault(key, _Counts())
                held.add(counts.requests, counts.errors, counts.latency)

    @staticmethod
    def _write(session: Session, process: str, taken: dict[tuple[datetime, int], _Counts]) -> int:
        """Add ``taken`` to the rows of ``process``; how many rows were written."""
        products = {product_id for _minute_at, product_id in taken}
        existing = set(session.scalars(select(Product.id).where(Product.id.in_(products))))
        rows = {key: counts for key, counts in taken.items() if key[1] in existing}
        if not rows:
            return 0
        stored = {
            (row.minute, row.product_id): row
            for row in session.scalars(
                select(TrafficMinute).where(
                    TrafficMinute.process == process,
                    TrafficMinute.minute.in_({minute for minute, _product in rows}),
                )
            )
        }
        for (minute, product_id), counts in rows.items():
            row = stored.get((minute, product_id))
            if row is None:
                session.add(
                    TrafficMinute(
                        process=process,
                        minute=minute,
                        product_id=product_id,
                        requests=counts.requests,
                        errors=counts.errors,
                        latency=counts.latency,
                    )
                )
            else:  # two apps in one process, as in tests: add to what the other wrote
                row.requests += counts.requests
                row.errors += counts.errors
                row.latency = merged([row.latency, counts.latency])
        session.flush()
        return len(rows)


@dataclass(frozen=True)
class MinuteTraffic:
    """Widget requests in one minute, every process together."""

    minute: datetime
    requests: int
    errors: int


@dataclass(frozen=True)
class Traffic:
    """Widget traffic over a window, every process together.

    ``minutes`` has one entry per minute of the window, oldest first, zeros included;
    ``per_minute`` is the mean requests per minute; ``error_rate`` the share answered
    with a 5xx; ``p95_ms`` as :func:`p95_ms` gives it.
    """

    minutes: list[MinuteTraffic]
    requests: int
    errors: int
    per_minute: float
    error_rate: Rate
    p95_ms: float | None


def _window(now: datetime) -> tuple[datetime, datetime]:
    """The last TRAFFIC_WINDOW of finished minutes before ``now``: [start, end)."""
    end = _minute(now)
    return end - TRAFFIC_WINDOW, end


def traffic(session: Session, product_id: int, *, now: datetime) -> Traffic:
    """The product's widget traffic in the 60 finished minutes before ``now``."""
    start, end = _window(now)
    rows = session.execute(
        select(
            TrafficMinute.minute,
            TrafficMinute.requests,
            TrafficMinute.errors,
            TrafficMinute.latency,
        ).where(
            TrafficMinute.product_id == product_id,
            TrafficMinute.minute >= start,
            TrafficMinute.minute < end,
        )
    ).all()
    per_minute: dict[datetime, tuple[int, int]] = {}
    for minute, requests, errors, _latency in rows:
        before = per_minute.get(minute, (0, 0))
        per_minute[minute] = (before[0] + requests, before[1] + errors)
    minutes = []
    for step in range(int(TRAFFIC_WINDOW / timedelta(minutes=1))):
        minute = start + timedelta(minutes=step)
        requests, errors = per_minute.get(minute, (0, 0))
        minutes.append(MinuteTraffic(minute, requests, errors))
    return _traffic(minutes, [(row.requests, row.errors, row.latency) for row in rows])


def _traffic(minutes: list[MinuteTraffic], rows: Sequence[tuple[int, int, list[int]]]) -> Traffic:
    """The totals of ``rows`` (requests, errors, latency histogram) over the window."""
    requests = sum(row[0] for row in rows)
    errors = sum(row[1] for row in rows)
    return Traffic(
        minutes=minutes,
        requests=requests,
        errors=errors,
        per_minute=requests / (TRAFFIC_WINDOW / timedelta(minutes=1)),
        error_rate=read_rate(errors, requests),
        p95_ms=p95_ms(merged(row[2] for row in rows)),
    )


def traffic_by_product(session: Session, *, now: datetime) -> dict[int, Traffic]:
    """Every product's widget traffic in the last 60 finished minutes, for /metrics; a
    product without rows is left out, and ``minutes`` is empty: only the totals."""
    start, end = _window(now)
    grouped: dict[int, list[tuple[int, int, list[int]]]] = {}
    for product_id, requests, errors, latency in session.execute(
        select(
            TrafficMinute.product_id,
            TrafficMinute.requests,
            TrafficMinute.errors,
            TrafficMinute.latency,
        ).where(TrafficMinute.minute >= start, TrafficMinute.minute < end)
    ):
        grouped.setdefault(product_id, []).append((requests, errors, latency))
    return {product_id: _traffic([], rows) for product_id, rows in grouped.items()}


# Outbox and webhooks --------------------------------------------------------------------


@dataclass(frozen=True)
class LastError:
    """The newest failure: what was answered, when that message or call was queued (the
    tables keep no time of the failed attempt itself), when it is tried again (None: given
    up on) and, for a webhook call, the URL it went to."""

    error: str
    queued_at: datetime
    retry_at: datetime | None
    target: str | None = None


@dataclass(frozen=True)
class MailCounts:
    """Mail waiting and failed.

    Waiting messages (queued or being sent) are split three ways: ``pending`` (not tried
    yet, or due again since a pause ended), ``retrying`` (waiting to be tried again after
    a failed attempt on their recipient) and ``paused`` (held while the mail server
    refuses us). ``failed`` counts the messages given up on among those queued in the
    last 24 hours.
    """

    pending: int = 0
    retrying: int = 0
    paused: int = 0
    failed: int = 0

    @property
    def waiting(self) -> int:
        return self.pending + self.retrying + self.paused

    def __add__(self, other: MailCounts) -> MailCounts:
        return MailCounts(
            self.pending + other.pending,
            self.retrying + other.retrying,
            self.paused + other.paused,
            self.failed + other.failed,
        )


@dataclass(frozen=True)
class OutboxFigures:
    """The outbox: the counts of one product, of every product and of the alert mail,
    read in one statement so that they agree (a page never shows a product with more
    mail waiting than every product together).

    - ``product``: the mail of the product asked about to its subscribers (zeros when
      none was asked about);
    - ``products``: every product's mail to its subscribers;
    - ``team``: alert mail to team members, which is no product's: its product id only
      picks the Status page its link opens;
    - ``last_error``: the newest failure among the retrying, paused and failed mail of the
      product asked about, or of every product; alert mail is left out, as its errors
      name team members;
    - ``pause``: since when the mail server has refused us, its last answer and the next
      try; it holds everyone's mail.
    """

    product: MailCounts
    products: MailCounts
    team: MailCounts
    last_error: LastError | None
    pause: outbox.Pause | None

    @property
    def everything(self) -> MailCounts:
        """Every message in the outbox, alert mail included."""
        return self.products + self.team


_PAUSED = OutboxMessage.paused_at.is_not(None)
_RETRYING = and_(
    OutboxMessage.paused_at.is_(None),
    OutboxMessage.attempts > 0,
    OutboxMessage.last_error.is_not(None),
)


def outbox_figures(
    session: Session, product_id: int | None = None, *, now: datetime
) -> OutboxFigures:
    """The outbox at ``now``, with the figures of ``product_id`` apart when given."""
    waiting = OutboxMessage.status.in_(_WAITING)
    recently_failed = and_(
        OutboxMessage.status == OutboxStatus.FAILED,
        OutboxMessage.created_at >= now - FAILURES_WITHIN,
    )
    # Grouped by product and kind, a few rows a product, and added up here: one
    # statement, one snapshot, for the product's counts and everyone's.
    grouped = session.execute(
        select(
            OutboxMessage.product_id,
            OutboxMessage.kind,
            func.count().filter(waiting),
            func.count().filter(waiting, _RETRYING),
            func.count().filter(waiting, _PAUSED),
            func.count().filter(recently_failed),
        )
        .where(or_(waiting, recently_failed))
        .group_by(OutboxMessage.product_id, OutboxMessage.kind)
    )
    product = products = team = MailCounts()
    for of_product, kind, waits, retrying, paused, failed in grouped:
        counts = MailCounts(waits - retrying - paused, retrying, paused, failed)
        if kind is OutboxKind.ALERT:
            team += counts
        else:
            products += counts
            if of_product == product_id:
                product += counts
    scope = [~_ALERT_MAIL] + (
        [] if product_id is None else [OutboxMessage.product_id == product_id]
    )
    # The newest failure of each sort, in two queries that each keep to the status index.
    candidates = [
        session.execute(
            select(
                OutboxMessage.id,
                OutboxMessage.last_error,
                OutboxMessage.created_at,
                OutboxMessage.next_attempt_at,
            )
            .where(where, *scope)
            .order_by(OutboxMessage.id.desc())
            .limit(1)
        ).first()
        for where in (and_(waiting, OutboxMessage.last_error.is_not(None)), recently_failed)
    ]
    last = None
    waiting_row, failed_row = candidates
    if waiting_row is not None and (failed_row is None or waiting_row.id > failed_row.id):
        last = LastError(
            waiting_row.last_error, waiting_row.created_at, waiting_row.next_attempt_at
        )
    elif failed_row is not None:
        last = LastError(failed_row.last_error or "", failed_row.created_at, None)
    return OutboxFigures(
        product=product,
        products=products,
        team=team,
        last_error=last,
        pause=outbox.pause_now(session),
    )


@dataclass(frozen=True)
class WebhookFigures:
    """A product's webhook calls queued in the last 24 hours that are failing: ``retrying``
    (waiting to be tried again after a failed call) and ``failed`` (given up on), with the
    newest of their errors."""

    retrying: int
    failed: int
    last_error: LastError | None

    @property
    def failing(self) -> int:
        return self.retrying + self.failed


_CALL_RETRYING = and_(WebhookDelivery.status == OutboxStatus.QUEUED, WebhookDelivery.attempts > 0)
_CALL_FAILING = or_(_CALL_RETRYING, WebhookDelivery.status == OutboxStatus.FAILED)


def webhook_figures(session: Session, product_id: int, *, now: datetime) -> WebhookFigures:
    """The product's failing webhook calls of the last 24 hours."""
    # The newest failing call carries the counts of all of them (window aggregates over
    # a day's failures of one product): one statement, so the counts and the error shown
    # beside them agree.
    newest = session.execute(
        select(
            WebhookDelivery,
            Webhook.url,
            func.count().over(),
            func.count().filter(_CALL_RETRYING).over(),
        )
        .join(Webhook)
        .where(
            Webhook.product_id == product_id,
            WebhookDelivery.created_at >= now - FAILURES_WITHIN,
            _CALL_FAILING,
        )
        .order_by(WebhookDelivery.id.desc())
        .limit(1)
    ).first()
    if newest is None:
        return WebhookFigures(retrying=0, failed=0, last_error=None)
    call, url, total, retrying = newest
    retry_at = call.next_attempt_at if call.status is OutboxStatus.QUEUED else None
    last = LastError(call.last_error or "", call.created_at, retry_at, url)
    return WebhookFigures(retrying=retrying, failed=total - retrying, last_error=last)


def webhook_failures_by_product(session: Session, *, now: datetime) -> dict[int, int]:
    """Failing webhook calls of the last 24 hours per product, for /metrics."""
    return dict(
        session.execute(
            select(Webhook.product_id, func.count())
            .join(WebhookDelivery)
            .where(WebhookDelivery.created_at >= now - FAILURES_WITHIN, _CALL_FAILING)
            .group_by(Webhook.product_id)
        ).all()
    )


# Scheduled notes ----------------------------------------------------------------------------


class EpochSeconds(FunctionElement[float]):
    """A timestamp as seconds since 1970, on either database, so two can be subtracted:
    SQLite stores text, on which ``-`` means nothing."""

    type = Float()
    inherit_cache = True


@compiles(EpochSeconds, "sqlite")
def _sqlite_seconds(element: EpochSeconds, compiler: Any, **kw: Any) -> str:
    return f"((julianday({compiler.process(element.clauses, **kw)}) - 2440587.5) * 86400.0)"


@compiles(EpochSeconds, "postgresql")
def _postgresql_seconds(element: EpochSeconds, compiler: Any, **kw: Any) -> str:
    return f"extract(epoch from {compiler.process(element.clauses, **kw)})"


# A note published more than this long after it was written went live at a time set in
# advance; one published on saving has the same time for both, to the millisecond.
SCHEDULED_AHEAD = timedelta(minutes=1)


@dataclass(frozen=True)
class ScheduledNote:
    """The newest note that went live at a time set in advance, and when; ``emailed_at`` is
    when its mail was queued (None: it e-mails nobody, or no worker has queued it yet)."""

    note_id: int
    version: str
    title: str
    published_at: datetime
    email_subscribers: bool
    emailed_at: datetime | None


def last_scheduled(session: Session, product_id: int, *, now: datetime) -> ScheduledNote | None:
    """The product's newest note that went live at ``now`` or before, at least a minute
    after it was written (so it was scheduled, not published on saving)."""
    written_before = EpochSeconds(Note.published_at) - EpochSeconds(Note.created_at)
    row = session.execute(
        select(
            Note.id,
            Note.version,
            Note.title,
            Note.published_at,
            Note.email_subscribers,
            Note.emailed_at,
        )
        .where(
            Note.product_id == product_id,
            Note.published_at <= now,
            written_before > SCHEDULED_AHEAD.total_seconds(),
        )
        .order_by(Note.published_at.desc(), Note.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    note_id, version, title, published_at, email_subscribers, emailed_at = row
    # Never None: the query compares it with now.
    return ScheduledNote(
        note_id, version, title, cast(datetime, published_at), email_subscribers, emailed_at
    )


# Data that stopped arriving -----------------------------------------------------------------


@dataclass(frozen=True)
class WidgetSilent:
    """No widget request for the product in the last ``window``, though the widget had
    some in the same minutes of the day on ``usual_days`` of the ``of_days`` days before.

    The warnings are facts, not sentences: the page words them, with times in the
    member's zone."""

    window: timedelta
    usual_days: int
    of_days: int


@dataclass(frozen=True)
class HelpDeskSilent:
    """A help-desk connection with no ticket since ``last_ticket_at``: longer than
    ``longest_gap``, the longest between its tickets in the ``history`` before that one.
    ``desk`` is the help desk's name, ``source`` the connection's."""

    desk: str
    source: str
    last_ticket_at: datetime
    longest_gap: timedelta
    history: timedelta


DataWarning = WidgetSilent | HelpDeskSilent


def widget_warning(session: Session, product_id: int, *, now: datetime) -> WidgetSilent | None:
    """A warning when the widget had no request for the product in the last 60 minutes,
    though it had some in the same 60 minutes of the day on at least 5 of the 7 days
    before."""
    start, end = _window(now)

    def had_requests(days_ago: int) -> ColumnElement[bool]:
        shift = timedelta(days=days_ago)
        return exists().where(
            TrafficMinute.product_id == product_id,
            TrafficMinute.minute >= start - shift,
            TrafficMinute.minute < end - shift,
            TrafficMinute.requests > 0,
        )

    now_and_before = session.execute(
        select(*(had_requests(days_ago) for days_ago in range(USUAL_OF_DAYS + 1)))
    ).one()
    if now_and_before[0]:
        return None
    usual = sum(bool(had) for had in now_and_before[1:])
    if usual < USUAL_DAYS:
        return None
    return WidgetSilent(window=TRAFFIC_WINDOW, usual_days=usual, of_days=USUAL_OF_DAYS)


def help_desk_warnings(session: Session, product_id: int, *, now: datetime) -> list[HelpDeskSilent]:
    """A warning for each help-desk connection silent for longer than usual: its newest
    ticket is older than the longest gap between consecutive tickets in the 30 days before
    that ticket, which were at least 10."""
    warnings = []
    for desk, source in session.execute(
        select(SupportConnection.desk, SupportConnection.source)
        .where(SupportConnection.product_id == product_id)
        .order_by(SupportConnection.id)
    ):
        of_source = and_(Ticket.product_id == product_id, Ticket.source == source)
        newest = session.scalar(select(func.max(Ticket.created_at)).where(of_source))
        if newest is None or newest >= now:
            continue
        seconds = EpochSeconds(Ticket.created_at)
        gaps = (
            select(
                (seconds - func.lag(seconds, type_=Float).over(order_by=Ticket.created_at)).label(
                    "gap"
                )
            )
            .where(of_source, Ticket.created_at >= newest - HELP_DESK_HISTORY)
            .subquery()
        )
        tickets, longest_seconds = session.execute(
            select(func.count(), type_coerce(func.max(gaps.c.gap), Float))
        ).one()
        longest = timedelta(seconds=longest_seconds or 0)
        if tickets < HELP_DESK_MIN_TICKETS or now - newest <= longest:
            continue
        warnings.append(HelpDeskSilent(desk.label, source, newest, longest, HELP_DESK_HISTORY))
    return warnings


# Alerts -------------------------------------------------------------------------------------


TITLES = {
    (AlertKind.WORKER_SILENT, "down"): "The Tidings worker is silent",
    (AlertKind.WORKER_SILENT, "recovered"): "The Tidings worker is back",
    (AlertKind.MAIL_FAILING, "down"): "Tidings mail is failing",
    (AlertKind.MAIL_FAILING, "recovered"): "Tidings mail is going out again",
}


@dataclass(frozen=True)
class AlertRow:
    """One episode of trouble. ``recovered_at`` is when its condition was last seen to end
    (None: it holds); the episode stays open (``is_open``) until the condition has been
    clear for ALERT_SETTLES_AFTER since, and trouble that comes back before then carries
    on the same episode. ``alerted_at`` is when the owners' mail was queued (None: it
    ended before its threshold, or has not reached it yet)."""

    id: int
    kind: str
    failing_since: datetime
    detail: str
    alerted_at: datetime | None
    recovered_at: datetime | None
    is_open: bool

    @property
    def is_failing(self) -> bool:
        """Whether the trouble holds, as last seen (an open alert may be settling)."""
        return self.recovered_at is None

    @property
    def closes_at(self) -> datetime | None:
        """When the alert closes if the trouble stays away, and the recovery mail goes."""
        return None if self.recovered_at is None else self.recovered_at + ALERT_SETTLES_AFTER

    @property
    def title(self) -> str:
        state = "down" if self.is_failing else "recovered"
        return TITLES.get((AlertKind(self.kind), state), self.kind)


_ALERT_COLUMNS = (
    Alert.id,
    Alert.kind,
    Alert.failing_since,
    Alert.detail,
    Alert.alerted_at,
    Alert.recovered_at,
)


def _alert_rows(
    session: Session, now: datetime, *where: ColumnElement[bool], limit: int | None = None
) -> list[AlertRow]:
    """Alerts as they stand at ``now``, newest first."""
    rows = session.execute(
        select(*_ALERT_COLUMNS).where(*where).order_by(Alert.id.desc()).limit(limit)
    )
    settled = now - ALERT_SETTLES_AFTER
    return [
        AlertRow(*row, is_open=row.recovered_at is None or row.recovered_at > settled)
        for row in rows
    ]


def alerts(session: Session, *, now: datetime, limit: int = ALERTS_LISTED) -> list[AlertRow]:
    """The newest alerts, open or closed at ``now``, newest first."""
    return _alert_rows(session, now, limit=limit)


def _open_alerts(session: Session, now: datetime) -> dict[str, AlertRow]:
    """Each kind's open alert: its trouble holds, or ended less than ALERT_SETTLES_AFTER
    ago. The unique index keeps one of a kind whose trouble holds; a watch reopens a
    settling alert rather than opening another, so there is one of either."""
    opened: dict[str, AlertRow] = {}
    for row in _alert_rows(
        session,
        now,
        or_(Alert.recovered_at.is_(None), Alert.recovered_at > now - ALERT_SETTLES_AFTER),
    ):
        opened.setdefault(row.kind, row)  # newest first: the newest of its kind
    return opened


# The conditions, as SQL: read once by the watch, then repeated inside each statement that
# acts on them, so that what changed in between (a beat, a message sent) is not acted on.


def _worker_silent(now: datetime) -> ColumnElement[bool]:
    """Silent: a worker has beaten once, and none in the last WORKER_SILENT_AFTER."""
    beats = select(WorkerHeartbeat.name)
    return and_(
        beats.exists(),
        ~beats.where(WorkerHeartbeat.beat_at >= now - WORKER_SILENT_AFTER).exists(),
    )


_AFTER_FAILURE = or_(
    OutboxMessage.paused_at.is_not(None),
    and_(OutboxMessage.attempts > 0, OutboxMessage.last_error.is_not(None)),
)
# Messages waiting after a failed attempt or a pause. Alert mail is left out, here and of
# the mail sent: it must not raise, or end, the alert about itself.
_STUCK = select(OutboxMessage.id).where(
    OutboxMessage.status.in_(_WAITING), ~_ALERT_MAIL, _AFTER_FAILURE
)


def _mail_failing(now: datetime) -> ColumnElement[bool]:
    """Failing: no message was sent in the last MAIL_SENT_WITHIN, and messages wait after
    a failed attempt or a pause. Existence only: the watch asks every minute, and a count
    of a large queue reads all of it.

    The mail sent is asked first: it keeps to a few index entries, and when mail goes out
    it spares the walk through the waiting messages."""
    cutoff = now - MAIL_SENT_WITHIN
    # A sent message's next_attempt_at is the end of the lease it was sent under, never
    # before its sent_at: the first condition keeps the query to the status index.
    sent = select(OutboxMessage.id).where(
        OutboxMessage.status == OutboxStatus.SENT,
        OutboxMessage.next_attempt_at >= cutoff,
        OutboxMessage.sent_at >= cutoff,
        ~_ALERT_MAIL,
    )
    return and_(~sent.exists(), _STUCK.exists())


def _describe(
    session: Session, kind: AlertKind, alert: AlertRow | None, now: datetime
) -> tuple[datetime, str]:
    """Since when the trouble of ``kind`` holds (the open alert's start, else the last beat
    or now) and what the owners are told of it.

    The text goes to the owners of every product, so of mail it quotes the server only
    when it refuses us (a pause), never a recipient's refusal, which may name the
    address."""
    if kind is AlertKind.WORKER_SILENT:
        newest = session.scalar(select(func.max(WorkerHeartbeat.beat_at))) or now
        return alert.failing_since if alert else newest, (
            f"No worker has written a heartbeat since {_stamp(newest)}. Until one runs, no "
            "mail, webhook or scheduled e-mail goes out. Start one with `flask worker`, and "
            "look at why the last one stopped."
        )
    since = alert.failing_since if alert else now
    stuck = (
        session.scalar(
            select(func.count()).select_from(_STUCK.limit(MAIL_COUNTED_UP_TO + 1).subquery())
        )
        or 0
    )
    waiting = (
        f"Over {MAIL_COUNTED_UP_TO:,} messages wait"
        if stuck > MAIL_COUNTED_UP_TO
        else f"{stuck:,} message{'' if stuck == 1 else 's'} wait"
    )
    pause = outbox.pause_now(session)  # the newest pause, and the server's last answer
    why = (
        f"The mail server refuses our mail: {' '.join(pause.error.split())}"
        if pause
        else "Their recipients' mail servers deferred them; each product's Status page "
        "shows its messages' errors."
    )
    return since, (
        f"{waiting} after failed attempts, and none has been sent in the last "
        f"{describe_span(MAIL_SENT_WITHIN)} (failing since {_stamp(since)}). {why}"
    )


def _queue(
    session: Session, alert_id: int, state: str, now: datetime, *, due: datetime | None = None
) -> list[int]:
    """One ALERT message to each active owner, under the lowest id of the products they
    own, to be sent at ``due`` (now when not given); returns the messages' ids."""
    owners = session.execute(
        select(Membership.member_id, func.min(Membership.product_id))
        .join(TeamMember, TeamMember.id == Membership.member_id)
        .where(Membership.role == Role.OWNER, TeamMember.is_active.is_(True))
        .group_by(Membership.member_id)
        .order_by(Membership.member_id)
    ).all()
    messages = [
        OutboxMessage(
            product_id=product_id,
            member_id=member_id,
            kind=OutboxKind.ALERT,
            status=OutboxStatus.QUEUED,
            payload={"alert_id": alert_id, "state": state},
            created_at=now,
            next_attempt_at=due or now,
        )
        for member_id, product_id in owners
    ]
    session.add_all(messages)
    session.flush()
    return [message.id for message in messages]


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def _open(
    session: Session,
    kind: AlertKind,
    since: datetime,
    detail: str,
    holds: ColumnElement[bool],
    now: datetime,
) -> AlertRow | None:
    """Open an alert of ``kind`` if its trouble still holds and no other process opened
    one first; the open alert of that kind after it, if any."""
    failing_since = Alert.__table__.c.failing_since
    session.execute(
        _insert(session)(Alert)
        .from_select(
            ["kind", "failing_since", "detail"],
            select(
                literal(kind.value), literal(since, failing_since.type), literal(detail[:500])
            ).where(holds),
        )
        .on_conflict_do_nothing()  # another process opened it first: theirs stands
    )
    return _open_alerts(session, now).get(kind)


def _reopen(
    session: Session, alert: AlertRow, detail: str, holds: ColumnElement[bool], now: datetime
) -> None:
    """The trouble is back before the alert closed: it holds again, and the recovery mail
    waiting for the close is withdrawn, by whichever process reopens it."""
    reopened = session.execute(
        update(Alert)
        .where(Alert.id == alert.id, Alert.recovered_at > now - ALERT_SETTLES_AFTER, holds)
        .values(recovered_at=None, detail=detail[:500])
        .execution_options(synchronize_session=False)
    )
    if _rowcount(reopened) == 1 and alert.alerted_at is not None:
        # Due when the alert would have closed: the index on (status, next_attempt_at)
        # finds it among any number of waiting messages.
        session.execute(
            delete(OutboxMessage)
            .where(
                OutboxMessage.status == OutboxStatus.QUEUED,
                OutboxMessage.next_attempt_at == alert.closes_at,
                _ALERT_MAIL,
                OutboxMessage.payload["alert_id"].as_integer() == alert.id,
            )
            .execution_options(synchronize_session=False)
        )


def _claim(
    session: Session, alert: AlertRow, detail: str, holds: ColumnElement[bool], now: datetime
) -> list[int]:
    """Queue the owners' "down" mail if no other process did and the trouble still holds."""
    claimed = session.execute(
        update(Alert)
        .where(
            Alert.id == alert.id,
            Alert.alerted_at.is_(None),
            Alert.recovered_at.is_(None),
            holds,
        )
        .values(alerted_at=now, detail=detail[:500])
        .execution_options(synchronize_session=False)
    )
    # The one UPDATE that found alerted_at empty queues the mail; on PostgreSQL a second
    # process waits on the row until the first commits, then finds it set.
    if _rowcount(claimed) != 1:
        return []
    return _queue(session, alert.id, "down", now)


def _settle(
    session: Session, alert: AlertRow, holds: ColumnElement[bool], now: datetime
) -> list[int]:
    """The trouble ended: the alert closes ALERT_SETTLES_AFTER from now unless it comes
    back, and the owners' recovery mail, if they were told it began, waits until then."""
    settled = session.execute(
        update(Alert)
        .where(Alert.id == alert.id, Alert.recovered_at.is_(None), ~holds)
        .values(recovered_at=now)
        .returning(Alert.alerted_at)
        .execution_options(synchronize_session=False)
    ).first()
    if settled is None or settled.alerted_at is None:
        return []
    return _queue(session, alert.id, "recovered", now, due=now + ALERT_SETTLES_AFTER)


def _step(
    session: Session,
    kind: AlertKind,
    holds: ColumnElement[bool],
    holding: bool,
    alert: AlertRow | None,
    now: datetime,
) -> Callable[[], list[int]] | None:
    """What the watch does about ``kind``, read now and done in the write turn; None when
    nothing is to be done, as on most runs."""
    if not holding:
        if alert is None or not alert.is_failing:
            return None  # all clear, or settling: it closes by the clock
        return lambda: _settle(session, alert, holds, now)
    due = alert is None or now - alert.failing_since >= THRESHOLDS[kind]
    if alert is not None and alert.is_failing and (alert.alerted_at is not None or not due):
        return None  # told already, or not yet due
    since, detail = _describe(session, kind, alert, now)

    def act() -> list[int]:
        current = alert or _open(session, kind, since, detail, holds, now)
        if current is None:
            return []  # it ended before the turn came
        if not current.is_failing:
            _reopen(session, current, detail, holds, now)
        if current.alerted_at is None and now - current.failing_since >= THRESHOLDS[kind]:
            return _claim(session, current, detail, holds, now)
        return []

    return act


def watch(
    session: Session, *, now: datetime, write_turn: WriteTurn = contextlib.nullcontext
) -> list[int]:
    """Check the worker and the mail: open, announce, settle and close alerts as their
    conditions begin, last and end; returns the ids of the ALERT messages queued (a
    recovery's waits until its alert closes).

    The conditions and the alerts are read outside ``write_turn``, which is taken only
    when something is to change, and each statement that changes it repeats its
    condition. Safe to run from every process at once: opening, announcing, settling and
    reopening are each one conditional statement whose row count decides who queues or
    withdraws the mail, so none goes twice. Commits what it writes."""
    conditions = {
        AlertKind.WORKER_SILENT: _worker_silent(now),
        AlertKind.MAIL_FAILING: _mail_failing(now),
    }
    holding = session.execute(select(*conditions.values())).one()
    opened = _open_alerts(session, now)
    steps = [
        step
        for (kind, holds), held in zip(conditions.items(), holding, strict=True)
        if (step := _step(session, kind, holds, bool(held), opened.get(kind), now))
    ]
    if not steps:
        return []
    queued: list[int] = []
    with write_turn():
        for step in steps:
            queued += step()
        session.commit()
    return queued


def alerts_due(session: Session, *, now: datetime) -> bool:
    """Whether alert mail waits to be sent now (the web sends it when the worker may be
    the one that is down)."""
    due = exists().where(
        OutboxMessage.status == OutboxStatus.QUEUED,
        OutboxMessage.next_attempt_at <= now,
        _ALERT_MAIL,
    )
    return bool(session.scalar(select(due)))


# The Status page ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Status:
    """Everything the console's Status page shows for one product at ``now``.

    - ``worker``: alive or not, the newest heartbeat, every worker's row;
    - ``jobs_waiting``: tasks in the job queue (None: the queue could not be reached);
    - ``outbox``: this product's mail, every product's (one mail server and one set of
      workers serve them all) and the alert mail to the team;
    - ``webhooks``: this product's failing webhook calls;
    - ``last_scheduled``: this product's newest scheduled note that went live;
    - ``traffic``: this product's widget traffic in the last 60 finished minutes;
    - ``warnings``: data that stopped arriving (widget, help desks);
    - ``alerts``: the last 10 alerts (every product shares them), newest first.
    """

    now: datetime
    worker: WorkerHealth
    jobs_waiting: int | None
    outbox: OutboxFigures
    webhooks: WebhookFigures
    last_scheduled: ScheduledNote | None
    traffic: Traffic
    warnings: list[DataWarning]
    alerts: list[AlertRow]

    @property
    def open_alerts(self) -> list[AlertRow]:
        return [alert for alert in self.alerts if alert.is_open]


def status(session: Session, product: Product, *, now: datetime, pending: int | None) -> Status:
    """The product's Status figures at ``now``; ``pending`` is the job queue's length as the
    caller read it (``app.mail.jobs.waiting()``), None when it could not."""
    widget = widget_warning(session, product.id, now=now)
    warnings: list[DataWarning] = [widget] if widget else []
    warnings += help_desk_warnings(session, product.id, now=now)
    return Status(
        now=now,
        worker=worker_health(session, now=now),
        jobs_waiting=pending,
        outbox=outbox_figures(session, product.id, now=now),
        webhooks=webhook_figures(session, product.id, now=now),
        last_scheduled=last_scheduled(session, product.id, now=now),
        traffic=traffic(session, product.id, now=now),
        warnings=warnings,
        alerts=alerts(session, now=now),
    )
