"""The public changelog page, its feeds and the links in mail, on SQLite and PostgreSQL."""

from __future__ import annotations

import calendar
import email
import email.policy
import json
import re
import time
import types
from datetime import timedelta
from xml.etree import ElementTree

import feedparser
import itsdangerous.timed
import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from announcements import subscriptions
from announcements.feeds import FeedIndexCache
from announcements.models import (
    Category,
    Frequency,
    Note,
    OutboxMessage,
    Product,
    Subscriber,
    SubscriberStatus,
    utcnow,
)
from announcements.subscriptions import Preferences
from app.database import widget_engine
from app.mail import compose, tokens
from app.mail.tokens import Purpose
from tests.conftest import SHARED_TESTDATA
from tests.factories import make_note, make_product

FEEDS = ("rss", "atom", "json")


@pytest.fixture
def product(session: Session) -> Product:
    return make_product(session, slug="acme", name="Acme")


@pytest.fixture
def planted(session: Session, product: Product) -> dict[str, Note]:
    """Public notes over three versions, and one of everything that must never show."""
    now = utcnow()
    notes = {
        "old": make_note(
            session, product, version="1.9.0", title="Old thing", now=now - timedelta(days=30)
        ),
        "fix": make_note(
            session,
            product,
            version="2.0.0",
            title="A fix",
            category="Fixed",
            now=now - timedelta(days=3),
        ),
        "new": make_note(
            session,
            product,
            version="2.10.0",
            title="Funnels",
            body_md="See **funnels**.",
            now=now - timedelta(days=1),
        ),
        "expired": make_note(
            session,
            product,
            version="1.9.0",
            title="Expired but history",
            now=now - timedelta(days=20),
            expires_at=now - timedelta(days=10),
        ),
        "draft": make_note(
            session, product, version="2.10.0", title="SECRET draft", status="draft"
        ),
        "scheduled": make_note(
            session, product, version="3.0.0", title="SECRET scheduled", status="scheduled"
        ),
        "internal": make_note(
            session, product, version="2.10.0", title="SECRET internal", is_internal=True
        ),
        "archived": make_note(
            session, product, version="2.0.0", title="SECRET archived", status="archived"
        ),
        "other": make_note(
            session, make_product(session), version="2.10.0", title="SECRET other product"
        ),
    }
    return notes


def parse(client: FlaskClient, kind: str, query: str = ""):
    response = client.get(f"/changelog/acme/feed.{kind}{query}")
    assert response.status_code == 200, response.data
    if kind == "json":
        return response, json.loads(response.data)
    return response, feedparser.parse(response.data)


def test_the_page_lists_public_notes_by_version_newest_first(client, planted) -> None:
    page = client.get("/changelog/acme").get_data(as_text=True)
    positions = [page.index(f">{version}</a></h2>") for version in ("2.10.0", "2.0.0", "1.9.0")]
    assert positions == sorted(positions)
    for name in ("old", "fix", "new", "expired"):
        assert planted[name].title in page
    assert f'id="note-{planted["new"].id}"' in page
    assert "<strong>funnels</strong>" in page
    assert "SECRET" not in page


EVERY_PUBLIC_TITLE = ("Funnels", "A fix", "Old thing", "Expired but history")


LEAK_CASES = [
    ("/changelog/acme", 200, EVERY_PUBLIC_TITLE),
    ("/changelog/acme?q=secret", 200, ()),
    ("/changelog/acme?category=Fixed", 200, ("A fix",)),
    ("/changelog/acme/2.10.0", 200, ("Funnels",)),
    ("/changelog/acme/2.0.0", 200, ("A fix",)),
    # Only a scheduled note is in 3.0.0: the version does not exist yet.
    ("/changelog/acme/3.0.0", 404, ()),
    ("/changelog/acme/feed.rss", 200, EVERY_PUBLIC_TITLE),
    ("/changelog/acme/feed.atom", 200, EVERY_PUBLIC_TITLE),
    ("/changelog/acme/feed.json", 200, EVERY_PUBLIC_TITLE),
]


