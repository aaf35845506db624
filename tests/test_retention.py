"""Retention: each product's periods applied with the clock moved forward (``now`` passed
in, never a sleep), in batches each committed in its own write turn; what it erases,
empties and makes anonymous, and what it leaves alone; the run's row and audit event;
the console's Retention page (owners, CSRF, 422 with nothing changed) and the Status
page's part; and the Insights figures, the same before and after."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from announcements import insights, queries, retention, support_impact
from announcements.models import (
    AuditEvent,
    EndUser,
    OutboxKind,
    OutboxMessage,
    OutboxStatus,
    Product,
    Reaction,
    ReadReceipt,
    RetentionRun,
    Role,
    Subscriber,
    SubscriberStatus,
    TeamMember,
    Webhook,
    WebhookDelivery,
    WebhookEvent,
    WorkerHeartbeat,
    utcnow,
)
from announcements.monitoring import WorkerHealth, WorkerRow
from app.mail import jobs
from tests.conftest import AuthActions, csrf_token
from tests.factories import add_member, make_end_user, make_member, make_note, make_product

# The clock, moved three years forward: everything below is placed relative to it.
NOW = utcnow().replace(microsecond=0) + timedelta(days=3 * 365)


@dataclasses.dataclass
class World:
    product: Product
    owner: TeamMember
    other: Product


@pytest.fixture
def world(session) -> World:
    owner = make_member(session, "owner@example.com")
    product = make_product(session, owner=owner, slug="acme", name="Acme")
    other = make_product(session, slug="elsewhere", name="Elsewhere")
    return World(product, owner, other)


def months(count: int) -> datetime:
    return retention.months_before(NOW, count)


def days(count: float) -> datetime:
    return NOW - timedelta(days=count)


_numbers = itertools.count(1)


def subscriber(session, product: Product, status: SubscriberStatus, **fields: object) -> Subscriber:
    row = Subscriber(
        product_id=product.id,
        email=fields.pop("email", None) or f"{status.value}-{next(_numbers)}@example.com",
        status=status,
        categories=["Fixed"],
        created_at=fields.pop("created_at", days(400)),
        **fields,
    )
    session.add(row)
    session.commit()
    return row


def mail(session, product: Product, status: OutboxStatus, queued: datetime) -> OutboxMessage:
    """A digest to a confirmed subscriber, queued at ``queued``, holding its notes and an
    error that quotes the mail server about the address."""
    to = subscriber(session, product, SubscriberStatus.CONFIRMED, confirmed_at=days(500))
    message = OutboxMessage(
        product_id=product.id,
        subscriber_id=to.id,
        kind=OutboxKind.DIGEST,
        status=status,
        payload={"note_ids": [1, 2]},
        last_error=f"550 {to.email}: mailbox full",
        created_at=queued,
        next_attempt_at=queued,
    )
    session.add(message)
    session.commit()
    return message


def call(session, hook: Webhook, status: OutboxStatus, queued: datetime) -> WebhookDelivery:
    delivery = WebhookDelivery(
        webhook_id=hook.id,
        event=WebhookEvent.PUBLISHED,
        status=status,
        response_status=500,
        last_error="HTTP 500: the receiver said alice@example.com is unknown",
        created_at=queued,
        next_attempt_at=queued,
    )
    session.add(delivery)
    session.commit()
    return delivery


def run(session, product: Product, **options: object) -> RetentionRun:
    done = retention.run(session, product, now=options.pop("now", NOW), **options)
    assert done is not None
    return done


def fresh(session, row):
    session.expire_all()
    return session.get(type(row), session.identity_key(instance=row)[1])


# Months -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "count", "expected"),
    [
        (datetime(2025, 3, 31, 10, 5, tzinfo=UTC), 1, datetime(2025, 2, 28, 10, 5, tzinfo=UTC)),
        (datetime(2024, 3, 31, tzinfo=UTC), 1, datetime(2024, 2, 29, tzinfo=UTC)),
        (datetime(2024, 2, 29, tzinfo=UTC), 12, datetime(2023, 2, 28, tzinfo=UTC)),
        (datetime(2025, 1, 15, tzinfo=UTC), 1, datetime(2024, 12, 15, tzinfo=UTC)),
        (datetime(2025, 5, 31, tzinfo=UTC), 24, datetime(2023, 5, 31, tzinfo=UTC)),
        (datetime(2025, 12, 1, tzinfo=UTC), 120, datetime(2015, 12, 1, tzinfo=UTC)),
    ],
)
def test_months_are_calendar_months(moment: datetime, count: int, expected: datetime) -> None:
    assert retention.months_before(moment, count) == expected


# End users ----------------------------------------------------------------------------------


def test_end_users_not_seen_for_the_period_are_erased(session, world: World) -> None:
    product = world.product
    note = make_note(session, product, now=months(30))
    recent = make_end_user(
        session, product, "seen-23", last_seen_at=months(23), attributes={"plan": "pro"}
    )
    edge = make_end_user(session, product, "seen-at-the-edge", last_seen_at=months(24))
    gone = make_end_user(
        session,
        product,
        "seen-25",
        last_seen_at=months(25),
        first_seen_at=months(29),
        attributes={"email": "gone@example.com"},
    )
    just_gone = make_end_user(
        session, product, "just-past", last_seen_at=months(24) - timedelta(seconds=1)
    )
    elsewhere = make_end_user(session, world.other, "other-product", last_seen_at=months(60))
    session.add(ReadReceipt(end_user_id=gone.id, note_id=note.id, channel="widget"))
    # The gone user's subscription still on the list stays; the one that left goes.
    kept = subscriber(
        session, product, SubscriberStatus.CONFIRMED, end_user_id=gone.id, confirmed_at=days(900)
    )
    left = subscriber(
        session,
        product,
        SubscriberStatus.UNSUBSCRIBED,
        end_user_id=gone.id,
        unsubscribed_at=days(5),
    )
    session.commit()

    done = run(session, product)

    assert done.removed["end_users"] == 2
    for user in (gone, just_gone):
        row = fresh(session, user)
        assert row.erased_at == NOW
        assert row.external_id.startswith("erased:")
        assert row.attributes == {}
        assert row.last_seen_at == user.last_seen_at  # figures still place them
    for user, external_id in ((recent, "seen-23"), (edge, "seen-at-the-edge")):
        row = fresh(session, user)
        assert row.erased_at is None and row.external_id == external_id
    assert fresh(session, recent).attributes == {"plan": "pro"}
    assert fresh(session, elsewhere).erased_at is None  # another product's periods
    assert session.scalar(select(func.count()).select_from(ReadReceipt)) == 1
    kept_row = fresh(session, kept)
    assert kept_row.status is SubscriberStatus.CONFIRMED
    assert kept_row.email == kept.email and kept_row.end_user_id is None
    assert fresh(session, left).erased_at == NOW


def test_a_shorter_period_erases_sooner(session, world: World) -> None:
    product = world.product
    product.retain_end_users_months = 6
    session.commit()
    make_end_user(session, product, "seen-7", last_seen_at=months(7))
    make_end_user(session, product, "seen-5", last_seen_at=months(5))
    assert run(session, product).removed["end_users"] == 1


# Subscribers -------------------------------------------------------------------------------


def test_subscribers_who_left_are_erased_after_the_period(session, world: World) -> None:
    product = world.product
    unsubscribed_31 = subscriber(
        session, product, SubscriberStatus.UNSUBSCRIBED, unsubscribed_at=days(31)
    )
    unsubscribed_29 = subscriber(
        session, product, SubscriberStatus.UNSUBSCRIBED, unsubscribed_at=days(29)
    )
    bounced_31 = subscriber(
        session, product, SubscriberStatus.BOUNCED, confirmed_at=days(300), hard_bounces=3
    )
    bounced_29 = subscriber(
        session, product, SubscriberStatus.BOUNCED, confirmed_at=days(300), hard_bounces=3
    )
    # A bounce is dated by the subscriber's last failed message.
    for who, failed in ((bounced_31, days(31)), (bounced_29, days(29))):
        session.add(
            OutboxMessage(
                product_id=product.id,
                subscriber_id=who.id,
                kind=OutboxKind.NOTE,
                status=OutboxStatus.FAILED,
                created_at=failed,
                next_attempt_at=failed,
            )
        )
    confirmed = subscriber(session, product, SubscriberStatus.CONFIRMED, confirmed_at=days(3000))
    session.commit()

    done = run(session, product)

    assert done.removed["subscribers"] == 2
    for gone in (unsubscribed_31, bounced_31):
        row = fresh(session, gone)
        assert row.erased_at == NOW
        assert row.email.endswith("@erased.invalid")
        assert row.categories == []
    assert fresh(session, bounced_31).status is SubscriberStatus.BOUNCED  # figures stay true
    for stays in (unsubscribed_29, bounced_29, confirmed):
        row = fresh(session, stays)
        assert row.erased_at is None and row.email == stays.email
        assert row.status is stays.status


def test_addresses_never_confirmed_go_once_their_link_expired(session, world: World) -> None:
    product = world.product

    def pending(asked: datetime) -> Subscriber:
        """Asked for years ago, its newest confirmation e-mail queued at ``asked``."""
        row = subscriber(session, product, SubscriberStatus.PENDING, created_at=days(3000))
        session.add(
            OutboxMessage(
                product_id=product.id,
                subscriber_id=row.id,
                kind=OutboxKind.CONFIRM,
                status=OutboxStatus.SENT,
                created_at=asked,
                next_attempt_at=asked,
            )
        )
        session.commit()
        return row

    asked_31, asked_29 = pending(days(31)), pending(days(29))
    never_asked = subscriber(session, product, SubscriberStatus.PENDING, created_at=days(40))

    assert run(session, product).removed["subscribers"] == 2
    assert fresh(session, asked_31).erased_at == NOW
    assert fresh(session, never_asked).erased_at == NOW
    assert fresh(session, asked_29).erased_at is None
    # A one-day period leaves a link that still works alone: it is valid for 7 days.
    product.retain_subscribers_days = 1
    session.commit()
    asked_5 = pending(days(5))
    later = run(session, product, now=NOW + timedelta(hours=1))
    assert later.removed["subscribers"] == 1  # the one asked 29 days ago
    assert fresh(session, asked_5).erased_at is None


# Deliveries -------------------------------------------------------------------------------


def test_finished_deliveries_are_emptied_and_waiting_ones_never(session, world: World) -> None:
    product = world.product
    old = {status: mail(session, product, status, days(31)) for status in OutboxStatus}
    young = mail(session, product, OutboxStatus.SENT, days(29))
    hook = Webhook(product_id=product.id, url="https://hooks.test/x", secret="s", events=[])
    session.add(hook)
    session.commit()
    calls = {status: call(session, hook, status, days(31)) for status in OutboxStatus}
    young_call = call(session, hook, OutboxStatus.FAILED, days(29))

    done = run(session, product)

    finished = (OutboxStatus.SENT, OutboxStatus.FAILED, OutboxStatus.SKIPPED)
    assert done.removed["emails"] == 3
    assert done.removed["webhook_calls"] == 3
    for status, message in old.items():
        row = fresh(session, message)
        assert row.status is status  # what the figures count stays
        if status in finished:
            assert row.payload is None and row.last_error is None
        else:
            assert row.payload == {"note_ids": [1, 2]} and row.last_error
    row = fresh(session, young)
    assert row.payload and row.last_error
    for status, delivery in calls.items():
        row = fresh(session, delivery)
        assert row.response_status == 500
        assert (row.last_error is None) is (status in finished)
    assert fresh(session, young_call).last_error
    # Emptied is emptied: the next run finds nothing.
    assert not any(run(session, product, now=NOW + timedelta(days=1)).removed.values())


# Comment authors --------------------------------------------------------------------------


def _figures(session, product: Product, note) -> dict[str, object]:
    """What Insights and the note's page show of the note, computed from scratch."""
    support_impact.refresh(session, product, now=NOW)
    session.commit()
    comments = insights.comments(session, note)
    return {
        "readership": queries.readership(session, note),
        "note_insights": insights.note_insights(session, note, now=NOW),
        "comments": (comments.total, comments.items),
        "csv": list(insights.comments_csv(session, note, by=None, now=NOW)),
        "impact": support_impact.note_figures(session, note),
        "non_readers": list(
            insights.non_readers_csv(
                session, note, [], pseudonymise=False, key=b"k", by=None, now=NOW
            )
        ),
    }


