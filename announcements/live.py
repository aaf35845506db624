"""The catalogue-changed signal, both ends: announcing that a product's catalogue moved,
and, in the live process, learning it and waking that product's open event streams.

What changed is what the session already tracks: every change end users could see moves
the product's ``catalogue_stamp`` (see "The catalogue stamp" in :mod:`announcements.models`),
and the session keeps the products a transaction stamped until it ends.

Announcing (every process that writes: the web, the worker, the CLI; :class:`Publisher`):

- With Redis, after the commit: ``ZADD tidings:stamps GT <stamp> <product_id>``, the
  newest stamp of each product, never moved back by commits that finish out of order (the
  shared cache of widget answers reads it), then ``PUBLISH tidings:catalogue <product_id>``.
  Redis down never fails the commit: the failure is logged, the stamps are tried again
  with the next announcement, and widgets still poll.
- Without Redis, on PostgreSQL: ``pg_notify('tidings_catalogue', '<product_id>')`` inside
  the transaction, which PostgreSQL delivers when it commits and drops if it rolls back.
- On SQLite alone nothing is announced: the live process looks at the stamps itself.

Listening (the live process; :class:`Listener`): one listener per process, on Redis
(SUBSCRIBE), else on PostgreSQL (LISTEN, on a connection of its own), else a check of the
stamps of the products it has streams for, one query a second. When Redis or PostgreSQL
cannot be listened to, it checks stamps until it can again, and after every (re)connection
it checks once, for what it missed meanwhile. Time moves no stamp, so the listener also
wakes a product's streams when its catalogue's next boundary (a scheduled note going live,
a note expiring) passes.

A stream never queues events: each product has a generation counter and a wake-up, and a
stream that wakes compares what it last sent with the product's state now, so a slow
reader gets the latest state once. The module uses the standard library's threads and
events: under gevent's monkey-patching (the live process) they are greenlets and gevent
events, elsewhere (tests, the web) real threads.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime

import psycopg
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import Engine, event, func, select
from sqlalchemy.orm import Session

from announcements.catalogue import Catalogue, CatalogueCache
from announcements.models import CHANGED_PRODUCTS, Product, utcnow

log = logging.getLogger(__name__)

# The names other processes rely on: the shared cache reads STAMPS_KEY.
STAMPS_KEY = "tidings:stamps"
CHANNEL = "tidings:catalogue"
PG_CHANNEL = "tidings_catalogue"
# How often the live process compares stamps when nothing announces changes to it.
STAMP_CHECK_SECONDS = 1.0
# How long a lost Redis or PostgreSQL listener waits before it tries again.
RELISTEN_SECONDS = 2.0
# An announcement waits at most this long for Redis, so a commit never hangs on it.
REDIS_TIMEOUT_SECONDS = 1.0
# The stamps a transaction moved, read inside it just before it commits.
_ANNOUNCE = "tidings.announce_stamps"
# redis-py retries a failed command after reconnecting: an announcement would make the
# commit wait, and a subscription would come back silently, with what was published
# meanwhile lost. Failing at once lets each say so and do what it does without Redis.
_NO_RETRY = Retry(NoBackoff(), 0)


# Announcing -----------------------------------------------------------------------------


class Publisher:
    """Announces the products whose catalogue a commit changed, on Redis when it is
    configured, else with PostgreSQL's NOTIFY; on SQLite alone there is none."""

    def __init__(self, redis_url: str | None) -> None:
        self._redis = (
            None
            if redis_url is None
            else redis.Redis.from_url(
                redis_url,
                socket_timeout=REDIS_TIMEOUT_SECONDS,
                socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
                retry=_NO_RETRY,
            )
        )
        # Stamps not announced because Redis was down, tried again with the next ones.
        self._unsent: dict[int, int] = {}
        self._lock = threading.Lock()

    @property
    def uses_redis(self) -> bool:
        return self._redis is not None

    def announce(self, stamps: Mapping[int, int]) -> None:
        """Tell Redis the products' new stamps, then that they changed; a failure is logged
        and the stamps kept for the next call, never raised."""
        if self._redis is None:
            return
        with self._lock:
            due = dict(self._unsent)
            self._unsent.clear()
        for product_id, stamp in stamps.items():
            due[product_id] = max(stamp, due.get(product_id, stamp))
        pipe = self._redis.pipeline(transaction=False)
        for product_id, stamp in due.items():
            pipe.zadd(STAMPS_KEY, {str(product_id): stamp}, gt=True)
        for product_id in due:
            pipe.publish(CHANNEL, str(product_id))
        try:
            pipe.execute()
        except redis.RedisError as error:
            with self._lock:
                for product_id, stamp in due.items():
                    self._unsent[product_id] = max(stamp, self._unsent.get(product_id, stamp))
            log.warning(
                "Could not announce changes of products %s on Redis (%s); open widgets "
                "will see them when they next poll.",
                sorted(due),
                error,
            )


