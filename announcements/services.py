"""What the console, API and CLI do to products and notes: one transaction per call.

Every service validates its input completely before it changes anything, so a
rejected request leaves the database as it was, and it writes an audit event in
the same transaction as the change it records.
"""

from __future__ import annotations

import enum
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from announcements import mailing, note_rules, rendering, subscriptions, targeting, webhooks
from announcements.audit import owned, record
from announcements.errors import InvalidTransition, NotFound, ValidationFailed
from announcements.models import Category, Membership, Note, NoteStatus, Product, Role, TeamMember
from announcements.note_rules import NoteInput

SLUG_PATTERN = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?")
COLOR_PATTERN = re.compile(r"#[0-9a-fA-F]{6}")
ORIGIN_PATTERN = re.compile(r"https?://[A-Za-z0-9.-]+(?::\d{1,5})?")
# Characters a URL never holds unencoded: spaces, controls, quotes, angle brackets.
URL_TEXT = re.compile(r"[^\s\x00-\x1f\x7f\"<>\\^`{|}]+")
MAX_LOGO_URL = 500


class Intent(enum.StrEnum):
    """What the editor asked for when saving a note."""

    SAVE = "save"  # keep the note's state: a new note stays a draft
    PUBLISH = "publish"
    SCHEDULE = "schedule"
    UNSCHEDULE = "unschedule"


# Products -----------------------------------------------------------------


def new_widget_key() -> str:
    return "wk_" + secrets.token_urlsafe(18)


def new_identity_secret() -> str:
    return secrets.token_hex(32)


@dataclass(frozen=True)
class ProductSettings:
    """A product's editable settings."""

    name: str
    slug: str
    allowed_origins: tuple[str, ...] = ()
    require_identity: bool = True
    default_locale: str = "en"
    logo_url: str | None = None
    accent_color: str = "#4f46e5"
    grace_releases: int = 1
    support_window_days: int = 14
    noindex: bool = False
    email_from_name: str | None = None
    email_reply_to: str | None = None
    digest_weekday: int = 0
    digest_hour: int = 9


MAX_GRACE_RELEASES = 20
# A note's attribution window, in days; past a quarter it would take in the tickets of
# several later releases.
MAX_SUPPORT_WINDOW_DAYS = 90


def _validate_settings(
    session: Session, settings: ProductSettings, product_id: int | None
) -> dict[str, str]:
    errors: dict[str, str] = {}
    name = settings.name.strip()
    if not name:
        errors["name"] = "Give the product a name."
    elif len(name) > 120:
        errors["name"] = "Keep the name under 120 characters."
    if not SLUG_PATTERN.fullmatch(settings.slug):
        errors["slug"] = (
            "Use lowercase letters, digits and hyphens (up to 64), starting and ending "
            "with a letter or digit."
        )
    else:
        clash = session.scalar(
            select(Product.id).where(Product.slug == settings.slug, Product.id != product_id)
        )
        if clash is not None:
            errors["slug"] = f"The address /changelog/{settings.slug} is taken."
    bad_origins = [o for o in settings.allowed_origins if not ORIGIN_PATTERN.fullmatch(o)]
    if bad_origins:
        errors["allowed_origins"] = (
            f"“{bad_origins[0]}” is not an origin. Write one per line as "
            "https://app.example.com (scheme, host and optional port, no path)."
        )
    locale_problem = note_rules.locale_problem(settings.default_locale)
    if locale_problem:
        errors["default_locale"] = locale_problem
    if settings.logo_url:
        problem = _logo_url_problem(settings.logo_url)
        if problem:
            errors["logo_url"] = problem
    if not COLOR_PATTERN.fullmatch(settings.accent_color):
        errors["accent_color"] = "Use a colour such as #4f46e5."
    if not 0 <= settings.grace_releases <= MAX_GRACE_RELEASES:
        errors["grace_releases"] = f"Choose between 0 and {MAX_GRACE_RELEASES} releases."
    if not 1 <= settings.support_window_days <= MAX_SUPPORT_WINDOW_DAYS:
        errors["support_window_days"] = (
            f"Choose a whole number of days from 1 to {MAX_SUPPORT_WINDOW_DAYS}."
        )
    if settings.email_from_name and len(settings.email_from_name.strip()) > 120:
        errors["email_from_name"] = "Keep the sender's name under 120 characters."
    if settings.email_reply_to:
        try:
            subscriptions.normalized_address(settings.email_reply_to)
        except ValidationFailed as error:
            errors["email_reply_to"] = error.errors["email"]
    if not 0 <= settings.digest_weekday <= 6:
        errors["digest_weekday"] = "Choose a day of the week."
    if not 0 <= settings.digest_hour <= 23:
        errors["digest_hour"] = "Choose an hour from 0 to 23."
    return errors


