"""Retention: how long each product keeps what names its end users and subscribers, and
the run that applies it, daily from the worker (``app.mail.jobs``) or on demand
(``flask retention run``).

Four periods, set per product on Console → Retention:

- **End users** the widget has not seen for ``retain_end_users_months`` calendar months
  are erased (:func:`announcements.privacy.erase_user_row`): the row stays as a tombstone
  that names no one, and what they read or reacted still counts. A subscription of
  theirs that is still on the list (pending or confirmed) is the address's own consent
  and is kept, unlinked from the user; one that left is erased with them.
- **Subscribers** who unsubscribed or bounced are erased
  (:func:`announcements.privacy.erase_subscriber`) ``retain_subscribers_days`` days after
  they left: the row stays, unsubscribed under a made-up address, so the list's past
  figures stay true. A bounce is recorded on no column of its own; it is dated as the
  Insights roll-up dates it, by the subscriber's last failed message. An address that
  never confirmed goes the same number of days after its last confirmation e-mail, and
  never before that e-mail's link has expired.
- **Deliveries**: ``retain_deliveries_days`` days after an e-mail or a webhook call was
  queued, once it is finished (sent, failed or skipped), what it held is emptied: an
  e-mail's ``payload`` (the preferences a confirmation asked for, the notes of a digest)
  and ``last_error`` (the mail server's words about the address), a webhook call's
  ``last_error`` (which quotes the receiver's answer). Status, times and attempts stay,
  for the figures; an e-mail or a call still waiting is never touched.
- **Comment authors**: a comment last changed more than ``retain_comment_authors_months``
  months ago moves, with its reaction, to a tombstone of its own
  (:func:`announcements.privacy.anonymous_user`, never seen, so it counts in no note's
  reach): both still count and show, but name no author, and no two comments share one.

A run goes through each kind in batches of :data:`BATCH` rows, each its own transaction
in its own write turn (``app.database.write_turn``): a first run over years of data never
holds SQLite's write lock for long (the widget's writes wait for one batch at most), and
what a killed run did stays done. Its :class:`RetentionRun` row is written as it starts,
its counts with each batch and its end after the last; an audit event with the counts
(never who) is written when it removed anything. A second run at the same time finds
nothing: every kind leaves the rows it handled out of its own selection.
"""

from __future__ import annotations

import calendar
import contextlib
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import astuple, dataclass, fields
from datetime import datetime, timedelta
from typing import overload

from sqlalchemy import Text, and_, cast, func, null, or_, select, update
from sqlalchemy.orm import Session

from announcements import audit, privacy, subscriptions
from announcements.errors import ValidationFailed
from announcements.models import (
    EndUser,
    OutboxKind,
    OutboxMessage,
    OutboxStatus,
    Product,
    Reaction,
    RetentionRun,
    Subscriber,
    SubscriberStatus,
    TeamMember,
    Webhook,
    WebhookDelivery,
)
from announcements.monitoring import WORKER_SILENT_AFTER, WorkerHealth
from announcements.subscriptions import CONFIRM_DAYS
from announcements.support_impact import WriteTurn, for_each_product

# Rows a batch handles: an end user's erasure touches a dozen tables, so 200 of them is a
# write of well under a second on SQLite.
BATCH = 200
# The daily job leaves a product alone when a run of it began this recently: every
# worker's scheduler queues the periodic task, so with two workers it comes twice.
RERUN_AFTER = timedelta(hours=12)
# The run is daily: the Status page warns when the newest began longer ago than this (one
# missed day passes without a warning) while a worker has been up for a whole day, which
# takes it past the run's time of day at least once.
OVERDUE_AFTER = timedelta(days=2)
WORKER_UP_FOR = timedelta(days=1)

# What a run counts, in RetentionRun.removed: end users and subscribers erased, e-mails
# and webhook calls emptied, comments moved to a tombstone.
KINDS = ("end_users", "subscribers", "emails", "webhook_calls", "comment_authors")
FINISHED = (OutboxStatus.SENT, OutboxStatus.FAILED, OutboxStatus.SKIPPED)
ON_THE_LIST = (SubscriberStatus.PENDING, SubscriberStatus.CONFIRMED)
LEFT = (SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED)


