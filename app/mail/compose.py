"""The messages themselves: multipart/alternative, list headers, per-recipient links.

Templates live in ``templates/email/``: a plain-text part and an HTML part (inline
styles, table layout, 600 px wide, readable without images) for each kind of mail.

A subscriber's mail speaks their language: each note in its best published translation by
the product's fallback chain from ``Subscriber.locale`` (title and body from one text), and
the mail's own wording, subject included, in the interface language nearest it, under
``force_locale`` (the worker has no request to choose one). The HTML part carries the
interface language's ``lang`` and ``dir``, each note its own text's.
"""

from __future__ import annotations

import binascii
import contextlib
import functools
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from email.header import Header
from email.utils import format_datetime, formataddr, parseaddr
from typing import Any
from urllib.parse import quote, urlsplit

from babel.lists import format_list
from flask import current_app
from flask_babel import force_locale, get_locale, lazy_gettext, ngettext
from flask_babel import gettext as _
from werkzeug.routing import Map, MapAdapter

from announcements import languages, monitoring, translations
from announcements.models import (
    Alert,
    Note,
    OutboxKind,
    OutboxMessage,
    Product,
    Subscriber,
    TeamMember,
    utcnow,
)
from announcements.subscriptions import Preferences
from app.i18n import current_locale
from app.mail import tokens
from app.mail.tokens import Purpose


@dataclass(frozen=True)
class Localized:
    """A note's words in the language a subscriber reads."""

    note: Note
    locale: str  # the language of the title and body
    title: str
    body_md: str
    body_html: str
    read_url: str

    @property
    def direction(self) -> str:
        return languages.direction(self.locale)


def external(endpoint: str, **values: Any) -> str:
    """An absolute URL on ``BASE_URL``; mail is composed outside any request."""
    return str(
        _urls(current_app.url_map, current_app.config["BASE_URL"]).build(
            endpoint, values, force_external=True
        )
    )


@functools.lru_cache(maxsize=8)
def _urls(url_map: Map, base_url: str) -> MapAdapter:
    base = urlsplit(base_url)
    return url_map.bind(base.netloc, script_name=base.path or "/", url_scheme=base.scheme)


def sender_address() -> str:
    """The bare address of ``MAIL_FROM``, used as the envelope sender."""
    return _bare_address(current_app.config["MAIL_FROM"])


@functools.lru_cache(maxsize=8)
def _bare_address(mail_from: str) -> str:
    return parseaddr(mail_from)[1]


def subscriber_of(row: OutboxMessage) -> Subscriber:
    """The subscriber a message goes to: every kind has one but an alert."""
    if row.subscriber is None:
        raise ValueError(f"outbox message {row.id} ({row.kind.value}) has no subscriber")
    return row.subscriber


def message_id_for(row_id: int) -> str:
    """A Message-ID that is the same each time this outbox row is sent, so that the one
    message a killed worker may send twice carries one id, and mail clients fold it."""
    secret = str(current_app.config["SECRET_KEY"]).encode()
    digest = hmac.new(secret, f"outbox:{row_id}".encode(), hashlib.sha256).hexdigest()[:16]
    domain = sender_address().rpartition("@")[2] or "localhost"
    return f"<tidings.{row_id}.{digest}@{domain}>"


def localized(note: Note, subscriber: Subscriber) -> Localized:
    """The note as the subscriber reads it (:func:`translations.shown_text`)."""
    text = translations.shown_text(note, subscriber.locale)
    token = tokens.for_subscriber(Purpose.READ, subscriber, n=note.id)
    read_url = external("subscriptions.read", token=token)
    return Localized(note, text.locale, text.title, text.body_md, text.body_html, read_url)


def interface_of(locale: str | None, product: Product) -> str:
    """The interface language a subscriber who reads ``locale`` is written to, in mail and
    on the pages their links open: the one nearest it, else nearest the product's default."""
    return languages.interface_locale([tag for tag in (locale, product.default_locale) if tag])


def page_locale(locale: str | None, product: Product) -> str | None:
    """The ``?locale=`` of a public page a mail's link opens for a reader of ``locale``, so
    that it shows the notes as the mail does; none for the product's default language."""
    return locale if locale and locale != product.default_locale else None


@contextlib.contextmanager
def speaking(locale: str | None, product: Product) -> Iterator[None]:
    """Word what is composed inside for a reader of ``locale`` (:func:`interface_of`)."""
    with force_locale(interface_of(locale, product)):
        yield


def _writing() -> dict[str, str]:
    """The interface language's tag and direction for a template, and the side its text
    starts from (inline styles carry the alignment: mail clients drop style sheets)."""
    tag = current_locale()
    direction = languages.direction(tag)
    return {"lang": tag, "dir": direction, "align": "right" if direction == "rtl" else "left"}