def _logo_url_problem(url: str) -> str | None:
    """What is wrong with a logo's address, if anything. It goes as written into the public
    page, link previews and the feeds, so it must be a whole URL; and https, in development
    too: the pages' Content-Security-Policy loads images over https only."""
    if len(url) > MAX_LOGO_URL:
        return f"Keep the logo address under {MAX_LOGO_URL} characters."
    parts = urlsplit(url)
    if parts.scheme != "https":
        return "The logo must be served over https://."
    if parts.username or parts.password:
        return "Put no user name or password in the logo's address."
    try:
        port_ok = parts.port is None or parts.port > 0
    except ValueError:  # not a number, or past 65535
        port_ok = False
    if not parts.hostname or not port_ok or not URL_TEXT.fullmatch(url):
        return "Enter the logo's full address, such as https://example.com/logo.png."
    return None


def create_product(
    session: Session, settings: ProductSettings, *, by: TeamMember, now: datetime
) -> Product:
    """Create a product owned by ``by``; raise ValidationFailed on bad settings."""
    errors = _validate_settings(session, settings, None)
    if errors:
        raise ValidationFailed(errors)
    product = Product(
        widget_key=new_widget_key(),
        identity_secret=new_identity_secret(),
        created_at=now,
    )
    _apply_settings(product, settings)
    session.add(product)
    session.add(Membership(member=by, product=product, role=Role.OWNER, created_at=now))
    session.flush()
    record(session, product, by, "product.created", f"Created {product.name}", now=now)
    session.commit()
    return product


def update_product(
    session: Session,
    product: Product,
    settings: ProductSettings,
    *,
    by: TeamMember,
    now: datetime,
) -> Product:
    """Change a product's settings; raise ValidationFailed on bad settings."""
    errors = _validate_settings(session, settings, product.id)
    if errors:
        raise ValidationFailed(errors)
    _apply_settings(product, settings)
    record(session, product, by, "product.updated", "Changed settings", now=now)
    session.commit()
    return product


def _apply_settings(product: Product, settings: ProductSettings) -> None:
    product.name = settings.name.strip()
    product.slug = settings.slug
    product.allowed_origins = list(dict.fromkeys(settings.allowed_origins))
    product.require_identity = settings.require_identity
    product.default_locale = settings.default_locale
    product.logo_url = settings.logo_url or None
    product.accent_color = settings.accent_color.lower()
    product.grace_releases = settings.grace_releases
    product.support_window_days = settings.support_window_days
    product.noindex = settings.noindex
    product.email_from_name = (settings.email_from_name or "").strip() or None
    product.email_reply_to = (settings.email_reply_to or "").strip() or None
    product.digest_weekday = settings.digest_weekday
    product.digest_hour = settings.digest_hour


def rotate_identity_secret(
    session: Session, product: Product, *, by: TeamMember, now: datetime
) -> str:
    """Replace the product's identity secret; hashes made with the old one stop working."""
    product.identity_secret = new_identity_secret()
    record(session, product, by, "product.secret_rotated", "Rotated the identity secret", now=now)
    session.commit()
    return product.identity_secret


# Team ---------------------------------------------------------------------


