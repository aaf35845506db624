"""The Markdown pipeline: ordinary Markdown survives, nothing that can run does.

The corpus in ../shared/testdata/xss/ (about 950 payloads from OWASP, cure53, bleach,
markdown-it and PayloadsAllTheThings) goes through as Markdown, as raw HTML inside
Markdown, and as link and image targets. The output is parsed like a browser would and
every tag, attribute and URL is checked against the policy, so an escaped payload that is
merely shown as text passes and a live one fails.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from announcements.rendering import ALLOWED_TAGS, LINK_REL, render
from tests.conftest import SHARED_TESTDATA

XSS_DIR = SHARED_TESTDATA / "xss"
DANGEROUS_SCHEMES = ("javascript:", "vbscript:", "data:")
URL_ATTRIBUTES = {"href", "src"}


def _json_payloads(path: Path) -> list[str]:
    data = json.loads(path.read_text(encoding="utf-8"))
    found: list[str] = []

    def walk(value: object) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                if key in ("payload", "markdown") and isinstance(inner, str):
                    found.append(inner)
                else:
                    walk(inner)
        elif isinstance(value, list):
            for inner in value:
                walk(inner)

    walk(data)
    return found


def load_corpus() -> list[str]:
    payloads: list[str] = []
    for path in sorted(XSS_DIR.glob("*.txt")):
        payloads += [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for path in sorted(XSS_DIR.glob("*.json")):
        payloads += _json_payloads(path)
    return list(dict.fromkeys(payloads))


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))

    handle_startendtag = handle_starttag


def _squeeze(url: str) -> str:
    # Browsers ignore whitespace and control characters inside a scheme.
    return re.sub(r"[\x00-\x20]+", "", url).lower()


def policy_violations(html: str) -> list[str]:
    """Everything in ``html`` that the sanitising policy should have removed."""
    parser = _Collector()
    parser.feed(html)
    parser.close()
    problems = []
    for tag, attrs in parser.elements:
        if tag not in ALLOWED_TAGS:
            problems.append(f"tag <{tag}>")
        for name, value in attrs.items():
            if name.startswith("on") or name in ("style", "srcdoc", "formaction"):
                problems.append(f"attribute {name} on <{tag}>")
            if name in URL_ATTRIBUTES and _squeeze(value or "").startswith(DANGEROUS_SCHEMES):
                problems.append(f"{name}={value!r} on <{tag}>")
        if tag == "img" and not (attrs.get("src") or "").startswith("https://"):
            problems.append(f"image not over https: {attrs.get('src')!r}")
        if tag == "a" and attrs.get("rel") != LINK_REL:
            problems.append(f"link without rel={LINK_REL!r}")
    return problems


CORPUS = load_corpus() if XSS_DIR.is_dir() else []


def test_the_corpus_is_there_and_large() -> None:
    if not XSS_DIR.is_dir():
        pytest.skip(f"the shared XSS corpus is absent ({XSS_DIR})")
    assert len(CORPUS) > 900


@pytest.mark.skipif(not CORPUS, reason="the shared XSS corpus ../shared/testdata/xss is absent")
@pytest.mark.parametrize(
    "wrap",
    [
        pytest.param(lambda p: p, id="as-markdown"),
        pytest.param(
            lambda p: f"Intro paragraph.\n\n<div>\n{p}\n</div>\n\nOutro.", id="raw-html-block"
        ),
        pytest.param(lambda p: f"Inline <span>{p}</span> text", id="raw-html-inline"),
        pytest.param(lambda p: f"[click]({p}) and ![img]({p})", id="link-and-image-target"),
        pytest.param(lambda p: f"[ref]\n\n[ref]: {p}", id="reference-link"),
    ],
)
def test_no_payload_survives(wrap) -> None:
    failures = {}
    for payload in CORPUS:
        problems = policy_violations(render(wrap(payload)))
        if problems:
            failures[payload] = problems
    assert not failures, f"{len(failures)} payloads survived, e.g. {next(iter(failures.items()))}"


def test_the_checker_catches_what_it_looks_for() -> None:
    assert policy_violations('<img src=x onerror="alert(1)">')
    assert policy_violations('<a href=" jav\tascript:alert(1)">x</a>')
    assert policy_violations("<script>alert(1)</script>")
    assert policy_violations('<a href="https://e.com">no rel</a>')
    assert not policy_violations("<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>")


def test_ordinary_markdown_comes_through_intact() -> None:
    html = render(
        "## What's new\n\n"
        "Some *emphasis*, **strong** and `code`.\n\n"
        "- one\n- two\n\n"
        "1. first\n2. second\n\n"
        "```python\nprint('hi')\n```\n\n"
        "| a | b |\n|---|---|\n| 1 | 2 |\n\n"
        "> quoted\n\n"
        "[docs](https://docs.example.com/x?y=1) and ![shot](https://img.example.com/a.png)\n"
    )
    assert "<h2>What's new</h2>" in html
    assert "<em>emphasis</em>" in html and "<strong>strong</strong>" in html
    assert "<code>code</code>" in html
    assert "<ul>\n<li>one</li>" in html and "<ol>\n<li>first</li>" in html
    assert "<pre><code class=\"language-python\">print('hi')\n</code></pre>" in html
    assert "<table>" in html and "<td>1</td>" in html
    assert "<blockquote>" in html
    assert (
        '<a href="https://docs.example.com/x?y=1" rel="noopener noreferrer nofollow">docs</a>'
        in html
    )
    assert '<img alt="shot" src="https://img.example.com/a.png">' in html
    assert not policy_violations(html)


def test_images_need_https_and_unsafe_tags_go() -> None:
    html = render(
        "![a](http://plain.example.com/a.png)\n\n<iframe src='https://x'></iframe><form></form>"
    )
    assert "<img" not in html and "<iframe" not in html and "<form" not in html


def test_mailto_links_are_kept() -> None:
    assert 'href="mailto:help@example.com"' in render("[mail](mailto:help@example.com)")


@pytest.mark.parametrize(
    "href", ["javascript:123", "JaVaScRiPt:alert(1)", "java\nscript:x", "data:text/html,x"]
)
def test_scripting_urls_lose_their_href_even_where_bleach_misreads_them(href: str) -> None:
    html = render(f'<a href="{href}">x</a>')
    assert "href" not in html and ">x</a>" in html
