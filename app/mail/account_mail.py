"""Mail to team members about their own account: an invitation, a password reset link.

These go straight to the transport rather than through the outbox, which is for a
product's subscribers: an owner who invites someone is told at once if the mail could
not be sent, and a reset link is sent from a thread of its own, so that the answer to
"forgot password" takes as long whether or not the address has an account.
"""

from __future__ import annotations

import logging
import secrets
import threading
from email.utils import format_datetime, formataddr
from typing import Any

from flask import Flask, current_app

from announcements.models import utcnow
from app.mail import compose, transport

log = logging.getLogger(__name__)


class NotSent(Exception):
    """The mail server would not take the message; the text says why."""


def _composed(to: str, subject: str, template: str, context: dict[str, Any]) -> compose.Composed:
    domain = compose.sender_address().rpartition("@")[2] or "localhost"
    message_id = f"<tidings.account.{secrets.token_hex(8)}@{domain}>"
    headers = [
        ("From", formataddr(("Tidings", compose.sender_address()))),
        ("To", to),
        ("Subject", compose.header_value(subject)),
        ("Date", format_datetime(utcnow())),
        ("Message-ID", message_id),
        ("Auto-Submitted", "auto-generated"),
    ]
    text = compose.render(f"email/{template}.txt", context)
    html = compose.render(f"email/{template}.html", context)
    return compose.Composed(message_id, compose.assemble(headers, text, html))


def send(to: str, subject: str, template: str, **context: Any) -> None:
    """Compose and send one message now; raise NotSent when the server refuses it."""
    message = _composed(to, subject, template, context)
    sender = transport.from_config(current_app.config["SMTP_URL"], current_app.instance_path)
    try:
        sender.send(message, compose.sender_address(), to)
    except (transport.Transient, transport.Permanent) as error:
        raise NotSent(str(error)) from error
    finally:
        sender.close()


def send_in_background(to: str, subject: str, template: str, **context: Any) -> None:
    """Send from a thread of its own; a failure is logged, since nobody waits for it."""
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]

    def run() -> None:
        with app.app_context():
            try:
                send(to, subject, template, **context)
            except NotSent as error:
                log.warning("account mail to %s not sent: %s", to, error)

    threading.Thread(target=run, name="account-mail", daemon=True).start()
