"""A product's notes for one language as a file for a translation tool (XLIFF 2.0 or
gettext PO), and the filled file read back into translations.

**What a file holds.** Every note of the product that is not archived and not internal
(drafts and scheduled notes too, so that translators can work before a release), or only
one version's: newest version first. Each note is two units, ``note-<id>-title`` and
``note-<id>-body`` (no body unit when the note has no body); the source is the note's
default text, the target its translation in the file's language, if it has one. Each
unit carries a note for the translator: the version and category, what the text is, and,
for an outdated translation, that the default text changed since. A published
translation is ``final`` in XLIFF; a draft ``translated``; an outdated one ``initial``
(needs review) in XLIFF and ``fuzzy`` in PO; a missing one has no target.

**Reading one back.** The file is checked whole first: UTF-8, at most 2 MB, XLIFF 2 or
PO that parses, no DTD, a target language the product has (and that is not its default),
a source language that is the product's default: any of these wrong is
:class:`ValidationFailed` and nothing changes. Then each note is decided on its own and
reported as added, updated, unchanged or skipped with the reason: a unit id that is not
one of ours, a note that does not exist or is another product's, an archived note, only
the title or only the body translated (a note never gets half a translation), a unit
still marked as needing review, or a source that is no longer the note's text (the note
changed since the file was made: export it again). Translations are written through
:func:`announcements.translations.save`, as drafts or published as the caller says; a
published translation whose text is the same as the file's stays as it is, and is not
moved back to draft by a draft import. Exporting again after an import gives back the
targets that were imported.
"""

from __future__ import annotations

import enum
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from lxml import etree
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload
from translate.storage import pypo, xliff2

from announcements import importing, languages, translations, versions
from announcements.audit import record
from announcements.errors import InvalidTransition, ValidationFailed
from announcements.models import Note, Product, TeamMember, move_catalogue_stamps

Format = Literal["xliff", "po"]
FORMATS: dict[Format, str] = {"xliff": "XLIFF 2.0", "po": "PO"}
MIMETYPES: dict[Format, str] = {
    "xliff": "application/xliff+xml",
    "po": "text/x-gettext-translation",
}
EXTENSIONS: dict[Format, str] = {"xliff": "xlf", "po": "po"}

_XLIFF = "urn:oasis:names:tc:xliff:document:2.0"
_XML_SPACE = "{http://www.w3.org/XML/1998/namespace}space"
_UNIT_ID = re.compile(r"note-([1-9][0-9]{0,9})-(title|body)")
# An XLIFF file needs no DTD, and one is how entity expansion attacks arrive.
_DTD = re.compile(r"<!\s*(?:DOCTYPE|ENTITY)", re.IGNORECASE)
# The reason a note the translator did not get to is skipped: counted, not listed.
NOT_TRANSLATED = "not translated"


class Outcome(enum.StrEnum):
    ADDED = "added"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Row:
    """What an import did with one note's translation (or one unit naming no note)."""

    outcome: Outcome
    locale: str
    note_id: int | None = None
    version: str = ""
    title: str = ""  # the note's own title, to name it in the report
    reason: str = ""


@dataclass
class Report:
    format: str
    locale: str
    dry_run: bool
    publish: bool
    rows: list[Row] = field(default_factory=list)

    def count(self, outcome: Outcome) -> int:
        return sum(1 for row in self.rows if row.outcome is outcome)

    @property
    def changed(self) -> bool:
        return any(row.outcome in (Outcome.ADDED, Outcome.UPDATED) for row in self.rows)

    @property
    def summary(self) -> str:
        """Such as "3 added, 1 updated, 40 unchanged"."""
        return summary(self.rows)

    @property
    def untranslated(self) -> int:
        """Notes the file leaves untranslated (skipped, but no news in a partial file)."""
        return sum(1 for row in self.rows if row.reason == NOT_TRANSLATED)

    @property
    def listed(self) -> list[Row]:
        """The rows worth a line in a report: what changed or was skipped for a reason."""
        return [
            row
            for row in self.rows
            if row.outcome is not Outcome.UNCHANGED and row.reason != NOT_TRANSLATED
        ]

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "locale": self.locale,
            "dry_run": self.dry_run,
            "publish": self.publish,
            "counts": {outcome.value: self.count(outcome) for outcome in Outcome},
            "rows": [
                {
                    "outcome": row.outcome.value,
                    "locale": row.locale,
                    "note_id": row.note_id,
                    "version": row.version,
                    "title": row.title,
                    "reason": row.reason,
                }
                for row in self.rows
            ],
        }


