"""The public changelog and its feeds in the reader's language, on SQLite and PostgreSQL.

Acme speaks English (its default), French, Arabic and Brazilian Portuguese. Funnels is
translated into French and Arabic; the fix's French translation is outdated and its
Arabic one a draft; the old note has only a French draft; a draft note has a published
French translation. Nothing else is shown from a draft, ever.
"""

from __future__ import annotations

import json
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import feedparser
import lxml.etree
import lxml.html
import pytest
from babel.dates import format_date
from flask.testing import FlaskClient
from flask_babel import force_locale, gettext
from sqlalchemy.orm import Session

from announcements import services, translations
from announcements.feeds import XML_LANG
from announcements.models import Note, Product, utcnow
from announcements.note_rules import NoteInput
from tests.factories import make_note, make_product
from tests.i18n_helpers import needs_catalogue

FEEDS = ("rss", "atom", "json")
# Each text a reader may be shown, title and body as one row has them.
ROWS = {
    "Funnels": "See funnels.",
    "Entonnoirs": "Voir les entonnoirs.",
    "مسارات التحويل": "شاهد المسارات.",
    "A fix, now with more": "It is fixed, and faster.",
    "Une correction": "C’est corrigé.",
    "Old thing": "Something new.",
}


@pytest.fixture
def product(session: Session) -> Product:
    product = make_product(session, slug="acme", name="Acme")
    translations.set_languages(session, product, "en", ["fr", "ar", "pt-BR"], by=None, now=utcnow())
    session.commit()
    return product


def _translate(
    session: Session, note: Note, locale: str, title: str, body: str, *, publish: bool, now=None
) -> None:
    now = now or utcnow()
    translations.save(
        session, note, locale, title=title, body_md=body, publish=publish, by=None, now=now
    )
    session.commit()


@pytest.fixture
def planted(session: Session, product: Product) -> dict[str, Note]:
    now = utcnow()
    notes = {
        "old": make_note(
            session,
            product,
            version="1.9.0",
            title="Old thing",
            body_md="Something new.",
            now=now - timedelta(days=30),
        ),
        "fix": make_note(
            session,
            product,
            version="2.0.0",
            title="A fix",
            category="Fixed",
            body_md="It is fixed.",
            now=now - timedelta(days=3),
        ),
        "funnels": make_note(
            session,
            product,
            version="2.10.0",
            title="Funnels",
            body_md="See funnels.",
            now=now - timedelta(days=1),
        ),
        "draft": make_note(
            session, product, version="2.10.0", title="SECRET draft", status="draft"
        ),
    }
    _translate(session, notes["funnels"], "fr", "Entonnoirs", "Voir les entonnoirs.", publish=True)
    _translate(session, notes["funnels"], "ar", "مسارات التحويل", "شاهد المسارات.", publish=True)
    _translate(session, notes["fix"], "fr", "Une correction", "C’est corrigé.", publish=True)
    _translate(session, notes["fix"], "ar", "SECRET مسودة", "SECRET", publish=False)
    _translate(session, notes["old"], "fr", "SECRET brouillon", "SECRET", publish=False)
    _translate(session, notes["draft"], "fr", "SECRET traduit", "SECRET", publish=True)
    # The default text changes after the French was published: it is outdated, still shown.
    services.update_note(
        session,
        notes["fix"],
        NoteInput(
            version="2.0.0",
            title="A fix, now with more",
            category="Fixed",
            body_md="It is fixed, and faster.",
        ),
        intent=services.Intent.PUBLISH,
        by=None,
        now=now - timedelta(days=2),
    )
    assert translations.statuses(notes["fix"]) == {
        "en": "published",
        "fr": "outdated",
        "ar": "draft",
        "pt-BR": "missing",
    }
    return notes


def page(client: FlaskClient, path: str = "/changelog/acme", **headers: str):
    response = client.get(path, headers=headers)
    assert response.status_code == 200, response.data
    return response, lxml.html.fromstring(response.data)


