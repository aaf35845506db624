"""The worker's side of webhooks: claim due deliveries, sign, POST, record the answer.

A delivery is claimed with a compare-and-set UPDATE, so two workers never send one
twice; a claim a dead worker left is taken back when its lease ends. The call carries
its note as it is at the moment of the call, and is skipped if the note no longer
stands as its event announced (``announcements.webhooks.note_to_send``). Anything but a
valid HTTP answer with a 2xx status is retried with backoff, like mail, and kept in the
delivery log.

A webhook's URL is chosen by a product's owner, not the operator, so the call connects
only to public addresses: the name is resolved and each address checked at connect
time (a name that resolves to a public address when saved and to 127.0.0.1 later is
still refused), redirects are not followed, and calls go direct, not through a proxy.
``WEBHOOK_ALLOW_PRIVATE`` lifts the address check for receivers on the operator's own
network.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from flask import current_app
from sqlalchemy import select, update

from announcements import outbox, webhooks
from announcements.catalogue import note_url
from announcements.models import (
    OutboxStatus,
    Webhook,
    WebhookDelivery,
    WebhookFormat,
    utcnow,
)
from app.database import write_turn
from app.extensions import db

log = logging.getLogger(__name__)

TIMEOUT = 10  # seconds a receiver has to answer
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


def _connect_public(
    address: tuple[str, int], timeout: float | None = None, source_address: object = None
) -> socket.socket:
    """socket.create_connection, to a public address only: each address the name
    resolves to is checked, and the socket connects to the address that was checked."""
    host, port = address
    candidates = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    refused = [info[4][0] for info in candidates if not webhooks.is_public(str(info[4][0]))]
    if refused:
        raise Refused(f"{host} resolves to {refused[0]}, which {webhooks.PRIVATE}")
    last: OSError = OSError(f"{host} has no address")
    for family, kind, protocol, _name, target in candidates:
        connection = socket.socket(family, kind, protocol)
        try:
            connection.settimeout(timeout)
            connection.connect(target)
        except OSError as error:
            connection.close()
            last = error
            continue
        return connection
    raise last


def _public(kind: type[http.client.HTTPConnection]) -> Callable[..., http.client.HTTPConnection]:
    """``kind`` of connection, made to connect through :func:`_connect_public`."""

    def make(*args: Any, **kwargs: Any) -> http.client.HTTPConnection:
        connection = kind(*args, **kwargs)
        connection._create_connection = _connect_public  # type: ignore[attr-defined]
        return connection

    return make


class _PublicHTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_public(http.client.HTTPConnection), req)


class _PublicHTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_public(http.client.HTTPSConnection), req, context=self._context)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *_args: object, **_kwargs: object) -> None:
        return None  # the 3xx answer is the result: an error, with its Location


def _opener() -> urllib.request.OpenerDirector:
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({}), _NoRedirects()]
    if not current_app.config["WEBHOOK_ALLOW_PRIVATE"]:
        handlers += [_PublicHTTPHandler(), _PublicHTTPSHandler()]
    return urllib.request.build_opener(*handlers)


def _post(call: Call) -> tuple[int | None, str]:
    """POST the call; the status (None when no answer came) and an error, if any."""
    data = body(call)
    timestamp = int(time.time())
    request = urllib.request.Request(  # noqa: S310 - the URL was checked to be http(s)
        call.webhook.url,
        data=data,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Tidings-Event": call.event,
            "X-Tidings-Delivery": "test" if call.is_test else str(call.delivery_id),
            "X-Tidings-Timestamp": str(timestamp),
            "X-Tidings-Signature": webhooks.signature(call.webhook.secret, timestamp, data),
        },
    )
    try:
        with _opener().open(request, timeout=TIMEOUT) as answer:
            return answer.status, ""
    except urllib.error.HTTPError as error:
        if 300 <= error.code < 400:
            where = error.headers.get("Location", "elsewhere")
            return error.code, f"HTTP {error.code}: redirects to {where}, which is not followed"
        text = error.read(300).decode("utf-8", "replace")
        return error.code, f"HTTP {error.code}: {' '.join(text.split())}".strip()
    except (OSError, ValueError) as error:
        return None, f"no answer: {getattr(error, 'reason', error)}"


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
    """Whether the receiver took the call: any 2xx answer."""
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
