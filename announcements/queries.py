"""Read-only questions the console asks: notes by version, readership, the audit trail."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, selectinload

from announcements import versions
from announcements.models import (
    AuditEvent,
    Category,
    EndUser,
    Membership,
    Note,
    NoteStatus,
    NoteTranslation,
    Product,
    Reaction,
    ReadReceipt,
    TeamMember,
    TranslationStatus,
    status_clause,
)

CATEGORY_ORDER = {category: position for position, category in enumerate(Category)}


@dataclass(frozen=True)
class VersionGroup:
    version: str
    notes: list[Note]


@dataclass(frozen=True)
class NotesPage:
    groups: list[VersionGroup]
    page: int
    pages: int
    total_notes: int


def like_pattern(text: str) -> str:
    """A LIKE pattern matching ``text`` anywhere, with LIKE's wildcards taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def notes_by_version(
    session: Session,
    product: Product,
    *,
    now: datetime,
    status: NoteStatus | None = None,
    category: Category | None = None,
    text: str = "",
    page: int = 1,
    versions_per_page: int = 15,
    public: bool = False,
    version: str | None = None,
    text_languages: Sequence[str] = (),
) -> NotesPage:
    """The product's notes grouped by version, newest version first, a page of versions at once.

    ``public`` keeps only what anyone may read: published, not internal, not archived,
    and loads each note's translations with it; ``version`` keeps one version; ``text``
    is looked for in the default text and in the published translations into
    ``text_languages`` (the languages a reader of the public page is shown).
    """
    query = select(Note).where(Note.product_id == product.id)
    if public:
        query = query.where(status_clause(NoteStatus.PUBLISHED, now), Note.is_internal.is_(False))
    if version is not None:
        query = query.where(Note.version == version)
    if status is not None:
        query = query.where(status_clause(status, now))
    if category is not None:
        query = query.where(Note.category == category)
    # PostgreSQL refuses a NUL in a string, and no note can hold one: drop it.
    text = text.replace("\x00", "").strip()
    if text:
        pattern = like_pattern(text.lower())
        matches = [
            func.lower(Note.title).like(pattern, escape="\\"),
            func.lower(Note.body_md).like(pattern, escape="\\"),
        ]
        if text_languages:
            translated = select(NoteTranslation.note_id).where(
                NoteTranslation.locale.in_(text_languages),
                NoteTranslation.status == TranslationStatus.PUBLISHED,
                or_(
                    func.lower(NoteTranslation.title).like(pattern, escape="\\"),
                    func.lower(NoteTranslation.body_md).like(pattern, escape="\\"),
                ),
            )
            matches.append(Note.id.in_(translated))
        query = query.where(or_(*matches))
    found_versions = session.scalars(query.with_only_columns(Note.version).distinct()).all()
    ordered = versions.newest_first(found_versions)
    pages = max(1, -(-len(ordered) // versions_per_page))
    page = min(max(page, 1), pages)
    shown = ordered[(page - 1) * versions_per_page : page * versions_per_page]
    loaded = [selectinload(Note.author)]
    if public:
        loaded.append(selectinload(Note.translations))
    notes = session.scalars(query.where(Note.version.in_(shown)).options(*loaded)).all()
    by_version: dict[str, list[Note]] = {version: [] for version in shown}
    for note in notes:
        by_version[note.version].append(note)
    for group in by_version.values():
        group.sort(key=lambda n: (CATEGORY_ORDER[n.category], n.title.lower()))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    return NotesPage(
        groups=[VersionGroup(v, by_version[v]) for v in shown],
        page=page,
        pages=pages,
        total_notes=total,
    )


def products_of(session: Session, member: TeamMember) -> list[tuple[Product, Membership]]:
    """The products ``member`` belongs to, with their membership, by name."""
    rows = session.execute(
        select(Product, Membership)
        .join(Membership, Membership.product_id == Product.id)
        .where(Membership.member_id == member.id)
        .order_by(func.lower(Product.name))
    ).all()
    return [(product, membership) for product, membership in rows]


def note_counts(session: Session, product: Product, *, now: datetime) -> dict[NoteStatus, int]:
    """How many of the product's notes are in each state."""
    return {
        status: session.scalar(
            select(func.count())
            .select_from(Note)
            .where(Note.product_id == product.id, status_clause(status, now))
        )
        or 0
        for status in NoteStatus
    }


def team(session: Session, product: Product) -> list[Membership]:
    """The product's memberships, owners first."""
    rows = session.scalars(
        select(Membership)
        .where(Membership.product_id == product.id)
        .options(selectinload(Membership.member))
    ).all()
    return sorted(rows, key=lambda m: (-m.role.rank, m.member.email))


def audit_trail(
    session: Session, product: Product, *, page: int = 1, per_page: int = 50
) -> tuple[list[AuditEvent], int, bool]:
    """The product's audit events and the instance's (no product: a single sign-on refused
    to someone with no account), newest first, on ``page`` or the last page when it is
    past the end; that page's number; and whether there is a next page."""
    shown = or_(AuditEvent.product_id == product.id, AuditEvent.product_id.is_(None))
    total = session.scalar(select(func.count()).select_from(AuditEvent).where(shown))
    page = min(max(page, 1), max(1, -(-(total or 0) // per_page)))
    events = session.scalars(
        select(AuditEvent)
        .where(shown)
        .order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc())
        .options(selectinload(AuditEvent.actor))
        .offset((page - 1) * per_page)
        .limit(per_page)
    ).all()
    return list(events), page, page * per_page < (total or 0)


@dataclass(frozen=True)
class Readership:
    """Who read a note: readers, the users seen since it went out, and their reactions."""

    readers: int
    seen_since: int
    reactions: dict[str, int]
    comments: list[tuple[str, str | None, datetime]]  # reaction, comment, when

    @property
    def read_rate(self) -> float | None:
        """Readers among the users seen since publication; None before anyone was seen."""
        if not self.seen_since:
            return None
        return min(1.0, self.readers / self.seen_since)


def readership(session: Session, note: Note, *, comments: int = 5) -> Readership:
    """How a published note was received; a note never published has no readers."""
    readers = session.scalar(
        select(func.count()).select_from(ReadReceipt).where(ReadReceipt.note_id == note.id)
    )
    seen: int | None = 0
    if note.published_at is not None:
        # Last-seen times are kept to the hour, so this may miss users seen in the hour
        # before publication; the rate is capped at 100 %.
        seen = session.scalar(
            select(func.count())
            .select_from(EndUser)
            .where(EndUser.product_id == note.product_id, EndUser.last_seen_at >= note.published_at)
        )
    counts = {
        reaction: count
        for reaction, count in session.execute(
            select(Reaction.reaction, func.count())
            .where(Reaction.note_id == note.id)
            .group_by(Reaction.reaction)
        )
    }
    latest = session.execute(
        select(Reaction.reaction, Reaction.comment, Reaction.updated_at)
        .where(Reaction.note_id == note.id, Reaction.comment.is_not(None))
        .order_by(Reaction.updated_at.desc())
        .limit(comments)
    )
    return Readership(
        readers=readers or 0,
        seen_since=seen or 0,
        reactions=counts,
        comments=[(reaction, comment, when) for reaction, comment, when in latest],
    )
