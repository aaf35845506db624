"""The data model: typed SQLAlchemy 2.0 models on one metadata with a naming convention.

A note's state is derived from its timestamps rather than stored beside them:
no ``published_at`` is a draft, a ``published_at`` in the future is scheduled,
one in the past is published, and ``archived_at`` archives it. A scheduled note
therefore becomes visible at its time with no job having to flip a flag.
"""

from __future__ import annotations

import enum
import hashlib
import re
import secrets
from collections.abc import Collection
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ColumnElement,
    Date,
    DateTime,
    Dialect,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    and_,
    event,
    false,
    inspect,
    text,
    update,
)
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    SessionTransaction,
    mapped_column,
    registry,
    relationship,
    validates,
)

from announcements.languages import N_

# A language tag: en, de, pt-BR.
LOCALE_PATTERN = re.compile(r"[a-z]{2,3}(?:-[A-Za-z0-9]{2,8})*")


def utcnow() -> datetime:
    """The current time, in UTC, time-zone aware."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always UTC and always aware, on SQLite as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are ambiguous; pass an aware UTC datetime")
        value = value.astimezone(UTC)
        # SQLite has no time-zone type: store naive UTC, read it back as UTC below.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    registry = registry(
        metadata=MetaData(
            naming_convention={
                "ix": "ix_%(table_name)s_%(column_0_N_name)s",
                "uq": "uq_%(table_name)s_%(column_0_N_name)s",
                "ck": "ck_%(table_name)s_%(constraint_name)s",
                "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
                "pk": "pk_%(table_name)s",
            }
        ),
        type_annotation_map={datetime: UTCDateTime, dict[str, Any]: JSON, list[str]: JSON},
    )


class Role(enum.StrEnum):
    """A team member's role on one product; each includes what the ones below it may do."""

    VIEWER = "viewer"
    EDITOR = "editor"
    OWNER = "owner"

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


class Category(enum.StrEnum):
    """The Keep a Changelog change types."""

    ADDED = "Added"
    CHANGED = "Changed"
    DEPRECATED = "Deprecated"
    REMOVED = "Removed"
    FIXED = "Fixed"
    SECURITY = "Security"

    @property
    def label(self) -> str:
        """The friendly name end users see."""
        return CATEGORY_LABELS[self]


CATEGORY_LABELS = {
    Category.ADDED: N_("New"),
    Category.CHANGED: N_("Improved"),
    Category.DEPRECATED: N_("Deprecated"),
    Category.REMOVED: N_("Removed"),
    Category.FIXED: N_("Fixed"),
    Category.SECURITY: N_("Security"),
}


class NoteStatus(enum.StrEnum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    PUBLISHED = "published"
    ARCHIVED = "archived"


def _stored_as_value(enum_type: type[enum.StrEnum]) -> Enum:
    """A portable VARCHAR column that stores an enum's values and loads its members."""
    return Enum(
        enum_type,
        native_enum=False,
        length=16,
        values_callable=lambda members: [member.value for member in members],
    )


class TeamMember(Base):
    """Someone who logs in to the console."""

    __tablename__ = "team_member"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(120), default="")
    password_hash: Mapped[str] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None]
    # The console's language (one of ``languages.CONSOLE_LOCALES``); None follows the
    # browser's Accept-Language.
    locale: Mapped[str | None] = mapped_column(String(35))
    # Two-factor sign-in (``announcements.two_factor``): the TOTP secret (base32), set on
    # enrolment and confirmed by a first code (``totp_enabled_at``); the last time step a
    # code was accepted for, so a code is never taken twice.
    totp_secret: Mapped[str | None] = mapped_column(String(64))
    totp_enabled_at: Mapped[datetime | None]
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)

    memberships: Mapped[list[Membership]] = relationship(
        back_populates="member", cascade="all, delete-orphan"
    )

    @property
    def display_name(self) -> str:
        return self.name or self.email.split("@", 1)[0]


class RecoveryCode(Base):
    """One of a member's single-use two-factor recovery codes, stored hashed."""

    __tablename__ = "recovery_code"

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(
        ForeignKey("team_member.id", ondelete="CASCADE"), index=True
    )
    code_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    used_at: Mapped[datetime | None]


