"""One end user as a support agent sees them: who they are, every note published for
their version with what they did with it, and their tickets.

:func:`find` turns what an agent types (the host's id for the user, or an address) into
the user; :func:`profile` reads the rest. The console's lookup page, the management
API's end-user operation and the help desks' sidebar all show :func:`profile`, and an
agent may send a user only a note it lists (:mod:`announcements.agent_sends`).

The notes are the widget's own list, from the product's catalogue
(:meth:`~announcements.catalogue.Catalogue.visible` for the user's stored version and
attributes, and :func:`~announcements.inbox.inbox` for what counts as read and what is
held back), so an agent never sees a list the user's widget would not show. Everything
of the user's own comes from one indexed query per table, keyed by the user: the
answer costs the same among a million users as among ten.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from packaging.version import Version
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from announcements import catalogue, inbox, reads, tickets, versions
from announcements.catalogue import Catalogue, CatalogueNote
from announcements.errors import NotFound, ValidationFailed
from announcements.models import (
    Acknowledgement,
    AgentSend,
    Category,
    EndUser,
    HelpRequest,
    HelpShown,
    Product,
    Reaction,
    ReadReceipt,
    Subscriber,
    SubscriberStatus,
    Ticket,
)
from announcements.user_state import EndUserState

# The longest text that can be either: an external id (255) or an address (254).
MAX_QUERY_LENGTH = tickets.MAX_USER_ID_LENGTH
MAX_TICKETS = 50
# Read through a popup: the widget's modal, or a note an agent sent, which pops up.
POPUP_CHANNELS = frozenset({"popup", "agent"})
HELP_ANSWERED = "answered"
# Where a note was read, in the words the console's user page, the sidebar and the API's
# description of ``channel`` all use, so that an agent reads the same thing in each.
CHANNEL_LABELS = {
    "widget": "in the widget",
    "popup": "in a popup",
    "agent": "in a popup an agent sent",
    "email": "from an e-mail",
    "help": "before contacting support",
}
# How :func:`match` found the user: the text was their id in the host's app, or the
# address the host signed for them.
BY_ID = "id"
BY_ADDRESS = "address"
# Which linked subscriber a profile names when a user has several.
SUBSCRIBER_PREFERENCE = (
    SubscriberStatus.CONFIRMED,
    SubscriberStatus.PENDING,
    SubscriberStatus.BOUNCED,
    SubscriberStatus.UNSUBSCRIBED,
)


@dataclass(frozen=True)
class Send:
    """One time an agent sent the note to the user."""

    agent: str
    via: str
    sent_at: datetime
    emailed: bool
    read_at: datetime | None


@dataclass(frozen=True)
class NoteRecord:
    """One note the user's widget lists, and what the user did with it."""

    id: int
    version: str
    title: str
    category: Category
    published_at: datetime
    is_important: bool
    read_at: datetime | None
    channel: str | None
    # Not read, but the widget counts it as seen: it came out before the user's first
    # visit, older than the product's grace releases.
    graced: bool
    # The user is in the note's hold-back control group while its window is open: no
    # badge, popup or e-mail for it.
    held_back: bool
    reaction: str | None
    comment: str | None
    requires_acknowledgement: bool
    acknowledged_at: datetime | None
    sends: tuple[Send, ...]
    # How many times "before contacting support" showed it to them, and whether they
    # said it answered their question.
    help_shown: int
    help_answered: bool

    @property
    def read(self) -> bool:
        return self.read_at is not None

    @property
    def shown_as_popup(self) -> bool:
        return self.channel in POPUP_CHANNELS

    @property
    def channel_label(self) -> str | None:
        """Where they read it, in :data:`CHANNEL_LABELS`' words."""
        return CHANNEL_LABELS.get(self.channel, self.channel) if self.channel else None

    @property
    def unread(self) -> bool:
        """Whether their widget shows it unread: pinned by an agent (even if read before),
        or neither read nor counted as seen."""
        return self.pinned or (not self.read and not self.graced)

    @property
    def pinned(self) -> bool:
        """Sent by an agent and not read since: pinned unread in their widget."""
        return any(send.read_at is None for send in self.sends)


