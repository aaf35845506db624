"""Import per-locale store changelogs, as Android apps keep them for Google Play and
F-Droid (``<locale>/changelogs/<versionCode>.txt``), as notes and their translations.

**Where.** The folder given holds the locale folders, or holds them under
``fastlane/metadata/android/`` (fastlane's layout) or ``metadata/`` (F-Droid's, as
fdroidclient keeps them).

**Which language each folder fills.** Folder names are normalised to BCP 47 (``en_GB`` →
``en-GB``, ``zh_Hant_HK`` → ``zh-Hant-HK``). A folder fills the product's language it
names, or else the closest of the product's languages it narrows (``fr-FR`` fills ``fr``
and ``en-US`` the default ``en`` while the product has no ``fr-FR`` or ``en-US``). When
several folders narrow one language and none names it, the one with the language's
likely region and script fills it (``en-US`` for ``en``, ``zh-CN`` for ``zh``), the others
are reported; with none such, all of them are. A folder for a language the product does
not have is reported and not imported, unless ``add_languages`` adds its language to the
product (most-translated first, as many as a product may have).

**Notes.** The default language's folder gives the notes: one per version code, of the
version the code is, or the one the mapping file (``--versions``: ``code,version`` per
line) gives it. A code with no version is reported. A note's body is the text as
Markdown, each line kept as a line (a paragraph, or a list item where it starts with a
bullet such as • or *), so the store's layout survives, and rendered and sanitised as
every note is. Its title is the text's first line that says something: list bullets and
heading marks taken off, links and addresses dropped, cut at 120 characters; a line that
only names a section ("Improved", "# Fixed", "改善策": a heading, or a line of up to three
short words with no closing punctuation, above more text) is passed over; with nothing
left, the version. Each note is imported once (its import key is ``fastlane:<code>``):
a second import of the same files changes nothing, a file changed since updates its
note. New notes are drafts dated by nothing, as a store changelog has no date; publish
them in the console. Title and body are made the same way in every language, so a
translation is as whole as its note.

**Translations.** The other folders give each note's translation in their language,
title and body made the same way, published, through the translations service. A file
whose code has no default-language text (so no note) is reported. An outdated
translation whose file is unchanged stays as it is, outdated: its translator has not
caught up with the default text yet.

**Only the folder's own files.** The folder is often a checkout of someone else's
repository, so the import reads only plain folders and plain files inside it: a locale
folder, ``changelogs`` folder or text that is a symbolic link (``fr/changelogs/1.txt ->
/srv/app/.env``), and a text that is not a plain file (a pipe, a device), is reported and
never opened, as is a text over 2 MB, before it is read.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import stat
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import langcodes
from sqlalchemy.orm import Session

from announcements import changelog, importing, languages, rendering, translation_files, versions
from announcements.audit import record
from announcements.errors import ValidationFailed
from announcements.importing import Action
from announcements.models import Note, Product, TeamMember, move_catalogue_stamps
from announcements.note_rules import MAX_BODY_BYTES
from announcements.translation_files import Outcome, Row
from announcements.translations import MAX_LANGUAGES, product_languages, set_languages

# Where the locale folders are, under the folder given: itself, fastlane's, F-Droid's.
LAYOUTS = ("", "fastlane/metadata/android", "metadata")
# A note's title is cut here: a title is a line in a list, not the changelog itself.
MAX_TITLE = 120
# A version code is a file name and part of an import key (80 characters).
_CODE = re.compile(r"[0-9A-Za-z._+-]{1,64}")
# A list item as store changelogs write one: "• ", "∙ ", "* ", "- ", "+ " and the like.
# Japanese writes "・" with no space after it.
_BULLET = re.compile(r"^[ \t]*(?:[•∙·●▪◦‣*+-][ \t]+|・[ \t]*)")
# What ends a line that says something, not a section's name.
_CLOSING = tuple(".!?:;…。！？：；")
# A line of at most 3 words and this width (a wide character, as in Chinese or Japanese,
# counting twice) without closing punctuation, above more text, names a section:
# "Improved", "Bug fixes", "改善策"; "修复YouTube不播放任何串流的问题" says something.
_SECTION_NAME_WORDS = 3
_SECTION_NAME_WIDTH = 24


@dataclass(frozen=True)
class Unused:
    """Something the import could not use, and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class LocaleFolder:
    name: str
    tag: str | None  # normalised; None when the name is not a language tag
    texts: dict[str, str] = field(default_factory=dict)  # by version code
    problems: list[Unused] = field(default_factory=list)


