"""The real worker (`flask worker`, Huey's consumer) against a real SMTP server: killed with
SIGKILL in the middle of a batch, restarted, it loses no message and doubles none but
the one that may have been in flight; killed while the server refuses us, restarted, it
waits out the pause the last one began. Its heartbeat comes from a thread of its own,
on time while every job thread is busy."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import func, insert, select, text
from sqlalchemy.orm import Session

from announcements import rollups
from announcements.models import (
    Frequency,
    OutboxMessage,
    OutboxStatus,
    RollupState,
    Subscriber,
    SubscriberStatus,
    WorkerHeartbeat,
    utcnow,
)
from app.extensions import db
from app.mail import delivery
from app.mail.delivery import Report
from app.mail.jobs import JOBS_KEY, Jobs
from tests.factories import make_note, make_product
from tests.mailserver import SmtpServer
from tests.worker import launch, wait_for

CONFIRMED = 2_000
PENDING = 40
UNSUBSCRIBED = 40


def _add_subscribers(session: Session, product_id: int) -> set[str]:
    now = utcnow()
    rows = []
    for number in range(CONFIRMED + PENDING + UNSUBSCRIBED):
        status = (
            SubscriberStatus.CONFIRMED
            if number < CONFIRMED
            else SubscriberStatus.PENDING
            if number < CONFIRMED + PENDING
            else SubscriberStatus.UNSUBSCRIBED
        )
        rows.append(
            {
                "product_id": product_id,
                "email": f"reader{number}@example.com",
                "status": status,
                "frequency": Frequency.EVERY,
                "categories": [],
                "hard_bounces": 0,
                "created_at": now,
            }
        )
    session.execute(insert(Subscriber), rows)
    session.commit()
    return {f"reader{number}@example.com" for number in range(CONFIRMED)}


def _still_to_send(session: Session) -> int:
    session.rollback()  # a fresh snapshot
    return int(
        session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.status.in_([OutboxStatus.QUEUED, OutboxStatus.SENDING]))
        )
        or 0
    )


def test_a_worker_killed_mid_batch_loses_nothing_and_doubles_nothing(
    session: Session, start_worker: Callable[[str], subprocess.Popen]
) -> None:
    product = make_product(session)
    eligible = _add_subscribers(session, product.id)
    with SmtpServer() as server:
        note = make_note(session, product, is_important=True, title="Crash test")
        assert _still_to_send(session) == CONFIRMED

        first = start_worker(server.url)
        wait_for(lambda: len(server.recorder.received) >= CONFIRMED // 3, 120, "a third sent")
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
        at_kill = len(server.recorder.received)
        left = _still_to_send(session)
        assert 0 < left < CONFIRMED, "the kill came in the middle of the batch"

        second = start_worker(server.url)
        wait_for(lambda: _still_to_send(session) == 0, 180, "the rest sent")
        second.send_signal(signal.SIGINT)
        second.wait(timeout=60)

        counts = server.recorder.per_recipient()
    duplicates = sum(count - 1 for count in counts.values() if count > 1)
    print(
        f"\ncrash test: {CONFIRMED} eligible, killed after {at_kill} accepted with {left} "
        f"to send; {sum(counts.values())} accepted in all; duplicates: {duplicates}"
    )
    assert set(counts) == eligible  # none for pending or unsubscribed subscribers
    assert duplicates <= 1  # at most the message in flight at the kill
    statuses = session.execute(
        select(OutboxMessage.status, func.count())
        .where(OutboxMessage.note_id == note.id)
        .group_by(OutboxMessage.status)
    ).all()
    assert statuses == [(OutboxStatus.SENT, CONFIRMED)]


def test_wake_ups_during_a_run_send_again_but_never_alongside_it(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs: Jobs = app.extensions[JOBS_KEY]
    running, most, runs = 0, 0, 0
    late_wake = threading.Thread(target=jobs.deliver.call_local)

    def fake_deliver_due(_transport: object) -> Report:
        nonlocal running, most, runs
        running += 1
        most = max(most, running)
        runs += 1
        if runs == 1:  # woken while the first run is still sending
            late_wake.start()
            late_wake.join(timeout=10)
            assert not late_wake.is_alive(), "a wake-up waited for the run in progress"
        running -= 1
        return Report()

    monkeypatch.setattr(delivery, "deliver_due", fake_deliver_due)
    jobs.deliver.call_local()
    assert (runs, most) == (2, 1)


def _recorded(session: Session) -> list[tuple[OutboxStatus, int, object, object]]:
    """Each message's state, once a run has recorded every one; empty before."""
    session.rollback()  # a fresh snapshot
    rows = session.execute(
        select(
            OutboxMessage.status,
            OutboxMessage.attempts,
            OutboxMessage.next_attempt_at,
            OutboxMessage.paused_at,
        ).order_by(OutboxMessage.id)
    ).all()
    waiting = (OutboxStatus.QUEUED, OutboxStatus.SENDING)
    if any(status in waiting and paused_at is None for status, _, _, paused_at in rows):
        return []
    return [tuple(row) for row in rows]


