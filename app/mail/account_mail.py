"""Mail to team members about their own account: an invitation, a password reset link.

These go straight to the transport rather than through the outbox, which is for a
product's subscribers: an owner who invites someone is told at once if the mail could
not be sent, and a reset link is sent from a thread of its own, so that the answer to
"forgot password" takes as long whether or not the address has an account.

They speak the console's language of the member they go to (``TeamMember.locale``), else
the language of the request that sends them. A subject given as ``lazy_gettext`` is
worded in that language too.
"""

from __future__ import annotations

import logging
import secrets
import threading
from typing import Any

from flask import Flask, current_app
from flask_babel import force_locale
from flask_babel.speaklater import LazyString

from announcements import languages
from app.i18n import current_locale
from app.mail import compose, transport

log = logging.getLogger(__name__)


class NotSent(Exception):
    """The mail server would not take the message; the text says why."""


def _message_id() -> str:
    """A Message-ID of its own: account mail has no outbox row to derive one from."""
    domain = compose.sender_address().rpartition("@")[2] or "localhost"
    return f"<tidings.account.{secrets.token_hex(8)}@{domain}>"


def send(
    to: str, subject: str | LazyString, template: str, *, locale: str | None = None, **context: Any
) -> None:
    """Compose and send one message now, in ``locale`` (a member's console language) or
    else the request's; raise NotSent when the server refuses it."""
    with force_locale(
        languages.interface_locale([locale or current_locale()], languages.CONSOLE_LOCALES)
    ):
        message = compose.to_team_member(to, str(subject), template, _message_id(), **context)
    sender = transport.from_config(current_app.config["SMTP_URL"], current_app.instance_path)
    try:
        sender.send(message, compose.sender_address(), to)
    except (transport.Transient, transport.Permanent) as error:
        raise NotSent(str(error)) from error
    finally:
        sender.close()


def send_in_background(
    to: str, subject: str | LazyString, template: str, *, locale: str | None = None, **context: Any
) -> None:
    """Send from a thread of its own; a failure is logged, since nobody waits for it."""
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    # The thread has no request: it speaks the language chosen here.
    speaks = locale or current_locale()

    def run() -> None:
        with app.app_context():
            try:
                send(to, subject, template, locale=speaks, **context)
            except NotSent as error:
                log.warning("account mail to %s not sent: %s", to, error)

    threading.Thread(target=run, name="account-mail", daemon=True).start()
