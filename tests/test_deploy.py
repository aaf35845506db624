"""deploy/ as an operator installs it: the systemd units pass systemd's own check, and
nginx with the site, in front of gunicorn's web and live processes as gunicorn.conf.py
sets them up, sends each request where it belongs: the request id through to the app's
answer, feeds kept a minute, static files from disk, event streams unbuffered to live."""

from __future__ import annotations

import http.client
import os
import re
import secrets
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from announcements.models import Base
from app.api.widget import expected_hash
from tests.factories import make_note, make_product
from tests.mailserver import free_port
from tests.worker import wait_for

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEPLOY = PROJECT_ROOT / "deploy"
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))
HOST = "changes.example.com"
START_TIMEOUT = 90.0  # seconds; gunicorn imports the whole app, on a busy machine


def _nginx() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if found is None:
        pytest.skip("nginx is not installed (Debian: apt-get install nginx)")
    return found


@pytest.mark.parametrize("unit", sorted(p.name for p in (DEPLOY / "systemd").glob("*.service")))
def test_each_systemd_unit_passes_systemds_check(unit: str, tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    # As installed here: the commands it names must exist for the check to pass.
    text = (DEPLOY / "systemd" / unit).read_text().replace("/srv/tidings", str(PROJECT_ROOT))
    (tmp_path / unit).write_text(text)
    result = subprocess.run(
        [analyze, "verify", str(tmp_path / unit)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def _site(tmp_path: Path, web: int, live: int, https: int, http: int) -> Path:
    """The site as deploy/ has it, with this machine's ports, folders and a self-signed
    certificate, inside a main configuration that runs in the foreground."""
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            f"/CN={HOST}",
            "-days",
            "1",
            "-keyout",
            str(tmp_path / "key.pem"),
            "-out",
            str(tmp_path / "cert.pem"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    site = (DEPLOY / "nginx" / "tidings.conf").read_text()
    replacements = {
        "127.0.0.1:8000": f"127.0.0.1:{web}",
        "127.0.0.1:8001": f"127.0.0.1:{live}",
        f"/etc/letsencrypt/live/{HOST}/fullchain.pem": str(tmp_path / "cert.pem"),
        f"/etc/letsencrypt/live/{HOST}/privkey.pem": str(tmp_path / "key.pem"),
        "/var/cache/nginx/tidings": str(tmp_path / "cache"),
        "/var/log/nginx/": f"{tmp_path}/",
        "/srv/tidings/": f"{PROJECT_ROOT}/",
        "listen 443 ssl http2;": f"listen 127.0.0.1:{https} ssl http2;",
        "listen 80;": f"listen 127.0.0.1:{http};",
    }
    for old, new in replacements.items():
        assert old in site, old
        site = site.replace(old, new)
    # No IPv6 on every test machine.
    site = re.sub(r"\n\s*listen \[::\]:\d+[^;]*;", "", site)
    (tmp_path / "tidings.conf").write_text(site)
    main = tmp_path / "nginx.conf"
    temp = {name: tmp_path / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    main.write_text(
        f"""
daemon off;
{"user root;" if os.geteuid() == 0 else ""}
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/error.log;
events {{ worker_connections 1024; }}
http {{
    types {{ text/html html; text/css css; application/javascript js; image/svg+xml svg; }}
    access_log {tmp_path}/access.log;
    client_body_temp_path {temp["body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
    include {tmp_path}/tidings.conf;
}}
"""
    )
    return main


def test_the_nginx_site_is_valid(tmp_path: Path) -> None:
    main = _site(tmp_path, free_port(), free_port(), free_port(), free_port())
    result = subprocess.run(
        [_nginx(), "-t", "-p", str(tmp_path), "-c", str(main)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


@pytest.fixture
def served(tmp_path: Path) -> Iterator[dict[str, object]]:
    """A product with a published note on SQLite, gunicorn's web and live processes on it
    (gunicorn.conf.py, production settings), and nginx with the site in front."""
    nginx = _nginx()
    database = tmp_path / "tidings.db"
    engine = create_engine(f"sqlite:///{database}")
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        product = make_product(session, slug="lumen", name="Lumen")
        make_note(session, product, version="1.0.0", title="First light", status="published")
        found = {"key": product.widget_key, "secret": product.identity_secret}
    engine.dispose()
    web, live, https, http = free_port(), free_port(), free_port(), free_port()
    environment = {
        **os.environ,
        "TIDINGS_ENV": "production",
        "SECRET_KEY": secrets.token_hex(32),
        "DATABASE_URL": f"sqlite:///{database}",
        "BASE_URL": f"https://{HOST}",
        "TRUSTED_PROXIES": "1",
    }
    for name in ("REDIS_URL", "LIVE_URL", "LOG_FORMAT"):
        environment.pop(name, None)
    started: list[subprocess.Popen[bytes]] = []
    try:
        for process, port in (("web", web), ("live", live)):
            with (tmp_path / f"{process}.log").open("wb") as log:
                started.append(
                    subprocess.Popen(
                        [GUNICORN, "--bind", f"127.0.0.1:{port}", "--workers", "1"],
                        cwd=PROJECT_ROOT,
                        env={**environment, "TIDINGS_PROCESS": process},
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
        main = _site(tmp_path, web, live, https, http)
        with (tmp_path / "nginx.log").open("wb") as log:
            started.append(
                subprocess.Popen(
                    [nginx, "-p", str(tmp_path), "-c", str(main)], stdout=log, stderr=log
                )
            )
        deadline = time.monotonic() + START_TIMEOUT
        for path in ("/healthz", "/api/v1/widget/none/events"):
            while _get(https, path)[0] not in (200, 404):
                for process in started:
                    assert process.poll() is None, (tmp_path / "web.log").read_text()
                assert time.monotonic() < deadline, "nginx and gunicorn did not start"
                time.sleep(0.3)
        yield {"port": https, "http_port": http, **found, "folder": tmp_path}
    finally:
        for process in started:
            if process.poll() is None:
                process.terminate()
        for process in started:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _connection(port: int) -> http.client.HTTPSConnection:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)


def _get(port: int, path: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    """A GET through nginx over TLS; status 0 while nothing answers."""
    connection = _connection(port)
    try:
        connection.request("GET", path, headers={"Host": HOST, **headers})
        answer = connection.getresponse()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
    except OSError:
        return 0, {}, b""
    finally:
        connection.close()


def test_nginx_sends_each_request_where_it_belongs(served: dict[str, object]) -> None:
    port = int(str(served["port"]))
    # The request id nginx made reaches the app, which logs and answers with it.
    status, headers, _ = _get(port, "/changelog/lumen")
    assert status == 200
    request_id = headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)
    access = Path(str(served["folder"])) / "tidings.access.log"
    wait_for(lambda: request_id in access.read_text(), 5, "nginx's access line")
    # Its access line names no client address, nor the end user an API path names.
    erased = _get(port, "/api/v1/products/lumen/end-users/ann%40example.org/export")
    wait_for(lambda: erased[1]["x-request-id"] in access.read_text(), 5, "the API's line")
    logged = access.read_text()
    assert "127.0.0.1" not in logged and "ann" not in logged
    assert "/api/v1/products/lumen/end-users/[redacted]" in logged

    # Feeds are kept for a minute: the second reader gets nginx's copy.
    first = _get(port, "/changelog/lumen/feed.atom")
    assert (first[0], first[1]["x-cache-status"]) == (200, "MISS")
    # nginx files its copy once the answer is through, a moment after the reader has it.
    again: list[tuple[int, dict[str, str], bytes]] = []
    wait_for(
        lambda: (
            again.append(_get(port, "/changelog/lumen/feed.atom"))
            or again[-1][1].get("x-cache-status") == "HIT"
        ),
        5,
        "the feed from nginx's cache",
    )
    assert again[-1][0] == 200 and again[-1][2] == first[2]
    assert b"First light" in first[2]

    # Static files and the widget script come from disk, with the app's headers.
    script = _get(port, "/widget.js")
    assert script[0] == 200 and script[1]["access-control-allow-origin"] == "*"
    assert script[1]["cache-control"] == "public, max-age=300"
    assert script[2] == (PROJECT_ROOT / "static" / "widget" / "widget.js").read_bytes()
    assert "x-request-id" not in script[1]  # no gunicorn behind it

    # Plain HTTP is sent to https.
    connection = http.client.HTTPConnection("127.0.0.1", int(str(served["http_port"])), timeout=10)
    try:
        connection.request("GET", "/changelog/lumen?page=2", headers={"Host": HOST})
        answer = connection.getresponse()
        assert answer.status == 301
        assert answer.getheader("Location") == f"https://{HOST}/changelog/lumen?page=2"
    finally:
        connection.close()


def test_an_event_stream_goes_to_live_unbuffered(served: dict[str, object]) -> None:
    port = int(str(served["port"]))
    key, secret = str(served["key"]), str(served["secret"])
    refused = _get(port, f"/api/v1/widget/{key}/events?user_id=ann&user_hash=wrong")
    assert refused[0] == 401
    path = f"/api/v1/widget/{key}/events?user_id=ann&user_hash={expected_hash(secret, 'ann')}"
    connection = _connection(port)
    try:
        connection.request("GET", path, headers={"Host": HOST})
        answer = connection.getresponse()
        assert answer.status == 200
        assert answer.getheader("Content-Type", "").startswith("text/event-stream")
        # The stream's first line arrives while the stream stays open: nothing held back.
        started = time.monotonic()
        first = answer.readline()
        assert first.startswith(b"retry:")
        assert time.monotonic() - started < 5
    finally:
        connection.close()
