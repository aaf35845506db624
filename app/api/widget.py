"""The widget's API: what is new for an end user, what they read, how they reacted, the
notices they acknowledged, and the notes that may answer them before they ask support.

Each call reads the product's catalogue stamp, the end user and their reads in one
query and serves the notes from the catalogue cached in this process; a page view
of a known user writes nothing (see ``reads.see``). With Redis, a poll whose answer the
user already holds is answered 304 from what is kept there, with no query
(:mod:`announcements.state_cache`); every write to a user's state forgets theirs once it
commits (:func:`_writing`, :mod:`app.widget_cache`). The views parse, call the domain,
and answer; CORS is limited to the product's allowed origins.

Notes come in the reader's language: the ``locale`` the host passes (the widget sends
the browser's when the host passes none), else the one stored for the user, picks each
note's text by the fallback chain (``Catalogue.chain``). The widget's own wording is
not in these answers but in :func:`widget_strings`, the same for everyone and cached
by browsers.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import re
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import orjson
from flask import Response, current_app, g, request, send_from_directory
from flask.typing import ResponseReturnValue
from packaging.version import Version
from sqlalchemy import Connection

from announcements import (
    help,
    inbox,
    languages,
    live,
    reads,
    serialisation,
    state_cache,
    subscriptions,
    targeting,
    tickets,
    user_state,
    versions,
)
from announcements.catalogue import Catalogue, CatalogueCache
from announcements.errors import Forbidden, NotFound, Unauthenticated, ValidationFailed
from announcements.models import LOCALE_PATTERN, Product, SubscriberStatus, utcnow
from app import widget_cache, widget_strings
from app.api import bp
from app.database import widget_engine, writing
from app.extensions import db, limiter
from app.mail import jobs
from app.public import subscriptions as public_subscriptions

CACHE_KEY = "tidings.catalogues"
WORDING_KEY = "tidings.widget_wording"
# The widget's wording changes only with a release; a day in the browser's cache, and any
# shared cache's, keeps it off every page view.
WORDING_MAX_AGE = 86_400
# Where an app may put another user_state.StateReader: the benchmark serves the reference too.
STATE_READER_KEY = "tidings.state_reader"
MAX_USER_ID_LENGTH = 255
MAX_ATTRIBUTES = 50
ATTRIBUTE_PREFIX = "attr."
PREFLIGHT_MAX_AGE = "7200"
# A user id is one line of text: the string an email_hash signs holds a line feed, so
# no user id can be it, and no user_hash can pass for an email_hash.
CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")
LIMIT_PATTERN = re.compile(r"[0-9]{1,3}")
# What secrets.token_urlsafe(16) makes for help, with room to spare: anything else names
# no help request, and is answered so before it reaches the database.
HELP_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,32}")
HELP_LIMIT = 3
UNKNOWN_KEY = "No product has this widget key. Copy it again from the settings page."


def _cache() -> CatalogueCache:
    cache: CatalogueCache = current_app.extensions[CACHE_KEY]
    return cache


def _state_reader() -> user_state.StateReader:
    reader: user_state.StateReader = current_app.extensions.get(
        STATE_READER_KEY, user_state.STATE_READER
    )
    return reader


def expected_hash(secret: str, user_id: str) -> str:
    """The ``user_hash`` a host computes: hex HMAC-SHA256 of the user id with the secret."""
    return hmac.new(secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()


def expected_email_hash(secret: str, user_id: str, email: str) -> str:
    """The ``email_hash`` with which a host vouches that ``email`` is this user's address:
    hex HMAC-SHA256 of "email:", the user id, a line feed and the address."""
    return expected_hash(secret, f"email:{user_id}\n{email}")


def _matches(given: Any, wanted: str) -> bool:
    """Whether a hash sent by the client is ``wanted``, in constant time; any other type
    or text (a lone surrogate from JSON included) is simply wrong."""
    text = given if isinstance(given, str) and given.isascii() else ""
    return hmac.compare_digest(text.encode(), wanted.encode())


def parse_user_id(raw: Any) -> str | None:
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str | int) or isinstance(raw, bool):
        raise ValidationFailed({"user_id": "The user id is text."})
    user_id = str(raw)
    if len(user_id) > MAX_USER_ID_LENGTH:
        raise ValidationFailed({"user_id": f"Keep user ids under {MAX_USER_ID_LENGTH} characters."})
    if not reads.is_storable(user_id) or CONTROL_CHARACTER.search(user_id):
        raise ValidationFailed({"user_id": "The user id holds characters that are not text."})
    return user_id


def load_catalogue(
    connection: Connection, widget_key: str, user_id: str | None
) -> tuple[Catalogue, user_state.EndUserState | None]:
    """The product's catalogue and the end user, from one query; refuse a foreign origin."""
    stamp, state = _state_reader().fetch_state(connection, widget_key, user_id)
    catalogue = None if stamp is None else _cache().get(connection, widget_key, stamp)
    if catalogue is None:
        raise NotFound(UNKNOWN_KEY)
    admit(catalogue)
    return catalogue, state


