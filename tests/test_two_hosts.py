"""Two hosts behave as one: two app instances (gunicorn, each its own process and port),
the live process and two `flask worker`s, on one PostgreSQL and one Redis.

A note published through A is served by B's widget, feed and page at once (no stale
cache in B's process) and reaches an event stream opened at the address B's widget
answer names; each subscriber gets one e-mail of each note and each webhook one call,
with both workers sending; rate limits count across both instances; and a worker
killed mid-send loses nothing.

What the design promises for that kill (announcements/outbox.py, app/mail/delivery.py):
a worker records each message as sent in its own commit after the server accepted it,
and hands the server the next only once the last is recorded, so a killed worker leaves
at most the one message in flight unrecorded. The mail server may already have that
one, so it is sent again: at most that message twice, every other exactly once. The
killed worker's other claims go back to the queue when a worker on the same host finds
its process gone: in the sweep a restarted worker asks for as it starts, or in any
worker's minute; on another host, when the claim's lease ends. The test
kills a worker while the server holds its answer to a message it has already taken:
the case where the promise allows the double, and the test requires that message,
exactly that one, twice.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
import redis
from flask import Flask
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from announcements import apikeys, webhooks
from announcements.models import (
    Base,
    Frequency,
    OutboxMessage,
    OutboxStatus,
    Product,
    Subscriber,
    SubscriberStatus,
    WebhookDelivery,
    utcnow,
)
from app import database
from app.api.widget import expected_hash
from app.extensions import db
from tests.conftest import (
    POSTGRES_URL,
    create_postgres_database,
    drop_postgres_database,
    make_app,
)
from tests.factories import make_member, make_product
from tests.hosts import Cluster, HoldingSmtpServer, Process, client_ports
from tests.receiver import Receiver
from tests.worker import wait_for

REDIS_URL = os.environ.get("TIDINGS_TEST_REDIS_URL")
pytestmark = pytest.mark.skipif(
    not (POSTGRES_URL and REDIS_URL),
    reason="Two hosts share PostgreSQL and Redis: run with `make test`, or under "
    "scripts/with-redis.sh scripts/with-postgres.sh",
)

# A Redis database of its own on the worker's server: the files before it there empty theirs
# and use the same queue name.
REDIS_DATABASE = 11
SUBSCRIBERS = 24
# Small batches, so the two workers claim from one outbox side by side.
MAIL_BATCH = 3
SMTP_DELAY = 0.02  # seconds the server takes to answer each message
API_LIMIT = 10  # management-API calls a key may make a minute, on all hosts together
LIVE_WITHIN = 2.0  # seconds from a publish to the event on an open stream
# Seconds a step of the mail may take at most, a worker's restart included: the whole
# kill test took 8 s alone and 30 s with the two cores shared by other test runs.
SEND_WITHIN = 60.0


@dataclass
class Answer:
    status: int
    headers: Message
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()


def call(
    method: str, url: str, *, headers: dict[str, str] | None = None, body: object = None
) -> Answer:
    """One HTTP request; any status is an answer."""
    data = None if body is None else json.dumps(body).encode()
    sent = {"Content-Type": "application/json"} if data else {}
    request = urllib.request.Request(  # noqa: S310 - the test's own loopback hosts
        url, data, {**sent, **(headers or {})}, method=method
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return Answer(response.status, response.headers, response.read())
    except urllib.error.HTTPError as error:
        with error:
            return Answer(error.code, error.headers, error.read())


class EventStream:
    """An open server-sent event stream, read on a thread of its own: each event with
    the moment it came."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.connection = http.client.HTTPConnection(parts.netloc, timeout=30)
        self.connection.connect()
        self.socket = self.connection.sock
        self.connection.request("GET", urlunsplit(("", "", parts.path, parts.query, "")))
        self.response = self.connection.getresponse()
        self.events: list[tuple[float, dict[str, str]]] = []
        self.reader = threading.Thread(target=self._read, name="two-hosts-stream", daemon=True)
        self.reader.start()

    def _read(self) -> None:
        fields: dict[str, str] = {}
        try:
            for raw in self.response:
                line = raw.decode().rstrip("\r\n")
                if line.startswith(":"):  # a comment: the heartbeat
                    continue
                if line:
                    name, _, value = line.partition(":")
                    fields[name] = value.removeprefix(" ")
                elif "event" in fields:
                    self.events.append((time.monotonic(), fields))
                    fields = {}
                else:
                    fields = {}  # retry: alone
        except (OSError, ValueError):  # closed by close(), or by the server
            return

    def first_at(self, stamp: int) -> float | None:
        """When the first event of the catalogue at ``stamp`` or later came, if one has;
        an event's id is "<stamp>.<the latest boundary passed>"."""
        matching = (
            at
            for at, fields in self.events
            if int(fields.get("id", "0").partition(".")[0] or 0) >= stamp
        )
        return next(matching, None)

    def close(self) -> None:
        if self.socket is not None:
            self.socket.shutdown(socket.SHUT_RDWR)
        self.reader.join(timeout=5)
        self.response.close()
        self.connection.close()


