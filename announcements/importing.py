"""Import a changelog file into a product's notes, once: a second import of the same file
changes nothing, and an entry edited in the file updates its note.

Each note is written by ``services.write_note``, under the rules every note meets (a
release that breaks one is skipped, and the report says which rule). An imported
note is history, not news: it is never emailed and calls no webhook. It is published at
its release date with ``publish``, or kept as a draft that, published later, still
carries that date.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from announcements import changelog, note_rules, rendering, services, versions
from announcements.audit import record
from announcements.changelog import Problem, Release
from announcements.errors import ValidationFailed
from announcements.models import Note, NoteStatus, Product, TeamMember, move_catalogue_stamps
from announcements.note_rules import MAX_BODY_BYTES, NoteInput
from announcements.services import Intent

MAX_FILE_BYTES = 2 * 1024 * 1024


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
    would change.

    Every body to be written is rendered first, writing nothing, within a CPU budget that
    grows with the file (ValidationFailed when it runs out). Then everything is written
    in one short transaction that starts by locking the product's row: a render in a
    transaction held SQLite's write lock, and every other writer failed, for as long as
    the renders took (14 s); and an import that ran beside another of the same file
    wrote every note a second time, or failed on the unique import key.
    """
    if unreleased_as is not None and not versions.is_valid(unreleased_as):
        raise ValidationFailed(
            {"unreleased_as": f"“{unreleased_as}” is not a version; use one such as 2.4.0."}
        )
    parsed = changelog.parse(text, unreleased_as=unreleased_as)
    report = Report(parsed.format, dry_run, problems=list(parsed.problems))
    # Oldest first, so notes are numbered in the order the releases came out.
    entries: dict[str, _Entry] = {}
    for release in reversed(parsed.releases):
        if release.key in entries:
            report.problems.append(
                Problem(
                    release.line,
                    release.version,
                    "this version appears twice; the first entry was imported",
                )
            )
            continue
        body = release.body(parsed.links)
        entries[release.key] = _Entry(
            release,
            release.title,
            body,
            release.fingerprint(body),
            publish and not release.unreleased,
        )
    # As much CPU time per 100 KB of file as a note of 100 KB may take.
    budget = rendering.Budget(rendering.CPU_SECONDS * max(1, len(text.encode()) / MAX_BODY_BYTES))
    notes = _Notes.of(session, product)
    for done, entry in enumerate(entries.values(), start=1):
        change = _decide(entry, notes, now=now)
        if change.action in (Action.CREATE, Action.UPDATE):
            entry.render(budget)
        report.changes.append(change)
        if progress is not None:
            progress(done, len(entries))
    if report.changed and not dry_run:
        # The product's row first (moving its stamp, which the import does anyway, locks
        # it), then the notes as they are now: another import may have written them.
        move_catalogue_stamps(session, [product.id])
        notes = _Notes.of(session, product)
        written = [
            _write(session, product, entry, notes, by=by, now=now, budget=budget)
            for entry in entries.values()
        ]
        session.flush()
        report.changes = [
            replace(change, note_id=note.id) if note else change for change, note in written
        ]
    report.changes.reverse()
    if dry_run or not report.changed:
        session.rollback()
        return report
    summary = f"Imported a changelog ({parsed.format}): {report.summary}"
    record(session, product, by, "changelog.imported", summary, now=now)
    session.commit()
    return report


