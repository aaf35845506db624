"""The messages themselves: multipart/alternative, list headers, per-recipient links.

Templates live in ``templates/email/``: a plain-text part and an HTML part (inline
styles, table layout, 600 px wide, readable without images) for each kind of mail.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, parseaddr
from typing import Any
from urllib.parse import quote, urlsplit

from flask import current_app, render_template

from announcements.catalogue import note_url
from announcements.models import Note, OutboxMessage, Product, Subscriber, utcnow
from announcements.subscriptions import Preferences
from app.mail import tokens
from app.mail.tokens import Purpose

# Lines of headers may run to RFC 5322's 998 characters: List-Unsubscribe holds URLs with
# no place to fold, and at the default 78 Python would turn them into encoded words that
# mail clients do not read. The parts are encoded (76-character lines) before it applies.
SENDING_POLICY = policy.default.clone(max_line_length=998)


@dataclass(frozen=True)
class Localized:
    """A note's words in the language a subscriber reads."""

    note: Note
    title: str
    body_md: str
    body_html: str
    url: str
    read_url: str


def _external(endpoint: str, **values: Any) -> str:
    """An absolute URL on ``BASE_URL``; mail is composed outside any request."""
    base = urlsplit(current_app.config["BASE_URL"])
    adapter = current_app.url_map.bind(
        base.netloc, script_name=base.path or "/", url_scheme=base.scheme
    )
    return str(adapter.build(endpoint, values, force_external=True))


def sender_address() -> str:
    """The bare address of ``MAIL_FROM``, used as the envelope sender."""
    return parseaddr(current_app.config["MAIL_FROM"])[1]


def _message_id(row_id: int) -> str:
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
    base_url = current_app.config["BASE_URL"]
    token = tokens.make(Purpose.READ, {"s": subscriber.id, "n": note.id})
    return Localized(
        note=note,
        title=title,
        body_md=body_md,
        body_html=body_html,
        url=note_url(base_url, note.product.slug, note.version, note.id),
        read_url=_external("subscriptions.read", token=token),
    )


def _envelope(
    product: Product,
    subscriber: Subscriber,
    subject: str,
    template: str,
    row_id: int,
    *,
    listed: bool,
    **context: Any,
) -> EmailMessage:
    """A message from the product to the subscriber, with both parts rendered from
    ``template`` and, when ``listed``, the list and one-click unsubscribe headers."""
    message = EmailMessage()
    name = product.email_from_name or product.name
    message["From"] = formataddr((name, sender_address()))
    message["To"] = Address(addr_spec=subscriber.email)
    if product.email_reply_to:
        message["Reply-To"] = product.email_reply_to
    message["Subject"] = subject
    message["Date"] = format_datetime(utcnow())
    message["Message-ID"] = _message_id(row_id)
    context.update(
        product=product,
        subscriber=subscriber,
        preferences=Preferences.of(subscriber),
        changelog_url=_external("public.changelog", slug=product.slug),
    )
    if listed:
        token = tokens.make(Purpose.UNSUBSCRIBE, {"s": subscriber.id})
        unsubscribe = _external("subscriptions.unsubscribe", token=token)
        context.update(
            unsubscribe_url=unsubscribe,
            preferences_url=unsubscribe + "#preferences",
        )
        mailto = current_app.config["MAIL_UNSUBSCRIBE_TO"] or sender_address()
        list_host = urlsplit(current_app.config["BASE_URL"]).hostname or "localhost"
        message["List-Id"] = f"{product.name} release notes <{product.slug}.{list_host}>"
        message["List-Unsubscribe"] = (
            f"<{unsubscribe}>, <mailto:{mailto}?subject={quote('unsubscribe ' + token)}>"
        )
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        message["Precedence"] = "bulk"
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(render_template(f"email/{template}.txt", **context))
    message.add_alternative(render_template(f"email/{template}.html", **context), subtype="html")
    message.policy = SENDING_POLICY
    return message


def confirmation(row: OutboxMessage) -> EmailMessage:
    """The double opt-in message: one link, carrying the preferences that were asked for."""
    subscriber, product = row.subscriber, row.product
    preferences = Preferences.from_payload(row.payload or {})
    token = tokens.make(Purpose.CONFIRM, {"s": subscriber.id, "p": row.payload or {}})
    return _envelope(
        product,
        subscriber,
        f"Confirm your subscription to {product.name} release notes",
        "confirm",
        row.id,
        listed=False,
        confirm_url=_external("subscriptions.confirm", token=token),
        asked=preferences,
    )


def release_note(row: OutboxMessage, note: Note) -> EmailMessage:
    """One note, as it was published."""
    subscriber = row.subscriber
    words = localized(note, subscriber)
    product = note.product
    return _envelope(
        product,
        subscriber,
        f"{product.name} {note.version}: {words.title}",
        "note",
        row.id,
        listed=True,
        note=words,
    )


def digest(row: OutboxMessage, product: Product, notes: Sequence[Note]) -> EmailMessage:
    """The weekly digest: the notes published since the last one, oldest release first."""
    subscriber = row.subscriber
    entries = [localized(note, subscriber) for note in notes]
    first, last = notes[0].version, notes[-1].version
    span = first if first == last else f"{first} to {last}"
    count = f"{len(notes)} update" + ("" if len(notes) == 1 else "s")
    return _envelope(
        product,
        subscriber,
        f"{product.name} {span}: {count} this week",
        "digest",
        row.id,
        listed=True,
        notes=entries,
    )