def test_old_comments_lose_their_author_and_keep_counting(session, world: World) -> None:
    product = world.product
    note = make_note(session, product, now=months(20))
    author = make_end_user(
        session, product, "author", last_seen_at=days(2), first_seen_at=months(20)
    )
    recent_author = make_end_user(
        session, product, "recent-author", last_seen_at=days(2), first_seen_at=months(20)
    )
    quiet = make_end_user(session, product, "quiet", last_seen_at=days(2))
    for user in (author, recent_author, quiet):
        session.add(
            ReadReceipt(end_user_id=user.id, note_id=note.id, read_at=months(14), channel="widget")
        )
    session.add_all(
        [
            Reaction(
                end_user_id=author.id,
                note_id=note.id,
                reaction="love",
                comment="Finally, dark mode",
                created_at=months(13),
                updated_at=months(13),
            ),
            Reaction(
                end_user_id=recent_author.id,
                note_id=note.id,
                reaction="meh",
                comment="Where is the export?",
                created_at=months(11),
                updated_at=months(11),
            ),
            # An old reaction with no comment names no one's words: it stays.
            Reaction(
                end_user_id=quiet.id,
                note_id=note.id,
                reaction="love",
                created_at=months(13),
                updated_at=months(13),
            ),
        ]
    )
    session.commit()
    before = _figures(session, product, note)

    done = run(session, product)

    assert done.removed == dict(
        end_users=0, subscribers=0, emails=0, webhook_calls=0, comment_authors=1
    )
    assert session.scalar(select(Reaction).where(Reaction.end_user_id == author.id)) is None
    moved = session.scalar(select(Reaction).where(Reaction.comment == "Finally, dark mode"))
    holder = session.get(EndUser, moved.end_user_id)
    assert holder.erased_at is not None and holder.external_id.startswith("erased:")
    assert holder.product_id == product.id and holder.attributes == {}
    assert (moved.reaction, moved.created_at, moved.updated_at) == ("love", months(13), months(13))
    assert session.scalar(select(Reaction.end_user_id).where(Reaction.comment.like("Where%"))) == (
        recent_author.id
    )
    assert (
        session.scalar(select(Reaction.end_user_id).where(Reaction.comment.is_(None))) == quiet.id
    )
    assert fresh(session, author).erased_at is None  # the author stays, seen two days ago
    assert _figures(session, product, note) == before


