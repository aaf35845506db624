"""Markdown to safe HTML: the only module that imports ``markdown`` and ``bleach``.

Notes are rendered once, when they are saved, and the result is stored; every
template and feed that shows a note's body shows this output and nothing else.
The allowlists below are the whole policy: what is not named here does not
survive, whatever the Markdown or raw HTML around it tried.

Both libraries take time that grows with the square of some inputs, so a render runs
in a worker process that stops it once it has used its CPU time (``CPU_SECONDS``);
Markdown that would need more is refused with :class:`TooIntricate`.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import bleach
import markdown
from bleach.html5lib_shim import Filter  # type: ignore[attr-defined]  # exported; the stubs omit it

from announcements.errors import ValidationFailed

ALLOWED_TAGS = frozenset(
    {
        "a", "abbr", "b", "blockquote", "br", "code", "dd", "del", "details", "dl", "dt",
        "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li",
        "mark", "ol", "p", "pre", "s", "small", "span", "strong", "sub", "summary", "sup",
        "table", "tbody", "td", "tfoot", "th", "thead", "tr", "ul",
    }
)  # fmt: skip

_LANGUAGE_CLASS = re.compile(r"language-[A-Za-z0-9_+-]{1,32}")


def _code_attribute(tag: str, name: str, value: str) -> bool:
    """Keep only the ``language-…`` class that fenced code blocks carry."""
    return name == "class" and _LANGUAGE_CLASS.fullmatch(value) is not None


ALLOWED_ATTRIBUTES: dict[str, Any] = {
    "a": ["href", "title"],
    "abbr": ["title"],
    "img": ["src", "alt", "title", "width", "height"],
    "code": _code_attribute,
    "td": ["align"],
    "th": ["align"],
    "ol": ["start"],
}

# Links may point at the web or an address; images only at https, below.
ALLOWED_PROTOCOLS = frozenset({"http", "https", "mailto"})
LINK_REL = "noopener noreferrer nofollow"


_IGNORED_IN_URLS = re.compile(r"[\x00-\x20\x7f]+")


def _is_safe_url(url: str) -> bool:
    """True for a relative URL or one whose scheme is allowed.

    bleach reads ``javascript:123`` as a host and port and lets it through, so the
    scheme is checked here too, the way a browser finds it: control characters and
    white space dropped, case ignored, the scheme being what precedes the first colon
    that comes before any ``/``, ``?`` or ``#``.
    """
    squeezed = _IGNORED_IN_URLS.sub("", url).lower()
    head = re.split(r"[/?#]", squeezed, maxsplit=1)[0]
    if ":" not in head:
        return True
    return head.split(":", 1)[0] in ALLOWED_PROTOCOLS


class _LinksAndImages(Filter):
    """Give every link a safe ``rel``, drop unsafe URLs, and drop images not served over https."""

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for token in super().__iter__():
            if token["type"] in ("StartTag", "EmptyTag"):
                attrs = token.get("data") or {}
                for key in [(None, "href"), (None, "src")]:
                    if key in attrs and not _is_safe_url(attrs[key]):
                        del attrs[key]
                if token["name"] == "a":
                    attrs[(None, "rel")] = LINK_REL
                    token["data"] = attrs
                elif token["name"] == "img":
                    src = attrs.get((None, "src"), "")
                    if not src.lower().startswith("https://"):
                        continue
            yield token


_cleaner = bleach.sanitizer.Cleaner(
    tags=ALLOWED_TAGS,
    attributes=ALLOWED_ATTRIBUTES,
    protocols=ALLOWED_PROTOCOLS,
    strip=True,
    strip_comments=True,
    filters=[_LinksAndImages],
)

_EXTENSIONS = ["fenced_code", "tables", "sane_lists"]

# Measured by bench/render_bench.py on the 2-core test machine: 100 KB of real changelogs
# renders in 0.19 s, while Python-Markdown took 8 s over 8,000 "[" and more than 30 s over
# 100 KB of "[a](", and bleach 28 s over "<ul><li>" and 8 s over "<b>". A render gets
# more than three times what the largest honest body needs, and leaves a refused preview
# or import of 100 KB room to answer within a second.
CPU_SECONDS = 0.7


class TooIntricate(ValidationFailed):
    """Markdown that would take more CPU time to render than a render may have."""

    def __init__(self) -> None:
        super().__init__(
            {
                "body_md": "This text takes too long to format: it has long runs of brackets, "
                "tags or other Markdown marks. Simplify those parts or split the note."
            }
        )


@dataclass
class Budget:
    """The CPU seconds that a series of renders, such as one import's, may still use."""

    seconds: float