def admit(catalogue: Catalogue) -> None:
    """Note the request's product, and refuse a foreign origin."""
    g.widget_product_id = catalogue.product_id  # app.health counts the request for it
    origin = request.headers.get("Origin")
    # Pages Tidings serves itself (the demo host) are always allowed: from this address,
    # or from the public one when this is the live process on an address of its own.
    if origin is not None and origin != request.host_url.rstrip("/"):
        if origin not in catalogue.allowed_origins and origin != _public_origin():
            raise Forbidden(
                f"{origin} may not load this product's widget. "
                "An owner can add it under Settings → Allowed origins."
            )
        g.widget_origin = origin


def _public_origin() -> str:
    """The origin of the public address (``BASE_URL``), where Tidings serves its pages."""
    address = urlsplit(current_app.config["BASE_URL"])
    return f"{address.scheme}://{address.netloc}"


def check_identity(catalogue: Catalogue, user_id: str | None, user_hash: Any) -> None:
    if user_id is None:
        if catalogue.require_identity:
            raise Unauthenticated(
                "This product requires a user_id and user_hash. Anonymous mode is off."
            )
        return
    if not user_hash and not catalogue.require_identity:
        return
    if not _matches(user_hash, expected_hash(catalogue.identity_secret, user_id)):
        raise Unauthenticated(
            "The user_hash does not match this user_id. Compute it on your server as the "
            "hex HMAC-SHA256 of the user id with the product's identity secret."
        )


def _sighting(user_id: str) -> tuple[reads.Sighting, Version | None]:
    """What the query string says about the user, checked."""
    args = request.args
    version_text = args.get("version") or None
    app_version = None
    if version_text is not None:
        try:
            app_version = versions.parse(version_text)
        except versions.InvalidVersion as exc:
            raise ValidationFailed({"version": exc.errors["version"]}) from None
    locale = args.get("locale") or None
    if locale is not None and not LOCALE_PATTERN.fullmatch(locale):
        raise ValidationFailed({"locale": "Use a language tag such as en, de or pt-BR."})
    attributes = {}
    for name, value in args.items():
        if not name.startswith(ATTRIBUTE_PREFIX):
            continue
        name = name[len(ATTRIBUTE_PREFIX) :]
        if not targeting.ATTRIBUTE_PATTERN.fullmatch(name):
            raise ValidationFailed({"attr": f"“{name[:64]}” is not an attribute name."})
        if len(value) > targeting.MAX_VALUE_LENGTH:
            raise ValidationFailed({"attr": f"attr.{name} is over 200 characters."})
        if not reads.is_storable(value):
            raise ValidationFailed({"attr": f"attr.{name} holds characters that are not text."})
        attributes[name] = value
    if len(attributes) > MAX_ATTRIBUTES:
        raise ValidationFailed({"attr": f"Send at most {MAX_ATTRIBUTES} attributes."})
    sighting = reads.Sighting(
        external_id=user_id,
        app_version=version_text,
        locale=locale,
        attributes=attributes,
    )
    return sighting, app_version


