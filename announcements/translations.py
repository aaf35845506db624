"""A note's translations, and a product's languages: what the editor, the API and the
imports change, and what each channel asks to know which text a reader sees.

A product speaks its default language (the note's own title and body) and the others in
``Product.languages``. A note in another of them is missing (no row), a draft (never
shown to end users), published, or outdated: published, but the default text changed
since (``source_title`` and ``source_body_md`` keep the default text it was made from).
An outdated translation is still shown, a whole text only older; the editor and the API
flag it and show what changed (:func:`changes_since`). Publishing again clears it.

A reader sees the first language of their chain (:func:`announcements.languages.chain`)
that has a published translation, title and body from the same row, else the default
text: :func:`shown_text`, which every channel that reads notes from the ORM asks (the
widget's catalogue and the feeds' index, which read rows of their own, pick by the same
``languages.pick`` from the same chain).

Removing a language from a product deletes nothing: its translations are hidden (not
listed, not shown) and come back if the language is added again. The default language
cannot be removed, only changed, and only to a language no note has a translation in.

Each service works in the caller's transaction and leaves the commit to the view,
command or import that called it, so an import of many translations, or a dry run, is
one transaction; each writes an audit event beside its change. A translation body is
rendered by the same renderer and sanitiser as a note's (``rendering.render``).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from announcements import languages, note_rules, rendering
from announcements.audit import record
from announcements.errors import InvalidTransition, ValidationFailed
from announcements.models import (
    Note,
    NoteTranslation,
    Product,
    TeamMember,
    TranslationStatus,
)

Status = Literal["missing", "draft", "published", "outdated"]
# A product's languages, its default included: more is a mistake, not a changelog.
MAX_LANGUAGES = 40


# Reading --------------------------------------------------------------------------------


def product_languages(product: Product) -> list[str]:
    """The product's languages, its default first."""
    return [product.default_locale, *product.languages]


def is_outdated(note: Note, translation: NoteTranslation) -> bool:
    """Whether the default text changed since ``translation`` was published."""
    return translation.status is TranslationStatus.PUBLISHED and (
        translation.source_title,
        translation.source_body_md,
    ) != (note.title, note.body_md)


def status(note: Note, translation: NoteTranslation | None) -> Status:
    """Where ``note`` stands in the translation's language (None: it has none)."""
    if translation is None:
        return "missing"
    if translation.status is TranslationStatus.DRAFT:
        return "draft"
    return "outdated" if is_outdated(note, translation) else "published"


def find(note: Note, tag: str) -> NoteTranslation | None:
    """The note's translation in ``tag`` (normalised), if it has one."""
    return next((row for row in note.translations if row.locale == tag), None)


def statuses(note: Note) -> dict[str, Status]:
    """The note's status in each of its product's languages, the default (always
    published: it is the note) first."""
    product = note.product
    found: dict[str, Status] = {product.default_locale: "published"}
    for tag in product.languages:
        found[tag] = status(note, find(note, tag))
    return found


def published_texts(note: Note) -> dict[str, NoteTranslation]:
    """The note's translations that readers may see (published, outdated or not), by
    language; those of languages the product no longer has are left out."""
    shown = set(note.product.languages)
    return {
        row.locale: row
        for row in note.translations
        if row.status is TranslationStatus.PUBLISHED and row.locale in shown
    }


@dataclass(frozen=True)
class NoteText:
    """The text of a note that one reader sees: title and body from one row (the note's
    own or one translation's), and their language."""

    locale: str
    title: str
    body_md: str
    body_html: str


def shown_text(note: Note, requested: str | None) -> NoteText:
    """The note as a reader who asked for ``requested`` (a tag, normalised or not; None or
    not a tag: nothing asked) sees it: in the first language of their chain with a
    published translation, else its default text; never a draft. Loads the note's
    translations unless the query that found it did."""
    return _shown(note, published_texts(note), requested)


def fallback(note: Note, tag: str) -> str:
    """The language readers of ``tag`` see the note in while it has no published
    translation into ``tag`` itself: the rest of their chain."""
    texts = published_texts(note)
    texts.pop(tag, None)
    return _shown(note, texts, tag).locale


def _shown(note: Note, texts: dict[str, NoteTranslation], requested: str | None) -> NoteText:
    product = note.product
    order = languages.chain(requested, product_languages(product), product.default_locale)
    found = languages.pick(texts, order)
    if found is None:
        return NoteText(product.default_locale, note.title, note.body_md, note.body_html)
    locale, row = found
    return NoteText(locale, row.title, row.body_md, row.body_html)


@dataclass(frozen=True)
class Change:
    """A part of the default text that changed since a translation was published."""

    field: Literal["title", "body_md"]
    before: str  # the default text the translation was made from
    after: str  # the default text now
    diff: tuple[str, ...]  # a unified diff of the two, line by line, without its header


