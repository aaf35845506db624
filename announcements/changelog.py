"""Read an existing changelog into releases: Keep a Changelog and its real-world variants,
release-please, changesets, git-cliff's Markdown and git-cliff's ``--context`` JSON.

Each release becomes one note (see the README for why): its sections stay as ``###``
headings in the note's body, the note's category is the release's leading section and
its title says what the release holds. Anything that is not part of a release is
reported as a :class:`Problem`, never dropped without a word.
"""

from __future__ import annotations

import hashlib
import json
import re
import reprlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from announcements import versions
from announcements.errors import ValidationFailed
from announcements.models import Category
from announcements.note_rules import MAX_TITLE_LENGTH

# Section names as written in real changelogs, to the nearest category. Matched on the
# lowercased name with anything that is not a letter removed from its ends.
_NAMES = {
    Category.ADDED: "added|add|adds|new|features|feature|new features|minor changes|"
    "enhancements|enhancement",
    Category.CHANGED: "changed|changes|change|updated|update|updates|improvements|improved|"
    "performance|refactor|refactoring|compatibility|breaking|breaking changes|major changes|"
    "documentation|docs|miscellaneous|miscellaneous chores|miscellaneous tasks|chores|chore|"
    "build|ci|dependencies|styling|style|testing|tests|other|in the future|revert|reverts",
    Category.DEPRECATED: "deprecated|deprecations|deprecation",
    Category.REMOVED: "removed|removals|removal|deleted",
    Category.FIXED: "fixed|fixes|fix|bug fixes|bugfixes|bug fix|bugs|patch changes",
    Category.SECURITY: "security|security fixes|vulnerabilities",
}
SECTION_CATEGORIES = {
    name: category for category, names in _NAMES.items() for name in names.split("|")
}
BREAKING_SECTIONS = {"breaking", "breaking changes", "major changes"}
# When a release has as many entries in two categories, the first of these leads.
PRECEDENCE = [
    Category.SECURITY,
    Category.REMOVED,
    Category.DEPRECATED,
    Category.CHANGED,
    Category.ADDED,
    Category.FIXED,
]
TITLE_WORDS = {
    Category.ADDED: "new",
    Category.CHANGED: "changed",
    Category.DEPRECATED: "deprecated",
    Category.REMOVED: "removed",
    Category.FIXED: "fixed",
    Category.SECURITY: "security",
}

# Every pattern here reads its text in one pass. Patterns that tried each start again
# over a run they could not match took the square of its length: a release heading with
# 20 KB of spaces and tabs before its last word took 20 s, a bullet of 20 KB of "[" 3 s,
# 8,000 unclosed "<!--" 1 s. Headings and comments are therefore taken apart with string
# methods (``_heading``, ``_without_comments``), character classes stop at the character
# that would start the next try, and quantifiers that nothing after them needs are
# possessive.
_HEADING_MARK = re.compile(r"(#{1,6})[ \t]")
_FENCE = re.compile(r"^[ \t]{0,3}(`{3,}|~{3,})")
_LINK_DEFINITION = re.compile(r"^[ \t]{0,3}\[([^\]]+)\]:[ \t]*\S")
_BULLET = re.compile(r"^([ \t]*)[-*+][ \t]+\S")
_DATE = r"(?P<date>\d{4}-\d{1,2}-\d{1,2})"
# "[1.2.0](url) - 2024-01-31", "[1.2.0][ref] - 2024-01-31", "1.2.0 (2024-01-31)", "v1.2.0"
_RELEASE = re.compile(
    r"\[?(?P<version>[^\]\[()\s]++)\]?"
    r"(?:\([^)]*+\)|\[[^\]]*+\])?"
    r"(?:[ \t]*+(?:[-–—:][ \t]*+)?\(?" + _DATE + r"\)?)?"
    r"(?P<rest>.*)"
)
_YANKED = re.compile(r"\[\s*+yanked\s*+\]", re.IGNORECASE)
# Dates written in words or with slashes: "March 3, 2024", "3rd Mar 2024", "2024/03/03".
_WORD_DATE_FORMATS = ("%B %d, %Y", "%B %d %Y", "%d %B %Y", "%b %d, %Y", "%b %d %Y", "%d %b %Y")
_ORDINAL = re.compile(r"(?<=\d)(?:st|nd|rd|th)\b", re.IGNORECASE)
_SEPT = re.compile(r"\bsept\b", re.IGNORECASE)
_SLASHED = re.compile(r"(\d{4})/(\d{1,2})/(\d{1,2})")
_REFERENCE = re.compile(r"\[([^\[\]]++)\]")
_LETTERS = re.compile(r"[a-z](?:.*[a-z])?", re.DOTALL)
# [text](url "title"), the address holding at most one level of parentheses
_INLINE_LINK = re.compile(r"\[([^\[\]]*+)\]\((?:[^()]++|\([^()]*+\))*+\)")
_REFERENCE_LINK = re.compile(r"\[([^\[\]]*+)\]\[[^\[\]]*+\]")  # [text][ref]
_RELEASE_PLEASE = re.compile(r"^## \[[^\]\n]++\]\([^)\n]*+\) \(", re.MULTILINE)