def describe(preferences: Preferences) -> str:
    """What a subscriber gets, in the current interface language: "Every release, all
    categories", "A weekly digest, Fixed and Security"."""
    what = (
        format_list([_(category.label) for category in preferences.categories], locale=get_locale())
        if preferences.categories
        else _("all categories")
    )
    return _(
        "%(frequency)s, %(categories)s", frequency=_(preferences.frequency.label), categories=what
    )


def render(name: str, context: dict[str, Any]) -> str:
    """A mail template with only what it is given: mail has no request to draw on, and
    Flask's context processors and signals cost a fifth of each render."""
    return current_app.jinja_env.get_template(name).render(context)


@dataclass(frozen=True)
class Composed:
    """A message ready for the wire: its Message-ID and its bytes (CRLF line ends)."""

    message_id: str
    data: bytes


_BREAKABLE_SPACE = re.compile(r"[^\S\u00a0\u202f]+")


def header_value(value: str) -> str:
    """One line, whatever was typed, and RFC 2047 words where it is not plain ASCII. Runs
    of white space become one space, but a non-breaking space stays: French writes one
    before a colon."""
    value = _BREAKABLE_SPACE.sub(" ", value).strip()
    return value if value.isascii() else Header(value, "utf-8").encode()


def _part(subtype: str, content: str) -> bytes:
    """A text part in UTF-8, quoted-printable (76-character lines, RFC 2045)."""
    encoded = binascii.b2a_qp(content.replace("\r\n", "\n").encode(), istext=True)
    return (
        f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    ).encode() + encoded.replace(b"\n", b"\r\n")


def assemble(headers: list[tuple[str, str]], text: str, html: str) -> bytes:
    """multipart/alternative of ``text`` then ``html``, under ``headers``.

    Python's email package builds the same message, but at 3 ms apiece it cost more
    than the SMTP exchange itself; the C encoders it uses underneath take 0.1 ms.
    The tests parse every message back with the email package.
    """
    boundary = "tidings-" + secrets.token_hex(12)
    head = "".join(f"{name}: {value}\r\n" for name, value in headers)
    head += (
        f'MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'
    )
    separator = f"\r\n--{boundary}\r\n".encode()
    return (
        head.encode()
        + separator
        + _part("plain", text)
        + separator
        + _part("html", html)
        + f"\r\n--{boundary}--\r\n".encode()
    )


def _envelope(
    product: Product,
    subscriber: Subscriber,
    subject: str,
    template: str,
    message_id: str,
    *,
    listed: bool,
    locale: str | None,
    **context: Any,
) -> Composed:
    """A message from the product to the subscriber, who reads ``locale``, with both parts
    rendered from ``template`` and, when ``listed``, the list and one-click unsubscribe
    headers."""
    # formataddr quotes or encodes the display name as it needs.
    name = " ".join((product.email_from_name or product.name).split())
    headers = [
        ("From", formataddr((name, sender_address()))),
        ("To", subscriber.email),
        ("Subject", header_value(subject)),
        ("Date", format_datetime(utcnow())),
        ("Message-ID", message_id),
    ]
    if product.email_reply_to:
        headers.append(("Reply-To", header_value(product.email_reply_to)))
    context.update(
        product=product,
        subscriber=subscriber,
        preferences=Preferences.of(subscriber),
        describe=describe,
        **_writing(),
        changelog_url=external(
            "public.changelog", slug=product.slug, locale=page_locale(locale, product)
        ),
    )
    # Every message to a subscriber, the confirmation included, lets them delete their data.
    erase = tokens.for_subscriber(Purpose.ERASE, subscriber)
    context.update(erase_url=external("subscriptions.erase", token=erase))
    token = tokens.for_subscriber(Purpose.UNSUBSCRIBE, subscriber)
    if listed:
        unsubscribe = external("subscriptions.unsubscribe", token=token)
        context.update(unsubscribe_url=unsubscribe, preferences_url=unsubscribe + "#preferences")
        mailto = current_app.config["MAIL_UNSUBSCRIBE_TO"] or sender_address()
        list_host = urlsplit(current_app.config["BASE_URL"]).hostname or "localhost"
        list_name = header_value(f"{product.name} release notes")  # a name, not wording
        headers += [
            ("List-Id", f"{list_name} <{product.slug}.{list_host}>"),
            (
                "List-Unsubscribe",
                f"<{unsubscribe}>, <mailto:{mailto}?subject={quote('unsubscribe ' + token)}>",
            ),
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
            ("Precedence", "bulk"),
        ]
    headers.append(("Auto-Submitted", "auto-generated"))
    text = render(f"email/{template}.txt", context)
    html = render(f"email/{template}.html", context)
    return Composed(message_id, assemble(headers, text, html))