@dataclass(frozen=True)
class Profile:
    """An end user, the notes their widget lists (newest first) and their latest tickets."""

    user: EndUser
    # Their attributes as the widget compares them: every value as text.
    attributes: dict[str, str]
    # The status of the subscriber linked to them (confirmed first when several are).
    subscriber_status: SubscriberStatus | None
    notes: list[NoteRecord]
    # The count their widget's badge shows: pinned and unread notes, not held-back ones.
    unread_count: int
    tickets: list[Ticket]


@dataclass(frozen=True)
class Match:
    """The user a search found, and how: :data:`BY_ID` or :data:`BY_ADDRESS`."""

    user: EndUser
    by: str


def check_query(text: str) -> str:
    """What an agent searched for, trimmed; ValidationFailed when it can be neither an id
    nor an address."""
    text = text.strip()
    if not text:
        raise ValidationFailed({"q": "Enter the user's id in your app, or their e-mail address."})
    if not is_searchable(text):
        raise ValidationFailed(
            {"q": f"A user id or an address is text of at most {MAX_QUERY_LENGTH} characters."}
        )
    return text


def is_searchable(text: str) -> bool:
    """Whether ``text`` could be a stored external id or address: short enough, and text
    every database can compare (no NUL, no lone surrogate)."""
    return 0 < len(text) <= MAX_QUERY_LENGTH and reads.is_storable(text)


def by_external_id(session: Session, product: Product, external_id: str) -> EndUser | None:
    """The product's end user with this id in the host's app, if the widget has seen them."""
    return session.scalar(
        select(EndUser).where(EndUser.product_id == product.id, EndUser.external_id == external_id)
    )


def match(session: Session, product: Product, text: str, *, secret_key: str) -> Match | None:
    """The end user ``text`` names, and how it names them. An address is matched first
    against the address a host signed for its user, by the same keyed hash tickets are
    matched with (``secret_key`` is the app's), the most recently seen of several; only
    then, as any other text, against the host's id for them. Ids first would let anyone
    whom a product without identity verification lets pick their own id take someone's
    address as their id, and be found in that person's place."""
    text = check_query(text)
    key = tickets.email_key(secret_key, text)
    if key is not None:
        user = session.scalars(
            select(EndUser)
            .where(EndUser.product_id == product.id, EndUser.email_key == key)
            .order_by(EndUser.last_seen_at.desc(), EndUser.id.desc())
            .limit(1)
        ).first()
        if user is not None:
            return Match(user, BY_ADDRESS)
    user = by_external_id(session, product, text)
    return Match(user, BY_ID) if user is not None else None


def find(session: Session, product: Product, text: str, *, secret_key: str) -> EndUser | None:
    """The end user ``text`` names (see :func:`match`), if any."""
    found = match(session, product, text, secret_key=secret_key)
    return found.user if found is not None else None


def visible(session: Session, product: Product, end_user: EndUser, *, now: datetime) -> list[int]:
    """The ids of the notes the user's widget lists at ``now``, newest first."""
    return [note.id for note in _view(session, product, end_user, now).notes]


@dataclass(frozen=True)
class _View:
    """The user's widget at a moment: the catalogue, and what it lists for them."""

    catalogue: Catalogue
    app_version: Version | None
    attributes: dict[str, str]
    notes: tuple[CatalogueNote, ...]


def _view(session: Session, product: Product, end_user: EndUser, now: datetime) -> _View:
    """What the user's widget lists, by the widget's own rules, from the catalogue read
    fresh: the widget's per-process cache belongs to the web layer, and a lookup is rare."""
    # The notes' public addresses play no part here, so no base URL is needed.
    loaded = catalogue.load(session.connection(), product.widget_key, base_url="")
    if loaded is None:
        raise NotFound("There is no such product.")
    app_version = versions.of_user(end_user.app_version)
    attributes = {name: str(value) for name, value in (end_user.attributes or {}).items()}
    return _View(loaded, app_version, attributes, loaded.visible(app_version, attributes, now))


