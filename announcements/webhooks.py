"""Webhooks: URLs a product calls when a note is published, updated or archived.

An event writes one delivery per subscribed webhook in the same transaction as the
change; the worker sends it (``app.webhooks``), signed with the webhook's secret,
retrying with backoff. The call carries the note as it is when the call is made, not as
it was at the event: a note made internal or redacted while its call waits (a scheduled
note, a receiver that is down) must not go out with its old text. So a call goes only
while the note is still in the state its event announces, and never for an internal
note; otherwise it is skipped, saying why in the delivery log. A note scheduled for
later is announced when it goes live: its delivery waits until then.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select, update
from sqlalchemy.orm import Session, selectinload

from announcements import audit
from announcements.errors import InvalidTransition, NotFound, ValidationFailed
from announcements.models import (
    Category,
    Note,
    NoteStatus,
    OutboxStatus,
    Product,
    TeamMember,
    Webhook,
    WebhookDelivery,
    WebhookEvent,
    WebhookFormat,
    status_clause,
)

MAX_URL = 2000
MAX_WEBHOOKS = 20
PRIVATE = (
    "is on a private network; Tidings calls only public addresses unless the operator "
    "sets WEBHOOK_ALLOW_PRIVATE"
)


def new_secret() -> str:
    return "whsec_" + secrets.token_hex(24)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The X-Tidings-Signature value: HMAC-SHA256 of "<timestamp>.<body>", in hex."""
    signed = str(timestamp).encode() + b"." + body
    return "v1=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # the well-known prefix, RFC 6052


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one reaches through a translator or relay: IPv4-mapped,
    NAT64 (in the last 32 bits) or 6to4 (RFC 3056). ``ipaddress`` calls NAT64 and 6to4
    addresses global whatever the IPv4 address inside, so ``64:ff9b::7f00:1`` would
    reach 127.0.0.1 from a network with NAT64."""
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.ipv4_mapped or address.sixtofour


def is_public(address: str) -> bool:
    """Whether an IP address is reachable on the internet at large: not loopback, a
    private or link-local network (where cloud metadata lives), multicast nor reserved.
    An IPv6 address that embeds an IPv4 one (mapped, NAT64, 6to4) is judged by that."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and (embedded := _embedded_ipv4(ip)):
        ip = embedded
    # Reserved holds all of ::/8, so IPv4-compatible addresses (::7f00:1) and the local
    # NAT64 prefix 64:ff9b:1::/48 (RFC 8215), whose IPv4 address sits where each network
    # chooses, are refused whole; ``is_global`` alone lets them through.
    return ip.is_global and not ip.is_reserved and not ip.is_multicast


def _names_private_host(host: str) -> bool:
    """Whether ``host``, as written, is plainly not public; a name is checked again, on
    every call, by the addresses it resolves to."""
    host = host.rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return not is_public(host)
    except ValueError:  # a name, not an address
        return False


def _validate(
    url: str, events: Iterable[str], format: str, *, allow_private: bool
) -> tuple[str, list[str], WebhookFormat]:
    errors: dict[str, str] = {}
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        errors["url"] = "Use a full address such as https://hooks.example.com/tidings."
    elif len(url) > MAX_URL:
        errors["url"] = f"Keep the address under {MAX_URL} characters."
    elif parts.username or parts.password:
        errors["url"] = "Put no user name or password in the address; verify the signature."
    elif not allow_private and _names_private_host(parts.hostname):
        errors["url"] = f"{parts.hostname} {PRIVATE}."
    known = {event.value for event in WebhookEvent}
    chosen = [event for event in dict.fromkeys(events) if event]
    if not chosen or any(event not in known for event in chosen):
        errors["events"] = "Choose when to call it: published, updated or archived."
    if format not in {f.value for f in WebhookFormat}:
        errors["format"] = "Choose JSON or Slack."
    if errors:
        raise ValidationFailed(errors)
    return url, chosen, WebhookFormat(format)