def _chain(
    catalogue: Catalogue, sighting: reads.Sighting, state: user_state.EndUserState | None
) -> tuple[str, ...]:
    """The languages the reader reads, best first: by the locale sent, else the stored one."""
    return catalogue.chain(sighting.locale or (state.locale if state else None))


def _limit(default: int = 20, most: int = inbox.MAX_PAGE, what: str = "notes per page") -> int:
    """The ``limit`` asked for, 1 to ``most``; the error says what is counted."""
    raw = request.args.get("limit", str(default))
    # Checked as text first: int() refuses digits such as "²" and numbers of 4,300 digits.
    if not LIMIT_PATTERN.fullmatch(raw) or not 1 <= int(raw) <= most:
        raise ValidationFailed({"limit": f"Ask for 1 to {most} {what}."})
    return int(raw)


@bp.get("/widget/<widget_key>/notes", provide_automatic_options=False)
def widget_notes(widget_key: str) -> ResponseReturnValue:
    """What is new for one end user: a page of notes, newest first, and the unread count.

    With Redis, a poll whose answer the user already holds is answered 304 from what is
    kept there, with no query (:mod:`announcements.state_cache`)."""
    user_id = parse_user_id(request.args.get("user_id"))
    sighting, app_version = _sighting(user_id or "")
    limit, after = _limit(), inbox.parse_cursor(request.args.get("cursor"))
    kept = _kept(widget_key, user_id)
    if kept is not None and kept.holds(request.if_none_match):
        return _not_modified(kept.entry_etag)
    now = utcnow()
    wrote = False
    with _widget_connection() as connection:
        catalogue, state = load_catalogue(connection, widget_key, user_id)
        check_identity(catalogue, user_id, request.args.get("user_hash"))
        if user_id is not None and reads.needs_writing(sighting, state, now):
            with _writing(connection, catalogue, user_id):
                state = reads.see(connection, catalogue.product_id, sighting, state, now)
            wrote = True
    shown = inbox.inbox(
        catalogue,
        state,
        # A known user's stored attributes are the ones just sent, when any were sent.
        attributes=state.attributes if state else sighting.attributes,
        app_version=app_version,
        now=now,
        limit=limit,
        after=after,
        chain=_chain(catalogue, sighting, state),
    )
    etag = serialisation.inbox_etag(shown)
    if kept is not None and not wrote:
        kept.keep(catalogue, state, etag, now)
    if etag in request.if_none_match:
        return _not_modified(etag)
    # The stream is told the state this answer shows, so a change between the two is sent
    # as the stream opens rather than missed.
    events = (
        f"{current_app.config['LIVE_URL']}/api/v1/widget/{widget_key}/events"
        f"?last_event_id={live.event_id(catalogue, now)}"
    )
    response = Response(serialisation.inbox_body(shown, events), mimetype="application/json")
    response.set_etag(etag)
    return response


def _not_modified(etag: str) -> Response:
    response = Response(status=304)
    response.set_etag(etag)
    return response


