"""The live-stream benchmark's client: one process holding its share of the event streams,
opened from a loopback address of its own, and told what to do by bench/live_bench.py,
one command a line on stdin, one JSON answer a line on stdout.

It stays apart from the bench (and from Tidings' code) so that each of several client
processes is small and starts at once; asyncio on raw sockets holds thousands of
streams in one process and notes to the moment when each one's event arrived.

    .venv/bin/python bench/live_client.py --port 5001 --source 127.0.1.1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

NOTIFIED = b"event: catalogue"
# How long a client waits for a stream's status line before calling the attempt timed out:
# of the order of a proxy's timeouts (a browser's EventSource would wait on).
ANSWER_TIMEOUT = 30.0


class Stream(asyncio.Protocol):
    """One event stream: sends its GET, notes the status line, and the first ``catalogue``
    event after the client was armed."""

    def __init__(self, client: Client, request: bytes) -> None:
        self.client = client
        self.request = request
        self.answered: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        # An attempt given up on is failed again when its connection ends: that is no news.
        self.answered.add_done_callback(lambda done: done.cancelled() or done.exception())
        self.transport: asyncio.Transport | None = None
        self.tail = b""
        self.notified_at: float | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)  # noqa: S101 - asyncio's TCP transport
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        if not self.answered.done():
            self.answered.set_result(data.split(b"\r\n", 1)[0])
        if self.client.armed and self.notified_at is None and NOTIFIED in self.tail + data:
            self.notified_at = now
        self.tail = data[-len(NOTIFIED) :]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.answered.done():
            self.answered.set_exception(exc or ConnectionResetError("closed before answering"))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class Client:
    """The streams of one client process, opened from its own source address."""

    def __init__(self, host: str, port: int, source: str) -> None:
        self.host, self.port, self.source = host, port, source
        self.held: list[Stream] = []
        self.burst: list[Stream] = []
        self.armed = False

    def request(self, path: str) -> bytes:
        return (
            f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            "Accept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
        ).encode()

    async def attempt(self, path: str, timeout: float) -> tuple[str, Stream | None]:
        """Open one stream; how it went (``200`` or what failed) and the stream if open."""
        loop = asyncio.get_running_loop()
        stream: Stream | None = None
        try:
            async with asyncio.timeout(timeout):
                _, stream = await loop.create_connection(
                    lambda: Stream(self, self.request(path)),
                    self.host,
                    self.port,
                    local_addr=(self.source, 0),
                )
                status = await stream.answered
        except TimeoutError:
            outcome = "timed out"
        except ConnectionRefusedError:
            outcome = "refused"
        except ConnectionResetError:
            outcome = "reset"
        except OSError as error:
            outcome = f"OSError {error.errno}"
        else:
            parts = status.split()
            outcome = parts[1].decode() if len(parts) > 1 else "no status"
            if outcome == "200":
                return outcome, stream
        if stream is not None:
            stream.close()
        return outcome, None

    async def open(self, paths: list[str], at_once: int, timeout: float) -> dict[str, Any]:
        """Open a stream to each path, ``at_once`` attempts in flight; what became of them."""
        gate = asyncio.Semaphore(at_once)
        started = time.monotonic()

        async def one(path: str) -> tuple[str, Stream | None]:
            async with gate:
                return await self.attempt(path, timeout)

        outcomes = await asyncio.gather(*(one(path) for path in paths))
        opened = [stream for _, stream in outcomes if stream is not None]
        return {
            "outcomes": Counter(outcome for outcome, _ in outcomes),
            "seconds": time.monotonic() - started,
            "opened": opened,
        }

    def pending(self) -> int:
        return sum(1 for stream in self.held if stream.notified_at is None and not stream.closed)

    async def command(self, words: list[str]) -> dict[str, Any]:
        name = words[0]
        if name == "open":  # open <file> <at once>: streams held until close
            paths = Path(words[1]).read_text().split()
            done = await self.open(paths, int(words[2]), ANSWER_TIMEOUT)
            self.held += done.pop("opened")
            return done
        if name == "burst":  # burst <file>: every attempt at once, held until unburst
            paths = Path(words[1]).read_text().split()
            done = await self.open(paths, len(paths), ANSWER_TIMEOUT)
            self.burst += done.pop("opened")
            return done
        if name == "unburst":
            for stream in self.burst:
                stream.close()
            self.burst.clear()
            return {}
        if name == "arm":  # from now on, note each held stream's first event
            self.armed = True
            for stream in self.held:
                stream.notified_at = None
            return {"open": sum(1 for stream in self.held if not stream.closed)}
        if name == "pending":
            return {"pending": self.pending()}
        if name == "report":  # report <t0>: each notified stream's delay since t0
            since = float(words[1])
            self.armed = False
            return {
                "delays": [s.notified_at - since for s in self.held if s.notified_at is not None],
                "open": sum(1 for stream in self.held if not stream.closed),
            }
        if name == "close":
            for stream in self.held + self.burst:
                stream.close()
            self.held.clear()
            self.burst.clear()
            return {}
        raise SystemExit(f"unknown command {name}")

    async def serve(self) -> None:
        """Answer each command line on stdin with one JSON line on stdout, until EOF."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := await reader.readline():
            answer = await self.command(line.decode().split())
            sys.stdout.write(json.dumps(answer) + "\n")
            sys.stdout.flush()
        for stream in self.held + self.burst:
            stream.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--source", default="127.0.0.1", help="the loopback address to open from")
    args = parser.parse_args()
    asyncio.run(Client(args.host, args.port, args.source).serve())


if __name__ == "__main__":
    main()
