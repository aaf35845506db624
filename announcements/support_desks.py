"""Help-desk connections: each desk's way of proving a delivery, reading its payloads as
tickets, and the steps that set a desk up to send them.

A connection has an inbound URL with a long random token, ``/api/v1/support/inbound/
<id>/<token>``. The token is always checked; the desks that sign also prove each body:

- Zendesk: ``X-Zendesk-Webhook-Signature`` is base64 HMAC-SHA256 of the
  ``X-Zendesk-Webhook-Signature-Timestamp`` followed by the body, with the webhook's
  signing secret, and a timestamp more than five minutes from now is a replay. (An older
  revision of Zendesk's page says body then timestamp; its own example and the
  published test vectors agree with timestamp then body.)
- Intercom: ``X-Hub-Signature: sha1=`` and the hex HMAC-SHA1 of the body, keyed with the
  app's client secret (``hub_secret`` in the older subscriptions API).
- Help Scout: ``X-HelpScout-Signature`` is base64 HMAC-SHA1 of the body, keyed with the
  secret Tidings made and the owner typed into Help Scout.
- Freshdesk signs nothing: the token in the URL is the whole credential.

Zendesk and Intercom make their signing secrets themselves, so a new connection to them
refuses every delivery until the owner pastes the secret in (:func:`set_secret`). Every
comparison takes the same time however much of it matches.

A payload becomes the fields :func:`tickets.check_ticket` reads, or is ignored with a
reason (a user event, a ping); nothing of a ticket's body or of its requester's name is
read, and the address only long enough to key it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from announcements import audit, reads, tickets
from announcements.errors import Malformed, Unauthenticated, ValidationFailed
from announcements.models import (
    Product,
    SupportConnection,
    SupportDesk,
    TeamMember,
    utcnow,
)

# A Zendesk delivery signed longer ago than this, or this far ahead, is refused as a replay.
ZENDESK_TOLERANCE = timedelta(minutes=5)
TOKEN_BYTES = 32  # 43 characters in the URL
# Help Scout's Secret Key field takes up to 40 characters: 30 random bytes in base64.
GENERATED_SECRET_BYTES = 30
MAX_SECRET_LENGTH = 200
# The desks that make the signing secret themselves; the owner pastes it into Tidings.
DESK_MAKES_SECRET = frozenset({SupportDesk.ZENDESK, SupportDesk.INTERCOM})
# Intercom notifications that open a conversation; others carry one already open.
INTERCOM_OPENING = frozenset({"conversation.user.created", "conversation.admin.single.created"})

# The body of the Zendesk trigger in the set-up steps: every field a ticket needs, and
# nothing of the ticket's text. Zendesk fills the placeholders in.
ZENDESK_TRIGGER_BODY = json.dumps(
    {
        "ticket": {
            "id": "{{ticket.id}}",
            "created_at": "{{ticket.created_at_with_timestamp}}",
            "requester_external_id": "{{ticket.requester.external_id}}",
            "requester_email": "{{ticket.requester.email}}",
            "tags": "{{ticket.tags}}",
            "subject": "{{ticket.title}}",
            "app_version": "",
        }
    },
    indent=2,
)
# The body of the Freshdesk rule's webhook: Freshdesk's own field names, no description.
FRESHDESK_BODY = json.dumps(
    {
        "freshdesk_webhook": {
            "triggered_event": "{{triggered_event}}",
            "ticket_id": "{{ticket.id}}",
            "ticket_subject": "{{ticket.subject}}",
            "ticket_tags": "{{ticket.tags}}",
            "requester_email": "{{ticket.requester.email}}",
        }
    },
    indent=2,
)


@dataclass(frozen=True)
class Step:
    """A set-up step: its words, and the JSON body it says to paste, if any."""

    text: str
    body: str | None = None


SETUP_STEPS: dict[SupportDesk, list[Step]] = {
    SupportDesk.ZENDESK: [
        Step(
            "In Zendesk Admin Center, open Apps and integrations → Actions and webhooks → "
            "Webhooks and click Create webhook."
        ),
        Step(
            "Choose “Trigger or automation” as the way to connect. Set Endpoint URL to this "
            "connection's inbound URL, Request method to POST, Request format to JSON and "
            "Authentication to None, then click Create webhook."
        ),
        Step(
            "On the webhook's page, under Signing secret, click Reveal secret, copy it and paste "
            "it into Tidings as this connection's secret. Zendesk makes the secret; Tidings "
            "refuses deliveries until it has it."
        ),
        Step(
            "Open Objects and rules → Business rules → Triggers and click Create trigger. Name it "
            "“Tidings” and, under Conditions → Meet ALL of the following conditions, add "
            "“Ticket | Is | Created”."
        ),
        Step(
            "Under Actions, add “Notify by → Active webhook”, choose the webhook, and paste "
            "this JSON body:",
            ZENDESK_TRIGGER_BODY,
        ),
        Step(
            "If your tickets have an App version field, put its placeholder, "
            '{{ticket.ticket_field_<field id>}}, in the empty "app_version" value.'
        ),
        Step(
            "Click Create. Each new ticket now reaches Tidings within seconds. To keep tags "
            "current as agents change them, add “Ticket | Is | Updated” under Meet ANY: each "
            "update is one more delivery, and one that changes nothing is counted as unchanged."
        ),
    ],
    SupportDesk.INTERCOM: [
        Step(
            "In Intercom, open Settings → Integrations → Developer Hub and open your app, or "
            "create one with New app."
        ),
        Step(
            "Under Configure → Webhooks, set Endpoint URL to this connection's inbound URL and "
            "select the topics conversation.user.created, conversation.user.replied and "
            "conversation.admin.replied (the replies keep tags current). Save."
        ),
        Step(
            "Intercom signs notifications with the app's client secret: copy it from "
            "Configure → Basic information → Client secret and paste it into Tidings as this "
            "connection's secret. Tidings refuses deliveries until it has it."
        ),
        Step(
            "Send a test request from the Webhooks page: Tidings answers Intercom's ping with "
            "202 and ignores it."
        ),
        Step(
            "Conversations are matched to your users by the user_id your product boots the "
            "Messenger with; a lead, who has none, is matched by address."
        ),
    ],
    SupportDesk.HELPSCOUT: [
        Step(
            "In Help Scout, open Manage → Apps, find Webhooks and click Install App (or open it "
            "if it is installed)."
        ),
        Step("Paste this connection's inbound URL as the Callback URL."),
        Step(
            "Paste this connection's secret as the Secret Key: Tidings made it, and Help Scout "
            "signs each delivery with it."
        ),
        Step(
            "Under Events, tick Conversation Created; tick the conversation's Tags event too to "
            "keep tags current. Customer events are not needed: Tidings ignores them."
        ),
        Step("Choose the V2 payload if Help Scout asks, and click Save."),
    ],
    SupportDesk.FRESHDESK: [
        Step(
            "In Freshdesk, open Admin → Workflows → Automations, choose the Ticket Creation tab "
            "and click New rule. Name it “Tidings”."
        ),
        Step(
            "Under “On tickets with these properties”, add a condition every ticket you want "
            "counted meets, such as “Status is Open”."
        ),
        Step(
            "Under “Perform these actions”, choose Trigger webhook: Request type POST, Callback "
            "URL this connection's inbound URL, Requires authentication off, Encoding JSON, "
            "Content Advanced, and paste this body:",
            FRESHDESK_BODY,
        ),
        Step(
            "Click Preview and save, then Save and enable. Freshdesk signs nothing: the long "
            "token in the URL is the credential, so keep the URL secret (disconnect and connect "
            "again to change it)."
        ),
        Step(
            "Freshdesk's body says nothing of when the ticket was opened, so Tidings dates each "
            "ticket by when its delivery arrives. The same action in a Ticket Updates rule keeps "
            "tags current; updates of tickets Tidings has not seen are ignored."
        ),
    ],
}


# Signatures ----------------------------------------------------------------------


def zendesk_signature(secret: str, timestamp: str, body: bytes) -> str:
    """base64 HMAC-SHA256 of the timestamp followed by the body."""
    digest = hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def intercom_signature(secret: str, body: bytes) -> str:
    """``sha1=`` and the hex HMAC-SHA1 of the body."""
    return "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


def helpscout_signature(secret: str, body: bytes) -> str:
    """base64 HMAC-SHA1 of the body."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha1).digest()).decode()


