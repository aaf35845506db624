"""Public views: parse the query, ask the domain, answer; nothing here needs a login.

The changelog page speaks the reader's language: its notes are in the product's language
that ``?locale=`` names, else the best of them for the browser's ``Accept-Language``
(answered with ``Vary: Accept-Language``), each note in the best text its chain has; its
own wording in the interface language nearest the same request. A ``?locale=`` is kept
in every link of the page. A feed is in the product's language nearest ``?locale=``, else
the default. A ``?locale=`` that is not a language tag at all is answered 400, on the page
and the feeds alike; a tag of a language the product lacks falls back along its chain.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from flask import abort, current_app, make_response, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import force_locale, lazy_gettext
from flask_babel import gettext as _
from sqlalchemy import select
from werkzeug.http import is_resource_modified

from announcements import feeds, languages, queries, translations, versions
from announcements.models import Category, Frequency, Note, Product, utcnow
from app import i18n
from app.converters import page_arg
from app.database import widget_engine
from app.extensions import db
from app.public import bp

CACHE_CONTROL = "public, max-age=300, stale-while-revalidate=86400"
FEED_CACHE_KEY = "tidings.feeds"
FEED_INDEX_KEY = "tidings.feed_index"
MAX_CACHED_FEEDS = 512
MIMETYPES = {
    "rss": "application/rss+xml",
    "atom": "application/atom+xml",
    "json": "application/feed+json",
}
# The categories as readers see them (the model's labels, in the interface language).
CATEGORY_LABELS = {category: lazy_gettext(category.label) for category in Category}


@dataclass(frozen=True)
class Reading:
    """Which languages one reader of the public page is given."""

    languages: list[str]  # the product's, its default first
    notes: str  # the product's language nearest what the reader asked for
    order: tuple[str, ...]  # where each note's text is looked for, best first
    asked: str | None  # ``?locale=``, normalised; None: negotiated from Accept-Language

    @property
    def feed_locale(self) -> str | None:
        """The ``?locale=`` of the page's feed links: none for the default feed."""
        return None if self.asked is None and self.notes == self.languages[0] else self.notes


def _product(slug: str) -> Product:
    product = db.session.scalar(select(Product).where(Product.slug == slug))
    if product is None:
        abort(404)
    return product


def _category() -> Category | None:
    """The ``category`` filter, by its name (Added) or its label (New); 400 if unknown."""
    raw = request.args.get("category", "").strip()
    if not raw:
        return None
    for category in Category:
        if raw.lower() in (category.value.lower(), category.label.lower()):
            return category
    names = ", ".join(category.label for category in Category)
    abort(
        400,
        description=_(
            "There is no category “%(name)s”. Use one of: %(names)s.", name=raw[:40], names=names
        ),
    )


def _asked_locale() -> str | None:
    """The ``?locale=`` argument, normalised; None when absent; 400 when not a tag."""
    raw = request.args.get("locale", "").strip()
    if not raw:
        return None
    try:
        return languages.normalise(raw)
    except languages.BadTag:
        abort(400, description=_("Use a language tag such as en, fr or pt-BR for ?locale=."))


def _reading(product: Product) -> Reading:
    """The reader's languages: ``?locale=`` (which the interface speaks too), else the
    browser's."""
    available = translations.product_languages(product)
    asked = _asked_locale()
    if asked is None:
        requested = i18n.browser_languages()
    else:
        i18n.speak(asked)
        requested = [asked]
    notes = languages.negotiate(requested, available, product.default_locale)
    order = languages.chain(notes, available, product.default_locale)
    return Reading(available, notes, order, asked)


def _page(template: str, product: Product, reading: Reading, **context: Any) -> ResponseReturnValue:
    """The page in the reader's languages; its notes each in the text the reader sees."""
    notes: list[Note] = [note for group in context["groups"] for note in group.notes]
    response = make_response(
        render_template(
            f"public/{template}.html",
            product=product,
            reading=reading,
            texts={note.id: translations.shown_text(note, reading.notes) for note in notes},
            labels=CATEGORY_LABELS,
            own_name=languages.own_name,
            direction=languages.direction,
            base_url=_base_url(),
            **context,
        )
    )
    if reading.asked is None:
        response.vary.add("Accept-Language")
    return response