class _Kept:
    """What Redis holds for one GET notes, and the catalogue this process holds for it."""

    def __init__(
        self,
        cache: state_cache.StateCache,
        catalogue: Catalogue,
        user_id: str | None,
        digest: str,
        found: state_cache.Lookup,
    ) -> None:
        self.cache, self.catalogue, self.user_id = cache, catalogue, user_id
        self.digest, self.found = digest, found
        self.entry_etag = found.entry.etag if found.entry else ""

    def holds(self, etags: Any) -> bool:
        """Whether the client holds the answer: the entry is at the published stamp, which
        this process's catalogue is at too, and has not run out."""
        entry, stamp = self.found.entry, self.found.stamp
        return entry is not None and stamp == self.catalogue.stamp and entry.answers(stamp, etags)

    def keep(
        self,
        catalogue: Catalogue,
        state: user_state.EndUserState | None,
        etag: str,
        now: datetime,
    ) -> None:
        """Keep the answer computed from the database, until the first moment it may change
        without a write: the catalogue's next boundary, the next write of a sighting, or
        ENTRY_SECONDS. A page view that asked without its ETag finds it kept already:
        what is kept stands until its end, and costs no second round trip."""
        if self.found.entry is not None and self.found.entry.answers(catalogue.stamp, [etag]):
            return
        ends = [
            now + timedelta(seconds=state_cache.ENTRY_SECONDS),
            state_cache.catalogue_until(catalogue, now),
            reads.unchanged_until(state) if state is not None else None,
        ]
        until = min(end for end in ends if end is not None)
        entry = state_cache.Entry(etag, catalogue.stamp, until.timestamp())
        self.cache.keep(catalogue.product_id, self.user_id, self.digest, self.found.token, entry)


def _kept(widget_key: str, user_id: str | None) -> _Kept | None:
    """What Redis holds for this GET notes; None without Redis, when it does not answer,
    or before this process has loaded the product's catalogue.

    Read before the database: a write that commits after it deletes the token it holds,
    so the answer computed from the state before that write is not kept."""
    cache = widget_cache.cache()
    catalogue = _cache().held(widget_key) if cache is not None else None
    if cache is None or catalogue is None:
        return None
    # Nothing reaches Redis (whose lookup writes) for a request the held catalogue
    # refuses; it goes on to the database, which answers it against the current one.
    try:
        admit(catalogue)
        check_identity(catalogue, user_id, request.args.get("user_hash"))
    except (Forbidden, Unauthenticated):
        return None
    digest = state_cache.query_digest(request.args.items(multi=True))
    found = cache.lookup(catalogue.product_id, user_id, digest)
    return None if found is None else _Kept(cache, catalogue, user_id, digest, found)


@contextlib.contextmanager
def _writing(connection: Connection, catalogue: Catalogue, user_id: str | None) -> Iterator[None]:
    """Write and commit (``app.database.writing``), then delete the answers kept for the
    user: after the commit, and after a write that failed partway too (on PostgreSQL each
    statement commits alone)."""
    try:
        with writing(connection):
            yield
    finally:
        if user_id is not None:
            widget_cache.forget(catalogue.product_id, [user_id])


def _widget_connection() -> Connection:
    """A connection for one widget call: a read, then writes that each stand alone.

    On PostgreSQL it autocommits, which saves the BEGIN, COMMIT and ROLLBACK round
    trips; every write here is idempotent, so a call cut off halfway is simply
    repeated. SQLite's driver opens no transaction for a read, and the writes after
    it are committed together.
    """
    return widget_engine().connect()


def _json_body() -> dict[str, Any]:
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # nested deeper than the parser goes; silent covers ValueError only
        body = None
    if not isinstance(body, dict):
        raise ValidationFailed({"body": "Send a JSON object."})
    return body


def _identified(
    connection: Connection, widget_key: str, body: Mapping[str, Any]
) -> tuple[Catalogue, user_state.EndUserState | None, str]:
    """The catalogue and the end user a write is about; writes need a user id."""
    user_id = parse_user_id(body.get("user_id"))
    catalogue, state = load_catalogue(connection, widget_key, user_id)
    if user_id is None:
        raise ValidationFailed(
            {"user_id": "Reads and reactions of anonymous users stay in their browser."}
        )
    check_identity(catalogue, user_id, body.get("user_hash"))
    return catalogue, state, user_id


