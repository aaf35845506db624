"""Daily roll-ups for the Insights pages: what the worker counts from the raw tables into
:class:`~announcements.models.Rollup` rows, so that a page reads a few thousand rows
however many users and receipts a product has. The raw tables stay the source of truth:
:func:`rebuild` counts everything again from them.

Days are UTC calendar days. ``note_id`` 0 is the product as a whole; ``bucket`` is 0
except for "active". Every count of users is also split by **segment**: the built-ins
``locale`` and ``app_version`` and each attribute the host sends for its users once at
least :data:`SEGMENT_MIN_USERS` of the product's users have it (attributes are not
signed: one caller could otherwise fill the slots with names it made up), in the order
adopted, those adopted in the same run the commonest first, at most
:data:`MAX_SEGMENTS`; a rebuild chooses them afresh from the users, the built-ins first.
A segment's dimension is ``"seg:<name>"``, the value the attribute's text cut to 128
characters, or :data:`NONE` for a user without it (or with it empty). At most
:data:`MAX_VALUES` values of a (note, metric, dimension, day) get a row of their own;
the others are summed into :data:`OTHER`. Which ones is decided when a value first
comes: those already stored keep their rows, then the commonest of the new ones.

The notes counted are those published (at or before the run's end, and before any
archiving) that are not internal, archived or not; every metric of a note is of these
only, and an internal note has no row.

``active`` (note 0)
    Users the widget saw on the day (:class:`~announcements.models.EndUserDay` rows), by
    ``bucket`` = days since their previous visit, ``min(day - previous_day, 7)``, and 7
    for a new user: daily active users are the sum over buckets; weekly active users of
    the 7 days ending on d, the sum over e in d-6..d of the rows on e whose bucket is
    over e - (d-6).
``exposed`` (note n)
    Users newly exposed to the note on the day: seen on a day from its publication day
    to the day it was archived (the widget shows it no more after; the day of archiving
    counts whole), on a version that includes it
    (:func:`announcements.support_impact.including`; a user on no version is included),
    counted on the first such day. From a day row (day d, version v, previous day p,
    previous version pv) that is when v includes the note and not both p is on or after
    its publication day and pv includes it. This is exact while users' versions only go
    up: one who went back to an older version and up again counts twice. Audience rules
    and expiry play no part, as in Support impact. An archived note keeps the exposure
    counted up to its archive day, its readers and its e-mail; a note restored from the
    archive needs a rebuild to count those first seen while it was archived.
``read`` (note n)
    Read receipts by the day of ``read_at`` (one per user and note, so new readers), by
    dimension "" and "channel" (``ReadReceipt.channel``) besides the segments.
``email`` (note n)
    The note's outbox messages of kind "note" by the day they were queued, dimension
    "status": "sent", "bounced" (failed), "skipped", "waiting" (queued or sending), and
    "unsubscribed": those sent whose subscriber unsubscribed within 7 days after.
    Statuses change, so the notes e-mailed in the last 30 days are recounted in full on
    every run.
``subscribers`` (note 0)
    Dimension "event", of the subscribers who confirmed (one pending that bounced or
    unsubscribed never joined, so never left): "confirmed" on the day of
    ``confirmed_at``, "unsubscribed" (status unsubscribed) on the day of
    ``unsubscribed_at``, "bounced" (status bounced) on the day of ``unsubscribed_at``,
    else of their newest failed message's ``created_at``, else of ``confirmed_at``. So
    confirmed less unsubscribed less bounced, summed over the days, never goes below
    zero and ends at the subscribers confirmed now. Recounted in full on every run, a
    product's list being short.

The segment value of a user is their attribute when counted, their locale likewise; the
``app_version`` of "active" and "exposed" is the version of the day's row (the version
the widget saw that day, which a rebuild finds again), that of "read" the user's version
when counted.

**Increments.** :class:`~announcements.models.RollupState` ``counted_until`` is the
watermark: day rows and receipts stamped (``seen_at``, ``read_at``) at or before it are
counted. A run counts ``(counted_until, now - LAG]`` and adds it to the stored rows; the
lag leaves time for a write whose transaction is still open, and for the clocks of the
web processes that stamp the rows and of the worker that counts them to disagree, but
only by up to :data:`LAG` (30 s): a row stamped further behind the worker's clock than
that is never counted by an increment, only by a rebuild. A note counted for the
first time (it went out since the last run, or was published with an earlier date) is
also counted over the day rows counted before it was there: a user seen in the morning
of its publication day is exposed to it by the rule above, and the next run would never
see them again that day. Every note counted has an "exposed" row on its publication day
(dimension "", count 0 if need be), which is how a run tells a note it counted before
(one whose publication moved to another day is counted again from there, until a
rebuild). Exposure as counted depends on a note's version and publication day, so
editing a note's version or moving its publication needs ``flask rollups rebuild`` for
the figures to follow. A segment adopted is counted from then on; a rebuild counts it
over the past too.

Each product's run reads outside ``write_turn`` (SQLite's one writer) and writes inside
it in one transaction, with the watermark: a run that fails leaves the previous roll-up
and watermark as they were (:func:`refresh_all` goes on with the other products), and of
two runs at once, the second finds the watermark moved, or the first's state of a
product counted for the first time, and writes nothing; of two rebuilds the second
replaces the first's rows.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import heapq
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from typing import cast as typing_cast

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    case,
    delete,
    func,
    literal_column,
    or_,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from announcements import personal_data, subscriptions, support_impact, targeting
from announcements.models import (
    EndUser,
    EndUserDay,
    Note,
    OutboxKind,
    OutboxMessage,
    OutboxStatus,
    Product,
    ReadReceipt,
    Rollup,
    RollupState,
    Subscriber,
    SubscriberStatus,
)
from announcements.support_impact import UtcDay, WriteTurn

LAG = timedelta(seconds=30)
MAX_SEGMENTS = 12
# Users of the product who must have an attribute before it is a segment.
SEGMENT_MIN_USERS = 20
MAX_VALUES = 100
OTHER = "(other)"
NONE = "(none)"
BUILT_IN_SEGMENTS = ("locale", "app_version")
VALUE_LENGTH = 128
# Days since the previous visit, "7 or more" and a new user alike in the last bucket.
MAX_BUCKET = 7
EMAIL_RECOUNTED_FOR = timedelta(days=30)
UNSUBSCRIBED_WITHIN = timedelta(days=7)
# Rows are written this many at a time, each batch one statement.
WRITE_BATCH = 5_000

_rollups = typing_cast(Table, Rollup.__table__)
_states = typing_cast(Table, RollupState.__table__)
_KEY = ("product_id", "note_id", "metric", "dimension", "day", "value", "bucket")


# What is counted -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Note:
    """A published note as the exposure rule needs it."""

    id: int
    version: str
    day: date  # its publication day
    archived_day: date | None  # the day it was archived: exposure ends with it


# (note id, metric, dimension, day) -> (value, bucket) -> count
Tally = dict[tuple[int, str, str, date], Counter[tuple[str, int]]]


def _tally() -> Tally:
    return defaultdict(Counter)


@functools.cache
def _day_of(text: str) -> date:
    """A day as UtcDay answers it (a few distinct ones per run, each parsed once)."""
    return date.fromisoformat(text)


def _grouped(session: Session, inner: Select[*tuple[Any, ...]]) -> Sequence[Any]:
    """The rows of ``inner`` counted by all their columns, on the session's connection
    (plain rows need none of the ORM's loading). Grouped outside: PostgreSQL would not
    match the parameters of JSON paths and CASEs in a GROUP BY."""
    rows = inner.subquery()
    return session.connection().execute(select(*rows.c, func.count()).group_by(*rows.c)).all()


def start_of(day: date) -> datetime:
    """The first instant of a UTC day."""
    return datetime.combine(day, time(), tzinfo=UTC)


def _value(column: Any) -> ColumnElement[str]:
    """A segment value as stored: the text cut to 128 characters, NONE when missing or
    empty."""
    return func.coalesce(func.nullif(func.substr(column, 1, VALUE_LENGTH), ""), NONE)


def _user_value(segment: str) -> ColumnElement[str]:
    """The joined end user's value of a segment other than the version, as they are now."""
    if segment == "locale":
        return _value(EndUser.locale)
    return _value(EndUser.attributes[segment].as_string())


def attribute_keys(
    session: Session,
    product_id: int,
    *,
    since: datetime | None = None,
    among: Sequence[str] | None = None,
    recent: int | None = None,
) -> Counter[str]:
    """The attribute names of the product's users seen after ``since`` (all with None),
    or of its ``recent`` most recently seen ones, with how many of those users have each;
    only the names ``among`` when given. Attributes change only when a user is seen, which
    moves ``last_seen_at``; an erased user has none."""
    postgres = session.get_bind().dialect.name == "postgresql"
    users = select(EndUser.attributes).where(EndUser.product_id == product_id)
    if postgres:
        # Its keys function fails on anything but an object; SQLite's gives no key.
        users = users.where(func.json_typeof(EndUser.attributes) == "object")
    if since is not None:
        users = users.where(EndUser.last_seen_at > since)
    if recent is not None:
        # Read from the (product_id, last_seen_at) index, however many users there are.
        users = users.order_by(EndUser.last_seen_at.desc()).limit(recent)
    rows = users.subquery()
    if postgres:
        keys = func.json_object_keys(rows.c.attributes).table_valued("key").render_derived()
    else:
        keys = func.json_each(rows.c.attributes).table_valued("key")
    query = select(keys.c.key, func.count()).select_from(rows).join(keys, true())
    if among is not None:
        query = query.where(keys.c.key.in_(among))
    found: Iterable[Any] = session.execute(query.group_by(keys.c.key))
    return Counter({key: count for key, count in found if key is not None})


def _segments(
    session: Session, product_id: int, known: Sequence[str], since: datetime | None
) -> list[str]:
    """The segments to count by: the built-ins, the known ones, then the attribute names
    of users seen after ``since`` (everyone's with None) that at least SEGMENT_MIN_USERS
    of the product's users have, commonest first, up to MAX_SEGMENTS. A name must be one
    the widget accepts (a built-in's name is the built-in) and must not look like personal
    data: a segment's values are stored in aggregate rows, which would then hold every
    user's address or name (one known from before this rule is dropped too)."""
    kept = [name for name in known if not personal_data.looks_personal(name)]
    names = list(dict.fromkeys([*BUILT_IN_SEGMENTS, *kept]))
    if len(names) >= MAX_SEGMENTS:
        return names[:MAX_SEGMENTS]
    found = attribute_keys(session, product_id, since=since)
    new = [
        name
        for name in found
        if name not in names
        and targeting.ATTRIBUTE_PATTERN.fullmatch(name)
        and not personal_data.looks_personal(name)
    ]
    if not new:
        return names
    # Attributes are not signed: any caller of the widget could fill the slots with names
    # of its own. So a name counts once enough users have it, counted over the product's
    # users (those seen now and those known before), which an increment reads only while
    # such a name is about.
    users = found if since is None else attribute_keys(session, product_id, among=new)
    adopted = [name for name in new if users[name] >= SEGMENT_MIN_USERS]
    adopted.sort(key=lambda name: (-users[name], name))
    return (names + adopted)[:MAX_SEGMENTS]


def _notes(session: Session, product_id: int, until: datetime) -> list[_Note]:
    """The product's notes that are counted: published at or before ``until`` (and
    before any archiving), not internal; archived or not."""
    rows: Iterable[Any] = session.execute(
        select(Note.id, Note.version, Note.published_at, Note.archived_at).where(
            Note.product_id == product_id,
            Note.is_internal.is_(False),
            Note.published_at <= until,
            or_(Note.archived_at.is_(None), Note.archived_at >= Note.published_at),
        )
    )
    return [
        _Note(note_id, version, published.date(), archived.date() if archived else None)
        for note_id, version, published, archived in rows
    ]


def _uncounted(session: Session, product_id: int, notes: Sequence[_Note]) -> list[_Note]:
    """The notes without their "exposed" row on their publication day: not counted yet."""
    if not notes:
        return []
    rows: Iterable[Any] = session.execute(
        select(Rollup.note_id, Rollup.day).where(
            Rollup.product_id == product_id,
            Rollup.note_id.in_([note.id for note in notes]),
            Rollup.metric == "exposed",
            Rollup.dimension == "",
            Rollup.value == "",
            Rollup.bucket == 0,
        )
    )
    counted = {(note_id, day) for note_id, day in rows}
    return [note for note in notes if (note.id, note.day) not in counted]


# Active and exposed users, from the day rows ----------------------------------------------


def _segment_values(segments: Sequence[str], version: Any) -> list[ColumnElement[str]]:
    """The joined end user's value of each segment, the version taken from ``version``."""
    return [
        (_value(version) if name == "app_version" else _user_value(name)).label(f"segment{number}")
        for number, name in enumerate(segments)
    ]


def _day_groups(
    session: Session, product_id: int, window: ColumnElement[bool], segments: Sequence[str]
) -> Sequence[Any]:
    """The day rows seen in ``window``, grouped: (day, version, previous version,
    previous day, the value of each segment, users).

    One grouped pass over the rows and their users for every figure. Day rows group
    well, a handful of versions and previous days a day times the segments' values (a
    group for nine rows in the benchmark): on SQLite this costs two thirds of counting
    each dimension apart as receipts are. The previous day gives both the bucket and how
    it ranks against the notes' publication days, and the notes each group is newly
    exposed to are worked out once per group in Python, never a query per note.
    """
    rows = (
        select(
            EndUserDay.day,
            EndUserDay.app_version,
            EndUserDay.previous_version,
            EndUserDay.previous_day,
            *_segment_values(segments, EndUserDay.app_version),  # the version that day
        )
        .join(EndUser, EndUser.id == EndUserDay.end_user_id)
        .where(EndUserDay.product_id == product_id, window)
    )
    return _grouped(session, rows)


class _Exposure:
    """Which of ``notes`` a group of day rows is newly exposed to (see the module's
    notes), worked out once for each (day, version, previous version, rank of the
    previous day among the notes' publication days)."""

    def __init__(self, notes: Sequence[_Note], edges: Sequence[date], versions: Iterable[str]):
        present = sorted(set(versions))
        self._edges = edges
        self._notes = [
            (
                note.id,
                note.day,
                note.archived_day or date.max,
                bisect.bisect_right(edges, note.day),
                frozenset(support_impact.including(note.version, present)),
            )
            for note in notes
        ]
        self._known: dict[tuple[date, str | None, str | None, int], tuple[int, ...]] = {}

    def notes(
        self, day: date, version: str | None, previous: str | None, previous_day: date | None
    ) -> tuple[int, ...]:
        # How many publication days are on or before the previous visit; 0 for a new user.
        rank = 0 if previous_day is None else bisect.bisect_right(self._edges, previous_day)
        key = (day, version, previous, rank)
        found = self._known.get(key)
        if found is None:
            found = self._known[key] = tuple(
                note_id
                for note_id, published, archived, published_rank, including in self._notes
                if published <= day <= archived
                and (version is None or version in including)
                # Not exposed already at the previous visit: that was before publication
                # day, or on a version that did not include it.
                and not (rank >= published_rank and (previous is None or previous in including))
            )
        return found


def _bucket(day: date, previous_day: date | None) -> int:
    """Days since the previous visit, 1 to MAX_BUCKET; MAX_BUCKET for a new user."""
    if previous_day is None:
        return MAX_BUCKET
    # At least 1: a day row is written on a later day than the last sighting's, unless a
    # clock went back.
    return min(MAX_BUCKET, max(1, (day - previous_day).days))


def _count_days(
    session: Session,
    product_id: int,
    tally: Tally,
    segments: Sequence[str],
    notes: Sequence[_Note],
    uncounted: Sequence[_Note],
    since: datetime | None,
    until: datetime,
) -> None:
    """Add the active users and new exposures of the day rows seen in ``(since, until]``,
    to every note in ``notes``; and for the ``uncounted`` notes, the exposures of the
    rows counted before, seen since their publication day up to ``since``."""
    seen = EndUserDay.seen_at <= until
    window = seen if since is None else (EndUserDay.seen_at > since) & seen
    groups = _day_groups(session, product_id, window, segments)
    earlier: Sequence[Any] = []
    if uncounted and since is not None:
        first = start_of(min(note.day for note in uncounted))
        before = (EndUserDay.seen_at >= first) & (EndUserDay.seen_at <= since)
        earlier = _day_groups(session, product_id, before, segments)
    edges = sorted({note.day for note in notes})
    versions = {
        version for row in [*groups, *earlier] for version in row[1:3] if version is not None
    }
    dimensions = ["", *(f"seg:{name}" for name in segments)]
    # Users by the notes they were newly exposed to, then by segment value: many groups
    # share the same notes, which are then added to each once, below.
    exposures: defaultdict[tuple[date, tuple[int, ...]], Counter[tuple[str, str]]]
    exposures = defaultdict(Counter)
    for rows, exposure, counts_active in (
        (groups, _Exposure(notes, edges, versions), True),
        (earlier, _Exposure(uncounted, edges, versions), False),
    ):
        for day, version, previous, previous_day, *values, users in rows:
            split = list(zip(dimensions, ["", *values], strict=True))
            if counts_active:
                bucket = _bucket(day, previous_day)
                for dimension, value in split:
                    tally[(0, "active", dimension, day)][(value, bucket)] += users
            exposed = exposure.notes(day, version, previous, previous_day)
            if exposed:
                by_value = exposures[(day, exposed)]
                for dimension, value in split:
                    by_value[(dimension, value)] += users
    for note in uncounted:
        tally[(note.id, "exposed", "", note.day)][("", 0)] += 0  # counted from now on
    for (day, exposed), by_value in exposures.items():
        for note_id in exposed:
            for (dimension, value), users in by_value.items():
                tally[(note_id, "exposed", dimension, day)][(value, 0)] += users


# Reads ------------------------------------------------------------------------------------


def _count_reads(
    session: Session,
    tally: Tally,
    segments: Sequence[str],
    notes: Sequence[_Note],
    since: datetime | None,
    until: datetime,
) -> None:
    """Add the receipts of ``notes`` read in ``(since, until]``, by channel and by each
    segment of their readers as they are now: one pass."""
    if not notes:
        return
    window = ReadReceipt.read_at <= until
    if since is not None:
        window = window & (ReadReceipt.read_at > since)
    receipts = (
        select(
            ReadReceipt.note_id.label("note_id"),
            UtcDay(ReadReceipt.read_at).label("day"),
            ReadReceipt.channel.label("channel"),
            *_segment_values(segments, EndUser.app_version),
        )
        .join(EndUser, EndUser.id == ReadReceipt.end_user_id)
        # The ids themselves, not a subquery: each note's new receipts are then a range
        # of the (note, read_at) index.
        .where(ReadReceipt.note_id.in_([note.id for note in notes]), window)
        .cte("receipts")
    )
    # Receipts barely group all at once: their notes and channels multiply the segments'
    # values (two groups for three receipts in the benchmark). So the receipts and their
    # readers are read once, into the CTE (both databases materialize one used more than
    # once), and counted by note, day and each dimension's value in turn: a few rows
    # each. On SQLite, for a day of a million receipts, that costs a fifth less than one
    # GROUP BY of every column split in Python, and under half a query per dimension
    # (each reading the receipts and their readers again).
    dimensions = ["channel", *(f"seg:{name}" for name in segments)]
    by_dimension = union_all(
        *(
            select(
                literal_column(str(number)), receipts.c.note_id, receipts.c.day, value, func.count()
            ).group_by(receipts.c.note_id, receipts.c.day, value)
            for number, value in enumerate(list(receipts.c)[2:])
        )
    )
    counted: Iterable[Any] = session.connection().execute(by_dimension)
    for number, note_id, text, value, readers in counted:
        read_on = _day_of(text)
        tally[(note_id, "read", dimensions[number], read_on)][(value, 0)] += readers
        if number == 0:  # every receipt has a channel: summed, they are everyone's
            tally[(note_id, "read", "", read_on)][("", 0)] += readers


# E-mail and subscribers, recounted ---------------------------------------------------------


def _count_email(session: Session, product_id: int, note_ids: Sequence[int]) -> Tally:
    """The note e-mail of ``note_ids``, counted in full."""
    tally = _tally()
    status = case(
        (OutboxMessage.status == OutboxStatus.SENT, "sent"),
        (OutboxMessage.status == OutboxStatus.FAILED, "bounced"),
        (OutboxMessage.status == OutboxStatus.SKIPPED, "skipped"),
        else_="waiting",
    )
    mine = (
        OutboxMessage.product_id == product_id,
        OutboxMessage.kind == OutboxKind.NOTE,
        OutboxMessage.note_id.in_(note_ids),
    )
    messages_by_status = select(
        OutboxMessage.note_id.label("note_id"),
        UtcDay(OutboxMessage.created_at).label("day"),
        status.label("status"),
    ).where(*mine)
    for note_id, text, value, messages in _grouped(session, messages_by_status):
        tally[(note_id, "email", "status", _day_of(text))][(value, 0)] += messages
    # Those who left soon after: few, so the 7 days are measured here.
    left: Iterable[Any] = session.execute(
        select(
            OutboxMessage.note_id,
            UtcDay(OutboxMessage.created_at),
            OutboxMessage.sent_at,
            Subscriber.unsubscribed_at,
        )
        .join(Subscriber, Subscriber.id == OutboxMessage.subscriber_id)
        .where(
            *mine,
            OutboxMessage.status == OutboxStatus.SENT,
            Subscriber.unsubscribed_at >= OutboxMessage.sent_at,
        )
    )
    for note_id, text, sent_at, unsubscribed_at in left:
        if unsubscribed_at <= sent_at + UNSUBSCRIBED_WITHIN:
            tally[(note_id, "email", "status", _day_of(text))][("unsubscribed", 0)] += 1
    return tally


def _count_subscribers(session: Session, product_id: int) -> Tally:
    """The product's subscribers' confirmations, unsubscriptions and bounces by day. Only
    subscribers who confirmed can leave: one pending that bounced or unsubscribed never
    joined, so confirmed less unsubscribed less bounced, summed over the days, is never
    below zero and ends at the subscribers confirmed now."""
    tally = _tally()
    joined = (Subscriber.product_id == product_id) & Subscriber.confirmed_at.is_not(None)
    events = [
        ("confirmed", Subscriber.confirmed_at, None),
        (
            "unsubscribed",
            func.coalesce(Subscriber.unsubscribed_at, Subscriber.confirmed_at),
            SubscriberStatus.UNSUBSCRIBED,
        ),
        ("bounced", subscriptions.bounced_at(), SubscriberStatus.BOUNCED),
    ]
    for event, moment, status in events:
        day = UtcDay(moment)
        which = joined if status is None else joined & (Subscriber.status == status)
        for text, subscribers in session.execute(
            select(day, func.count()).where(which).group_by(day)
        ):
            tally[(0, "subscribers", "event", _day_of(text))][(event, 0)] += subscribers
    return tally


# At most MAX_VALUES values a day --------------------------------------------------------


def _stored_values(
    session: Session, product_id: int, tally: Tally
) -> dict[tuple[int, str, str, date], set[str]]:
    """For the keys of ``tally`` that could go over MAX_VALUES values with what is stored,
    the values stored (OTHER aside); most keys need no look."""
    split = [key for key in tally if key[2] != ""]
    if not split:
        return {}
    days = [key[3] for key in split]
    key_columns = (Rollup.note_id, Rollup.metric, Rollup.dimension, Rollup.day)
    # Every column of the primary key's prefix constrained, so it reads only these rows.
    stored = session.execute(
        select(*key_columns, func.count(Rollup.value.distinct()))
        .where(
            Rollup.product_id == product_id,
            Rollup.note_id.in_({key[0] for key in split}),
            Rollup.metric.in_({key[1] for key in split}),
            Rollup.dimension.in_({key[2] for key in split}),
            Rollup.day >= min(days),
            Rollup.day <= max(days),
            Rollup.value != OTHER,
        )
        .group_by(*key_columns)
    )
    counts = {tuple(row[:4]): row[4] for row in stored}
    crowded = [
        key
        for key in split
        if key in counts and counts[key] + len({value for value, _ in tally[key]}) > MAX_VALUES
    ]
    values: dict[tuple[int, str, str, date], set[str]] = {}
    for note_id, metric, dimension, day in crowded:
        values[(note_id, metric, dimension, day)] = set(
            session.scalars(
                select(Rollup.value)
                .distinct()
                .where(
                    Rollup.product_id == product_id,
                    Rollup.note_id == note_id,
                    Rollup.metric == metric,
                    Rollup.dimension == dimension,
                    Rollup.day == day,
                    Rollup.value != OTHER,
                )
            )
        )
    return values


def _capped(counts: Mapping[tuple[str, int], int], stored: set[str]) -> Counter[tuple[str, int]]:
    """The counts of one key with at most MAX_VALUES values besides OTHER: the stored ones,
    then the commonest new ones; the rest summed into OTHER, bucket by bucket."""
    totals: Counter[str] = Counter()
    for (value, _), count in counts.items():
        totals[value] += count
    if len(stored | set(totals)) <= MAX_VALUES:
        return Counter(counts)
    room = max(0, MAX_VALUES - len(stored))
    new = [value for value in totals if value not in stored and value != OTHER]
    kept = stored | set(heapq.nsmallest(room, new, key=lambda value: (-totals[value], value)))
    capped: Counter[tuple[str, int]] = Counter()
    for (value, bucket), count in counts.items():
        capped[(value if value in kept else OTHER, bucket)] += count
    return capped


def _rows(product_id: int, tally: Tally, stored: Mapping[Any, set[str]]) -> list[dict[str, Any]]:
    """The tally as rows to write, capped."""
    rows = []
    for (note_id, metric, dimension, day), counts in tally.items():
        capped = _capped(counts, stored.get((note_id, metric, dimension, day), set()))
        for (value, bucket), count in capped.items():
            rows.append(
                {
                    "product_id": product_id,
                    "note_id": note_id,
                    "metric": metric,
                    "dimension": dimension,
                    "day": day,
                    "value": value,
                    "bucket": bucket,
                    "count": count,
                }
            )
    return rows


# Writing ----------------------------------------------------------------------------------


def _insert(session: Session, table: Table) -> Any:
    """The dialect's INSERT into ``table``, which has ON CONFLICT."""
    return (postgresql if session.get_bind().dialect.name == "postgresql" else sqlite).insert(table)


def _adding(session: Session) -> Any:
    """An INSERT of roll-up rows that adds to a row already there."""
    adding = _insert(session, _rollups)
    return adding.on_conflict_do_update(
        index_elements=[_rollups.c[name] for name in _KEY],
        set_={"count": _rollups.c.count + adding.excluded.count},
    )


def _add(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Add ``rows`` to the roll-up, a batch at a time."""
    statement = _adding(session)
    for start in range(0, len(rows), WRITE_BATCH):
        session.execute(statement, rows[start : start + WRITE_BATCH])


@dataclass
class _Run:
    """What one run counted, ready to write."""

    product_id: int
    first: bool  # the product had no state when the run began
    since: datetime | None  # None: a rebuild
    until: datetime
    segments: list[str]
    rows: list[dict[str, Any]]
    recounted_email: list[int]  # notes whose e-mail is counted in full (a rebuild's: all)


def _count(
    session: Session,
    product_id: int,
    known: Sequence[str],
    since: datetime | None,
    until: datetime,
    now: datetime,
    *,
    first: bool = False,
) -> _Run:
    """Count ``(since, until]`` (everything up to ``until`` with None), reading only;
    ``first`` when the product has no state yet."""
    segments = _segments(session, product_id, known, since)
    notes = _notes(session, product_id, until)
    uncounted = notes if since is None else _uncounted(session, product_id, notes)
    tally = _tally()
    _count_days(session, product_id, tally, segments, notes, uncounted, since, until)
    _count_reads(session, tally, segments, notes, since, until)
    stored = {} if since is None else _stored_values(session, product_id, tally)
    recounted = [note.id for note in notes]
    if since is not None:
        recent = set(
            session.scalars(
                select(Note.id).where(
                    Note.product_id == product_id, Note.emailed_at >= now - EMAIL_RECOUNTED_FOR
                )
            )
        )
        recounted = [note_id for note_id in recounted if note_id in recent]
    email = _count_email(session, product_id, recounted)
    subscribers = _count_subscribers(session, product_id)
    rows = (
        _rows(product_id, tally, stored)
        + _rows(product_id, email, {})
        + _rows(product_id, subscribers, {})
    )
    return _Run(product_id, first, since, until, segments, rows, recounted)


def _claimed(session: Session, run: _Run, now: datetime) -> bool:
    """Move the watermark to where the run counted; False when another run got there
    first. First in the transaction, so that it holds the state's row until the commit.

    An increment moves it only from where it began counting: of two at once, the second
    waits here, then finds it moved. A rebuild replaces whatever is there: the second of
    two waits, then replaces the first's rows with its own. A product's first run inserts
    the state, leaving one another run inserted meanwhile as it is (on PostgreSQL the
    second waits for the first's commit): the second then writes nothing rather than
    failing on the duplicate.
    """
    values = {"counted_until": run.until, "segments": run.segments, "updated_at": now}
    if run.first:
        # Whether it inserted, by the row it returns: for an INSERT … ON CONFLICT the
        # row count came back -1 from psycopg.
        inserted = session.execute(
            _insert(session, _states)
            .values(product_id=run.product_id, **values)
            .on_conflict_do_nothing()
            .returning(_states.c.product_id)
        )
        return inserted.first() is not None
    statement = update(RollupState).where(RollupState.product_id == run.product_id)
    if run.since is not None:
        statement = statement.where(RollupState.counted_until == run.since)
    moved = session.execute(statement.values(**values))
    return int(getattr(moved, "rowcount", 0) or 0) == 1


def _drop(session: Session, run: _Run) -> None:
    """Delete the rows a run counts again in full: all the product's for a rebuild; for
    an increment, the recent notes' e-mail and the subscribers."""
    mine = Rollup.product_id == run.product_id
    if run.since is None:
        session.execute(delete(Rollup).where(mine))
        return
    if run.recounted_email:
        session.execute(
            delete(Rollup).where(
                mine, Rollup.note_id.in_(run.recounted_email), Rollup.metric == "email"
            )
        )
    session.execute(delete(Rollup).where(mine, Rollup.note_id == 0, Rollup.metric == "subscribers"))


def _commit(session: Session, run: _Run, now: datetime, write_turn: WriteTurn) -> int:
    """Write a run and its watermark in one transaction, in this process's turn: nothing
    of it stays if any part fails. Returns the rows written; 0 when another run counted
    meanwhile."""
    with write_turn():
        try:
            if not _claimed(session, run, now):
                session.rollback()
                return 0
            _drop(session, run)
            _add(session, run.rows)
        except BaseException:
            session.rollback()
            raise
        session.commit()
    return len(run.rows)


# The interface ------------------------------------------------------------------------------


def refresh(
    session: Session,
    product: Product,
    *,
    now: datetime,
    write_turn: WriteTurn = contextlib.nullcontext,
) -> int:
    """Count what came since the product's watermark up to ``now - LAG`` into its roll-up,
    and recount its e-mail and subscribers (see the module's notes); a product never
    counted is rebuilt. Returns the rows written (0 if another run counted meanwhile)."""
    product_id = product.id
    state = session.get(RollupState, product_id)
    if state is None:
        return rebuild(session, product, now=now, write_turn=write_turn)
    since = state.counted_until
    until = max(since, now - LAG)
    run = _count(session, product_id, state.segments, since, until, now)
    return _commit(session, run, now, write_turn)


def refresh_all(
    session: Session, *, now: datetime, write_turn: WriteTurn = contextlib.nullcontext
) -> dict[str, int]:
    """Refresh every product's roll-up (a product that fails is logged and left as it
    was, the others still counted: see :func:`support_impact.for_each_product`); returns
    the rows written per product slug, of the products counted."""
    return support_impact.for_each_product(session, refresh, now=now, write_turn=write_turn)


def rebuild(
    session: Session,
    product: Product,
    *,
    now: datetime,
    write_turn: WriteTurn = contextlib.nullcontext,
) -> int:
    """Count the product's roll-up again from the raw tables, everything up to
    ``now - LAG``, replacing its rows and watermark in one transaction; the segments are
    chosen afresh from the users (the built-ins, then the commonest attributes at least
    SEGMENT_MIN_USERS users have). Returns the rows written (0 if another run counted
    the product's first roll-up meanwhile)."""
    first = session.get(RollupState, product.id) is None
    # No segment known: they are chosen afresh.
    run = _count(session, product.id, [], None, now - LAG, now, first=first)
    return _commit(session, run, now, write_turn)


def segments(session: Session, product: Product) -> list[str]:
    """The segments the product's roll-up is counted by, for pickers and ``?by=``; the
    built-ins before its first run."""
    state = session.get(RollupState, product.id)
    return list(state.segments) if state is not None else list(BUILT_IN_SEGMENTS)


def counted_until(session: Session, product: Product) -> datetime | None:
    """Up to when the product's roll-up has counted; None before its first run."""
    state = session.get(RollupState, product.id)
    return state.counted_until if state is not None else None
