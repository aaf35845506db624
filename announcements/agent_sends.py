"""A support agent sends one note to one end user: from the console's lookup page or a
help desk's sidebar.

The note is pinned unread in the user's widget (an :class:`AgentSend` with no
``read_at``), which pops it up on their next page view even if they read it before, and
their next read of it is recorded with channel ``agent``. A user linked to a confirmed
subscriber is e-mailed it too, once: the outbox holds a note once per subscriber and kind,
so sending it again pins it again but mails nothing more. Every send is in the audit log,
its summary starting with the agent's name and where they sent from, which the log's
500 characters always keep (a user's id may be 255).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from announcements import audit, lookup, mailing
from announcements.errors import NotFound, ValidationFailed
from announcements.models import (
    AgentSend,
    EndUser,
    Note,
    OutboxKind,
    Product,
    Subscriber,
    SubscriberStatus,
    TeamMember,
)

VIAS = ("console", "sidebar")
# The audit event of a send, whose summary names the user last, after this mark: erasure
# (``announcements.privacy``) replaces what follows it.
SENT_TO_USER = "note.sent_to_user"
SENT_TO_USER_MARK = " it to user "
MAX_AGENT_LENGTH = 254


def send(
    session: Session,
    product: Product,
    end_user: EndUser,
    note_id: int,
    *,
    agent: str,
    sent_by: TeamMember | None,
    via: str,
    now: datetime,
) -> AgentSend:
    """Send note ``note_id`` to ``end_user`` as ``agent`` (a console member ``sent_by``,
    or a desk's agent known only by name), in the caller's transaction: the caller commits,
    then wakes the mail worker. NotFound for another product's user; ValidationFailed for
    a note the user's widget does not list (a draft, internal, expired, for a newer version
    or another audience), or an agent's name that is blank or too long."""
    if end_user.product_id != product.id:
        raise NotFound("There is no such user in this product.")
    if via not in VIAS:
        raise ValueError(f"via is one of {', '.join(VIAS)}, not {via!r}")
    agent = agent.strip()
    if not agent or len(agent) > MAX_AGENT_LENGTH:
        raise ValidationFailed({"agent": f"Name the agent in 1 to {MAX_AGENT_LENGTH} characters."})
    if note_id not in lookup.visible(session, product, end_user, now=now):
        raise ValidationFailed(
            {
                "note_id": "This note is not one this user's widget shows: only published "
                "notes for their version and audience can be sent to them."
            }
        )
    note = session.get_one(Note, note_id)
    subscribers = session.scalars(
        select(Subscriber.id).where(
            Subscriber.product_id == product.id,
            Subscriber.end_user_id == end_user.id,
            Subscriber.status == SubscriberStatus.CONFIRMED,
        )
    ).all()
    queued = [
        mailing.queue_one(session, note, subscriber_id, OutboxKind.AGENT, now=now)
        for subscriber_id in subscribers
    ]
    sent = AgentSend(
        product_id=product.id,
        note_id=note.id,
        end_user_id=end_user.id,
        sent_by=sent_by,
        agent=agent,
        via=via,
        sent_at=now,
        emailed=any(queued),
    )
    session.add(sent)
    mailed = " and e-mailed" if sent.emailed else ""
    audit.record(
        session,
        product,
        sent_by,
        SENT_TO_USER,
        f"{agent} ({via}) sent{mailed}{SENT_TO_USER_MARK}{end_user.external_id}",
        note=note,
        now=now,
    )
    session.flush()
    return sent
