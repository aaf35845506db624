"""The worker's side of webhooks: claim due deliveries, sign, POST, record the answer.

A delivery is claimed with a compare-and-set UPDATE, so two workers never send one
twice; a claim a dead worker left is taken back when its lease ends. The call carries
its note as it is at the moment of the call, and is skipped if the note no longer
stands as its event announced (``announcements.webhooks.note_to_send``). Anything but a
valid HTTP answer with a 2xx status is retried with backoff, like mail, and kept in the
delivery log.

A call has one deadline, ``TIMEOUT``, from connecting to the answer's last byte: a
socket timeout bounds each read alone, so a receiver sending a header line every few
seconds held a worker for as long as it liked.

A webhook's URL is chosen by a product's owner, not the operator, so the call connects
only to public addresses: the name is resolved and each address checked at connect
time (a name that resolves to a public address when saved and to 127.0.0.1 later is
still refused), redirects are not followed, and calls go direct, not through a proxy.
``WEBHOOK_ALLOW_PRIVATE`` lifts the address check for receivers on the operator's own
network.
"""

from __future__ import annotations

import functools
import http.client
import io
import json
import logging
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from flask import current_app
from sqlalchemy import select, update

from announcements import outbox, webhooks
from announcements.models import (
    OutboxStatus,
    Webhook,
    WebhookDelivery,
    WebhookFormat,
    utcnow,
)
from announcements.serialisation import note_url
from app.database import write_turn
from app.extensions import db

log = logging.getLogger(__name__)

TIMEOUT = 10  # seconds a whole call may take, from connecting to the answer's last byte
MAX_ANSWER = 64 * 1024  # bytes of an answer read; a longer one is not waited for
LEASE = timedelta(minutes=2)
BATCH = 20
USER_AGENT = "Tidings-Webhooks/1"


def _links(product_slug: str, note: dict[str, Any]) -> dict[str, str]:
    base = current_app.config["BASE_URL"]
    changelog = f"{base}/changelog/{quote(product_slug)}"
    permalink = note_url(base, product_slug, str(note["version"]), note["id"])
    return {
        "note": permalink,
        "version": permalink.partition("#")[0],
        "changelog": changelog,
        "feed": f"{changelog}/feed.atom",
    }


@dataclass(frozen=True)
class Call:
    """One call to a webhook: a queued delivery, or a test from the console."""

    webhook: Webhook
    event: str
    delivery_id: int | None  # None for a test call
    created_at: datetime
    note: dict[str, Any]

    @classmethod
    def of(cls, delivery: WebhookDelivery, note: dict[str, Any]) -> Call:
        return cls(delivery.webhook, delivery.event.value, delivery.id, delivery.created_at, note)

    @property
    def is_test(self) -> bool:
        return self.delivery_id is None


def body(call: Call) -> bytes:
    """What the receiver gets: Tidings' JSON, or a Slack incoming-webhook message."""
    product = call.webhook.product
    urls = _links(product.slug, call.note)
    if call.webhook.format is WebhookFormat.SLACK:
        return json.dumps(_slack(product.name, call, urls)).encode()
    return json.dumps(
        {
            "event": call.event,
            "delivery_id": call.delivery_id,
            "test": call.is_test,
            "created_at": call.created_at.isoformat(),
            "product": {"slug": product.slug, "name": product.name},
            "note": {**call.note, "url": urls["note"]},
            "links": urls,
        }
    ).encode()


def _slack_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack(product: str, call: Call, urls: dict[str, str]) -> dict[str, Any]:
    verb = {"note.published": "New", "note.updated": "Updated", "note.archived": "Withdrawn"}
    note = call.note
    action = ("Test: " if call.is_test else "") + verb.get(call.event, call.event)
    headline = f"{product} {note['version']}: {note['title']}"
    excerpt = " ".join(str(note["body_md"]).split())
    if len(excerpt) > 280:
        excerpt = excerpt[:279] + "…"
    label = f"{action} · {note['category']}" + (" · Important" if note.get("important") else "")
    return {
        "text": f"{action}: {headline} {urls['note']}",
        "blocks": [
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": f"*<{urls['note']}|{_slack_text(headline)}>*\n{_slack_text(excerpt)}",
                },
            },
            {"type": "context", "elements": [{"type": "mrkdwn", "text": _slack_text(label)}]},
        ],
    }