# Periods ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Periods:
    """A product's four retention periods."""

    end_users_months: int
    subscribers_days: int
    deliveries_days: int
    comment_authors_months: int

    @classmethod
    def of(cls, product: Product) -> Periods:
        return cls(
            product.retain_end_users_months,
            product.retain_subscribers_days,
            product.retain_deliveries_days,
            product.retain_comment_authors_months,
        )


# Each period's bounds, both allowed, and its unit: at least one (nothing is erased the
# day it is written), at most ten years.
BOUNDS = {
    "end_users_months": (1, 120, "months"),
    "subscribers_days": (1, 3650, "days"),
    "deliveries_days": (1, 3650, "days"),
    "comment_authors_months": (1, 120, "months"),
}


def set_periods(
    session: Session, product: Product, periods: Periods, *, by: TeamMember, now: datetime
) -> bool:
    """Give the product these periods, audited, in the caller's transaction; True when
    any changed. ValidationFailed names each period out of its bounds, and changes none."""
    errors = {}
    for name, (low, high, unit) in BOUNDS.items():
        if not low <= getattr(periods, name) <= high:
            errors[name] = f"Choose a whole number of {unit} from {low} to {high}."
    if errors:
        raise ValidationFailed(errors)
    before = Periods.of(product)
    if periods == before:
        return False
    (
        product.retain_end_users_months,
        product.retain_subscribers_days,
        product.retain_deliveries_days,
        product.retain_comment_authors_months,
    ) = astuple(periods)
    changes = ", ".join(
        f"{field.name.replace('_', ' ')} {getattr(before, field.name)} → "
        f"{getattr(periods, field.name)}"
        for field in fields(Periods)
        if getattr(before, field.name) != getattr(periods, field.name)
    )
    audit.record(session, product, by, "retention.changed", f"Retention: {changes}", now=now)
    return True


def months_before(moment: datetime, months: int) -> datetime:
    """The same time ``months`` calendar months earlier, on the same day of the month, or
    on the month's last day when it is shorter: 31 March less one month is 28 (or 29)
    February, 29 February less twelve months is 28 February."""
    index = moment.year * 12 + moment.month - 1 - months
    year, month = index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


# One batch of each kind ----------------------------------------------------------------------
#
# A batch takes the key it goes on after (the rows are walked by id, so the rows a run
# has handled, or passed over, are not read again) and answers the rows it handled and
# the key to go on after, or None when it was the last.

Batch = Callable[[int], tuple[int, int | None]]


def _next(keys: Sequence[int], limit: int) -> int | None:
    return keys[-1] if len(keys) == limit else None


def _end_users(
    session: Session, product: Product, before: datetime, now: datetime, limit: int
) -> Batch:
    def batch(after: int) -> tuple[int, int | None]:
        users = session.scalars(
            select(EndUser)
            .where(
                EndUser.product_id == product.id,
                EndUser.erased_at.is_(None),
                EndUser.last_seen_at < before,
                EndUser.id > after,
            )
            .order_by(EndUser.id)
            .limit(limit)
        ).all()
        if not users:
            return 0, None
        session.execute(
            update(Subscriber)
            .where(
                Subscriber.end_user_id.in_([user.id for user in users]),
                Subscriber.status.in_(ON_THE_LIST),
                Subscriber.erased_at.is_(None),
            )
            .values(end_user_id=None)
        )
        for user in users:
            privacy.erase_user_row(session, user, now=now)
        return len(users), _next([user.id for user in users], limit)

    return batch


def _subscribers(
    session: Session, product: Product, before: datetime, now: datetime, limit: int
) -> Batch:
    left_at = func.coalesce(subscriptions.bounced_at(), Subscriber.created_at)
    last_asked = (
        select(func.max(OutboxMessage.created_at))
        .where(
            OutboxMessage.subscriber_id == Subscriber.id,
            OutboxMessage.kind == OutboxKind.CONFIRM,
        )
        .scalar_subquery()
    )
    # Never confirmed: gone too once its last confirmation link has expired as well.
    unanswered = func.coalesce(last_asked, Subscriber.created_at) < min(
        before, now - timedelta(days=CONFIRM_DAYS)
    )
    due = or_(
        and_(Subscriber.status.in_(LEFT), left_at < before),
        and_(Subscriber.status == SubscriberStatus.PENDING, unanswered),
    )

    def batch(after: int) -> tuple[int, int | None]:
        subscribers = session.scalars(
            select(Subscriber)
            .where(
                Subscriber.product_id == product.id,
                Subscriber.erased_at.is_(None),
                due,
                Subscriber.id > after,
            )
            .order_by(Subscriber.id)
            .limit(limit)
        ).all()
        for subscriber in subscribers:
            privacy.erase_subscriber(session, subscriber, now=now)
        return len(subscribers), _next([s.id for s in subscribers], limit)

    return batch


