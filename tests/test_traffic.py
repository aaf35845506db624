"""Widget traffic: counted in each web process, written a finished minute at a time, and
summed over every process when read: requests, 5xx errors, and the p95 latency from the
merged histograms. SQLite and PostgreSQL."""

from __future__ import annotations

import math
import random
import time
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from announcements import monitoring
from announcements.models import Product, TrafficMinute
from app import health
from tests.factories import make_product
from tests.test_widget_api import user_hash

# A time well inside a minute, so that "the next minute" is unambiguous.
T0 = datetime(2030, 5, 6, 14, 0, 10, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def _rows(session: Session) -> list[tuple[str, datetime, int, int, int, list[int]]]:
    session.rollback()
    return [
        (row.process, row.minute, row.product_id, row.requests, row.errors, row.latency)
        for row in session.scalars(
            select(TrafficMinute).order_by(
                TrafficMinute.process, TrafficMinute.minute, TrafficMinute.product_id
            )
        )
    ]


def _nearest_rank_p95(latencies: list[float]) -> float:
    ordered = sorted(latencies)
    return ordered[math.ceil(0.95 * len(ordered)) - 1]


def test_a_minute_is_written_once_it_is_over_and_a_deleted_products_requests_are_dropped(
    session: Session,
) -> None:
    first, second, gone = make_product(session), make_product(session), make_product(session)
    recorder = monitoring.TrafficRecorder()
    statuses = [200, 200, 304, 401, 500, 503, 200]
    for number, status in enumerate(statuses):
        recorder.record(first.id, status=status, milliseconds=number * 7.0, at=T0)
    recorder.record(second.id, status=200, milliseconds=3.0, at=T0)
    recorder.record(gone.id, status=200, milliseconds=1.0, at=T0)
    recorder.record(first.id, status=200, milliseconds=1.0, at=T0 + MINUTE)
    session.delete(gone)
    session.commit()

    # The minute is not over: nothing is written.
    assert recorder.flush(session, "web-1", now=T0 + timedelta(seconds=30)) == 0
    assert recorder.flush(session, "web-1", now=T0 + MINUTE) == 2
    session.commit()
    minute = T0.replace(second=0)
    by_product = {row[2]: row for row in _rows(session)}
    assert set(by_product) == {first.id, second.id}
    _process, at, _product, requests, errors, latency = by_product[first.id]
    assert (at, requests, errors) == (minute, len(statuses), 2)
    assert sum(latency) == len(statuses)
    # 0, 7, 14, ... 42 ms: each in the first bucket whose bound it does not exceed.
    expected = [0] * (len(monitoring.LATENCY_BUCKETS_MS) + 1)
    for number in range(len(statuses)):
        bound = next(i for i, b in enumerate(monitoring.LATENCY_BUCKETS_MS) if number * 7 <= b)
        expected[bound] += 1
    assert latency == expected
    assert by_product[second.id][3:5] == (1, 0)

    # The next minute's request waits for its minute to end.
    assert recorder.has_finished(T0 + MINUTE) is False
    assert recorder.flush(session, "web-1", now=T0 + 2 * MINUTE) == 1
    session.commit()
    assert [row[1:4] for row in _rows(session) if row[1] == minute + MINUTE] == [
        (minute + MINUTE, first.id, 1)
    ]


def test_a_request_recorded_after_its_minute_was_written_counts_in_the_next(
    session: Session,
) -> None:
    product = make_product(session)
    recorder = monitoring.TrafficRecorder()
    recorder.record(product.id, status=200, milliseconds=2.0, at=T0)
    recorder.flush(session, "web-1", now=T0 + MINUTE)
    # A request that ended in the first minute, counted after the flush took it.
    recorder.record(product.id, status=200, milliseconds=2.0, at=T0)
    recorder.flush(session, "web-1", now=T0 + 2 * MINUTE)
    session.commit()
    minute = T0.replace(second=0)
    assert [(row[1], row[3]) for row in _rows(session)] == [(minute, 1), (minute + MINUTE, 1)]


def test_two_processes_sum_to_the_requests_errors_and_p95_the_test_recorded(
    session: Session,
) -> None:
    product = make_product(session)
    other = make_product(session)
    rng = random.Random(16)
    now = T0 + timedelta(minutes=60)
    recorded: list[float] = []
    errors = 0
    per_minute: dict[datetime, int] = {}
    processes = {"web-a": monitoring.TrafficRecorder(), "web-b": monitoring.TrafficRecorder()}
    for minute in range(60):
        at = T0 + timedelta(minutes=minute)
        for name, recorder in processes.items():
            # Two processes with different loads and speeds.
            for _request in range(rng.randint(0, 12) if name == "web-a" else rng.randint(0, 4)):
                milliseconds = rng.lognormvariate(3.5 if name == "web-a" else 5.0, 0.9)
                status = 500 if rng.random() < 0.03 else 200
                recorder.record(product.id, status=status, milliseconds=milliseconds, at=at)
                recorded.append(milliseconds)
                errors += status >= 500
                per_minute[at.replace(second=0)] = per_minute.get(at.replace(second=0), 0) + 1
        # Another product's traffic is not this one's.
        processes["web-a"].record(other.id, status=500, milliseconds=9000.0, at=at)
    for name, recorder in processes.items():
        recorder.flush(session, name, now=now)
    session.commit()

    traffic = monitoring.traffic(session, product.id, now=now)
    assert traffic.requests == len(recorded)
    assert traffic.errors == errors
    assert traffic.per_minute == len(recorded) / 60
    assert len(traffic.minutes) == 60
    assert traffic.minutes[0].minute == T0.replace(second=0)
    assert {point.minute: point.requests for point in traffic.minutes if point.requests} == (
        per_minute
    )
    # The p95 is the upper bound of the bucket the true 95th percentile falls in.
    true_p95 = _nearest_rank_p95(recorded)
    bounds = (0, *monitoring.LATENCY_BUCKETS_MS)
    assert traffic.p95_ms is not None
    assert traffic.p95_ms in monitoring.LATENCY_BUCKETS_MS
    assert bounds[bounds.index(int(traffic.p95_ms)) - 1] < true_p95 <= traffic.p95_ms
    # The error rate, with an interval that holds it.
    rate = traffic.error_rate
    assert rate.value == errors / len(recorded)
    assert rate.low is not None and rate.high is not None
    assert 0 <= rate.low < rate.value < rate.high <= 1

    by_product = monitoring.traffic_by_product(session, now=now)
    assert by_product[product.id].requests == len(recorded)
    assert by_product[product.id].p95_ms == traffic.p95_ms
    assert (by_product[other.id].requests, by_product[other.id].errors) == (60, 60)
    assert by_product[other.id].p95_ms == math.inf  # over the last bucket's 5 s

    # An hour later the window holds none of it.
    assert monitoring.traffic(session, product.id, now=now + timedelta(hours=1)).requests == 0


def test_no_requests_have_no_rate_and_no_p95(session: Session) -> None:
    product = make_product(session)
    traffic = monitoring.traffic(session, product.id, now=T0)
    assert (traffic.requests, traffic.p95_ms, traffic.error_rate.value) == (0, None, None)
    assert [point.requests for point in traffic.minutes] == [0] * 60


def test_the_widget_routes_are_timed_and_written_by_the_web(
    app: Flask, client: FlaskClient, session: Session
) -> None:
    product: Product = make_product(session)
    if datetime.now(UTC).second >= 55:  # all the requests in one minute
        time.sleep(60 - datetime.now(UTC).second)
    base = f"/api/v1/widget/{product.widget_key}"
    identity = {"user_id": "u-1", "user_hash": user_hash(product, "u-1")}
    answers = [
        client.get(f"{base}/notes", query_string=identity).status_code,
        client.get(f"{base}/notes", query_string=identity).status_code,
        client.get(f"{base}/notes", query_string={"user_id": "u-1", "user_hash": "x"}).status_code,
        client.options(f"{base}/notes").status_code,
        # Not the widget's API: not counted.
        client.get("/healthz").status_code,
        client.get("/api/v1/widget/no-such-key/notes").status_code,
    ]
    assert answers == [200, 200, 401, 204, 200, 404]
    later = datetime.now(UTC) + MINUTE
    assert health.flush_traffic(later) == 1
    rows = _rows(session)
    assert [(row[2], row[3], row[4]) for row in rows] == [(product.id, 4, 0)]
    assert sum(rows[0][5]) == 4


def test_made_up_widget_keys_do_not_stop_a_real_keys_requests_being_counted(
    app: Flask, client: FlaskClient, session: Session
) -> None:
    """A client sending more made-up keys than the counters hold, long ones too: none is
    counted, and the product's requests after them all are."""
    product = make_product(session)
    for number in range(monitoring.MAX_COUNTERS + 1):
        key = f"made-up-{number}-" + "k" * (number % 3) * 1000
        assert client.get(f"/api/v1/widget/{key}/notes").status_code == 404
    if datetime.now(UTC).second >= 55:  # the product's requests in one minute
        time.sleep(60 - datetime.now(UTC).second)
    base = f"/api/v1/widget/{product.widget_key}"
    identity = {"user_id": "u-1", "user_hash": user_hash(product, "u-1")}
    answers = [client.get(f"{base}/notes", query_string=identity).status_code for _ in range(3)]
    assert answers == [200, 200, 200]
    assert health.flush_traffic(datetime.now(UTC) + MINUTE) == 1
    assert [(row[2], row[3]) for row in _rows(session)] == [(product.id, 3)]


def test_a_minute_whose_write_failed_is_written_by_the_next_flush(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    product = make_product(session)
    recorder = monitoring.TrafficRecorder()
    for _ in range(4):
        recorder.record(product.id, status=200, milliseconds=2.0, at=T0)

    def refused() -> None:
        raise OperationalError("COMMIT", {}, Exception("database is locked"))

    with monkeypatch.context() as patched:
        patched.setattr(session, "commit", refused)
        with pytest.raises(OperationalError):
            recorder.flush(session, "web-1", now=T0 + MINUTE)
    assert _rows(session) == []
    # A request of that minute counted meanwhile joins it.
    recorder.record(product.id, status=500, milliseconds=2.0, at=T0)
    assert recorder.has_finished(T0 + 2 * MINUTE)
    assert recorder.flush(session, "web-1", now=T0 + 2 * MINUTE) == 2
    assert [(row[1], row[3], row[4]) for row in _rows(session)] == [
        (T0.replace(second=0), 4, 0),
        (T0.replace(second=0) + MINUTE, 1, 1),
    ]