def confirmation(row: OutboxMessage) -> Composed:
    """The double opt-in message: one link, carrying the preferences that were asked for."""
    subscriber, product = subscriber_of(row), row.product
    preferences = Preferences.from_payload(row.payload or {})
    token = tokens.for_subscriber(Purpose.CONFIRM, subscriber, p=row.payload or {})
    # In the language asked for with it: a known address keeps its own until confirmed.
    locale = preferences.locale or subscriber.locale
    with speaking(locale, product):
        return _envelope(
            product,
            subscriber,
            _("Confirm your subscription to %(product)s release notes", product=product.name),
            "confirm",
            message_id_for(row.id),
            listed=False,
            locale=locale,
            confirm_url=external("subscriptions.confirm", token=token),
            asked=preferences,
        )


# Why one note comes by itself, by the outbox's kind: its subject, and a line above the
# note saying why it came (None: it is simply news, as a translation published later is).
ONE_NOTE = {
    OutboxKind.NOTE: (lazy_gettext("%(product)s %(version)s: %(title)s"), None),
    OutboxKind.AGENT: (
        lazy_gettext("%(product)s: %(title)s"),
        lazy_gettext("The %(product)s support team sent you this note, as it concerns you."),
    ),
    OutboxKind.ESCALATION: (
        lazy_gettext("Action needed: %(title)s"),
        lazy_gettext(
            "Please confirm you have read this: open %(product)s and choose “I understand” "
            "on this notice."
        ),
    ),
}


def release_note(
    subscriber: Subscriber,
    note: Note,
    message_id: str,
    *,
    kind: OutboxKind = OutboxKind.NOTE,
    test: bool = False,
) -> Composed:
    """One note: as it was published, sent by a support agent, or as a notice not yet
    acknowledged (``kind``); marked as a test when it is one."""
    words = localized(note, subscriber)
    product = note.product
    subject, why = ONE_NOTE.get(kind, ONE_NOTE[OutboxKind.NOTE])
    names = {"product": product.name, "version": note.version, "title": words.title}
    with speaking(subscriber.locale, product):
        wording = str(subject) % names
        return _envelope(
            product,
            subscriber,
            _("[Test] %(subject)s", subject=wording) if test else wording,
            "note",
            message_id,
            listed=True,
            locale=subscriber.locale,
            note=words,
            why=str(why) % names if why else None,
        )


def digest(row: OutboxMessage, product: Product, notes: Sequence[Note]) -> Composed:
    """The weekly digest: the notes published since the last one, oldest release first."""
    subscriber = subscriber_of(row)
    entries = [localized(note, subscriber) for note in notes]
    first, last = notes[0].version, notes[-1].version
    with speaking(subscriber.locale, product):
        span = first if first == last else _("%(first)s to %(last)s", first=first, last=last)
        return _envelope(
            product,
            subscriber,
            ngettext(
                "%(product)s %(span)s: %(num)d update this week",
                "%(product)s %(span)s: %(num)d updates this week",
                len(notes),
                product=product.name,
                span=span,
            ),
            "digest",
            message_id_for(row.id),
            listed=True,
            locale=subscriber.locale,
            notes=entries,
        )


def to_team_member(
    to: str, subject: str, template: str, message_id: str, /, **context: Any
) -> Composed:
    """A message from Tidings itself to a team member: no list headers, no unsubscribe
    link (it is about their own account or their products' health). Account mail and
    alerts both come this way; the template's ``context`` may use any name."""
    headers = [
        ("From", formataddr(("Tidings", sender_address()))),
        ("To", to),
        ("Subject", header_value(subject)),
        ("Date", format_datetime(utcnow())),
        ("Message-ID", message_id),
        ("Auto-Submitted", "auto-generated"),
    ]
    context.update(_writing())
    text = render(f"email/{template}.txt", context)
    html = render(f"email/{template}.html", context)
    return Composed(message_id, assemble(headers, text, html))


def alert(row: OutboxMessage, member: TeamMember, episode: Alert) -> Composed:
    """An alert to an owner: the trouble began (``state`` "down" in the payload) or ended
    ("recovered"), with what was seen and a link to the Status page of their product."""
    state = (row.payload or {}).get("state", "down")
    kind = monitoring.AlertKind(episode.kind)
    title = monitoring.TITLES[(kind, state)]
    ended = episode.recovered_at if state == "recovered" else None
    # What an alert says (monitoring's titles and details) is English, so the mail around
    # it is too, whichever request or worker sends it: never a mail in two languages.
    with force_locale(languages.INTERFACE_DEFAULT):
        return to_team_member(
            member.email,
            title,
            "alert",
            message_id_for(row.id),
            title=title,
            state=state,
            alert=episode,
            lasted=monitoring.describe_span(ended - episode.failing_since) if ended else None,
            product=row.product,
            action_url=external("console.status", slug=row.product.slug),
        )
