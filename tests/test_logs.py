"""Log lines carry their request's id, which the response names too; JSON lines are one
object a line; gunicorn's access line is logged with its fields."""

from __future__ import annotations

import io
import json
import logging
import re
import sys

import pytest
from flask import Flask

from app import logs
from app.config import ConfigError

MADE_ID = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
def captured() -> io.StringIO:
    """The root logger's lines as the app writes them in production (JSON), in a string."""
    stream = io.StringIO()
    handler = logs.handler("json")
    handler.setStream(stream)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def _logging_app(app_factory, **overrides: object) -> Flask:
    app = app_factory(**overrides)

    @app.get("/logs-twice")
    def logs_twice() -> str:
        logging.getLogger("tests.view").info("first")
        logging.getLogger("tests.view").warning("second")
        return "ok"

    return app


def test_each_response_names_a_new_request_id(client) -> None:
    first = client.get("/healthz").headers["X-Request-Id"]
    second = client.get("/healthz").headers["X-Request-Id"]
    assert MADE_ID.fullmatch(first) and MADE_ID.fullmatch(second)
    assert first != second


def test_every_line_of_a_request_carries_its_id(app_factory, captured) -> None:
    client = _logging_app(app_factory).test_client()
    answer = client.get("/logs-twice")
    mine = [line for line in _lines(captured) if line["logger"] == "tests.view"]
    assert [line["message"] for line in mine] == ["first", "second"]
    assert {line["request_id"] for line in mine} == {answer.headers["X-Request-Id"]}
    assert [line["level"] for line in mine] == ["INFO", "WARNING"]


def test_a_trusted_proxys_id_is_kept(app_factory, captured) -> None:
    client = _logging_app(app_factory, TRUSTED_PROXIES=1).test_client()
    answer = client.get("/logs-twice", headers={"X-Request-Id": "3f1c9a8e-proxy-42"})
    assert answer.headers["X-Request-Id"] == "3f1c9a8e-proxy-42"
    assert {line["request_id"] for line in _lines(captured)} == {"3f1c9a8e-proxy-42"}


@pytest.mark.parametrize(
    "given", ["two words", "a" * 129, "-starts-with-a-dash", "é-not-ascii", 'x"}{"level":"X']
)
def test_an_id_that_could_forge_a_line_is_replaced(app_factory, given: str) -> None:
    client = _logging_app(app_factory, TRUSTED_PROXIES=1).test_client()
    answer = client.get("/healthz", headers={"X-Request-Id": given})
    assert MADE_ID.fullmatch(answer.headers["X-Request-Id"])


def test_without_a_trusted_proxy_a_clients_id_is_ignored(client) -> None:
    answer = client.get("/healthz", headers={"X-Request-Id": "chosen-by-the-client"})
    assert MADE_ID.fullmatch(answer.headers["X-Request-Id"])


def test_an_error_answer_names_its_request_too(client) -> None:
    answer = client.get("/api/v1/widget/no-such-key/notes?user_id=a&user_hash=b")
    assert answer.status_code == 404
    assert MADE_ID.fullmatch(answer.headers["X-Request-Id"])


def test_a_line_outside_a_request_has_no_id_and_an_exception_its_traceback(captured) -> None:
    try:
        raise ValueError("broken")
    except ValueError:
        logging.getLogger("tests.job").exception("the job failed")
    (line,) = _lines(captured)
    assert "request_id" not in line
    assert line["message"] == "the job failed"
    assert "ValueError: broken" in str(line["exception"])
    assert line["time"].endswith("+00:00")


def test_gunicorns_access_line_comes_as_fields(captured) -> None:
    atoms = {
        "h": "203.0.113.9",
        "m": "GET",
        "U": "/api/v1/widget/k/notes",
        "q": "user_id=1",
        "s": "304",
        "B": 0,
        "D": 1234,
        "a": "Mozilla/5.0",
        "f": "-",
        "{x-request-id}o": "abc123",
    }
    logging.getLogger("gunicorn.access").info('"%(m)s %(U)s" %(s)s', atoms)
    (line,) = _lines(captured)
    assert line["message"] == '"GET /api/v1/widget/k/notes" 304'
    # The client's address is not kept: Tidings stores no IP address, its logs included.
    assert "203.0.113.9" not in json.dumps(line)
    assert line["request_id"] == "abc123"
    assert (line["method"], line["path"], line["status"]) == ("GET", "/api/v1/widget/k/notes", 304)
    assert line["duration_ms"] == 1.234
    assert line["referer"] is None


