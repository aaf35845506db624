"""The privacy API: an end user's data exported and erased (scope ``privacy``), for the
scripts that answer a person's request for their data or its deletion
(``announcements.privacy``).

The response's schemas live here, beside the two operations that answer with them.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from flask.typing import ResponseReturnValue
from pydantic import BaseModel, Field

from announcements import privacy
from announcements.models import ApiScope, Product, utcnow
from app.api import operations
from app.database import write_turn
from app.extensions import db


class NoteRef(BaseModel):
    """The note a row is about."""

    id: int
    version: str
    title: str


class ExportedUser(BaseModel):
    external_id: str
    attributes: dict[str, Any] = Field(description="As the widget last sent them.")
    locale: str | None
    app_version: str | None
    first_seen_at: datetime
    last_seen_at: datetime
    has_signed_email: bool = Field(
        description="Whether the host signed an address for them; only a keyed hash of it "
        "is kept, never the address."
    )


class ExportedDay(BaseModel):
    day: date
    app_version: str | None


class ExportedRead(BaseModel):
    note: NoteRef
    read_at: datetime
    channel: str


class ExportedReaction(BaseModel):
    note: NoteRef
    reaction: str
    comment: str | None
    created_at: datetime
    updated_at: datetime


class ExportedAcknowledgement(BaseModel):
    note: NoteRef
    acknowledged_at: datetime


class ExportedEscalation(BaseModel):
    note: NoteRef
    escalated_at: datetime


class ExportedSend(BaseModel):
    note: NoteRef
    agent: str
    via: Literal["console", "sidebar"]
    sent_at: datetime
    emailed: bool
    read_at: datetime | None


class ExportedHoldback(BaseModel):
    note: NoteRef
    group: Literal["control", "treatment"]
    assigned_at: datetime


class ExportedHelpRequest(BaseModel):
    query: str
    created_at: datetime
    shown: list[NoteRef] = Field(description="Best match first.")
    outcome: Literal["answered", "needs_help"] | None
    answered_note: NoteRef | None
    decided_at: datetime | None


class ExportedTicket(BaseModel):
    source: str
    external_id: str
    created_at: datetime
    updated_at: datetime
    subject: str | None
    tags: list[str]
    app_version: str | None


class ExportedEmail(BaseModel):
    kind: str
    status: str
    note: NoteRef | None
    created_at: datetime
    sent_at: datetime | None
    attempts: int


class ExportedSubscription(BaseModel):
    email: str
    status: str
    frequency: str
    categories: list[str]
    locale: str | None
    created_at: datetime
    confirmed_at: datetime | None
    unsubscribed_at: datetime | None
    last_digest_at: datetime | None
    hard_bounces: int
    emails: list[ExportedEmail] = Field(description="Every e-mail queued for it, oldest first.")


class EndUserExport(BaseModel):
    """Everything Tidings holds about one end user."""

    product: str
    end_user: ExportedUser
    versions_seen: list[str] = Field(description="The app versions they were seen on, in order.")
    days_seen: list[ExportedDay]
    reads: list[ExportedRead]
    reactions: list[ExportedReaction]
    acknowledgements: list[ExportedAcknowledgement]
    escalations: list[ExportedEscalation]
    agent_sends: list[ExportedSend]
    holdbacks: list[ExportedHoldback]
    help_requests: list[ExportedHelpRequest]
    tickets: list[ExportedTicket]
    subscriptions: list[ExportedSubscription] = Field(
        description="The e-mail subscriptions linked to them."
    )


class Erasure(BaseModel):
    """How many rows of each kind the erasure made anonymous."""

    erased: dict[str, int] = Field(
        description="end_users, reads, acknowledgements, reactions, comments, "
        "help_requests, tickets, agent_sends, audit_events, subscribers, emails."
    )


@operations.operation(
    "GET",
    "/end-users/<path:external_id>/export",
    summary="Everything Tidings holds about one end user, as JSON",
    scope=ApiScope.PRIVACY,
    answer=EndUserExport,
    errors=(404,),
)
def export_end_user(product: Product, external_id: str) -> ResponseReturnValue:
    data = privacy.export_end_user(db.session(), product, external_id)
    with write_turn():
        privacy.record_export(db.session(), product, operations.actor(), now=utcnow())
        db.session.commit()
    return operations.answer(EndUserExport.model_validate(data))


@operations.operation(
    "DELETE",
    "/end-users/<path:external_id>",
    summary="Erase one end user's data, keeping only anonymous counts",
    scope=ApiScope.PRIVACY,
    answer=Erasure,
    errors=(404,),
)
def erase_end_user(product: Product, external_id: str) -> ResponseReturnValue:
    with write_turn():
        counts = privacy.erase_end_user(
            db.session(), product, external_id, actor=operations.actor(), now=utcnow()
        )
        db.session.commit()
    return operations.answer(Erasure(erased=counts))