def shown(document) -> dict[str, str]:
    """Each note's title on the page, by the language its text says it is in."""
    return {
        text.findtext("h3"): text.get("lang")
        for text in document.xpath("//article/div[@class='note-text']")
    }


# The page -------------------------------------------------------------------------------

# Accept-Language → the language of the notes (the product's nearest) and of the interface.
NEGOTIATION = [
    ("", "en", "en"),
    ("fr", "fr", "fr"),
    ("fr-CA, fr;q=0.9", "fr", "fr"),
    ("fr-FR", "fr", "fr"),
    ("ar-EG", "ar", "ar"),
    ("en-GB, fr;q=0.8", "en", "en"),
    ("de, fr;q=0.5", "fr", "de"),  # no German notes: French ones, German buttons
    ("ja", "en", "ja"),  # nothing the product has: its default
    ("pt-BR", "pt-BR", "en"),  # a language of the product with no text yet: the default's
    ("pt", "en", "en"),  # pt does not reach pt-BR
    ("*", "en", "en"),
    ("!!, fr;q=0.1", "fr", "fr"),
]


@pytest.mark.parametrize(("accept", "notes", "interface"), NEGOTIATION)
def test_the_page_speaks_the_browser_s_language(client, planted, accept, notes, interface) -> None:
    response, document = page(client, **{"Accept-Language": accept} if accept else {})
    assert "Accept-Language" in response.headers["Vary"]
    html = document.getroottree().getroot()
    assert html.get("lang") == interface
    assert html.get("dir") == ("rtl" if interface == "ar" else "ltr")
    current = document.xpath("//nav[@class='languages wrap']/a[@aria-current]")
    assert [link.get("hreflang") for link in current] == [notes]
    funnels = {"fr": "Entonnoirs", "ar": "مسارات التحويل"}.get(notes)
    assert shown(document)["Old thing"] == "en"  # untranslated: the default text
    assert shown(document).get(funnels or "Funnels") == (notes if funnels else "en")


def test_locale_in_the_address_wins_over_the_browser(client, planted) -> None:
    response, document = page(client, "/changelog/acme?locale=fr", **{"Accept-Language": "ar"})
    assert "Accept-Language" not in response.headers.get("Vary", "")
    assert document.getroottree().getroot().get("lang") == "fr"
    assert shown(document) == {
        "Entonnoirs": "fr",
        "Une correction": "fr",  # outdated, still shown whole
        "Old thing": "en",  # only a French draft: the default text
    }
    _, arabic = page(client, "/changelog/acme?locale=ar")
    root = arabic.getroottree().getroot()
    assert (root.get("lang"), root.get("dir")) == ("ar", "rtl")
    assert shown(arabic) == {
        "مسارات التحويل": "ar",
        "A fix, now with more": "en",
        "Old thing": "en",
    }
    for text in arabic.xpath("//div[@class='note-text']"):
        assert text.get("dir") == ("rtl" if text.get("lang") == "ar" else "ltr")
    # A more specific tag reaches the product's language; one it lacks gets the default
    # notes and its own interface language.
    _, canadian = page(client, "/changelog/acme?locale=fr_CA")
    assert shown(canadian)["Entonnoirs"] == "fr"
    _, german = page(client, "/changelog/acme?locale=de")
    assert german.getroottree().getroot().get("lang") == "de"
    assert set(shown(german).values()) == {"en"}


def test_a_locale_that_is_not_a_tag_is_refused(client, planted) -> None:
    for path in ("/changelog/acme?locale=!!", "/changelog/acme/2.10.0?locale=12"):
        response = client.get(path)
        assert response.status_code == 400
        assert "language tag" in response.get_data(as_text=True)