@dataclass
class Plan:
    """Which folder fills which of the product's languages (the default first), and the
    languages the import adds."""

    fills: dict[str, LocaleFolder]
    added: list[str]
    unused: list[Unused]


@dataclass
class Report:
    base: str
    dry_run: bool
    fills: dict[str, str]  # language → the folder that filled it
    added_languages: list[str]
    notes: importing.Report
    translations: list[Row]
    unused: list[Unused]

    @property
    def changed(self) -> bool:
        return (
            bool(self.added_languages)
            or self.notes.changed
            or any(row.outcome in (Outcome.ADDED, Outcome.UPDATED) for row in self.translations)
        )

    @property
    def summary(self) -> str:
        parts = [f"{len(self.added_languages)} languages added"] if self.added_languages else []
        if self.notes.changes:
            parts.append(f"notes: {self.notes.summary}")
        if self.translations:
            parts.append(f"translations: {translation_files.summary(self.translations)}")
        return "; ".join(parts) or "nothing to import"


def read_codes(text: str) -> dict[str, str]:
    """The mapping file: ``code,version`` per line (blank lines, ``#`` comments and a
    header line allowed); ValidationFailed on ``versions`` naming the bad line."""
    codes: dict[str, str] = {}
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        cells = [cell.strip() for cell in row]
        if not any(cells) or cells[0].startswith("#"):
            continue
        if len(cells) != 2:
            raise ValidationFailed({"versions": f"Line {number}: write code,version."})
        code, version = cells
        if number == 1 and not code.isdigit() and not versions.is_valid(version):
            continue  # a header, such as versionCode,versionName
        if not _CODE.fullmatch(code):
            raise ValidationFailed({"versions": f"Line {number}: “{code}” is not a version code."})
        if not versions.is_valid(version):
            raise ValidationFailed({"versions": f"Line {number}: “{version}” is not a version."})
        if codes.get(code, version) != version:
            raise ValidationFailed(
                {"versions": f"Line {number}: code {code} is version {codes[code]} already."}
            )
        codes[code] = version
    return codes


def read_folders(root: Path) -> tuple[Path, list[LocaleFolder], list[Unused]]:
    """The locale folders under ``root`` (or its fastlane or F-Droid metadata folder), their
    texts, and what was refused as a link or not a plain file; ValidationFailed on
    ``folder`` when there are none."""
    root = root.resolve()  # once: the operator's path; below it, no link is followed
    refused: list[Unused] = []
    for layout in LAYOUTS:
        base = root / layout if layout else root
        # A layout folder reached through a link (fastlane -> /elsewhere) is not the
        # repository's own.
        if not base.is_dir() or os.path.realpath(base) != str(base):
            continue
        found, links = _locale_folders(base)
        refused += links
        if found:
            return base, found, refused
    not_followed = "".join(f" Not followed: {item}." for item in refused)
    raise ValidationFailed(
        {
            "folder": f"{root} holds no <locale>/changelogs/ folders, nor does its "
            f"fastlane/metadata/android/ or metadata/ folder.{not_followed}"
        }
    )


def _locale_folders(base: Path) -> tuple[list[LocaleFolder], list[Unused]]:
    """The plain ``<locale>/changelogs/`` folders in ``base``, read, and the links refused."""
    folders: list[LocaleFolder] = []
    refused: list[Unused] = []
    for path in sorted(base.iterdir()):
        changelogs = path / "changelogs"
        if path.is_symlink():
            if changelogs.is_dir():  # a look at where it leads, reading nothing there
                refused.append(Unused(path.name + "/", _LINK))
        elif not path.is_dir():
            continue
        elif changelogs.is_symlink():
            refused.append(Unused(f"{path.name}/changelogs/", _LINK))
        elif changelogs.is_dir():
            folders.append(_read_folder(path, refused))
    return folders, refused