def summary(rows: Iterable[Row]) -> str:
    """How many rows had each outcome, such as "3 added, 1 updated, 40 unchanged"."""
    outcomes = [row.outcome for row in rows]
    return ", ".join(f"{outcomes.count(o)} {o.value}" for o in Outcome if o in outcomes)


def decide(
    note: Note | None,
    locale: str,
    *,
    title: str,
    body_md: str,
    publish: bool,
    refresh_outdated: bool,
) -> tuple[Outcome, str]:
    """What saving this text as the note's ``locale`` translation (a draft, or published
    with ``publish``) would do, and why, by :func:`translations.plan_save`, the rules the
    save itself follows; ``note`` None is one an import is yet to write. An import leaves
    a translation whose text it repeats as it is: it never takes a published one back to
    draft, nor publishes an outdated one again unless ``refresh_outdated`` (a translator
    who sent it unchanged stands by it)."""
    try:
        plan = translations.plan_save(note, locale, title=title, body_md=body_md, publish=publish)
    except ValidationFailed as error:
        return Outcome.SKIPPED, " ".join(error.errors.values())
    except InvalidTransition as error:
        return Outcome.SKIPPED, error.message
    if plan.stored is None:
        return Outcome.ADDED, "" if publish else "as a draft"
    if plan.edited:
        moved_back = plan.becomes == "draft" and plan.moves is not None
        return Outcome.UPDATED, "new text, moved back to draft" if moved_back else "new text"
    kept = plan.becomes == "draft" or (plan.was == "outdated" and not refresh_outdated)
    if kept or not plan.moves:
        return Outcome.UNCHANGED, ""
    return Outcome.UPDATED, "published" if plan.was == "draft" else "published for the new text"


def save(
    session: Session,
    note: Note,
    locale: str,
    *,
    title: str,
    body_md: str,
    publish: bool,
    by: TeamMember | None,
    now: datetime,
) -> str | None:
    """Save a translation :func:`decide` said to add or update; what the translations
    service refused it for (a body too intricate to render), or None once saved."""
    try:
        translations.save(
            session,
            note,
            locale,
            title=title,
            body_md=body_md,
            publish=publish,
            announce=False,
            by=by,
            now=now,
        )
    except ValidationFailed as error:
        return " ".join(error.errors.values())
    return None


# Export ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Exported:
    data: bytes
    filename: str
    mimetype: str


def export(
    session: Session,
    product: Product,
    locale: str,
    format: str,
    *,
    version: str | None = None,
    now: datetime,
) -> Exported:
    """The product's notes (``version``'s only, if given) with their ``locale``
    translations, as an XLIFF 2.0 or PO file; ValidationFailed on ``locale``, ``format``
    or ``version``."""
    tag = translations.check_locale(product, locale)
    if format not in FORMATS:
        raise ValidationFailed({"format": "Choose XLIFF or PO."})
    kind: Format = "xliff" if format == "xliff" else "po"
    version = (version or "").strip() or None
    if version is not None and not versions.is_valid(version):
        raise ValidationFailed({"version": f"“{version}” is not a version; use one such as 2.4.0."})
    notes = _note_set(session, product, version)
    if not notes:
        where = f"version {version}" if version else product.name
        raise ValidationFailed({"version": f"{where} has no notes to translate."})
    units = [unit for note in notes for unit in _units(note, tag)]
    if kind == "xliff":
        data = _xliff(product, tag, units)
    else:
        data = _po(product, tag, units, now)
    name = "-".join([product.slug, *([version] if version else []), tag])
    filename = re.sub(r"[^0-9A-Za-z._-]", "-", name) + "." + EXTENSIONS[kind]
    return Exported(data, filename, MIMETYPES[kind])