def _word_date(text: str) -> date | None:
    """The date ``text`` is, when it is one written in words or as year/month/day."""
    text = _SEPT.sub("Sep", _ORDINAL.sub("", text.strip(" -–—:/()")).replace(".", " "))
    text = " ".join(text.split())
    if slashed := _SLASHED.fullmatch(text):
        try:
            return date(*(int(part) for part in slashed.groups()))
        except ValueError:
            return None
    for form in _WORD_DATE_FORMATS:
        try:
            return datetime.strptime(text, form).date()
        except ValueError:
            continue
    return None


@dataclass
class Section:
    """One ``###`` part of a release, as written, with the category it maps to."""

    name: str
    category: Category
    lines: list[str] = field(default_factory=list)

    @property
    def entries(self) -> int:
        """Top-level bullets: the changes the section lists."""
        indents = [len(m.group(1)) for line in self.lines if (m := _BULLET.match(line))]
        return sum(1 for indent in indents if indent == min(indents)) if indents else 0


@dataclass
class Release:
    """One version's entry in the changelog."""

    version: str
    line: int
    released: date | None = None
    yanked: bool = False
    unreleased: bool = False
    intro: list[str] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)

    @property
    def key(self) -> str:
        """The same for every spelling of the version (v1.0, 1.0.0)."""
        return "changelog:" + str(versions.parse(self.version))

    @property
    def published_at(self) -> datetime | None:
        if self.released is None:
            return None
        return datetime(self.released.year, self.released.month, self.released.day, tzinfo=UTC)

    @property
    def category(self) -> Category:
        counts: Counter[Category] = Counter()
        for section in self.sections:
            counts[section.category] += max(section.entries, 1)
        if not counts:
            return Category.CHANGED
        if Category.SECURITY in counts:
            return Category.SECURITY
        return max(PRECEDENCE, key=lambda c: (counts[c], -PRECEDENCE.index(c)))

    @property
    def is_important(self) -> bool:
        """A security fix or a breaking change is worth a popup."""
        for section in self.sections:
            if section.category is Category.SECURITY or _key(section.name) in BREAKING_SECTIONS:
                return True
            if any("**breaking**" in line.lower() for line in section.lines):
                return True
        return False

    @property
    def title(self) -> str:
        entries = [s for s in self.sections if s.entries]
        if sum(s.entries for s in entries) == 1:
            title = _plain(_first_entry(entries[0].lines))
        else:
            counts: Counter[Category] = Counter()
            for section in entries:
                counts[section.category] += section.entries
            parts = [f"{counts[c]} {TITLE_WORDS[c]}" for c in Category if counts[c]]
            title = ", ".join(parts) if parts else _first_sentence(self.intro)
        title = title or f"Release {self.version}"
        mark = " (yanked)" if self.yanked else ""
        room = MAX_TITLE_LENGTH - len(mark)
        if len(title) > room:
            title = title[: room - 1].rstrip() + "…"
        return title + mark

    def body(self, links: dict[str, tuple[int, str]]) -> str:
        """The release as Markdown, with the link definitions its text refers to, in the
        file's order (``links`` maps a lowercased label to its line number and line)."""
        parts: list[str] = []
        if self.yanked:
            parts.append("> This release was yanked.")
        if _text(self.intro):
            parts.append(_text(self.intro))
        for section in self.sections:
            parts.append(f"### {section.name}")
            if _text(section.lines):
                parts.append(_text(section.lines))
        body = "\n\n".join(parts)
        labels = set(_REFERENCE.findall(body.lower()))
        used = sorted(links[label] for label in labels if label in links)
        return body + ("\n\n" + "\n".join(line for _, line in used) if used else "")

    def fingerprint(self, body: str) -> str:
        """Changes when anything the note is made of changes in the file; ``body`` is
        :meth:`body`, made once by the caller."""
        made_of = [self.version, self.title, self.category, self.is_important, body]
        made_of.append(self.released.isoformat() if self.released else "")
        return hashlib.sha256(json.dumps(made_of).encode()).hexdigest()