def get_team_member(session: Session, product: Product, member_id: int) -> TeamMember:
    """Someone on ``product``'s team; anyone else, even with an account, is NotFound."""
    member = session.scalar(
        select(TeamMember)
        .join(Membership, Membership.member_id == TeamMember.id)
        .where(Membership.product_id == product.id, TeamMember.id == member_id)
    )
    if member is None:
        raise NotFound("That person is not on this product.")
    return member


def set_role(
    session: Session,
    product: Product,
    member: TeamMember,
    role: Role,
    *,
    by: TeamMember | None,
    now: datetime,
) -> Membership:
    """Give ``member`` ``role`` on ``product``, adding them if they are not on it yet."""
    membership = assign_role(session, product, member, role, by=by, now=now)
    session.commit()
    return membership


def assign_role(
    session: Session,
    product: Product,
    member: TeamMember,
    role: Role,
    *,
    by: TeamMember | None,
    now: datetime,
) -> Membership:
    """set_role within the caller's transaction, for a change it is one step of."""
    membership = session.scalar(
        select(Membership).where(
            Membership.product_id == product.id, Membership.member_id == member.id
        )
    )
    if membership is None:
        membership = Membership(member=member, product=product, role=role, created_at=now)
        session.add(membership)
    elif membership.role is role:
        return membership
    else:
        if membership.role is Role.OWNER:
            _ensure_another_owner(session, product, member)
        membership.role = role
    record(session, product, by, "member.role_set", f"{member.email} is now {role.value}", now=now)
    return membership


def remove_member(
    session: Session, product: Product, member: TeamMember, *, by: TeamMember, now: datetime
) -> None:
    """Take ``member`` off ``product``; the last owner cannot be removed."""
    membership = session.scalar(
        select(Membership).where(
            Membership.product_id == product.id, Membership.member_id == member.id
        )
    )
    if membership is None:
        raise NotFound("That person is not on this product.")
    if membership.role is Role.OWNER:
        _ensure_another_owner(session, product, member)
    session.delete(membership)
    record(session, product, by, "member.removed", f"Removed {member.email}", now=now)
    session.commit()


def _ensure_another_owner(session: Session, product: Product, member: TeamMember) -> None:
    owners = session.scalar(
        select(func.count())
        .select_from(Membership)
        .where(
            Membership.product_id == product.id,
            Membership.role == Role.OWNER,
            Membership.member_id != member.id,
        )
    )
    if not owners:
        raise InvalidTransition(
            "A product needs at least one owner. Make someone else owner first."
        )


# Notes --------------------------------------------------------------------


def get_note(session: Session, product: Product, note_id: int) -> Note:
    """The product's note ``note_id``; another product's note is NotFound."""
    return owned(session, Note, product, note_id)


def _validate_note(
    session: Session,
    note: Note,
    data: NoteInput,
    *,
    intent: Intent,
    publish_at: datetime | None,
    now: datetime,
) -> None:
    """Raise ValidationFailed unless ``data`` meets the note rules and no other live note
    of its version has its title."""
    _ensure_editable(note)
    scheduling = intent is Intent.SCHEDULE
    errors = note_rules.problems(data, now=now, scheduling=scheduling, publish_at=publish_at)
    out = note.id is not None and note.status_at(now) is NoteStatus.PUBLISHED
    if out and data.holdback_percent != note.holdback_percent and "holdback_percent" not in errors:
        # The groups are drawn from the share: another share would tell some of the
        # control group, or hold back some who were told, halfway through the experiment.
        errors["holdback_percent"] = (
            f"The hold-back is fixed once the note is out; it stays at {note.holdback_percent} %."
        )
    if "title" not in errors and "version" not in errors:
        version, title = data.version.strip(), data.title.strip()
        clash = _title_clash(session, note.product.id, version, title, note.id)
        if clash is not None:
            errors["title"] = clash
    if errors:
        raise ValidationFailed(errors)


