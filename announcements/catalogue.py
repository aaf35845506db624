"""A product's published catalogue, as the widget serves it, cached in each process.

Every page view of every end user asks the widget what is new, so the notes an
end user could see are read from the database once per change, not once per
request. Each product carries a ``catalogue_stamp`` that every change to its
notes or settings bumps; a request reads the stamp together with the user's
reads in one query (see :mod:`announcements.reads`) and reloads the catalogue
only when the stamp moved. Scheduled notes are kept with their time and expired
notes with theirs, so one catalogue stays right as time passes.

A note with a hold-back keeps itself from its control group for the product's
attribution window (:mod:`announcements.holdback`): the catalogue holds the share and
the window, so telling who is held back costs no query, and a hash only for the notes
whose window is open.

Notes are shown in the reader's language: the catalogue loads the published
translations in the product's languages with the notes (one more query per load, none
when the product has one language) and keeps each note's fields in each of them, whole,
so a request picks a prepared dict per note whatever language it asks for. Which
languages a requested tag reaches (its fallback chain, :func:`languages.chain`) is
worked out once per tag and kept with the catalogue.

What is derived from the notes for rarer calls, such as the index that help before a
ticket ranks with (:mod:`announcements.help`), is built the first time it is asked for
and kept with the catalogue (:meth:`Catalogue.remembered`), so once per stamp.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar
from typing import cast as typing_cast

from packaging.version import Version
from sqlalchemy import Connection, select

from announcements import holdback, languages, targeting, versions
from announcements.models import (
    Note,
    NoteTranslation,
    Product,
    TranslationStatus,
    outward_clause,
)
from announcements.serialisation import iso, note_url


@dataclass(frozen=True)
class CatalogueNote:
    """A note an end user may see, with the fields the widget sends for it."""

    id: int
    sort_version: Version
    published_at: datetime
    expires_at: datetime | None
    audience: dict[str, Any] | None
    # The note as the widget's JSON shows it, before the fields of the user's own.
    fields: dict[str, Any]
    # The share of users held back from it during the attribution window.
    holdback_percent: int = 0
    # The ticket tags it answers, which help before a ticket matches too.
    support_topics: tuple[str, ...] = ()
    # The note's fields in each language it has a published translation in: ``fields``
    # with that translation's title and html (both from the one row) and its locale.
    translated: Mapping[str, dict[str, Any]] = field(default_factory=dict)

    def is_live(self, now: datetime) -> bool:
        return self.published_at <= now and (self.expires_at is None or self.expires_at > now)

    def shown_in(self, chain: Sequence[str]) -> dict[str, Any]:
        """The fields in the first language of ``chain`` the note has a published
        translation in, else in the product's default language (``fields``)."""
        found = languages.pick(self.translated, chain)
        return found[1] if found else self.fields


MAX_REMEMBERED = 4096
_Derived = TypeVar("_Derived")


