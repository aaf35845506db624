"""How a composed message leaves: over SMTP, or into ``instance/mail/`` as an .eml file.

``SMTP_URL`` picks the way and its security:

- ``smtp://user:pass@host:587`` - STARTTLS, required (the default for ``smtp://``);
- ``smtps://user:pass@host:465`` - TLS from the first byte (implicit TLS);
- ``smtp://host:25?starttls=off`` - plain text, for a relay on the same machine.

One connection is kept open and reused for many messages. A failure is sorted by the
stage of the conversation it came at, and then by its code, into whom it is about:

============================  =====================  =========================
stage                         4xx                    5xx
============================  =====================  =========================
connect, TLS, login; any 421  :class:`Unreachable`   :class:`Unreachable`
MAIL FROM                     :class:`SenderRefused` :class:`SenderRefused`
RCPT TO                       :class:`Transient`     :class:`Permanent`
DATA                          :class:`SenderRefused` :class:`SenderRefused`
============================  =====================  =========================

Only an answer to RCPT TO is about the recipient. Every message goes to the one relay
in ``SMTP_URL``, so at MAIL FROM and at DATA that relay judges us - our sender address,
our right to relay, our From domain's DMARC, what we send - and would answer the next
message the same way: a refused sender or message says nothing about the address.
"""

from __future__ import annotations

import os
import smtplib
import ssl
import time
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from app.config import ConfigError
from app.mail.compose import Composed

CONNECT_TIMEOUT = 30.0


class Failure(Exception):
    """The server did not take a message; the subclass says whom it is about."""


class Transient(Failure):
    """This recipient, later: the server deferred it (4xx to RCPT TO)."""


class Permanent(Failure):
    """This address, for good: the server refused the recipient (5xx to RCPT TO)."""


class Halted(Failure):
    """Us, not the recipient: the server takes no mail from us for now. Stop sending, keep
    every message, and try again later."""


class Unreachable(Halted):
    """The server cannot be reached, refused the login, or dropped the connection."""


class SenderRefused(Halted):
    """The server refused our sender address (MAIL FROM) or what we send (DATA)."""


class Transport(Protocol):
    def send(self, message: Composed, sender: str, recipient: str) -> None: ...

    def close(self) -> None: ...


class Directory:
    """Writes each message to ``<folder>/<message id>.eml``; a resend overwrites its file."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def send(self, message: Composed, sender: str, recipient: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        name = message.message_id.strip("<>").split("@", 1)[0]
        final = self.folder / f"{name}.eml"
        partial = final.with_suffix(".eml.partial")
        partial.write_bytes(message.data)
        os.replace(partial, final)

    def close(self) -> None:
        """Nothing stays open."""


class Smtp:
    """An SMTP client that keeps its connection between messages."""

    def __init__(self, url: str, *, ssl_context: ssl.SSLContext | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ConfigError(
                f"SMTP_URL must look like smtp://user:pass@host:587 or smtps://host:465, "
                f"not {parts.scheme or url!r}"
            )
        options = parse_qs(parts.query)
        self.implicit_tls = parts.scheme == "smtps"
        self.starttls = not self.implicit_tls and options.get("starttls", ["on"])[0] != "off"
        self.host = parts.hostname
        self.port = parts.port or (465 if self.implicit_tls else 587)
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else ""
        if not (f"{self.username or ''}{self.password}").isascii():
            # smtplib sends credentials as ASCII; a non-ASCII one would fail every login.
            raise ConfigError("SMTP_URL: the user name and password must be plain ASCII")
        self.ssl_context = ssl_context or ssl.create_default_context()
        self._client: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        client: smtplib.SMTP | None = None
        try:
            if self.implicit_tls:
                client = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=CONNECT_TIMEOUT, context=self.ssl_context
                )
            else:
                client = smtplib.SMTP(self.host, self.port, timeout=CONNECT_TIMEOUT)
                if self.starttls:
                    client.starttls(context=self.ssl_context)
            if self.username:
                client.login(self.username, self.password)
        except (OSError, smtplib.SMTPException) as error:
            if client is not None:
                client.close()
            if isinstance(error, smtplib.SMTPAuthenticationError):
                raise Unreachable(f"the SMTP server refused the login: {error}") from error
            raise Unreachable(f"cannot reach the SMTP server: {error}") from error
        return client

    def send(self, message: Composed, sender: str, recipient: str) -> None:
        for attempt in (1, 2):
            if self._client is None:
                self._client = self._connect()
            try:
                self._client.sendmail(sender, [recipient], message.data)
            except smtplib.SMTPServerDisconnected as error:
                # The server closed a connection that sat idle: one fresh try at once.
                self._client = None
                if attempt == 2:
                    raise Unreachable(f"the SMTP server closed the connection: {error}") from error
                continue
            except smtplib.SMTPSenderRefused as error:
                refused = f"our sender address {sender}"
                raise self._failure(refused, error.smtp_code, error.smtp_error) from error
            except smtplib.SMTPRecipientsRefused as error:
                raise self._failure(None, *error.recipients[recipient]) from error
            except smtplib.SMTPDataError as error:
                raise self._failure("the message", error.smtp_code, error.smtp_error) from error
            except (OSError, smtplib.SMTPException) as error:
                self.close()
                raise Unreachable(f"sending failed: {error}") from error
            return

    def _failure(self, refused: str | None, code: int, text: bytes | str) -> Failure:
        """A refusal as the failure it is: ``refused`` names what the server refused, or is
        None when it refused the recipient (RCPT TO)."""
        answer = _answer(code, text)
        if code == 421:
            # The server is closing the connection; smtplib has already closed our end.
            self._client = None
            return Unreachable(f"the mail server closed the connection ({answer})")
        if refused is None:
            return Permanent(answer) if 500 <= code < 600 else Transient(answer)
        return SenderRefused(f"the mail server refused {refused} ({answer})")

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.quit()
            except (OSError, smtplib.SMTPException):
                client.close()


def _answer(code: int, text: bytes | str) -> str:
    """An SMTP reply as one line of text: ``550 5.7.1 Sender not allowed``."""
    reason = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
    return f"{code} {' '.join(reason.split())}"


def from_config(smtp_url: str | None, instance_path: str) -> Transport:
    """SMTP when ``SMTP_URL`` is set, otherwise .eml files under ``instance/mail/``."""
    if smtp_url:
        return Smtp(smtp_url)
    return Directory(Path(instance_path) / "mail")


class Pacer:
    """Keeps sending at or under ``rate`` messages a second (0: as fast as it goes)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._next = time.monotonic()

    def wait(self) -> None:
        if not self.interval:
            return
        now = time.monotonic()
        if self._next > now:
            time.sleep(self._next - now)
        self._next = max(self._next, now) + self.interval
