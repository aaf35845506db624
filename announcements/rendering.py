"""Markdown to safe HTML: the only module that imports ``markdown`` and ``bleach``.

Notes are rendered once, when they are saved, and the result is stored; every
template and feed that shows a note's body shows this output and nothing else.
The allowlists below are the whole policy: what is not named here does not
survive, whatever the Markdown or raw HTML around it tried.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import bleach
import markdown
from bleach.html5lib_shim import Filter  # type: ignore[attr-defined]  # exported; the stubs omit it

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


def render(body_md: str) -> str:
    """Render Markdown to HTML that is safe to show anywhere Tidings shows a note."""
    raw_html = markdown.markdown(body_md, extensions=_EXTENSIONS, output_format="html")
    return sanitise(raw_html)


def sanitise(html: str) -> str:
    """Strip everything outside the allowlist from an HTML fragment."""
    return str(_cleaner.clean(html))