def _ensure_editable(note: Note) -> None:
    if note.archived_at is not None:
        raise InvalidTransition("Archived notes cannot be edited. Restore it first.")


def _title_clash(
    session: Session, product_id: int, version: str, title: str, note_id: int | None
) -> str | None:
    """What to say when another live note of ``version`` has ``title``, case and surrounding
    spaces aside: the key of the unique index (``Note.title_key_of``)."""
    clash = session.scalar(
        select(Note.id).where(
            Note.product_id == product_id,
            Note.version == version,
            Note.title_key == Note.title_key_of(title),
            Note.archived_at.is_(None),
            Note.id != (note_id or 0),
        )
    )
    return None if clash is None else f"Version {version} already has a note with this title."


def _flush_note(session: Session, note: Note) -> None:
    """Write the note's row now. A writer that checked the title at the same moment may have
    taken it since (sixteen parallel API calls left up to four copies before the unique
    index); the index then refuses the row, and the caller gets the error the check gives."""
    product_id, version, title, note_id = note.product.id, note.version, note.title, note.id
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        clash = _title_clash(session, product_id, version, title, note_id)
        if clash is None:
            raise
        raise ValidationFailed({"title": clash}) from None


def _write(note: Note, data: NoteInput, html: str | None) -> list[str]:
    """Copy ``data`` onto ``note``; return the names of the fields that changed."""
    values = {
        "version": data.version.strip(),
        "title": data.title.strip(),
        "category": Category(data.category),
        "body_md": data.body_md,
        "is_important": data.is_important,
        "is_internal": data.is_internal,
        "expires_at": data.expires_at,
        "audience": targeting.validate(data.audience),
        "email_subscribers": (
            data.is_important if data.email_subscribers is None else data.email_subscribers
        ),
        "support_topics": note_rules.support_topics(data.support_topics),
        "holdback_percent": data.holdback_percent,
        "requires_acknowledgement": data.requires_acknowledgement,
        "escalate_after_days": data.escalate_after_days,
    }
    changed = [name for name, value in values.items() if getattr(note, name) != value]
    for name in changed:
        setattr(note, name, values[name])
    if "body_md" in changed:
        note.body_html = rendering.render(data.body_md) if html is None else html
    return changed


def new_note(product: Product, *, by: TeamMember | None, now: datetime, **fields: Any) -> Note:
    """A note of ``product`` not written yet, for :func:`save_note` or :func:`write_note`;
    ``fields`` are columns no editor writes, such as an import's key."""
    return Note(
        product=product,
        locale=product.default_locale,
        author=by,
        created_at=now,
        updated_at=now,
        **fields,
    )


@dataclass(frozen=True)
class Saved:
    """What saving a note changed: the fields written, and the state the note had."""

    changed: list[str]
    before: NoteStatus | None  # None for a new note
    rescheduled: bool


def save_note(
    session: Session,
    note: Note,
    data: NoteInput,
    *,
    intent: Intent = Intent.SAVE,
    publish_at: datetime | None = None,
    now: datetime,
) -> Saved | None:
    """Check ``data`` against the note rules and the other notes' titles, write it onto
    ``note`` (stored, or new from :func:`new_note`) and move the note on as ``intent``
    says, in the caller's transaction; a note that goes live queues its emails and webhook
    calls. None when that changes nothing."""
    _validate_note(session, note, data, intent=intent, publish_at=publish_at, now=now)
    saved = write_note(session, note, data, intent=intent, publish_at=publish_at, now=now)
    if saved is not None:
        _flush_note(session, note)
        _queue_mail(session, note, now)
        webhooks.announce(
            session,
            note,
            saved.before,
            edited=saved.before is not None and bool(saved.changed),
            rescheduled=saved.rescheduled,
            now=now,
        )
    return saved