@pytest.mark.parametrize(
    ("path", "status", "shown"), LEAK_CASES, ids=[path for path, _, _ in LEAK_CASES]
)
def test_nothing_private_ever_leaks(client, planted, path, status, shown) -> None:
    """Each page that should exist answers with its public notes and none of the others; a
    404 where a page is expected would hide nothing, so it fails here."""
    response = client.get(path)
    assert response.status_code == status
    body = response.get_data(as_text=True)
    assert [title for title in EVERY_PUBLIC_TITLE if title in body] == list(shown)
    assert "SECRET" not in body
    for name in ("draft", "scheduled", "internal", "archived", "other"):
        assert f'note-{planted[name].id}"' not in body
        assert f"note-{planted[name].id}<" not in body


def test_filter_search_and_permalink(client, planted) -> None:
    fixed = client.get("/changelog/acme?category=Fixed").get_data(as_text=True)
    assert "A fix" in fixed and "Funnels" not in fixed
    by_label = client.get("/changelog/acme?category=new").get_data(as_text=True)
    assert "Funnels" in by_label and "A fix" not in by_label
    found = client.get("/changelog/acme?q=FUNNEL").get_data(as_text=True)
    assert "Funnels" in found and "Old thing" not in found
    version = client.get("/changelog/acme/2.10.0").get_data(as_text=True)
    assert "Funnels" in version and "Old thing" not in version
    assert '<link rel="canonical" href="http://127.0.0.1:5000/changelog/acme/2.10.0">' in version


def test_unknown_product_category_and_version(client, planted) -> None:
    assert client.get("/changelog/nope").status_code == 404
    assert client.get("/changelog/nope/feed.rss").status_code == 404
    assert client.get("/changelog/acme/9.9.9").status_code == 404
    assert client.get("/changelog/acme/not a version").status_code == 404
    for path in ("/changelog/acme?category=Nope", "/changelog/acme/feed.atom?category=Nope"):
        response = client.get(path)
        assert response.status_code == 400
        assert "There is no category" in response.get_data(as_text=True)
    assert client.get("/changelog/acme/feed.rss?locale=!!").status_code == 400
    # A page past the end shows the last one; a NUL in a search is dropped, not refused.
    past_the_end = client.get("/changelog/acme?page=99999999999999999999")
    assert past_the_end.status_code == 200
    assert "Old thing" in past_the_end.get_data(as_text=True)
    with_nul = client.get("/changelog/acme?q=fun%00nels")
    assert with_nul.status_code == 200
    found = with_nul.get_data(as_text=True)
    assert "Funnels" in found and "A fix" not in found


def test_sharing_tags_feeds_and_noindex(client, session, product, planted) -> None:
    page = client.get("/changelog/acme").get_data(as_text=True)
    for needle in (
        'property="og:title"',
        'name="twitter:card"',
        'rel="canonical"',
        'type="application/rss+xml"',
        'type="application/atom+xml"',
        'type="application/feed+json"',
    ):
        assert needle in page
    assert 'name="robots"' not in page
    product.noindex = True
    session.commit()
    assert '<meta name="robots" content="noindex">' in client.get("/changelog/acme").get_data(
        as_text=True
    )


@pytest.mark.parametrize("kind", ["rss", "atom"])
def test_xml_feeds_parse_cleanly_newest_first_with_zoned_dates(client, planted, kind) -> None:
    _, feed = parse(client, kind)
    assert feed.bozo == 0
    assert feed.version == ("rss20" if kind == "rss" else "atom10")
    titles = [entry.title for entry in feed.entries]
    assert titles == [
        "2.10.0: Funnels",
        "2.0.0: A fix",
        "1.9.0: Expired but history",
        "1.9.0: Old thing",
    ]
    first = feed.entries[0]
    assert first.link.endswith(f"/changelog/acme/2.10.0#note-{planted['new'].id}")
    assert first.id == first.link
    # The zone is read right: the instant in the feed is the note's, to the second.
    published = planted["new"].published_at.replace(microsecond=0)
    assert calendar.timegm(first.published_parsed) == int(published.timestamp())
    # RSS has room for one word, the friendly one; Atom carries both.
    assert first.tags[0].term == ("New" if kind == "rss" else "Added")
    assert "<strong>funnels</strong>" in first.content[0].value
    # Notes written by no team member (imports, the API) carry the product's name.
    assert [entry.author for entry in feed.entries] == ["Acme"] * 4