def test_each_old_comment_gets_its_own_anonymous_author(session, world: World) -> None:
    product = world.product
    notes = [make_note(session, product, now=months(20), version=f"1.{i}") for i in range(2)]
    author = make_end_user(session, product, "talkative", last_seen_at=days(1))
    for note in notes:
        session.add(
            Reaction(
                end_user_id=author.id,
                note_id=note.id,
                reaction="love",
                comment=f"About {note.version}",
                created_at=months(13),
                updated_at=months(13),
            )
        )
    session.commit()
    assert run(session, product).removed["comment_authors"] == 2
    holders = session.scalars(select(Reaction.end_user_id)).all()
    assert len(set(holders)) == 2 and author.id not in holders


# Batches, runs, audit ----------------------------------------------------------------------


@contextlib.contextmanager
def counted_turns(session, turns: list[int]) -> Iterator[None]:
    """A write turn that counts itself and checks that what it wrote was committed (or
    rolled back) before it ends: no transaction spans two turns."""
    turns.append(1)
    yield
    assert not session().in_transaction(), "a batch left its transaction open past its turn"


def test_more_rows_than_a_batch_are_all_done_each_batch_committed(session, world: World) -> None:
    product = world.product
    for number in range(7):
        make_end_user(session, product, f"old-{number}", last_seen_at=months(30))
    for number in range(5):
        subscriber(
            session,
            product,
            SubscriberStatus.UNSUBSCRIBED,
            unsubscribed_at=days(40 + number),
            email=f"left-{number}@example.com",
        )
    turns: list[int] = []

    done = run(session, product, batch=3, write_turn=lambda: counted_turns(session, turns))

    assert done.removed["end_users"] == 7 and done.removed["subscribers"] == 5
    assert done.finished_at is not None
    assert session.scalar(select(func.count()).where(EndUser.erased_at.is_(None))) == 0
    # The start, 3 batches of users (3, 3, 1), 2 of subscribers (3, 2), one each of the
    # other three kinds, and the end.
    assert len(turns) == 1 + 3 + 2 + 3 + 1


