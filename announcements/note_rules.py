"""What a release note must be, in one place: its limits, and the checks every note meets
before it is saved, whoever writes it.

The services check each write with :func:`problems` (and, needing the database, that no
other live note of the version has the title); the importer skips a release that breaks a
rule, giving the rule's own words; the changelog reader cuts titles to
:data:`MAX_TITLE_LENGTH`; the management API's schemas and the console's note form take
their limits and categories from here rather than restating them. A title or body holds
text: a control character (:data:`CONTROL_CHARACTERS`), which no feed can carry, is
refused; tabs and line breaks are text.

A note's support topics are ticket tags, folded as the tickets' own tags are
(:func:`announcements.tickets.fold_tag`), so a topic written "Export" matches a ticket
tagged "export"; its hold-back is at most :data:`announcements.holdback.MAX_HOLDBACK_PERCENT`.

A note may require acknowledgement ("I understand" in the widget): such a notice holds
nobody back, since users who must not miss it can't be kept from it as a control group;
and only such a notice may be e-mailed, after :data:`MAX_ESCALATE_AFTER_DAYS` days at most,
to the users who have not acknowledged it (:mod:`announcements.notices`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from announcements import holdback, targeting, tickets, versions
from announcements.errors import ValidationFailed
from announcements.models import LOCALE_PATTERN, Category, Note

MAX_VERSION_LENGTH = versions.MAX_VERSION_LENGTH
MAX_TITLE_LENGTH = 200  # the width of Note.title
# Counted in bytes of UTF-8, as it is stored and sent, not in characters: a body in Thai
# or emoji takes three or four bytes a character.
MAX_BODY_BYTES = 100 * 1024
CATEGORIES = tuple(category.value for category in Category)
MAX_TOPICS = 20
MAX_TOPIC_LENGTH = 40
# A topic, once folded: letters and digits of any script, spaces, and the marks desks put
# in tags ("billing:eu", "v2.4", "bulk-export", "sso_setup").
TOPIC_PATTERN = re.compile(rf"[\w .:-]{{1,{MAX_TOPIC_LENGTH}}}")
MAX_HOLDBACK_PERCENT = holdback.MAX_HOLDBACK_PERCENT
HOLDBACK_RULE = f"Hold back a whole number from 0 to {MAX_HOLDBACK_PERCENT} per cent of users."
# Past a quarter, a notice nobody acknowledged is better sent again by hand than by a
# rule its editor has forgotten.
MAX_ESCALATE_AFTER_DAYS = 90
ESCALATION_RULE = f"E-mail it after a whole number of days from 1 to {MAX_ESCALATE_AFTER_DAYS}."
# What no person writes and XML cannot carry: the C0 controls but tab, line feed and
# carriage return, DEL, the noncharacters U+FFFE and U+FFFF, and lone surrogates (which
# Python's json module reads from \u escapes). A title or body holding one would make
# every RSS and Atom feed of its product fail (lxml refuses the document).
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")


@dataclass(frozen=True)
class NoteInput:
    """A note as written in the editor, sent to the API or read from a changelog, before
    validation."""

    version: str
    title: str
    category: str
    body_md: str = ""
    is_important: bool = False
    is_internal: bool = False
    expires_at: datetime | None = None
    audience: dict[str, Any] | None = None
    # Email the subscribers when it goes live; None: yes for important notes.
    email_subscribers: bool | None = None
    # The ticket tags the note answers, as written; stored folded (:func:`support_topics`).
    support_topics: Sequence[str] = ()
    # The share of exposed users held back as a control group during the window.
    holdback_percent: int = 0
    # A notice users must acknowledge, and after how many days without it the users
    # linked to a subscriber are e-mailed it (None: never).
    requires_acknowledgement: bool = False
    escalate_after_days: int | None = None

    @classmethod
    def of(cls, note: Note) -> NoteInput:
        """What ``note`` holds now, to change a few fields of and save again."""
        return cls(
            version=note.version,
            title=note.title,
            category=note.category.value,
            body_md=note.body_md,
            is_important=note.is_important,
            is_internal=note.is_internal,
            expires_at=note.expires_at,
            audience=note.audience,
            email_subscribers=note.email_subscribers,
            support_topics=tuple(note.support_topics or ()),
            holdback_percent=note.holdback_percent or 0,
            requires_acknowledgement=note.requires_acknowledgement,
            escalate_after_days=note.escalate_after_days,
        )


def title_problem(title: str) -> str | None:
    """What is wrong with a title, surrounding spaces aside, if anything."""
    title = title.strip()
    if not title:
        return "Give the note a title."
    if len(title) > MAX_TITLE_LENGTH:
        return f"Keep the title under {MAX_TITLE_LENGTH} characters."
    return control_problem(title)


def body_problem(body_md: str) -> str | None:
    """What is wrong with a Markdown body's size or characters, if anything."""
    if problem := control_problem(body_md):
        return problem
    if len(body_md.encode("utf-8")) > MAX_BODY_BYTES:
        return (
            f"The body is over {MAX_BODY_BYTES // 1024} KB. Split it into several notes or trim it."
        )
    return None