def test_rss_and_atom_carry_their_required_elements(client, planted) -> None:
    rss = ElementTree.fromstring(client.get("/changelog/acme/feed.rss").data)
    channel = rss.find("channel")
    for name in ("title", "link", "description"):
        assert channel.findtext(name)
    assert len(channel.findall("item")) == 4  # the loop below checks something
    for item in channel.findall("item"):
        assert item.findtext("title") and item.findtext("guid") and item.findtext("pubDate")
        assert item.findtext("pubDate").endswith("+0000")
    atom = ElementTree.fromstring(client.get("/changelog/acme/feed.atom").data)
    ns = {"a": "http://www.w3.org/2005/Atom"}
    for name in ("a:id", "a:title", "a:updated"):
        assert atom.findtext(name, namespaces=ns)
    assert len(atom.findall("a:entry", ns)) == 4
    for entry in atom.findall("a:entry", ns):
        for name in ("a:id", "a:title", "a:updated"):
            assert entry.findtext(name, namespaces=ns)
        assert entry.find("a:author/a:name", ns) is not None


def test_json_feed_follows_version_1_1(client, planted) -> None:
    response, feed = parse(client, "json")
    assert response.mimetype == "application/feed+json"
    assert feed["version"] == "https://jsonfeed.org/version/1.1"
    assert feed["title"] and feed["home_page_url"].endswith("/changelog/acme")
    assert feed["feed_url"].endswith("/changelog/acme/feed.json")
    assert [item["title"] for item in feed["items"]] == [
        "2.10.0: Funnels",
        "2.0.0: A fix",
        "1.9.0: Expired but history",
        "1.9.0: Old thing",
    ]
    for item in feed["items"]:
        assert item["id"] and (item.get("content_html") or item.get("content_text"))
        assert item["date_published"].endswith("Z")
        time.strptime(item["date_published"], "%Y-%m-%dT%H:%M:%SZ")
        assert item["authors"] == [{"name": "Acme"}]


@pytest.mark.parametrize("kind", FEEDS)
def test_feeds_filter_by_category(client, planted, kind) -> None:
    _, fixed = parse(client, kind, "?category=Fixed")
    entries = fixed["items"] if kind == "json" else fixed.entries
    assert [e["title"] if kind == "json" else e.title for e in entries] == ["2.0.0: A fix"]
    # A language the product lacks falls back to its default (test_public_languages.py).
    _, other = parse(client, kind, "?locale=de")
    assert len(other["items"] if kind == "json" else other.entries) == 4


@pytest.mark.parametrize("kind", FEEDS)
def test_conditional_get_answers_304_until_something_changes(
    client, session, product, planted, kind
) -> None:
    first, _ = parse(client, kind)
    assert "public" in first.headers["Cache-Control"]
    assert "stale-while-revalidate" in first.headers["Cache-Control"]
    etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
    path = f"/changelog/acme/feed.{kind}"
    assert client.get(path, headers={"If-None-Match": etag}).status_code == 304
    assert client.get(path, headers={"If-Modified-Since": modified}).status_code == 304
    make_note(session, product, version="2.11.0", title="Brand new")
    assert client.get(path, headers={"If-None-Match": etag}).status_code == 200


def test_our_feeds_carry_what_real_changelog_feeds_carry(client, planted) -> None:
    reference = (
        SHARED_TESTDATA / "feeds" / "reactphp__reactphp.github.io__changelog.atom.first4entries.xml"
    )
    if not reference.exists():
        pytest.skip(f"{reference} is absent: the shared test data is not beside the project")
    real = feedparser.parse(reference.read_bytes())
    ours = feedparser.parse(client.get("/changelog/acme/feed.atom").data)
    assert real.bozo == 0 and ours.bozo == 0
    feed_keys = {"title", "updated", "id", "links"}
    assert feed_keys <= set(real.feed) and feed_keys <= set(ours.feed)
    entry_keys = {"title", "id", "link", "updated"}
    assert entry_keys <= set(real.entries[0]) and entry_keys <= set(ours.entries[0])
    # A release note feed names the release in each title, as the real one does.
    assert all(any(c.isdigit() for c in entry.title) for entry in real.entries + ours.entries)


