"""Background jobs on Huey: sending the outbox and the webhook deliveries, the
worker's minute (housekeeping and the watch for trouble), the Insights roll-up every ten
minutes, the hourly support-impact roll-up, and the nightly retention run. The worker's
heartbeat is not a job: a thread of its own writes it, whatever the jobs are doing.

Huey only carries wake-up calls; the outbox and webhook_delivery tables are what
must be sent. A lost task (a killed worker, Redis restarted) therefore loses nothing:
the periodic task finds whatever is due within a minute, and ``flask worker`` queues it
as it starts (or runs it itself while the queue cannot be reached).

Storage: SQLite (``instance/huey.db``) by default, Redis when ``REDIS_URL`` is set,
so that several workers on several machines share one queue.

Redis away: a wake-up the web cannot queue is logged and dropped (the rows wait). The
worker lives through it: Huey's consumer tries each read again (at most every 2 s), and
its scheduler, which queues the minute's tick through Redis too, loses those ticks; so
while the queue cannot be reached the worker's own clock, the heartbeat's thread, runs
the tick from a thread of its own, and mail and webhook calls go out each minute as
ever. The roll-ups wait for Redis; their next run catches up. Once Redis answers, the
consumer reads again with no restart.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import with_appcontext
from huey import Huey, RedisHuey, SqliteHuey, crontab
from redis import ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from announcements import monitoring, outbox, retention, rollups, support_impact
from announcements.models import Product, utcnow
from app import webhooks
from app.database import write_turn
from app.extensions import db
from app.mail import delivery, transport

log = logging.getLogger(__name__)

JOBS_KEY = "tidings.jobs"
# Seconds between a worker's heartbeats; it is called silent after five minutes.
HEARTBEAT_EVERY = 60.0

# A roll-up of every product: support_impact.rebuild, rollups.refresh_all.
RollUp = Callable[..., dict[str, int]]


class Jobs:
    """The app's queue and the tasks registered on it."""

    def __init__(self, app: Flask) -> None:
        self.huey = self._queue(app)
        self.app = app
        # One sending run at a time in a process: each has one message with the server
        # and not yet recorded, so a killed worker can send at most one message twice.
        self._sending = threading.Lock()
        self._due = threading.Event()
        # Held while a tick the worker's clock started runs (the queue away), so that
        # minutes of a long send do not pile threads up.
        self._ticking = threading.Lock()
        self.deliver = self.huey.task(name="tidings.deliver")(self._deliver)
        self.tick = self.huey.periodic_task(crontab(minute="*"), name="tidings.tick")(self._tick)
        # Support impact: every product's roll-up hourly (off the top of the hour, when
        # digests go out), and one product's when the console asks.
        self.support_rollup = self.huey.periodic_task(
            crontab(minute="7"), name="tidings.support_rollup"
        )(self._support_rollup)
        self.refresh_support = self.huey.task(name="tidings.refresh_support")(self._refresh_support)
        # Insights: every product's roll-up increment, every ten minutes, off the minutes
        # when digests (the top of the hour) and support impact (:07) run.
        self.rollup = self.huey.periodic_task(crontab(minute="3-59/10"), name="tidings.rollup")(
            self._rollup
        )
        # Retention: every product's periods applied once a day, at night in Europe and
        # off the roll-ups' minutes; a product run in the last 12 hours is left alone, as
        # every worker's scheduler queues the task.
        self.retention = self.huey.periodic_task(
            crontab(minute="27", hour="3"), name="tidings.retention"
        )(self._retention)

    @staticmethod
    def _queue(app: Flask) -> Huey:
        if app.config["REDIS_URL"]:
            # Bounded waits: a request that queues a wake-up, with Redis hung, waits at
            # most a second to connect and 3 s for an answer (the consumer's BRPOP itself
            # waits 1 s for a task), not redis-py's 5 s of each. A Redis that restarted
            # needs nothing: redis-py replaces a pooled connection the server closed
            # before using it.
            pool = ConnectionPool.from_url(
                app.config["REDIS_URL"], socket_connect_timeout=1.0, socket_timeout=3.0
            )
            return RedisHuey("tidings", connection_pool=pool, results=False)
        path = Path(app.instance_path) / "huey.db"
        return SqliteHuey("tidings", filename=str(path), results=False)

    def _deliver(self) -> None:
        """Send what is due; when a run is already going, ask it to go round once more
        instead, so what was queued during its last look is not left for the next minute."""
        self._due.set()
        while self._due.is_set() and self._sending.acquire(blocking=False):
            try:
                while self._due.is_set():
                    self._due.clear()
                    self._send_due()
            finally:
                self._sending.release()

    def _send_due(self) -> None:
        with self.app.app_context():
            calls = webhooks.deliver_due()
            if any(calls.values()):
                log.info("webhooks: %s", ", ".join(f"{v} {k}" for k, v in calls.items() if v))
            sender = transport.from_config(self.app.config["SMTP_URL"], self.app.instance_path)
            try:
                report = delivery.deliver_due(sender)
            finally:
                sender.close()
            if report.sent or report.failed or report.retried or report.skipped:
                log.info(
                    "mail: %d sent, %d skipped, %d to retry, %d failed",
                    report.sent,
                    report.skipped,
                    report.retried,
                    report.failed,
                )
            if report.paused:
                log.warning(
                    "mail: sending paused until %s: %s",
                    report.paused.retry_at.isoformat(timespec="seconds"),
                    report.paused.error,
                )

    def beat(self) -> None:
        """Write this worker's heartbeat, in an app context (and so a session) of its own."""
        with self.app.app_context(), write_turn():
            monitoring.beat(db.session(), outbox.worker_name(), now=utcnow())
            db.session.commit()

    def keep_beating(self, every: float) -> threading.Event:
        """Beat every ``every`` seconds from a daemon thread until the event returned is
        set. Not a periodic task: the queue hands those to the worker's threads only when
        one is free, and two busy with a long roll-up and a big newsletter would leave
        the heartbeat waiting behind them, and owners told that a working worker is
        silent. After each beat, if the queue cannot be reached, the thread starts the
        tick that the queue cannot bring."""
        stop = threading.Event()
        threading.Thread(
            target=self._beat_until, args=(stop, every), name="tidings-heartbeat", daemon=True
        ).start()
        return stop

    def _beat_until(self, stop: threading.Event, every: float) -> None:
        while not stop.wait(every):
            try:
                self.beat()
            except Exception:  # the database away for a moment: the next beat may do
                log.exception("could not write the heartbeat")
            if self.waiting() is None:
                log.warning("this worker ticks by itself while the queue cannot be reached")
                self.tick_aside()

    def tick_now(self) -> None:
        """Queue the tick for a worker now; run it from a thread of this process when the
        queue cannot be reached. For the worker only: the web never sends mail."""
        try:
            self.tick()
        except Exception:
            log.warning("could not reach the job queue; this worker ticks by itself")
            self.tick_aside()

    def tick_aside(self) -> None:
        """Run the tick from a thread of its own, unless the last one this started still
        runs; the heartbeat's thread goes on beating meanwhile."""
        if not self._ticking.acquire(blocking=False):
            return
        try:
            threading.Thread(target=self._tick_aside, name="tidings-tick", daemon=True).start()
        except BaseException:
            self._ticking.release()
            raise

    def _tick_aside(self) -> None:
        try:
            self._tick()
        except Exception:
            log.exception("the worker's own tick failed")
        finally:
            self._ticking.release()

    def _tick(self) -> None:
        with self.app.app_context():
            with write_turn():
                # Heartbeats and widget traffic too old to be shown.
                monitoring.prune(db.session(), now=utcnow())
                db.session.commit()
            done = delivery.housekeeping()
            # The watch reads outside the turn, takes it only to write, and commits.
            alerts = monitoring.watch(db.session(), now=utcnow(), write_turn=write_turn)
        if alerts:
            log.warning("alerts: %d messages to owners queued", len(alerts))
        if any(done.values()):
            log.info("mail: %s", ", ".join(f"{k} {v}" for k, v in done.items()))
        self._deliver()

    def _rollup(self) -> None:
        self._roll_up("insights roll-up", rollups.refresh_all)

    def _support_rollup(self) -> None:
        self._roll_up("support impact", support_impact.rebuild)

    def _retention(self) -> None:
        daily = functools.partial(retention.run_all, unless_ran_within=retention.RERUN_AFTER)
        self._roll_up("retention", daily)

    def _roll_up(self, what: str, every_product: RollUp) -> None:
        """Run a roll-up of every product and log what it wrote (a product that failed
        is logged by the roll-up and missing from the count)."""
        started = time.perf_counter()
        with self.app.app_context():
            done = every_product(db.session(), now=utcnow(), write_turn=write_turn)
            db.session.commit()
        log.info(
            "%s: %d rows for %d products in %.1f s",
            what,
            sum(done.values()),
            len(done),
            time.perf_counter() - started,
        )

    def _refresh_support(self, product_id: int) -> None:
        with self.app.app_context():
            product = db.session.get(Product, product_id)
            if product is not None:  # deleted since it was asked for
                support_impact.refresh(db.session(), product, now=utcnow(), write_turn=write_turn)
                db.session.commit()

    def request_refresh(self, product_id: int) -> bool:
        """Ask a worker to recount one product's support impact now; False when the queue
        cannot be reached, and the hourly roll-up does it."""
        try:
            self.refresh_support(product_id)
        except Exception:
            log.warning("could not reach the job queue; support impact is recounted hourly")
            return False
        return True

    def waiting(self) -> int | None:
        """Tasks waiting in the queue; None when it cannot be reached."""
        try:
            return int(self.huey.pending_count())
        except Exception:
            log.warning("could not reach the job queue to count its tasks")
            return None

    def wake(self) -> None:
        """Ask a worker to send what was just queued. If the queue cannot be reached the
        messages and calls wait in their tables for the next minute's sweep; nothing is
        lost."""
        try:
            self.deliver()
        except Exception:
            log.warning("could not reach the job queue; mail goes out on the next sweep")


