"""A real HTTP server on loopback that records the webhook calls it receives.

``receiver`` starts one per test; ``answers`` queues what it gives back: a status (200
when empty; a 3xx comes with a Location header), raw bytes written as they are, such as
an answer that is not HTTP, or a list of byte strings written one every ``TRICKLE``
seconds, such as headers sent slowly enough to pass any timeout on a single read.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

TRICKLE = 0.2  # seconds between the pieces of a trickled answer

Answer = int | bytes | list[bytes]


class Receiver:
    """An HTTP server that records each POST and gives the next queued answer."""

    def __init__(self) -> None:
        self.calls: list[dict] = []
        self.answers: list[Answer] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
                length = int(self.headers.get("Content-Length", 0))
                receiver.calls.append(
                    {
                        "path": self.path,
                        "headers": dict(self.headers),
                        "body": self.rfile.read(length),
                    }
                )
                answer = receiver.answers.pop(0) if receiver.answers else 200
                if isinstance(answer, bytes):
                    self.wfile.write(answer)
                elif isinstance(answer, list):
                    self._trickle(answer)
                else:
                    self.send_response(answer)
                    if 300 <= answer < 400:
                        self.send_header("Location", "/elsewhere")
                    self.end_headers()
                    self.wfile.write(b"ok" if answer < 300 else b"receiver is down")

            def _trickle(self, pieces: list[bytes]) -> None:
                for piece in pieces:
                    try:
                        self.wfile.write(piece)
                    except OSError:  # the caller gave up and hung up
                        return
                    time.sleep(TRICKLE)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()
