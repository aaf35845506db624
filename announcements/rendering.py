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
from markdown.extensions import Extension
from markdown.preprocessors import Preprocessor
from pymdownx.magiclink import MagiclinkExtension
from pymdownx.tasklist import TasklistExtension
from pymdownx.tilde import DeleteSubExtension

from announcements.errors import ValidationFailed

ALLOWED_TAGS = frozenset(
    {
        "a", "abbr", "b", "blockquote", "br", "code", "dd", "del", "details", "dl", "dt",
        "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "input", "ins", "kbd", "li",
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
    # Only a task list's box survives, as _DisabledCheckboxes below makes sure.
    "input": ["type", "checked", "disabled"],
}

# Links may point at the web or an address; images only at https or uploads, below.
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


# Images ---------------------------------------------------------------------

# An upload of this instance's, as announcements.images names it. Markdown names one by
# its path, as the editor inserts it, or by its URL; the HTML always holds BASE_URL + path,
# because the widget runs on other sites and feeds and mail are read elsewhere. Rendering
# again (flask notes rerender) moves them all to a new BASE_URL.
MEDIA_PATH = re.compile(r"/media/[0-9]{1,18}/[0-9a-f]{64}\.(?:png|jpg|gif|webp)")
# This instance's BASE_URL: set in a web process by serve_media_from, and sent with each
# body to the worker that renders it. Empty, uploads are not shown.
_media_base = ""


def serve_media_from(base_url: str) -> None:
    """Say at which BASE_URL this instance serves its uploads, for the renders to come."""
    global _media_base
    _media_base = base_url


def _image_source(src: str) -> str | None:
    """The URL an image is shown from: an https URL as it is, an upload of this instance's
    at BASE_URL; None for anything else, which drops the image."""
    path = src[len(_media_base) :] if _media_base and src.startswith(_media_base) else src
    if MEDIA_PATH.fullmatch(path):
        return _media_base + path if _media_base else None
    return src if src.lower().startswith("https://") else None


class _LinksAndImages(Filter):
    """Give every link a safe ``rel``, drop unsafe URLs, and drop images that are not served
    over https nor uploads of this instance's."""

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
                    src = _image_source(attrs.get((None, "src"), ""))
                    if src is None:
                        continue
                    attrs[(None, "src")] = src
            yield token


class _DisabledCheckboxes(Filter):
    """Keep an ``<input>`` only as a task list's box: a disabled checkbox, ticked or not.

    Nothing else about it survives, so no input of the page's can be made to look like
    one of the host's, take focus or be submitted.
    """

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for token in super().__iter__():
            if token["type"] in ("StartTag", "EmptyTag") and token["name"] == "input":
                attrs = token.get("data") or {}
                if attrs.get((None, "type"), "").lower() != "checkbox":
                    continue
                box = {(None, "type"): "checkbox", (None, "disabled"): ""}
                if (None, "checked") in attrs:
                    box[(None, "checked")] = ""
                token["data"] = box
            yield token


_cleaner = bleach.sanitizer.Cleaner(
    tags=ALLOWED_TAGS,
    attributes=ALLOWED_ATTRIBUTES,
    protocols=ALLOWED_PROTOCOLS,
    strip=True,
    strip_comments=True,
    filters=[_LinksAndImages, _DisabledCheckboxes],
)

# Python-Markdown recurses once per level: 300 levels of "  - x" in a note of 100 KB
# went past Python's recursion limit. No changelog in ../shared/testdata nests beyond 3.
MAX_LIST_DEPTH = 20

# A list item's marker and the spaces after it: what Python-Markdown reads as one.
_LIST_ITEM = re.compile(r"( *)([*+-]|\d+\.)( +)")


@dataclass
class _Item:
    """An open list item: the column its text starts at in the source and in the output."""

    source: int
    output: int


class _ListIndents(Preprocessor):
    """Nest lists as changelogs are written, in the four spaces a level Python-Markdown reads.

    Changelogs nest as CommonMark does: an item is inside the one above when its marker
    starts at or after where that item's text starts, so ``- a`` nests ``  - b`` and
    ``1. a`` nests ``   1. b``, as well as the four-space indents Python-Markdown needs.
    ``mdx_truly_sane_lists`` and ``tab_length=2`` read two spaces a level but then
    flatten four-space nesting: six of the 387 releases in ../shared/testdata/changelogs,
    and every older note, four spaces having been the only way to nest. This reads both.

    Paragraphs and code under an item move with it; a line after a blank one that starts
    left of an item's text ends the item. An item right below a paragraph starts a list,
    as in CommonMark (Python-Markdown would run it into the paragraph). Fenced blocks and
    raw HTML are set aside before this runs. One pass, so its time grows with the text.
    """

    def run(self, lines: list[str]) -> list[str]:
        items: list[_Item] = []
        out: list[str] = []
        opened_by = ""  # what began the lines since the last blank one: "item" or "text"
        for line in lines:
            text = line.lstrip(" ")
            if not text:
                out.append(line)
                opened_by = ""
                continue
            indent = len(line) - len(text)
            marker = _LIST_ITEM.match(line)
            if marker and text.strip("*+- ") and (items or indent < 4):  # "* * *" is a rule
                while items and indent < items[-1].source:
                    items.pop()
                if opened_by == "text" and marker[2] in ("*", "+", "-", "1."):
                    out.append("")
                    opened_by = ""
                if len(items) == MAX_LIST_DEPTH:  # deeper items stay at the deepest level
                    items.pop()
                spaces = len(marker[3]) if len(marker[3]) <= 4 else 1
                out.append(" " * (4 * len(items)) + text)
                items.append(_Item(indent + len(marker[2]) + spaces, 4 * (len(items) + 1)))
                opened_by = opened_by or "item"
                continue
            if items and (not opened_by or text.startswith("#")):  # headings end lists
                while items and indent < items[-1].source:
                    items.pop()
            if items and indent >= items[-1].source:
                line = " " * (items[-1].output + indent - items[-1].source) + text
            out.append(line)
            opened_by = opened_by or "text"
        return out


class _RelativeListIndents(Extension):
    """Nest lists by relative indents (:class:`_ListIndents`)."""

    def extendMarkdown(self, md: markdown.Markdown) -> None:  # noqa: N802 - the library's name
        # After the fenced code (25) and raw HTML (20) preprocessors have set their blocks aside.
        md.preprocessors.register(_ListIndents(md), "relative_list_indents", 15)


def _extensions() -> list[str | Extension]:
    """What a note's Markdown may use: new instances for each render, so that nothing
    one render leaves behind, even one stopped halfway, reaches the next."""
    return [
        "fenced_code",
        "tables",
        "sane_lists",
        _RelativeListIndents(),
        # ~~withdrawn~~ is struck through; a single ~ stays a tilde, not a subscript.
        DeleteSubExtension(subscript=False),
        # Bare http(s)://, www. and e-mail addresses become links; nothing else does, so
        # "#123" or "@name" stay text rather than links to a guessed repository.
        MagiclinkExtension(
            repo_url_shorthand=False,
            social_url_shorthand=False,
            repo_url_shortener=False,
            social_url_shortener=False,
        ),
        # "- [x] done" shows a disabled, ticked checkbox.
        TasklistExtension(clickable_checkbox=False, custom_checkbox=False),
    ]


# Measured by bench/render_bench.py on the 2-core test machine: 100 KB of real changelogs
# renders in 0.19 s (0.22 s with the changelog extensions), while Python-Markdown took 8 s
# over 8,000 "[" and more than 30 s over 100 KB of "[a](", and bleach 28 s over "<ul><li>"
# and 8 s over "<b>". A render gets three times what the largest honest body needs, and
# leaves a refused preview or import of 100 KB room to answer within a second. 100 KB of
# nothing but bare addresses, strikethroughs or one-item lists is refused, as 100 KB of
# links is: each costs in proportion to what it makes, 70 to 200 µs a link.
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
    raw_html = markdown.markdown(body_md, extensions=_extensions(), output_format="html")
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
            body_md, seconds, media_base = connection.recv()
        except EOFError:  # the web process is gone
            return
        serve_media_from(media_base)
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
        self._connection.send((body_md, seconds, _media_base))
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
