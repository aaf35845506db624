"""The widget's answers kept in Redis: an unchanged poll is answered 304 without the
database, and nothing an end user or a team does is hidden behind a kept answer.

On a real redis-server (``TIDINGS_TEST_REDIS_URL``, which ``make test`` sets), on SQLite
and PostgreSQL. Each test has a Redis database of its own, emptied first.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import timedelta

import pytest
import redis
from flask import Flask, current_app
from flask.testing import FlaskClient
from sqlalchemy import Engine, event, select
from sqlalchemy.orm import Session

from announcements import agent_sends, services, state_cache
from announcements.models import EndUser, Subscriber, SubscriberStatus, utcnow
from announcements.services import Intent, NoteInput
from app.database import widget_engine
from app.extensions import db
from app.mail import tokens
from app.mail.tokens import Purpose
from tests.factories import make_end_user, make_note, make_product
from tests.redis_server import RedisServer
from tests.test_widget_api import Widget

REDIS_URL = os.environ.get("TIDINGS_TEST_REDIS_URL")
pytestmark = pytest.mark.skipif(
    not REDIS_URL, reason="Redis is not configured: run the suite with `make test`"
)


@pytest.fixture
def session(cached: Flask) -> Session:
    return db.session()


@pytest.fixture
def client(cached: Flask) -> FlaskClient:
    return cached.test_client()


class Spy:
    """Counts the connections the app takes from its pools: no query without one."""

    def __init__(self, engines: list[Engine]) -> None:
        self.checkouts = 0
        for engine in engines:
            event.listen(engine, "checkout", self._count)

    def _count(self, *_: object) -> None:
        self.checkouts += 1


@pytest.fixture
def spy(cached: Flask) -> Spy:
    return Spy([db.engine, widget_engine()])


def polled(widget: Widget, etag: str | None, **params: object):
    headers = {"If-None-Match": etag} if etag else {}
    return widget.notes(headers=headers, **params)


def primed(widget: Widget, **params: object) -> str:
    """Two polls: the first keeps the answer (and reads the catalogue into the process),
    the second keeps it again if the first wrote; the ETag the client now holds."""
    first = polled(widget, None, **params)
    assert first.status_code == 200
    second = polled(widget, first.headers["ETag"].strip('"'), **params)
    assert second.status_code == 304
    return second.headers["ETag"].strip('"')


def test_an_unchanged_poll_is_answered_304_without_the_database(session, client, spy) -> None:
    product = make_product(session)
    make_note(session, product)
    widget = Widget(client, product)
    etag = primed(widget)

    spy.checkouts = 0
    answer = polled(widget, etag)
    assert answer.status_code == 304
    assert answer.headers["ETag"] == f'"{etag}"'
    assert spy.checkouts == 0
    # Another ETag, or none: the answer, from the database.
    assert polled(widget, "something-else").status_code == 200
    assert polled(widget, None).status_code == 200
    assert spy.checkouts == 2


def test_a_kept_answer_still_checks_the_hash_and_the_origin(
    session, client, redis_url: str
) -> None:
    product = make_product(session)
    make_note(session, product)
    widget = Widget(client, product)
    etag = primed(widget)

    forged = client.get(
        f"{widget.base}/notes",
        query_string={"user_id": "user-1", "user_hash": "0" * 64},
        headers={"If-None-Match": etag},
    )
    assert forged.status_code == 401
    elsewhere = widget.notes(headers={"If-None-Match": etag, "Origin": "https://evil.example"})
    assert elsewhere.status_code == 403
    # Refused before Redis is asked, whose lookup writes: strangers with made-up hashes
    # leave no key behind.
    kept = redis.Redis.from_url(redis_url)
    keys = set(kept.scan_iter("tidings:state:*"))
    for number in range(5):
        stranger = {"user_id": f"stranger-{number}", "user_hash": "0" * 64}
        assert client.get(f"{widget.base}/notes", query_string=stranger).status_code == 401
    assert set(kept.scan_iter("tidings:state:*")) == keys


def test_no_value_passes_for_two_parameters() -> None:
    """An anonymous reader cannot store an answer under the digest of another's query."""
    two = [("attr.plan", "free"), ("version", "2.10.0")]
    one = [("attr.plan", "free\nversion=2.10.0")]
    assert state_cache.query_digest(two) != state_cache.query_digest(one)