def _emails(session: Session, product: Product, before: datetime, limit: int) -> Batch:
    # The payload holds something: neither SQL NULL nor JSON null (which a write of None
    # stores). Compared as text, as PostgreSQL's json type has no equality.
    payload = func.coalesce(cast(OutboxMessage.payload, Text), "null") != "null"

    def batch(after: int) -> tuple[int, int | None]:
        ids = session.scalars(
            select(OutboxMessage.id)
            .where(
                OutboxMessage.product_id == product.id,
                OutboxMessage.status.in_(FINISHED),
                OutboxMessage.created_at < before,
                or_(payload, OutboxMessage.last_error.is_not(None)),
                OutboxMessage.id > after,
            )
            .order_by(OutboxMessage.id)
            .limit(limit)
        ).all()
        if ids:
            session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id.in_(ids))
                .values(payload=null(), last_error=None)
            )
        return len(ids), _next(ids, limit)

    return batch


def _webhook_calls(session: Session, product: Product, before: datetime, limit: int) -> Batch:
    def batch(after: int) -> tuple[int, int | None]:
        ids = session.scalars(
            select(WebhookDelivery.id)
            .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
            .where(
                Webhook.product_id == product.id,
                WebhookDelivery.status.in_(FINISHED),
                WebhookDelivery.created_at < before,
                WebhookDelivery.last_error.is_not(None),
                WebhookDelivery.id > after,
            )
            .order_by(WebhookDelivery.id)
            .limit(limit)
        ).all()
        if ids:
            session.execute(
                update(WebhookDelivery).where(WebhookDelivery.id.in_(ids)).values(last_error=None)
            )
        return len(ids), _next(ids, limit)

    return batch


def _comment_authors(
    session: Session, product: Product, before: datetime, now: datetime, limit: int
) -> Batch:
    def batch(_after: int) -> tuple[int, int | None]:
        # A moved reaction belongs to an erased user, out of this selection: each batch
        # takes the first of those left, with no key.
        reactions = session.scalars(
            select(Reaction)
            .join(EndUser, EndUser.id == Reaction.end_user_id)
            .where(
                EndUser.product_id == product.id,
                EndUser.erased_at.is_(None),
                Reaction.comment.is_not(None),
                Reaction.comment != "",
                Reaction.updated_at < before,
            )
            .order_by(Reaction.end_user_id, Reaction.note_id)
            .limit(limit)
        ).all()
        for reaction in reactions:
            holder = privacy.anonymous_user(session, product, now=now)
            # The end user is part of the key: a new row, and the author's deleted, so that
            # the widget's kept answers of the author are forgotten (app.widget_cache).
            session.add(
                Reaction(
                    end_user_id=holder.id,
                    note_id=reaction.note_id,
                    reaction=reaction.reaction,
                    comment=reaction.comment,
                    created_at=reaction.created_at,
                    updated_at=reaction.updated_at,
                )
            )
            session.delete(reaction)
        session.flush()
        return len(reactions), 0 if len(reactions) == limit else None

    return batch


# A run ------------------------------------------------------------------------------------


@overload
def run(
    session: Session,
    product: Product,
    *,
    now: datetime,
    write_turn: WriteTurn = ...,
    batch: int = ...,
    unless_ran_within: None = None,
) -> RetentionRun: ...


@overload
def run(
    session: Session,
    product: Product,
    *,
    now: datetime,
    write_turn: WriteTurn = ...,
    batch: int = ...,
    unless_ran_within: timedelta,
) -> RetentionRun | None: ...


