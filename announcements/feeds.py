"""The public changelog's feeds: RSS 2.0 and Atom 1.0 through feedgen, JSON Feed 1.1 by hand.

Every feed carries the same items: the latest published, public notes, each with a
stable id (its permalink), a title naming the version, dates with a time zone, its
category, the sanitised HTML and the author's name.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from feedgen.feed import FeedGenerator
from sqlalchemy import Connection, Engine, select
from sqlalchemy.orm import Session, selectinload

from announcements.models import (
    Category,
    Note,
    Product,
    outward_clause,
)
from announcements.serialisation import iso, note_url

FEED_SIZE = 50


@dataclass(frozen=True)
class Feed:
    """What one feed shows, and the validators that let readers skip unchanged ones."""

    product: Product
    notes: list[Note]
    base_url: str
    category: Category | None
    locale: str | None
    updated_at: datetime  # the feed's Last-Modified

    @property
    def changelog_url(self) -> str:
        return f"{self.base_url}/changelog/{self.product.slug}"

    def url(self, kind: str) -> str:
        return f"{self.changelog_url}/feed.{kind}"

    @property
    def title(self) -> str:
        suffix = f" — {self.category.label}" if self.category else ""
        return f"{self.product.name} release notes{suffix}"

    def item_title(self, note: Note) -> str:
        return f"{note.version}: {note.title}"

    def permalink(self, note: Note) -> str:
        return note_url(self.base_url, self.product.slug, note.version, note.id)

    def author(self, note: Note) -> str:
        return note.author.display_name if note.author else self.product.name


@dataclass(frozen=True)
class Validators:
    """What identifies one state of a feed, read without loading the notes themselves."""

    etag: str
    last_modified: datetime
    note_ids: tuple[int, ...]  # the feed's items, newest first


@dataclass(frozen=True)
class FeedIndex:
    """A product's public notes in brief (no bodies), newest first, valid for one stamp.

    Scheduled notes are kept with their time, so the index stays right as time passes;
    a feed's state is computed from it without touching the notes table.
    """

    product_id: int
    stamp: int
    created_at: datetime
    rows: tuple[tuple[int, datetime, datetime, Category, str], ...]

    def validators(
        self, kind: str, now: datetime, category: Category | None, locale: str | None
    ) -> Validators:
        """The ETag and Last-Modified of one feed: its items' ids and times, and the stamp.

        The stamp covers the product's own settings (its name and logo are in the feed);
        the ids cover a scheduled note going live, which moves no stamp.
        """
        shown = [
            (note_id, published_at, updated_at)
            for note_id, published_at, updated_at, note_category, note_locale in self.rows
            if published_at <= now
            and (category is None or note_category is category)
            and (locale is None or note_locale == locale)
        ][:FEED_SIZE]
        parts = [f"{self.product_id}|{self.stamp}|{kind}|{category}|{locale}"]
        parts += [f"{note_id}:{updated_at.timestamp()}" for note_id, _, updated_at in shown]
        moments = [max(published_at, updated_at) for _, published_at, updated_at in shown]
        return Validators(
            etag=hashlib.blake2b("|".join(parts).encode(), digest_size=12).hexdigest(),
            last_modified=max(moments, default=self.created_at),
            note_ids=tuple(note_id for note_id, _, _ in shown),
        )


class FeedIndexCache:
    """The feed indexes this process has read, by product slug; one small query a request."""

    def __init__(self) -> None:
        self._indexes: dict[str, FeedIndex] = {}

    def get(self, engine: Engine, slug: str) -> FeedIndex | None:
        """The product's index at its current stamp; None for an unknown product.

        It runs on its own connection from ``engine`` (the widget's autocommit pool on
        PostgreSQL): a transaction around one read would cost two more round trips.
        """
        with engine.connect() as connection:
            return self._get(connection, slug)

    def _get(self, connection: Connection, slug: str) -> FeedIndex | None:
        product = connection.execute(
            select(Product.id, Product.catalogue_stamp, Product.created_at).where(
                Product.slug == slug
            )
        ).one_or_none()
        if product is None:
            return None
        cached = self._indexes.get(slug)
        if cached is not None and cached.stamp == product.catalogue_stamp:
            return cached
        rows = connection.execute(
            select(Note.id, Note.published_at, Note.updated_at, Note.category, Note.locale)
            .where(Note.product_id == product.id, outward_clause())
            .order_by(Note.published_at.desc(), Note.id.desc())
        ).all()
        index = FeedIndex(
            product_id=product.id,
            stamp=product.catalogue_stamp,
            created_at=product.created_at,
            rows=tuple(tuple(row) for row in rows),  # type: ignore[misc]
        )
        self._indexes[slug] = index
        return index


def latest(
    session: Session,
    product: Product,
    state: Validators,
    *,
    base_url: str,
    category: Category | None = None,
    locale: str | None = None,
) -> Feed:
    """The feed whose items the index chose for ``state``, newest first."""
    found = session.scalars(
        select(Note).where(Note.id.in_(state.note_ids)).options(selectinload(Note.author))
    )
    by_id = {note.id: note for note in found}
    notes = [by_id[note_id] for note_id in state.note_ids if note_id in by_id]
    return Feed(product, notes, base_url, category, locale, state.last_modified)


def _generator(feed: Feed, kind: str) -> FeedGenerator:
    generator = FeedGenerator()
    # RSS names an author only by email; Dublin Core's creator carries a display name.
    generator.load_extension("dc", atom=False, rss=True)
    generator.id(feed.changelog_url)
    generator.title(feed.title)
    generator.subtitle(f"What is new in {feed.product.name}")
    # feedgen's RSS <link> is the last link given: the page, not the feed itself.
    generator.link(href=feed.url(kind), rel="self")
    generator.link(href=feed.changelog_url, rel="alternate")
    generator.language(feed.locale or feed.product.default_locale)
    generator.updated(feed.updated_at)
    generator.generator("Tidings")
    if feed.product.logo_url:
        generator.logo(feed.product.logo_url)
    for note in reversed(feed.notes):  # feedgen prepends: add the oldest first
        entry = generator.add_entry()
        entry.id(feed.permalink(note))
        entry.guid(feed.permalink(note), permalink=True)
        entry.title(feed.item_title(note))
        entry.link(href=feed.permalink(note), rel="alternate")
        entry.published(note.published_at)
        entry.updated(max(note.updated_at, note.published_at or note.updated_at))
        entry.category(term=note.category.value, label=note.category.label)
        entry.author(name=feed.author(note))
        entry.dc.dc_creator(feed.author(note))
        entry.content(note.body_html, type="html")
        entry.description(note.body_html)
    return generator


def rss(feed: Feed) -> bytes:
    """RSS 2.0."""
    rendered: bytes = _generator(feed, "rss").rss_str(pretty=True)
    return rendered


def atom(feed: Feed) -> bytes:
    """Atom 1.0."""
    rendered: bytes = _generator(feed, "atom").atom_str(pretty=True)
    return rendered


def json_feed(feed: Feed) -> dict[str, Any]:
    """JSON Feed 1.1 (https://www.jsonfeed.org/version/1.1/)."""
    document: dict[str, Any] = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": feed.title,
        "home_page_url": feed.changelog_url,
        "feed_url": feed.url("json"),
        "description": f"What is new in {feed.product.name}",
        "language": feed.locale or feed.product.default_locale,
        "items": [
            {
                "id": feed.permalink(note),
                "url": feed.permalink(note),
                "title": feed.item_title(note),
                "content_html": note.body_html,
                "date_published": iso(note.published_at) if note.published_at else None,
                "date_modified": iso(note.updated_at),
                "tags": [note.category.label],
                "authors": [{"name": feed.author(note)}],
            }
            for note in feed.notes
        ],
    }
    if feed.product.logo_url:
        document["icon"] = feed.product.logo_url
    return document