def control_problem(text: str) -> str | None:
    """What to say of a text holding a :data:`CONTROL_CHARACTERS` character, naming the
    first; tabs and line breaks are text."""
    found = CONTROL_CHARACTERS.search(text)
    if found is None:
        return None
    return (
        f"Remove the character U+{ord(found.group()):04X} at position {found.start() + 1}: "
        "it is a control character, not text, and feeds cannot carry it."
    )


def category_problem(category: str) -> str | None:
    if category not in CATEGORIES:
        return "Choose one of: " + ", ".join(CATEGORIES) + "."
    return None


def support_topics(topics: Iterable[str]) -> list[str]:
    """The topics as stored and matched: each folded as ticket tags are, in the order
    written, a repeat (in any case or spacing) dropped."""
    return list(dict.fromkeys(tickets.fold_tag(topic) for topic in topics))


def topics_problem(topics: Sequence[Any]) -> str | None:
    """What is wrong with a note's support topics, if anything."""
    if not all(isinstance(topic, str) for topic in topics):
        return "Topics are text."
    folded = support_topics(topics)
    if len(folded) > MAX_TOPICS:
        return f"Give at most {MAX_TOPICS} topics."
    for topic in folded:
        if not topic:
            return "Leave no topic empty."
        if not TOPIC_PATTERN.fullmatch(topic):
            shown = topic if len(topic) <= MAX_TOPIC_LENGTH else topic[:MAX_TOPIC_LENGTH] + "…"
            return (
                f"“{shown}” is not a topic. Use 1 to {MAX_TOPIC_LENGTH} letters, digits, "
                "spaces, - _ . or : for each, as the tags of your help desk."
            )
    return None


def holdback_problem(percent: Any) -> str | None:
    """What is wrong with a hold-back share, if anything."""
    if (
        not isinstance(percent, int)
        or isinstance(percent, bool)
        or not 0 <= percent <= MAX_HOLDBACK_PERCENT
    ):
        return HOLDBACK_RULE
    return None


def acknowledgement_problems(data: NoteInput) -> dict[str, str]:
    """What is wrong with a notice's acknowledgement and escalation, by field, if anything."""
    errors: dict[str, str] = {}
    if data.requires_acknowledgement and data.holdback_percent:
        errors["requires_acknowledgement"] = (
            "A notice users must acknowledge holds nobody back: set the hold-back to 0 "
            "first. Users who must not miss it can't be kept from it as a control group."
        )
    days = data.escalate_after_days
    if days is None:
        return errors
    if (
        not isinstance(days, int)
        or isinstance(days, bool)
        or not 1 <= days <= MAX_ESCALATE_AFTER_DAYS
    ):
        errors["escalate_after_days"] = ESCALATION_RULE
    elif not data.requires_acknowledgement:
        errors["escalate_after_days"] = (
            "Only a notice that requires acknowledgement is e-mailed to those who have "
            "not acknowledged it: tick “Requires acknowledgement”, or leave this empty."
        )
    return errors


def locale_problem(locale: str) -> str | None:
    """What is wrong with a language tag (a product's default language, a translation's)."""
    if not LOCALE_PATTERN.fullmatch(locale):
        return "Use a language tag such as en, de or pt-BR."
    return None


def problems(
    data: NoteInput,
    *,
    now: datetime,
    scheduling: bool = False,
    publish_at: datetime | None = None,
) -> dict[str, str]:
    """What is wrong with ``data``, by field; empty when it meets every rule of a note.

    ``scheduling`` says it is to go live at ``publish_at``, which must then be ahead of
    ``now``; otherwise it goes live (or stays as it is) now. An expiry must come after the
    note goes live.
    """
    errors: dict[str, str] = {}
    try:
        versions.parse(data.version)
    except versions.InvalidVersion as exc:
        errors.update(exc.errors)
    checks = {
        "title": title_problem(data.title),
        "category": category_problem(data.category),
        "body_md": body_problem(data.body_md),
        "support_topics": topics_problem(data.support_topics),
        "holdback_percent": holdback_problem(data.holdback_percent),
    }
    errors.update({name: problem for name, problem in checks.items() if problem})
    errors.update(acknowledgement_problems(data))
    if scheduling:
        if publish_at is None:
            errors["publish_at"] = "Pick when to publish."
        elif publish_at <= now:
            errors["publish_at"] = (
                "That time has passed. Pick a time in the future, or publish now."
            )
    try:
        targeting.validate(data.audience)
    except ValidationFailed as exc:
        errors.update(exc.errors)
    goes_live = publish_at if scheduling and publish_at else now
    if data.expires_at is not None and data.expires_at <= goes_live:
        errors["expires_at"] = "The note would expire before it is published."
    return errors