def _read_folder(path: Path, refused: list[Unused]) -> LocaleFolder:
    try:
        tag: str | None = languages.normalise(path.name)
    except languages.BadTag:
        tag = None
    folder = LocaleFolder(path.name, tag)
    for text_file in sorted((path / "changelogs").glob("*.txt")):
        where = f"{path.name}/changelogs/{text_file.name}"
        if not _CODE.fullmatch(text_file.stem):
            folder.problems.append(Unused(where, "its name is not a version code"))
            continue
        try:
            folder.texts[text_file.stem] = importing.read_text(_plain_file(text_file))
        except _Refused as error:
            refused.append(Unused(where, str(error)))
        except ValidationFailed as error:
            folder.problems.append(Unused(where, error.errors["file"]))
    return folder


_LINK = "a symbolic link, which the import does not follow"
# Never blocks on a pipe that appeared since the lstat; never follows a link that did.
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class _Refused(Exception):
    """A text the import will not read: a link, or not a plain file."""


def _plain_file(path: Path) -> bytes:
    """The bytes of ``path``, a plain file of the checkout, up to one past the import's
    limit; _Refused for a link or anything else, ValidationFailed for one too big."""
    try:
        mode = os.lstat(path).st_mode
        if stat.S_ISLNK(mode):
            raise _Refused(_LINK)
        if not stat.S_ISREG(mode):
            raise _Refused("not a plain file")  # a pipe would block, a device do anything
        with os.fdopen(os.open(path, _OPEN_FLAGS), "rb") as file:
            info = os.fstat(file.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise _Refused("not a plain file")
            if info.st_size > importing.MAX_FILE_BYTES:
                # importing.read_text's words, without reading what it would refuse.
                raise ValidationFailed({"file": "The file is over 2 MB; import it in parts."})
            return file.read(importing.MAX_FILE_BYTES + 1)
    except OSError as error:
        raise _Refused(f"could not be read ({error.strerror})") from None


def plan(folders: list[LocaleFolder], product: Product, *, add_languages: bool) -> Plan:
    """Which folder fills which language, as the module's docstring says."""
    have = product_languages(product)
    unused: list[Unused] = []
    candidates: dict[str, list[LocaleFolder]] = {}
    spare: list[tuple[LocaleFolder, str, str]] = []  # a folder, its tag, why it is spare
    seen: dict[str, str] = {}
    for folder in folders:
        if folder.tag is None:
            unused.append(Unused(folder.name + "/", "not a language tag"))
            continue
        if folder.tag in seen:
            reason = f"the same language as {seen[folder.tag]}/, which was used"
            unused.append(Unused(folder.name + "/", reason))
            continue
        seen[folder.tag] = folder.name
        target = next((tag for tag in languages.truncations(folder.tag) if tag in have), None)
        if target is None:
            spare.append((folder, folder.tag, f"{product.name} has no {folder.tag}"))
        else:
            candidates.setdefault(target, []).append(folder)
    fills: dict[str, LocaleFolder] = {}
    for target, fitting in candidates.items():
        chosen = _closest(target, fitting)
        if chosen is not None:
            fills[target] = chosen
        for folder in fitting:
            if folder is chosen:
                continue
            if chosen is None:
                names = ", ".join(f.name for f in fitting)
                reason = f"{names} all fit {target}, and none is its likely form"
            else:
                reason = f"fits {target} too, and {chosen.name}/ was used for it"
            spare.append((folder, folder.tag or target, reason))
    added: list[str] = []
    room = MAX_LANGUAGES - len(have)
    # The most translated first, when not all of them fit.
    for folder, tag, reason in sorted(spare, key=lambda item: (-len(item[0].texts), item[1])):
        if add_languages and len(added) < room:
            added.append(tag)
            fills[tag] = folder
        elif add_languages:
            reason += f"; a product has at most {MAX_LANGUAGES} languages"
            unused.append(Unused(folder.name + "/", reason))
        else:
            unused.append(Unused(folder.name + "/", reason + "; import with --add-languages"))
    ordered = {tag: fills[tag] for tag in [*have, *added] if tag in fills}
    return Plan(ordered, added, sorted(unused, key=lambda item: item.path))


def _closest(target: str, fitting: list[LocaleFolder]) -> LocaleFolder | None:
    """The folder that fills ``target`` among those that narrow it: the one that names
    it, the only one, or the one of its likely script and region."""
    exact = [folder for folder in fitting if folder.tag == target]
    if exact or len(fitting) == 1:
        return (exact or fitting)[0]
    likely = langcodes.Language.get(target).maximize()
    matching = [f for f in fitting if langcodes.Language.get(f.tag or "").maximize() == likely]
    return matching[0] if len(matching) == 1 else None


# Text to a note -------------------------------------------------------------------------


def as_markdown(text: str) -> str:
    """A store changelog's text as Markdown: each line a paragraph, or a list item where
    it starts with a bullet; blank lines dropped."""
    blocks: list[str] = []
    for line in _lines(text):
        bullet = _BULLET.match(line)
        if bullet is None:
            blocks.append(line.strip())
            continue
        item = "- " + line[bullet.end() :].strip()
        if blocks and blocks[-1].startswith("- "):
            blocks[-1] += "\n" + item
        else:
            blocks.append(item)
    return "\n\n".join(blocks)


def title_of(text: str, fallback: str) -> str:
    """The text's first line that says something, as the module's docstring says."""
    lines = _lines(text)
    for index, line in enumerate(lines):
        stripped = line.strip()
        more = index + 1 < len(lines)
        if stripped.startswith("#") or (more and _names_a_section(stripped)):
            continue
        title = changelog._plain(_BULLET.sub("", stripped)).rstrip("：；，、")
        if title:
            return title if len(title) <= MAX_TITLE else _cut(title)
    return fallback


def _names_a_section(line: str) -> bool:
    width = sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in line)
    return (
        not _BULLET.match(line)
        and len(line.split()) <= _SECTION_NAME_WORDS
        and width <= _SECTION_NAME_WIDTH
        and not line.endswith(_CLOSING)
    )


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.lstrip("\ufeff").splitlines() if line.strip()]


