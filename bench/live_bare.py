"""The live-stream benchmark's baseline: a bare server-sent-events endpoint on gevent, with
no Tidings (and no Flask) code, served by the same gunicorn gevent worker as the live
process, so the benchmark can state what Tidings adds per connection and per event.

``GET /events`` answers ``retry:`` and then waits; ``POST /publish`` wakes every open
stream, which sends one ``catalogue`` event; ``GET /healthz`` says it is up. Like the
live process, a stream never queues events: it waits on the current generation's
``Event`` and, woken, sends the latest state once.

    gunicorn -k gevent --pythonpath bench 'live_bare:app'
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from gevent.event import Event

HEARTBEAT_SECONDS = 25
HEADERS = [
    ("Content-Type", "text/event-stream"),
    ("Cache-Control", "no-cache"),
    ("X-Accel-Buffering", "no"),
]

_changed = Event()
_generation = 0


def _publish() -> None:
    """Start a new generation and wake every stream waiting on the old one."""
    global _changed, _generation
    woken, _changed = _changed, Event()
    _generation += 1
    woken.set()


def _stream() -> Iterator[bytes]:
    yield b"retry: 3000\n\n"
    while True:
        changed = _changed
        if changed.wait(HEARTBEAT_SECONDS):
            yield b"id: %d\nevent: catalogue\ndata: changed\n\n" % _generation
        else:
            yield b": ping\n\n"


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes] | list:
    """The three routes; anything else is a 404."""
    path, method = environ["PATH_INFO"], environ["REQUEST_METHOD"]
    if path == "/events" and method == "GET":
        start_response("200 OK", HEADERS)
        return _stream()
    if path == "/publish" and method == "POST":
        _publish()
        start_response("204 No Content", [])
        return []
    if path == "/healthz":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok\n"]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found\n"]
