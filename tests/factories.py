"""Plain factory functions: each makes one row with sensible defaults and commits it."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from announcements import accounts, services
from announcements.models import (
    EndUser,
    Note,
    OutboxKind,
    OutboxMessage,
    OutboxStatus,
    Product,
    Role,
    Subscriber,
    SubscriberStatus,
    TeamMember,
    utcnow,
)
from announcements.services import Intent, NoteInput, ProductSettings
from tests.conftest import PASSWORD

_sequence = itertools.count(1)


def make_member(session: Session, email: str | None = None, **overrides: Any) -> TeamMember:
    email = email or f"member{next(_sequence)}@example.com"
    return accounts.create_member(session, email, overrides.pop("password", PASSWORD), **overrides)


def make_product(session: Session, owner: TeamMember | None = None, **overrides: Any) -> Product:
    owner = owner or make_member(session)
    number = next(_sequence)
    settings = ProductSettings(
        name=overrides.pop("name", f"Product {number}"),
        slug=overrides.pop("slug", f"product-{number}"),
        **overrides,
    )
    return services.create_product(session, settings, by=owner, now=utcnow())


def add_member(
    session: Session, product: Product, role: Role, email: str | None = None
) -> TeamMember:
    member = make_member(session, email)
    services.set_role(session, product, member, role, by=None, now=utcnow())
    return member


def make_note(
    session: Session,
    product: Product,
    *,
    status: str = "published",
    now: datetime | None = None,
    **overrides: Any,
) -> Note:
    """A note in ``status``: draft, scheduled (a day ahead), published or archived."""
    now = now or utcnow()
    data = NoteInput(
        version=overrides.pop("version", "1.0.0"),
        title=overrides.pop("title", f"Note {next(_sequence)}"),
        category=overrides.pop("category", "Added"),
        body_md=overrides.pop("body_md", "Something **new**."),
        **overrides,
    )
    intent = {"draft": Intent.SAVE, "scheduled": Intent.SCHEDULE}.get(status, Intent.PUBLISH)
    note = services.create_note(
        session,
        product,
        data,
        intent=intent,
        publish_at=now + timedelta(days=1) if status == "scheduled" else None,
        by=None,
        now=now,
    )
    if status == "archived":
        services.archive(session, note, by=None, now=now)
    return note


def make_end_user(
    session: Session, product: Product, external_id: str, **overrides: Any
) -> EndUser:
    """An end user as the widget would have stored them, seen a day ago for the first time."""
    now = overrides.pop("now", None) or utcnow()
    user = EndUser(
        product_id=product.id,
        external_id=external_id,
        first_seen_at=overrides.pop("first_seen_at", now - timedelta(days=1)),
        last_seen_at=overrides.pop("last_seen_at", now),
        **overrides,
    )
    session.add(user)
    session.commit()
    return user


def make_outbox_message(
    session: Session,
    product: Product,
    status: OutboxStatus = OutboxStatus.QUEUED,
    *,
    email: str | None = None,
    subscriber_status: SubscriberStatus = SubscriberStatus.PENDING,
    member: TeamMember | None = None,
    **fields: Any,
) -> OutboxMessage:
    """A message in ``product``'s outbox, its other columns from ``fields``: a confirmation
    to a new subscriber (``email``, in ``subscriber_status``), or with ``member`` an alert to
    that team member, queued under ``product`` as the alerts are."""
    subscriber = None
    if member is None:
        subscriber = Subscriber(
            product_id=product.id,
            email=email or f"subscriber{next(_sequence)}@example.com",
            status=subscriber_status,
            categories=[],
        )
        session.add(subscriber)
        session.flush()
    message = OutboxMessage(
        product_id=product.id,
        subscriber_id=subscriber.id if subscriber else None,
        member_id=member.id if member else None,
        kind=OutboxKind.ALERT if member else OutboxKind.CONFIRM,
        status=status,
        **fields,
    )
    session.add(message)
    session.commit()
    return message