def _same(given: Any, wanted: str) -> bool:
    """Whether ``given`` is ``wanted``, in time that does not depend on how much matches;
    anything but ASCII text is simply wrong."""
    text = given if isinstance(given, str) and given.isascii() else ""
    return hmac.compare_digest(text.encode(), wanted.encode())


def zendesk_time(timestamp: str) -> datetime | None:
    """The signature timestamp (ISO 8601, ``2021-07-25T10:00:00Z``) in UTC, or None."""
    try:
        moment = datetime.fromisoformat(timestamp.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        return None


def check_token(connection: SupportConnection, token: str) -> None:
    """Unauthenticated unless ``token`` is the connection's, compared in constant time."""
    if not _same(token, connection.token):
        raise Unauthenticated("This inbound URL is not valid. Copy it again from Tidings.")


def verify(
    connection: SupportConnection,
    token: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: datetime,
) -> None:
    """Unauthenticated unless the delivery proves it comes from the connection's desk:
    the URL's token and, for the desks that sign, the body's signature. ``headers`` have
    lower-case names."""
    check_token(connection, token)
    desk = connection.desk
    if desk is SupportDesk.FRESHDESK:
        return
    if not connection.secret:
        raise Unauthenticated(
            f"Paste {desk.label}'s signing secret into this connection in Tidings first."
        )
    wrong = Unauthenticated(f"The {desk.label} signature does not match this connection.")
    if desk is SupportDesk.ZENDESK:
        timestamp = headers.get("x-zendesk-webhook-signature-timestamp", "")
        if not timestamp.isascii():
            raise wrong
        wanted = zendesk_signature(connection.secret, timestamp, body)
        if not _same(headers.get("x-zendesk-webhook-signature"), wanted):
            raise wrong
        signed_at = zendesk_time(timestamp)
        if signed_at is None or abs(now - signed_at) > ZENDESK_TOLERANCE:
            raise Unauthenticated("This Zendesk delivery was not signed within 5 minutes of now.")
    elif desk is SupportDesk.INTERCOM:
        given = headers.get("x-hub-signature", "")
        if not _same(given.lower(), intercom_signature(connection.secret, body)):
            raise wrong
    elif not _same(
        headers.get("x-helpscout-signature"), helpscout_signature(connection.secret, body)
    ):
        raise wrong


# Payloads -------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """What a desk's payload says: a ticket's fields, or why it is no ticket.

    ``ticket`` holds :func:`tickets.check_ticket`'s fields; ``created_at`` or ``tags``
    is None when the payload does not say, and the stored ticket's value is kept.
    ``opens`` marks the event that opens the ticket, which a payload without a creation
    time (Freshdesk's) dates at its arrival.
    """

    ticket: dict[str, Any] | None = None
    ignored: str | None = None
    opens: bool = False


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _words(value: Any, separator: str | None = None) -> Any:
    """Tags sent as one text, as desks' placeholders render them; other values as sent."""
    if isinstance(value, str):
        return [word for word in value.split(separator) if word.strip()]
    return value


def _email(value: Any) -> Any:
    """A usable address, or None for text that is none (a desk's placeholder left empty, a
    redacted address): the ticket is kept and matched by id, if at all."""
    return tickets.address(value) if isinstance(value, str) else value


def _epoch(value: Any) -> Any:
    """Intercom's Unix seconds as a time; anything else as sent, for the rule to refuse."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            return value
    return value


def _app_version(fields: Any) -> Any:
    """The value of a custom field called app version (``App version``, ``app_version``)."""
    for field in fields if isinstance(fields, list) else []:
        name = _object(field).get("name")
        if isinstance(name, str) and name.replace("_", " ").casefold().split() == [
            "app",
            "version",
        ]:
            value = field.get("value")
            return value if value not in ("", None) else field.get("text")
    return None


def _zendesk(payload: dict[str, Any], headers: Mapping[str, str]) -> Delivery:
    kind = payload.get("type")
    if isinstance(kind, str) and kind.startswith("zen:event-type:"):
        event = kind.removeprefix("zen:event-type:")
        if not event.startswith("ticket."):
            return Delivery(ignored=f"Zendesk {event} events are not tickets.")
        detail = _object(payload.get("detail"))
        # Ticket events name the requester only by Zendesk's own user id, which is no id of
        # the host's: such tickets stay unmatched (the trigger body names the requester).
        return Delivery(
            ticket={
                "external_id": detail.get("id"),
                "created_at": detail.get("created_at"),
                "tags": detail.get("tags"),
                "subject": detail.get("subject"),
            },
            opens=event == "ticket.created",
        )
    ticket = payload.get("ticket")
    if isinstance(ticket, dict):  # the trigger body of the set-up steps
        return Delivery(
            ticket={
                "external_id": ticket.get("id"),
                "created_at": ticket.get("created_at") or None,
                "user_id": ticket.get("requester_external_id"),
                "email": _email(ticket.get("requester_email")),
                "app_version": ticket.get("app_version"),
                "tags": _words(ticket.get("tags")),
                "subject": ticket.get("subject"),
            }
        )
    for name in ("ticketID", "ticket_id", "ticketId"):
        if name in payload:
            # A trigger body of one's own: it names the ticket but not when it was opened,
            # so it can only update a ticket already stored.
            return Delivery(
                ticket={
                    "external_id": payload[name],
                    "created_at": None,
                    "tags": _words(payload.get("tags")),
                    "subject": payload.get("subject"),
                }
            )
    return Delivery(ignored="This Zendesk body names no ticket; use the body in the set-up steps.")


def _intercom(payload: dict[str, Any], headers: Mapping[str, str]) -> Delivery:
    topic = payload.get("topic")
    item = _object(_object(payload.get("data")).get("item"))
    if topic == "ping":
        return Delivery(ignored="Intercom's ping: the connection works.")
    if (
        not isinstance(topic, str)
        or not topic.startswith("conversation.")
        or item.get("type") != "conversation"
    ):
        return Delivery(ignored=f"Intercom {str(topic)[:80]} notifications are not conversations.")
    user = _object(item.get("user"))
    # A lead's user_id is one Intercom made up, no id of the host's.
    user_id = user.get("user_id") if user.get("type") == "user" else None
    email = user.get("email")
    if not user:  # the conversation model of Intercom's API 2.x
        contacts = _object(item.get("contacts")).get("contacts")
        first = _object(contacts[0]) if isinstance(contacts, list) and contacts else {}
        user_id = first.get("external_id")
        email = _object(_object(item.get("source")).get("author")).get("email")
    message = _object(item.get("conversation_message")) or _object(item.get("source"))
    tags = _object(item.get("tags")).get("tags")
    if isinstance(tags, list):
        tags = [_object(tag).get("name", tag) for tag in tags]
    return Delivery(
        ticket={
            "external_id": item.get("id"),
            "created_at": _epoch(item.get("created_at")),
            "user_id": user_id,
            "email": _email(email),
            "app_version": _object(item.get("custom_attributes")).get("app_version")
            or _object(user.get("custom_attributes")).get("app_version"),
            "tags": tags,
            "subject": message.get("subject"),
        },
        opens=topic in INTERCOM_OPENING,
    )


def _helpscout(payload: dict[str, Any], headers: Mapping[str, str]) -> Delivery:
    event = headers.get("x-helpscout-event", "").strip()
    if not event:
        return Delivery(ignored="Help Scout names the event in X-HelpScout-Event; none came.")
    if not event.startswith("convo.") or event == "convo.deleted":
        return Delivery(ignored=f"Help Scout {event[:80]} events do not add or change tickets.")
    customer = _object(payload.get("primaryCustomer")) or _object(payload.get("customer"))
    tags = payload.get("tags")
    if isinstance(tags, list):  # names in the v1 payload, objects in v2
        tags = [_object(tag).get("tag", _object(tag).get("name", tag)) for tag in tags]
    return Delivery(
        ticket={
            "external_id": payload.get("id"),
            "created_at": payload.get("createdAt"),
            "email": _email(customer.get("email")),
            "app_version": _app_version(payload.get("customFields")),
            "tags": tags,
            "subject": payload.get("subject"),
        },
        opens=event == "convo.created",
    )


def _freshdesk(payload: dict[str, Any], headers: Mapping[str, str]) -> Delivery:
    hook = payload.get("freshdesk_webhook")
    if not isinstance(hook, dict):
        return Delivery(
            ignored="This Freshdesk body has no freshdesk_webhook; use the body in the "
            "set-up steps."
        )
    return Delivery(
        ticket={
            "external_id": hook.get("ticket_id"),
            "created_at": None,  # not in the body: the stored time, or the arrival's
            "email": _email(hook.get("requester_email")),
            "tags": _words(hook.get("ticket_tags"), ","),
            "subject": hook.get("ticket_subject"),
        },
        opens="created" in str(hook.get("triggered_event", "")),
    )


_READERS = {
    SupportDesk.ZENDESK: _zendesk,
    SupportDesk.INTERCOM: _intercom,
    SupportDesk.HELPSCOUT: _helpscout,
    SupportDesk.FRESHDESK: _freshdesk,
}


def parse(desk: SupportDesk, headers: Mapping[str, str], body: bytes) -> Delivery:
    """What the desk's payload says; Malformed when it is not a JSON object."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):  # not UTF-8 or JSON; numbers past 4,300 digits
        raise Malformed({"body": f"A {desk.label} delivery is a JSON object."}) from None
    if not isinstance(payload, dict):
        raise Malformed({"body": f"A {desk.label} delivery is a JSON object."})
    return _READERS[desk](payload, headers)


# Receiving -----------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What became of a delivery: the ticket and how it changed, or why it was ignored."""

    status: Literal["created", "updated", "unchanged", "ignored"]
    ticket_id: int | None = None
    reason: str | None = None


def _desk_id(value: Any) -> str | None:
    """The desk's ticket id as it is stored, when it can be looked up at all."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return None
    text = value.strip()
    ok = 0 < len(text) <= tickets.MAX_EXTERNAL_ID_LENGTH and reads.is_storable(text)
    return text if ok else None


def receive(
    session: Session,
    connection: SupportConnection,
    token: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    secret_key: str,
    now: datetime,
) -> Outcome:
    """Verify a delivery, count it, and store the ticket it carries.

    Unauthenticated when it does not prove itself (nothing is written), Malformed when it
    is not JSON, ValidationFailed when its fields break the ticket rule. The ticket is
    the connection's product's: nothing a body says reaches another product.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    verify(connection, token, lowered, body, now=now)
    delivery = parse(connection.desk, lowered, body)
    outcome = _take(session, connection, delivery, secret_key=secret_key, now=now)
    # Last: every delivery of the desk updates this one row, which is then locked until
    # the commit right after, so deliveries in parallel queue for each other only there.
    session.execute(
        update(SupportConnection)
        .where(SupportConnection.id == connection.id)
        .values(deliveries=SupportConnection.deliveries + 1, last_delivery_at=now)
        .execution_options(synchronize_session=False)
    )
    return outcome


def _take(
    session: Session,
    connection: SupportConnection,
    delivery: Delivery,
    *,
    secret_key: str,
    now: datetime,
) -> Outcome:
    """Store the delivery's ticket, dating one whose body gives no time, or say why not."""
    if delivery.ticket is None:
        return Outcome("ignored", reason=delivery.ignored)
    raw = dict(delivery.ticket)
    desk_id = _desk_id(raw.get("external_id"))
    if desk_id is not None and raw.get("created_at") is None:
        known = tickets.find(session, connection.product_id, connection.source, desk_id)
        if known is not None:
            raw["created_at"] = known.created_at
        elif delivery.opens:
            raw["created_at"] = now
        else:
            reason = (
                f"{connection.desk.label} ticket {desk_id[:40]} is not stored yet, and "
                "this body does not say when it was opened."
            )
            return Outcome("ignored", reason=reason)
    checked = tickets.check_ticket(raw, source=connection.source, now=now, require_requester=False)
    status = tickets.store(
        session, connection.product, checked, secret_key=secret_key, connection=connection, now=now
    )
    stored = tickets.find(session, connection.product_id, checked.source, checked.external_id)
    assert stored is not None  # noqa: S101 - just stored in this transaction
    return Outcome(status, ticket_id=stored.id)


# Connections ----------------------------------------------------------------------


def inbound_url(base_url: str, connection: SupportConnection) -> str:
    """Where the desk sends this connection's deliveries."""
    return f"{base_url.rstrip('/')}/api/v1/support/inbound/{connection.id}/{connection.token}"


def _desk(desk: SupportDesk | str) -> SupportDesk:
    try:
        return SupportDesk(desk)
    except ValueError:
        names = ", ".join(d.value for d in SupportDesk)
        raise ValidationFailed({"desk": f"Choose one of {names}."}) from None


def _secret(desk: SupportDesk, secret: str) -> str:
    if desk is SupportDesk.FRESHDESK:
        raise ValidationFailed(
            {"secret": "Freshdesk signs nothing: the token in the inbound URL is the credential."}
        )
    text = secret.strip() if isinstance(secret, str) else ""
    if not text:
        raise ValidationFailed({"secret": f"Paste the signing secret {desk.label} shows."})
    if len(text) > MAX_SECRET_LENGTH or not text.isprintable() or not reads.is_storable(text):
        raise ValidationFailed(
            {
                "secret": "That is not a signing secret: one line, up to "
                f"{MAX_SECRET_LENGTH} characters."
            }
        )
    return text


def connect(
    session: Session,
    product: Product,
    desk: SupportDesk | str,
    *,
    secret: str | None = None,
    actor: TeamMember | None = None,
    now: datetime | None = None,
) -> SupportConnection:
    """A new connection of ``product`` to a desk, with its own inbound URL.

    Its source is the desk's name, or ``zendesk-2`` and on for a product's further
    connections to the same desk. Help Scout gets a secret Tidings makes (unless one is
    given); Zendesk and Intercom wait for theirs; Freshdesk needs none.
    """
    desk = _desk(desk)
    now = now or utcnow()
    if secret is not None:
        secret = _secret(desk, secret)
    elif desk is SupportDesk.HELPSCOUT:
        secret = secrets.token_urlsafe(GENERATED_SECRET_BYTES)
    taken = set(
        session.scalars(
            select(SupportConnection.source).where(SupportConnection.product_id == product.id)
        )
    )
    source, number = desk.value, 2
    while source in taken:
        source, number = f"{desk.value}-{number}", number + 1
    connection = SupportConnection(
        product_id=product.id,
        desk=desk,
        source=source,
        token=secrets.token_urlsafe(TOKEN_BYTES),
        secret=secret or "",
        created_by_id=actor.id if actor is not None else None,
        created_at=now,
        deliveries=0,
    )
    session.add(connection)
    session.flush()
    summary = f"Connected {desk.label}; its tickets come in as “{source}”."
    audit.record(session, product, actor, "support.connected", summary, now=now)
    return connection


def set_secret(
    session: Session,
    connection: SupportConnection,
    secret: str,
    *,
    actor: TeamMember | None = None,
    now: datetime | None = None,
) -> None:
    """Keep the signing secret the desk shows (or a new one typed into Help Scout)."""
    connection.secret = _secret(connection.desk, secret)
    summary = f"Changed the signing secret of {connection.desk.label} ({connection.source})."
    audit.record(
        session, connection.product, actor, "support.secret_changed", summary, now=now or utcnow()
    )


def disconnect(
    session: Session,
    connection: SupportConnection,
    *,
    actor: TeamMember | None = None,
    now: datetime | None = None,
) -> None:
    """Remove the connection: its URL stops working, its tickets stay and keep counting."""
    summary = f"Disconnected {connection.desk.label} ({connection.source}); its tickets stay."
    audit.record(
        session, connection.product, actor, "support.disconnected", summary, now=now or utcnow()
    )
    session.delete(connection)