def changes_since(translation: NoteTranslation, note: Note) -> list[Change]:
    """What the default text changed since ``translation`` was published; nothing unless
    it is outdated."""
    if not is_outdated(note, translation):
        return []
    pairs: tuple[tuple[Literal["title", "body_md"], str, str], ...] = (
        ("title", translation.source_title or "", note.title),
        ("body_md", translation.source_body_md or "", note.body_md),
    )
    return [
        Change(field, before, after, _diff(before, after))
        for field, before, after in pairs
        if before != after
    ]


def _diff(before: str, after: str) -> tuple[str, ...]:
    lines = difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=2)
    return tuple(line for line in lines if not line.startswith(("---", "+++")))


# Writing --------------------------------------------------------------------------------


def check_locale(product: Product, raw: str) -> str:
    """``raw`` normalised, if a note of ``product`` can be translated into it; else
    ValidationFailed on ``locale``: not a tag, the default language (that text is the
    note's own), or a language the product does not have."""
    try:
        tag = languages.normalise(raw)
    except languages.BadTag as error:
        raise ValidationFailed({"locale": str(error)}) from None
    if tag == product.default_locale:
        raise ValidationFailed(
            {"locale": f"{tag} is the product's default language: edit the note itself."}
        )
    if tag not in product.languages:
        raise ValidationFailed(
            {"locale": f"{product.name} has no {tag}; add the language in Settings first."}
        )
    return tag


# What a save changes, as the audit log says it: a status before and after it.
_MOVES: dict[tuple[Status, Status], str] = {
    ("missing", "published"): "published",
    ("draft", "published"): "published",
    ("outdated", "published"): "published again for the new default text",
    ("published", "draft"): "moved back to draft",
    ("outdated", "draft"): "moved back to draft",
}


@dataclass(frozen=True)
class SavePlan:
    """What saving a text as a note's translation would change, worked out before
    anything does: :func:`save` carries it out, an import's dry run reports it."""

    title: str  # as it would be stored
    body_md: str
    stored: NoteTranslation | None  # the translation as it is; None: the save creates it
    was: Status
    becomes: Literal["draft", "published"]
    edited: tuple[str, ...]  # "edited title", "edited body"

    @property
    def moves(self) -> str | None:
        """How the save moves the translation's status, if it does: "published", "moved
        back to draft"..."""
        return _MOVES.get((self.was, self.becomes))

    @property
    def changes(self) -> list[str]:
        """What the save changes, as the audit log says it; empty: nothing."""
        created = ["created"] if self.stored is None else []
        return [*created, *self.edited, *([self.moves] if self.moves else [])]


def plan_save(
    note: Note | None,
    tag: str,
    *,
    title: str,
    body_md: str,
    publish: bool,
    announce: bool = False,
) -> SavePlan:
    """What saving ``title`` and ``body_md`` as the note's translation into ``tag`` (a
    language :func:`check_locale` accepted) would change: a draft, or published with
    ``publish`` (made from the note's default text as it is now, which clears
    outdated). ``note`` None is a note yet to be written, which has no translations.
    Raise what the save would: InvalidTransition for an archived note, ValidationFailed
    on ``title``, ``body_md`` or ``announce``. Rendering the body is the save's: a body
    too intricate to render is refused only then."""
    if note is not None:
        _ensure_translatable(note)
    title = title.strip()
    checks = {
        "title": _nul_problem(title) or note_rules.title_problem(title),
        "body_md": _nul_problem(body_md) or note_rules.body_problem(body_md),
        "announce": "Only a published translation is announced."
        if announce and not publish
        else None,
    }
    errors = {field: problem for field, problem in checks.items() if problem}
    if errors:
        raise ValidationFailed(errors)
    stored = find(note, tag) if note is not None else None
    edited: list[str] = []
    was: Status = "missing"
    if note is not None and stored is not None:
        was = status(note, stored)
        if stored.title != title:
            edited.append("edited title")
        if stored.body_md != body_md:
            edited.append("edited body")
    becomes: Literal["draft", "published"] = "published" if publish else "draft"
    return SavePlan(title, body_md, stored, was, becomes, tuple(edited))


def save(
    session: Session,
    note: Note,
    locale: str,
    *,
    title: str,
    body_md: str,
    publish: bool,
    announce: bool = False,
    by: TeamMember | None,
    now: datetime,
) -> NoteTranslation:
    """Write the note's translation into ``locale`` (new or changed) as a draft, or
    published when ``publish``; with ``announce`` also e-mail it to the subscribers of
    that language who have not read the note. Saving what is stored already changes
    nothing; publishing again what the default text outdated clears outdated; saving a
    published one as a draft takes it back to one (its readers see the rest of their
    chain). Read receipts stay as they are. Raise ValidationFailed (``locale``,
    ``title``, ``body_md``, ``announce``) before changing anything, or
    InvalidTransition for an archived note."""
    tag = check_locale(note.product, locale)
    plan = plan_save(note, tag, title=title, body_md=body_md, publish=publish, announce=announce)
    changes = plan.changes
    translation = plan.stored
    if translation is None:
        translation = NoteTranslation(
            note=note,
            locale=tag,
            title=plan.title,
            body_md=plan.body_md,
            body_html=rendering.render(plan.body_md),
            status=TranslationStatus.DRAFT,
            updated_at=now,
        )
        session.add(translation)
    elif plan.edited:
        _write_text(translation, plan.title, plan.body_md)
    if plan.moves:
        _set_status(note, translation, publish=publish, now=now)
    if changes:
        translation.updated_at = now
        _flush(session, translation)
    if announce:
        # The mail is e-mail's to write (announcements.translation_mail imports this module).
        import announcements.translation_mail as translation_mail

        sent = translation_mail.announce(session, translation, now=now)
        changes.append(f"announced to {sent} subscriber(s)")
    if changes:
        action = "translation.published" if publish else "translation.saved"
        _record(session, translation, by, action, changes, now)
    return translation