class Refused(OSError):
    """The receiver's address is not one Tidings may call."""


class _Deadline:
    """What is left of a call's time; each step of the call (connect, TLS handshake,
    send, every read) waits at most that long."""

    def __init__(self, seconds: float) -> None:
        self.ends = time.monotonic() + seconds

    def left(self) -> float:
        """Seconds left; TimeoutError once there are none."""
        left = self.ends - time.monotonic()
        if left <= 0:
            raise TimeoutError
        return left


def _connect(
    deadline: _Deadline,
    public_only: bool,
    address: tuple[str, int],
    timeout: object = None,
    source_address: object = None,
) -> socket.socket:
    """socket.create_connection within ``deadline`` (which stands for ``timeout``) and, when
    ``public_only``, to a public address only: each address the name resolves to is
    checked, and the socket connects to the address that was checked."""
    host, port = address
    # Name resolution cannot be cut short; the resolver's own timeouts bound it.
    candidates = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    if public_only and not all(webhooks.is_public(str(info[4][0])) for info in candidates):
        # No address in the message: it is shown to the product's owner, who must not
        # learn what names inside the operator's network resolve to.
        raise Refused(f"{host} resolves to an address that {webhooks.PRIVATE}")
    last: OSError = OSError(f"{host} has no address")
    for family, kind, protocol, _name, target in candidates:
        connection = socket.socket(family, kind, protocol)
        try:
            connection.settimeout(deadline.left())
            connection.connect(target)
            # The TLS handshake, if any, comes next; CPython gives it the socket's
            # timeout in all, not per read.
            connection.settimeout(deadline.left())
        except OSError as error:
            connection.close()
            last = error
            continue
        return connection
    raise last


class _Reader(io.RawIOBase):
    """An answer's bytes off its socket, each read given only the time the call has left."""

    def __init__(self, raw: io.RawIOBase, sock: socket.socket, deadline: _Deadline) -> None:
        super().__init__()
        self._raw, self._sock, self._deadline = raw, sock, deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        self._sock.settimeout(self._deadline.left())
        return self._raw.readinto(buffer)

    def close(self) -> None:
        self._raw.close()
        super().close()


class _Answer(http.client.HTTPResponse):
    """An HTTP answer whose status line, headers and body are read within the deadline."""

    def __init__(self, sock: socket.socket, *args: Any, deadline: _Deadline, **kwargs: Any) -> None:
        super().__init__(sock, *args, **kwargs)
        self.fp = io.BufferedReader(_Reader(self.fp.detach(), sock, deadline))


def _connection(url: str, deadline: _Deadline) -> http.client.HTTPConnection:
    """A connection to ``url``'s host, direct (never through a proxy), within ``deadline``."""
    parts = urlsplit(url)
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = kind(parts.hostname or "", parts.port or kind.default_port)
    public_only = not current_app.config["WEBHOOK_ALLOW_PRIVATE"]
    # http.client opens its socket and reads its answer through these two attributes,
    # which its stubs do not declare as replaceable.
    connection._create_connection = functools.partial(_connect, deadline, public_only)  # type: ignore[attr-defined]
    connection.response_class = functools.partial(_Answer, deadline=deadline)  # type: ignore[assignment]
    return connection


def _exchange(url: str, data: bytes, headers: dict[str, str]) -> tuple[int, str, str]:
    """POST ``data``; the answer's status, Location header and start of its body."""
    parts = urlsplit(url)
    connection = _connection(url, _Deadline(TIMEOUT))
    try:
        connection.request(
            "POST", urlunsplit(("", "", parts.path or "/", parts.query, "")), data, headers
        )
        answer = connection.getresponse()
        text = answer.read(MAX_ANSWER)[:300].decode("utf-8", "replace")
        return answer.status, answer.getheader("Location", "elsewhere"), text
    finally:
        connection.close()


