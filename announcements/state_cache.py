"""The widget answers end users already hold, kept in Redis, so that a poll whose answer
has not changed (``If-None-Match`` → 304) is answered without a query.

A GET notes depends on three things: the product's catalogue (its stamp), the end user's
stored state, and the query (version, locale, attributes, page). For each end user one
Redis hash holds, per digest of a query, the ETag served, the stamp it was computed at
and until when it holds. A poll may be answered 304 from it when

- the stamp ``announcements.live.Publisher`` keeps in ``tidings:stamps`` is the entry's,
  and this process holds the catalogue at that stamp (to check the hash and the origin);
- the clock is before the entry's end: the catalogue's next boundary (a note going live
  or expiring, a hold-back window closing), and the moment :func:`reads.see` would write
  again (the hour of ``last_seen_at`` and the UTC day), so a first sighting of the day is
  never skipped;
- nobody wrote the user's state since: every writer deletes the user's hash after it
  commits (:meth:`StateCache.forget`).

A request that reads the database first takes the hash's version token (``v``, made when
missing), and stores its entry only if the token is still there when it is done: a
writer that committed after the request's read deleted the hash, token and all, so an
answer computed from the state before that write is never kept (the delete-then-refill
race of a plain cache). A request that wrote keeps nothing and deletes the hash, as any
writer does: the user's other entries were computed before its write.

A missed delete (the process killed between commit and delete, Redis unreachable from
one host at that moment) is bounded by :data:`ENTRY_SECONDS`: an entry never holds longer
than ten minutes after it was stored, two of the widget's five-minute polls. A delete
that failed is retried by the process at its next contact with Redis. Redis unreachable:
every call answers "nothing kept" and the widget is answered from the database; it is
logged once per outage, and the process leaves Redis alone for :data:`RETRY_SECONDS`.

The scripts touch two keys, a user's hash and the stamps, so on Redis Cluster they need
one hash slot; Tidings speaks to one Redis (or a replicated pair).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

import orjson
import redis

from announcements import holdback
from announcements.catalogue import Catalogue
from announcements.live import STAMPS_KEY

log = logging.getLogger(__name__)

# The longest an entry holds: what bounds a missed delete (see above).
ENTRY_SECONDS = 600
# A user with more kept answers than this (pages, versions, languages) has their hash
# emptied on the next store, so no client can grow one without bound.
MAX_ENTRIES = 32
# How long a process leaves Redis alone after it failed to answer, and how long it waits
# for an answer: the database answers meanwhile.
RETRY_SECONDS = 2.0
TIMEOUT_SECONDS = 0.5
# Deletes that failed, kept for the next contact; past this many the rest are left to
# ENTRY_SECONDS.
MAX_PENDING = 10_000

# The token, the stamp and the entry for one query, in one round trip; makes the token
# when the user has none.
_LOOKUP = """
local token = redis.call('HGET', KEYS[1], 'v')
if not token then
  token = ARGV[1]
  redis.call('HSET', KEYS[1], 'v', token)
  redis.call('EXPIRE', KEYS[1], ARGV[4])
end
return {redis.call('ZSCORE', KEYS[2], ARGV[2]), token, redis.call('HGET', KEYS[1], ARGV[3])}
"""
# Keep an entry if the token read before the database still stands. The stamp the request
# read from the database is committed, so it may move the published one forward (GT never
# moves it back): a publish that failed after its commit is mended by the next request.
_KEEP = """
redis.call('ZADD', KEYS[2], 'GT', ARGV[6], ARGV[5])
if redis.call('HGET', KEYS[1], 'v') ~= ARGV[1] then
  return 0
end
if redis.call('HLEN', KEYS[1]) > tonumber(ARGV[7]) then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'v', ARGV[1])
end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
"""


def user_key(product_id: int, external_id: str | None) -> str:
    """The Redis key of one end user's kept answers (anonymous readers share one)."""
    digest = hashlib.blake2b((external_id or "").encode(), digest_size=12).hexdigest()
    return f"tidings:state:{product_id}:{'' if external_id is None else digest}"


def query_digest(args: Iterable[tuple[str, str]]) -> str:
    """A digest of the query's parameters in any order, less the ``user_hash`` (checked
    against the catalogue on each request, not part of the answer)."""
    said = sorted((name, value) for name, value in args if name != "user_hash")
    # Encoded as JSON, so no value can pass for several parameters.
    return hashlib.blake2b(orjson.dumps(said), digest_size=12).hexdigest()