def test_drafts_never_show_in_any_language(client, planted) -> None:
    for locale in ("en", "fr", "ar", "pt-BR"):
        for path in ("/changelog/acme", "/changelog/acme/2.10.0", "/changelog/acme/2.0.0"):
            body = client.get(f"{path}?locale={locale}").get_data(as_text=True)
            assert "SECRET" not in body, (path, locale)
        for kind in FEEDS:
            body = client.get(f"/changelog/acme/feed.{kind}?locale={locale}").get_data(as_text=True)
            assert "SECRET" not in body, (kind, locale)


def test_title_and_body_always_come_from_one_row(client, planted) -> None:
    for locale in ("en", "fr", "ar", "pt-BR"):
        _, document = page(client, f"/changelog/acme?locale={locale}")
        for text in document.xpath("//div[@class='note-text']"):
            title = text.findtext("h3")
            assert text.xpath("div[@class='note-body']")[0].text_content().strip() == ROWS[title]


def test_every_link_keeps_the_chosen_language(client, session, product, planted) -> None:
    for number in range(16):  # a second page of versions
        make_note(session, product, version=f"0.{number}.0", title=f"Early {number}")
    _, document = page(client, "/changelog/acme?locale=fr&category=New")
    links = [
        *document.xpath("//a[@class='brand']"),
        *document.xpath("//nav[@class='categories']/a"),
        *document.xpath("//section[@class='release']/h2/a"),
        *document.xpath("//a[@class='anchor']"),
        *document.xpath("//nav[@class='pager']/a"),
    ]
    assert len(document.xpath("//nav[@class='pager']/a")) == 1
    for link in links:
        assert "locale=fr" in link.get("href"), link.get("href")
    assert document.xpath("//form[@class='filters']/input[@name='locale']")[0].get("value") == "fr"
    # The switcher keeps the filter, the search and the page; each language in its own name.
    _, second = page(client, "/changelog/acme?locale=fr&q=early&page=2")
    switcher = {
        link.get("hreflang"): link for link in second.xpath("//nav[@class='languages wrap']/a")
    }
    assert list(switcher) == ["en", "fr", "ar", "pt-BR"]
    assert [link.text_content() for link in switcher.values()] == [
        "English",
        "Français",
        "العربية",
        "Português (Brasil)",
    ]
    address = urlsplit(switcher["ar"].get("href"))
    assert address.path == "/changelog/acme"
    assert parse_qs(address.query) == {"q": ["early"], "page": ["2"], "locale": ["ar"]}
    assert switcher["ar"].get("dir") == "rtl" and switcher["ar"].get("lang") == "ar"
    _, version = page(client, "/changelog/acme/2.10.0?locale=ar")
    assert version.xpath("//p[@class='back']/a")[0].get("href") == "/changelog/acme?locale=ar"


def test_alternates_and_canonical_name_each_language(client, planted) -> None:
    base = "http://127.0.0.1:5000/changelog/acme"
    for path, address in (("", base), ("/2.10.0", f"{base}/2.10.0")):
        _, negotiated = page(client, f"/changelog/acme{path}", **{"Accept-Language": "fr"})
        alternates = {
            link.get("hreflang"): link.get("href")
            for link in negotiated.xpath("//link[@rel='alternate'][@hreflang]")
        }
        assert alternates == {
            "en": f"{address}?locale=en",
            "fr": f"{address}?locale=fr",
            "ar": f"{address}?locale=ar",
            "pt-BR": f"{address}?locale=pt-BR",
            "x-default": address,
        }
        assert negotiated.xpath("//link[@rel='canonical']")[0].get("href") == address
        _, french = page(client, f"/changelog/acme{path}?locale=fr-CA")
        assert french.xpath("//link[@rel='canonical']")[0].get("href") == f"{address}?locale=fr"
        feeds = [link.get("href") for link in french.xpath("//link[@rel='alternate'][@type]")]
        assert len(feeds) == 3 and all(href.endswith("?locale=fr") for href in feeds)