def _post(call: Call) -> tuple[int | None, str]:
    """POST the call; the status (None when no valid answer came) and an error, if any."""
    data = body(call)
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "Connection": "close",  # one call per connection; the receiver closes it after answering
        "User-Agent": USER_AGENT,
        "X-Tidings-Event": call.event,
        "X-Tidings-Delivery": "test" if call.is_test else str(call.delivery_id),
        "X-Tidings-Timestamp": str(timestamp),
        "X-Tidings-Signature": webhooks.signature(call.webhook.secret, timestamp, data),
    }
    try:
        status, location, text = _exchange(call.webhook.url, data, headers)
    except Refused as error:
        return None, str(error)
    except TimeoutError:
        return None, f"no complete answer within {TIMEOUT} s"
    except (OSError, ValueError) as error:
        return None, f"no answer: {error}"
    except http.client.HTTPException as error:
        return None, f"not a valid HTTP answer ({type(error).__name__})"
    if 300 <= status < 400:
        return status, f"HTTP {status}: redirects to {location}, which is not followed"
    if not succeeded(status):
        return status, f"HTTP {status}: {' '.join(text.split())}".strip()
    return status, ""


def _claim(worker: str) -> list[int]:
    now = utcnow()
    with write_turn():
        db.session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.status == OutboxStatus.SENDING)
            .where(WebhookDelivery.next_attempt_at < now)
            .values(status=OutboxStatus.QUEUED, claimed_by=None)
        )
        due = db.session.scalars(
            select(WebhookDelivery.id)
            .where(WebhookDelivery.status == OutboxStatus.QUEUED)
            .where(WebhookDelivery.next_attempt_at <= now)
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
            .limit(BATCH)
        ).all()
        claimed = []
        for delivery_id in due:
            result = db.session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id == delivery_id)
                .where(WebhookDelivery.status == OutboxStatus.QUEUED)
                .values(status=OutboxStatus.SENDING, claimed_by=worker, next_attempt_at=now + LEASE)
            )
            if getattr(result, "rowcount", 0) == 1:
                claimed.append(delivery_id)
        db.session.commit()
    return claimed


def succeeded(status: int | None) -> bool:
    """Whether the receiver took the call: a valid HTTP answer with a 2xx status."""
    return status is not None and 200 <= status < 300


def timed(call: Call) -> tuple[int | None, str, int]:
    """Make the call: the answer's status, the error if any, and milliseconds taken."""
    started = time.monotonic()
    status, error = _post(call)
    return status, error, int((time.monotonic() - started) * 1000)


def _send(delivery: WebhookDelivery) -> str:
    try:
        note = webhooks.note_to_send(delivery, utcnow())
    except webhooks.Stale as stale:
        delivery.status, delivery.last_error = OutboxStatus.SKIPPED, str(stale)
        return "skipped"
    status, error, delivery.duration_ms = timed(Call.of(delivery, note))
    delivery.response_status = status
    delivery.attempts += 1
    if succeeded(status):
        delivery.status, delivery.delivered_at, delivery.last_error = (
            OutboxStatus.SENT,
            utcnow(),
            None,
        )
        return "sent"
    delivery.last_error = error
    if delivery.attempts >= outbox.MAX_ATTEMPTS:
        delivery.status = OutboxStatus.FAILED
        return "failed"
    delivery.status = OutboxStatus.QUEUED
    delivery.next_attempt_at = utcnow() + outbox.retry_delay(delivery.attempts)
    return "retried"


def deliver_due() -> dict[str, int]:
    """Send every due delivery; returns how many went each way."""
    worker = outbox.worker_name()
    counts = {"sent": 0, "retried": 0, "failed": 0, "skipped": 0}
    while claimed := _claim(worker):
        for delivery_id in claimed:
            delivery = db.session.get(WebhookDelivery, delivery_id)
            if delivery is None:
                continue
            outcome = _send(delivery)
            delivery.claimed_by = None
            with write_turn():
                db.session.commit()
            counts[outcome] += 1
    return counts