def run(
    session: Session,
    product: Product,
    *,
    now: datetime,
    write_turn: WriteTurn = contextlib.nullcontext,
    batch: int = BATCH,
    unless_ran_within: timedelta | None = None,
) -> RetentionRun | None:
    """Apply the product's periods as they stand at ``now``, in batches of ``batch`` rows
    each committed in a write turn of its own; the run's row. With ``unless_ran_within``,
    None and nothing done when a run of the product began that recently (the daily job:
    on PostgreSQL the product's row is locked while it looks, so two workers cannot both
    start one)."""
    started = time.monotonic()
    periods = Periods.of(product)
    with write_turn():
        if unless_ran_within is not None and _ran_since(session, product, now - unless_ran_within):
            session.rollback()
            return None
        record = RetentionRun(
            product_id=product.id, started_at=now, removed=dict.fromkeys(KINDS, 0)
        )
        session.add(record)
        session.commit()
    kinds: list[tuple[str, Batch]] = [
        (
            "end_users",
            _end_users(session, product, months_before(now, periods.end_users_months), now, batch),
        ),
        (
            "subscribers",
            _subscribers(
                session, product, now - timedelta(days=periods.subscribers_days), now, batch
            ),
        ),
        (
            "emails",
            _emails(session, product, now - timedelta(days=periods.deliveries_days), batch),
        ),
        (
            "webhook_calls",
            _webhook_calls(session, product, now - timedelta(days=periods.deliveries_days), batch),
        ),
        (
            "comment_authors",
            _comment_authors(
                session, product, months_before(now, periods.comment_authors_months), now, batch
            ),
        ),
    ]
    removed: Counter[str] = Counter(dict.fromkeys(KINDS, 0))
    for kind, step in kinds:
        after: int | None = 0
        while after is not None:
            with write_turn():
                done, after = step(after)
                if done:
                    removed[kind] += done
                    record.removed = {name: removed[name] for name in KINDS}
                session.commit()
    with write_turn():
        record.finished_at = now + timedelta(seconds=time.monotonic() - started)
        if any(removed.values()):
            audit.record(session, product, None, "retention.applied", summary(removed), now=now)
        session.commit()
    return record


def _ran_since(session: Session, product: Product, since: datetime) -> bool:
    session.execute(select(Product.id).where(Product.id == product.id).with_for_update())
    began = session.scalar(
        select(func.count())
        .select_from(RetentionRun)
        .where(RetentionRun.product_id == product.id, RetentionRun.started_at >= since)
    )
    return bool(began)


def summary(removed: Counter[str] | dict[str, int]) -> str:
    """The audit event's summary of a run: counts only, never whom."""
    words = {
        "end_users": "end users erased",
        "subscribers": "subscribers erased",
        "emails": "e-mails emptied",
        "webhook_calls": "webhook answers emptied",
        "comment_authors": "comments made anonymous",
    }
    return "Retention — " + ", ".join(
        f"{words[kind]}: {removed[kind]}" for kind in KINDS if removed.get(kind)
    )


def run_all(
    session: Session,
    *,
    now: datetime,
    write_turn: WriteTurn = contextlib.nullcontext,
    unless_ran_within: timedelta | None = None,
) -> dict[str, int]:
    """:func:`run` for every product (one that fails is logged and the others still run:
    ``support_impact.for_each_product``); the rows removed per product slug."""

    def step(session: Session, product: Product, *, now: datetime, write_turn: WriteTurn) -> int:
        done = run(
            session, product, now=now, write_turn=write_turn, unless_ran_within=unless_ran_within
        )
        return sum(done.removed.values()) if done is not None else 0

    return for_each_product(session, step, now=now, write_turn=write_turn)


# What the console shows ------------------------------------------------------------------


def last_runs(session: Session, product: Product, *, limit: int = 10) -> list[RetentionRun]:
    """The product's newest runs, newest first."""
    return list(
        session.scalars(
            select(RetentionRun)
            .where(RetentionRun.product_id == product.id)
            .order_by(RetentionRun.started_at.desc(), RetentionRun.id.desc())
            .limit(limit)
        )
    )


def overdue(last: RetentionRun | None, worker: WorkerHealth, *, now: datetime) -> bool:
    """Whether the daily run is late: the product's newest run (``last``) began over
    :data:`OVERDUE_AFTER` ago, or never, while a worker alive now has been up for
    :data:`WORKER_UP_FOR` (a worker started an hour ago has not had its chance yet)."""
    up = any(
        row.started_at <= now - WORKER_UP_FOR and now - row.beat_at <= WORKER_SILENT_AFTER
        for row in worker.workers
    )
    return up and (last is None or last.started_at < now - OVERDUE_AFTER)