def write_note(
    session: Session,
    note: Note,
    data: NoteInput,
    *,
    intent: Intent = Intent.SAVE,
    publish_at: datetime | None = None,
    now: datetime,
    html: str | None = None,
) -> Saved | None:
    """:func:`save_note` for ``data`` checked already, without flushing, emails or webhook
    calls: the importer's way. It checks a file's releases together (``note_rules`` and
    one read of the titles, where a query and a flush per release held the write lock
    five times as long), and its notes are history, not news. ``html`` is the body
    rendered already, outside the transaction and under the import's CPU budget."""
    _ensure_editable(note)
    is_new = note.id is None
    before = None if is_new else note.status_at(now)
    scheduled_for = note.published_at
    changed = _write(note, data, html)
    _transition(note, intent, publish_at, now)
    unmoved = before is note.status_at(now) and intent is not Intent.SCHEDULE
    if not is_new and not changed and unmoved:
        return None
    note.updated_at = now
    session.add(note)
    return Saved(changed, before, rescheduled=not is_new and note.published_at != scheduled_for)


def create_note(
    session: Session,
    product: Product,
    data: NoteInput,
    *,
    intent: Intent = Intent.SAVE,
    publish_at: datetime | None = None,
    by: TeamMember | None,
    now: datetime,
) -> Note:
    """Write a new note, as a draft, published now, or scheduled for ``publish_at``."""
    note = new_note(product, by=by, now=now)
    save_note(session, note, data, intent=intent, publish_at=publish_at, now=now)
    summary = f"Created as {note.status_at(now).value}"
    if note.holdback_percent:
        summary += f", holding back {note.holdback_percent} %"
    if note.requires_acknowledgement:
        summary += ", " + _edited(note, "requires_acknowledgement")
    record(session, product, by, "note.created", summary, note=note, now=now)
    session.commit()
    return note


def update_note(
    session: Session,
    note: Note,
    data: NoteInput,
    *,
    intent: Intent = Intent.SAVE,
    publish_at: datetime | None = None,
    by: TeamMember | None,
    now: datetime,
) -> Note:
    """Edit a note and optionally move it on; a published note keeps its ``published_at``."""
    saved = save_note(session, note, data, intent=intent, publish_at=publish_at, now=now)
    if saved is None:
        return note
    after = note.status_at(now)
    parts = []
    if saved.changed:
        # Fields said together (the acknowledgement and its escalation) are said once.
        edited = dict.fromkeys(_edited(note, name) for name in saved.changed)
        parts.append("Edited " + ", ".join(edited))
    if saved.before is not after or intent is Intent.SCHEDULE:
        parts.append(_transition_summary(note, after))
    record(session, note.product, by, "note.updated", "; ".join(parts), note=note, now=now)
    session.commit()
    return note


def _edited(note: Note, name: str) -> str:
    """A changed field as the audit log names it; an experiment's settings with their new
    values, as Support impact's figures depend on them, and a notice's acknowledgement,
    as who is e-mailed does."""
    if name == "support_topics":
        return "support topics (" + (", ".join(note.support_topics) or "none") + ")"
    if name == "holdback_percent":
        return f"hold-back ({note.holdback_percent} %)"
    if name in ("requires_acknowledgement", "escalate_after_days"):
        # Who is e-mailed, and when, follows from the two together.
        if not note.requires_acknowledgement:
            return "acknowledgement (not required)"
        days = note.escalate_after_days
        return "acknowledgement (required" + (f", e-mailed after {days} days)" if days else ")")
    return name.replace("_md", "")


def _transition(note: Note, intent: Intent, publish_at: datetime | None, now: datetime) -> None:
    status = note.status_at(now)
    if intent is Intent.PUBLISH:
        if status in (NoteStatus.DRAFT, NoteStatus.SCHEDULED):
            note.published_at = _live_from(note, now)
    elif intent is Intent.SCHEDULE:
        if status is NoteStatus.PUBLISHED:
            raise InvalidTransition("This note is already published; it cannot be scheduled.")
        note.published_at = publish_at
    elif intent is Intent.UNSCHEDULE:
        if status is not NoteStatus.SCHEDULED:
            raise InvalidTransition("Only a scheduled note can go back to draft.")
        note.published_at = None