@bp.post("/widget/<widget_key>/reads", provide_automatic_options=False)
def widget_reads(widget_key: str) -> ResponseReturnValue:
    """Mark notes read for an end user; reading twice changes nothing."""
    body = _json_body()
    now = utcnow()
    with _widget_connection() as connection:
        catalogue, state, user_id = _identified(connection, widget_key, body)
        note_ids = reads.check_readable(catalogue, _as_list(body.get("note_ids")), now=now)
        channel = reads.check_channel(body.get("channel"))
        if reads.would_record(state, note_ids):
            with _writing(connection, catalogue, user_id):
                state = reads.see(
                    connection, catalogue.product_id, reads.Sighting(user_id), state, now
                )
                reads.mark_read(connection, state, note_ids, channel=channel, now=now)
    return Response(status=204)


def _as_list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise ValidationFailed({"note_ids": "note_ids is a list of note ids."})
    return value


@bp.post("/widget/<widget_key>/reactions", provide_automatic_options=False)
def widget_reactions(widget_key: str) -> ResponseReturnValue:
    """Set or change an end user's reaction to a note, with an optional comment."""
    body = _json_body()
    now = utcnow()
    with _widget_connection() as connection:
        catalogue, state, user_id = _identified(connection, widget_key, body)
        # Whatever the client sent, until check_reaction has vouched for it.
        note_id: Any = body.get("note_id")
        reaction = body.get("reaction")
        comment = reads.check_reaction(catalogue, note_id, reaction, body.get("comment"), now=now)
        with _writing(connection, catalogue, user_id):
            state = reads.see(connection, catalogue.product_id, reads.Sighting(user_id), state, now)
            reads.react(connection, state, note_id, reaction, comment, now=now)
    return {"note_id": note_id, "reaction": reaction, "comment": comment}


@bp.post("/widget/<widget_key>/acknowledgements", provide_automatic_options=False)
def widget_acknowledgements(widget_key: str) -> ResponseReturnValue:
    """Record that an end user pressed "I understand" on a notice; the second time
    changes nothing. Anonymous users' acknowledgements stay in their browser."""
    body = _json_body()
    now = utcnow()
    with _widget_connection() as connection:
        catalogue, state, user_id = _identified(connection, widget_key, body)
        note_id = reads.check_acknowledgeable(
            catalogue, body.get("note_id"), now=now, listed=inbox.listed(catalogue, state, now)
        )
        if reads.would_acknowledge(state, note_id):
            with _writing(connection, catalogue, user_id):
                state = reads.see(
                    connection, catalogue.product_id, reads.Sighting(user_id), state, now
                )
                reads.acknowledge(connection, state, note_id, now=now)
    return Response(status=204)


@bp.get("/widget/<widget_key>/help", provide_automatic_options=False)
def widget_help(widget_key: str) -> ResponseReturnValue:
    """The user's unread notes that match what they are about to ask support, best match
    first; writes nothing."""
    query = help.check_query(request.args.get("q"), "q")
    user_id = parse_user_id(request.args.get("user_id"))
    sighting, app_version = _sighting(user_id or "")
    limit = _limit(HELP_LIMIT, help.MAX_SHOWN, "notes of help")
    now = utcnow()
    with _widget_connection() as connection:
        catalogue, state = load_catalogue(connection, widget_key, user_id)
        check_identity(catalogue, user_id, request.args.get("user_hash"))
    if user_id is not None and state is None:
        # Never seen: as the notes endpoint will store them, first seen now, so the grace
        # releases and hold-backs apply here as they will there.
        state = reads.first_sight(sighting, now)
    chain = _chain(catalogue, sighting, state)
    matches = inbox.unread(
        catalogue,
        state,
        # As the notes endpoint would store them: the ones sent, else the ones kept.
        attributes=sighting.attributes or (state.attributes if state else {}),
        app_version=app_version,
        now=now,
        among=help.rank(catalogue, query, chain),
        limit=limit,
        chain=chain,
    )
    return Response(serialisation.help_body(query, matches), mimetype="application/json")


