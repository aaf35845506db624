"""What the Status page shows, against data each test builds and counts itself: workers'
heartbeats, the outbox and webhooks of one product and of all, the last scheduled note,
and the warnings when widget requests or help-desk tickets stop arriving. SQLite and
PostgreSQL."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from announcements import monitoring
from announcements.models import (
    Alert,
    OutboxMessage,
    OutboxStatus,
    Product,
    SubscriberStatus,
    SupportConnection,
    SupportDesk,
    TeamMember,
    Ticket,
    TrafficMinute,
    Webhook,
    WebhookDelivery,
    WebhookEvent,
    WorkerHeartbeat,
)
from tests.factories import make_member, make_note, make_outbox_message, make_product

NOW = datetime(2030, 5, 6, 14, 30, 20, tzinfo=UTC)


# Workers --------------------------------------------------------------------------------------


def test_the_worker_is_alive_while_its_newest_beat_is_five_minutes_old_at_most(
    session: Session,
) -> None:
    assert monitoring.worker_health(session, now=NOW) == monitoring.WorkerHealth(
        alive=False, last_beat_at=None, age=None, workers=[]
    )
    monitoring.beat(session, "host:10:1", now=NOW - timedelta(hours=2))
    monitoring.beat(session, "host:11:1", now=NOW - timedelta(minutes=9))
    monitoring.beat(session, "host:11:1", now=NOW - timedelta(minutes=5))  # the same, later
    session.commit()
    health = monitoring.worker_health(session, now=NOW)
    assert health.alive is True
    assert health.age == timedelta(minutes=5)
    assert [(w.name, w.started_at, w.beat_at) for w in health.workers] == [
        ("host:11:1", NOW - timedelta(minutes=9), NOW - timedelta(minutes=5)),
        ("host:10:1", NOW - timedelta(hours=2), NOW - timedelta(hours=2)),
    ]
    later = monitoring.worker_health(session, now=NOW + timedelta(seconds=1))
    assert later.alive is False


def test_old_heartbeats_and_traffic_are_pruned(session: Session) -> None:
    product = make_product(session)
    monitoring.beat(session, "old", now=NOW - timedelta(days=1, seconds=1))
    monitoring.beat(session, "recent", now=NOW - timedelta(hours=23))
    for age in (timedelta(days=8, minutes=1), timedelta(days=7, hours=23)):
        session.add(
            TrafficMinute(process="web", minute=NOW - age, product_id=product.id, requests=1)
        )
    session.commit()
    assert monitoring.prune(session, now=NOW) == {"heartbeats": 1, "traffic_minutes": 1}
    session.commit()
    assert session.scalars(select(WorkerHeartbeat.name)).all() == ["recent"]
    assert session.scalar(select(func.count()).select_from(TrafficMinute)) == 1


# The outbox and webhooks ----------------------------------------------------------------------


def _message(
    session: Session,
    product: Product,
    status: OutboxStatus,
    *,
    attempts: int = 0,
    error: str | None = None,
    paused_at: datetime | None = None,
    created_at: datetime = NOW,
    to_member: TeamMember | None = None,
) -> OutboxMessage:
    """A confirmation to a new subscriber of ``product``; with ``to_member``, an alert to
    that team member, queued under ``product`` as the alerts are."""
    return make_outbox_message(
        session,
        product,
        status,
        subscriber_status=SubscriberStatus.CONFIRMED,
        member=to_member,
        attempts=attempts,
        last_error=error,
        paused_at=paused_at,
        created_at=created_at,
        next_attempt_at=NOW + timedelta(minutes=attempts),
    )


def test_outbox_figures_split_waiting_mail_and_count_the_last_days_failures(
    session: Session,
) -> None:
    rng = random.Random(7)
    owner = make_member(session)
    products = [make_product(session, owner), make_product(session)]
    # (product id, what the test calls it, whether it is alert mail to the owner)
    made: list[tuple[int, str, bool]] = []
    kinds = ["pending", "in flight", "retrying", "paused", "failed", "old failure", "sent"]
    for _ in range(80):
        product = rng.choice(products)
        kind = rng.choice(kinds)
        # Alert mail is queued under the owner's lowest product, as the watch queues it.
        to_team = rng.random() < 0.25
        member = owner if to_team else None
        if to_team:
            product = products[0]
        if kind == "pending":
            _message(session, product, OutboxStatus.QUEUED, to_member=member)
        elif kind == "in flight":
            _message(session, product, OutboxStatus.SENDING, to_member=member)
        elif kind == "retrying":
            _message(
                session, product, OutboxStatus.QUEUED, attempts=2, error="451", to_member=member
            )
        elif kind == "paused":
            _message(
                session,
                product,
                OutboxStatus.QUEUED,
                error="421 bye",
                paused_at=NOW,
                to_member=member,
            )
        elif kind == "failed":
            _message(
                session, product, OutboxStatus.FAILED, attempts=8, error="550", to_member=member
            )
        elif kind == "old failure":
            _message(
                session,
                product,
                OutboxStatus.FAILED,
                attempts=8,
                error="550 gone",
                created_at=NOW - timedelta(days=2),
                to_member=member,
            )
        else:
            _message(session, product, OutboxStatus.SENT, attempts=1, to_member=member)
        made.append((product.id, kind, to_team))
    newest = _message(session, products[0], OutboxStatus.QUEUED, attempts=1, error="452 full")
    made.append((products[0].id, "retrying", False))
    # Newer still, but alert mail: its error names an owner, and is no product's.
    _message(
        session,
        products[0],
        OutboxStatus.QUEUED,
        attempts=1,
        error="452 <owner> full",
        to_member=owner,
    )
    made.append((products[0].id, "retrying", True))
    session.commit()
    assert {to_team for _p, _k, to_team in made} == {True, False}

    def counted(sorts: list[str]) -> monitoring.MailCounts:
        return monitoring.MailCounts(
            pending=sorts.count("pending") + sorts.count("in flight"),
            retrying=sorts.count("retrying"),
            paused=sorts.count("paused"),
            failed=sorts.count("failed"),
        )

    every_products = counted([kind for _p, kind, to_team in made if not to_team])
    team = counted([kind for _p, kind, to_team in made if to_team])
    for product in products:
        figures = monitoring.outbox_figures(session, product.id, now=NOW)
        mine = [kind for of, kind, to_team in made if of == product.id and not to_team]
        assert figures.product == counted(mine), product.id
        assert figures.products == every_products
        assert figures.team == team
    first = monitoring.outbox_figures(session, products[0].id, now=NOW)
    assert first.last_error == monitoring.LastError("452 full", NOW, newest.next_attempt_at, None)
    overall = monitoring.outbox_figures(session, now=NOW)
    assert overall.product == monitoring.MailCounts()
    assert overall.everything == counted([kind for _p, kind, _t in made])
    assert overall.last_error == first.last_error
    assert overall.pause is not None and overall.pause.error == "421 bye"
    assert overall.pause.since == NOW


def test_webhook_failures_of_the_last_day_with_the_newest_error(session: Session) -> None:
    product, other = make_product(session), make_product(session)
    hooks = {}
    for owner in (product, other):
        hook = Webhook(product_id=owner.id, url=f"https://{owner.slug}.example.com/h", secret="s")
        session.add(hook)
        session.flush()
        hooks[owner.id] = hook
    cases = [
        (product, OutboxStatus.FAILED, 8, "HTTP 500", timedelta(hours=3)),
        (product, OutboxStatus.QUEUED, 2, "HTTP 502", timedelta(hours=1)),
        (product, OutboxStatus.QUEUED, 0, None, timedelta(minutes=1)),  # not tried yet
        (product, OutboxStatus.SENT, 1, None, timedelta(minutes=2)),
        (product, OutboxStatus.FAILED, 8, "HTTP 404", timedelta(days=2)),  # too old
        (other, OutboxStatus.FAILED, 8, "HTTP 410", timedelta(minutes=5)),
    ]
    for owner, status, attempts, error, age in cases:
        session.add(
            WebhookDelivery(
                webhook_id=hooks[owner.id].id,
                event=WebhookEvent.PUBLISHED,
                status=status,
                attempts=attempts,
                last_error=error,
                created_at=NOW - age,
                next_attempt_at=NOW + timedelta(minutes=4),
            )
        )
    session.commit()
    figures = monitoring.webhook_figures(session, product.id, now=NOW)
    assert (figures.retrying, figures.failed, figures.failing) == (1, 1, 2)
    assert figures.last_error == monitoring.LastError(
        "HTTP 502",
        NOW - timedelta(hours=1),
        NOW + timedelta(minutes=4),
        f"https://{product.slug}.example.com/h",
    )
    assert monitoring.webhook_failures_by_product(session, now=NOW) == {
        product.id: 2,
        other.id: 1,
    }


# Scheduled notes ------------------------------------------------------------------------------


def test_the_last_scheduled_note_that_went_live(session: Session) -> None:
    product = make_product(session)
    assert monitoring.last_scheduled(session, product.id, now=NOW) is None
    scheduled = make_note(session, product, status="scheduled", now=NOW - timedelta(days=3))
    make_note(session, product, now=NOW - timedelta(hours=1))  # published on saving
    make_note(session, product, status="scheduled", now=NOW)  # goes live tomorrow
    make_note(session, make_product(session), status="scheduled", now=NOW - timedelta(days=2))
    found = monitoring.last_scheduled(session, product.id, now=NOW)
    assert found is not None
    assert (found.note_id, found.published_at) == (scheduled.id, NOW - timedelta(days=2))
    assert (found.title, found.version) == (scheduled.title, scheduled.version)

    # Saved as a draft and published two minutes later counts: the rule is a minute.
    draft = make_note(session, product, status="draft", now=NOW - timedelta(minutes=30))
    draft.published_at = NOW - timedelta(minutes=28)
    session.commit()
    found = monitoring.last_scheduled(session, product.id, now=NOW)
    assert found is not None and found.note_id == draft.id


# Data that stopped arriving ----------------------------------------------------------------------


def _requests(session: Session, product: Product, at: datetime, requests: int = 3) -> None:
    session.add(
        TrafficMinute(
            process="web",
            minute=at.replace(second=0, microsecond=0),
            product_id=product.id,
            requests=requests,
        )
    )


@pytest.mark.parametrize(("usual_days", "warned"), [(5, True), (4, False), (7, True)])
def test_a_widget_silent_for_an_hour_that_usually_has_requests_is_a_warning(
    session: Session, usual_days: int, warned: bool
) -> None:
    product = make_product(session)
    for days_ago in range(1, usual_days + 1):
        # Somewhere in the same 60 minutes of that day.
        _requests(session, product, NOW - timedelta(days=days_ago, minutes=17 + days_ago))
    # Outside the hour on the other days: not "at this time of day".
    for days_ago in range(usual_days + 1, 8):
        _requests(session, product, NOW - timedelta(days=days_ago, hours=3))
    session.commit()
    warning = monitoring.widget_warning(session, product.id, now=NOW)
    assert warning == (
        monitoring.WidgetSilent(timedelta(minutes=60), usual_days, 7) if warned else None
    )

    # One request in the last hour and all is well.
    _requests(session, product, NOW - timedelta(minutes=59))
    session.commit()
    assert monitoring.widget_warning(session, product.id, now=NOW) is None


def _ticket(session: Session, product: Product, source: str, created_at: datetime) -> None:
    number = session.scalar(select(func.count()).select_from(Ticket))
    session.add(
        Ticket(
            product_id=product.id, source=source, external_id=f"t{number}", created_at=created_at
        )
    )


def test_a_help_desk_silent_for_longer_than_its_longest_gap_is_a_warning(
    session: Session,
) -> None:
    product = make_product(session)
    for source in ("zendesk", "intercom", "freshdesk"):
        session.add(
            SupportConnection(
                product_id=product.id,
                desk=SupportDesk(source),
                source=source,
                token=source,
                secret="s",
            )
        )
    rng = random.Random(3)
    # Zendesk: tickets every few hours for a month, the last one 30 hours ago.
    last = NOW - timedelta(hours=30)
    moments = [last]
    while moments[-1] > last - timedelta(days=40):
        moments.append(moments[-1] - timedelta(minutes=rng.randint(30, 600)))
    for moment in moments:
        _ticket(session, product, "zendesk", moment)
    in_window = sorted(m for m in moments if m >= last - timedelta(days=30))
    longest = max(b - a for a, b in zip(in_window, in_window[1:], strict=False))
    # Intercom: busy, but its newest ticket is younger than its longest gap.
    for hours in (1, 3, 5, 9, 10, 11, 12, 13, 14, 15, 16):
        _ticket(session, product, "intercom", NOW - timedelta(hours=hours))
    # Freshdesk: silent for days, but it had only 9 tickets before.
    for days in range(3, 12):
        _ticket(session, product, "freshdesk", NOW - timedelta(days=days))
    session.commit()
    assert longest < timedelta(hours=30)

    [warning] = monitoring.help_desk_warnings(session, product.id, now=NOW)
    assert (warning.desk, warning.source, warning.last_ticket_at, warning.history) == (
        "Zendesk",
        "zendesk",
        last,
        timedelta(days=30),
    )
    # SQLite subtracts julian days, exact to the millisecond or so.
    assert abs(warning.longest_gap - longest) < timedelta(milliseconds=50)

    # A ticket now ends it.
    _ticket(session, product, "zendesk", NOW - timedelta(minutes=1))
    session.commit()
    assert monitoring.help_desk_warnings(session, product.id, now=NOW) == []


# The page as a whole --------------------------------------------------------------------------


def test_status_gathers_one_products_figures_and_every_alert(session: Session) -> None:
    product, other = make_product(session), make_product(session)
    monitoring.beat(session, "host:1:1", now=NOW - timedelta(minutes=1))
    _message(session, product, OutboxStatus.QUEUED)
    _message(session, other, OutboxStatus.QUEUED)
    _message(session, other, OutboxStatus.QUEUED)
    _requests(session, product, NOW - timedelta(minutes=3), requests=12)
    _requests(session, other, NOW - timedelta(minutes=3), requests=99)
    for number in range(12):
        kind = monitoring.AlertKind.WORKER_SILENT
        session.add(
            Alert(
                kind=kind,
                failing_since=NOW - timedelta(days=12 - number),
                recovered_at=None if number == 11 else NOW - timedelta(days=11 - number),
            )
        )
    session.commit()

    status = monitoring.status(session, product, now=NOW, pending=4)
    assert status.worker.alive is True
    assert status.jobs_waiting == 4
    assert (status.outbox.product.pending, status.outbox.products.pending) == (1, 3)
    assert status.webhooks.failing == 0
    assert status.last_scheduled is None
    assert status.traffic.requests == 12
    assert [point.requests for point in status.traffic.minutes][-3] == 12
    assert status.warnings == []
    assert len(status.alerts) == monitoring.ALERTS_LISTED
    assert [alert.failing_since for alert in status.alerts][:2] == [
        NOW - timedelta(days=1),
        NOW - timedelta(days=2),
    ]
    assert [alert.title for alert in status.open_alerts] == ["The Tidings worker is silent"]