def test_a_run_stopped_halfway_keeps_what_it_did(session, world: World, monkeypatch) -> None:
    product = world.product
    users = [make_end_user(session, product, f"u{n}", last_seen_at=months(30)) for n in range(5)]
    real = retention.privacy.erase_user_row
    calls = []

    def erase_then_die(session, user, *, now):
        calls.append(user.id)
        if len(calls) == 4:
            raise RuntimeError("the worker was killed")
        return real(session, user, now=now)

    monkeypatch.setattr(retention.privacy, "erase_user_row", erase_then_die)
    with pytest.raises(RuntimeError):
        run(session, product, batch=2)
    session.rollback()
    erased = session.scalars(select(EndUser.id).where(EndUser.erased_at.is_not(None))).all()
    assert sorted(erased) == sorted(user.id for user in users[:2])
    stopped = session.scalar(select(RetentionRun))
    assert stopped.finished_at is None and stopped.removed["end_users"] == 2


def test_the_run_is_recorded_and_audited_with_counts_only(session, world: World) -> None:
    product = world.product
    make_end_user(session, product, "alice-4711", last_seen_at=months(30))
    subscriber(session, product, SubscriberStatus.UNSUBSCRIBED, unsubscribed_at=days(60))

    first = run(session, product)
    second = run(session, product, now=NOW + timedelta(days=1))

    runs = session.scalars(select(RetentionRun).order_by(RetentionRun.started_at)).all()
    assert [r.id for r in runs] == [first.id, second.id]
    assert runs[0].started_at == NOW and runs[0].finished_at >= NOW
    assert runs[0].removed == dict(
        end_users=1, subscribers=1, emails=0, webhook_calls=0, comment_authors=0
    )
    assert not any(runs[1].removed.values())  # a second run finds nothing
    events = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "retention.applied")
    ).all()
    assert len(events) == 1  # none for the run that removed nothing
    assert events[0].product_id == product.id and events[0].actor_id is None
    assert events[0].summary == "Retention — end users erased: 1, subscribers erased: 1"
    assert "alice" not in events[0].summary