def _base_url() -> str:
    return str(current_app.config["BASE_URL"])


@bp.get("/changelog/<slug>")
def changelog(slug: str) -> ResponseReturnValue:
    """A product's public changelog: versions newest first, filtered and searched."""
    product = _product(slug)
    reading = _reading(product)
    category = _category()
    text = request.args.get("q", "")[:200].strip()
    listing = queries.notes_by_version(
        db.session(),
        product,
        now=utcnow(),
        category=category,
        text=text,
        page=page_arg(),
        public=True,
        text_languages=reading.order,
    )
    return _page(
        "changelog",
        product,
        reading,
        groups=listing.groups,
        listing=listing,
        category=category,
        text=text,
        categories=list(Category),
        frequencies=list(Frequency),
        path=url_for("public.changelog", slug=product.slug),
        here={
            "slug": product.slug,
            "category": category.label if category else None,
            "q": text or None,
            "page": listing.page if listing.page > 1 else None,
        },
    )


@bp.get("/changelog/<slug>/<version>")
def version(slug: str, version: str) -> ResponseReturnValue:
    """The permalink of one version's notes, each with its own anchor."""
    product = _product(slug)
    reading = _reading(product)
    if not versions.is_valid(version):
        abort(404)
    listing = queries.notes_by_version(
        db.session(), product, now=utcnow(), public=True, version=version
    )
    if not listing.groups:
        abort(404)
    return _page(
        "version",
        product,
        reading,
        groups=listing.groups,
        group=listing.groups[0],
        path=url_for("public.version", slug=product.slug, version=version),
        here={"slug": product.slug, "version": version},
    )


@bp.get("/changelog/<slug>/feed.<any(rss, atom, json):kind>")
def feed(slug: str, kind: str) -> ResponseReturnValue:
    """RSS 2.0, Atom 1.0 or JSON Feed 1.1 of the latest notes; conditional GET answers 304."""
    index = current_app.extensions[FEED_INDEX_KEY].get(widget_engine(), slug)
    if index is None:
        abort(404)
    category = _category()
    state = index.validators(kind, utcnow(), category, _asked_locale())
    if not is_resource_modified(
        request.environ, etag=state.etag, last_modified=state.last_modified
    ):
        response = current_app.response_class(status=304)
    else:
        response = current_app.response_class(_rendered(slug, kind, state, category))
        response.mimetype = MIMETYPES[kind]
    response.set_etag(state.etag)
    response.last_modified = state.last_modified
    response.headers["Cache-Control"] = CACHE_CONTROL
    return response


def _rendered(slug: str, kind: str, state: feeds.Validators, category: Category | None) -> bytes:
    """The feed's body, rendered once per state (its ETag) and kept in this process."""
    cache: dict[str, bytes] = current_app.extensions[FEED_CACHE_KEY]
    body = cache.get(state.etag)
    if body is None:
        product = _product(slug)
        found = feeds.latest(
            db.session(),
            product,
            state,
            base_url=_base_url(),
            wording=_wording(product, state.language),
            category=category,
        )
        if kind == "json":
            body = json.dumps(feeds.json_feed(found), ensure_ascii=False).encode()
        else:
            body = feeds.rss(found) if kind == "rss" else feeds.atom(found)
        if len(cache) >= MAX_CACHED_FEEDS:
            cache.clear()
        cache[state.etag] = body
    return body


def _wording(product: Product, language: str) -> feeds.Wording:
    """The feed's own words in the interface language nearest the feed's."""
    with force_locale(languages.interface_locale([language])):
        return feeds.Wording(
            title=_("%(product)s release notes", product=product.name),
            description=_("What is new in %(product)s", product=product.name),
            labels={category: str(label) for category, label in CATEGORY_LABELS.items()},
        )