@dataclass(frozen=True)
class Problem:
    """Something in the file that was not imported, and why."""

    line: int
    text: str
    reason: str

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{where}{self.reason}" + (f" ({self.text[:80]!r})" if self.text else "")


@dataclass
class Parsed:
    format: str
    releases: list[Release]
    problems: list[Problem]
    links: dict[str, tuple[int, str]] = field(default_factory=dict)


def parse(text: str, *, unreleased_as: str | None = None) -> Parsed:
    """The releases in a changelog file, newest first as written.

    ``[Unreleased]`` is skipped (and reported) unless ``unreleased_as`` names the version
    to give it; ValidationFailed for JSON nested deeper than Python can read.
    """
    text = text.lstrip("\ufeff")
    if text.lstrip()[:1] in ("[", "{"):
        try:
            context = json.loads(text)
        except ValueError:
            pass
        except RecursionError:
            raise ValidationFailed(
                {"file": "The JSON is nested too deeply to be a git-cliff context."}
            ) from None
        else:
            return _from_cliff_context(context, unreleased_as)
    return _from_markdown(text, unreleased_as)


# Markdown ------------------------------------------------------------------


def _from_markdown(text: str, unreleased_as: str | None) -> Parsed:
    lines = _without_comments(text, keep_lines=True).splitlines()
    level = _release_level(lines)
    links: dict[str, tuple[int, str]] = {}
    releases: list[Release] = []
    problems: list[Problem] = []
    outside: list[tuple[int, str]] = []  # lines that belong to no release
    release: Release | None = None
    previous: Release | None = None
    section: Section | None = None
    fence: str | None = None
    for number, line in enumerate(lines, start=1):
        fenced = _FENCE.match(line)
        if fenced:
            marker = fenced.group(1)
            if fence is None:
                fence = marker
            elif marker[0] == fence[0] and len(marker) >= len(fence):
                fence = None
        heading = _heading(line) if fence is None and not fenced else None
        depth = heading[0] if heading else 0
        if fence is None and (definition := _LINK_DEFINITION.match(line)):
            links.setdefault(definition.group(1).lower(), (number, line.strip()))
        elif heading and level and depth <= level:
            previous = release or previous
            section, release = None, None
            # A shallower heading is the file's title; a release-level one opens a release.
            if depth == level and previous and _is_section(heading[1]):
                # A section written one level too high ("## Fixed"): keep it in its release.
                release = previous
                section = _section(release, heading[1], number, problems)
                problems.append(
                    Problem(number, heading[1], f"read as a section of {release.version}")
                )
                continue
            if depth == level:
                release = _release(heading[1], number, unreleased_as, problems)
            if release is not None:
                releases.append(release)
        elif release is None:
            if line.strip():
                outside.append((number, line.strip()))
        elif heading and depth == level + 1:
            section = _section(release, heading[1], number, problems)
        else:
            (section.lines if section else release.intro).append(line)
    if releases:
        first = releases[0].line
        before = [(n, t) for n, t in outside if n < first and not _heading(t)]
        if before:
            problems.append(
                Problem(
                    before[0][0],
                    before[0][1],
                    f"{len(before)} line(s) before the first release (the file's "
                    "introduction) were not imported",
                )
            )
        problems += [
            Problem(n, t, "this line is not in any release, so it was not imported")
            for n, t in outside
            if n > first
        ]
    else:
        problems.append(
            Problem(0, "", "no release headings (such as “## [1.2.0] - 2024-05-01”) were found")
        )
    kept = [r for r in releases if not r.unreleased or unreleased_as]
    return Parsed(_markdown_format(text, kept), kept, problems, links)


