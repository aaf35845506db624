"""The public changelog's feeds: RSS 2.0 and Atom 1.0 through feedgen, JSON Feed 1.1 by hand.

Every feed carries the same items: the latest published, public notes, each with a
stable id (its permalink), a title naming the version, dates with a time zone, its
category, the sanitised HTML and the author's name.

A feed is in one of the product's languages (the one nearest ``?locale=``, else the
default): its language element says which, and each item is the text of the note a
reader of that language sees (:func:`translations.shown_text`, as on the public page),
marked with its own language where it falls back to another (Atom ``xml:lang``, RSS
``dc:language``, JSON Feed ``language``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from feedgen.ext.base import BaseEntryExtension, BaseExtension
from feedgen.feed import FeedGenerator
from lxml.etree import _Element
from sqlalchemy import Connection, Engine, select
from sqlalchemy.orm import Session, selectinload

from announcements import languages, translations
from announcements.models import (
    Category,
    Note,
    NoteTranslation,
    Product,
    TranslationStatus,
    outward_clause,
)
from announcements.serialisation import iso, note_url
from announcements.translations import NoteText

FEED_SIZE = 50
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"


@dataclass(frozen=True)
class Wording:
    """The feed's own words, in its language: the web layer translates them."""

    title: str  # "Acme release notes"
    description: str  # "What is new in Acme"
    labels: Mapping[Category, str]  # "New", "Fixed"...


@dataclass(frozen=True)
class Feed:
    """What one feed shows, and the validators that let readers skip unchanged ones."""

    product: Product
    notes: list[tuple[Note, NoteText]]
    base_url: str
    category: Category | None
    language: str  # one of the product's languages
    is_localised: bool  # asked for with ?locale=: links to the page keep the language
    wording: Wording
    updated_at: datetime  # the feed's Last-Modified

    @property
    def changelog_url(self) -> str:
        return f"{self.base_url}/changelog/{self.product.slug}"

    def _localised(self, url: str) -> str:
        """``url`` with the feed's ``?locale=``, when it was asked for in one."""
        if not self.is_localised:
            return url
        address, hash_, fragment = url.partition("#")
        return f"{address}?{urlencode({'locale': self.language})}{hash_}{fragment}"

    @property
    def page_url(self) -> str:
        return self._localised(self.changelog_url)

    def url(self, kind: str) -> str:
        return self._localised(f"{self.changelog_url}/feed.{kind}")

    @property
    def title(self) -> str:
        if self.category is None:
            return self.wording.title
        return f"{self.wording.title} — {self.wording.labels[self.category]}"

    def item_title(self, note: Note, text: NoteText) -> str:
        return f"{note.version}: {text.title}"

    def item_id(self, note: Note) -> str:
        """The note's id, the same in every language's feed: its permalink."""
        return note_url(self.base_url, self.product.slug, note.version, note.id)

    def permalink(self, note: Note) -> str:
        """Where the item links: the permalink, in the feed's language if asked for."""
        return self._localised(self.item_id(note))

    def author(self, note: Note) -> str:
        return note.author.display_name if note.author else self.product.name


@dataclass(frozen=True)
class Validators:
    """What identifies one state of a feed, read without loading the notes themselves."""

    etag: str
    last_modified: datetime
    note_ids: tuple[int, ...]  # the feed's items, newest first
    language: str  # the feed's language, one of the product's
    is_localised: bool  # asked for with ?locale=


@dataclass(frozen=True)
class FeedIndex:
    """A product's public notes in brief (no bodies), newest first, valid for one stamp.

    Scheduled notes are kept with their time, so the index stays right as time passes;
    a feed's state is computed from it without touching the notes table. Beside the
    notes: when each note's published translations last changed, by language.
    """

    product_id: int
    stamp: int
    created_at: datetime
    default_locale: str
    languages: tuple[str, ...]  # the product's, its default first
    rows: tuple[tuple[int, datetime, datetime, Category], ...]
    translated: Mapping[int, Mapping[str, datetime]]

    def validators(
        self, kind: str, now: datetime, category: Category | None, locale: str | None
    ) -> Validators:
        """The ETag and Last-Modified of one feed: its items' ids and times, the language
        of each item's text and when that text changed, and the stamp.

        ``locale`` is the tag the reader asked for (normalised), None for the default
        feed; the feed is in the product's language nearest it. The stamp covers the
        product's own settings (its name and logo are in the feed); the ids cover a
        scheduled note going live, which moves no stamp.
        """
        language = self.default_locale
        if locale is not None:
            language = languages.negotiate([locale], self.languages, self.default_locale)
        order = languages.chain(language, self.languages, self.default_locale)
        shown = [
            (note_id, published_at, updated_at)
            for note_id, published_at, updated_at, note_category in self.rows
            if published_at <= now and (category is None or note_category is category)
        ][:FEED_SIZE]
        parts = [f"{self.product_id}|{self.stamp}|{kind}|{category}|{language}|{locale is None}"]
        moments = []
        for note_id, published_at, updated_at in shown:
            found = languages.pick(self.translated.get(note_id, {}), order)
            text_locale, text_at = found if found else (self.default_locale, updated_at)
            parts.append(f"{note_id}:{updated_at.timestamp()}:{text_locale}")
            moments.append(max(published_at, updated_at, text_at))
        return Validators(
            etag=hashlib.blake2b("|".join(parts).encode(), digest_size=12).hexdigest(),
            last_modified=max(moments, default=self.created_at),
            note_ids=tuple(note_id for note_id, _, _ in shown),
            language=language,
            is_localised=locale is not None,
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
            select(
                Product.id,
                Product.catalogue_stamp,
                Product.created_at,
                Product.default_locale,
                Product.languages,
            ).where(Product.slug == slug)
        ).one_or_none()
        if product is None:
            return None
        cached = self._indexes.get(slug)
        if cached is not None and cached.stamp == product.catalogue_stamp:
            return cached
        rows = connection.execute(
            select(Note.id, Note.published_at, Note.updated_at, Note.category)
            .where(Note.product_id == product.id, outward_clause())
            .order_by(Note.published_at.desc(), Note.id.desc())
        ).all()
        translated: dict[int, dict[str, datetime]] = {}
        for note_id, locale, updated_at in connection.execute(
            select(NoteTranslation.note_id, NoteTranslation.locale, NoteTranslation.updated_at)
            .join(Note, Note.id == NoteTranslation.note_id)
            .where(
                Note.product_id == product.id,
                outward_clause(),
                NoteTranslation.status == TranslationStatus.PUBLISHED,
            )
        ):
            translated.setdefault(note_id, {})[locale] = updated_at
        index = FeedIndex(
            product_id=product.id,
            stamp=product.catalogue_stamp,
            created_at=product.created_at,
            default_locale=product.default_locale,
            languages=(product.default_locale, *product.languages),
            rows=tuple(tuple(row) for row in rows),  # type: ignore[misc]
            translated=translated,
        )
        self._indexes[slug] = index
        return index