@dataclass(frozen=True)
class Catalogue:
    """One product's widget settings and the notes end users may see, newest first."""

    product_id: int
    stamp: int
    identity_secret: str
    require_identity: bool
    allowed_origins: frozenset[str]
    grace_releases: int
    notes: tuple[CatalogueNote, ...]
    ids: frozenset[int]
    # The product's name and colour for the widget's header.
    product: dict[str, str]
    # Every moment a note goes live or expires, in order: between two of them the
    # visible set for a version and attributes stays the same.
    boundaries: tuple[datetime, ...] = ()
    rule_attributes: tuple[str, ...] = ()
    # The product's attribution window, and the notes with a hold-back share set.
    support_window_days: int = 14
    with_holdback: tuple[CatalogueNote, ...] = ()
    # The product's default locale (the notes' own text), and its other languages.
    default_locale: str = "en"
    languages: tuple[str, ...] = ()
    _visible: dict[Any, tuple[int, tuple[CatalogueNote, ...]]] = field(
        default_factory=dict, compare=False, repr=False
    )
    _chains: dict[str | None, tuple[str, ...]] = field(
        default_factory=dict, compare=False, repr=False
    )
    _derived: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def epoch(self, now: datetime) -> int:
        """How many of the catalogue's boundaries have passed by ``now``: between two, what
        it shows anyone stays the same."""
        return bisect.bisect_right(self.boundaries, now)

    def visible(
        self, app_version: Version | None, attributes: Mapping[str, str], now: datetime
    ) -> tuple[CatalogueNote, ...]:
        """The live notes for a user on ``app_version`` with ``attributes``, newest first.

        Users on the same version with the same values of the attributes that rules use
        see the same notes, so the answer is remembered until the next note goes live
        or expires.
        """
        epoch = self.epoch(now)
        key = (app_version, tuple(attributes.get(name) for name in self.rule_attributes))
        remembered = self._visible.get(key)
        if remembered is not None and remembered[0] == epoch:
            return remembered[1]
        notes = tuple(
            note
            for note in self.notes
            if note.is_live(now)
            and (app_version is None or note.sort_version <= app_version)
            and targeting.matches(note.audience, attributes)
        )
        if len(self._visible) >= MAX_REMEMBERED:
            self._visible.clear()
        self._visible[key] = (epoch, notes)
        return notes

    def chain(self, requested: str | None) -> tuple[str, ...]:
        """The product's languages a reader who asked for ``requested`` reads, best first,
        ending with the default (:func:`languages.chain`).

        Kept per tag: working a chain out takes some 20 µs (langcodes parses and
        validates the tag), which every widget call in another language would pay.
        """
        if requested is not None and len(requested) > languages.MAX_TAG_LENGTH:
            requested = None  # no language: kept once, not once per such text
        found = self._chains.get(requested)
        if found is None:
            found = languages.chain(requested, self.languages, self.default_locale)
            if len(self._chains) >= MAX_REMEMBERED:
                self._chains.clear()
            self._chains[requested] = found
        return found

    def remembered(self, name: str, build: Callable[[Catalogue], _Derived]) -> _Derived:
        """What ``build`` makes of this catalogue, made on first use and kept with it.

        Two threads may both build it the first time; either answer is the same.
        """
        if name not in self._derived:
            self._derived[name] = build(self)
        return typing_cast(_Derived, self._derived[name])

    def withheld(self, external_id: str, now: datetime) -> set[int]:
        """The notes that keep themselves from this user at ``now``: the user is in their
        control group, and their window is open. The widget shows them no popup or badge
        for these; the panel still lists them."""
        return {
            note.id
            for note in self.with_holdback
            if holdback.withholds(
                note.id,
                external_id,
                note.holdback_percent,
                note.published_at,
                self.support_window_days,
                now,
            )
        }


def _entry(
    row: Any, base_url: str, slug: str, default_locale: str, texts: Sequence[Any]
) -> CatalogueNote:
    """The note of ``row`` with its fields in the default language and in each of
    ``texts`` (its published translations)."""
    fields = {
        "id": row.id,
        "version": row.version,
        "title": row.title,
        "html": row.body_html,
        "category": row.category.value,
        "category_label": row.category.label,
        "published_at": iso(row.published_at),
        "url": note_url(base_url, slug, row.version, row.id),
        "important": row.is_important,
        "requires_acknowledgement": row.requires_acknowledgement,
        "locale": default_locale,
    }
    translated = {
        text.locale: {**fields, "title": text.title, "html": text.body_html, "locale": text.locale}
        for text in texts
    }
    return CatalogueNote(
        id=row.id,
        sort_version=versions.parse(row.version),
        published_at=row.published_at,
        expires_at=row.expires_at,
        audience=row.audience,
        fields=fields,
        holdback_percent=row.holdback_percent,
        support_topics=tuple(row.support_topics or ()),
        translated=translated,
    )


