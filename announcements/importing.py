"""Import a changelog file into a product's notes, once: a second import of the same file
changes nothing, and an entry edited in the file updates its note.

An imported note is history, not news: it is never emailed and calls no webhook. It is
published at its release date with ``publish``, or kept as a draft that, published
later, still carries that date.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from announcements import changelog, rendering, services, versions
from announcements.changelog import Problem, Release
from announcements.errors import ValidationFailed
from announcements.models import Note, NoteStatus, Product, TeamMember

MAX_FILE_BYTES = 2 * 1024 * 1024
MAX_BODY_BYTES = 100 * 1024


class Action(enum.StrEnum):
    CREATE = "create"
    UPDATE = "update"
    PUBLISH = "publish"  # unchanged text, a draft now published
    UNCHANGED = "unchanged"
    SKIP = "skip"


SAID = {
    Action.CREATE: "new",
    Action.UPDATE: "updated",
    Action.PUBLISH: "published",
    Action.UNCHANGED: "unchanged",
    Action.SKIP: "skipped",
}


@dataclass(frozen=True)
class Change:
    version: str
    title: str
    action: Action
    note_id: int | None = None
    reason: str = ""


@dataclass
class Report:
    format: str
    dry_run: bool
    changes: list[Change] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def count(self, action: Action) -> int:
        return sum(1 for change in self.changes if change.action is action)

    @property
    def changed(self) -> bool:
        return any(c.action in (Action.CREATE, Action.UPDATE, Action.PUBLISH) for c in self.changes)

    @property
    def summary(self) -> str:
        """Such as "3 new, 1 updated, 40 unchanged"."""
        return ", ".join(f"{self.count(a)} {SAID[a]}" for a in Action if self.count(a))

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "dry_run": self.dry_run,
            "counts": {action.value: self.count(action) for action in Action},
            "changes": [
                {
                    "version": c.version,
                    "title": c.title,
                    "action": c.action.value,
                    "note_id": c.note_id,
                    "reason": c.reason,
                }
                for c in self.changes
            ],
            "problems": [
                {"line": p.line or None, "text": p.text, "reason": p.reason} for p in self.problems
            ],
        }


def read_text(data: bytes) -> str:
    """The file's text; ValidationFailed for what is not a UTF-8 text file of sane size."""
    if len(data) > MAX_FILE_BYTES:
        raise ValidationFailed({"file": "The file is over 2 MB; import it in parts."})
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationFailed({"file": "The file is not UTF-8 text."}) from None
    if "\x00" in text:
        raise ValidationFailed({"file": "The file is not a text file."})
    if not text.strip():
        raise ValidationFailed({"file": "The file is empty."})
    return text


def import_changelog(
    session: Session,
    product: Product,
    text: str,
    *,
    publish: bool = False,
    dry_run: bool = False,
    unreleased_as: str | None = None,
    by: TeamMember | None,
    now: datetime,
    progress: Callable[[int, int], None] | None = None,
) -> Report:
    """Create or update one note per release in ``text``; with ``dry_run``, only say what
    would change. Everything is written in one transaction."""
    if unreleased_as is not None and not versions.is_valid(unreleased_as):
        raise ValidationFailed(
            {"unreleased_as": f"“{unreleased_as}” is not a version; use one such as 2.4.0."}
        )
    parsed = changelog.parse(text, unreleased_as=unreleased_as)
    report = Report(parsed.format, dry_run, problems=list(parsed.problems))
    existing = {
        note.import_key: note
        for note in session.scalars(
            select(Note).where(Note.product_id == product.id, Note.import_key.is_not(None))
        )
    }
    seen: set[str] = set()
    total = len(parsed.releases)
    # Oldest first, so notes are numbered in the order the releases came out.
    for release in reversed(parsed.releases):
        key = release.key
        if key in seen:
            report.problems.append(
                Problem(
                    release.line,
                    release.version,
                    "this version appears twice; the first entry was imported",
                )
            )
            continue
        seen.add(key)
        change = _import_release(
            session,
            product,
            release,
            existing.get(key),
            parsed.links,
            publish=publish and not release.unreleased,
            dry_run=dry_run,
            by=by,
            now=now,
        )
        report.changes.append(change)
        if progress is not None:
            progress(len(seen), total)
    report.changes.reverse()
    if dry_run or not report.changed:
        session.rollback()
        return report
    product.catalogue_stamp = Product.catalogue_stamp + 1
    summary = f"Imported a changelog ({parsed.format}): {report.summary}"
    services.record(session, product, by, "changelog.imported", summary, now=now)
    session.commit()
    return report


def _import_release(
    session: Session,
    product: Product,
    release: Release,
    note: Note | None,
    links: dict[str, str],
    *,
    publish: bool,
    dry_run: bool,
    by: TeamMember | None,
    now: datetime,
) -> Change:
    title, body = release.title, release.body(links)
    fingerprint = release.fingerprint(body)
    if len(body.encode()) > MAX_BODY_BYTES:
        return Change(release.version, title, Action.SKIP, reason="over 100 KB; split it")
    if note is not None and note.archived_at is not None:
        return Change(release.version, title, Action.SKIP, note.id, "its note is archived")
    if note is None:
        clash = session.scalar(
            select(Note.id).where(
                Note.product_id == product.id,
                Note.version == release.version,
                func.lower(Note.title) == title.lower(),
                Note.archived_at.is_(None),
            )
        )
        if clash is not None:
            return Change(
                release.version, title, Action.SKIP, clash, "a note with this title exists"
            )
        if dry_run:
            return Change(release.version, title, Action.CREATE)
        note = Note(
            product=product,
            locale=product.default_locale,
            author=by,
            import_key=release.key,
            email_subscribers=False,
            created_at=now,
        )
        session.add(note)
        action = Action.CREATE
    elif note.import_hash != fingerprint:
        action = Action.UPDATE
    elif publish and note.status_at(now) is NoteStatus.DRAFT:
        action = Action.PUBLISH
    else:
        return Change(release.version, title, Action.UNCHANGED, note.id)
    if dry_run:
        return Change(release.version, title, action, note.id)
    if action is not Action.PUBLISH:
        note.version = release.version
        note.title = title
        note.category = release.category
        note.is_important = release.is_important
        note.body_md = body
        note.body_html = rendering.render(body)
        note.import_hash = fingerprint
        note.released_at = release.published_at
    if publish and note.status_at(now) is NoteStatus.DRAFT:
        note.published_at = note.released_at or now
    note.updated_at = now
    session.flush()
    return Change(release.version, title, action, note.id)
