"""The real worker (`flask worker`, Huey's consumer) against a real SMTP server: killed with
SIGKILL in the middle of a batch, restarted, it loses no message and doubles none but
the one that may have been in flight; killed while the server refuses us, restarted, it
waits out the pause the last one began."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from announcements.models import (
    Frequency,
    OutboxMessage,
    OutboxStatus,
    Subscriber,
    SubscriberStatus,
    utcnow,
)
from app.mail import delivery
from app.mail.delivery import Report
from app.mail.jobs import JOBS_KEY, Jobs
from tests.factories import make_note, make_product
from tests.mailserver import SmtpServer
from tests.worker import wait_for

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