def test_the_daily_job_runs_each_product_once(app, session, world: World) -> None:
    make_end_user(session, world.product, "old", last_seen_at=months(30))
    make_end_user(session, world.other, "old-too", last_seen_at=months(30))
    daily = dict(now=NOW, unless_ran_within=retention.RERUN_AFTER)

    assert retention.run_all(session, **daily) == {"acme": 1, "elsewhere": 1}
    # Another worker's scheduler queued it too: nothing is run twice.
    assert retention.run_all(session, **daily) == {"acme": 0, "elsewhere": 0}
    assert session.scalar(select(func.count()).select_from(RetentionRun)) == 2
    later = dict(daily, now=NOW + timedelta(days=1))
    assert retention.run_all(session, **later) == {"acme": 0, "elsewhere": 0}
    assert session.scalar(select(func.count()).select_from(RetentionRun)) == 4


def test_the_worker_task_applies_retention(app, session, world: World) -> None:
    """The periodic task, run as the worker's consumer would, on today's clock."""
    gone = make_end_user(
        session, world.product, "gone", last_seen_at=datetime(2000, 1, 1, tzinfo=UTC)
    )
    worker = app.extensions[jobs.JOBS_KEY]
    assert worker.retention.name == "tidings.retention"

    worker.retention.call_local()

    assert fresh(session, gone).erased_at is not None
    assert session.scalar(select(func.count()).select_from(RetentionRun)) == 2
    worker.retention.call_local()  # a second worker's: run within 12 hours, left alone
    assert session.scalar(select(func.count()).select_from(RetentionRun)) == 2