def test_each_query_keeps_its_own_answer(session, client, spy) -> None:
    product = make_product(session)
    make_note(session, product, version="1.0.0")
    make_note(session, product, version="2.0.0")
    widget = Widget(client, product)
    older = primed(widget, version="1.0.0")
    # The same user on another version: a write (the version moved), then its own answer.
    newer = polled(widget, older, version="2.0.0")
    assert newer.status_code == 200
    assert len(newer.get_json()["notes"]) == 2
    # Back on 1.0.0 the stored version moves again: never answered from the old entry.
    spy.checkouts = 0
    again = polled(widget, older, version="1.0.0")
    assert spy.checkouts > 0
    assert session.scalars(select(EndUser.app_version)).one() == "1.0.0"
    assert again.status_code == 304


def _read(widget: Widget, note_id: int) -> None:
    assert widget.read([note_id]).status_code == 204


def _react(widget: Widget, note_id: int) -> None:
    body = {**widget.identity(), "note_id": note_id, "reaction": "👍"}
    assert widget.client.post(f"{widget.base}/reactions", json=body).status_code == 200


def _acknowledge(widget: Widget, note_id: int) -> None:
    body = {**widget.identity(), "note_id": note_id}
    assert widget.client.post(f"{widget.base}/acknowledgements", json=body).status_code == 204


@pytest.mark.parametrize("write", [_read, _react, _acknowledge])
def test_every_widget_write_shows_in_the_next_poll(session, client, spy, write) -> None:
    product = make_product(session)
    note = make_note(session, product, requires_acknowledgement=True)
    widget = Widget(client, product)
    etag = primed(widget)

    write(widget, note.id)
    answer = polled(widget, etag)
    assert answer.status_code == 200
    [shown] = answer.get_json()["notes"]
    assert shown["read"] is True
    assert answer.get_json()["unread_count"] == 0


def test_an_agents_send_shows_in_the_next_poll(session, client) -> None:
    product = make_product(session)
    note = make_note(session, product)
    user = make_end_user(session, product, "user-1", first_seen_at=utcnow() - timedelta(days=2))
    widget = Widget(client, product)
    _read(widget, note.id)
    etag = primed(widget)

    agent_sends.send(
        session, product, user, note.id, agent="Dana", sent_by=None, via="console", now=utcnow()
    )
    session.commit()
    answer = polled(widget, etag)
    assert answer.status_code == 200
    assert answer.get_json()["notes"][0]["read"] is False


def test_a_read_from_a_mails_link_shows_in_the_next_poll(session, client) -> None:
    product = make_product(session)
    note = make_note(session, product)
    user = make_end_user(session, product, "user-1", first_seen_at=utcnow() - timedelta(days=2))
    subscriber = Subscriber(
        product_id=product.id,
        email="user-1@example.com",
        status=SubscriberStatus.CONFIRMED,
        categories=[],
        end_user_id=user.id,
    )
    session.add(subscriber)
    session.commit()
    widget = Widget(client, product)
    etag = primed(widget)

    # The link writes its read in Core, past the session's hooks.
    link = client.get(
        f"/subscriptions/read/{tokens.for_subscriber(Purpose.READ, subscriber, n=note.id)}"
    )
    assert link.status_code == 302
    answer = polled(widget, etag)
    assert answer.status_code == 200
    assert answer.get_json()["notes"][0]["read"] is True


def test_a_publish_shows_in_the_next_poll(session, client) -> None:
    product = make_product(session)
    make_note(session, product, version="1.0.0")
    widget = Widget(client, product)
    etag = primed(widget)

    make_note(session, product, version="1.1.0", title="Brand new")
    answer = polled(widget, etag)
    assert answer.status_code == 200
    assert answer.get_json()["notes"][0]["title"] == "Brand new"