def _asker(
    connection: Connection, widget_key: str, body: Mapping[str, Any], now: Any
) -> tuple[Catalogue, user_state.EndUserState | None]:
    """The catalogue and the end user a help call is about, created if new; None when
    anonymous (where the product allows it)."""
    user_id = parse_user_id(body.get("user_id"))
    catalogue, state = load_catalogue(connection, widget_key, user_id)
    check_identity(catalogue, user_id, body.get("user_hash"))
    if user_id is not None and state is None:
        with _writing(connection, catalogue, user_id):
            state = reads.see(connection, catalogue.product_id, reads.Sighting(user_id), state, now)
    return catalogue, state


@bp.post("/widget/<widget_key>/help", provide_automatic_options=False)
@limiter.limit(public_subscriptions.ip_limit)
def widget_help_shown(widget_key: str) -> ResponseReturnValue:
    """Record the notes help showed a user for a query; answers the id to record the
    outcome with. Limited per IP address like subscriptions, so counts can't be pumped."""
    body = _json_body()
    query = help.check_query(body.get("query"), "query")
    now = utcnow()
    with _widget_connection() as connection:
        catalogue, state = _asker(connection, widget_key, body, now)
        with writing(connection):
            token = help.record_shown(
                connection,
                catalogue,
                state.id if state else None,
                query,
                body.get("note_ids"),
                listed=inbox.listed(catalogue, state, now, to_help=True),
                now=now,
            )
    return {"id": token}, 201


@bp.post("/widget/<widget_key>/help/<token>", provide_automatic_options=False)
@limiter.limit(public_subscriptions.ip_limit)
def widget_help_outcome(widget_key: str, token: str) -> ResponseReturnValue:
    """Record what the user chose after help: a note answered them (recorded as read
    through help), or they still need help. The same choice again changes nothing."""
    body = _json_body()
    now = utcnow()
    with _widget_connection() as connection:
        catalogue, state = _asker(connection, widget_key, body, now)
        # An answer through help changes the user's reads: their kept answers are forgotten.
        with _writing(connection, catalogue, state.external_id if state else None):
            answered = help.decide(
                connection,
                catalogue.product_id,
                token,
                state.id if state else None,
                body.get("outcome"),
                body.get("note_id"),
                listed=inbox.listed(catalogue, state, now, to_help=True),
                now=now,
            )
            if answered is not None and state is not None:
                reads.mark_read(connection, state, [answered], channel="help", now=now)
    return Response(status=204)


def _address(catalogue: Catalogue, user_id: str, given: Mapping[str, Any]) -> tuple[str, bool]:
    """The address a subscription call is about, and whether the host signed it for this
    user (a valid ``email_hash``); a wrong ``email_hash`` is refused like a wrong user_hash."""
    address = given.get("email")
    if not isinstance(address, str) or not address.strip():
        raise ValidationFailed({"email": "The host page gives no email address for this user."})
    if not reads.is_storable(address):
        raise ValidationFailed({"email": "The address holds characters that are not text."})
    signature = given.get("email_hash")
    if not signature:
        return address, False
    if not _matches(signature, expected_email_hash(catalogue.identity_secret, user_id, address)):
        raise Unauthenticated(
            "The email_hash does not match this user_id and email. Compute it on your server "
            'as the hex HMAC-SHA256 of "email:" + user id + "\\n" + email with the identity secret.'
        )
    return address, True