def test_a_product_with_one_language_has_no_switcher(client, session) -> None:
    make_note(session, make_product(session, slug="solo"), title="Alone")
    response, document = page(client, "/changelog/solo", **{"Accept-Language": "fr"})
    assert document.xpath("//nav[@class='languages wrap']") == []
    assert document.xpath("//link[@hreflang]") == []
    assert shown(document) == {"Alone": "en"}


def test_permalinks_per_language(client, planted) -> None:
    _, french = page(client, "/changelog/acme/2.10.0?locale=fr")
    assert shown(french) == {"Entonnoirs": "fr"}
    assert "Entonnoirs" in french.xpath("//meta[@name='description']")[0].get("content")
    _, arabic = page(client, "/changelog/acme/2.0.0?locale=ar")
    assert shown(arabic) == {"A fix, now with more": "en"}
    assert arabic.getroottree().getroot().get("dir") == "rtl"
    anchor = arabic.xpath("//a[@class='anchor']")[0].get("href")
    assert anchor == f"/changelog/acme/2.0.0?locale=ar#note-{planted['fix'].id}"


def test_search_finds_the_text_the_reader_reads(client, planted) -> None:
    _, french = page(client, "/changelog/acme?locale=fr&q=entonnoirs")
    assert list(shown(french)) == ["Entonnoirs"]
    _, english = page(client, "/changelog/acme?locale=en&q=entonnoirs")
    assert shown(english) == {}
    # A draft's words find nothing.
    _, drafts = page(client, "/changelog/acme?locale=fr&q=brouillon")
    assert shown(drafts) == {}


def test_dates_are_written_the_interface_language_s_way(client, planted) -> None:
    published = planted["old"].published_at
    for locale in ("fr", "ar", "ja"):
        _, document = page(client, f"/changelog/acme?locale={locale}")
        dates = [time.text for time in document.xpath("//time")]
        assert format_date(published, "long", locale=locale) in dates


@needs_catalogue("fr", "Search releases")
def test_the_french_page_s_own_words_are_french(app, client, planted) -> None:
    body = client.get("/changelog/acme?locale=fr").get_data(as_text=True)
    with force_locale("fr"):
        words = [gettext("Search releases"), gettext("Search"), gettext("Release notes by Tidings")]
    assert all(word in body for word in words)
    assert "Search releases" not in body


# Feeds ----------------------------------------------------------------------------------


def read(client: FlaskClient, kind: str, query: str = ""):
    response = client.get(f"/changelog/acme/feed.{kind}{query}")
    assert response.status_code == 200, response.data
    if kind == "json":
        return response, json.loads(response.data)
    parsed = feedparser.parse(response.data)
    assert parsed.bozo == 0, parsed.bozo_exception
    return response, parsed


def items(kind: str, feed) -> dict[str, str]:
    """Each item's title (without the version), by the feed's own list."""
    entries = feed["items"] if kind == "json" else feed.entries
    return [entry["title"].split(": ", 1)[1] for entry in entries]


@pytest.mark.parametrize("kind", FEEDS)
@pytest.mark.parametrize(
    ("locale", "titles"),
    [
        ("en", ["Funnels", "A fix, now with more", "Old thing"]),
        ("fr", ["Entonnoirs", "Une correction", "Old thing"]),
        ("ar", ["مسارات التحويل", "A fix, now with more", "Old thing"]),
        ("fr-CA", ["Entonnoirs", "Une correction", "Old thing"]),
        ("de", ["Funnels", "A fix, now with more", "Old thing"]),
    ],
)
def test_each_feed_in_each_language(client, planted, kind, locale, titles) -> None:
    language = {"fr-CA": "fr", "de": "en"}.get(locale, locale)
    _, feed = read(client, kind, f"?locale={locale}")
    assert items(kind, feed) == titles
    if kind == "json":
        assert feed["language"] == language
        assert feed["home_page_url"].endswith(f"/changelog/acme?locale={language}")
        # An item in another language than the feed's says so.
        fallbacks = {item["title"]: item.get("language") for item in feed["items"]}
        assert fallbacks["1.9.0: Old thing"] == (None if language == "en" else "en")
        links = [item["url"] for item in feed["items"]]
        ids = [item["id"] for item in feed["items"]]
    else:
        assert feed.feed.language == language
        links = [entry.link for entry in feed.entries]
        ids = [entry.id for entry in feed.entries]
    assert all(f"?locale={language}#note-" in link for link in links)
    assert not any("locale" in identifier for identifier in ids)