@dataclass
class TwoHosts:
    """The running hosts, the servers they call, and the product they serve."""

    cluster: Cluster
    a: Process
    b: Process
    live: Process
    workers: list[Process]
    smtp: HoldingSmtpServer
    hooks: list[Receiver]
    session: Session
    product_id: int
    slug: str
    widget_key: str
    identity_secret: str
    publish_key: str
    read_key: str
    published: list[int] = field(default_factory=list)

    def widget(self, host: Process, user_id: str) -> str:
        query = urlencode({"user_id": user_id, "user_hash": self.user_hash(user_id)})
        return f"{host.url}/api/v1/widget/{self.widget_key}/notes?{query}"

    def user_hash(self, user_id: str) -> str:
        return expected_hash(self.identity_secret, user_id)

    def publish(self, host: Process, title: str, **fields: object) -> tuple[int, float]:
        """Publish an important note through ``host``'s management API; its id, and the
        moment the answer came (the note committed)."""
        answer = call(
            "POST",
            f"{host.url}/api/v1/products/{self.slug}/notes",
            headers={"Authorization": f"Bearer {self.publish_key}"},
            body={
                "version": f"2.{len(self.published)}.0",
                "title": title,
                "category": "Added",
                "body_md": f"{title}, in **detail**.",
                "important": True,
                "publish": True,
                **fields,
            },
        )
        assert answer.status == 201, answer.text
        self.published.append(answer.json()["id"])
        return answer.json()["id"], time.monotonic()

    def stamp(self) -> int:
        self.session.rollback()  # a fresh snapshot
        return int(
            self.session.scalar(
                select(Product.catalogue_stamp).where(Product.id == self.product_id)
            )
            or 0
        )

    def messages(self, note_ids: list[int]) -> list[OutboxMessage]:
        self.session.rollback()
        return list(
            self.session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.note_id.in_(note_ids))
                .order_by(OutboxMessage.id)
            )
        )

    def waiting(self, note_ids: list[int]) -> set[int]:
        """The messages of these notes not yet recorded as sent."""
        return {row.id for row in self.messages(note_ids) if row.status is not OutboxStatus.SENT}

    def held_from(self, worker: Process) -> list[str]:
        """The messages the server has taken from ``worker`` and holds its answer to, by
        Message-ID."""
        answering = dict(self.smtp.recorder.answering)
        ports = client_ports(worker.popen.pid, self.smtp.port)
        return [answering[port] for port in ports if port in answering]

    def claims_of(self, worker: Process) -> set[int]:
        """The messages ``worker`` holds (its claimed_by names its pid)."""
        self.session.rollback()
        rows = self.session.execute(
            select(OutboxMessage.id, OutboxMessage.claimed_by).where(
                OutboxMessage.status == OutboxStatus.SENDING
            )
        ).all()
        pid = str(worker.popen.pid)
        return {row_id for row_id, name in rows if name and name.rsplit(":", 2)[1] == pid}

    def copies(self, note_ids: list[int]) -> Counter[str]:
        """How many times the server took each of these notes' messages, once all are
        recorded as sent: by the Message-ID each row was sent with, the same each time."""
        rows = {row.message_id: row.subscriber.email for row in self.messages(note_ids)}
        assert len(rows) == SUBSCRIBERS * len(note_ids), "one message per subscriber and note"
        taken: Counter[str] = Counter()
        for item in list(self.smtp.recorder.received):
            message_id = str(item.message["Message-ID"])
            if message_id in rows:
                assert item.recipients == [rows[message_id]], "sent to its own subscriber"
                taken[message_id] += 1
        assert taken.keys() == rows.keys(), "every message of these notes arrived"
        return taken

    def calls(self, note_ids: list[int]) -> list[Counter[int]]:
        """Each webhook's calls for these notes, counted by note."""
        return [
            Counter(
                note_id
                for note_id in (json.loads(call["body"])["note"]["id"] for call in receiver.calls)
                if note_id in note_ids
            )
            for receiver in self.hooks
        ]

    def deliveries_done(self, note_ids: list[int]) -> bool:
        self.session.rollback()
        statuses = self.session.scalars(
            select(WebhookDelivery.status).where(WebhookDelivery.note_id.in_(note_ids))
        ).all()
        return len(statuses) == len(self.hooks) * len(note_ids) and all(
            status is OutboxStatus.SENT for status in statuses
        )


