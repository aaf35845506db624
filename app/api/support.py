"""Support in the management API: one end user as the console's lookup page shows them
(``announcements.lookup``), for help desks and scripts that answer users.

The response's schemas live here, beside the one operation that answers with them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ConfigDict, Field

from announcements import lookup
from announcements.errors import NotFound, ValidationFailed
from announcements.models import ApiScope, Product, SubscriberStatus, utcnow
from app.api import operations
from app.extensions import db


class EndUserSend(BaseModel):
    """One time a support agent sent the note to the user."""

    model_config = ConfigDict(from_attributes=True)

    agent: str = Field(description="The console member's name, or the help desk's agent.")
    via: Literal["console", "sidebar"]
    sent_at: datetime
    emailed: bool = Field(description="Whether this send queued an e-mail to their subscription.")
    read_at: datetime | None = Field(description="When they read it after; null: not yet.")


class EndUserNote(BaseModel):
    """A note the user's widget lists, and what the user did with it."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    version: str
    title: str
    category: str
    published_at: datetime
    is_important: bool
    read: bool
    read_at: datetime | None
    channel: str | None = Field(
        description="Where they read it: "
        + ", ".join(f"{name} ({label})" for name, label in lookup.CHANNEL_LABELS.items())
        + "."
    )
    shown_as_popup: bool = Field(description="Read in a popup: channel popup or agent.")
    graced: bool = Field(
        description="Not read, but the widget counts it as seen: it came out before their "
        "first visit, older than the product's grace releases."
    )
    held_back: bool = Field(
        description="They are in the note's hold-back control group while its window is open."
    )
    reaction: str | None
    comment: str | None
    requires_acknowledgement: bool
    acknowledged_at: datetime | None
    pinned: bool = Field(
        description="Pinned by an agent: sent by an agent and not read since, so unread "
        "in their widget even if they read it before."
    )
    sends: list[EndUserSend] = Field(description="Newest first.")
    help_shown: int = Field(description="Times it was shown to them before contacting support.")
    help_answered: bool = Field(description="Whether they said it answered their question.")


class EndUserTicket(BaseModel):
    """A ticket matched to the user. Never its requester's address."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    source: str
    external_id: str
    created_at: datetime
    app_version: str | None
    tags: list[str]
    subject: str | None


class EndUserProfile(BaseModel):
    """An end user, every note their widget lists (newest first) and their tickets."""

    external_id: str
    app_version: str | None
    locale: str | None
    attributes: dict[str, str]
    first_seen_at: datetime
    last_seen_at: datetime
    subscriber_status: SubscriberStatus | None = Field(
        description="The linked e-mail subscriber's status; null: none is linked."
    )
    notes: list[EndUserNote]
    tickets: list[EndUserTicket] = Field(description=f"Newest first, at most {lookup.MAX_TICKETS}.")


@operations.operation(
    "GET",
    "/end-users/<path:external_id>",
    summary="One end user: every note their widget lists, what they read, and their tickets",
    scope=ApiScope.SUPPORT_READ,
    answer=EndUserProfile,
    errors=(404, 422),
)
def end_user(product: Product, external_id: str) -> ResponseReturnValue:
    if not lookup.is_searchable(external_id):
        raise ValidationFailed(
            {"external_id": f"A user id is text of at most {lookup.MAX_QUERY_LENGTH} characters."}
        )
    user = lookup.by_external_id(db.session(), product, external_id)
    if user is None:
        raise NotFound("No end user of this product has that id.")
    profile = lookup.profile(db.session(), product, user, now=utcnow())
    return operations.answer(
        EndUserProfile(
            external_id=user.external_id,
            app_version=user.app_version,
            locale=user.locale,
            attributes=profile.attributes,
            first_seen_at=user.first_seen_at,
            last_seen_at=user.last_seen_at,
            subscriber_status=profile.subscriber_status,
            notes=[EndUserNote.model_validate(note) for note in profile.notes],
            tickets=[EndUserTicket.model_validate(ticket) for ticket in profile.tickets],
        )
    )