def _is_section(heading: str) -> bool:
    return _key(_section_name(heading)) in SECTION_CATEGORIES


def _section(release: Release, heading: str, number: int, problems: list[Problem]) -> Section:
    """Open a section of ``release``; a name we do not know is read as Changed, and said."""
    name = _section_name(heading)
    category = SECTION_CATEGORIES.get(_key(name))
    if category is None:
        problems.append(
            Problem(
                number,
                name,
                f"section “{name}” of {release.version} is read as Changed: "
                "its name is not one we know",
            )
        )
    section = Section(name, category or Category.CHANGED)
    release.sections.append(section)
    return section


def _release_level(lines: list[str]) -> int:
    """The heading level that releases use: that of the first heading naming a version."""
    for line in lines:
        heading = _heading(line)
        if heading and (match := _RELEASE.match(heading[1].strip())):
            word = match.group("version")
            if word.lower() == "unreleased" or versions.is_valid(word):
                return heading[0]
    return 0


def _release(
    heading: str, number: int, unreleased_as: str | None, problems: list[Problem]
) -> Release | None:
    """The release a release-level heading opens; None (and a problem) when it names none.
    [Unreleased] opens one too, so its lines are not reported one by one."""
    text = _YANKED.sub("", heading).strip()
    match = _RELEASE.match(text)
    word = match.group("version") if match else ""
    if match and word.lower() == "unreleased":
        if unreleased_as:
            return Release(version=unreleased_as, line=number, unreleased=True)
        problems.append(
            Problem(number, heading, "[Unreleased] was skipped; name its version to import it")
        )
        return Release(version=word, line=number, unreleased=True)
    if match is None or not versions.is_valid(word):
        problems.append(
            Problem(
                number,
                heading,
                "this heading names no version, so what is under it was not imported",
            )
        )
        return None
    released = None
    if match.group("date"):
        try:
            released = date(*(int(part) for part in match.group("date").split("-")))
        except ValueError:
            problems.append(Problem(number, heading, "the date is not a real date; left out"))
    rest = match.group("rest").strip(" -–—")
    if released is None and rest and (written := _word_date(rest)):
        released, rest = written, ""
    if rest:
        problems.append(Problem(number, heading, f"“{rest}” after the version was not understood"))
    return Release(
        version=word, line=number, released=released, yanked=bool(_YANKED.search(heading))
    )


def _markdown_format(text: str, releases: list[Release]) -> str:
    names = {_key(s.name) for r in releases for s in r.sections}
    if "generated by git-cliff" in text:
        return "git-cliff"
    if names & {"patch changes", "minor changes", "major changes"}:
        return "changesets"
    if names & {"bug fixes", "features"} and _RELEASE_PLEASE.search(text):
        return "release-please"
    return "Keep a Changelog"


# git-cliff --context ------------------------------------------------------


def _from_cliff_context(context: object, unreleased_as: str | None) -> Parsed:
    problems: list[Problem] = []
    releases: list[Release] = []
    items = context if isinstance(context, list) else [context]
    for position, item in enumerate(items, start=1):
        if not isinstance(item, dict) or not isinstance(item.get("commits", []), list):
            problems.append(Problem(0, reprlib.repr(item), f"release {position} is not an object"))
            continue
        version = item.get("version") or unreleased_as
        if isinstance(version, (list, dict)):
            problems.append(
                Problem(0, reprlib.repr(version), f"release {position} names no version")
            )
            continue
        if not version:
            problems.append(
                Problem(
                    0, "", "the unreleased commits were skipped; name their version to import them"
                )
            )
            continue
        version = str(version)
        if not versions.is_valid(version):
            problems.append(Problem(0, version, f"release {position} names no version we can read"))
            continue
        release = Release(version=version, line=0, unreleased=not item.get("version"))
        timestamp = item.get("timestamp")
        if isinstance(timestamp, int) and timestamp > 0:
            try:
                release.released = datetime.fromtimestamp(timestamp, UTC).date()
            except (OverflowError, OSError, ValueError):  # past the year 9999
                problems.append(
                    Problem(
                        0, str(timestamp), f"the timestamp of {version} is not a date; left out"
                    )
                )
        sections: dict[str, Section] = {}
        for commit in item.get("commits") or []:
            if not isinstance(commit, dict) or not _scalar(commit.get("message")).strip():
                problems.append(
                    Problem(0, reprlib.repr(commit), f"a commit in {version} has no message")
                )
                continue
            name = _section_name(_scalar(commit.get("group")) or "Other")
            section = sections.get(name)
            if section is None:
                section = Section(name, SECTION_CATEGORIES.get(_key(name), Category.CHANGED))
                sections[name] = section
                release.sections.append(section)
            message = _scalar(commit["message"]).strip().splitlines()[0]
            scope = f"**{_scalar(commit['scope'])}:** " if _scalar(commit.get("scope")) else ""
            breaking = "[**breaking**] " if commit.get("breaking") else ""
            section.lines.append(f"- {breaking}{scope}{message}")
        releases.append(release)
    return Parsed("git-cliff context (JSON)", releases, problems, {})