def latest(
    session: Session,
    product: Product,
    state: Validators,
    *,
    base_url: str,
    wording: Wording,
    category: Category | None = None,
) -> Feed:
    """The feed whose items the index chose for ``state``, newest first, each in its text
    for the feed's language."""
    found = session.scalars(
        select(Note)
        .where(Note.id.in_(state.note_ids))
        .options(selectinload(Note.author), selectinload(Note.translations))
    )
    by_id = {note.id: note for note in found}
    notes = [
        (by_id[note_id], translations.shown_text(by_id[note_id], state.language))
        for note_id in state.note_ids
        if note_id in by_id
    ]
    return Feed(
        product=product,
        notes=notes,
        base_url=base_url,
        category=category,
        language=state.language,
        is_localised=state.is_localised,
        wording=wording,
        updated_at=state.last_modified,
    )


class _Language(BaseExtension):
    """Nothing at the feed's level: feedgen writes its language (RSS ``<language>``, Atom
    ``xml:lang``)."""


class _EntryLanguage(BaseEntryExtension):
    """An Atom entry's ``xml:lang``, for an item whose text is not in the feed's language:
    feedgen has no setting of its own for it."""

    def __init__(self) -> None:
        self.language: str | None = None

    def extend_atom(self, entry: _Element) -> _Element:
        if self.language:
            entry.set(XML_LANG, self.language)
        return entry


def _generator(feed: Feed, kind: str) -> FeedGenerator:
    generator = FeedGenerator()
    # RSS names an author only by email; Dublin Core's creator carries a display name,
    # and its language an item's own.
    generator.load_extension("dc", atom=False, rss=True)
    generator.register_extension("lang", _Language, _EntryLanguage, atom=True, rss=False)
    generator.id(feed.changelog_url)
    generator.title(feed.title)
    generator.subtitle(feed.wording.description)
    # feedgen's RSS <link> is the last link given: the page, not the feed itself.
    generator.link(href=feed.url(kind), rel="self")
    generator.link(href=feed.page_url, rel="alternate")
    generator.language(feed.language)
    generator.updated(feed.updated_at)
    generator.generator("Tidings")
    if feed.product.logo_url:
        generator.logo(feed.product.logo_url)
    for note, text in reversed(feed.notes):  # feedgen prepends: add the oldest first
        entry = generator.add_entry()
        entry.id(feed.item_id(note))
        entry.guid(feed.item_id(note), permalink=True)
        entry.title(feed.item_title(note, text))
        entry.link(href=feed.permalink(note), rel="alternate")
        entry.published(note.published_at)
        entry.updated(max(note.updated_at, note.published_at or note.updated_at))
        entry.category(term=note.category.value, label=feed.wording.labels[note.category])
        entry.author(name=feed.author(note))
        entry.dc.dc_creator(feed.author(note))
        entry.content(text.body_html, type="html")
        entry.description(text.body_html)
        if text.locale != feed.language:
            entry.dc.dc_language(text.locale)
            entry.lang.language = text.locale
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
        "home_page_url": feed.page_url,
        "feed_url": feed.url("json"),
        "description": feed.wording.description,
        "language": feed.language,
        "items": [_json_item(feed, note, text) for note, text in feed.notes],
    }
    if feed.product.logo_url:
        document["icon"] = feed.product.logo_url
    return document


def _json_item(feed: Feed, note: Note, text: NoteText) -> dict[str, Any]:
    item = {
        "id": feed.item_id(note),
        "url": feed.permalink(note),
        "title": feed.item_title(note, text),
        "content_html": text.body_html,
        "date_published": iso(note.published_at) if note.published_at else None,
        "date_modified": iso(note.updated_at),
        "tags": [feed.wording.labels[note.category]],
        "authors": [{"name": feed.author(note)}],
    }
    if text.locale != feed.language:
        item["language"] = text.locale
    return item
