"""A real OpenID Connect provider for the single sign-on tests: the certified Node.js
``oidc-provider`` package (tests/oidc/provider.js) on a free loopback port, behind a
small loopback proxy that is the issuer's address.

The proxy forwards every request untouched, Host header included, so the provider
builds its URLs on the proxy's address; a test may arm it to rewrite the provider's next
token answer (an ID token signed by a key the test holds, or with a wrong issuer,
audience, expiry or nonce signed by the provider's own key, which the fixture gave
it). Everything else (discovery, keys, the sign-in pages, codes, PKCE, userinfo) is the
provider's own.

The provider needs Node.js and ``npm ci --prefix tests/oidc``. Without them the tests
fail in CI (``CI`` set) and skip on a developer's machine.
"""

from __future__ import annotations

import contextlib
import html
import http.client
import json
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import RSAKey

PROVIDER_DIR = Path(__file__).resolve().parent / "oidc"
CLIENT_ID = "tidings-console"
CLIENT_SECRET = "a-test-client-secret-of-some-length"
KEY_ID = "provider-key"
START_TIMEOUT = 30
# The accounts the provider knows; a login signs in as the account of that name.
ACCOUNTS = [
    {
        "login": "alice",
        "sub": "sub-alice",
        "email": "alice@example.com",
        "email_verified": True,
        "name": "Alice Example",
    },
    {
        "login": "mallory",
        "sub": "sub-mallory",
        "email": "alice@example.com",
        "email_verified": False,
        "name": "Not Alice",
    },
    {
        "login": "carol",
        "sub": "sub-carol",
        "email": "carol@example.com",
        "email_verified": True,
        "name": "Carol New",
    },
]

# Headers about one connection, not the message, and the length, set again below.
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}