def _ensure_translatable(note: Note) -> None:
    if note.archived_at is not None:
        raise InvalidTransition("Archived notes cannot be translated. Restore it first.")


def _nul_problem(text: str) -> str | None:
    # Never something a person wrote (a file read as text may hold it), and PostgreSQL
    # cannot store it.
    return "Holds a character that is not text." if "\x00" in text else None


def _write_text(translation: NoteTranslation, title: str, body_md: str) -> None:
    if translation.body_md != body_md:
        # Rendered first: a body too intricate to render leaves the row as it was.
        translation.body_html = rendering.render(body_md)
        translation.body_md = body_md
    translation.title = title


def _set_status(note: Note, translation: NoteTranslation, *, publish: bool, now: datetime) -> None:
    """Publish the translation as made from the note's default text as it is now, or take
    it back to a draft, which readers never see."""
    if publish:
        translation.status = TranslationStatus.PUBLISHED
        translation.source_title = note.title
        translation.source_body_md = note.body_md
        translation.published_at = now
    else:
        translation.status = TranslationStatus.DRAFT
        translation.published_at = None


def delete(
    session: Session, translation: NoteTranslation, *, by: TeamMember | None, now: datetime
) -> None:
    """Delete the translation; readers of its language see the next text of their chain."""
    note = translation.note
    record(
        session,
        note.product,
        by,
        "translation.deleted",
        f"Deleted the {translation.locale} translation",
        note=note,
        now=now,
    )
    note.translations.remove(translation)
    session.delete(translation)


def _flush(session: Session, translation: NoteTranslation) -> None:
    """Write the row now: a writer that added the same language at the same moment makes
    the unique constraint refuse it, and the caller gets a conflict, not a server error."""
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise InvalidTransition(
            f"The {translation.locale} translation was written by someone else at the same "
            "moment. Load it again and retry."
        ) from None


def _record(
    session: Session,
    translation: NoteTranslation,
    by: TeamMember | None,
    action: str,
    edited: list[str],
    now: datetime,
) -> None:
    note = translation.note
    summary = f"{translation.locale} translation: " + ", ".join(edited)
    record(session, note.product, by, action, summary, note=note, now=now)


# A product's languages -----------------------------------------------------------------


def set_languages(
    session: Session,
    product: Product,
    default: str,
    others: Sequence[str],
    *,
    by: TeamMember | None,
    now: datetime,
) -> Product:
    """Give the product ``default`` and ``others`` as its languages (each normalised; the
    default and repeats dropped from ``others``, whose order is kept). Raise
    ValidationFailed on ``default_locale`` (not a tag; empty, as the default cannot be
    removed; or a language notes already have translations in) or ``languages``."""
    errors: dict[str, str] = {}
    new_default = ""
    if not default.strip():
        errors["default_locale"] = "A product needs a default language: its notes' own."
    else:
        try:
            new_default = languages.normalise(default)
        except languages.BadTag as error:
            errors["default_locale"] = str(error)
    tags: list[str] = []
    for raw in others:
        if not raw.strip():
            continue
        try:
            tags.append(languages.normalise(raw))
        except languages.BadTag as error:
            errors.setdefault("languages", str(error))
    tags = [tag for tag in dict.fromkeys(tags) if tag != new_default]
    if len(tags) + 1 > MAX_LANGUAGES:
        errors.setdefault(
            "languages", f"Give at most {MAX_LANGUAGES} languages, the default included."
        )
    moved = new_default and new_default != product.default_locale
    if moved and _has_translations(session, product, new_default):
        errors["default_locale"] = (
            f"Notes have {new_default} translations: a default language is the notes' own "
            "text. Delete those translations first, or keep the default."
        )
    if errors:
        raise ValidationFailed(errors)
    if (new_default, tags) == (product.default_locale, list(product.languages)):
        return product
    product.default_locale = new_default
    product.languages = tags
    summary = "Languages: " + ", ".join([f"{new_default} (default)", *tags])
    record(session, product, by, "product.languages", summary, now=now)
    return product


def _has_translations(session: Session, product: Product, tag: str) -> bool:
    return bool(
        session.scalar(
            select(
                exists()
                .where(NoteTranslation.note_id == Note.id)
                .where(Note.product_id == product.id, NoteTranslation.locale == tag)
            )
        )
    )
