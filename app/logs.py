"""Log lines and the request id that ties a request's lines together.

Every request has an id: the ``X-Request-Id`` a trusted proxy sent (``TRUSTED_PROXIES`` at
least 1; nginx sends its ``$request_id``), or one made here. It is set on the response,
so a user's report or the proxy's log leads to the app's lines, and it is on every log
line written while the request is handled, and on gunicorn's access line (which reads it
from the response).

``LOG_FORMAT`` picks the lines: ``json`` (production's default) writes one JSON object a
line for a log collector (``time``, ``level``, ``logger``, ``message``, ``request_id``,
``exception``, and the access line's fields); ``text`` writes a line for a terminal.
Everything goes to standard error, which systemd's journal or a container runtime keeps;
the app never opens log files of its own.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, current_app, has_request_context, request
from flask.logging import default_handler

from app.config import ConfigError

FORMATS = ("json", "text")
HEADER = "X-Request-Id"
# Where a request's id is kept once known: the WSGI environ lives exactly as long as the
# request, in whichever thread or greenlet serves it.
_ENVIRON_KEY = "tidings.request_id"
# A proxy's id is logged and echoed as given, so only a plain token of sane length is
# taken (nginx: 32 hex digits, Heroku and most others: a UUID); anything else, which
# could forge log lines, is replaced by one of ours.
_PROXY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
# gunicorn's access line names the response's headers as "{name}o".
_ACCESS_REQUEST_ID = "{x-request-id}o"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
# Marks the handler configure() installs, so a second call replaces it.
_OURS = "tidings_handler"


def request_id() -> str:
    """The current request's id: the trusted proxy's, or a new random one, kept for the
    rest of the request."""
    environ = request.environ
    known = environ.get(_ENVIRON_KEY)
    if known is None:
        given = request.headers.get(HEADER, "")
        trusted = current_app.config["TRUSTED_PROXIES"] > 0 and _PROXY_ID.fullmatch(given)
        known = environ[_ENVIRON_KEY] = given if trusted else uuid.uuid4().hex
    return str(known)


class RequestIdFilter(logging.Filter):
    """Puts ``request_id`` on every record: the Flask request's being handled, the one
    gunicorn's access line carries, or None outside a request."""

    def filter(self, record: logging.LogRecord) -> bool:
        found: str | None = None
        if has_request_context():
            found = request_id()
        elif isinstance(record.args, Mapping):
            given = record.args.get(_ACCESS_REQUEST_ID)
            found = str(given) if given and given != "-" else None
        record.request_id = found
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        if getattr(record, "request_id", None) is None:
            record.request_id = "-"
        return super().format(record)


class JsonFormatter(logging.Formatter):
    """One JSON object a line. gunicorn's access line comes as its fields (method, path,
    status, duration…) rather than as text to parse again."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            line["request_id"] = request_id
        if record.name == "gunicorn.access" and isinstance(record.args, Mapping):
            line.update(_access_fields(record.args))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


# Query parameters that name or vouch for a person, personal data the logs have no need
# of: the widget's user id, e-mail and attributes and its identity hashes (each a lasting
# credential for its user), the agent sidebar's user, agent and signature, and what the
# console's lookup searched for (an id or an address).
_PERSONAL_PARAMETERS = re.compile(
    r"(?:^|(?<=&))(user_id|user_hash|email|email_hash|attr\.[^=&]*|user|agent|sig|q)=[^&]*"
)
# The management API names an end user in its path (their export, their erasure, their
# support profile): everything after ``/end-users/``, which may hold slashes itself.
_PERSONAL_PATH = re.compile(r"(/end-users/).+?(/export)?$")


def redacted(query: str) -> str:
    """``query`` with the values that name or vouch for a person left out."""
    return _PERSONAL_PARAMETERS.sub(r"\1=[redacted]", query)


def redacted_path(path: str) -> str:
    """``path`` with the end user it names left out."""
    return _PERSONAL_PATH.sub(r"\1[redacted]\2", path)


def _redacted_request_line(line: str) -> str:
    """An HTTP request line ("GET /path?query HTTP/1.1") with its path and query redacted."""
    method, _, rest = line.partition(" ")
    target, _, protocol = rest.rpartition(" ")
    path, asked, query = target.partition("?")
    return f"{method} {redacted_path(path)}{asked}{redacted(query)} {protocol}"


def _access_fields(atoms: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of gunicorn's access atoms worth searching on."""

    def given(name: str) -> Any:
        value = atoms.get(name)
        return None if value in (None, "-") else value

    status = given("s")
    return {
        "method": given("m"),
        "path": given("U"),
        "query": given("q"),
        "status": int(status) if status and str(status).isdigit() else status,
        "bytes": atoms.get("B"),
        "duration_ms": round(int(atoms.get("D", 0)) / 1000, 3),
        "user_agent": given("a"),
        "referer": given("f"),
    }


class PersonalDataFilter(logging.Filter):
    """Leaves out of a record what names a person, before any formatter sees it: in
    gunicorn's access line, the end user in the path and the query's personal parameters
    (its request line too, which holds both); in Flask-Limiter's line for a refused
    request, the key it counted under, the client's address for most limits. Tidings
    stores no IP address and no one's identity, its logs included."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "gunicorn.access" and isinstance(record.args, Mapping):
            atoms: dict[str, Any] = dict(record.args)
            path, query, line = atoms.get("U"), atoms.get("q"), atoms.get("r")
            if isinstance(path, str):
                atoms["U"] = redacted_path(path)
            if isinstance(query, str):
                atoms["q"] = redacted(query)
            if isinstance(line, str):
                atoms["r"] = _redacted_request_line(line)
            record.args = atoms
        elif record.name == "flask-limiter" and isinstance(record.args, tuple):
            if str(record.msg).startswith("ratelimit ") and len(record.args) == 3:
                record.args = (record.args[0], "[redacted]", record.args[2])
        return True


def checked_format(log_format: str) -> str:
    """``log_format`` if it is one of FORMATS; a ConfigError naming LOG_FORMAT if not."""
    if log_format not in FORMATS:
        raise ConfigError(f"LOG_FORMAT must be json or text, not {log_format!r}")
    return log_format


def handler(log_format: str) -> logging.Handler:
    """A handler writing to standard error in ``log_format`` (``json`` or ``text``), each
    record with its request's id; gunicorn.conf.py names it for gunicorn's master."""
    made = logging.StreamHandler()
    made.addFilter(RequestIdFilter())
    made.addFilter(PersonalDataFilter())
    made.setFormatter(JsonFormatter() if checked_format(log_format) == "json" else TextFormatter())
    setattr(made, _OURS, True)
    return made


def configure(log_format: str, level: int = logging.INFO) -> None:
    """Send every logger's records to the root logger's :func:`handler`; calling it again
    (or after gunicorn installed one) replaces it rather than adding a second."""
    new = handler(log_format)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _OURS, False)]:
        root.removeHandler(old)
    root.addHandler(new)
    root.setLevel(level)


def _set_header(response: Response) -> Response:
    response.headers[HEADER] = request_id()
    return response


def init_app(app: Flask) -> None:
    """Every response carries its request's id; outside tests (whose runner keeps the log
    itself), the process logs in ``LOG_FORMAT``. Flask's own handler on the app's logger
    goes, or the lines of ``app.*`` modules would be written twice."""
    log_format = checked_format(app.config["LOG_FORMAT"])
    app.after_request(_set_header)
    if app.testing:
        return
    configure(log_format)
    app.logger.removeHandler(default_handler)