def _live_from(note: Note, now: datetime) -> datetime:
    """When a note published at ``now`` counts as published: now, or for a note imported
    from a changelog, the date of its release."""
    if note.released_at is not None and note.released_at <= now:
        return note.released_at
    return now


def _transition_summary(note: Note, status: NoteStatus) -> str:
    if status is NoteStatus.SCHEDULED and note.published_at is not None:
        return "Scheduled for " + note.published_at.strftime("%Y-%m-%d %H:%M UTC")
    return {
        NoteStatus.DRAFT: "Moved back to draft",
        NoteStatus.PUBLISHED: "Published",
        NoteStatus.ARCHIVED: "Archived",
    }.get(status, status.value)


def publish(session: Session, note: Note, *, by: TeamMember | None, now: datetime) -> Note:
    """Publish a draft or scheduled note now; raise InvalidTransition otherwise."""
    status = note.status_at(now)
    if status not in (NoteStatus.DRAFT, NoteStatus.SCHEDULED):
        raise InvalidTransition(
            f"Only drafts and scheduled notes can be published; this is {status}."
        )
    note.published_at = _live_from(note, now)
    note.updated_at = now
    _queue_mail(session, note, now)
    webhooks.announce(session, note, status, now=now)
    record(session, note.product, by, "note.published", "Published", note=note, now=now)
    session.commit()
    return note


def email_note(session: Session, note: Note, *, by: TeamMember | None, now: datetime) -> int:
    """Send a published note to the subscribers who want it and have not had it; returns
    how many messages were queued (subscribers who came since the last send, or all)."""
    if note.status_at(now) is not NoteStatus.PUBLISHED or note.is_internal:
        raise InvalidTransition("Only published, public notes can be emailed.")
    note.email_subscribers = True
    queued = mailing.queue_note(session, note, now=now)
    record(
        session, note.product, by, "note.emailed", f"Queued {queued} email(s)", note=note, now=now
    )
    session.commit()
    return queued


def archive(session: Session, note: Note, *, by: TeamMember | None, now: datetime) -> Note:
    """Hide a note everywhere outside the console; it can be restored."""
    if note.archived_at is not None:
        raise InvalidTransition("This note is already archived.")
    before = note.status_at(now)
    note.archived_at = now
    note.updated_at = now
    webhooks.announce(session, note, before, now=now)
    record(session, note.product, by, "note.archived", "Archived", note=note, now=now)
    session.commit()
    return note


def restore(session: Session, note: Note, *, by: TeamMember | None, now: datetime) -> Note:
    """Bring an archived note back to the state it had before."""
    if note.archived_at is None:
        raise InvalidTransition("Only archived notes can be restored.")
    clash = _title_clash(session, note.product_id, note.version, note.title, note.id)
    if clash is not None:
        raise InvalidTransition(f"{clash} Rename that note first.")
    note.archived_at = None
    note.updated_at = now
    _flush_note(session, note)
    webhooks.announce(session, note, NoteStatus.ARCHIVED, now=now)
    state = note.status_at(now).value
    record(session, note.product, by, "note.restored", f"Restored as {state}", note=note, now=now)
    session.commit()
    return note


def delete_draft(session: Session, note: Note, *, by: TeamMember | None, now: datetime) -> None:
    """Delete a note that was never published; anything else is archived instead."""
    if note.status_at(now) is not NoteStatus.DRAFT:
        raise InvalidTransition("Only drafts can be deleted. Archive a published note instead.")
    product = note.product
    summary = f"Deleted draft “{note.title}” ({note.version})"
    session.delete(note)
    record(session, product, by, "note.deleted", summary, now=now)
    session.commit()


def _queue_mail(session: Session, note: Note, now: datetime) -> None:
    """Queue a note's emails in the transaction that makes it live, once; a scheduled note
    is queued by the worker when its time comes (``mailing.queue_due_notes``)."""
    if note.email_subscribers and note.emailed_at is None:
        mailing.queue_note(session, note, now=now)