@bp.post("/widget/<widget_key>/identity", provide_automatic_options=False)
def widget_identity(widget_key: str) -> ResponseReturnValue:
    """Keep the keyed hash of the address the host signed for an end user, so that their
    help-desk tickets find them; Tidings never stores the address.

    The address comes here in a POST body, once per tab (the widget remembers in the tab's
    sessionStorage that it sent it), so that it never shows up in a URL, where access logs
    and proxies would record it. Sending the same address again writes nothing.

    A product that does not verify identity answers 204 and stores nothing, whatever the
    address and its hash: there anyone may send any user id, so a key kept for an id would
    count the person's help-desk tickets towards whoever claimed that id. The widget has
    nothing to do differently, so it is not told. Like reads, this sends no mail and writes
    at most one row, so it is not rate-limited.
    """
    body = _json_body()
    now = utcnow()
    with _widget_connection() as connection:
        catalogue, state, user_id = _identified(connection, widget_key, body)
        if not catalogue.require_identity:
            return Response(status=204)
        address, signed = _address(catalogue, user_id, body)
        if not signed:
            raise ValidationFailed(
                {"email_hash": "Sign the address with an email_hash computed on your server."}
            )
        key = tickets.email_key(current_app.config["SECRET_KEY"], address)
        if key is None:
            raise ValidationFailed({"email": "This is not an email address."})
        sighting = reads.Sighting(user_id, email_key=key)
        if reads.needs_writing(sighting, state, now):
            with _writing(connection, catalogue, user_id):
                reads.see(connection, catalogue.product_id, sighting, state, now)
    return Response(status=204)


@bp.get("/widget/<widget_key>/subscription", provide_automatic_options=False)
def widget_subscription(widget_key: str) -> ResponseReturnValue:
    """Whether the widget user's address gets release notes by email.

    Only an address the host signed is looked up; any other is answered "not subscribed",
    so the widget tells nobody whether someone else's address is on the list, nor how.
    """
    with _widget_connection() as connection:
        catalogue, _, user_id = _identified(connection, widget_key, request.args)
    address, signed = _address(catalogue, user_id, request.args)
    email = subscriptions.normalized_address(address)
    subscriber = subscriptions.find(db.session(), catalogue.product_id, email) if signed else None
    subscribed = subscriber is not None and subscriber.status is SubscriberStatus.CONFIRMED
    return {"email": email, "status": "confirmed" if subscribed else None}


def _address_key() -> str:
    return public_subscriptions.address_key(str(_json_body().get("email", "")))


@bp.post("/widget/<widget_key>/subscription", provide_automatic_options=False)
@limiter.limit(public_subscriptions.ip_limit)
@limiter.limit(public_subscriptions.address_limit, key_func=_address_key)
def widget_subscribe(widget_key: str) -> ResponseReturnValue:
    """Subscribe the widget user's address to release notes by email.

    An address the host signed is subscribed with this one click and linked to the user,
    unless it unsubscribed or bounced. Any other address, and that one, is sent a
    confirmation link, as from the public page, and gets no mail until it is followed.
    """
    body = _json_body()
    now = utcnow()
    with _widget_connection() as connection:
        catalogue, state, user_id = _identified(connection, widget_key, body)
        address, signed = _address(catalogue, user_id, body)
        # The language the widget last asked for, checked only against LOCALE_PATTERN when
        # stored: one that is no language (zz, tlh) leaves the subscriber's to the page,
        # rather than refusing a request that named none.
        stored = state.locale if state else None
        locale = stored if stored and languages.is_valid(stored) else None
        preferences = subscriptions.parse_preferences(body.get("frequency"), (), locale)
        end_user_id = None
        if signed:
            with _writing(connection, catalogue, user_id):
                # Only where identity is verified does an address vouch for the user id
                # (see widget_identity).
                key = (
                    tickets.email_key(current_app.config["SECRET_KEY"], address)
                    if catalogue.require_identity
                    else None
                )
                sighting = reads.Sighting(user_id, email_key=key)
                end_user_id = reads.see(connection, catalogue.product_id, sighting, state, now).id
    product = db.session.get_one(Product, catalogue.product_id)
    if end_user_id is not None:
        subscriber = subscriptions.subscribe_end_user(
            db.session(), product, end_user_id, address, preferences, now=now
        )
    else:
        subscriber = subscriptions.request_subscription(
            db.session(), product, address, preferences, now=now
        )
    jobs.wake()
    if signed and subscriber.status is SubscriberStatus.CONFIRMED:
        return {"email": subscriber.email, "status": "confirmed"}
    return {"email": subscriber.email, "status": "pending"}, 202