def catalogue_until(catalogue: Catalogue, now: datetime) -> datetime | None:
    """The first moment after ``now`` that may change what the catalogue shows someone: a
    note going live or expiring, or a hold-back window closing; None when none is ahead."""
    ahead = catalogue.boundaries[catalogue.epoch(now) :]
    ends = (
        holdback.window_end(note.published_at, catalogue.support_window_days)
        for note in catalogue.with_holdback
    )
    moments = [*ahead[:1], *(end for end in ends if end > now)]
    return min(moments, default=None)


@dataclass(frozen=True)
class Entry:
    """One kept answer: its ETag, the catalogue stamp it was computed at, and the epoch
    second it holds until."""

    etag: str
    stamp: int
    until: float

    def packed(self) -> str:
        return f"{self.stamp} {self.until:.3f} {self.etag}"

    @classmethod
    def unpacked(cls, text: bytes | None) -> Entry | None:
        if text is None:
            return None
        stamp, until, etag = text.decode().split(" ", 2)
        return cls(etag, int(stamp), float(until))

    def answers(self, stamp: int | None, etags: Mapping[str, object] | Iterable[str]) -> bool:
        """Whether this entry still says the answer is one of ``etags`` at ``stamp``."""
        return stamp == self.stamp and time.time() < self.until and self.etag in etags


@dataclass(frozen=True)
class Lookup:
    """What Redis holds for one query of one user: the published stamp (None: not
    published), the user's token, and the entry, if any."""

    stamp: int | None
    token: str
    entry: Entry | None


class StateCache:
    """The kept answers in one Redis; every method answers "nothing kept" when Redis fails."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._lookup = client.register_script(_LOOKUP)
        self._keep = client.register_script(_KEEP)
        self._failed_at: float | None = None
        self._pending: set[str] = set()
        self._lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str) -> StateCache:
        return cls(
            redis.Redis.from_url(
                url,
                socket_timeout=TIMEOUT_SECONDS,
                socket_connect_timeout=TIMEOUT_SECONDS,
                retry_on_timeout=False,
            )
        )

    def lookup(self, product_id: int, external_id: str | None, digest: str) -> Lookup | None:
        """The stamp, token and entry for a query; None when Redis is not answering."""
        if not self._usable():
            return None
        try:
            stamp, token, entry = self._lookup(
                keys=[user_key(product_id, external_id), STAMPS_KEY],
                args=[secrets.token_hex(8), product_id, digest, ENTRY_SECONDS],
            )
        except redis.RedisError as error:
            self._failed(error)
            return None
        self._answered()
        return Lookup(
            None if stamp is None else int(float(stamp)), token.decode(), Entry.unpacked(entry)
        )

    def keep(
        self,
        product_id: int,
        external_id: str | None,
        digest: str,
        token: str,
        entry: Entry,
    ) -> None:
        """Keep ``entry`` for the query if no writer deleted the token since it was read."""
        if not self._usable():
            return
        try:
            self._keep(
                keys=[user_key(product_id, external_id), STAMPS_KEY],
                args=[
                    token,
                    digest,
                    entry.packed(),
                    ENTRY_SECONDS,
                    product_id,
                    entry.stamp,
                    MAX_ENTRIES,
                ],
            )
        except redis.RedisError as error:
            self._failed(error)
            return
        self._answered()

    def forget(self, product_id: int, external_ids: Iterable[str]) -> None:
        """Delete the users' kept answers; call it after the write to their state commits.
        A delete Redis refuses is kept to be retried."""
        keys = [user_key(product_id, external_id) for external_id in external_ids]
        if not keys:
            return
        if self._usable():
            try:
                self._client.delete(*keys)
            except redis.RedisError as error:
                self._failed(error)
            else:
                self._answered()
                return
        with self._lock:
            if len(self._pending) + len(keys) > MAX_PENDING:
                log.warning("Dropped %d widget cache deletes; entries end by themselves", len(keys))
                return
            self._pending.update(keys)

    def _usable(self) -> bool:
        """Whether to ask Redis now: not within RETRY_SECONDS of a failure, and with the
        deletes that failed before done first."""
        if self._failed_at is not None and time.monotonic() - self._failed_at < RETRY_SECONDS:
            return False
        if self._pending:
            with self._lock:
                pending, self._pending = self._pending, set()
            try:
                self._client.delete(*pending)
            except redis.RedisError as error:
                with self._lock:
                    self._pending |= pending
                self._failed(error)
                return False
            self._answered()
        return True

    def _answered(self) -> None:
        if self._failed_at is not None:
            self._failed_at = None
            log.warning("Redis answers again: widget polls are answered from it")

    def _failed(self, error: Exception) -> None:
        if self._failed_at is None:
            log.warning(
                "Redis failed (%s): widget polls are answered from the database until it is back",
                error,
            )
        self._failed_at = time.monotonic()