def coverage(session: Session, product: Product) -> dict[str, Counter[str]]:
    """For each of the product's other languages, how many notes a file of all of them
    holds are missing, draft, published or outdated in it."""
    notes = _note_set(session, product, None)
    return {
        tag: Counter(translations.status(note, translations.find(note, tag)) for note in notes)
        for tag in product.languages
    }


def _note_set(session: Session, product: Product, version: str | None) -> list[Note]:
    query = (
        select(Note)
        .where(
            Note.product_id == product.id,
            Note.archived_at.is_(None),
            Note.is_internal.is_(False),
        )
        .options(selectinload(Note.translations))
        .order_by(Note.id)
    )
    if version is not None:
        query = query.where(Note.version == version)
    notes = list(session.scalars(query))
    return sorted(notes, key=lambda note: versions.parse(note.version), reverse=True)


@dataclass(frozen=True)
class _Unit:
    id: str
    source: str
    target: str | None
    state: str  # the translation's status: missing, draft, published, outdated
    comments: tuple[str, ...]


def _units(note: Note, tag: str) -> list[_Unit]:
    translation = translations.find(note, tag)
    state = translations.status(note, translation)
    about = f"Version {note.version} · {note.category.label}"
    if state == "outdated":
        about += " · outdated: the text changed since this translation was published"
    pairs = [("title", note.title, translation.title if translation else None)]
    if note.body_md.strip():
        pairs.append(("body", note.body_md, translation.body_md if translation else None))
    what = {
        "title": "The note's title, plain text.",
        "body": "The note's body, in Markdown: keep its marks, links and line breaks.",
    }
    return [
        _Unit(f"note-{note.id}-{part}", source, target, state, (about, what[part]))
        for part, source, target in pairs
    ]


# What an XLIFF segment's state says of each status; a missing one has no target and no
# state (initial by default).
_XLIFF_STATES = {"draft": "translated", "published": "final", "outdated": "initial"}


def _xliff(product: Product, tag: str, units: list[_Unit]) -> bytes:
    store = xliff2.Xliff2File(sourcelanguage=product.default_locale, targetlanguage=tag)
    file_node = store.body
    file_node.set("id", f"tidings-{product.slug}")
    file_node.set("original", product.slug)
    file_node.set("canResegment", "no")  # one unit, one segment: a title or a whole body
    file_node.set("srcDir", languages.direction(product.default_locale))
    file_node.set("trgDir", languages.direction(tag))
    for unit in units:
        stored = store.addsourceunit(unit.source)
        stored.setid(unit.id)
        if unit.target is not None:
            stored.target = unit.target
            stored.xmlelement.set("state", _XLIFF_STATES[unit.state])
        # Where XLIFF 2.0 has them (translate-toolkit puts both on the segment, which
        # the schema refuses): xml:space and the notes on the unit.
        segment = stored.xmlelement
        element = stored.getunitelement()
        segment.attrib.pop(_XML_SPACE, None)
        element.set(_XML_SPACE, "preserve")
        notes = etree.Element(f"{{{_XLIFF}}}notes")
        for comment in unit.comments:
            etree.SubElement(notes, f"{{{_XLIFF}}}note").text = comment
        element.insert(0, notes)
    return bytes(store)