def test_a_publish_not_announced_is_seen_once_any_request_reads_the_database(
    session, client
) -> None:
    product = make_product(session)
    make_note(session, product)
    widget, other = Widget(client, product), Widget(client, product, "user-2")
    etag = primed(widget)
    before = product.catalogue_stamp

    make_note(session, product, version="1.1.0", title="Brand new")
    # As if the announcement after the commit had failed: Redis still holds the old stamp.
    stamps = redis.Redis.from_url(current_app.config["REDIS_URL"])
    stamps.zadd(state_cache.STAMPS_KEY, {str(product.id): before})
    polled(other, None)  # reads the stamp from the database, and mends Redis's
    answer = polled(widget, etag)
    assert answer.status_code == 200
    assert answer.get_json()["notes"][0]["title"] == "Brand new"


def test_a_note_going_live_ends_the_kept_answer(session, client) -> None:
    product = make_product(session)
    make_note(session, product, version="1.0.0")
    now = utcnow()
    services.create_note(
        session,
        product,
        NoteInput(version="1.1.0", title="Scheduled", category="Added", body_md="Soon."),
        intent=Intent.SCHEDULE,
        publish_at=now + timedelta(seconds=2),
        by=None,
        now=now,
    )
    session.commit()
    widget = Widget(client, product)
    etag = primed(widget)

    time.sleep(max(0.0, (now + timedelta(seconds=2.1) - utcnow()).total_seconds()))
    answer = polled(widget, etag)
    assert answer.status_code == 200
    assert answer.get_json()["notes"][0]["title"] == "Scheduled"


def test_the_hourly_sighting_is_written_whatever_is_kept(session, client) -> None:
    product = make_product(session)
    make_note(session, product)
    seen = utcnow() - timedelta(minutes=60) + timedelta(seconds=2)
    make_end_user(session, product, "user-1", last_seen_at=seen)
    widget = Widget(client, product)
    etag = polled(widget, None).headers["ETag"].strip('"')
    assert polled(widget, etag).status_code == 304

    time.sleep(max(0.0, (seen + timedelta(minutes=60, seconds=0.1) - utcnow()).total_seconds()))
    assert polled(widget, etag).status_code == 304  # the same answer, from the database
    session.expire_all()
    assert session.scalars(select(EndUser.last_seen_at)).one() > seen + timedelta(minutes=59)


def test_an_answer_read_before_a_write_is_not_kept(cached: Flask, redis_url: str) -> None:
    cache = state_cache.StateCache.from_url(redis_url)
    found = cache.lookup(1, "ana", "q")
    assert found is not None and found.entry is None
    cache.forget(1, ["ana"])  # a write committed after the read the token was taken for
    cache.keep(1, "ana", "q", found.token, state_cache.Entry("e", 1, time.time() + 60))
    again = cache.lookup(1, "ana", "q")
    assert again is not None and again.entry is None
    cache.keep(1, "ana", "q", again.token, state_cache.Entry("e", 1, time.time() + 60))
    kept = cache.lookup(1, "ana", "q")
    assert kept is not None and kept.entry == state_cache.Entry("e", 1, kept.entry.until)


def test_with_redis_unreachable_the_database_answers(
    app: Flask, app_factory: Callable[..., Flask], caplog
) -> None:
    unreachable = app_factory(REDIS_URL="redis://127.0.0.1:1/0")
    with unreachable.app_context():
        session = db.session()
        product = make_product(session)
        note = make_note(session, product)
        widget = Widget(unreachable.test_client(), product)
        first = polled(widget, None)
        assert first.status_code == 200
        assert polled(widget, first.headers["ETag"].strip('"')).status_code == 304
        _read(widget, note.id)
        assert polled(widget, first.headers["ETag"].strip('"')).status_code == 200
        db.session.remove()
    assert "answered from the database" in caplog.text


def test_a_delete_redis_missed_is_made_when_it_answers_again(tmp_path) -> None:
    """Redis unreachable when a write commits: the delete waits in the process and is
    made at its next contact, before anything is read."""
    server = RedisServer(tmp_path)
    cache = state_cache.StateCache.from_url(server.url)
    cache.forget(1, ["ana"])  # nothing listens yet: kept to be made later
    server.start()
    try:
        client = redis.Redis.from_url(server.url)
        # An answer kept for Ana by another process before the write, which missed it.
        client.hset(state_cache.user_key(1, "ana"), mapping={"v": "t", "q": "1 9e12 e"})
        time.sleep(state_cache.RETRY_SECONDS)
        assert cache.lookup(1, "ana", "q").entry is None
    finally:
        server.stop()