def render(body_md: str, budget: Budget | None = None) -> str:
    """Render Markdown to HTML that is safe to show anywhere Tidings shows a note.

    Raise TooIntricate when that needs more than CPU_SECONDS of CPU time, or more than is
    left of ``budget``, from which the time the render took is taken.
    """
    seconds = CPU_SECONDS if budget is None else min(CPU_SECONDS, budget.seconds)
    html, used = _workers.render(body_md, seconds)
    if budget is not None:
        budget.seconds -= used
    return html


def _render_here(body_md: str) -> str:
    raw_html = markdown.markdown(body_md, extensions=_EXTENSIONS, output_format="html")
    return str(_cleaner.clean(raw_html))


# Workers --------------------------------------------------------------------

# Workers are forked from a server process that has imported this module: a worker
# starts in milliseconds where a fresh interpreter with these libraries takes 0.14 s, and
# no web process, whose threads may hold locks, is ever forked. A worker imports the
# program's main module, as multiprocessing does, so a script that renders keeps its
# work under ``if __name__ == "__main__":``.
_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload([__name__])


class _OutOfTime(BaseException):
    """A render used its CPU time. Not an Exception, so that no ``except Exception`` in
    the libraries can swallow it."""


def _out_of_time(_signal: int, _frame: object) -> None:
    raise _OutOfTime


def _serve(connection: Connection) -> None:
    """A worker's loop: render each body in the CPU time sent with it, or say it ran out.

    ITIMER_PROF counts the process's CPU time and raises _OutOfTime wherever the render
    is: Python-Markdown and bleach are Python, and ``re`` checks for signals as it
    matches (a match of "(a+)+b" on 40 "a"s stops within a millisecond of its limit).
    The worker then serves the next body: each render starts from fresh parser state.
    """
    signal.signal(signal.SIGPROF, _out_of_time)
    while True:
        try:
            body_md, seconds = connection.recv()
        except EOFError:  # the web process is gone
            return
        started = time.process_time()
        try:
            signal.setitimer(signal.ITIMER_PROF, seconds)
            try:
                html = _render_here(body_md)
            finally:
                signal.setitimer(signal.ITIMER_PROF, 0)
        except _OutOfTime:
            connection.send(None)
        else:
            connection.send((html, time.process_time() - started))


class _Worker:
    def __init__(self) -> None:
        self._connection, theirs = _CONTEXT.Pipe()
        _CONTEXT.Process(target=_serve, args=(theirs,), daemon=True).start()
        theirs.close()

    def render(self, body_md: str, seconds: float) -> tuple[str, float] | None:
        """The HTML and the CPU seconds it took; None when the time ran out."""
        self._connection.send((body_md, seconds))
        done: tuple[str, float] | None = self._connection.recv()
        return done


class _Workers:
    """This process's idle workers: a render takes one, or starts one when all are busy,
    so there are never more than the most renders that ran at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._pid = os.getpid()

    def render(self, body_md: str, seconds: float) -> tuple[str, float]:
        if seconds <= 0:
            raise TooIntricate()
        with self._lock:
            if self._pid != os.getpid():  # a forked process talks to workers of its own
                self._idle, self._pid = [], os.getpid()
            worker = self._idle.pop() if self._idle else None
        worker = worker or _Worker()
        done = worker.render(body_md, seconds)
        with self._lock:
            self._idle.append(worker)
        if done is None:
            raise TooIntricate()
        return done


_workers = _Workers()