def load(connection: Connection, widget_key: str, base_url: str) -> Catalogue | None:
    """Read a product's catalogue from the database; None for an unknown widget key."""
    product = connection.execute(
        select(
            Product.id,
            Product.catalogue_stamp,
            Product.slug,
            Product.name,
            Product.accent_color,
            Product.identity_secret,
            Product.require_identity,
            Product.allowed_origins,
            Product.grace_releases,
            Product.support_window_days,
            Product.default_locale,
            Product.languages,
        ).where(Product.widget_key == widget_key)
    ).one_or_none()
    if product is None:
        return None
    rows = connection.execute(
        select(
            Note.id,
            Note.version,
            Note.title,
            Note.body_html,
            Note.category,
            Note.published_at,
            Note.expires_at,
            Note.is_important,
            Note.audience,
            Note.holdback_percent,
            Note.support_topics,
            Note.requires_acknowledgement,
        )
        .where(Note.product_id == product.id, outward_clause())
        .order_by(Note.published_at.desc(), Note.id.desc())
    ).all()
    texts = _published_translations(connection, product.id, product.languages or ())
    notes = tuple(
        _entry(row, base_url, product.slug, product.default_locale, texts.get(row.id, ()))
        for row in rows
    )
    return Catalogue(
        product_id=product.id,
        stamp=product.catalogue_stamp,
        identity_secret=product.identity_secret,
        require_identity=product.require_identity,
        allowed_origins=frozenset(product.allowed_origins or ()),
        grace_releases=product.grace_releases,
        notes=notes,
        ids=frozenset(note.id for note in notes),
        product={"name": product.name, "accent_color": product.accent_color},
        boundaries=tuple(
            sorted(
                {note.published_at for note in notes}
                | {note.expires_at for note in notes if note.expires_at is not None}
            )
        ),
        rule_attributes=tuple(
            sorted(set().union(*(targeting.attributes_used(note.audience) for note in notes)))
        ),
        support_window_days=product.support_window_days,
        with_holdback=tuple(note for note in notes if note.holdback_percent > 0),
        default_locale=product.default_locale,
        languages=tuple(product.languages or ()),
    )


def _published_translations(
    connection: Connection, product_id: int, tags: Sequence[str]
) -> dict[int, list[Any]]:
    """The published translations of the product's outward notes in ``tags`` (the
    product's other languages: a translation in a language it no longer has is hidden),
    by note; drafts are never read. No query when the product has one language."""
    if not tags:
        return {}
    rows = connection.execute(
        select(
            NoteTranslation.note_id,
            NoteTranslation.locale,
            NoteTranslation.title,
            NoteTranslation.body_html,
        )
        .join(Note, Note.id == NoteTranslation.note_id)
        .where(
            Note.product_id == product_id,
            outward_clause(),
            NoteTranslation.status == TranslationStatus.PUBLISHED,
            NoteTranslation.locale.in_(tags),
        )
    ).all()
    texts: dict[int, list[Any]] = {}
    for row in rows:
        texts.setdefault(row.note_id, []).append(row)
    return texts


class CatalogueCache:
    """The catalogues this process has loaded, by widget key, each valid for one stamp."""

    def __init__(self, base_url: str) -> None:
        self._base_url = base_url
        self._catalogues: dict[str, Catalogue] = {}
        self._lock = threading.Lock()

    def held(self, widget_key: str) -> Catalogue | None:
        """The catalogue this process holds for the key, whatever its stamp; reads nothing."""
        return self._catalogues.get(widget_key)

    def get(self, connection: Connection, widget_key: str, stamp: int) -> Catalogue | None:
        """The catalogue at ``stamp`` (or newer), loading it when this process has an older one."""
        cached = self._catalogues.get(widget_key)
        if cached is not None and cached.stamp >= stamp:
            return cached
        with self._lock:
            cached = self._catalogues.get(widget_key)
            if cached is not None and cached.stamp >= stamp:
                return cached
            fresh = load(connection, widget_key, self._base_url)
            if fresh is None:
                self._catalogues.pop(widget_key, None)
            else:
                self._catalogues[widget_key] = fresh
            return fresh
