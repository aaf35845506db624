"""The widget's own wording (buttons, labels, the empty state, category names), in each
interface language, as the widget script fetches it.

The script draws in English by itself; for another language it fetches
``GET /api/v1/widget/strings/<locale>.json`` once, in parallel with its first notes, and
the browser keeps the answer for a day (it is the same for every product and every user,
so any cache may keep it). The notes' answer, the hot path, carries no wording: a page
view costs the same in every language, and a 304 stays a 304.

A message with a number is sent in each plural category of the language (CLDR's, which
the script's ``Intl.PluralRules`` names), each as the catalogue's form for a number of
that category, with its ``%(num)d`` left for the script to fill in.
"""

from __future__ import annotations

from typing import Any

from babel import Locale
from flask_babel import force_locale, get_translations, lazy_gettext

from announcements import languages, reads
from announcements.models import Category

# Keys the script looks its wording up by, and the English it falls back on.
STRINGS = {
    "whats_new": lazy_gettext("What's new"),
    "unread": lazy_gettext("Unread"),
    "close": lazy_gettext("Close"),
    "empty": lazy_gettext("Nothing new yet. Updates will show up here."),
    "older": lazy_gettext("Show older updates"),
    "version": lazy_gettext("v%(version)s"),
    "permalink": lazy_gettext("Permalink"),
    "tell_more": lazy_gettext("Tell us more (optional)"),
    "send": lazy_gettext("Send"),
    "from_support": lazy_gettext("From support"),
    "needs_confirmation": lazy_gettext("Needs your confirmation"),
    "understand": lazy_gettext("I understand"),
    "confirmed": lazy_gettext("Confirmed"),
    "read_and_confirm": lazy_gettext("Please read and confirm"),
    "close_unconfirmed": lazy_gettext("Close without confirming"),
    "shown_again": lazy_gettext("We'll show this again until you confirm it."),
    "sent_by_support": lazy_gettext("Sent to you by our support team"),
    "important": lazy_gettext("Important update"),
    "got_it": lazy_gettext("Got it"),
    "help": lazy_gettext("Help"),
    "before_contact": lazy_gettext("Before you contact us"),
    "answers": lazy_gettext("This answers my question"),
    "still_need_help": lazy_gettext("I still need help"),
    "not_looking_for": lazy_gettext("Not what you were looking for?"),
    "mail_confirmed": lazy_gettext("Updates also go to %(email)s by email."),
    "mail_pending": lazy_gettext("Check %(email)s for a link to confirm."),
    "mail_offer": lazy_gettext("Get these updates by email too."),
    "email_me": lazy_gettext("Email me"),
    "subscribing": lazy_gettext("Subscribing…"),
    # The categories by their Keep a Changelog names, as end users read them.
    **{f"category.{category.value}": lazy_gettext(category.label) for category in Category},
    # The reactions' names, by their emoji.
    **{f"reaction.{emoji}": lazy_gettext(name) for emoji, name in reads.REACTIONS.items()},
}
# Numbers tried for an example of each plural category: every category of the six
# interface languages has one below 200, and French's and Spanish's "many" is a million.
EXAMPLES = (*range(200), 1_000_000)


def _plurals(count: int) -> dict[str, str]:
    """The messages with a number, in the catalogue's form for ``count``, unformatted."""
    translations = get_translations()
    return {
        "whats_new_unread": translations.ngettext(
            "What's new, %(num)d unread", "What's new, %(num)d unread", count
        ),
        "may_answer": translations.ngettext(
            "This recent update may already answer your question.",
            "These recent updates may already answer your question.",
            count,
        ),
    }


def _examples(tag: str) -> dict[str, int]:
    """A number of each plural category of the language, by category name."""
    rule = Locale.parse(tag, sep="-").plural_form
    found: dict[str, int] = {}
    for number in EXAMPLES:
        found.setdefault(rule(number), number)
    return found


def wording(tag: str) -> dict[str, Any]:
    """The widget's wording in the interface language ``tag`` (one of
    :data:`~announcements.languages.INTERFACE_LOCALES`), with its direction."""
    with force_locale(tag):
        strings = {key: str(text) for key, text in STRINGS.items()}
        forms = {category: _plurals(number) for category, number in _examples(tag).items()}
    plurals = {
        key: {category: messages[key] for category, messages in forms.items()}
        for key in forms["other"]
    }
    return {
        "locale": tag,
        "dir": languages.direction(tag),
        "strings": strings,
        "plurals": plurals,
    }