def _redis_url() -> str:
    assert REDIS_URL
    return urlunsplit(urlsplit(REDIS_URL)._replace(path=f"/{REDIS_DATABASE}"))


def _seed(session: Session, hooks: list[Receiver]) -> dict[str, Any]:
    """A product with confirmed subscribers, a webhook to each receiver and two API keys:
    one to publish with, one for the rate-limit count."""
    now = utcnow()
    owner = make_member(session)
    product = make_product(session, owner=owner, name="Two Hosts", slug="two-hosts")
    session.add_all(
        Subscriber(
            product_id=product.id,
            email=f"reader{number}@example.com",
            status=SubscriberStatus.CONFIRMED,
            frequency=Frequency.EVERY,
            categories=[],
        )
        for number in range(SUBSCRIBERS)
    )
    session.commit()
    for receiver in hooks:
        webhooks.create(
            session,
            product,
            receiver.url,
            ["note.published"],
            "json",
            by=owner,
            now=now,
            allow_private=True,
        )
    _, publish = apikeys.create(
        session, product, "publish", ["notes:write", "notes:read"], by=owner, now=now
    )
    _, read = apikeys.create(session, product, "count", ["notes:read"], by=owner, now=now)
    return {
        "product_id": product.id,
        "slug": product.slug,
        "widget_key": product.widget_key,
        "identity_secret": product.identity_secret,
        "publish_key": publish,
        "read_key": read,
    }


@pytest.fixture(scope="module")
def two_hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoHosts]:
    folder = tmp_path_factory.mktemp("two-hosts")
    with contextlib.ExitStack() as cleanup:
        database_url = create_postgres_database("tidings_two_hosts")
        cleanup.callback(drop_postgres_database, database_url)
        engine = create_engine(database_url)
        Base.metadata.create_all(engine)
        engine.dispose()
        redis_url = _redis_url()
        shared = cleanup.enter_context(redis.Redis.from_url(redis_url))
        shared.flushdb()
        cleanup.callback(shared.flushdb)
        seeder: Flask = make_app(database_url, folder / "seed", REDIS_URL=redis_url)
        cleanup.callback(database.dispose, seeder)
        cleanup.enter_context(seeder.app_context())
        cleanup.callback(db.session.remove)
        smtp = cleanup.enter_context(HoldingSmtpServer(delay=SMTP_DELAY))
        hooks = [Receiver(), Receiver()]
        for receiver in hooks:
            cleanup.callback(receiver.close)
        cluster = Cluster(
            folder,
            database_url=database_url,
            REDIS_URL=redis_url,
            SMTP_URL=smtp.url,
            MAIL_RATE="0",
            MAIL_BATCH=str(MAIL_BATCH),
            WEBHOOK_ALLOW_PRIVATE="1",
            RATELIMIT_API=f"{API_LIMIT} per minute",
            # One job at a time in each worker, so that two wake-ups go to two workers.
            FLASK_WORKER_THREADS="1",
        )
        cleanup.callback(cluster.stop)
        live = cluster.live("live-b")
        # Widgets open their stream at LIVE_URL, wherever they got their notes.
        a = cluster.web("web-a", LIVE_URL=live.url)
        b = cluster.web("web-b", LIVE_URL=live.url)
        workers = [cluster.worker(f"worker-{n}", smtp.url) for n in (1, 2)]
        # The data goes in while they start: none of them needs it to start.
        seeded = _seed(db.session(), hooks)
        cluster.wait_ready(live, a, b, *workers)
        yield TwoHosts(cluster, a, b, live, workers, smtp, hooks, db.session(), **seeded)


def test_a_note_published_through_a_is_served_by_b_at_once(two_hosts: TwoHosts) -> None:
    hosts = two_hosts
    widget = hosts.widget(hosts.b, "reader-on-b")
    feed = f"{hosts.b.url}/changelog/{hosts.slug}/feed.atom"
    page = f"{hosts.b.url}/changelog/{hosts.slug}"
    # B has served the product before, so whatever it keeps is warm.
    before = call("GET", widget)
    assert before.status == 200, before.text
    feed_before = call("GET", feed)
    assert feed_before.status == 200
    assert call("GET", page).status == 200
    # The stream, opened where B's widget answer says with the widget's identity added to
    # its query, as the widget opens it.
    events = urlsplit(before.json()["events"])
    assert f"{events.scheme}://{events.netloc}" == hosts.live.url
    query = urlencode([*parse_qsl(events.query), *parse_qsl(urlsplit(widget).query)])
    stream = EventStream(urlunsplit(events._replace(query=query)))
    try:
        assert stream.response.status == 200
        assert stream.response.getheader("Content-Type", "").startswith("text/event-stream")
        title = "Reports export to PDF"
        _, published_at = hosts.publish(hosts.a, title, email_subscribers=False)
        published = hosts.stamp()

        after = call("GET", widget, headers={"If-None-Match": before.headers["ETag"]})
        assert after.status == 200, "B's widget answers with the new note, not 304"
        assert after.json()["notes"][0]["title"] == title
        assert after.json()["unread_count"] == before.json()["unread_count"] + 1
        feed_after = call("GET", feed, headers={"If-None-Match": feed_before.headers["ETag"]})
        assert feed_after.status == 200, "B's feed is not the one it served before"
        assert title in feed_after.text
        assert title in call("GET", page).text

        wait_for(lambda: stream.first_at(published) is not None, 10, "the event on B's stream")
        arrived = stream.first_at(published)
        assert arrived is not None and arrived - published_at <= LIVE_WITHIN
    finally:
        stream.close()


