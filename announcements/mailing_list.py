"""A product's subscriber list as the console shows it: counts, search, CSV export,
removal, and how a note's e-mail is getting on."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from announcements import audit
from announcements.errors import NotFound
from announcements.models import (
    Note,
    OutboxMessage,
    OutboxStatus,
    Product,
    Subscriber,
    SubscriberStatus,
    TeamMember,
)
from announcements.queries import like_pattern
from announcements.subscriptions import get_subscriber

# Subscribers per page in the console.
PAGE_SIZE = 50


def status_counts(session: Session, product: Product) -> dict[SubscriberStatus, int]:
    rows = session.execute(
        select(Subscriber.status, func.count())
        .where(Subscriber.product_id == product.id)
        .group_by(Subscriber.status)
    )
    counts = dict.fromkeys(SubscriberStatus, 0)
    counts.update({SubscriberStatus(status): count for status, count in rows})
    return counts


def search(
    session: Session,
    product: Product,
    *,
    text: str = "",
    status: SubscriberStatus | None = None,
    page: int = 1,
) -> tuple[list[Subscriber], bool]:
    """A page of the product's subscribers, newest first, and whether there are more."""
    query = select(Subscriber).where(Subscriber.product_id == product.id)
    text = text.replace("\x00", "").strip().lower()
    if text:
        query = query.where(Subscriber.email.like(like_pattern(text), escape="\\"))
    if status is not None:
        query = query.where(Subscriber.status == status)
    found = session.scalars(
        query.order_by(Subscriber.created_at.desc(), Subscriber.id.desc())
        .offset((page - 1) * PAGE_SIZE)
        .limit(PAGE_SIZE + 1)
    ).all()
    return list(found[:PAGE_SIZE]), len(found) > PAGE_SIZE


CSV_COLUMNS = (
    "email",
    "status",
    "frequency",
    "categories",
    "locale",
    "subscribed_at",
    "confirmed_at",
    "unsubscribed_at",
)


def csv_safe(value: str) -> str:
    """Keep a spreadsheet from reading a cell as a formula (CSV injection); the writer
    must quote every cell too (``csv.QUOTE_ALL``), or a ";" inside one starts a new cell
    in the locales that separate with it."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def export_csv(
    session: Session, product: Product, *, by: TeamMember | None, now: datetime
) -> Iterator[str]:
    """The product's subscribers as CSV, a line at a time. The file holds every address,
    so the export is in the audit log before the first line goes out."""
    summary = "Downloaded the subscriber list as CSV"
    audit.record(session, product, by, "subscribers.exported", summary, now=now)
    session.commit()
    return _csv_lines(session, product)


def _csv_lines(session: Session, product: Product) -> Iterator[str]:
    buffer = io.StringIO()
    # Every cell quoted, as csv_safe alone is not enough: in a locale whose separator is
    # ";" an unquoted "x;=cmd" splits into a cell that starts with "=".
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL)

    def line(values: Sequence[str]) -> str:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow([csv_safe(value) for value in values])
        return buffer.getvalue()

    yield line(CSV_COLUMNS)
    query = (
        select(Subscriber)
        .where(Subscriber.product_id == product.id)
        .order_by(Subscriber.id)
        .execution_options(yield_per=500)
    )
    for subscriber in session.scalars(query):
        yield line(
            [
                subscriber.email,
                subscriber.status.value,
                subscriber.frequency.value,
                " ".join(subscriber.categories),
                subscriber.locale or "",
                subscriber.created_at.isoformat(),
                subscriber.confirmed_at.isoformat() if subscriber.confirmed_at else "",
                subscriber.unsubscribed_at.isoformat() if subscriber.unsubscribed_at else "",
            ]
        )


def delivery(session: Session, note: Note) -> dict[str, int]:
    """How the note's messages stand: queued (with sending), sent, failed, skipped."""
    rows = session.execute(
        select(OutboxMessage.status, func.count())
        .where(OutboxMessage.note_id == note.id)
        .group_by(OutboxMessage.status)
    )
    counts = {"queued": 0, "sent": 0, "failed": 0, "skipped": 0}
    for status, count in rows:
        key = "queued" if status in (OutboxStatus.QUEUED, OutboxStatus.SENDING) else status.value
        counts[key] += count
    return counts


def remove(
    session: Session,
    product: Product,
    subscriber_id: int,
    *,
    by: TeamMember | None,
    now: datetime,
) -> Subscriber:
    """Delete a subscriber of ``product`` (from the console) and what was queued for it.

    The audit log names the subscriber by id, not address: a removal is often a request
    to be forgotten."""
    subscriber = get_subscriber(session, subscriber_id)
    if subscriber.product_id != product.id:
        raise NotFound("There is no such subscriber in this product.")
    session.delete(subscriber)
    summary = f"Removed subscriber #{subscriber.id}"
    audit.record(session, product, by, "subscriber.removed", summary, now=now)
    session.commit()
    return subscriber
