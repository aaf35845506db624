"""The SMTP transport against a real server: STARTTLS, implicit TLS, login, and whom a
refusal is taken to be about.

A throw-away certificate for 127.0.0.1 is made with openssl; the client is given it
to trust, the way an operator's system trusts their relay's.
"""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword

from app.config import ConfigError
from app.mail.compose import Composed, assemble
from app.mail.transport import (
    Failure,
    Permanent,
    SenderRefused,
    Smtp,
    Transient,
    Unreachable,
)
from tests.mailserver import SmtpServer

MESSAGE = Composed(
    "<tidings.test@localhost>",
    assemble([("Subject", "Security check"), ("To", "ann@example.com")], "Hi", "<p>Hi</p>"),
)


@dataclass
class Certificate:
    cert: Path
    key: Path

    def server(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context

    def client(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    folder = tmp_path_factory.mktemp("tls")
    made = Certificate(folder / "cert.pem", folder / "key.pem")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(made.key),
            "-out",
            str(made.cert),
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return made


class Accounts:
    """An authenticator that knows one login and remembers what it was offered."""

    def __init__(self) -> None:
        self.offered: list[tuple[str, str]] = []

    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any):
        assert isinstance(data, LoginPassword)
        login, password = data.login.decode(), data.password.decode()
        self.offered.append((login, password))
        ok = (login, password) == ("relay@example.com", "s3cret password")
        return AuthResult(success=ok, handled=False)


@pytest.fixture
def starttls_server(certificate: Certificate) -> Iterator[tuple[SmtpServer, Accounts]]:
    accounts = Accounts()
    with SmtpServer(
        tls_context=certificate.server(),
        require_starttls=True,
        authenticator=accounts,
        auth_require_tls=True,
        auth_required=True,
    ) as server:
        yield server, accounts


def test_starttls_and_login(starttls_server, certificate: Certificate) -> None:
    server, accounts = starttls_server
    url = f"smtp://relay%40example.com:s3cret%20password@127.0.0.1:{server.port}"
    client = Smtp(url, ssl_context=certificate.client())
    client.send(MESSAGE, "tidings@localhost", "ann@example.com")
    client.close()
    assert accounts.offered == [("relay@example.com", "s3cret password")]
    assert server.recorder.per_recipient() == {"ann@example.com": 1}


def test_a_wrong_password_or_an_untrusted_certificate_is_refused(
    starttls_server, certificate: Certificate
) -> None:
    server, _ = starttls_server
    wrong = Smtp(
        f"smtp://relay%40example.com:nope@127.0.0.1:{server.port}", ssl_context=certificate.client()
    )
    with pytest.raises(Unreachable, match="refused the login"):
        wrong.send(MESSAGE, "tidings@localhost", "ann@example.com")
    untrusted = Smtp(f"smtp://relay%40example.com:s3cret%20password@127.0.0.1:{server.port}")
    with pytest.raises(Unreachable, match="CERTIFICATE_VERIFY_FAILED"):
        untrusted.send(MESSAGE, "tidings@localhost", "ann@example.com")
    assert server.recorder.received == []


def test_credentials_smtplib_cannot_send_are_refused_at_start() -> None:
    with pytest.raises(ConfigError, match="plain ASCII"):
        Smtp("smtp://relay:p%C3%A4ss@127.0.0.1:587")


def test_implicit_tls(certificate: Certificate) -> None:
    with SmtpServer(ssl_context=certificate.server()) as server:
        client = Smtp(f"smtps://127.0.0.1:{server.port}", ssl_context=certificate.client())
        client.send(MESSAGE, "tidings@localhost", "ann@example.com")
        client.close()
        assert server.recorder.per_recipient() == {"ann@example.com": 1}


@pytest.mark.parametrize(
    ("stage", "reply", "failure"),
    [
        ("MAIL FROM", "550 5.7.1 Sender not allowed", SenderRefused),
        ("MAIL FROM", "451 4.7.1 Try again later", SenderRefused),
        ("RCPT TO", "550 5.1.1 No such user", Permanent),
        ("RCPT TO", "452 4.2.2 Mailbox full", Transient),
        ("RCPT TO", "421 4.3.2 Shutting down", Unreachable),
        ("DATA", "554 5.7.1 DMARC policy reject", SenderRefused),
        ("DATA", "451 4.3.0 Local error", SenderRefused),
    ],
)
def test_only_an_answer_to_rcpt_to_is_about_the_recipient(
    stage: str, reply: str, failure: type[Failure]
) -> None:
    with SmtpServer() as server:
        recorder = server.recorder
        if stage == "MAIL FROM":
            recorder.sender_reply = reply
        elif stage == "RCPT TO":
            recorder.replies["ann@example.com"] = reply
        else:
            recorder.data_reply = reply
        client = Smtp(server.url)
        with pytest.raises(Failure) as caught:
            client.send(MESSAGE, "tidings@localhost", "ann@example.com")
        client.close()
    assert type(caught.value) is failure
    assert reply in str(caught.value)