def test_an_item_says_its_own_language_where_it_falls_back(client, planted) -> None:
    atom = lxml.etree.fromstring(client.get("/changelog/acme/feed.atom?locale=ar").data)
    namespace = {"a": "http://www.w3.org/2005/Atom"}
    assert atom.get(XML_LANG) == "ar"
    languages = [entry.get(XML_LANG) for entry in atom.findall("a:entry", namespace)]
    assert languages == [None, "en", "en"]
    rss = lxml.etree.fromstring(client.get("/changelog/acme/feed.rss?locale=ar").data)
    dublin = "{http://purl.org/dc/elements/1.1/}language"
    assert [item.findtext(dublin) for item in rss.iter("item")] == [None, "en", "en"]


@pytest.mark.parametrize("kind", FEEDS)
def test_the_default_feed_is_unchanged_by_languages(client, planted, kind) -> None:
    _, feed = read(client, kind)
    assert items(kind, feed) == ["Funnels", "A fix, now with more", "Old thing"]
    if kind == "json":
        assert feed["language"] == "en" and feed["feed_url"].endswith("/feed.json")
    else:
        assert feed.feed.language == "en"
        assert all("locale" not in entry.link for entry in feed.entries)


def test_a_feed_locale_that_is_not_a_tag_is_refused(client, planted) -> None:
    for kind in FEEDS:
        response = client.get(f"/changelog/acme/feed.{kind}?locale=%00")
        assert response.status_code == 400
        assert "language tag" in response.get_data(as_text=True)


@pytest.mark.parametrize("kind", FEEDS)
def test_conditional_get_answers_304_per_language(client, session, planted, kind) -> None:
    path = f"/changelog/acme/feed.{kind}"
    first = {locale: read(client, kind, f"?locale={locale}")[0] for locale in ("en", "fr", "ar")}
    assert len({response.headers["ETag"] for response in first.values()}) == 3
    for locale, response in first.items():
        etag, modified = response.headers["ETag"], response.headers["Last-Modified"]
        assert (
            client.get(f"{path}?locale={locale}", headers={"If-None-Match": etag}).status_code
            == 304
        )
        assert (
            client.get(
                f"{path}?locale={locale}", headers={"If-Modified-Since": modified}
            ).status_code
            == 304
        )
    # French's ETag is not English's; a tag that falls back to French shares its feed.
    french = first["fr"].headers["ETag"]
    assert client.get(f"{path}?locale=en", headers={"If-None-Match": french}).status_code == 200
    assert client.get(f"{path}?locale=fr-CA", headers={"If-None-Match": french}).status_code == 304
    # A newer French text moves the French feed's validators, both of them.
    later = utcnow() + timedelta(seconds=2)  # Last-Modified counts whole seconds
    _translate(
        session,
        planted["funnels"],
        "fr",
        "Entonnoirs !",
        "Voir les entonnoirs.",
        publish=True,
        now=later,
    )
    modified = first["fr"].headers["Last-Modified"]
    for headers in ({"If-None-Match": french}, {"If-Modified-Since": modified}):
        response = client.get(f"{path}?locale=fr", headers=headers)
        assert response.status_code == 200
    assert "Entonnoirs !" in response.get_data(as_text=True)


@needs_catalogue("fr", "%(product)s release notes")
def test_the_french_feed_s_own_words_are_french(app, client, planted) -> None:
    _, feed = read(client, "json", "?locale=fr")
    with force_locale("fr"):
        assert feed["title"] == gettext("%(product)s release notes", product="Acme")