# Helpers -------------------------------------------------------------------


def _heading(line: str) -> tuple[int, str] | None:
    """An ATX heading's level and text, without the closing #s, or None."""
    mark = _HEADING_MARK.match(line)
    if mark is None:
        return None
    text = line[mark.end() :].strip(" \t")
    unclosed = text.rstrip("#")
    if unclosed[-1:] in (" ", "\t"):
        text = unclosed.rstrip(" \t")
    return len(mark.group(1)), text


def _without_comments(text: str, *, keep_lines: bool = False) -> str:
    """``text`` without its closed HTML comments; with ``keep_lines``, each comment leaves
    its line breaks, so the lines after it keep their numbers."""
    kept: list[str] = []
    start = 0
    while (opening := text.find("<!--", start)) != -1:
        closing = text.find("-->", opening + 4)
        if closing == -1:
            break
        kept.append(text[start:opening])
        if keep_lines:
            kept.append("\n" * text.count("\n", opening, closing))
        start = closing + 3
    kept.append(text[start:])
    return "".join(kept)


def _scalar(value: object) -> str:
    """A JSON value as text when it is a string or a number; a list or an object, which
    may be nested deeper than ``str`` can go, is empty."""
    return str(value) if isinstance(value, (str, int, float)) else ""


def _key(name: str) -> str:
    """The name lowercased, from its first letter to its last."""
    letters = _LETTERS.search(name.lower())
    return letters.group() if letters else ""


def _section_name(heading: str) -> str:
    """A section heading without its decoration: emoji, HTML comments, closing #s."""
    name = _without_comments(heading).strip().strip("#").strip()
    name = re.sub(r"^[^\w\[(]+", "", name).strip()
    return name or heading.strip()


def _text(lines: list[str]) -> str:
    return "\n".join(lines).strip("\n").rstrip()


def _plain(bullet: str) -> str:
    """A bullet's text without Markdown, links to commits and credits: for a title."""
    text = re.sub(r"^[ \t]*[-*+][ \t]+", "", bullet)
    text = _INLINE_LINK.sub(r"\1", text)
    text = _REFERENCE_LINK.sub(r"\1", text)
    text = re.sub(r"<?https?://\S+", "", text)
    text = re.sub(r"[*_`]", "", text)
    text = re.sub(r"\((?:#\d+|[0-9a-f]{7,40})\)", "", text)  # (#126) (7b8f57c)
    # changesets: "1706fb7 #321 Thanks @someone! - Fix ..."
    text = re.sub(r"^[0-9a-f]{7,40}\s+(?:#\d+\s+)?(?:Thanks @[\w-]+!\s*)?-\s*", "", text)
    return " ".join(text.split()).rstrip(" ,;:")


def _first_entry(lines: list[str]) -> str:
    """The first bullet with the lines that continue it."""
    start = next(i for i, line in enumerate(lines) if _BULLET.match(line))
    entry = [lines[start]]
    for line in lines[start + 1 :]:
        if not line.strip() or _BULLET.match(line) or not line[:1].isspace():
            break
        entry.append(line)
    return " ".join(entry)


def _first_sentence(lines: list[str]) -> str:
    text = " ".join(" ".join(lines).split())
    sentence = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0]
    return _plain(sentence)