def test_each_subscriber_gets_one_email_and_each_webhook_one_call(two_hosts: TwoHosts) -> None:
    hosts = two_hosts
    # Each publish wakes a worker, and each runs one job at a time: while the server holds
    # the first worker's message, the second wake-up goes to the other. Both sending at
    # once, they claim from one outbox side by side.
    hosts.smtp.recorder.holding = True
    try:
        notes = [
            hosts.publish(hosts.a, "Dark mode")[0],
            hosts.publish(hosts.b, "Faster search")[0],
        ]
        wait_for(
            lambda: all(hosts.held_from(worker) for worker in hosts.workers),
            SEND_WITHIN,
            "both workers to have a message with the server",
        )
    finally:
        hosts.smtp.recorder.holding = False
    wait_for(lambda: not hosts.waiting(notes), SEND_WITHIN, "every message sent")
    copies = hosts.copies(notes)
    assert [key for key, count in copies.items() if count != 1] == []
    wait_for(lambda: hosts.deliveries_done(notes), SEND_WITHIN, "every webhook called")
    assert hosts.calls(notes) == [Counter(dict.fromkeys(notes, 1))] * len(hosts.hooks)


def test_rate_limits_count_across_both_hosts(two_hosts: TwoHosts) -> None:
    hosts = two_hosts
    headers = {"Authorization": f"Bearer {hosts.read_key}"}
    path = f"/api/v1/products/{hosts.slug}/notes"
    alternate = [hosts.a, hosts.b] * (API_LIMIT // 2)
    statuses = [call("GET", host.url + path, headers=headers).status for host in alternate]
    assert statuses == [200] * API_LIMIT
    # Each host has seen half the limit; together they have seen all of it.
    spent = [call("GET", host.url + path, headers=headers).status for host in (hosts.a, hosts.b)]
    assert spent == [429, 429]


def test_a_worker_killed_mid_send_loses_nothing(two_hosts: TwoHosts) -> None:
    hosts = two_hosts
    doomed = hosts.workers[0]
    recorder = hosts.smtp.recorder
    recorder.holding = True
    try:
        notes = [
            hosts.publish(hosts.a, "Calendar sync")[0],
            hosts.publish(hosts.b, "Audit log")[0],
        ]
        wait_for(lambda: bool(hosts.held_from(doomed)), SEND_WITHIN, "a message in flight")
        [in_flight] = hosts.held_from(doomed)
        held = hosts.claims_of(doomed)  # its batch, still with it while the answer waits
        hosts.cluster.kill(doomed)
    finally:
        recorder.holding = False
    # The other worker goes on: all it leaves is what the killed one held.
    wait_for(lambda: hosts.waiting(notes) <= held, SEND_WITHIN, "the survivor to send the rest")
    # Restarted, as systemd does (deploy/systemd/tidings-worker.service), the worker asks
    # for a sweep as it starts; whichever worker runs it puts back what the dead process
    # held, and those messages go out.
    restarted = hosts.cluster.worker(f"{doomed.name}-restarted", hosts.smtp.url)
    hosts.workers[0] = restarted
    wait_for(lambda: not hosts.waiting(notes), SEND_WITHIN, "the killed worker's claims sent")

    copies = hosts.copies(notes)
    assert [key for key, count in copies.items() if count != 1] == [in_flight]
    assert copies[in_flight] == 2, "the one in flight, and only it, twice"
    in_flight_row = next(row for row in hosts.messages(notes) if row.message_id == in_flight)
    assert in_flight_row.id in held
    wait_for(lambda: hosts.deliveries_done(notes), SEND_WITHIN, "every webhook called")
    assert hosts.calls(notes) == [Counter(dict.fromkeys(notes, 1))] * len(hosts.hooks)