def test_the_command_runs_one_product_now(app, session, world: World) -> None:
    make_end_user(session, world.product, "ancient", last_seen_at=datetime(2000, 1, 1, tzinfo=UTC))
    make_end_user(session, world.other, "ancient", last_seen_at=datetime(2000, 1, 1, tzinfo=UTC))
    runner = app.test_cli_runner()

    result = runner.invoke(args=["retention", "run", "--product", "acme"])

    assert result.exit_code == 0, result.output
    assert result.output.strip() == "acme: Retention — end users erased: 1"
    erased = session.scalars(select(EndUser.product_id).where(EndUser.erased_at.is_not(None)))
    assert erased.all() == [world.product.id]
    missing = runner.invoke(args=["retention", "run", "--product", "nope"])
    assert missing.exit_code != 0 and "No product with the slug nope." in missing.output


# The console's Retention page --------------------------------------------------------------

GOOD = {
    "end_users_months": "12",
    "subscribers_days": "14",
    "deliveries_days": "90",
    "comment_authors_months": "6",
}


def _periods(session, product: Product) -> retention.Periods:
    session.expire_all()
    return retention.Periods.of(session.get(Product, product.id))


def test_owners_set_the_periods(client, auth: AuthActions, session, world: World) -> None:
    auth.login(world.owner.email)
    page = client.get("/console/p/acme/retention")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'name="end_users_months"' in html and 'value="24"' in html
    assert "No run yet" in html

    saved = client.post(
        "/console/p/acme/retention", data={**GOOD, "csrf_token": csrf_token(client)}
    )

    assert saved.status_code == 302
    assert _periods(session, world.product) == retention.Periods(12, 14, 90, 6)
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "retention.changed"))
    assert event.actor_id == world.owner.id
    assert "end users months 24 → 12" in event.summary
    assert "Retention periods saved" in client.get(saved.headers["Location"]).get_data(True)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("end_users_months", "0"),
        ("end_users_months", "121"),
        ("subscribers_days", "3651"),
        ("deliveries_days", "-1"),
        ("comment_authors_months", "1.5"),
        ("comment_authors_months", "twelve"),
        ("subscribers_days", ""),
        ("deliveries_days", "99999999999999999999999"),
    ],
)
def test_bad_periods_are_refused_and_nothing_changes(
    client, auth: AuthActions, session, world: World, field: str, value: str
) -> None:
    auth.login(world.owner.email)
    before = _periods(session, world.product)

    response = client.post(
        "/console/p/acme/retention",
        data={**GOOD, field: value, "csrf_token": csrf_token(client)},
    )

    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "Nothing was changed" in html
    assert f'id="{field}-error"' in html
    assert _periods(session, world.product) == before
    assert (
        session.scalar(select(AuditEvent).where(AuditEvent.action == "retention.changed")) is None
    )


def test_a_missing_field_is_refused(client, auth: AuthActions, session, world: World) -> None:
    auth.login(world.owner.email)
    partial = {k: v for k, v in GOOD.items() if k != "deliveries_days"}
    response = client.post(
        "/console/p/acme/retention", data={**partial, "csrf_token": csrf_token(client)}
    )
    assert response.status_code == 422
    assert _periods(session, world.product).deliveries_days == 30


