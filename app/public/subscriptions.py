"""Email subscriptions for anyone: subscribe, confirm, one-click unsubscribe, preferences,
and "delete my data", which erases the subscriber (``announcements.privacy``).

The links in mail carry signed tokens (``app.mail.tokens``) instead of a login. A
subscriber chooses their language on the subscribe form, among the product's, and may
change it with their preferences; the pages a subscriber's link opens speak it. The forms
here have no CSRF token: what a forged request could do is ask for a
confirmation mail (double opt-in and rate limits stop that from being useful) or act
on a subscription whose secret link it already holds; RFC 8058's one-click POST comes
from mail providers, which could never send a token anyway.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from sqlalchemy import select

from announcements import languages, privacy, reads, subscriptions, translations
from announcements.errors import NotFound, ValidationFailed
from announcements.languages import N_
from announcements.models import (
    Category,
    Frequency,
    Note,
    NoteStatus,
    Product,
    Subscriber,
    utcnow,
)
from announcements.subscriptions import Preferences
from app import i18n, widget_cache
from app.database import widget_engine, write_turn, writing
from app.extensions import csrf, db, limiter
from app.mail import compose, jobs, tokens
from app.mail.tokens import BadToken, Purpose
from app.public.views import CATEGORY_LABELS, Reading

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


def _page(
    template: str,
    status: int = 200,
    *,
    product: Product,
    subscriber: Subscriber | None = None,
    **context: Any,
) -> ResponseReturnValue:
    """A page of the public site: the language switcher and alternates of the changelog
    are left out (the page speaks the language chosen for it), the form offers the
    product's languages and the one the subscriber reads, if the product lacks it."""
    offered = _offered(product, subscriber)
    tag = i18n.current_locale()
    return render_template(
        f"public/{template}.html",
        product=product,
        subscriber=subscriber,
        reading=Reading([tag], tag, (tag,), None),
        path=url_for("public.changelog", slug=product.slug),
        subscribe_languages=offered,
        own_name=languages.own_name,
        direction=languages.direction,
        labels=CATEGORY_LABELS,
        describe=compose.describe,
        frequencies=list(Frequency),
        categories=list(Category),
        base_url=current_app.config["BASE_URL"],
        **context,
    ), status


def _offered(product: Product, subscriber: Subscriber | None = None) -> list[str]:
    """The languages a form lets one choose: the product's, and the one the subscriber
    reads now (from the widget, say), so that saving other preferences keeps it."""
    offered = translations.product_languages(product)
    if subscriber is not None and subscriber.locale and subscriber.locale not in offered:
        offered.append(subscriber.locale)
    return offered


def _speak_to(subscriber: Subscriber, product: Product) -> None:
    """Word the rest of this request as the subscriber's mail is."""
    i18n.speak(compose.interface_of(subscriber.locale, product))


def _shown(error: ValidationFailed) -> dict[str, str]:
    """The fields' messages in the page's language."""
    return {field: _(message) for field, message in error.errors.items()}


def _posted_preferences(offered: list[str]) -> Preferences:
    return subscriptions.parse_preferences(
        request.form.get("frequency"),
        request.form.getlist("categories"),
        request.form.get("locale"),
        offered=offered,
    )


@bp.post("/changelog/<slug>/subscribe")
@csrf.exempt
@limiter.limit(ip_limit)
@limiter.limit(address_limit, key_func=_form_address_key)
def subscribe(slug: str) -> ResponseReturnValue:
    """Ask for release notes by email; a confirmation mail follows."""
    product = _product(slug)
    _speak_as_page()
    address = request.form.get("email", "")
    try:
        preferences = _posted_preferences(_offered(product))
        subscriptions.request_subscription(
            db.session(), product, address, preferences, now=utcnow()
        )
    except ValidationFailed as error:
        db.session.rollback()
        return _page("subscribe", 422, product=product, errors=_shown(error), form=request.form)
    jobs.wake()
    return _page("subscribe", 202, product=product, sent_to=address.strip())


def _speak_as_page() -> None:
    """Speak the language of the page the form was on (its ``?locale=``), if it named one."""
    asked = request.args.get("locale")
    if asked:
        i18n.speak(asked)


@bp.errorhandler(429)
def _too_many(_error: Exception) -> ResponseReturnValue:
    slug = (request.view_args or {}).get("slug", "")
    _speak_as_page()
    return _page(
        "subscribe",
        429,
        product=_product(str(slug)),
        errors={
            "email": _(
                "Too many subscription requests from here or for this address. "
                "Check your inbox for the mail already sent, or try again in an hour."
            )
        },
        form=request.form,
    )


# A link whose subscriber's data was erased: its key was changed, so it reaches no one.
ERASED = N_("The data this link was for has been erased.")


