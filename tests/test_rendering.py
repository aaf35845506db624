"""The Markdown pipeline: ordinary Markdown survives, nothing that can run does, and
changelogs keep the structure they were written with.

The corpus in ../shared/testdata/xss/ (about 950 payloads from OWASP, cure53, bleach,
markdown-it and PayloadsAllTheThings) goes through as Markdown, as raw HTML inside
Markdown, and as link and image targets. The output is parsed like a browser would and
every tag, attribute and URL is checked against the policy written out here, so an
escaped payload that is merely shown as text passes and a live one fails.

Each release of the real changelogs in ../shared/testdata/changelogs/ is read by a small
scanner of this module's own, which counts what its Markdown says (how deep its lists
nest, how many links, bare addresses included, and how much code); the rendered HTML
must hold as many.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest

from announcements import changelog
from announcements.rendering import render
from tests.conftest import SHARED_TESTDATA

XSS_DIR = SHARED_TESTDATA / "xss"
CHANGELOGS_DIR = SHARED_TESTDATA / "changelogs"
DANGEROUS_SCHEMES = ("javascript:", "vbscript:", "data:")
URL_ATTRIBUTES = {"href", "src"}
# The policy, written out rather than read from the module it checks.
ALLOWED_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "dd", "del", "details", "dl", "dt",
    "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "input", "ins", "kbd", "li",
    "mark", "ol", "p", "pre", "s", "small", "span", "strong", "sub", "summary", "sup",
    "table", "tbody", "td", "tfoot", "th", "thead", "tr", "ul",
}  # fmt: skip
LINK_REL = "noopener noreferrer nofollow"
# A task list's box, ticked or not, and no other input.
CHECKBOXES = [
    {"type": "checkbox", "disabled": None},
    {"type": "checkbox", "disabled": None, "checked": None},
]


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
        if tag == "input" and attrs not in CHECKBOXES:
            problems.append(f"input other than a disabled checkbox: {attrs!r}")
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
    assert policy_violations('<input type="checkbox" checked>')
    assert policy_violations('<input type="text" disabled>')
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


# Markdown as changelogs are written ----------------------------------------


def test_lists_nest_by_two_spaces_four_spaces_or_under_the_item_text() -> None:
    nested = "<ul>\n<li>a<ul>\n<li>b<ul>\n<li>c</li>\n</ul>\n</li>\n</ul>\n</li>\n<li>d</li>\n</ul>"
    assert render("- a\n  - b\n    - c\n- d") == nested
    assert render("- a\n    - b\n        - c\n- d") == nested
    assert (
        render("1. a\n   1. b\n2. c")
        == "<ol>\n<li>a<ol>\n<li>b</li>\n</ol>\n</li>\n<li>c</li>\n</ol>"
    )
    # Text and code under an item indented to the item's text stay in it.
    html = render("- a\n\n  More about a.\n\n      code in a\n\nAfter the list.")
    assert (
        "<li>\n<p>a</p>\n<p>More about a.</p>\n<pre><code>code in a\n</code></pre>\n</li>" in html
    )
    assert html.endswith("</ul>\n<p>After the list.</p>")
    # A list right below a paragraph is a list, and code at the top is still code.
    assert render("Changes:\n- a") == "<p>Changes:</p>\n<ul>\n<li>a</li>\n</ul>"
    assert render("Text\n\n    code") == "<p>Text</p>\n<pre><code>code\n</code></pre>"
    assert render("- a\n\n* * *") == "<ul>\n<li>a</li>\n</ul>\n<hr>"


def test_strikethrough_takes_two_tildes_and_a_single_tilde_stays() -> None:
    html = render("~~Withdrawn~~ and ~1.2 and H~2~O, `~~code~~`")
    assert html == "<p><del>Withdrawn</del> and ~1.2 and H~2~O, <code>~~code~~</code></p>"


def test_bare_addresses_become_links_under_the_same_rules_as_written_ones() -> None:
    html = render(
        "See https://example.com/a_(b), www.example.org. or ftp://files.example.com/x; "
        "fixes #12 by @dev in owner/repo#3"
    )
    assert (
        '<a href="https://example.com/a_(b)" rel="noopener noreferrer nofollow">'
        "https://example.com/a_(b)</a>, "
        '<a href="http://www.example.org" rel="noopener noreferrer nofollow">www.example.org</a>.'
        in html
    )
    # A scheme the policy does not allow loses its href, and no shorthand becomes a link.
    assert '<a rel="noopener noreferrer nofollow">ftp://files.example.com/x</a>' in html
    assert "fixes #12 by @dev in owner/repo#3</p>" in html
    assert not policy_violations(html)
    assert "href" not in render("javascript:alert(1) and `https://in.code`")


def test_task_lists_show_disabled_checkboxes_and_no_other_input_survives() -> None:
    html = render("- [x] Done\n- [ ] To do\n  - [X] Nested")
    assert html == (
        '<ul>\n<li><input type="checkbox" disabled checked> Done</li>\n'
        '<li><input type="checkbox" disabled> To do<ul>\n'
        '<li><input type="checkbox" disabled checked> Nested</li>\n</ul>\n</li>\n</ul>'
    )
    raw = render(
        '<input type="text" value="x"> <input type="checkbox" onclick="x()" form="f" name="n" '
        'checked autofocus> <input type="image" src="https://e.com/a.png">'
    )
    assert raw == '<p> <input type="checkbox" disabled checked> </p>'


@dataclass
class Counts:
    """How deep lists nest, how many links there are and how many code spans and blocks."""

    depth: int = 0
    links: int = 0
    code: int = 0


_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")
_ITEM = re.compile(r"( *)([-*+]|\d+\.) +\S")
_RULE = re.compile(r" {0,3}([-*_])( *\1){2,} *$")
_DEFINITION = re.compile(r" {0,3}\[([^\]]+)\]: *\S+")
_BACKTICKS = re.compile(r"`+")
_INLINE_LINK = re.compile(
    r"(!?)\[((?:[^\[\]]|\[[^\[\]]*\])*)\]"
    r"\((?:<[^>]*>|[^()\s]*(?:\([^()\s]*\)[^()\s]*)*)(?: +\"[^\"]*\")?\)"
)
_REFERENCE_LINK = re.compile(r"(!?)\[((?:[^\[\]]|\[[^\[\]]*\])+)\](?:\[([^\]]*)\])?")
_ADDRESSES = [
    re.compile(r"<(?:https?://|mailto:)[^<>\s]+>"),
    re.compile(r"(?<![\w/@.])(?:https?://|www\.)[\w-]"),
    re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[a-z]{2,}\b", re.IGNORECASE),
]


def markdown_counts(markdown: str) -> Counts:
    """What ``markdown`` says, read line by line without any Markdown library.

    Lists: an item indented further than the items open above it is one level deeper, one
    indented less closes those indented more, and a paragraph at the margin after a blank
    line, or a heading, ends them all. Code: fenced blocks, runs of indented lines at the
    top, and code spans (a run of backticks up to the next run as long, in one paragraph).
    Links: inline and reference links (not images), <autolinks>, bare http(s):// and www.
    addresses and e-mail addresses, outside code.
    """
    counts = Counts()
    prose: list[str] = []
    open_items: list[int] = []  # the columns of the list markers open above
    definitions: set[str] = set()
    fence = ""
    after_blank, indented_code = True, False
    for line in markdown.splitlines():
        indent = len(line) - len(line.lstrip())
        if fence:
            fence = "" if line.strip().startswith(fence) else fence
            prose.append("")
            continue
        if not line.strip():
            after_blank = True
            prose.append("")
            continue
        if (after_blank and indent == 0) or line.lstrip().startswith("#"):
            open_items.clear()
        if opening := _FENCE.match(line):
            fence = opening[1]
            counts.code += 1
            prose.append("")
        elif indent >= 4 and not open_items and (after_blank or indented_code):
            counts.code += not indented_code
            indented_code = True
            prose.append("")
        elif definition := _DEFINITION.match(line):
            definitions.add(definition[1].lower())
            prose.append("")
        else:
            if _ITEM.match(line) and not _RULE.match(line):
                while open_items and open_items[-1] > indent:
                    open_items.pop()
                if not open_items or open_items[-1] < indent:
                    open_items.append(indent)
                counts.depth = max(counts.depth, len(open_items))
            prose.append(line)
        indented_code = indented_code and indent >= 4
        after_blank = False
    outside_code = []
    for paragraph in "\n".join(prose).split("\n\n"):
        runs = list(_BACKTICKS.finditer(paragraph))
        kept, at, i = [], 0, 0
        while i < len(runs):
            closer = next(
                (j for j in range(i + 1, len(runs)) if len(runs[j][0]) == len(runs[i][0])), None
            )
            if closer is None or paragraph[runs[i].start() - 1 : runs[i].start()] == "\\":
                i += 1
                continue
            counts.code += 1
            kept.append(paragraph[at : runs[i].start()])
            at, i = runs[closer].end(), closer + 1
        outside_code.append(" ".join([*kept, paragraph[at:]]))
    text = "\n\n".join(outside_code)

    def link(match: re.Match[str], label: str | None = None) -> str:
        if label is not None and label.lower() not in definitions:
            return match[0].replace("[", " ").replace("]", " ")
        counts.links += not match[1]
        return f" {match[2]} "

    text = _INLINE_LINK.sub(link, text)
    text = _REFERENCE_LINK.sub(lambda match: link(match, match[3] or match[2]), text)
    for address in _ADDRESSES:
        counts.links += len(address.findall(text))
        text = address.sub(" ", text)
    return counts


class _HtmlCounts(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.counts = Counts()
        self._open_lists = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("ul", "ol"):
            self._open_lists += 1
            self.counts.depth = max(self.counts.depth, self._open_lists)
        self.counts.links += tag == "a" and bool(dict(attrs).get("href"))
        self.counts.code += tag == "code"

    def handle_endtag(self, tag: str) -> None:
        self._open_lists -= tag in ("ul", "ol")


def html_counts(html: str) -> Counts:
    parser = _HtmlCounts()
    parser.feed(html)
    parser.close()
    return parser.counts


def test_the_counter_reads_what_it_looks_for() -> None:
    markdown = (
        "- a `code` [link](https://e.com/(x)) ![image](https://e.com/i.png)\n"
        "  - b https://e.com www.e.org <https://e.com> me@e.com `https://in.code`\n"
        "    - c [ref] [not a ref] [text][ref]\n\n"
        "```\n- not a list https://e.com\n```\n\n    indented code\n\n[ref]: https://e.com/r"
    )
    assert markdown_counts(markdown) == Counts(depth=3, links=7, code=4)
    assert html_counts(render(markdown)) == Counts(depth=3, links=7, code=4)
    assert markdown_counts("    code\n\n    more code\n") == Counts(code=1)


def _changelog_releases() -> list[pytest.param]:
    releases = []
    paths = sorted(CHANGELOGS_DIR.glob("*.md")) if CHANGELOGS_DIR.is_dir() else []
    for path in paths:
        if path.name == "SOURCES.md":
            continue
        parsed = changelog.parse(path.read_text(encoding="utf-8"))
        for release in parsed.releases:
            name = f"{path.stem.split('__')[1]}-{release.version}"
            releases.append(pytest.param(release.body(parsed.links), id=name))
    return releases


CHANGELOG_RELEASES = _changelog_releases()


def test_the_changelogs_are_there() -> None:
    if not CHANGELOGS_DIR.is_dir():
        pytest.skip(f"the real changelogs are absent ({CHANGELOGS_DIR})")
    assert len(CHANGELOG_RELEASES) > 300


@pytest.mark.skipif(
    not CHANGELOG_RELEASES,
    reason="the real changelogs in ../shared/testdata/changelogs/ are absent",
)
@pytest.mark.parametrize("body", CHANGELOG_RELEASES)
def test_each_release_of_a_real_changelog_keeps_its_lists_links_and_code(body: str) -> None:
    html = render(body)
    assert html_counts(html) == markdown_counts(body)
    assert not policy_violations(html)