def test_a_post_without_csrf_changes_nothing(client, auth: AuthActions, session, world) -> None:
    auth.login(world.owner.email)
    response = client.post("/console/p/acme/retention", data=GOOD)
    assert response.status_code == 400
    assert _periods(session, world.product).end_users_months == 24


@pytest.mark.parametrize("role", [Role.VIEWER, Role.EDITOR])
def test_only_owners_reach_the_page(
    client, auth: AuthActions, session, world: World, role: Role
) -> None:
    member = add_member(session, world.product, role, f"{role.value}@example.com")
    auth.login(member.email)
    assert client.get("/console/p/acme/retention").status_code == 403
    posted = client.post(
        "/console/p/acme/retention", data={**GOOD, "csrf_token": csrf_token(client)}
    )
    assert posted.status_code == 403
    assert _periods(session, world.product).end_users_months == 24


def test_the_page_lists_the_last_runs(client, auth: AuthActions, session, world: World) -> None:
    make_end_user(session, world.product, "old", last_seen_at=months(30))
    run(session, world.product)
    session.add(RetentionRun(product_id=world.other.id, started_at=NOW, removed={"end_users": 99}))
    session.commit()
    auth.login(world.owner.email)
    html = client.get("/console/p/acme/retention").get_data(as_text=True)
    assert "Last runs" in html and "No run yet" not in html
    assert "retention-table" in html and ">99<" not in html


# The Status page -----------------------------------------------------------------------------


def _status(client, auth: AuthActions, world: World) -> str:
    auth.login(world.owner.email)
    response = client.get("/console/p/acme/status")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def _worker(session, started_at: datetime) -> None:
    session.add(WorkerHeartbeat(name="host:1:1", started_at=started_at, beat_at=utcnow()))
    session.commit()


def test_status_shows_the_last_run(client, auth: AuthActions, session, world: World) -> None:
    now = utcnow()
    session.add(
        RetentionRun(
            product_id=world.product.id,
            started_at=now - timedelta(hours=3),
            finished_at=now - timedelta(hours=3) + timedelta(seconds=4),
            removed=dict(
                end_users=3, subscribers=1, emails=240, webhook_calls=0, comment_authors=2
            ),
        )
    )
    session.commit()
    _worker(session, now - timedelta(days=5))

    html = _status(client, auth, world)

    assert "3 end users erased" in html and "1 subscriber erased" in html
    assert "240 e-mails emptied" in html and "2 comments made anonymous" in html
    assert "webhook answers dropped" not in html and "webhook answer dropped" not in html
    assert "Retention has not run" not in html


def test_status_warns_when_retention_is_late(client, auth: AuthActions, session, world) -> None:
    now = utcnow()
    session.add(
        RetentionRun(
            product_id=world.product.id,
            started_at=now - timedelta(days=3),
            finished_at=now - timedelta(days=3),
            removed=dict.fromkeys(retention.KINDS, 0),
        )
    )
    session.commit()
    _worker(session, now - timedelta(days=5))

    html = _status(client, auth, world)

    assert "Retention has not run" in html
    assert "Nothing had passed its time." in html


def test_status_does_not_warn_before_the_worker_had_its_chance(
    client, auth: AuthActions, session, world: World
) -> None:
    _worker(session, utcnow() - timedelta(hours=3))
    html = _status(client, auth, world)
    assert "Retention has not run" not in html and "No run yet" in html


def test_status_warns_when_retention_never_ran(client, auth: AuthActions, session, world) -> None:
    _worker(session, utcnow() - timedelta(days=2))
    assert "It has never run" in _status(client, auth, world)


def test_a_silent_worker_is_not_blamed_on_retention() -> None:
    now = NOW
    dead = WorkerHealth(
        alive=False,
        last_beat_at=now - timedelta(hours=1),
        age=timedelta(hours=1),
        workers=[WorkerRow("h:1:1", now - timedelta(days=9), now - timedelta(hours=1))],
    )
    assert not retention.overdue(None, dead, now=now)