_publishers: weakref.WeakKeyDictionary[Engine, Publisher] = weakref.WeakKeyDictionary()


def publish_commits(engine: Engine, redis_url: str | None) -> None:
    """Announce the catalogue changes committed through ``engine`` (one call per engine;
    nothing to announce on SQLite without Redis)."""
    if redis_url is None and engine.dialect.name == "sqlite":
        _publishers.pop(engine, None)
        return
    _publishers[engine] = Publisher(redis_url)


@event.listens_for(Session, "before_commit")
def _read_stamps(session: Session) -> None:
    """Read the stamps this transaction moved, and on PostgreSQL without Redis NOTIFY them,
    while the transaction still holds the products' rows.

    The commit flushes only after this hook, so it flushes first: the last flush may be
    what moves a stamp. A savepoint's commit comes here too; the outermost one reads again.
    """
    session.info.pop(_ANNOUNCE, None)
    if not _publishers:
        return  # nothing announces in this process (SQLite alone)
    session.flush()
    changed: set[int] | None = session.info.get(CHANGED_PRODUCTS)
    if not changed:
        return
    publisher = _publishers.get(session.connection().engine)
    if publisher is None:
        return
    rows = session.execute(
        select(Product.id, Product.catalogue_stamp).where(Product.id.in_(changed))
    ).all()
    stamps = {product_id: stamp for product_id, stamp in rows}
    if publisher.uses_redis:
        session.info[_ANNOUNCE] = (publisher, stamps)
        return
    for product_id in stamps:
        session.execute(select(func.pg_notify(PG_CHANNEL, str(product_id))))


@event.listens_for(Session, "after_commit")
def _announce(session: Session) -> None:
    """Announce on Redis what the transaction that just committed changed; not after a
    savepoint, whose changes are not committed yet."""
    if session.in_nested_transaction():
        return
    due = session.info.pop(_ANNOUNCE, None)
    if due is not None:
        publisher, stamps = due
        publisher.announce(stamps)


# Listening ------------------------------------------------------------------------------


def event_id(catalogue: Catalogue, now: datetime) -> str:
    """What a stream calls the state of a catalogue at ``now``: its stamp and the epoch
    seconds of the latest boundary passed (0 before the first), so time moving a note in
    or out of view changes it as an edit does."""
    passed = catalogue.epoch(now)
    latest = int(catalogue.boundaries[passed - 1].timestamp()) if passed else 0
    return f"{catalogue.stamp}.{latest}"


@dataclass
class _Watched:
    """A product with open streams: its newest catalogue and what wakes its streams."""

    widget_key: str
    catalogue: Catalogue
    epoch: int
    streams: int = 0
    generation: int = 0
    woken: threading.Event = field(default_factory=threading.Event)