TokenRewrite = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass
class Proxy:
    """The issuer's address: forwards to the provider, and records what passed."""

    upstream_port: int
    rewrite_token: TokenRewrite | None = None
    requests: list[tuple[str, str, bytes]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"


def _handler(proxy: Proxy) -> type[BaseHTTPRequestHandler]:
    class Forward(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keeps connections open, as the provider does

        def _forward(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            proxy.requests.append((self.command, self.path, body))
            upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=10)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            upstream.request(self.command, self.path, body=body or None, headers=headers)
            answer = upstream.getresponse()
            content = answer.read()
            rewrite = proxy.rewrite_token
            if rewrite is not None and self.path.startswith("/token") and answer.status == 200:
                proxy.rewrite_token = None  # one answer only
                content = json.dumps(rewrite(json.loads(content))).encode()
            self.send_response(answer.status)
            for name, value in answer.getheaders():
                if name.lower() not in HOP_BY_HOP:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)
            upstream.close()

        do_GET = do_POST = _forward

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            """Quiet: pytest shows the provider's own output when a test fails."""

    return Forward


@dataclass
class OidcProvider:
    """A running provider: its issuer (the proxy's address), its client, its signing
    key (private: the test may sign as the provider), and the proxy."""

    issuer: str
    client_id: str
    client_secret: str
    key: RSAKey
    proxy: Proxy

    def config(self, **overrides: object) -> dict[str, object]:
        """The app settings that point Tidings at this provider."""
        return {
            "OIDC_ISSUER": self.issuer,
            "OIDC_CLIENT_ID": self.client_id,
            "OIDC_CLIENT_SECRET": self.client_secret,
            "OIDC_PROVIDER_NAME": "Example ID",
            **overrides,
        }

    def sign_in(self, authorize_url: str, login: str, *, redirect_uri: str) -> str:
        """Complete the provider's sign-in form as ``login``, as a browser would, and
        return the URL it sends the browser back to (``redirect_uri`` with the code)."""
        browser = requests.Session()
        browser.trust_env = False
        url = authorize_url
        for _ in range(10):
            if url.startswith(redirect_uri):
                return url
            answer = browser.get(url, allow_redirects=False, timeout=10)
            if answer.is_redirect:
                url = urljoin(url, answer.headers["Location"])
                continue
            form = re.search(r'<form[^>]*action="([^"]+)"', answer.text)
            assert form, f"no sign-in form at {url}: {answer.status_code} {answer.text[:500]}"
            posted = browser.post(
                urljoin(url, html.unescape(form.group(1))),
                data={"prompt": "login", "login": login, "password": "any"},
                allow_redirects=False,
                timeout=10,
            )
            assert posted.is_redirect, posted.text[:500]
            url = urljoin(url, posted.headers["Location"])
        raise AssertionError(f"the provider never sent the browser back to {redirect_uri}")

    def signed(self, claims: dict[str, Any], key: RSAKey | None = None) -> str:
        """An ID token with ``claims``, signed by the provider's key or by ``key``."""
        signer = key or self.key
        header = {"alg": "RS256", "kid": signer.kid}
        return jwt.encode(header, claims, signer)

    def rewrite_id_token(
        self, change: Callable[[dict[str, Any]], dict[str, Any]], key: RSAKey | None = None
    ) -> None:
        """Arm the proxy: the next token answer carries the provider's ID token with its
        claims passed through ``change`` and signed again (by ``key`` if given)."""

        def rewrite(answer: dict[str, Any]) -> dict[str, Any]:
            claims = jwt.decode(answer["id_token"], self.key).claims
            return {**answer, "id_token": self.signed(change(dict(claims)), key)}

        self.proxy.rewrite_token = rewrite


def _missing_node() -> str | None:
    if shutil.which("node") is None:
        return "Node.js is not installed; the SSO tests run a real provider under it"
    if not (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir():
        return "tests/oidc/node_modules is missing: run `npm ci --prefix tests/oidc`"
    return None


@contextlib.contextmanager
def running_provider(redirect_uris: list[str]) -> Iterator[OidcProvider]:
    """Start the provider and its proxy for a client with ``redirect_uris``; stop both."""
    missing = _missing_node()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(missing, pytrace=False)
        pytest.skip(missing)
    key = RSAKey.generate_key(2048, parameters={"kid": KEY_ID, "use": "sig", "alg": "RS256"})
    proxy = Proxy(upstream_port=0)
    proxy.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(proxy))
    env = {
        **os.environ,
        "PORT": "0",
        "ISSUER": proxy.url,
        "CLIENT_ID": CLIENT_ID,
        "CLIENT_SECRET": CLIENT_SECRET,
        "REDIRECT_URIS": " ".join(redirect_uris),
        "ACCOUNTS": json.dumps(ACCOUNTS),
        "JWKS": json.dumps({"keys": [key.as_dict(private=True)]}),
    }
    process = subprocess.Popen(  # noqa: S603
        ["node", str(PROVIDER_DIR / "provider.js")],  # noqa: S607
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        proxy.upstream_port = _await_port(process)
        # Its output goes on being read, so a full pipe never blocks it, and is shown
        # by pytest when a test fails.
        threading.Thread(target=_echo, args=(process,), daemon=True).start()
        threading.Thread(target=proxy.server.serve_forever, daemon=True).start()
        yield OidcProvider(proxy.url, CLIENT_ID, CLIENT_SECRET, key, proxy)
    finally:
        proxy.server.shutdown()
        proxy.server.server_close()
        process.terminate()
        process.wait(timeout=10)


def _echo(process: subprocess.Popen[str]) -> None:
    assert process.stdout is not None
    with process.stdout:
        for line in process.stdout:
            print("oidc-provider:", line, end="")


def _await_port(process: subprocess.Popen[str]) -> int:
    """The port the provider prints once it listens; its output if it never does."""
    assert process.stdout is not None
    seen: list[str] = []
    timer = threading.Timer(START_TIMEOUT, process.kill)
    timer.start()
    try:
        for line in process.stdout:
            seen.append(line)
            if match := re.match(r"listening on (\d+)", line):
                return int(match.group(1))
    finally:
        timer.cancel()
    raise AssertionError("the OIDC provider did not start:\n" + "".join(seen))


# The test client's requests are on BASE_URL, which the provider must know as the
# client's redirect URI.
BASE_URL = "http://127.0.0.1:5000"
REDIRECT_URI = f"{BASE_URL}/console/login/sso/callback"


@pytest.fixture(scope="module", name="oidc_provider")
def oidc_provider_fixture() -> Iterator[OidcProvider]:
    """The provider, for a Tidings whose ``BASE_URL`` is ``BASE_URL``. Its name differs
    from the fixture's, so a module importing it does not shadow it with arguments."""
    with running_provider([REDIRECT_URI]) as provider:
        yield provider