class SsoIdentity(Base):
    """A member's account at the single sign-on provider: the ID token's issuer and
    subject, linked on the first sign-in matched by verified e-mail, so that a later
    change of address at the provider still finds the same member."""

    __tablename__ = "sso_identity"
    __table_args__ = (UniqueConstraint("issuer", "subject"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(
        ForeignKey("team_member.id", ondelete="CASCADE"), index=True
    )
    issuer: Mapped[str] = mapped_column(String(500))
    subject: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]


class ConsoleSession(Base):
    """One signed-in browser. The session cookie carries only a random token whose hash is
    kept here, so logging out, a password change or a deactivation deletes the row and a
    copied cookie stops working at once."""

    __tablename__ = "console_session"

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(
        ForeignKey("team_member.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]

    member: Mapped[TeamMember] = relationship()


class Invitation(Base):
    """An e-mailed link that adds someone to a product's team once, within its time.

    The link's token is random and only its hash is kept; a new account chooses its own
    password when it accepts, and an existing account must be signed in to accept."""

    __tablename__ = "invitation"
    __table_args__ = (UniqueConstraint("product_id", "email"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(254))
    role: Mapped[Role] = mapped_column(_stored_as_value(Role))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    invited_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("team_member.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]

    product: Mapped[Product] = relationship()
    invited_by: Mapped[TeamMember | None] = relationship()


class Product(Base):
    """A host product whose release notes Tidings publishes."""

    __tablename__ = "product"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    widget_key: Mapped[str] = mapped_column(String(64), unique=True)
    identity_secret: Mapped[str] = mapped_column(String(128))
    require_identity: Mapped[bool] = mapped_column(Boolean, default=True)
    allowed_origins: Mapped[list[str]] = mapped_column(default=list)
    default_locale: Mapped[str] = mapped_column(String(35), default="en")
    # The product's other languages (BCP 47 tags, normalised by ``languages.normalise``),
    # in the order the settings page lists them; the default is never among them.
    languages: Mapped[list[str]] = mapped_column(default=list)
    logo_url: Mapped[str | None] = mapped_column(String(500))
    accent_color: Mapped[str] = mapped_column(String(7), default="#4f46e5")
    # How many of the newest releases a user seen for the first time finds unread;
    # everything older counts as seen, so a newcomer is not flooded with history.
    grace_releases: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # Ask search engines not to index the public changelog.
    noindex: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Moved by every change to the product's notes or settings (by the session: see the
    # end of this module), so caches and ETags can tell "nothing changed" without reading
    # the notes.
    catalogue_stamp: Mapped[int] = mapped_column(Integer, default=0)
    # Emails: the sender's display name (the product's name when unset), where replies go,
    # and when the weekly digest goes out (a weekday, Monday = 0, and an hour, in UTC).
    email_from_name: Mapped[str | None] = mapped_column(String(120))
    email_reply_to: Mapped[str | None] = mapped_column(String(254))
    digest_weekday: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    digest_hour: Mapped[int] = mapped_column(Integer, default=9, server_default="9")
    # Support impact: a ticket counts against a note when it is opened within this many
    # days after the note went out.
    support_window_days: Mapped[int] = mapped_column(Integer, default=14, server_default="14")
    # Signs the agent sidebar's links (``/support/sidebar``) that help desks open; rotated
    # by owners under Support → Agent sidebar.
    sidebar_secret: Mapped[str] = mapped_column(String(64), default=lambda: secrets.token_hex(32))
    # Access: members must sign in through single sign-on (password refused), must have
    # two-factor sign-in; the role a member created by single sign-on gets here (None:
    # not added), when the operator turned provisioning on.
    require_sso: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    require_two_factor: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    sso_provision_role: Mapped[Role | None] = mapped_column(_stored_as_value(Role))
    # Retention (``announcements.retention``), applied daily by the worker: end users not
    # seen for this many months are erased, unsubscribed and bounced subscribers after
    # this many days, mail and webhook delivery bodies dropped after this many days, and
    # comment authors pseudonymised after this many months.
    retain_end_users_months: Mapped[int] = mapped_column(Integer, default=24, server_default="24")
    retain_subscribers_days: Mapped[int] = mapped_column(Integer, default=30, server_default="30")
    retain_deliveries_days: Mapped[int] = mapped_column(Integer, default=30, server_default="30")
    retain_comment_authors_months: Mapped[int] = mapped_column(
        Integer, default=12, server_default="12"
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    memberships: Mapped[list[Membership]] = relationship(
        back_populates="product", cascade="all, delete-orphan"
    )


class Membership(Base):
    """A team member's role on one product."""

    __tablename__ = "membership"
    __table_args__ = (UniqueConstraint("member_id", "product_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("team_member.id", ondelete="CASCADE"))
    product_id: Mapped[int] = mapped_column(
        ForeignKey("product.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[Role] = mapped_column(_stored_as_value(Role))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    member: Mapped[TeamMember] = relationship(back_populates="memberships")
    product: Mapped[Product] = relationship(back_populates="memberships")


class Note(Base):
    """One release note of one version; its text is in the product's default locale.

    Other locales live in :class:`NoteTranslation`.
    """

    __tablename__ = "note"
    __table_args__ = (
        Index(None, "product_id", "published_at"),
        UniqueConstraint("product_id", "import_key"),
        # One live note per title in a version, held by the database: two writers that
        # both checked before either committed once left two to four copies. Archived
        # notes are left out, as the services' duplicate check leaves them out.
        Index(
            None,
            "product_id",
            "version",
            "title_key",
            unique=True,
            sqlite_where=text("archived_at IS NULL"),
            postgresql_where=text("archived_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id", ondelete="CASCADE"))
    version: Mapped[str] = mapped_column(String(64))
    locale: Mapped[str] = mapped_column(String(35))
    title: Mapped[str] = mapped_column(String(200))
    # The title as duplicates are found (``title_key_of``), set with every title.
    title_key: Mapped[str] = mapped_column(String(64))
    body_md: Mapped[str] = mapped_column(Text, default="")
    body_html: Mapped[str] = mapped_column(Text, default="")
    category: Mapped[Category] = mapped_column(_stored_as_value(Category))
    is_important: Mapped[bool] = mapped_column(Boolean, default=False)
    is_internal: Mapped[bool] = mapped_column(Boolean, default=False)
    # An audience rule for targeting; None shows the note to everyone.
    audience: Mapped[dict[str, Any] | None]
    author_id: Mapped[int | None] = mapped_column(ForeignKey("team_member.id", ondelete="SET NULL"))
    published_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    archived_at: Mapped[datetime | None]
    # Email the subscribers when the note goes live; ``emailed_at`` is when its messages
    # were queued, so a note is queued once however many workers look at it.
    email_subscribers: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    emailed_at: Mapped[datetime | None]
    # A note imported from a changelog: which release it is ("changelog:1.2.0"), a hash
    # of that release's text when last imported, and the release date the changelog gave.
    import_key: Mapped[str | None] = mapped_column(String(80))
    import_hash: Mapped[str | None] = mapped_column(String(64))
    released_at: Mapped[datetime | None]
    # Support impact: the ticket tags the note answers ("export", "billing"); none means
    # every ticket in the attribution window counts. And the share of exposed users (0-50
    # per cent) held back as a control group, who get no popup, badge or e-mail for it
    # during the window.
    support_topics: Mapped[list[str]] = mapped_column(default=list, server_default="[]")
    holdback_percent: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # A notice end users must acknowledge ("I understand"), not merely be shown; and after
    # how many days without it a user linked to a subscriber is sent it by e-mail (None:
    # never).
    requires_acknowledgement: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    escalate_after_days: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    product: Mapped[Product] = relationship()
    author: Mapped[TeamMember | None] = relationship()
    translations: Mapped[list[NoteTranslation]] = relationship(
        back_populates="note", cascade="all, delete-orphan"
    )

    @staticmethod
    def title_key_of(title: str) -> str:
        """What two titles share when they are the same title: case and surrounding spaces
        aside. A digest, so the index entry has one size whatever the title's script
        (folding "ß" to "ss" lengthens a title), and SQL's own lower(), which on SQLite
        folds only ASCII, plays no part."""
        return hashlib.sha256(title.strip().casefold().encode()).hexdigest()

    @validates("title")
    def _set_title_key(self, _name: str, title: str) -> str:
        self.title_key = self.title_key_of(title)
        return title

    def status_at(self, now: datetime) -> NoteStatus:
        """The note's state at ``now``."""
        if self.archived_at is not None:
            return NoteStatus.ARCHIVED
        if self.published_at is None:
            return NoteStatus.DRAFT
        if self.published_at > now:
            return NoteStatus.SCHEDULED
        return NoteStatus.PUBLISHED

    @property
    def category_label(self) -> str:
        return self.category.label


def status_clause(status: NoteStatus, now: datetime) -> ColumnElement[bool]:
    """A WHERE clause selecting notes in ``status`` at ``now``; the SQL twin of status_at."""
    live = Note.archived_at.is_(None)
    if status is NoteStatus.ARCHIVED:
        return Note.archived_at.is_not(None)
    if status is NoteStatus.DRAFT:
        return and_(live, Note.published_at.is_(None))
    if status is NoteStatus.SCHEDULED:
        return and_(live, Note.published_at > now)
    return and_(live, Note.published_at <= now)


def outward_clause() -> ColumnElement[bool]:
    """Notes meant for the world, now or at their scheduled time: not drafts, not archived,
    not internal. Callers compare ``published_at`` with the time themselves."""
    return and_(
        Note.published_at.is_not(None), Note.archived_at.is_(None), Note.is_internal.is_(False)
    )


class TranslationStatus(enum.StrEnum):
    """Where a translation stands; only a published one is shown to anyone."""

    DRAFT = "draft"
    PUBLISHED = "published"


class NoteTranslation(Base):
    """A note's title and body in another of its product's languages.

    A published translation keeps the default text it was made from (``source_title``,
    ``source_body_md``): when the note's default text differs from it, the translation is
    outdated, and the editor shows what changed since.
    """

    __tablename__ = "note_translation"
    __table_args__ = (UniqueConstraint("note_id", "locale"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    note_id: Mapped[int] = mapped_column(ForeignKey("note.id", ondelete="CASCADE"))
    locale: Mapped[str] = mapped_column(String(35))
    title: Mapped[str] = mapped_column(String(200))
    body_md: Mapped[str] = mapped_column(Text, default="")
    body_html: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[TranslationStatus] = mapped_column(
        _stored_as_value(TranslationStatus),
        default=TranslationStatus.DRAFT,
        server_default=TranslationStatus.PUBLISHED.value,
    )
    source_title: Mapped[str | None] = mapped_column(String(200))
    source_body_md: Mapped[str | None] = mapped_column(Text)
    published_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    note: Mapped[Note] = relationship(back_populates="translations")


class EndUser(Base):
    """A user of the host product, as the widget has seen them."""

    __tablename__ = "end_user"
    __table_args__ = (
        UniqueConstraint("product_id", "external_id"),
        Index(None, "product_id", "last_seen_at"),
        Index(None, "product_id", "email_key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(String(255))
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    locale: Mapped[str | None] = mapped_column(String(35))
    app_version: Mapped[str | None] = mapped_column(String(64))
    first_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    # A keyed hash of the e-mail address the host signed for this user (never the
    # address), so help-desk tickets that know only an address find their user.
    email_key: Mapped[str | None] = mapped_column(String(64))
    # Set when the user's data was erased (``announcements.privacy``): the row stays,
    # naming no one, so that what they read still counts in the figures.
    erased_at: Mapped[datetime | None]


class ReadReceipt(Base):
    """That one end user has read one note, when, and through which channel."""

    __tablename__ = "read_receipt"
    # By note, with the reader: counting a note's readers among its exposed users then
    # reads the index alone (three to four times faster on SQLite). By note and time: the
    # roll-up's new receipts since its watermark, and a note's time-to-read percentiles.
    __table_args__ = (Index(None, "note_id", "end_user_id"), Index(None, "note_id", "read_at"))

    end_user_id: Mapped[int] = mapped_column(
        ForeignKey("end_user.id", ondelete="CASCADE"), primary_key=True
    )
    note_id: Mapped[int] = mapped_column(
        ForeignKey("note.id", ondelete="CASCADE"), primary_key=True
    )
    read_at: Mapped[datetime] = mapped_column(default=utcnow)
    channel: Mapped[str] = mapped_column(String(16))


class Reaction(Base):
    """One end user's reaction to one note, with an optional comment; changeable."""

    __tablename__ = "reaction"

    end_user_id: Mapped[int] = mapped_column(
        ForeignKey("end_user.id", ondelete="CASCADE"), primary_key=True
    )
    note_id: Mapped[int] = mapped_column(
        ForeignKey("note.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    reaction: Mapped[str] = mapped_column(String(16))
    comment: Mapped[str | None] = mapped_column(String(1000))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Acknowledgement(Base):
    """That one end user pressed "I understand" on a notice that requires it, and when;
    kept apart from the read, which showing the notice already records."""

    __tablename__ = "acknowledgement"
    __table_args__ = (Index(None, "note_id", "end_user_id"),)

    end_user_id: Mapped[int] = mapped_column(
        ForeignKey("end_user.id", ondelete="CASCADE"), primary_key=True
    )
    note_id: Mapped[int] = mapped_column(
        ForeignKey("note.id", ondelete="CASCADE"), primary_key=True
    )
    acknowledged_at: Mapped[datetime] = mapped_column(default=utcnow)


class Escalation(Base):
    """That a notice still unacknowledged after its ``escalate_after_days`` was queued by
    e-mail to the subscriber linked to this end user: once per note and user."""

    __tablename__ = "escalation"

    note_id: Mapped[int] = mapped_column(
        ForeignKey("note.id", ondelete="CASCADE"), primary_key=True
    )
    end_user_id: Mapped[int] = mapped_column(
        ForeignKey("end_user.id", ondelete="CASCADE"), primary_key=True
    )
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscriber.id", ondelete="SET NULL")
    )
    escalated_at: Mapped[datetime] = mapped_column(default=utcnow)


class AgentSend(Base):
    """A support agent sent one note to one end user: pinned unread in their widget, shown
    as a popup on their next page view, until they read it (``read_at``)."""

    __tablename__ = "agent_send"
    __table_args__ = (
        Index(None, "end_user_id", "read_at"),
        Index(None, "product_id", "sent_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id", ondelete="CASCADE"))
    note_id: Mapped[int] = mapped_column(ForeignKey("note.id", ondelete="CASCADE"))
    end_user_id: Mapped[int] = mapped_column(ForeignKey("end_user.id", ondelete="CASCADE"))
    # A console member; or none, when it came from a help desk's sidebar, whose agent is
    # known only by the name the signed link carries.
    sent_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("team_member.id", ondelete="SET NULL")
    )
    agent: Mapped[str] = mapped_column(String(254))
    via: Mapped[str] = mapped_column(String(16))  # "console" or "sidebar"
    sent_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Whether an e-mail was queued: the user is linked to a confirmed subscriber.
    emailed: Mapped[bool] = mapped_column(Boolean, default=False)
    read_at: Mapped[datetime | None]

    note: Mapped[Note] = relationship()
    end_user: Mapped[EndUser] = relationship()
    sent_by: Mapped[TeamMember | None] = relationship()


class HelpRequest(Base):
    """An end user about to contact support was shown the unread notes that match what
    they typed (``Tidings.beforeSupport``), and what they answered: one of them
    answered their question, or they still need help (None: they closed it)."""

    __tablename__ = "help_request"
    __table_args__ = (Index(None, "product_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id", ondelete="CASCADE"))
    # The widget's handle for recording the answer: unguessable, as anonymous users
    # have no identity to check it against.
    token: Mapped[str] = mapped_column(String(32), unique=True)
    end_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("end_user.id", ondelete="SET NULL"), index=True
    )
    query: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    outcome: Mapped[str | None] = mapped_column(String(16))  # "answered" or "needs_help"
    answered_note_id: Mapped[int | None] = mapped_column(
        ForeignKey("note.id", ondelete="SET NULL"), index=True
    )
    decided_at: Mapped[datetime | None]


class HelpShown(Base):
    """One note shown in a :class:`HelpRequest`, at its rank (0 is the best match)."""

    __tablename__ = "help_shown"
    __table_args__ = (Index(None, "note_id", "help_request_id"),)

    help_request_id: Mapped[int] = mapped_column(
        ForeignKey("help_request.id", ondelete="CASCADE"), primary_key=True
    )
    note_id: Mapped[int] = mapped_column(
        ForeignKey("note.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer)


class SubscriberStatus(enum.StrEnum):
    """Where a subscriber stands; only confirmed subscribers are sent release notes."""

    PENDING = "pending"
    CONFIRMED = "confirmed"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"  # stopped after repeated permanent failures


class Frequency(enum.StrEnum):
    """How often a subscriber hears from a product."""

    EVERY = "every"
    IMPORTANT = "important"
    DIGEST = "digest"

    @property
    def label(self) -> str:
        return {
            Frequency.EVERY: N_("Every release"),
            Frequency.IMPORTANT: N_("Important notes only"),
            Frequency.DIGEST: N_("A weekly digest"),
        }[self]


class Subscriber(Base):
    """An email address that asked for a product's release notes."""

    __tablename__ = "subscriber"
    __table_args__ = (
        UniqueConstraint("product_id", "email"),
        Index(None, "product_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(254))
    # pending → confirmed → unsubscribed
    status: Mapped[SubscriberStatus] = mapped_column(
        _stored_as_value(SubscriberStatus), default=SubscriberStatus.PENDING
    )
    frequency: Mapped[Frequency] = mapped_column(
        _stored_as_value(Frequency), default=Frequency.EVERY
    )
    # Categories to hear about (their names); empty means all of them.
    categories: Mapped[list[str]] = mapped_column(default=list)
    locale: Mapped[str | None] = mapped_column(String(35))
    # Indexed: support looks up the subscriber of one end user.
    end_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("end_user.id", ondelete="SET NULL"), index=True
    )
    hard_bounces: Mapped[int] = mapped_column(Integer, default=0)
    # Random and new for every row; the links in mail carry it, so a link made for a
    # deleted subscriber never reaches a later one that is given the same id.
    link_key: Mapped[str] = mapped_column(String(32), default=lambda: secrets.token_urlsafe(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    confirmed_at: Mapped[datetime | None]
    unsubscribed_at: Mapped[datetime | None]
    last_digest_at: Mapped[datetime | None]
    # Set when the subscriber's data was erased: the address is gone, the row stays
    # (unsubscribed) so the list's past figures stay true.
    erased_at: Mapped[datetime | None]

    end_user: Mapped[EndUser | None] = relationship()


class OutboxKind(enum.StrEnum):
    CONFIRM = "confirm"  # the double opt-in message; its payload holds the asked preferences
    NOTE = "note"
    DIGEST = "digest"  # its payload lists the notes it covers
    AGENT = "agent"  # a note a support agent sent this subscriber's end user
    ESCALATION = "escalation"  # a notice its end user has not acknowledged in time
    # A note sent again in the language of a translation published (and announced) after
    # it, to the subscribers whose chain picks it and who have not read it; once per note
    # and subscriber (the payload holds {"locale"}).
    TRANSLATION = "translation"
    # To a team member (``member_id``), not a subscriber: an ``Alert`` began or ended; the
    # payload holds {"alert_id", "state": "down" | "recovered"}.
    ALERT = "alert"


class OutboxStatus(enum.StrEnum):
    QUEUED = "queued"
    SENDING = "sending"  # claimed by a worker until ``next_attempt_at``
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"  # no longer to send: unsubscribed, read in-app, note withdrawn


class OutboxMessage(Base):
    """One email to send, written in the same transaction as what caused it."""

    __tablename__ = "outbox_message"
    __table_args__ = (
        # A note goes to a subscriber once of each kind: as published, from an agent,
        # as an escalation.
        UniqueConstraint("note_id", "subscriber_id", "kind"),
        Index(None, "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id", ondelete="CASCADE"))
    # Every kind goes to a subscriber but an alert, which goes to a team member.
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscriber.id", ondelete="CASCADE")
    )
    member_id: Mapped[int | None] = mapped_column(ForeignKey("team_member.id", ondelete="CASCADE"))
    note_id: Mapped[int | None] = mapped_column(ForeignKey("note.id", ondelete="CASCADE"))
    kind: Mapped[OutboxKind] = mapped_column(_stored_as_value(OutboxKind))
    status: Mapped[OutboxStatus] = mapped_column(
        _stored_as_value(OutboxStatus), default=OutboxStatus.QUEUED
    )
    payload: Mapped[dict[str, Any] | None]
    # The worker holding a message in ``sending``: host, process id and start time.
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    message_id: Mapped[str | None] = mapped_column(String(255))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    # Held back by a pause: since when the mail server has refused us (our sender address,
    # the message, the connection) rather than this recipient; ``last_error`` says how.
    paused_at: Mapped[datetime | None]

    product: Mapped[Product] = relationship()
    subscriber: Mapped[Subscriber | None] = relationship()
    member: Mapped[TeamMember | None] = relationship()
    note: Mapped[Note | None] = relationship()


class ApiKey(Base):
    """A scoped management-API key; only a hash of the secret is kept."""

    __tablename__ = "api_key"

    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(120))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(128))
    scopes: Mapped[list[str]] = mapped_column(default=list)
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("team_member.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class ApiScope(enum.StrEnum):
    NOTES_READ = "notes:read"
    NOTES_WRITE = "notes:write"
    IMPORT = "import"
    SUBSCRIBERS_READ = "subscribers:read"
    TICKETS_READ = "tickets:read"
    TICKETS_WRITE = "tickets:write"
    INSIGHTS_READ = "insights:read"
    SUPPORT_READ = "support:read"
    PRIVACY = "privacy"


class WebhookEvent(enum.StrEnum):
    PUBLISHED = "note.published"
    UPDATED = "note.updated"
    ARCHIVED = "note.archived"


class WebhookFormat(enum.StrEnum):
    JSON = "json"  # Tidings' own payload: the note and its links
    SLACK = "slack"  # Slack's incoming-webhook format: text and blocks


class Webhook(Base):
    """A URL to call when a product's notes go out, change or are withdrawn."""

    __tablename__ = "webhook"

    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(String(2000))
    secret: Mapped[str] = mapped_column(String(80))
    format: Mapped[WebhookFormat] = mapped_column(
        _stored_as_value(WebhookFormat), default=WebhookFormat.JSON
    )
    events: Mapped[list[str]] = mapped_column(default=list)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    product: Mapped[Product] = relationship()


class WebhookDelivery(Base):
    """One call of one webhook, written in the same transaction as the event; the worker
    sends it, retrying with backoff, and keeps what the receiver answered."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        Index(None, "status", "next_attempt_at"),
        Index(None, "webhook_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhook.id", ondelete="CASCADE"))
    note_id: Mapped[int | None] = mapped_column(ForeignKey("note.id", ondelete="SET NULL"))
    event: Mapped[WebhookEvent] = mapped_column(_stored_as_value(WebhookEvent))
    status: Mapped[OutboxStatus] = mapped_column(
        _stored_as_value(OutboxStatus), default=OutboxStatus.QUEUED
    )
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    response_status: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]

    webhook: Mapped[Webhook] = relationship()
    note: Mapped[Note | None] = relationship()

    @property
    def retriable(self) -> bool:
        """A call that failed for good, or one waiting out its backoff; not one that has
        not been tried, which may be an announcement waiting for its note to go live."""
        waiting = self.status is OutboxStatus.QUEUED and self.attempts > 0
        return waiting or self.status is OutboxStatus.FAILED


class AuditEvent(Base):
    """Who changed what, on which note, and when. ``product_id`` None is an event of the
    whole instance that no product owns (a refused single sign-on with no member)."""

    __tablename__ = "audit_event"
    __table_args__ = (Index(None, "product_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[int | None] = mapped_column(ForeignKey("product.id", ondelete="CASCADE"))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("team_member.id", ondelete="SET NULL"))
    action: Mapped[str] = mapped_column(String(64))
    note_id: Mapped[int | None] = mapped_column(ForeignKey("note.id", ondelete="SET NULL"))
    summary: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    actor: Mapped[TeamMember | None] = relationship()
    note: Mapped[Note | None] = relationship()


class SupportDesk(enum.StrEnum):
    """A help desk that sends its tickets to Tidings as they are created."""

    ZENDESK = "zendesk"
    INTERCOM = "intercom"
    HELPSCOUT = "helpscout"
    FRESHDESK = "freshdesk"

    @property
    def label(self) -> str:
        return {
            SupportDesk.ZENDESK: "Zendesk",
            SupportDesk.INTERCOM: "Intercom",
            SupportDesk.HELPSCOUT: "Help Scout",
            SupportDesk.FRESHDESK: "Freshdesk",
        }[self]


class SupportConnection(Base):
    """One help desk's inbound URL for one product, and the secret its deliveries prove.

    ``source`` names the connection's tickets (``zendesk``, ``zendesk-2``): a ticket is
    one per source and desk ticket id, whichever way it came in.
    """

    __tablename__ = "support_connection"
    __table_args__ = (UniqueConstraint("product_id", "source"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id", ondelete="CASCADE"))
    desk: Mapped[SupportDesk] = mapped_column(_stored_as_value(SupportDesk))
    source: Mapped[str] = mapped_column(String(40))
    # In the inbound URL; for a desk that cannot sign (Freshdesk) it is the credential.
    token: Mapped[str] = mapped_column(String(64))
    # The key the desk signs with: ours, or the one the desk made (Zendesk, Intercom).
    secret: Mapped[str] = mapped_column(String(200))
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("team_member.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_delivery_at: Mapped[datetime | None]
    deliveries: Mapped[int] = mapped_column(Integer, default=0)

    product: Mapped[Product] = relationship()


class Ticket(Base):
    """A help-desk ticket: when it was opened, by whom, about what. Never its body, and
    never the requester's address: only a keyed hash of it."""

    __tablename__ = "ticket"
    __table_args__ = (
        UniqueConstraint("product_id", "source", "external_id"),
        Index(None, "product_id", "created_at"),
        Index(None, "end_user_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id", ondelete="CASCADE"))
    connection_id: Mapped[int | None] = mapped_column(
        ForeignKey("support_connection.id", ondelete="SET NULL")
    )
    source: Mapped[str] = mapped_column(String(40))
    external_id: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The end user it was matched to: by the external id the desk sent, else by address.
    end_user_id: Mapped[int | None] = mapped_column(ForeignKey("end_user.id", ondelete="SET NULL"))
    requester_external_id: Mapped[str | None] = mapped_column(String(255))
    requester_key: Mapped[str | None] = mapped_column(String(64))
    app_version: Mapped[str | None] = mapped_column(String(64))
    tags: Mapped[list[str]] = mapped_column(default=list)
    # What topics are matched against, folded: "|tag|tag|" and the subject.
    tag_text: Mapped[str] = mapped_column(Text, default="||")
    subject: Mapped[str | None] = mapped_column(String(500))
    subject_key: Mapped[str] = mapped_column(String(500), default="")

    end_user: Mapped[EndUser | None] = relationship()


class HoldbackAssignment(Base):
    """Which group of a note's hold-back experiment an exposed end user is in, as the
    deterministic hash put them, recorded when they were first counted."""

    __tablename__ = "holdback_assignment"

    note_id: Mapped[int] = mapped_column(
        ForeignKey("note.id", ondelete="CASCADE"), primary_key=True
    )
    end_user_id: Mapped[int] = mapped_column(
        ForeignKey("end_user.id", ondelete="CASCADE"), primary_key=True
    )
    control: Mapped[bool] = mapped_column(Boolean)
    assigned_at: Mapped[datetime] = mapped_column(default=utcnow)


class SupportImpact(Base):
    """Support-impact figures as the worker last computed them (a roll-up), for one note
    (``scope`` "note:<id>") or one whole release ("release:<version>"): the page and the
    API read these, so neither counts a million users per request."""

    __tablename__ = "support_impact"
    __table_args__ = (UniqueConstraint("product_id", "scope"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id", ondelete="CASCADE"))
    scope: Mapped[str] = mapped_column(String(80))
    version: Mapped[str] = mapped_column(String(64))
    # Set for a note's figures, so they go with the note.
    note_id: Mapped[int | None] = mapped_column(
        ForeignKey("note.id", ondelete="CASCADE"), index=True
    )
    figures: Mapped[dict[str, Any]] = mapped_column(default=dict)
    computed_at: Mapped[datetime] = mapped_column(default=utcnow)


class EndUserDay(Base):
    """That the widget saw an end user on a UTC day: raw data, written once per user and
    day on the widget's first sighting that day, with the day and version it saw them on
    before. Weekly active users, versions in use and who a note went out to are counted
    from these rows (see ``announcements.rollups``)."""

    __tablename__ = "end_user_day"
    __table_args__ = (Index(None, "product_id", "seen_at"),)

    end_user_id: Mapped[int] = mapped_column(
        ForeignKey("end_user.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id", ondelete="CASCADE"))
    # The first sighting of the day: what the roll-up's watermark is compared with.
    seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    app_version: Mapped[str | None] = mapped_column(String(64))
    # The user's day and version at their previous sighting; None for a new user.
    previous_day: Mapped[date | None] = mapped_column(Date)
    previous_version: Mapped[str | None] = mapped_column(String(64))


class Rollup(Base):
    """A daily count kept by the worker for the Insights pages (see
    ``announcements.rollups``, which says what each metric counts). ``note_id`` 0 is the
    product as a whole; ``dimension`` "" with ``value`` "" is everyone, "channel" splits
    reads by channel, "seg:<name>" by an end-user attribute; ``bucket`` is the days since
    the user's previous visit for "active" rows, 0 otherwise."""

    __tablename__ = "rollup"

    product_id: Mapped[int] = mapped_column(
        ForeignKey("product.id", ondelete="CASCADE"), primary_key=True
    )
    note_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    metric: Mapped[str] = mapped_column(String(16), primary_key=True)
    dimension: Mapped[str] = mapped_column(String(80), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    value: Mapped[str] = mapped_column(String(128), primary_key=True)
    bucket: Mapped[int] = mapped_column(Integer, primary_key=True, default=0)
    count: Mapped[int] = mapped_column(BigInteger, default=0)


class RollupState(Base):
    """How far a product's roll-up has counted: raw rows stamped at or before
    ``counted_until`` are in the ``rollup`` rows, later ones not yet."""

    __tablename__ = "rollup_state"

    product_id: Mapped[int] = mapped_column(
        ForeignKey("product.id", ondelete="CASCADE"), primary_key=True
    )
    counted_until: Mapped[datetime]
    # The end-user attributes the product's segments are counted by, in the order first
    # seen, at most ``rollups.MAX_SEGMENTS``.
    segments: Mapped[list[str]] = mapped_column(default=list)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class RetentionRun(Base):
    """One daily retention run of one product: when it ran and how many rows of each kind
    it erased, pseudonymised or emptied (``announcements.retention``)."""

    __tablename__ = "retention_run"
    __table_args__ = (Index(None, "product_id", "finished_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id", ondelete="CASCADE"))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    removed: Mapped[dict[str, Any]] = mapped_column(default=dict)


class WorkerHeartbeat(Base):
    """A worker process's last sign of life, written every minute by its heartbeat thread."""

    __tablename__ = "worker_heartbeat"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)  # outbox.worker_name()
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    beat_at: Mapped[datetime] = mapped_column(default=utcnow)


class TrafficMinute(Base):
    """One web process's widget traffic for one product in one minute, flushed from
    memory a minute at a time, so Status sums every process's figures."""

    __tablename__ = "traffic_minute"
    __table_args__ = (
        UniqueConstraint("process", "minute", "product_id"),
        Index(None, "minute"),
        Index(None, "product_id", "minute"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    process: Mapped[str] = mapped_column(String(128))
    minute: Mapped[datetime]
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id", ondelete="CASCADE"))
    requests: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[int] = mapped_column(Integer, default=0)  # answered with a 5xx
    # Requests per latency bucket (``monitoring.LATENCY_BUCKETS_MS``).
    latency: Mapped[list[int]] = mapped_column(JSON, default=list)


class Alert(Base):
    """One episode of trouble the owners are told about: the worker silent, mail failing.
    ``alerted_at`` is set when the e-mail went into the outbox; ``recovered_at`` when the
    trouble was last seen to end. The episode closes once it has stayed over for
    ``monitoring.ALERT_SETTLES_AFTER`` (with a recovery e-mail only if the first one went);
    trouble back before that reopens it. At most one per kind has no ``recovered_at``."""

    __tablename__ = "alert"
    __table_args__ = (
        Index(
            "uq_alert_open_kind",
            "kind",
            unique=True,
            sqlite_where=text("recovered_at IS NULL"),
            postgresql_where=text("recovered_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    failing_since: Mapped[datetime]
    detail: Mapped[str] = mapped_column(String(500), default="")
    alerted_at: Mapped[datetime | None]
    recovered_at: Mapped[datetime | None]


def _ids_never_reused() -> None:
    """SQLite hands a deleted row's id to the next row unless its table says AUTOINCREMENT;
    an id that comes back would let an old link, token or log line reach whoever got it."""
    for table in Base.metadata.tables.values():
        key = list(table.primary_key.columns)
        if len(key) == 1 and key[0].autoincrement is not False and key[0].name == "id":
            table.dialect_options["sqlite"]["autoincrement"] = True


_ids_never_reused()


# The catalogue stamp -------------------------------------------------------------------
#
# Caches of what end users see (the widget's catalogue, the feeds) are valid for one
# ``Product.catalogue_stamp``. Rather than every writer bumping it, and the one that
# forgets leaving every process serving a stale widget, the session moves it whenever a
# flush adds, changes or deletes a note or a translation, or changes a product's own
# settings: whoever writes, through whichever service, command or job yet to come. Time
# needs no bump: a catalogue holds each note's go-live and expiry times and compares them
# with the clock on each request. A write in Core (``update(Note)``) bypasses the session
# and calls ``move_catalogue_stamps`` itself, as ``notes rerender`` does.

_STAMPED = "tidings.stamped_products"
# Every product whose stamp the outermost transaction moved, kept until it ends, so that
# whoever announces changes (``announcements.live``) learns them once it commits.
CHANGED_PRODUCTS = "tidings.changed_products"


def move_catalogue_stamps(session: Session, product_ids: Collection[int]) -> None:
    """Move the products' stamps now, in SQL, so concurrent writers never share a stamp;
    once a transaction is enough, as readers see its changes only when it commits. The
    UPDATE also takes the products' rows (on SQLite, the database's write lock) until then.
    """
    stamped: set[int] = session.info.setdefault(_STAMPED, set())
    due = set(product_ids) - stamped
    if not due:
        return
    stamped.update(due)  # first: the UPDATE autoflushes, and a flush comes back here
    session.info.setdefault(CHANGED_PRODUCTS, set()).update(due)
    session.execute(
        update(Product)
        .where(Product.id.in_(due))
        .values(catalogue_stamp=Product.catalogue_stamp + 1)
        .execution_options(synchronize_session="fetch")
    )


# Columns no cache shows: the stamp itself, the agent sidebar's secret, and when a note's
# emails were queued. The mail worker sets that holding the note's row; moving the stamp
# too would take the product's row after the note's, the reverse of an editor's order,
# and on PostgreSQL the two could deadlock.
_UNSHOWN = frozenset({"catalogue_stamp", "emailed_at", "sidebar_secret"})
_CATALOGUE_ROWS = (Note, NoteTranslation, Product)


def _product_of(session: Session, row: object) -> int | None:
    """The product whose catalogue ``row`` is part of, if any."""
    if isinstance(row, NoteTranslation):
        note = row.note if row.note is not None else session.get(Note, row.note_id)
        return None if note is None else _product_of(session, note)
    if isinstance(row, Note):
        if row.product_id is None and row.product is not None:
            return row.product.id
        return row.product_id
    return row.id if isinstance(row, Product) else None


def _shows_change(row: Base) -> bool:
    """Whether a stored row's pending changes hold one that a cache shows."""
    state = inspect(row)
    shown = (attr.key for attr in state.mapper.column_attrs if attr.key not in _UNSHOWN)
    return any(state.attrs[key].history.has_changes() for key in shown)


@event.listens_for(Session, "before_flush")
def _stamp_changed_products(session: Session, _context: object, _instances: object) -> None:
    """Move the stamps of the products whose catalogues this flush changes."""
    edited = [row for row in session.dirty if isinstance(row, _CATALOGUE_ROWS)]
    rows = [*session.new, *session.deleted, *filter(_shows_change, edited)]
    changed = {_product_of(session, row) for row in rows}
    move_catalogue_stamps(session, {product_id for product_id in changed if product_id is not None})


@event.listens_for(Session, "after_transaction_end")
def _forget_stamped(session: Session, transaction: SessionTransaction) -> None:
    """The next transaction, or the rest of this one after a savepoint, moves the stamps
    again; not after the inner transaction that each flush opens and closes."""
    if transaction.parent is None or transaction.nested:
        session.info.pop(_STAMPED, None)
    if transaction.parent is None:
        session.info.pop(CHANGED_PRODUCTS, None)