class Listener:
    """Learns which catalogues changed and wakes their streams: one per live process.

    ``engine`` is the one it reads stamps and catalogues with, which the live process
    gives it for itself alone (see :mod:`app.live`), ``cache`` the process's catalogues;
    with ``redis_url`` it subscribes to Redis, else on PostgreSQL it listens with its own
    connection, else it checks stamps.
    """

    def __init__(self, engine: Engine, cache: CatalogueCache, redis_url: str | None) -> None:
        self._engine = engine
        self._cache = cache
        self._redis_url = redis_url
        self._watched: dict[int, _Watched] = {}
        self._product_ids: dict[str, int] = {}  # the watched products, by widget key
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        # Whether changes reach the process now; when not, the clock checks stamps.
        self._listening = False
        # Whether the loss of the listener was logged, so that it is logged once.
        self._told_lost = False
        # Products whose stamps the clock checks once at its next tick though it listens:
        # a product's first stream (a change may have come while it loaded), and every
        # product after the listener (re)connects.
        self._unchecked: set[int] = set()

    @property
    def mode(self) -> str:
        """How changes reach this process: "redis", "postgresql" or "stamps"."""
        if self._redis_url is not None:
            return "redis"
        return "postgresql" if self._engine.dialect.name == "postgresql" else "stamps"

    @property
    def listening(self) -> bool:
        return self._listening

    def start(self) -> None:
        """Start the clock, and the listener when there is something to listen to."""
        targets = [self._clock]
        if self.mode == "redis":
            targets.append(self._listen_redis)
        elif self.mode == "postgresql":
            targets.append(self._listen_postgres)
        for target in targets:
            name = f"tidings-live-{target.__name__.strip('_')}"
            threading.Thread(target=target, name=name, daemon=True).start()

    def stop(self) -> None:
        """End every stream and stop listening."""
        self._stopping.set()
        with self._lock:
            for watched in self._watched.values():
                watched.woken.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def streams(self) -> int:
        """How many streams are open."""
        with self._lock:
            return sum(watched.streams for watched in self._watched.values())

    # Streams ------------------------------------------------------------------------

    def catalogue(self, widget_key: str) -> Catalogue | None:
        """The catalogue of a product with open streams, which the listener keeps current;
        None for any other key."""
        with self._lock:
            product_id = self._product_ids.get(widget_key)
            return None if product_id is None else self._watched[product_id].catalogue

    def watch(self, widget_key: str, catalogue: Catalogue) -> Watch:
        """Register a stream on ``catalogue``'s product; close the Watch when it ends."""
        product_id = catalogue.product_id
        with self._lock:
            watched = self._watched.get(product_id)
            if watched is None:
                epoch = catalogue.epoch(utcnow())
                watched = self._watched[product_id] = _Watched(widget_key, catalogue, epoch)
                self._product_ids[widget_key] = product_id
                self._unchecked.add(product_id)
            elif catalogue.stamp > watched.catalogue.stamp:
                self._wake(watched, catalogue)
            watched.streams += 1
        return Watch(self, product_id, watched.generation)

    def _unwatch(self, product_id: int) -> None:
        with self._lock:
            watched = self._watched[product_id]
            watched.streams -= 1
            if watched.streams == 0:
                del self._watched[product_id]
                del self._product_ids[watched.widget_key]

    def _wait(self, product_id: int, generation: int, timeout: float) -> int:
        watched = self._watched[product_id]
        woken = watched.woken  # before the generation: a wake-up in between sets this one
        if watched.generation == generation and not self.stopping:
            woken.wait(timeout)
        return watched.generation

    def _catalogue(self, product_id: int) -> Catalogue:
        return self._watched[product_id].catalogue

    def _wake(self, watched: _Watched, catalogue: Catalogue) -> None:
        """Move the product to ``catalogue`` and wake its streams (the lock held): a new
        event replaces the one they wait on, so none misses a wake-up and none queues."""
        watched.catalogue = catalogue
        watched.epoch = catalogue.epoch(utcnow())
        watched.generation += 1
        woken, watched.woken = watched.woken, threading.Event()
        woken.set()

    # Learning of changes ------------------------------------------------------------

    def changed(self, product_ids: Collection[int]) -> None:
        """Reload the catalogues of the watched products among ``product_ids`` when their
        stamps moved, and wake their streams."""
        with self._lock:
            keys = {
                pid: self._watched[pid].widget_key for pid in product_ids if pid in self._watched
            }
        if not keys:
            return
        with self._engine.connect() as connection:
            stamps = dict(
                connection.execute(
                    select(Product.id, Product.catalogue_stamp).where(Product.id.in_(keys))
                ).all()
            )
            loaded = {}
            for product_id, stamp in stamps.items():
                watched = self._watched.get(product_id)
                if watched is not None and stamp > watched.catalogue.stamp:
                    catalogue = self._cache.get(connection, keys[product_id], stamp)
                    if catalogue is not None:
                        loaded[product_id] = catalogue
        with self._lock:
            for product_id, catalogue in loaded.items():
                watched = self._watched.get(product_id)
                if watched is not None and catalogue.stamp > watched.catalogue.stamp:
                    self._wake(watched, catalogue)

    def _clock(self) -> None:
        """Once a second, or at the next boundary if sooner: wake the products whose
        boundaries passed, and check the stamps the listener does not bring."""
        while not self.stopping:
            with self._lock:
                due = set(self._watched) if not self._listening else self._unchecked
                self._unchecked = set()
            try:
                if due:
                    self.changed(due)
            except Exception:
                log.exception("The live process could not check the catalogues' stamps")
            self._stopping.wait(self._tick())

    def _tick(self) -> float:
        """Wake the products whose next boundary passed; the seconds until the next tick."""
        now = utcnow()
        wait = STAMP_CHECK_SECONDS
        with self._lock:
            for watched in self._watched.values():
                boundaries = watched.catalogue.boundaries
                epoch = watched.catalogue.epoch(now)
                if epoch != watched.epoch:
                    self._wake(watched, watched.catalogue)
                if epoch < len(boundaries):
                    wait = min(wait, (boundaries[epoch] - now).total_seconds())
        return max(wait, 0.01)

    def _listening_again(self, how: str) -> None:
        """Listening works (again): check every watched product once, for what was missed."""
        with self._lock:
            self._unchecked = set(self._watched)
            self._listening = True
        log.info("The live process listens for catalogue changes on %s.", how)
        self._told_lost = False

    def _lost(self, how: str, error: Exception) -> None:
        self._listening = False
        if not self._told_lost:
            self._told_lost = True
            log.warning(
                "The live process cannot listen on %s (%s); it checks stamps every %g s "
                "until it can again.",
                how,
                error,
                STAMP_CHECK_SECONDS,
            )

    def _listen_redis(self) -> None:
        client = redis.Redis.from_url(
            str(self._redis_url),
            socket_timeout=RELISTEN_SECONDS * 5,
            socket_connect_timeout=RELISTEN_SECONDS,
            socket_keepalive=True,
            health_check_interval=15,
            retry=_NO_RETRY,
        )
        while not self.stopping:
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(CHANNEL)
                self._repair_stamps(client)
                self._listening_again("Redis")
                while not self.stopping:
                    message = pubsub.get_message(timeout=1.0)
                    if message is not None:
                        self._changed_payload(message["data"])
            except Exception as error:  # Redis, or the database while repairing stamps
                self._lost("Redis", error)
            finally:
                pubsub.close()
            self._stopping.wait(RELISTEN_SECONDS)

    def _repair_stamps(self, client: redis.Redis) -> None:
        """Give Redis every product's stamp: announcements lost while it was down (or
        empty after a restart) would leave the shared cache on old stamps."""
        with self._engine.connect() as connection:
            stamps = connection.execute(select(Product.id, Product.catalogue_stamp)).all()
        if stamps:
            pipe = client.pipeline(transaction=False)
            for product_id, stamp in stamps:
                pipe.zadd(STAMPS_KEY, {str(product_id): stamp}, gt=True)
            pipe.execute()

    def _listen_postgres(self) -> None:
        # The engine's own connection arguments, each apart: a password rendered into a
        # URL could be misread by libpq, and quoted back in its error, into the log.
        _, arguments = self._engine.dialect.create_connect_args(self._engine.url)
        arguments.pop("context", None)
        arguments.update(
            autocommit=True,
            connect_timeout=int(RELISTEN_SECONDS * 5),
            keepalives=1,
            keepalives_idle=30,
            keepalives_interval=10,
            keepalives_count=3,
        )
        while not self.stopping:
            try:
                with psycopg.connect(**arguments) as connection:
                    connection.execute(f"LISTEN {PG_CHANNEL}")
                    self._listening_again("PostgreSQL")
                    while not self.stopping:
                        for notify in connection.notifies(timeout=1.0):
                            self._changed_payload(notify.payload)
            except Exception as error:  # the server, the network, or a bad payload's reload
                self._lost("PostgreSQL", error)
            self._stopping.wait(RELISTEN_SECONDS)

    def _changed_payload(self, payload: bytes | str) -> None:
        """A product id announced by another process; anything else is ignored."""
        text = payload.decode() if isinstance(payload, bytes) else payload
        if text.isdigit():
            try:
                self.changed({int(text)})
            except Exception:
                log.exception("The live process could not reload product %s", text)


class Watch:
    """One open stream's view of its product: what to send, and waiting for a change."""

    def __init__(self, listener: Listener, product_id: int, generation: int) -> None:
        self._listener = listener
        self._product_id = product_id
        self._generation = generation
        self._closed = False

    def event_id(self) -> str:
        """The product's state now (see :func:`event_id`)."""
        return event_id(self._listener._catalogue(self._product_id), utcnow())

    def wait(self, timeout: float) -> bool:
        """Wait until the product changes, a boundary passes or the process stops (True),
        or ``timeout`` seconds pass (False)."""
        generation = self._listener._wait(self._product_id, self._generation, timeout)
        moved = generation != self._generation
        self._generation = generation
        return moved or self._listener.stopping

    @property
    def stopping(self) -> bool:
        return self._listener.stopping

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._listener._unwatch(self._product_id)
