"""Email subscriptions for anyone: subscribe, confirm, one-click unsubscribe, preferences.

The links in mail carry signed tokens (``app.mail.tokens``) instead of a login. The
forms here have no CSRF token: what a forged request could do is ask for a
confirmation mail (double opt-in and rate limits stop that from being useful) or act
on a subscription whose secret link it already holds; RFC 8058's one-click POST comes
from mail providers, which could never send a token anyway.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, redirect, render_template, request
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from announcements import queries, reads, subscriptions
from announcements.errors import NotFound, ValidationFailed
from announcements.models import (
    Category,
    Frequency,
    Note,
    NoteStatus,
    Product,
    utcnow,
)
from announcements.serialisation import note_url
from announcements.subscriptions import Preferences
from app.database import widget_engine, writing
from app.extensions import csrf, db, limiter
from app.mail import jobs, tokens
from app.mail.tokens import BadToken, Purpose

bp = Blueprint("subscriptions", __name__)


# The limits on subscription requests, per IP and per address, shared with the widget's.
def ip_limit() -> str:
    return str(current_app.config["RATELIMIT_SUBSCRIBE"])


def address_limit() -> str:
    return str(current_app.config["RATELIMIT_SUBSCRIBE_ADDRESS"])


def address_key(address: str) -> str:
    """One count per address, whichever page or widget the requests come from."""
    return "subscribe:" + address.strip().lower()


def _form_address_key() -> str:
    return address_key(request.form.get("email", ""))


def _product(slug: str) -> Product:
    product = db.session.scalar(select(Product).where(Product.slug == slug))
    if product is None:
        abort(404)
    return product


def _page(template: str, status: int = 200, **context: Any) -> ResponseReturnValue:
    context.setdefault("base_url", current_app.config["BASE_URL"])
    context.setdefault("locales", queries.locales(db.session(), context["product"]))
    return render_template(
        f"public/{template}.html",
        frequencies=list(Frequency),
        categories=list(Category),
        **context,
    ), status


def _posted_preferences() -> Preferences:
    return subscriptions.parse_preferences(
        request.form.get("frequency"),
        request.form.getlist("categories"),
        request.form.get("locale"),
    )


@bp.post("/changelog/<slug>/subscribe")
@csrf.exempt
@limiter.limit(ip_limit)
@limiter.limit(address_limit, key_func=_form_address_key)
def subscribe(slug: str) -> ResponseReturnValue:
    """Ask for release notes by email; a confirmation mail follows."""
    product = _product(slug)
    address = request.form.get("email", "")
    try:
        preferences = _posted_preferences()
        subscriptions.request_subscription(
            db.session(), product, address, preferences, now=utcnow()
        )
    except ValidationFailed as error:
        db.session.rollback()
        return _page("subscribe", 422, product=product, errors=error.errors, form=request.form)
    jobs.wake()
    return _page("subscribe", 202, product=product, sent_to=address.strip())


@bp.errorhandler(429)
def _too_many(_error: Exception) -> ResponseReturnValue:
    slug = (request.view_args or {}).get("slug", "")
    return _page(
        "subscribe",
        429,
        product=_product(str(slug)),
        errors={
            "email": "Too many subscription requests from here or for this address. "
            "Check your inbox for the mail already sent, or try again in an hour."
        },
        form=request.form,
    )


def _bad_link(error: BadToken | NotFound) -> ResponseReturnValue:
    status = 400 if isinstance(error, BadToken) else 404
    return render_template("public/link_problem.html", problem=error), status


@bp.get("/subscriptions/confirm/<token>")
def confirm(token: str) -> ResponseReturnValue:
    """Follow the link in the confirmation mail."""
    try:
        subscriber, payload = tokens.read_for_subscriber(db.session(), Purpose.CONFIRM, token)
        preferences = Preferences.from_payload(payload.get("p") or {})
    except (BadToken, NotFound) as error:
        return _bad_link(error)
    except ValidationFailed:
        return _bad_link(BadToken("This link is not valid."))
    subscriptions.confirm(db.session(), subscriber, preferences, now=utcnow())
    return _page(
        "subscription_link",
        product=db.session.get(Product, subscriber.product_id),
        subscriber=subscriber,
        preferences=Preferences.of(subscriber),
        confirmed=True,
        unsubscribe_token=tokens.for_subscriber(Purpose.UNSUBSCRIBE, subscriber),
    )


@bp.route("/subscriptions/unsubscribe/<token>", methods=["GET", "POST"])
@csrf.exempt
def unsubscribe(token: str) -> ResponseReturnValue:
    """GET: the subscription and its preferences, with an unsubscribe button. POST: RFC 8058
    one-click unsubscribe, no other step; repeating it changes nothing."""
    try:
        subscriber, _ = tokens.read_for_subscriber(db.session(), Purpose.UNSUBSCRIBE, token)
    except (BadToken, NotFound) as error:
        return _bad_link(error)
    product = db.session.get(Product, subscriber.product_id)
    done = False
    if request.method == "POST":
        subscriptions.unsubscribe(db.session(), subscriber, now=utcnow())
        done = True
    return _page(
        "subscription_link",
        product=product,
        subscriber=subscriber,
        preferences=Preferences.of(subscriber),
        unsubscribed=done,
        unsubscribe_token=token,
    )


@bp.post("/subscriptions/preferences/<token>")
@csrf.exempt
def preferences(token: str) -> ResponseReturnValue:
    """Change what a subscriber hears about, from the link in any of their mails."""
    try:
        subscriber, _ = tokens.read_for_subscriber(db.session(), Purpose.UNSUBSCRIBE, token)
    except (BadToken, NotFound) as error:
        return _bad_link(error)
    product = db.session.get(Product, subscriber.product_id)
    try:
        chosen = _posted_preferences()
    except ValidationFailed as error:
        return _page(
            "subscription_link",
            422,
            product=product,
            subscriber=subscriber,
            preferences=Preferences.of(subscriber),
            unsubscribe_token=token,
            errors=error.errors,
        )
    subscriptions.update_preferences(db.session(), subscriber, chosen)
    return _page(
        "subscription_link",
        product=product,
        subscriber=subscriber,
        preferences=chosen,
        unsubscribe_token=token,
        saved=True,
    )


@bp.get("/subscriptions/read/<token>")
def read(token: str) -> ResponseReturnValue:
    """The "Read on the web" link of a mail: records the read for a linked subscriber, then
    goes to the note's permalink."""
    try:
        subscriber, payload = tokens.read_for_subscriber(db.session(), Purpose.READ, token)
    except (BadToken, NotFound) as error:
        return _bad_link(error)
    note = db.session.get(Note, payload.get("n")) if isinstance(payload.get("n"), int) else None
    if note is None or note.product_id != subscriber.product_id:
        return _bad_link(NotFound("That note no longer exists."))
    now = utcnow()
    public = note.status_at(now) is NoteStatus.PUBLISHED and not note.is_internal
    if subscriber.end_user_id is not None and public:
        with widget_engine().connect() as connection, writing(connection):
            reads.record_read(connection, subscriber.end_user_id, note.id, channel="email", now=now)
    return redirect(note_url("", note.product.slug, note.version, note.id))