def test_a_scheduled_note_going_live_changes_the_feed_without_any_edit(
    session, product, planted
) -> None:
    index = FeedIndexCache().get(widget_engine(), "acme")
    scheduled_at = planted["scheduled"].published_at
    before = index.validators("atom", scheduled_at - timedelta(seconds=1), None, None)
    after = index.validators("atom", scheduled_at, None, None)
    assert before.etag != after.etag
    assert after.last_modified >= scheduled_at
    assert index.validators("atom", scheduled_at, Category.FIXED, None) == index.validators(
        "atom", scheduled_at - timedelta(seconds=1), Category.FIXED, None
    )  # a feed the note is not in does not change


# Links in mail ----------------------------------------------------------------------


def mailed_links(composed: compose.Composed) -> dict[str, str]:
    """The paths of the subscription links in a composed message, by kind."""
    message = email.message_from_bytes(composed.data, policy=email.policy.default)
    text = message.get_body(("plain",)).get_content()
    found = re.findall(r"/subscriptions/(confirm|unsubscribe|read)/(\S+)", text)
    return {kind: f"/subscriptions/{kind}/{token}" for kind, token in found}


def given_the_id_of(session: Session, gone: Subscriber, address: str) -> Subscriber:
    """Delete ``gone`` and give its id to a new pending subscriber, as SQLite does when
    the table has no AUTOINCREMENT, and a database restored from a backup may."""
    session.delete(gone)
    session.commit()
    heir = Subscriber(id=gone.id, product_id=gone.product_id, email=address)
    session.add(heir)
    session.commit()
    return heir


def test_links_mailed_to_a_deleted_subscriber_do_nothing_to_one_given_its_id(
    client: FlaskClient, session: Session, product: Product
) -> None:
    gone = subscriptions.request_subscription(
        session, product, "gone@example.com", Preferences(), now=utcnow()
    )
    row = session.scalar(select(OutboxMessage))
    assert row is not None
    links = mailed_links(compose.confirmation(row))
    subscriptions.confirm(session, gone, Preferences(), now=utcnow())
    note = make_note(session, product, is_important=True)
    links |= mailed_links(compose.release_note(gone, note, "<test@example.com>"))
    assert set(links) == {"confirm", "unsubscribe", "read"}

    heir = given_the_id_of(session, gone, "heir@example.com")
    for answer in (
        client.get(links["confirm"]),
        client.get(links["unsubscribe"]),
        client.post(links["unsubscribe"]),
        client.post(links["unsubscribe"].replace("unsubscribe", "preferences"), data={}),
        client.get(links["read"]),
    ):
        assert answer.status_code == 404
        assert "heir@example.com" not in answer.get_data(as_text=True)
    session.refresh(heir)
    assert heir.status is SubscriberStatus.PENDING

    # The heir's own links work.
    subscriptions.confirm(session, heir, Preferences(Frequency.IMPORTANT), now=utcnow())
    own = mailed_links(compose.release_note(heir, note, "<test@example.com>"))
    assert client.post(own["unsubscribe"]).status_code == 200
    session.refresh(heir)
    assert heir.status is SubscriberStatus.UNSUBSCRIBED


def test_a_link_mailed_before_links_carried_a_key_holds_for_its_subscriber_only(
    client: FlaskClient, session: Session, product: Product, monkeypatch: pytest.MonkeyPatch
) -> None:
    two_days_ago = utcnow() - timedelta(days=2)
    kept, gone = (
        Subscriber(product_id=product.id, email=address, created_at=two_days_ago)
        for address in ("kept@example.com", "gone@example.com")
    )
    session.add_all([kept, gone])
    session.commit()
    yesterday = (utcnow() - timedelta(days=1)).timestamp()
    with monkeypatch.context() as patched:
        patched.setattr(itsdangerous.timed, "time", types.SimpleNamespace(time=lambda: yesterday))
        old_kept, old_gone = (
            tokens.make(Purpose.UNSUBSCRIBE, {"s": subscriber.id}) for subscriber in (kept, gone)
        )
    heir = given_the_id_of(session, gone, "heir@example.com")
    assert client.get(f"/subscriptions/unsubscribe/{old_kept}").status_code == 200
    assert client.post(f"/subscriptions/unsubscribe/{old_gone}").status_code == 404
    session.refresh(heir)
    assert heir.status is SubscriberStatus.PENDING