class _QueueAway(logging.Filter):
    """Huey's consumer logs a traceback for every read and every scheduling of a queue
    that cannot be reached: several a second while Redis is down. Let one a minute
    through for each of its loggers, as one line naming the error."""

    def __init__(self) -> None:
        super().__init__()
        self._last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, (RedisConnectionError, RedisTimeoutError)):
            return True
        now = time.monotonic()
        if now - self._last.get(record.name, -math.inf) < 60:
            return False
        self._last[record.name] = now
        said = record.getMessage().rstrip(".")
        record.msg, record.args = f"{said}: {error} (said once a minute)", None
        record.exc_info = record.exc_text = None
        return True


def wake() -> None:
    jobs: Jobs = current_app.extensions[JOBS_KEY]
    jobs.wake()


def waiting() -> int | None:
    """Tasks waiting in the job queue (Status, /metrics); None when it cannot be reached."""
    jobs: Jobs = current_app.extensions[JOBS_KEY]
    return jobs.waiting()


def request_refresh(product_id: int) -> bool:
    jobs: Jobs = current_app.extensions[JOBS_KEY]
    return jobs.request_refresh(product_id)


@click.command("worker")
@click.option("--threads", default=2, show_default=True, help="Jobs run at once.")
@click.option(
    "--heartbeat-every",
    default=HEARTBEAT_EVERY,
    type=click.FloatRange(min=0.1),
    show_default=True,
    help="Seconds between heartbeats (FLASK_WORKER_HEARTBEAT_EVERY).",
)
@with_appcontext
def worker_command(threads: int, heartbeat_every: float) -> None:
    """Run the background worker: sends mail and webhooks, queues scheduled notes and
    digests, keeps the roll-ups, and tells owners when the worker or the mail fails."""
    away = _QueueAway()
    for consumer_part in ("huey.consumer.Worker", "huey.consumer.Scheduler"):
        logging.getLogger(consumer_part).addFilter(away)
    jobs: Jobs = current_app.extensions[JOBS_KEY]
    # Alive from the start, and every minute after whatever the jobs are doing.
    jobs.beat()
    beating = jobs.keep_beating(heartbeat_every)
    # Whatever a previous worker left behind goes out now, not at the next minute.
    jobs.tick_now()
    consumer = jobs.huey.create_consumer(
        workers=threads, worker_type="thread", periodic=True, max_delay=2.0
    )
    try:
        consumer.run()
    finally:
        beating.set()


def init_app(app: Flask) -> None:
    app.extensions[JOBS_KEY] = Jobs(app)
    app.cli.add_command(worker_command)
