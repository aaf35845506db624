"""Public views: parse the query, ask the domain, answer; nothing here needs a login."""

from __future__ import annotations

import json

from flask import abort, current_app, render_template, request
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from werkzeug.http import is_resource_modified

from announcements import feeds, queries, versions
from announcements.models import LOCALE_PATTERN, Category, Frequency, Product, utcnow
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
    abort(400, description=f"There is no category “{raw[:40]}”. Use one of: {names}.")


def _base_url() -> str:
    return str(current_app.config["BASE_URL"])


@bp.get("/changelog/<slug>")
def changelog(slug: str) -> ResponseReturnValue:
    """A product's public changelog: versions newest first, filtered and searched."""
    product = _product(slug)
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
    )
    return render_template(
        "public/changelog.html",
        product=product,
        listing=listing,
        category=category,
        text=text,
        categories=list(Category),
        frequencies=list(Frequency),
        locales=queries.locales(db.session(), product),
        base_url=_base_url(),
    )


@bp.get("/changelog/<slug>/<version>")
def version(slug: str, version: str) -> ResponseReturnValue:
    """The permalink of one version's notes, each with its own anchor."""
    product = _product(slug)
    if not versions.is_valid(version):
        abort(404)
    listing = queries.notes_by_version(
        db.session(), product, now=utcnow(), public=True, version=version
    )
    if not listing.groups:
        abort(404)
    return render_template(
        "public/version.html",
        product=product,
        group=listing.groups[0],
        base_url=_base_url(),
    )


@bp.get("/changelog/<slug>/feed.<any(rss, atom, json):kind>")
def feed(slug: str, kind: str) -> ResponseReturnValue:
    """RSS 2.0, Atom 1.0 or JSON Feed 1.1 of the latest notes; conditional GET answers 304."""
    index = current_app.extensions[FEED_INDEX_KEY].get(widget_engine(), slug)
    if index is None:
        abort(404)
    category = _category()
    locale = request.args.get("locale") or None
    if locale is not None and not LOCALE_PATTERN.fullmatch(locale):
        abort(400, description="Use a language tag such as en, de or pt-BR for ?locale=.")
    state = index.validators(kind, utcnow(), category, locale)
    if not is_resource_modified(
        request.environ, etag=state.etag, last_modified=state.last_modified
    ):
        response = current_app.response_class(status=304)
    else:
        response = current_app.response_class(_rendered(slug, kind, state, category, locale))
        response.mimetype = MIMETYPES[kind]
    response.set_etag(state.etag)
    response.last_modified = state.last_modified
    response.headers["Cache-Control"] = CACHE_CONTROL
    return response


def _rendered(
    slug: str,
    kind: str,
    state: feeds.Validators,
    category: Category | None,
    locale: str | None,
) -> bytes:
    """The feed's body, rendered once per state (its ETag) and kept in this process."""
    cache: dict[str, bytes] = current_app.extensions[FEED_CACHE_KEY]
    body = cache.get(state.etag)
    if body is None:
        found = feeds.latest(
            db.session(),
            _product(slug),
            state,
            base_url=_base_url(),
            category=category,
            locale=locale,
        )
        if kind == "json":
            body = json.dumps(feeds.json_feed(found), ensure_ascii=False).encode()
        else:
            body = feeds.rss(found) if kind == "rss" else feeds.atom(found)
        if len(cache) >= MAX_CACHED_FEEDS:
            cache.clear()
        cache[state.etag] = body
    return body