def create(
    session: Session,
    product: Product,
    url: str,
    events: Iterable[str],
    format: str,
    *,
    by: TeamMember | None,
    now: datetime,
    allow_private: bool = False,
) -> Webhook:
    """Add a webhook; ``allow_private`` lets it name a loopback or private address."""
    url, chosen, kind = _validate(url, events, format, allow_private=allow_private)
    if len(for_product(session, product)) >= MAX_WEBHOOKS:
        raise ValidationFailed({"url": f"A product has at most {MAX_WEBHOOKS} webhooks."})
    webhook = Webhook(
        product_id=product.id,
        url=url,
        secret=new_secret(),
        format=kind,
        events=chosen,
        created_at=now,
    )
    session.add(webhook)
    audit.record(session, product, by, "webhook.created", f"Added webhook {url}", now=now)
    session.commit()
    return webhook


def set_active(
    session: Session, webhook: Webhook, active: bool, *, by: TeamMember | None, now: datetime
) -> None:
    webhook.is_active = active
    state = "Resumed" if active else "Paused"
    audit.record(
        session, webhook.product, by, "webhook.updated", f"{state} webhook {webhook.url}", now=now
    )
    session.commit()


def delete(session: Session, webhook: Webhook, *, by: TeamMember | None, now: datetime) -> None:
    product, url = webhook.product, webhook.url
    session.delete(webhook)
    audit.record(session, product, by, "webhook.deleted", f"Removed webhook {url}", now=now)
    session.commit()


def retry(
    session: Session,
    product: Product,
    delivery_id: int,
    *,
    by: TeamMember | None,
    now: datetime,
) -> WebhookDelivery:
    """Send a failed call once more, or a call waiting out its backoff now."""
    delivery = session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.webhook.product_id != product.id:
        raise NotFound("There is no such webhook call in this product.")
    if not delivery.retriable:
        raise InvalidTransition(
            f"This call is {delivery.status.value} after {delivery.attempts} tries; "
            "only a failed call, or one waiting to try again, can be retried."
        )
    delivery.status, delivery.next_attempt_at = OutboxStatus.QUEUED, now
    audit.record(
        session,
        product,
        by,
        "webhook.retried",
        f"Retried the {delivery.event.value} call to {delivery.webhook.url}",
        now=now,
    )
    session.commit()
    return delivery


def for_product(session: Session, product: Product) -> list[Webhook]:
    return list(
        session.scalars(
            select(Webhook).where(Webhook.product_id == product.id).order_by(Webhook.id)
        )
    )


def recent_deliveries(session: Session, product: Product, limit: int = 50) -> list[WebhookDelivery]:
    """The latest calls, with the notes the log names them by (one query, not one each)."""
    return list(
        session.scalars(
            select(WebhookDelivery)
            .join(Webhook)
            .where(Webhook.product_id == product.id)
            .options(selectinload(WebhookDelivery.note))
            .order_by(WebhookDelivery.id.desc())
            .limit(limit)
        )
    )


def snapshot(note: Note) -> dict[str, Any]:
    """The note as an event carries it; links are added when it is sent."""
    return {
        "id": note.id,
        "version": note.version,
        "title": note.title,
        "category": note.category.value,
        "important": note.is_important,
        "body_md": note.body_md,
        "html": note.body_html,
        "published_at": note.published_at.isoformat() if note.published_at else None,
        "updated_at": note.updated_at.isoformat(),
        "archived_at": note.archived_at.isoformat() if note.archived_at else None,
    }