def _po(product: Product, tag: str, units: list[_Unit], now: datetime) -> bytes:
    store = pypo.pofile()
    stamp = now.strftime("%Y-%m-%d %H:%M+0000")
    store.updateheader(
        add=True,
        Project_Id_Version=product.name,
        Report_Msgid_Bugs_To="",
        POT_Creation_Date=stamp,
        PO_Revision_Date=stamp,
        Last_Translator="",
        Language_Team="",
        Language=tag,
        X_Source_Language=product.default_locale,
        X_Generator="Tidings",
    )
    for unit in units:
        stored = store.addsourceunit(unit.source)
        stored.setcontext(unit.id)
        for comment in unit.comments:
            stored.addnote(comment, origin="developer")
        if unit.target is not None:
            stored.target = unit.target
        if unit.state == "outdated":
            stored.markfuzzy(True)
    return bytes(store)


# Import ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Read:
    """A unit of a file as read: its id, source and target, and whether the file marks it
    as needing review (fuzzy, or XLIFF's ``initial`` with a target)."""

    id: str
    source: str
    target: str
    needs_review: bool


@dataclass
class _File:
    format: str
    target_language: str | None
    source_language: str | None
    units: list[_Read]
    problems: list[tuple[str, str]]  # (unit id, reason) for units no note can use


def import_file(
    session: Session,
    product: Product,
    data: bytes,
    *,
    publish: bool,
    dry_run: bool = False,
    by: TeamMember | None,
    now: datetime,
) -> Report:
    """Read a filled XLIFF 2 or PO file into the product's translations, as drafts or
    published; with ``dry_run``, only say what would change. ValidationFailed for a file
    that cannot be used at all, before anything changes. The caller commits."""
    read = _read(importing.read_text(data), data)
    if not read.target_language:
        raise ValidationFailed({"file": "The file does not say which language it translates into."})
    tag = translations.check_locale(product, read.target_language)
    if read.source_language:
        try:
            source = languages.normalise(read.source_language)
        except languages.BadTag:
            source = read.source_language
        if source != product.default_locale:
            raise ValidationFailed(
                {
                    "file": f"The file translates from {source}, but {product.name}'s notes "
                    f"are in {product.default_locale}."
                }
            )
    report = Report(read.format, tag, dry_run, publish)
    report.rows.extend(
        Row(Outcome.SKIPPED, tag, reason=f"unit {unit}: {reason}") for unit, reason in read.problems
    )
    parts: dict[int, dict[str, _Read]] = {}
    for unit in read.units:
        match = _UNIT_ID.fullmatch(unit.id)
        if match is None:
            report.rows.append(
                Row(Outcome.SKIPPED, tag, reason=f"unit {unit.id}: not a unit Tidings wrote")
            )
            continue
        note_parts = parts.setdefault(int(match.group(1)), {})
        if match.group(2) in note_parts:
            report.rows.append(
                Row(
                    Outcome.SKIPPED,
                    tag,
                    reason=f"unit {unit.id}: appears twice; the first was read",
                )
            )
            continue
        note_parts[match.group(2)] = unit
    notes = {
        note.id: note
        for note in session.scalars(
            select(Note).where(Note.id.in_(parts)).options(selectinload(Note.translations))
        )
    }
    planned: list[tuple[Row, Note, str, str]] = []
    for note_id, note_parts in parts.items():
        note = notes.get(note_id)
        row, text = _plan(note, note_id, note_parts, product, tag, publish)
        report.rows.append(row)
        if note is not None and text is not None and row.outcome is not Outcome.SKIPPED:
            planned.append((row, note, *text))
    if dry_run or not report.changed:
        return report
    # The product's row first (moving its stamp, as a translation's change does anyway,
    # locks it), as every writer of its notes takes it.
    move_catalogue_stamps(session, [product.id])
    for row, note, title, body_md in planned:
        if row.outcome is Outcome.UNCHANGED:
            continue
        refused = save(
            session, note, tag, title=title, body_md=body_md, publish=publish, by=by, now=now
        )
        if refused:
            index = report.rows.index(row)
            report.rows[index] = replace(row, outcome=Outcome.SKIPPED, reason=refused)
    if report.changed:
        record(
            session,
            product,
            by,
            "translations.imported",
            f"Imported a {read.format} file of {tag} translations: {report.summary}",
            now=now,
        )
    return report