def test_who_the_widgets_user_is_stays_out_of_the_access_line(captured) -> None:
    atoms = {"m": "GET", "U": "/api/v1/widget/k/notes", "s": "200", "D": 1}
    atoms["q"] = "user_id=1&user_hash=c0ffee&email=a%40b.c&email_hash=beef&version=2"
    atoms["q"] += "&attr.plan=pro&attr.team%20name=core&locale=fr"
    logging.getLogger("gunicorn.access").info('"%(m)s %(U)s" %(s)s', atoms)
    (line,) = _lines(captured)
    assert line["query"] == (
        "user_id=[redacted]&user_hash=[redacted]&email=[redacted]&email_hash=[redacted]&version=2"
        "&attr.plan=[redacted]&attr.team%20name=[redacted]&locale=fr"
    )
    for secret in ("c0ffee", "beef", "a%40b.c"):
        assert secret not in json.dumps(line)


def test_no_one_is_named_by_an_access_line_of_the_api_the_sidebar_or_the_lookup(
    captured,
) -> None:
    for path, query in (
        ("/api/v1/products/acme/end-users/team/42/export", ""),
        ("/api/v1/products/acme/end-users/ann%40example.org", ""),
        ("/support/sidebar", "product=acme&user=ann%40example.org&agent=bo%40acme.io&sig=abc"),
        ("/console/p/acme/support/lookup", "q=ann%40example.org"),
    ):
        atoms = {"m": "GET", "U": path, "q": query, "s": "200", "D": 1}
        atoms["r"] = f"GET {path}{'?' + query if query else ''} HTTP/1.1"
        logging.getLogger("gunicorn.access").info('"%(r)s" %(s)s', atoms)
    lines = _lines(captured)
    assert [line["path"] for line in lines] == [
        "/api/v1/products/acme/end-users/[redacted]/export",
        "/api/v1/products/acme/end-users/[redacted]",
        "/support/sidebar",
        "/console/p/acme/support/lookup",
    ]
    assert lines[2]["query"] == "product=acme&user=[redacted]&agent=[redacted]&sig=[redacted]"
    assert lines[2]["message"] == (
        '"GET /support/sidebar?product=acme&user=[redacted]&agent=[redacted]&sig=[redacted]'
        ' HTTP/1.1" 200'
    )
    written = json.dumps(lines)
    for trace in ("team/42", "ann%40example.org", "bo%40acme.io", "abc"):
        assert trace not in written


def test_a_refused_request_is_logged_without_the_key_that_names_the_client() -> None:
    made = logs.handler("json")
    stream = io.StringIO()
    made.setStream(stream)
    record = logging.LogRecord(
        "flask-limiter",
        logging.INFO,
        __file__,
        1,
        "ratelimit %s (%s) exceeded at endpoint: %s",
        ("10 per 1 minute", "LIMITER/203.0.113.9/console.login", "console.login"),
        None,
    )
    made.handle(record)
    (line,) = _lines(stream)
    assert line["message"] == (
        "ratelimit 10 per 1 minute ([redacted]) exceeded at endpoint: console.login"
    )


def test_text_lines_name_the_request_or_a_dash() -> None:
    record = logging.LogRecord("tests.x", logging.INFO, __file__, 1, "hello", None, None)
    logs.RequestIdFilter().filter(record)
    assert logs.TextFormatter().format(record).endswith("INFO tests.x [-] hello")


def test_configure_replaces_its_handler_and_refuses_an_unknown_format(monkeypatch) -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    try:
        logs.configure("json")
        logs.configure("text")
        ours = [h for h in root.handlers if h not in before]
        assert len(ours) == 1 and isinstance(ours[0].formatter, logs.TextFormatter)
    finally:
        for handler in [h for h in root.handlers if h not in before]:
            root.removeHandler(handler)
    with pytest.raises(ConfigError, match="LOG_FORMAT must be json or text"):
        logs.configure("xml")


def test_an_app_with_an_unknown_log_format_does_not_start(app_factory) -> None:
    with pytest.raises(ConfigError, match="LOG_FORMAT must be json or text, not 'yaml'"):
        app_factory(LOG_FORMAT="yaml")