def _subscriber_of(purpose: Purpose, token: str) -> tuple[Subscriber, dict[str, Any]]:
    """The subscriber a link was made for, and its payload; BadToken or NotFound as
    :func:`tokens.read_for_subscriber` says, and NotFound for one whose data was erased
    (which an old link without a key would still name)."""
    try:
        subscriber, payload = tokens.read_for_subscriber(db.session(), purpose, token)
    except NotFound:
        named = tokens.read(purpose, token).get("s")
        gone = db.session.get(Subscriber, named) if isinstance(named, int) else None
        if gone is not None and gone.erased_at is not None:
            raise NotFound(ERASED) from None
        raise
    if subscriber.erased_at is not None:
        raise NotFound(ERASED)
    return subscriber, payload


def _bad_link(error: BadToken | NotFound) -> ResponseReturnValue:
    status = 400 if isinstance(error, BadToken) else 404
    # The domain says what is wrong in English; the page says it in its language.
    problem = type(error)(_(error.message))
    return render_template("public/link_problem.html", problem=problem), status


@bp.get("/subscriptions/confirm/<token>")
def confirm(token: str) -> ResponseReturnValue:
    """Follow the link in the confirmation mail."""
    try:
        subscriber, payload = _subscriber_of(Purpose.CONFIRM, token)
        preferences = Preferences.from_payload(payload.get("p") or {})
    except (BadToken, NotFound) as error:
        return _bad_link(error)
    except ValidationFailed:
        return _bad_link(BadToken(tokens.NOT_VALID))
    subscriptions.confirm(db.session(), subscriber, preferences, now=utcnow())
    product = db.session.get_one(Product, subscriber.product_id)
    _speak_to(subscriber, product)
    return _page(
        "subscription_link",
        product=product,
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
        subscriber, _payload = _subscriber_of(Purpose.UNSUBSCRIBE, token)
    except (BadToken, NotFound) as error:
        return _bad_link(error)
    product = db.session.get_one(Product, subscriber.product_id)
    _speak_to(subscriber, product)
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
    """Change what a subscriber hears about, and in which language, from the link in any
    of their mails."""
    try:
        subscriber, _payload = _subscriber_of(Purpose.UNSUBSCRIBE, token)
    except (BadToken, NotFound) as error:
        return _bad_link(error)
    product = db.session.get_one(Product, subscriber.product_id)
    _speak_to(subscriber, product)
    try:
        chosen = _posted_preferences(_offered(product, subscriber))
    except ValidationFailed as error:
        return _page(
            "subscription_link",
            422,
            product=product,
            subscriber=subscriber,
            preferences=Preferences.of(subscriber),
            unsubscribe_token=token,
            errors=_shown(error),
        )
    subscriptions.update_preferences(db.session(), subscriber, chosen)
    _speak_to(subscriber, product)  # the language may be the one just chosen
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
        subscriber, payload = _subscriber_of(Purpose.READ, token)
    except (BadToken, NotFound) as error:
        return _bad_link(error)
    note = db.session.get(Note, payload.get("n")) if isinstance(payload.get("n"), int) else None
    if note is None or note.product_id != subscriber.product_id:
        return _bad_link(NotFound(N_("That note no longer exists.")))
    now = utcnow()
    public = note.status_at(now) is NoteStatus.PUBLISHED and not note.is_internal
    reader = subscriber.end_user
    if reader is not None and public:
        with widget_engine().connect() as connection, writing(connection):
            reads.record_read(connection, reader.id, note.id, channel="email", now=now)
        widget_cache.forget(subscriber.product_id, [reader.external_id])
    # The note's page in the language the mail was in.
    locale = compose.page_locale(subscriber.locale, note.product)
    return redirect(
        url_for(
            "public.version",
            slug=note.product.slug,
            version=note.version,
            locale=locale,
            _anchor=f"note-{note.id}",
        )
    )


@bp.route("/subscriptions/erase/<token>", methods=["GET", "POST"])
@csrf.exempt
def erase(token: str) -> ResponseReturnValue:
    """The "Delete my data" link of every mail. GET: what will be erased, and a button;
    POST: erase the subscriber's data, then say so. The link is the authority, as for
    unsubscribing: no form of this site could add to it."""
    try:
        subscriber, _payload = _subscriber_of(Purpose.ERASE, token)
    except (BadToken, NotFound) as error:
        return _bad_link(error)
    product = db.session.get_one(Product, subscriber.product_id)
    _speak_to(subscriber, product)
    if request.method == "GET":
        return _page("erase", product=product, subscriber=subscriber, token=token)
    address = subscriber.email
    with write_turn():
        privacy.erase_subscriber_of(db.session(), product, subscriber, actor=None, now=utcnow())
        db.session.commit()
    return _page("erase", product=product, erased=address)