@bp.get("/widget/<widget_key>/events", provide_automatic_options=False)
def widget_events(widget_key: str) -> ResponseReturnValue:
    """Event streams are the live process's (:mod:`app.live`): a widget whose stream
    reaches this app (no live process, or no proxy route to it) is told so in JSON, with
    its origin's CORS headers, and polls."""
    with _widget_connection() as connection:
        load_catalogue(connection, widget_key, None)
    error = "Live updates are served by the live process (flask live, LIVE_URL); poll meanwhile."
    return {"error": error}, 503


@bp.get("/widget/strings/<locale>.json", provide_automatic_options=False)
def widget_strings_json(locale: str) -> ResponseReturnValue:
    """The widget's wording in the interface language nearest ``locale``: the same for
    every product and user, so any origin may read it and any cache keep it."""
    try:
        tag = languages.interface_locale([languages.normalise(locale)])
    except languages.BadTag as exc:
        raise ValidationFailed({"locale": str(exc)}) from None
    worded: dict[str, tuple[bytes, str]] = current_app.extensions.setdefault(WORDING_KEY, {})
    if tag not in worded:
        body = orjson.dumps(widget_strings.wording(tag))
        worded[tag] = body, hashlib.blake2b(body, digest_size=12).hexdigest()
    body, etag = worded[tag]
    response = Response(body, mimetype="application/json")
    response.set_etag(etag)
    response.cache_control.public = True
    response.cache_control.max_age = WORDING_MAX_AGE
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response.make_conditional(request)


@bp.route(
    "/widget/<widget_key>/<any(notes, reads, reactions, subscription, identity, "
    "acknowledgements, help):_resource>",
    methods=["OPTIONS"],
)
@bp.route("/widget/<widget_key>/help/<_token>", methods=["OPTIONS"])
def widget_preflight(widget_key: str, **_resource: str) -> ResponseReturnValue:
    """Answer a browser's CORS preflight for an allowed origin."""
    with _widget_connection() as connection:
        load_catalogue(connection, widget_key, None)
    return Response(status=204)


@bp.url_value_preprocessor
def refuse_unnameable(endpoint: str | None, values: dict[str, Any] | None) -> None:
    """NotFound for a widget URL whose key or help token can name nothing: a key that is
    not storable text (a NUL, which PostgreSQL refuses in a query) or a token not of the
    form help hands out. Checked here once for every widget route, so none passes such a
    value to the database."""
    if not endpoint or not endpoint.startswith("api.widget") or not values:
        return
    key = values.get("widget_key")
    if key is not None and not reads.is_storable(key):
        raise NotFound(UNKNOWN_KEY)
    token = values.get("token", values.get("_token"))
    if token is not None and not HELP_TOKEN.fullmatch(token):
        raise NotFound(help.NO_SUCH_HELP)


@bp.before_request
def no_origin_yet() -> None:
    # Set by load_catalogue once the product's allowed origins are known.
    g.widget_origin = None


@bp.after_request
def cors(response: Response) -> Response:
    origin = g.get("widget_origin")
    response.vary.add("Origin")
    if request.endpoint and request.endpoint.startswith("api.widget"):
        # Unless the view said how long its answer keeps (the wording does).
        response.headers.setdefault("Cache-Control", "private, no-cache")
    if origin is not None:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Methods"] = "GET, POST"
        response.headers["Access-Control-Allow-Headers"] = "Content-Type"
        response.headers["Access-Control-Expose-Headers"] = "ETag"
        response.headers["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE
    return response


def script() -> ResponseReturnValue:
    """The embeddable widget script, cached for a few minutes by browsers and CDNs."""
    response = send_from_directory(
        current_app.static_folder or "static", "widget/widget.js", max_age=300
    )
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response