def profile(session: Session, product: Product, end_user: EndUser, *, now: datetime) -> Profile:
    """The user, every note their widget lists with what they did with it, newest first,
    and their latest tickets, newest first."""
    user_id = end_user.id
    receipts = {
        note_id: (read_at, channel)
        for note_id, read_at, channel in session.execute(
            select(ReadReceipt.note_id, ReadReceipt.read_at, ReadReceipt.channel).where(
                ReadReceipt.end_user_id == user_id
            )
        )
    }
    reactions = {
        note_id: (reaction, comment)
        for note_id, reaction, comment in session.execute(
            select(Reaction.note_id, Reaction.reaction, Reaction.comment).where(
                Reaction.end_user_id == user_id
            )
        )
    }
    acknowledged = {
        note_id: acknowledged_at
        for note_id, acknowledged_at in session.execute(
            select(Acknowledgement.note_id, Acknowledgement.acknowledged_at).where(
                Acknowledgement.end_user_id == user_id
            )
        )
    }
    sends: dict[int, list[Send]] = defaultdict(list)
    for row in session.execute(
        select(
            AgentSend.note_id,
            AgentSend.agent,
            AgentSend.via,
            AgentSend.sent_at,
            AgentSend.emailed,
            AgentSend.read_at,
        )
        .where(AgentSend.end_user_id == user_id)
        .order_by(AgentSend.sent_at.desc(), AgentSend.id.desc())
    ):
        sends[row.note_id].append(Send(row.agent, row.via, row.sent_at, row.emailed, row.read_at))
    help_shown = {
        note_id: times
        for note_id, times in session.execute(
            select(HelpShown.note_id, func.count())
            .join(HelpRequest, HelpRequest.id == HelpShown.help_request_id)
            .where(HelpRequest.end_user_id == user_id)
            .group_by(HelpShown.note_id)
        )
    }
    help_answered = set(
        session.scalars(
            select(HelpRequest.answered_note_id).where(
                HelpRequest.end_user_id == user_id, HelpRequest.outcome == HELP_ANSWERED
            )
        )
    )
    view = _view(session, product, end_user, now)
    # The widget's answer for them: which notes it shows read, which it holds back.
    shown = inbox.inbox(
        view.catalogue,
        EndUserState(
            id=user_id,
            external_id=end_user.external_id,
            first_seen_at=end_user.first_seen_at,
            last_seen_at=end_user.last_seen_at,
            app_version=end_user.app_version,
            locale=end_user.locale,
            attributes=view.attributes,
            read_ids=set(receipts),
            reactions={note_id: reaction for note_id, (reaction, _) in reactions.items()},
            acknowledged=set(acknowledged),
            pinned={note_id for note_id, made in sends.items() if any(not s.read_at for s in made)},
        ),
        attributes=view.attributes,
        app_version=view.app_version,
        now=now,
        limit=max(len(view.notes), 1),
        after=None,
    )
    notes = []
    for entry, widget_read, _ in shown.entries:
        read_at, channel = receipts.get(entry.id, (None, None))
        reaction, comment = reactions.get(entry.id, (None, None))
        fields = entry.fields
        notes.append(
            NoteRecord(
                id=entry.id,
                version=fields["version"],
                title=fields["title"],
                category=Category(fields["category"]),
                published_at=entry.published_at,
                is_important=fields["important"],
                read_at=read_at,
                channel=channel,
                graced=widget_read and read_at is None,
                held_back=entry.id in shown.quiet,
                reaction=reaction,
                comment=comment,
                requires_acknowledgement=fields["requires_acknowledgement"],
                acknowledged_at=acknowledged.get(entry.id),
                sends=tuple(sends.get(entry.id, ())),
                help_shown=help_shown.get(entry.id, 0),
                help_answered=entry.id in help_answered,
            )
        )
    statuses = set(
        session.scalars(
            select(Subscriber.status).where(
                Subscriber.product_id == product.id, Subscriber.end_user_id == user_id
            )
        )
    )
    subscriber_status = next((s for s in SUBSCRIBER_PREFERENCE if s in statuses), None)
    latest_tickets = list(
        session.scalars(
            select(Ticket)
            .where(Ticket.end_user_id == user_id)
            .order_by(Ticket.created_at.desc(), Ticket.id.desc())
            .limit(MAX_TICKETS)
        )
    )
    return Profile(
        end_user,
        view.attributes,
        subscriber_status,
        notes,
        shown.unread_count,
        latest_tickets,
    )
