"""The messages themselves: multipart/alternative, list headers, per-recipient links.

Templates live in ``templates/email/``: a plain-text part and an HTML part (inline
styles, table layout, 600 px wide, readable without images) for each kind of mail.
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from email.header import Header
from email.utils import format_datetime, formataddr, parseaddr
from typing import Any
from urllib.parse import quote, urlsplit

from flask import current_app
from werkzeug.routing import Map, MapAdapter

from announcements import monitoring
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
from app.mail import tokens
from app.mail.tokens import Purpose


@dataclass(frozen=True)
class Localized:
    """A note's words in the language a subscriber reads."""

    note: Note
    title: str
    body_md: str
    body_html: str
    read_url: str


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
    title, body_md, body_html = note.title, note.body_md, note.body_html
    for translation in note.translations:
        if subscriber.locale and translation.locale == subscriber.locale:
            title, body_md, body_html = (
                translation.title,
                translation.body_md,
                translation.body_html,
            )
    token = tokens.for_subscriber(Purpose.READ, subscriber, n=note.id)
    return Localized(
        note=note,
        title=title,
        body_md=body_md,
        body_html=body_html,
        read_url=external("subscriptions.read", token=token),
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


def header_value(value: str) -> str:
    """One line, whatever was typed, and RFC 2047 words where it is not plain ASCII."""
    value = " ".join(value.split())
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
    **context: Any,
) -> Composed:
    """A message from the product to the subscriber, with both parts rendered from
    ``template`` and, when ``listed``, the list and one-click unsubscribe headers."""
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
        changelog_url=external("public.changelog", slug=product.slug),
    )
    if listed:
        token = tokens.for_subscriber(Purpose.UNSUBSCRIBE, subscriber)
        unsubscribe = external("subscriptions.unsubscribe", token=token)
        context.update(unsubscribe_url=unsubscribe, preferences_url=unsubscribe + "#preferences")
        mailto = current_app.config["MAIL_UNSUBSCRIBE_TO"] or sender_address()
        list_host = urlsplit(current_app.config["BASE_URL"]).hostname or "localhost"
        list_name = header_value(f"{product.name} release notes")
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
    return _envelope(
        product,
        subscriber,
        f"Confirm your subscription to {product.name} release notes",
        "confirm",
        message_id_for(row.id),
        listed=False,
        confirm_url=external("subscriptions.confirm", token=token),
        asked=preferences,
    )


# Why one note comes by itself, by the outbox's kind: its subject, and a line above the
# note saying why it came (None: it is simply news).
ONE_NOTE = {
    OutboxKind.NOTE: ("{product} {version}: {title}", None),
    OutboxKind.AGENT: (
        "{product}: {title}",
        "The {product} support team sent you this note, as it concerns you.",
    ),
    OutboxKind.ESCALATION: (
        "Action needed: {title}",
        "Please confirm you have read this: open {product} and choose “I understand” on "
        "this notice.",
    ),
}


def release_note(
    subscriber: Subscriber,
    note: Note,
    message_id: str,
    *,
    kind: OutboxKind = OutboxKind.NOTE,
    subject_prefix: str = "",
) -> Composed:
    """One note: as it was published, sent by a support agent, or as a notice not yet
    acknowledged (``kind``)."""
    words = localized(note, subscriber)
    product = note.product
    subject, why = ONE_NOTE[kind]
    names = {"product": product.name, "version": note.version, "title": words.title}
    return _envelope(
        product,
        subscriber,
        subject_prefix + subject.format(**names),
        "note",
        message_id,
        listed=True,
        note=words,
        why=why.format(**names) if why else None,
    )


def digest(row: OutboxMessage, product: Product, notes: Sequence[Note]) -> Composed:
    """The weekly digest: the notes published since the last one, oldest release first."""
    subscriber = subscriber_of(row)
    entries = [localized(note, subscriber) for note in notes]
    first, last = notes[0].version, notes[-1].version
    span = first if first == last else f"{first} to {last}"
    count = f"{len(notes)} update" + ("" if len(notes) == 1 else "s")
    return _envelope(
        product,
        subscriber,
        f"{product.name} {span}: {count} this week",
        "digest",
        message_id_for(row.id),
        listed=True,
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