def _plan(
    note: Note | None,
    note_id: int,
    parts: dict[str, _Read],
    product: Product,
    tag: str,
    publish: bool,
) -> tuple[Row, tuple[str, str] | None]:
    """The report's row for one note's units, and the title and body to save."""
    if note is None:
        return Row(Outcome.SKIPPED, tag, note_id, reason="no such note"), None
    named = Row(Outcome.SKIPPED, tag, note_id, note.version, note.title)
    if note.product_id != product.id:
        return replace(named, version="", title="", reason="a note of another product"), None
    if note.archived_at is not None:
        return replace(named, reason="the note is archived"), None
    title_unit, body_unit = parts.get("title"), parts.get("body")
    has_body = bool(note.body_md.strip())
    sources = [(title_unit, note.title), (body_unit, note.body_md)]
    if any(unit and _same(unit.source) != _same(text) for unit, text in sources):
        return replace(named, reason="its text changed since the file was made; export again"), None
    title = title_unit.target if title_unit else ""
    body = body_unit.target if body_unit else ""
    if any(unit and unit.needs_review and unit.target for unit in (title_unit, body_unit)):
        return replace(named, reason="still marked as needing review (fuzzy)"), None
    if not title.strip() and not body.strip():
        return replace(named, reason=NOT_TRANSLATED), None
    if not title.strip():
        return replace(named, reason="only the body is translated"), None
    if has_body and not body.strip():
        return replace(named, reason="only the title is translated"), None
    outcome, reason = decide(
        note, tag, title=title, body_md=body, publish=publish, refresh_outdated=True
    )
    return replace(named, outcome=outcome, reason=reason), (title, body)


def _same(text: str) -> str:
    """A text as compared with the note's: line endings and surrounding blanks aside."""
    return text.replace("\r\n", "\n").strip()


def _read(text: str, data: bytes) -> _File:
    """The file's units; ValidationFailed when it is neither XLIFF 2 nor PO."""
    if text.lstrip("\ufeff \t\r\n").startswith("<"):
        return _read_xliff(text, data)
    return _read_po(data)


def _read_xliff(text: str, data: bytes) -> _File:
    if _DTD.search(text):
        raise ValidationFailed({"file": "The file declares a DTD; an XLIFF file has none."})
    try:
        store = xliff2.Xliff2File.parsestring(data)
    except (etree.LxmlError, ValueError, AssertionError) as error:
        reason = str(error) or "its root is not an XLIFF 2 <xliff> element"
        raise ValidationFailed({"file": f"The file is not XLIFF 2.0: {reason}"}) from None
    units: list[_Read] = []
    problems: list[tuple[str, str]] = []
    for unit in store.units:
        unit_id = unit.getid() or ""
        if xliff2.SEGMENT_SEPARATOR in unit_id:
            problems.append((unit_id, "split into segments; join them into one"))
            continue
        state = unit.xmlelement.get("state")
        target = unit.target or ""
        units.append(_Read(unit_id, unit.source or "", target, state == "initial"))
    return _File(
        "XLIFF 2.0",
        store.gettargetlanguage(),
        store.getsourcelanguage(),
        units,
        problems,
    )


def _read_po(data: bytes) -> _File:
    try:
        store = pypo.pofile.parsestring(data)
    except ValueError as error:
        raise ValidationFailed({"file": f"The file is neither XLIFF 2.0 nor PO: {error}"}) from None
    units: list[_Read] = []
    problems: list[tuple[str, str]] = []
    for unit in store.units:
        if unit.isheader() or unit.isobsolete():
            continue
        context = unit.getcontext() or unit.source
        if unit.hasplural():
            problems.append((context, "has plural forms, which notes do not use"))
            continue
        units.append(_Read(context, unit.source or "", unit.target or "", unit.isfuzzy()))
    header = store.parseheader()
    return _File(
        "PO",
        store.gettargetlanguage(),
        header.get("X-Source-Language") or None,
        units,
        problems,
    )