def sample(session: Session, product: Product, *, now: datetime) -> dict[str, Any]:
    """What a test call carries: the product's latest public note, or a made-up one."""
    latest = session.scalars(
        select(Note)
        .where(
            Note.product_id == product.id,
            status_clause(NoteStatus.PUBLISHED, now),
            Note.is_internal.is_(False),
        )
        .order_by(Note.published_at.desc(), Note.id.desc())
        .limit(1)
    ).first()
    if latest is not None:
        return snapshot(latest)
    return {
        "id": 0,
        "version": "1.0.0",
        "title": "A test call from Tidings",
        "category": Category.ADDED.value,
        "important": False,
        "body_md": "Your webhook works. Real calls carry the note that was published.",
        "html": "<p>Your webhook works. Real calls carry the note that was published.</p>",
        "published_at": now.isoformat(),
        "updated_at": now.isoformat(),
        "archived_at": None,
    }


def queue(session: Session, note: Note, event: WebhookEvent, *, at: datetime, now: datetime) -> int:
    """Write a delivery of ``event`` for each active webhook that wants it, due ``at``, in
    place of any such delivery still waiting: a call carries the note as it is when made,
    so two waiting calls would say the same thing twice (a note rescheduled, or archived
    and restored before it went live, would be announced at both times)."""
    if note.is_internal:
        return 0
    hooks = [
        webhook
        for webhook in session.scalars(
            select(Webhook).where(
                Webhook.product_id == note.product_id, Webhook.is_active.is_(True)
            )
        )
        if event.value in webhook.events
    ]
    if hooks:
        # Before the new deliveries are added, so that this does not skip them too.
        session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.note_id == note.id,
                WebhookDelivery.event == event,
                WebhookDelivery.status == OutboxStatus.QUEUED,
                WebhookDelivery.webhook_id.in_([webhook.id for webhook in hooks]),
            )
            .values(status=OutboxStatus.SKIPPED, last_error="replaced by a later call")
        )
    for webhook in hooks:
        session.add(
            WebhookDelivery(
                webhook=webhook, note=note, event=event, created_at=now, next_attempt_at=at
            )
        )
    return len(hooks)


def announce(
    session: Session,
    note: Note,
    before: NoteStatus | None,
    *,
    now: datetime,
    edited: bool = False,
    rescheduled: bool = False,
) -> None:
    """Queue what a change to ``note`` means for the webhooks: call after the change."""
    after = note.status_at(now)
    if after is NoteStatus.PUBLISHED and before is not NoteStatus.PUBLISHED:
        queue(session, note, WebhookEvent.PUBLISHED, at=now, now=now)
    elif note.published_at and after is NoteStatus.SCHEDULED:
        if before is not NoteStatus.SCHEDULED or rescheduled:
            queue(session, note, WebhookEvent.PUBLISHED, at=note.published_at, now=now)
    elif after is NoteStatus.PUBLISHED and edited:
        queue(session, note, WebhookEvent.UPDATED, at=now, now=now)
    elif after is NoteStatus.ARCHIVED and before is NoteStatus.PUBLISHED:
        queue(session, note, WebhookEvent.ARCHIVED, at=now, now=now)


class Stale(Exception):
    """A delivery that must not go out: its note is no longer what its event announced."""


# Why a call is not made, by the state its note is in when the call is due.
_NOT_SENT = {
    NoteStatus.DRAFT: "the note is a draft now",
    NoteStatus.SCHEDULED: "the note is not live yet",
    NoteStatus.PUBLISHED: "the note was restored",  # reached only by an archived event
    NoteStatus.ARCHIVED: "the note is archived now",
}


def note_to_send(delivery: WebhookDelivery, now: datetime) -> dict[str, Any]:
    """The note a delivery carries, read at ``now``; Stale says why it must not be sent:
    the note is internal, deleted, or not in the state its event announces (published,
    or for ``note.archived``, archived)."""
    note = delivery.note
    if note is None:
        raise Stale("the note was deleted")
    if note.is_internal:
        raise Stale("the note is internal now")
    announced = (
        NoteStatus.ARCHIVED if delivery.event is WebhookEvent.ARCHIVED else NoteStatus.PUBLISHED
    )
    status = note.status_at(now)
    if status is not announced:
        raise Stale(_NOT_SENT[status])
    return snapshot(note)