@dataclass
class _Entry:
    """A release as it is to be written: its title, body, fingerprint and, once rendered,
    its HTML."""

    release: Release
    title: str
    body: str
    fingerprint: str
    publish: bool
    html: str | None = None

    def render(self, budget: rendering.Budget) -> str:
        if self.html is None:
            try:
                self.html = rendering.render(self.body, budget)
            except rendering.TooIntricate:
                at = f" (line {self.release.line})" if self.release.line else ""
                raise ValidationFailed(
                    {
                        "file": f"Release {self.release.version}{at} takes too long to format, "
                        "with the releases before it. Shorten its long runs of brackets, tags "
                        "or other Markdown marks, or import the file in parts."
                    }
                ) from None
        return self.html

    def note_input(self, stored: Note | None, action: Action) -> NoteInput:
        """What importing this entry writes: a note published as it stands keeps what it
        holds; otherwise the release's text goes over what the note holds (its audience,
        expiry and the like, which a changelog does not say)."""
        held = NoteInput.of(stored) if stored else NoteInput("", "", "", email_subscribers=False)
        if action is Action.PUBLISH:
            return held
        return replace(
            held,
            version=self.release.version,
            title=self.title,
            category=self.release.category.value,
            body_md=self.body,
            is_important=self.release.is_important,
        )


@dataclass
class _Notes:
    """The product's notes as an import finds them: the imported ones by import key, and
    the ids of the live ones by version and title as titles clash (case and surrounding
    spaces aside). Two queries, where a query per release kept a file of 3,000 releases
    writing for 2.4 s."""

    imported: dict[str, Note]
    titles: dict[tuple[str, str], int]  # by version and ``Note.title_key``

    @classmethod
    def of(cls, session: Session, product: Product) -> _Notes:
        imported = session.scalars(
            select(Note)
            .where(Note.product_id == product.id, Note.import_key.is_not(None))
            .execution_options(populate_existing=True)  # what another import wrote meanwhile
        )
        live = session.execute(
            select(Note.id, Note.version, Note.title_key).where(
                Note.product_id == product.id, Note.archived_at.is_(None)
            )
        )
        return cls(
            {note.import_key: note for note in imported if note.import_key},
            {(version, title_key): note_id for note_id, version, title_key in live},
        )


def _decide(entry: _Entry, notes: _Notes, *, now: datetime) -> Change:
    """What importing ``entry`` does, given the product's ``notes``."""
    version, title = entry.release.version, entry.title
    note = notes.imported.get(entry.release.key)
    if note is not None and note.archived_at is not None:
        return Change(version, title, Action.SKIP, note.id, "its note is archived")
    if note is None:
        action = Action.CREATE
    elif note.import_hash != entry.fingerprint:
        action = Action.UPDATE
    elif entry.publish and note.status_at(now) is NoteStatus.DRAFT:
        action = Action.PUBLISH
    else:
        return Change(version, title, Action.UNCHANGED, note.id)
    note_id = None if note is None else note.id
    clash = notes.titles.get((version, Note.title_key_of(title)))
    if action is not Action.PUBLISH and clash not in (None, note_id):
        return Change(version, title, Action.SKIP, clash, "a note with this title exists")
    problems = note_rules.problems(entry.note_input(note, action), now=now)
    if problems:
        return Change(version, title, Action.SKIP, note_id, " ".join(problems.values()))
    return Change(version, title, action, note_id)


def _write(
    session: Session,
    product: Product,
    entry: _Entry,
    notes: _Notes,
    *,
    by: TeamMember | None,
    now: datetime,
    budget: rendering.Budget,
) -> tuple[Change, Note | None]:
    """Import ``entry`` as :func:`_decide` says; the note it wrote, if any."""
    change = _decide(entry, notes, now=now)
    if change.action in (Action.UNCHANGED, Action.SKIP):
        return change, None
    release = entry.release
    stored = notes.imported.get(release.key)
    data = entry.note_input(stored, change.action)
    note = stored or services.new_note(product, by=by, now=now, import_key=release.key)
    publish = entry.publish and note.status_at(now) is NoteStatus.DRAFT
    html = None
    if change.action is not Action.PUBLISH:
        note.import_hash = entry.fingerprint
        note.released_at = release.published_at
        # Rendered already, unless another import changed the note since it was read.
        html = entry.render(budget)
    intent = Intent.PUBLISH if publish else Intent.SAVE
    services.write_note(session, note, data, intent=intent, now=now, html=html)
    return change, note
