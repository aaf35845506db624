"""What every service needs and nothing else: the audit record of a change, and the rule
that a row is reached only through the product it belongs to.

It imports no other service, so services, subscriptions, webhooks, API keys and accounts
can all use it without importing each other.
"""

from __future__ import annotations

from datetime import datetime
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from announcements.errors import NotFound
from announcements.models import (
    ApiKey,
    AuditEvent,
    Membership,
    Note,
    Product,
    SupportConnection,
    TeamMember,
    Webhook,
)

Owned = TypeVar("Owned", Note, ApiKey, Webhook, SupportConnection)


SUMMARY_LENGTH = 500
SUMMARY_TITLE = 100


def record(
    session: Session,
    product: Product,
    actor: TeamMember | None,
    action: str,
    summary: str,
    *,
    note: Note | None = None,
    now: datetime,
) -> None:
    """Add an audit event for a change, to be committed with it."""
    if note is not None:
        # A long title is shortened here, so that what the summary says after it (who
        # sent a note, to whom) survives the column's limit.
        title = (
            note.title
            if len(note.title) <= SUMMARY_TITLE
            else note.title[: SUMMARY_TITLE - 1] + "…"
        )
        summary = f"“{title}” ({note.version}): {summary}"
    session.add(
        AuditEvent(
            product_id=product.id,
            actor=actor,
            note=note,
            action=action,
            summary=summary[:SUMMARY_LENGTH],
            created_at=now,
        )
    )


def record_account(
    session: Session,
    member: TeamMember | None,
    actor: TeamMember | None,
    action: str,
    summary: str,
    *,
    now: datetime,
) -> None:
    """Add an audit event about a member's account (two-factor enrolled or removed, a
    single sign-on linked or refused) to the log of every product they belong to, where
    its owners see it. With no member (a refused sign-on that found no account), one
    event of the instance, which every owner sees: its summary must name no one. A member
    in no product has no owners to tell."""
    if member is None:
        session.add(
            AuditEvent(
                product_id=None,
                actor=actor,
                action=action,
                summary=summary[:SUMMARY_LENGTH],
                created_at=now,
            )
        )
        return
    products = session.scalars(
        select(Product)
        .join(Membership, Membership.product_id == Product.id)
        .where(Membership.member_id == member.id)
        .order_by(Product.id)
    )
    for product in products:
        record(session, product, actor, action, summary, now=now)


def owned(session: Session, model: type[Owned], product: Product, row_id: int) -> Owned:
    """Row ``row_id`` of ``model`` if it belongs to ``product``; anything else, another
    product's included, is NotFound, so ids reveal nothing across products."""
    row = session.get(model, row_id)
    if row is None or row.product_id != product.id:
        what = {
            Note: "note",
            ApiKey: "key",
            Webhook: "webhook",
            SupportConnection: "connection",
        }[model]
        raise NotFound(f"There is no such {what} in this product.")
    return row