def _cut(title: str) -> str:
    """``title`` cut to MAX_TITLE characters, at a space where there is one."""
    head = title[: MAX_TITLE - 1]
    space = head.rfind(" ")
    return (head[:space] if space > MAX_TITLE // 2 else head).rstrip(" ,;:") + "…"


@dataclass
class _StoreRelease(changelog.Release):
    """A version code's text as the changelog importer writes a release: a note of the
    default category, of no date, imported once by its code."""

    code: str = ""

    @property
    def key(self) -> str:
        return f"fastlane:{self.code}"


def _entries(
    folder: LocaleFolder, codes: Mapping[str, str]
) -> tuple[list[importing._Entry], list[Unused]]:
    """The default language's texts as the importer's entries, oldest version first."""
    entries: list[importing._Entry] = []
    unused: list[Unused] = []
    titles: dict[tuple[str, str], str] = {}
    for code, text in folder.texts.items():
        where = f"{folder.name}/changelogs/{code}.txt"
        version = codes.get(code, code)
        if not versions.is_valid(version):
            unused.append(
                Unused(where, "its code is not a version; give its version in --versions")
            )
            continue
        body = as_markdown(text)
        title = title_of(text, version)
        clash = titles.setdefault((version, Note.title_key_of(title)), code)
        if clash != code:
            unused.append(Unused(where, f"the same version and title as {clash}.txt"))
            continue
        release = _StoreRelease(version=version, line=0, code=code)
        fingerprint = hashlib.sha256(json.dumps([version, title, body]).encode()).hexdigest()
        entries.append(importing._Entry(release, title, body, fingerprint, publish=False))
    entries.sort(key=lambda entry: (versions.parse(entry.release.version), entry.release.key))
    return entries, unused


# The import -----------------------------------------------------------------------------


def import_folder(
    session: Session,
    product: Product,
    root: Path,
    *,
    codes: Mapping[str, str] | None = None,
    add_languages: bool = False,
    dry_run: bool = False,
    by: TeamMember | None,
    now: datetime,
) -> Report:
    """Import the store changelogs under ``root`` into the product's notes and their
    translations; with ``dry_run``, only say what would change. ValidationFailed (on
    ``folder``) when there is nothing to import from. The caller commits.

    Everything is decided and every note body rendered first, writing nothing; only when
    something changes is the product's row locked and it all written, the decisions made
    again, as the changelog importer does."""
    base, folders, refused = read_folders(root)
    chosen = plan(folders, product, add_languages=add_languages)
    default = chosen.fills.get(product.default_locale)
    if default is None:
        raise ValidationFailed(
            {
                "folder": f"No folder under {base} has texts in {product.name}'s default "
                f"language, {product.default_locale} (such as {product.default_locale}-US/)."
            }
        )
    entries, unused = _entries(default, codes or {})
    unused = [*chosen.unused, *refused, *unused]
    notes = {entry.release.key.removeprefix("fastlane:") for entry in entries}
    for folder in chosen.fills.values():
        unused.extend(folder.problems)
        for code in folder.texts.keys() - notes if folder is not default else ():
            if code in default.texts:
                reason = f"its {default.name}/ text could not be used, so there is no note"
            else:
                reason = f"{default.name}/ has no text of this code, so there is no note"
            unused.append(Unused(f"{folder.name}/changelogs/{code}.txt", reason))
    total = sum(len(entry.body.encode()) for entry in entries)
    budget = rendering.Budget(rendering.CPU_SECONDS * max(1, total / MAX_BODY_BYTES))
    report = _run(session, product, chosen, entries, budget, write=False, by=by, now=now)
    report.base, report.unused = str(base), sorted(unused, key=lambda item: item.path)
    if dry_run or not report.changed:
        report.dry_run = dry_run
        return report
    move_catalogue_stamps(session, [product.id])
    if chosen.added:
        others = [*product.languages, *chosen.added]
        set_languages(session, product, product.default_locale, others, by=by, now=now)
    written = _run(session, product, chosen, entries, budget, write=True, by=by, now=now)
    written.base, written.unused = report.base, report.unused
    record(
        session,
        product,
        by,
        "fastlane.imported",
        f"Imported store changelogs: {written.summary}",
        now=now,
    )
    return written


def _run(
    session: Session,
    product: Product,
    chosen: Plan,
    entries: list[importing._Entry],
    budget: rendering.Budget,
    *,
    write: bool,
    by: TeamMember | None,
    now: datetime,
) -> Report:
    """Decide, or with ``write`` write, every note and translation."""
    notes = importing._Notes.of(session, product)
    report = Report(
        base="",
        dry_run=not write,
        fills={tag: folder.name for tag, folder in chosen.fills.items()},
        added_languages=list(chosen.added),
        notes=importing.Report("store changelogs", dry_run=not write),
        translations=[],
        unused=[],
    )
    others = [(tag, f) for tag, f in chosen.fills.items() if tag != product.default_locale]
    for entry in entries:
        code = entry.release.key.removeprefix("fastlane:")
        if write:
            change, note = importing._write(
                session, product, entry, notes, by=by, now=now, budget=budget
            )
            if note is not None and note.id is None:
                session.flush()  # a new note, numbered for its translations and the report
                change = replace(change, note_id=note.id)
            note = note or notes.imported.get(entry.release.key)
        else:
            change = importing._decide(entry, notes, now=now)
            if change.action in (Action.CREATE, Action.UPDATE):
                entry.render(budget)
            note = notes.imported.get(entry.release.key)
        report.notes.changes.append(change)
        for tag, folder in others:
            text = folder.texts.get(code)
            if text is not None:
                row = _translation(
                    session, change, note, entry, tag, text, write=write, by=by, now=now
                )
                report.translations.append(row)
    if write:
        session.flush()
    report.notes.changes.reverse()  # newest first, as the changelog importer reports
    return report


def _translation(
    session: Session,
    change: importing.Change,
    note: Note | None,
    entry: importing._Entry,
    tag: str,
    text: str,
    *,
    write: bool,
    by: TeamMember | None,
    now: datetime,
) -> Row:
    """Decide, or with ``write`` save, one note's translation into ``tag``."""
    title, body = title_of(text, entry.release.version), as_markdown(text)
    row = Row(Outcome.SKIPPED, tag, change.note_id, entry.release.version, change.title)
    if change.action is Action.SKIP:
        return replace(row, reason=f"its note was not imported: {change.reason}")
    outcome, reason = translation_files.decide(
        note, tag, title=title, body_md=body, publish=True, refresh_outdated=False
    )
    row = replace(row, outcome=outcome, reason=reason)
    if write and note is not None and outcome in (Outcome.ADDED, Outcome.UPDATED):
        refused = translation_files.save(
            session, note, tag, title=title, body_md=body, publish=True, by=by, now=now
        )
        if refused:
            return replace(row, outcome=Outcome.SKIPPED, reason=refused)
    return row