def test_a_restarted_worker_waits_out_the_pause_the_killed_one_began(
    session: Session, start_worker: Callable[[str], subprocess.Popen], tmp_path: Path
) -> None:
    product = make_product(session)
    for name in ("ann", "bob", "eve"):
        session.add(
            Subscriber(
                product_id=product.id,
                email=f"{name}@example.com",
                status=SubscriberStatus.CONFIRMED,
                frequency=Frequency.EVERY,
                categories=[],
            )
        )
    session.commit()
    with SmtpServer() as server:
        server.recorder.sender_reply = "550 5.7.1 Sender address rejected: not owned by user"
        make_note(session, product, is_important=True)
        first = start_worker(server.url)
        wait_for(lambda: bool(_recorded(session)), 60, "the first run recorded")
        held = _recorded(session)
        assert [(status, attempts) for status, attempts, _, _ in held] == [
            (OutboxStatus.QUEUED, 0)
        ] * 3
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)

        second = start_worker(server.url)
        # The consumer says it started once the worker's first sweep is over.
        log = tmp_path / "worker-1.log"
        wait_for(lambda: b"consumer started" in log.read_bytes(), 60, "the second worker")
        assert _recorded(session) == held  # nothing tried before the retry time
        assert server.recorder.senders_offered == 1
        second.send_signal(signal.SIGINT)
        second.wait(timeout=60)
    session.rollback()
    bounced = select(func.count()).where(Subscriber.status == SubscriberStatus.BOUNCED)
    assert session.scalar(bounced) == 0


# The heartbeat --------------------------------------------------------------------------

BEAT_EVERY = 0.25  # seconds, rather than the minute a worker waits between beats


@pytest.fixture
def beating_worker(
    app: Flask, database_url: str, tmp_path: Path
) -> Iterator[Callable[[], subprocess.Popen]]:
    """Start `flask worker` beating every BEAT_EVERY seconds, on the test app's database
    and job queue (so the test can queue jobs for it); stopped after the test."""
    started: list[subprocess.Popen] = []
    server = SmtpServer()

    def start() -> subprocess.Popen:
        log = tmp_path / "beating-worker.log"
        started.append(
            launch(
                server.url,
                log,
                database_url=database_url,
                instance=Path(app.instance_path),
                FLASK_WORKER_HEARTBEAT_EVERY=str(BEAT_EVERY),
            )
        )
        wait_for(lambda: b"consumer started" in log.read_bytes(), 60, "the worker")
        return started[-1]

    with server:
        yield start
        for process in started:
            process.kill()
            process.wait(timeout=30)


def _beats(session: Session) -> list[object]:
    session.rollback()  # a fresh snapshot
    return list(session.scalars(select(WorkerHeartbeat.beat_at)))


def _beats_seen(session: Session, seen: set[object], wanted: int) -> Callable[[], bool]:
    """A condition for wait_for: ``wanted`` distinct heartbeats seen, counting those
    already in ``seen``."""

    def moved() -> bool:
        seen.update(_beats(session))
        return len(seen) >= wanted

    return moved


def test_the_worker_beats_on_its_own_clock(
    session: Session, beating_worker: Callable[[], subprocess.Popen]
) -> None:
    """Beats come every BEAT_EVERY seconds, far more often than the queue's minute
    ticks, which would give at most two in these few seconds."""
    beating_worker()
    seen: set[object] = set()
    wait_for(_beats_seen(session, seen, 5), 15, "five heartbeats")
    assert len(_beats(session)) == 1  # one row per worker process


def test_the_heartbeat_goes_on_while_every_job_thread_is_busy(
    app: Flask,
    session: Session,
    database_url: str,
    beating_worker: Callable[[], subprocess.Popen],
) -> None:
    """Both of the worker's threads are held by roll-ups waiting for a lock (as long jobs
    hold them), so the minute's tick waits in the queue; the heartbeat still moves."""
    if database_url.startswith("sqlite"):
        pytest.skip("on SQLite a job held by a lock would hold the one writer, heartbeat too")
    product = make_product(session)
    rollups.refresh(session, product, now=utcnow())
    beating_worker()
    jobs: Jobs = app.extensions[JOBS_KEY]

    def waiting_for_locks() -> int:
        with db.engine.connect() as connection:
            return int(
                connection.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE wait_event_type = 'Lock' AND datname = current_database()"
                    )
                )
                or 0
            )

    with db.engine.connect() as holder:
        # The roll-ups' watermark, held: both runs wait for it to move theirs.
        holder.execute(
            select(RollupState).where(RollupState.product_id == product.id).with_for_update()
        )
        jobs.rollup()
        jobs.rollup()
        wait_for(lambda: waiting_for_locks() == 2, 30, "both job threads to wait")
        seen = set(_beats(session))
        wait_for(_beats_seen(session, seen, len(seen) + 3), 15, "three more heartbeats")
        assert waiting_for_locks() == 2, "the job threads were still busy"
        holder.rollback()
