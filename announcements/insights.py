"""Insights: who a note reached, who read it, how fast and where, and what a product's
users run, read from the daily roll-up the worker keeps (:mod:`announcements.rollups`).

Every figure that grows with a product's users is read from ``rollup`` rows: a page
costs a handful of grouped queries over a few thousand rows, however many users there
are. What the roll-up leaves out is read from the raw tables through their indexes:
reactions and comments (``reaction``, by note: a note has few against its readers, and
they change), the time-to-read percentiles (``read_receipt (note_id, read_at)``: a count,
then the k-th receipt in time order) and the non-readers' export (streamed).

What the roll-up counts, and so what the figures mean (see :mod:`announcements.rollups`):

- **exposed**: users the widget saw, on or after the note's publication day, on a version
  that includes the note (not older; a user with no version counts), counted on the
  first such day. Audience rules play no part, as in Support impact.
- **readers**: read receipts, one per user and note, of every channel, on the day of the
  read. The **read rate** is readers ÷ exposed, capped at 100 % (a user may read through
  e-mail without the widget ever seeing them), with its 95 % Wilson score interval.
- **weekly active users** of a day: users the widget saw in the 7 days ending on it.
- a **segment** is an end-user attribute the product's users have (``locale``,
  ``app_version`` and the host's own, such as plan); its values are the attribute's text,
  "(none)" for users without it: the user's value when counted, but for ``app_version``
  of active and exposed users the version the widget saw that day. A breakdown shows the
  20 values with the most users and sums the rest as "Other", and with them every value
  fewer than 5 users have, so that no row singles anyone out (versions in use, which
  name no one, show every version).

The roll-up counts outward notes (not internal ones): an internal note has no figures
but its reactions.

Days are UTC calendar days. A note's figures are cumulative since its publication, up to
the end of the range asked (or today), its daily series at most the range's last 366
days of them; a product's describe its range: the notes
published in it, counted up to the range's end, so two ranges compare like with like;
its totals are over every such note, its rankings show the top 20. Figures are as of
the roll-up's last run (``counted_until``), minutes behind the widget.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import hmac
import math
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from statistics import NormalDist
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, func, or_, select
from sqlalchemy.orm import Session

from announcements import audit, notices, rollups, support_impact
from announcements.errors import InvalidTransition, ValidationFailed
from announcements.mailing_list import csv_safe
from announcements.models import (
    EndUser,
    Note,
    NoteStatus,
    Product,
    Reaction,
    ReadReceipt,
    Rollup,
    TeamMember,
    outward_clause,
    status_clause,
)
from announcements.notices import csv_lines
from announcements.queries import like_pattern
from announcements.reads import REACTIONS

CONFIDENCE = 0.95
# The values a breakdown shows; the rest are summed into OTHER.
TOP_VALUES = 20
TOP_NOTES = 20
OTHER = "Other"
# A segment's value held by fewer users than this (exposed to a note, or active in the
# week) is counted in OTHER, never shown on its own: broken down by an attribute such as
# an e-mail address, a row would be one user, and whether they read the note.
MIN_SEGMENT_USERS = 5
# The longest range a page or the API is asked for, in days (a leap year).
MAX_RANGE_DAYS = 366
# No product has data from before this day; it also keeps date arithmetic off the
# calendar's edge (a week before 1 January of year 1 does not exist).
FIRST_DAY = date(1970, 1, 1)
WEEK = 7
COMMENTS_PER_PAGE = 50
MAX_PER_PAGE = 200
MAX_SEARCH_LENGTH = 200
# The reaction counted as positive in the product's ranking of notes.
POSITIVE = "👍"
# Users read at a time by the non-readers' export.
_BATCH = 2_000
# The temporary files a pseudonymised export is sorted through: one per hex digit.
_SORT_FILES = 16
# The end of an exposure that never ends: a note is shown until it is archived.
_NEVER = datetime(9999, 12, 31, tzinfo=UTC)
_Z = NormalDist().inv_cdf(0.5 + CONFIDENCE / 2)


# What the pages show ----------------------------------------------------------------------


@dataclass(frozen=True)
class Rate:
    """A share with its 95 % Wilson score interval, as fractions 0..1; all None when
    there is nobody to divide by."""

    value: float | None
    low: float | None
    high: float | None


@dataclass(frozen=True)
class DayPoint:
    """A day of a note's life: exposed users and readers up to its end, since publication."""

    day: date
    exposed: int
    readers: int
    rate: Rate


@dataclass(frozen=True)
class SegmentRow:
    """One value of a segment among a note's exposed users and readers."""

    value: str
    exposed: int
    readers: int
    rate: Rate


@dataclass(frozen=True)
class TimeToRead:
    """How long after publication readers read a note: the nearest-rank median and 90th
    percentile (half, or nine in ten, of the readers had read it within that time)."""

    readers: int
    median: timedelta | None
    p90: timedelta | None


@dataclass(frozen=True)
class NoteInsights:
    """A note's figures; see the module's notes for what each counts."""

    note_id: int
    exposed: int
    readers: int
    rate: Rate
    reads_by_channel: dict[str, int]  # channel -> readers, largest first
    daily: list[DayPoint]  # cumulative, from publication (or ``start``) to ``end``
    time_to_read: TimeToRead
    reactions: dict[str, int]  # every reaction -> how many users chose it now
    reactions_daily: list[tuple[date, dict[str, int]]]  # new reactions, by the day given
    segment: str | None
    segments: list[SegmentRow]  # top 20 values by exposed users, then "Other"
    counted_until: datetime | None


@dataclass(frozen=True)
class NoteRank:
    """A note published in a product page's range, with its figures up to the range's
    end: exposed users, readers, reactions and how many of them were positive."""

    note_id: int
    version: str
    title: str
    published_at: datetime
    exposed: int
    readers: int
    rate: Rate
    reactions: int
    positive: int


@dataclass(frozen=True)
class Totals:
    """Every note published in a product page's range, together, up to the range's end:
    how many, the users they went out to and their readers (a user counted once per
    note), the read rate with its 95 % Wilson interval, and the reactions given.

    The rate is each note's capped readers (at most its exposed users) over all exposed
    users: the mean of the notes' own rates, weighted by their reach, so a note read
    mostly by e-mail cannot lift the others'."""

    notes: int
    exposed: int
    readers: int
    rate: Rate
    reactions: int


@dataclass(frozen=True)
class WeekPoint:
    """Weekly active users of the 7 days ending ``week_end``."""

    week_end: date
    users: int


@dataclass(frozen=True)
class VersionShare:
    """Users active in the 7 days ending the range's last day who ran ``version`` (the
    version they were seen on first in those days), and their share of all active users."""

    version: str
    users: int
    share: float


@dataclass(frozen=True)
class ActiveRow:
    """Users active in the 7 days ending the range's last day with one segment value."""

    value: str
    users: int
    share: float


@dataclass(frozen=True)
class EmailRow:
    """A note's e-mail to subscribers: messages sent, bounced, unsubscribes within 7 days
    of a message, and reads through the e-mail's "read on the web" link."""

    note_id: int
    version: str
    title: str
    sent: int
    bounced: int
    unsubscribed: int
    web_reads: int


@dataclass(frozen=True)
class SubscriberPoint:
    """A day of the subscriber list: confirmations and unsubscribes on it, and the
    subscribers left at its end (confirmed, less unsubscribed and bounced, since the
    first)."""

    day: date
    confirmed: int
    unsubscribed: int
    total: int


@dataclass(frozen=True)
class Range:
    """Days from ``start`` to ``end``, both included, and how a page names them."""

    start: date
    end: date
    label: str


@dataclass(frozen=True)
class ProductInsights:
    """A product's figures over a range; see the module's notes for what each counts."""

    range: Range
    totals: Totals  # every note published in the range, not only those ranked
    by_rate: list[NoteRank]  # notes published in the range, highest read rate first: top 20
    by_reactions: list[NoteRank]  # the same notes, most reactions first: top 20
    weekly_active: list[WeekPoint]  # each day of the range up to today
    versions: list[VersionShare]  # top 20 + "Other"
    email: list[EmailRow]  # notes published in the range that were e-mailed, newest first
    subscribers: list[SubscriberPoint]  # each day of the range up to today
    segment: str | None
    active_by_segment: list[ActiveRow]  # top 20 + "Other"
    counted_until: datetime | None


@dataclass(frozen=True)
class Comment:
    """A reaction with its comment, without who wrote it: viewers read these."""

    reaction: str
    comment: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class CommentsPage:
    items: list[Comment]
    total: int
    page: int
    pages: int


# Rates ------------------------------------------------------------------------------------


def read_rate(readers: int, exposed: int) -> Rate:
    """Readers among exposed users, capped at 100 %, with the 95 % Wilson score interval.

    The normal quantile comes from the standard library: scipy would cost a page 0.6 s
    and 80 MB the first time a process shows one, for a constant."""
    if exposed <= 0:
        return Rate(None, None, None)
    n, share = exposed, min(readers, exposed) / exposed
    spread = _Z * _Z / n
    centre = (share + spread / 2) / (1 + spread)
    margin = _Z * math.sqrt(share * (1 - share) / n + spread / (4 * n)) / (1 + spread)
    # The interval holds the share; in floating point its ends miss 0 and 1 by a hair
    # (1 - 1e-16 for everyone read it), which would put a rate of 100 % outside its own.
    return Rate(share, max(0.0, min(share, centre - margin)), min(1.0, max(share, centre + margin)))


# Ranges and segments --------------------------------------------------------------------------


def _day_label(day: date) -> str:
    return f"{day.day} {day:%b %Y}"


def _range(start: date, end: date) -> Range:
    return Range(start, end, f"{_day_label(start)} – {_day_label(end)}")


def check_range(start: date | None, end: date | None) -> None:
    """Raise ValidationFailed for a range that ends before it starts, is longer than
    :data:`MAX_RANGE_DAYS`, or has a day before :data:`FIRST_DAY`: callers check a range
    asked for with it before they count days from it, which a day in year 1 would take
    off the calendar."""
    if start is not None and start < FIRST_DAY:
        raise ValidationFailed({"start": f"Pick a day from {FIRST_DAY.year} on."})
    if end is not None and end < FIRST_DAY:
        raise ValidationFailed({"end": f"Pick a day from {FIRST_DAY.year} on."})
    if start is not None and end is not None:
        if start > end:
            raise ValidationFailed({"end": "The range ends before it starts."})
        if (end - start).days + 1 > MAX_RANGE_DAYS:
            raise ValidationFailed({"start": f"Pick at most {MAX_RANGE_DAYS} days."})


def _segment(session: Session, product: Product, by: str | None) -> str | None:
    """The segment asked for, None for none; ValidationFailed for one the product's
    users do not have."""
    if not by:
        return None
    if by not in rollups.segments(session, product):
        shown = by if len(by) <= 64 else by[:64] + "…"
        raise ValidationFailed(
            {"by": f"“{shown}” is not an attribute this product's users have been seen with."}
        )
    return by


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def _top(
    counts: Mapping[str, tuple[int, ...]], *, fewest: int = MIN_SEGMENT_USERS
) -> list[tuple[str, tuple[int, ...]]]:
    """The :data:`TOP_VALUES` values with the largest first figure (then second, then by
    name) of those whose first figure, their users, is at least ``fewest``; the rest, the
    values with fewer users and the roll-up's own "(other)" (values past the ones it
    keeps), summed as :data:`OTHER`: a row only when something was summed into it."""
    shown_alone = {
        value: figures
        for value, figures in counts.items()
        if value != rollups.OTHER and figures[0] >= fewest
    }
    ranked = sorted(shown_alone.items(), key=lambda item: (*(-n for n in item[1]), item[0]))
    rest = [figures for _, figures in ranked[TOP_VALUES:]]
    rest += [figures for value, figures in counts.items() if value not in shown_alone]
    shown = ranked[:TOP_VALUES]
    if rest:
        shown.append((OTHER, tuple(map(sum, zip(*rest, strict=True)))))
    return shown


# Reading the roll-up ------------------------------------------------------------------------


def _rows(product_id: int, note_ids: int | Sequence[int], metric: str | Sequence[str]) -> Any:
    """A WHERE clause over one product's roll-up rows of some notes and metrics."""
    notes = [note_ids] if isinstance(note_ids, int) else list(note_ids)
    metrics = [metric] if isinstance(metric, str) else list(metric)
    return and_(
        Rollup.product_id == product_id, Rollup.note_id.in_(notes), Rollup.metric.in_(metrics)
    )


def _first_visits(first: date, days: Sequence[date]) -> ColumnElement[bool]:
    """Active rows that are a user's first visit in a window starting on ``first``: on
    day e, those whose previous visit was before ``first`` (bucket > e - first)."""
    return or_(*(and_(Rollup.day == day, Rollup.bucket > (day - first).days) for day in days))


def _weekly_by_value(
    session: Session, product_id: int, dimension: str, last: date
) -> dict[str, int]:
    """Users active in the 7 days ending ``last``, per value of ``dimension``."""
    first = last - timedelta(days=WEEK - 1)
    rows = session.execute(
        select(Rollup.value, func.sum(Rollup.count))
        .where(
            _rows(product_id, 0, "active"),
            Rollup.dimension == dimension,
            Rollup.day >= first,
            Rollup.day <= last,
            _first_visits(first, _days(first, last)),
        )
        .group_by(Rollup.value)
    )
    return {value: int(users) for value, users in rows}


def _shares(counts: Mapping[str, int], *, fewest: int) -> list[tuple[str, int, float]]:
    """Each value's users and their share of all, ranked and summed as :func:`_top`."""
    total = sum(counts.values())
    ranked = _top({value: (users,) for value, users in counts.items()}, fewest=fewest)
    return [(value, users, users / total if total else 0.0) for value, (users,) in ranked]


# A note -----------------------------------------------------------------------------------


def note_insights(
    session: Session,
    note: Note,
    *,
    by: str | None = None,
    start: date | None = None,
    end: date | None = None,
    now: datetime,
) -> NoteInsights:
    """A note's figures, cumulative since its publication up to the end of ``end`` (or
    today); the daily series runs from publication (or ``start``, if later) to then, at
    most its last :data:`MAX_RANGE_DAYS` days. ``by`` breaks exposed users and readers
    down by a segment (values fewer than :data:`MIN_SEGMENT_USERS` were exposed to are
    counted in Other). Raise ValidationFailed
    for a segment the product does not have or a range that is not one (see
    :func:`check_range`). A note not published by ``now`` has zeros and empty series.
    """
    product = note.product
    segment = _segment(session, product, by)
    check_range(start, end)
    counted_until = rollups.counted_until(session, product)
    if note.published_at is None or note.published_at > now:
        return _nothing_yet(note, segment, counted_until)
    published_on = note.published_at.astimezone(UTC).date()
    today = now.astimezone(UTC).date()
    last = min(today, end) if end is not None else today
    # A note published long ago (an import dated year 1) would draw a point for each day
    # since, and cost a page seconds: the series keeps the last days of the range. Its
    # first point still counts everything since publication.
    first = max(published_on, start or published_on, last - timedelta(days=MAX_RANGE_DAYS - 1))
    where = and_(_rows(product.id, note.id, ("exposed", "read")), Rollup.day <= last)

    before: Counter[str] = Counter()
    per_day: dict[date, Counter[str]] = defaultdict(Counter)
    for metric, day, count in session.execute(
        select(Rollup.metric, Rollup.day, func.sum(Rollup.count))
        .where(where, Rollup.dimension == "")
        .group_by(Rollup.metric, Rollup.day)
    ):
        (per_day[day] if day >= first else before)[metric] += int(count)
    daily, exposed, readers = [], before["exposed"], before["read"]
    for day in _days(first, last):
        exposed += per_day[day]["exposed"]
        readers += per_day[day]["read"]
        daily.append(DayPoint(day, exposed, readers, read_rate(readers, exposed)))

    dimensions = ["channel"] + ([f"seg:{segment}"] if segment else [])
    channels: Counter[str] = Counter()
    values: dict[str, Counter[str]] = defaultdict(Counter)
    for metric, dimension, value, count in session.execute(
        select(Rollup.metric, Rollup.dimension, Rollup.value, func.sum(Rollup.count))
        .where(where, Rollup.dimension.in_(dimensions))
        .group_by(Rollup.metric, Rollup.dimension, Rollup.value)
    ):
        if dimension == "channel":
            channels[value] += int(count)
        else:
            values[value][metric] += int(count)
    ranked = _top({value: (c["exposed"], c["read"]) for value, c in values.items()})
    reactions, reactions_daily = _reactions(session, note, first, last)
    return NoteInsights(
        note_id=note.id,
        exposed=exposed,
        readers=readers,
        rate=read_rate(readers, exposed),
        reads_by_channel={c: n for c, n in channels.most_common() if n},
        daily=daily,
        time_to_read=time_to_read(session, note, last=last, counted_until=counted_until),
        reactions=reactions,
        reactions_daily=reactions_daily,
        segment=segment,
        segments=[SegmentRow(v, e, r, read_rate(r, e)) for v, (e, r) in ranked],
        counted_until=counted_until,
    )


def _nothing_yet(note: Note, segment: str | None, counted_until: datetime | None) -> NoteInsights:
    return NoteInsights(
        note_id=note.id,
        exposed=0,
        readers=0,
        rate=read_rate(0, 0),
        reads_by_channel={},
        daily=[],
        time_to_read=TimeToRead(0, None, None),
        reactions=dict.fromkeys(REACTIONS, 0),
        reactions_daily=[],
        segment=segment,
        segments=[],
        counted_until=counted_until,
    )


def time_to_read(
    session: Session, note: Note, *, last: date, counted_until: datetime | None
) -> TimeToRead:
    """The exact median and 90th percentile of the time from publication to each read up
    to the end of ``last`` that the roll-up has counted (at or before ``counted_until``:
    the page says how many readers these are beside the roll-up's readers, which must
    agree; none before its first run), from the receipts through their (note, read_at)
    index: a count, then the k-th read in time order. A read before publication (of a
    note published again later) is left out."""
    if note.published_at is None or counted_until is None:
        return TimeToRead(0, None, None)
    published_at = note.published_at
    reads = select(ReadReceipt.read_at).where(
        ReadReceipt.note_id == note.id,
        ReadReceipt.read_at >= published_at,
        ReadReceipt.read_at < rollups.start_of(last + timedelta(days=1)),
        ReadReceipt.read_at <= counted_until,
    )
    readers = session.scalar(reads.with_only_columns(func.count())) or 0
    if readers == 0:
        return TimeToRead(0, None, None)

    def percentile(percent: int) -> timedelta:
        rank = -(-percent * readers // 100)  # nearest rank: ceil(p * n), from 1
        # From the nearer end of the index, which OFFSET walks an entry at a time: the
        # 90th percentile of a million reads skips 100,000 of them, not 900,000.
        if rank - 1 <= readers - rank:
            ordered = reads.order_by(ReadReceipt.read_at).offset(rank - 1)
        else:
            ordered = reads.order_by(ReadReceipt.read_at.desc()).offset(readers - rank)
        read_at: datetime = session.scalars(ordered.limit(1)).one()
        return read_at - published_at

    return TimeToRead(readers, percentile(50), percentile(90))


def _reactions(
    session: Session, note: Note, first: date, last: date
) -> tuple[dict[str, int], list[tuple[date, dict[str, int]]]]:
    """How many users chose each reaction now (every reaction named, 0 for none), and the
    reactions first given on each day from ``first`` to ``last`` (as chosen now), days
    without any included. One grouped query: the note's reactions grow with its readers,
    and are read once, not once for each figure."""
    day = support_impact.UtcDay(Reaction.created_at)
    totals = dict.fromkeys(REACTIONS, 0)
    daily: dict[date, dict[str, int]] = {d: dict.fromkeys(REACTIONS, 0) for d in _days(first, last)}
    for on, reaction, count in session.execute(
        select(day, Reaction.reaction, func.count())
        .where(Reaction.note_id == note.id)
        .group_by(day, Reaction.reaction)
    ):
        totals[reaction] = totals.get(reaction, 0) + count
        if (given_on := date.fromisoformat(on)) in daily:
            daily[given_on][reaction] = count
    return totals, list(daily.items())


# A product --------------------------------------------------------------------------------


def product_insights(
    session: Session,
    product: Product,
    *,
    start: date,
    end: date,
    by: str | None,
    now: datetime,
) -> ProductInsights:
    """The product's figures over ``start``..``end`` (see the module's notes); the series
    stop at today. ``by`` breaks the week's active users down by a segment. Raise
    ValidationFailed for a segment the product does not have or a range that is not one.
    """
    segment = _segment(session, product, by)
    check_range(start, end)
    today = now.astimezone(UTC).date()
    last = min(end, today)
    notes = _published_in(session, product, start, last, now)
    ranks = _ranks(session, product, notes, last)
    by_rate = sorted(
        ranks,
        key=lambda r: (r.rate.value is None, -(r.rate.value or 0), -r.exposed, -r.note_id),
    )
    by_reactions = sorted(ranks, key=lambda r: (-r.reactions, -r.positive, -r.note_id))
    # Every version in use, however few run it: a version names no one, and a team
    # deprecating one wants to know of the last three users on it.
    versions = _shares(_weekly_by_value(session, product.id, "seg:app_version", last), fewest=1)
    by_value = (
        _shares(
            _weekly_by_value(session, product.id, f"seg:{segment}", last),
            fewest=MIN_SEGMENT_USERS,
        )
        if segment
        else []
    )
    return ProductInsights(
        range=_range(start, end),
        totals=_totals(ranks),
        by_rate=by_rate[:TOP_NOTES],
        by_reactions=by_reactions[:TOP_NOTES],
        weekly_active=weekly_active(session, product, start, last),
        versions=[VersionShare(*row) for row in versions],
        email=_email(session, product, notes, last),
        subscribers=_subscribers(session, product, start, last),
        segment=segment,
        active_by_segment=[ActiveRow(*row) for row in by_value],
        counted_until=rollups.counted_until(session, product),
    )


def _published(product: Product, now: datetime) -> ColumnElement[bool]:
    """The product's outward notes published by ``now``."""
    return and_(
        Note.product_id == product.id, outward_clause(), status_clause(NoteStatus.PUBLISHED, now)
    )


def _published_in(
    session: Session, product: Product, start: date, last: date, now: datetime
) -> list[Note]:
    """The product's outward notes published from ``start`` to the end of ``last``."""
    if last < start:
        return []
    return list(
        session.scalars(
            select(Note)
            .where(
                _published(product, now),
                Note.published_at >= rollups.start_of(start),
                Note.published_at < rollups.start_of(last + timedelta(days=1)),
            )
            .order_by(Note.published_at.desc(), Note.id.desc())
        )
    )


def _ranks(session: Session, product: Product, notes: Sequence[Note], last: date) -> list[NoteRank]:
    """The notes' exposed users and readers up to ``last`` (one grouped query over their
    roll-up rows), and their reactions given by then (one over their reactions)."""
    if not notes:
        return []
    ids = [note.id for note in notes]
    counted: dict[int, Counter[str]] = defaultdict(Counter)
    for note_id, metric, count in session.execute(
        select(Rollup.note_id, Rollup.metric, func.sum(Rollup.count))
        .where(
            _rows(product.id, ids, ("exposed", "read")), Rollup.dimension == "", Rollup.day <= last
        )
        .group_by(Rollup.note_id, Rollup.metric)
    ):
        counted[note_id][metric] = int(count)
    reacted: dict[int, Counter[str]] = defaultdict(Counter)
    for note_id, reaction, count in session.execute(
        select(Reaction.note_id, Reaction.reaction, func.count())
        .where(
            Reaction.note_id.in_(ids),
            Reaction.created_at < rollups.start_of(last + timedelta(days=1)),
        )
        .group_by(Reaction.note_id, Reaction.reaction)
    ):
        reacted[note_id][reaction] = count
    ranks = []
    for note in notes:
        assert note.published_at is not None  # noqa: S101 - published notes only
        exposed, readers = counted[note.id]["exposed"], counted[note.id]["read"]
        ranks.append(
            NoteRank(
                note_id=note.id,
                version=note.version,
                title=note.title,
                published_at=note.published_at,
                exposed=exposed,
                readers=readers,
                rate=read_rate(readers, exposed),
                reactions=sum(reacted[note.id].values()),
                positive=reacted[note.id][POSITIVE],
            )
        )
    return ranks


def _totals(ranks: Sequence[NoteRank]) -> Totals:
    """Every ranked note's figures together (see :class:`Totals`): the ranking read them
    all, in one grouped query over their roll-up rows, before keeping the top 20."""
    exposed = sum(rank.exposed for rank in ranks)
    capped = sum(min(rank.readers, rank.exposed) for rank in ranks)
    return Totals(
        notes=len(ranks),
        exposed=exposed,
        readers=sum(rank.readers for rank in ranks),
        rate=read_rate(capped, exposed),
        reactions=sum(rank.reactions for rank in ranks),
    )


def weekly_active(session: Session, product: Product, first: date, last: date) -> list[WeekPoint]:
    """Weekly active users of each day from ``first`` to ``last``: one grouped query over
    the product's "active" rows from a week before ``first``."""
    if last < first:
        return []
    by_day: dict[date, Counter[int]] = defaultdict(Counter)
    for day, bucket, count in session.execute(
        select(Rollup.day, Rollup.bucket, func.sum(Rollup.count))
        .where(
            _rows(product.id, 0, "active"),
            Rollup.dimension == "",
            Rollup.day >= first - timedelta(days=WEEK - 1),
            Rollup.day <= last,
        )
        .group_by(Rollup.day, Rollup.bucket)
    ):
        by_day[day][bucket] = int(count)
    points = []
    for end in _days(first, last):
        window_start = end - timedelta(days=WEEK - 1)
        users = sum(
            count
            for day in _days(window_start, end)
            for bucket, count in by_day[day].items()
            if bucket > (day - window_start).days
        )
        points.append(WeekPoint(end, users))
    return points


def _email(session: Session, product: Product, notes: Sequence[Note], last: date) -> list[EmailRow]:
    """The e-mail figures of the notes that were e-mailed, up to ``last``, newest first."""
    if not notes:
        return []
    ids = [note.id for note in notes]
    counted: dict[int, Counter[str]] = defaultdict(Counter)
    # Two queries, each down one stretch of the key: one ORed WHERE would read every
    # segment's read rows of the notes to find the e-mail channel's.
    for note_id, value, count in session.execute(
        select(Rollup.note_id, Rollup.value, func.sum(Rollup.count))
        .where(_rows(product.id, ids, "email"), Rollup.dimension == "status", Rollup.day <= last)
        .group_by(Rollup.note_id, Rollup.value)
    ):
        counted[note_id][value] += int(count)
    for note_id, count in session.execute(
        select(Rollup.note_id, func.sum(Rollup.count))
        .where(
            _rows(product.id, ids, "read"),
            Rollup.dimension == "channel",
            Rollup.value == "email",
            Rollup.day <= last,
        )
        .group_by(Rollup.note_id)
    ):
        counted[note_id]["web_reads"] += int(count)
    statuses = ("sent", "bounced", "skipped", "waiting")
    return [
        EmailRow(
            note_id=note.id,
            version=note.version,
            title=note.title,
            sent=counted[note.id]["sent"],
            bounced=counted[note.id]["bounced"],
            unsubscribed=counted[note.id]["unsubscribed"],
            web_reads=counted[note.id]["web_reads"],
        )
        for note in notes
        if any(counted[note.id][status] for status in statuses)
    ]


def _subscribers(
    session: Session, product: Product, first: date, last: date
) -> list[SubscriberPoint]:
    """Each day's confirmations and unsubscribes from ``first`` to ``last``, and the
    subscribers at its end, from every day's events since the first (one grouped query
    over a few rows a day)."""
    if last < first:
        return []
    before: Counter[str] = Counter()
    per_day: dict[date, Counter[str]] = defaultdict(Counter)
    for day, value, count in session.execute(
        select(Rollup.day, Rollup.value, func.sum(Rollup.count))
        .where(_rows(product.id, 0, "subscribers"), Rollup.dimension == "event", Rollup.day <= last)
        .group_by(Rollup.day, Rollup.value)
    ):
        (per_day[day] if day >= first else before)[value] += int(count)
    points = []
    total = before["confirmed"] - before["unsubscribed"] - before["bounced"]
    for day in _days(first, last):
        events = per_day[day]
        total += events["confirmed"] - events["unsubscribed"] - events["bounced"]
        points.append(SubscriberPoint(day, events["confirmed"], events["unsubscribed"], total))
    return points


# Ranges to compare ------------------------------------------------------------------------


def releases(session: Session, product: Product, *, now: datetime) -> list[Range]:
    """Each release's window, newest first: from the day its first note went out to the
    day before the next release's did (the newest: to today), labelled "Release 2.4.0".
    Releases are the versions of the product's published outward notes; two that went
    out on the same day share it. A window longer than :data:`MAX_RANGE_DAYS` keeps its
    last days, and its label says so, so that any two can be shown and compared."""
    firsts = session.execute(
        select(Note.version, func.min(Note.published_at))
        .where(_published(product, now))
        .group_by(Note.version)
    ).all()
    ranges: list[Range] = []
    end = now.astimezone(UTC).date()
    for version, published_at in sorted(firsts, key=lambda row: (row[1], row[0]), reverse=True):
        assert published_at is not None  # noqa: S101 - published notes only
        start = published_at.astimezone(UTC).date()
        window = Range(start, max(start, end), f"Release {version}")
        if (window.end - window.start).days >= MAX_RANGE_DAYS:
            window = Range(
                window.end - timedelta(days=MAX_RANGE_DAYS - 1),
                window.end,
                f"Release {version}, its last {MAX_RANGE_DAYS} days",
            )
        ranges.append(window)
        # The day before this release's; the calendar's first day has none (an import
        # dated year 1), and any release before it went out that day too.
        end = start - timedelta(days=1) if start > date.min else start
    return ranges


def previous_range(current: Range) -> Range:
    """The range of the same length that ends the day before ``current`` starts."""
    end = current.start - timedelta(days=1)
    return _range(end - (current.end - current.start), end)


# Comments -----------------------------------------------------------------------------------


def _search_text(query: str) -> str:
    """What a comment search looks for: the text without surrounding spaces, or NUL
    characters, which no comment holds and PostgreSQL refuses in a string;
    ValidationFailed when too long."""
    query = query.replace("\x00", "").strip()
    if len(query) > MAX_SEARCH_LENGTH:
        raise ValidationFailed({"q": f"Search for at most {MAX_SEARCH_LENGTH} characters."})
    return query


def _comments(
    note: Note, query: str, reaction: str | None
) -> Select[str, str | None, datetime, datetime]:
    """The note's reactions with a comment, holding ``query`` (case aside) and of
    ``reaction`` when given; ValidationFailed for a search too long or a reaction that is
    none of :data:`~announcements.reads.REACTIONS`."""
    if reaction is not None and reaction not in REACTIONS:
        raise ValidationFailed({"reaction": "Pick one of " + ", ".join(REACTIONS) + "."})
    query = _search_text(query)
    statement = select(
        Reaction.reaction, Reaction.comment, Reaction.created_at, Reaction.updated_at
    ).where(Reaction.note_id == note.id, Reaction.comment.is_not(None), Reaction.comment != "")
    if reaction is not None:
        statement = statement.where(Reaction.reaction == reaction)
    if query:
        # lower() folds only ASCII on SQLite: "É" finds "É" there, not "é".
        pattern = like_pattern(query.lower())
        statement = statement.where(func.lower(Reaction.comment).like(pattern, escape="\\"))
    return statement.order_by(Reaction.created_at.desc(), Reaction.end_user_id.desc())


def comments(
    session: Session,
    note: Note,
    *,
    query: str = "",
    reaction: str | None = None,
    page: int = 1,
    per_page: int = COMMENTS_PER_PAGE,
) -> CommentsPage:
    """A page of the note's comments, newest first, filtered as :func:`_comments` says;
    a page past the last shows the last. Never who wrote them."""
    statement = _comments(note, query, reaction)
    per_page = min(max(per_page, 1), MAX_PER_PAGE)
    total = session.scalar(select(func.count()).select_from(statement.order_by(None).subquery()))
    pages = max(1, -(-(total or 0) // per_page))
    page = min(max(page, 1), pages)
    rows = session.execute(statement.offset((page - 1) * per_page).limit(per_page))
    return CommentsPage([_comment(*row) for row in rows], total or 0, page, pages)


def _comment(
    reaction: str, text: str | None, created_at: datetime, updated_at: datetime
) -> Comment:
    return Comment(reaction, text or "", created_at, updated_at)


def comments_csv(
    session: Session,
    note: Note,
    *,
    query: str = "",
    reaction: str | None = None,
    by: TeamMember | None,
    now: datetime,
) -> Iterator[str]:
    """The note's comments, filtered as on the page, as CSV a line at a time: reaction,
    comment, when given and when last changed; never who wrote them, and no cell read
    as a formula. In the audit log before the first line: the caller commits, then
    streams. ValidationFailed as :func:`comments`."""
    statement = _comments(note, query, reaction)
    filters = []
    if reaction is not None:
        filters.append(f"reaction {reaction}")
    if text := _search_text(query):
        filters.append(f"holding “{text}”")
    summary = "Downloaded its comments as CSV" + "".join(f", {f}" for f in filters)
    audit.record(session, note.product, by, "note.comments_exported", summary, note=note, now=now)

    def rows() -> Iterator[list[str]]:
        yield ["reaction", "comment", "created_at", "updated_at"]
        for row in session.execute(statement, execution_options={"yield_per": _BATCH}):
            comment = _comment(*row)
            yield [
                csv_safe(comment.reaction),
                csv_safe(comment.comment),
                comment.created_at.isoformat(),
                comment.updated_at.isoformat(),
            ]

    return csv_lines(rows())


# Who has not read a note ------------------------------------------------------------------------


def export_attributes(session: Session, note: Note) -> list[str]:
    """What the non-readers' export can add as columns: the built-ins, then the product's
    segments and the attributes its recently seen users have, each once."""
    names = [
        *rollups.BUILT_IN_SEGMENTS,
        *rollups.segments(session, note.product),
        *notices.attribute_names(session, note),
    ]
    return list(dict.fromkeys(names))


def pseudonym(external_id: str, key: bytes) -> str:
    """A user's id in a pseudonymised export: the hex HMAC-SHA256 of it under ``key``, the
    same across one product's exports and unlinkable without the key."""
    return hmac.new(key, external_id.encode(), hashlib.sha256).hexdigest()


def non_readers_csv(
    session: Session,
    note: Note,
    attributes: Sequence[str],
    *,
    pseudonymise: bool,
    key: bytes,
    by: TeamMember | None,
    now: datetime,
) -> Iterator[str]:
    """The users the note went out to who have not read it, as CSV a line at a time: their
    id and when the widget last saw them, most recently seen first, or pseudonymised:
    :func:`pseudonym` of the id and the day last seen, in the pseudonyms' order; then the
    ``attributes`` chosen (blank where a user has none); no cell read as a formula.

    Exposed, as the roll-up counts them but from the users' own rows: seen since the note
    went out, on a version that includes it or on none; audience rules aside. In the
    audit log (who, which attributes, pseudonymised or not) before the first line: the
    caller commits, then streams. Raise ValidationFailed for an attribute not in
    :func:`export_attributes`, InvalidTransition for a note not published by ``now``."""
    chosen = notices.chosen_attributes(attributes)
    known = set(export_attributes(session, note))
    unknown = [name for name in chosen if name not in known]
    if unknown:
        shown = unknown[0] if len(unknown[0]) <= 64 else unknown[0][:64] + "…"
        raise ValidationFailed({"attribute": f"This product's users have no “{shown}”."})
    if note.published_at is None or note.published_at > now:
        raise InvalidTransition("The note has not gone out: nobody has been shown it yet.")
    summary = (
        "Downloaded who has not read it as CSV, with "
        + (", ".join(chosen) if chosen else "no attributes")
        + ("; ids pseudonymised" if pseudonymise else "; ids as they are")
    )
    audit.record(
        session, note.product, by, "note.non_readers_exported", summary, note=note, now=now
    )
    if not pseudonymise:
        return csv_lines(_non_readers(session, note, chosen, None))
    return csv_lines(_by_pseudonym(_non_readers(session, note, chosen, key)))


def _non_readers(
    session: Session, note: Note, attributes: Sequence[str], key: bytes | None
) -> Iterator[list[str]]:
    """The rows of :func:`non_readers_csv`, a batch of users at a time, most recently seen
    first; with a ``key``, pseudonymised and the day last seen only: the moment to the
    microsecond is one user's alone, and would lead from a pseudonym to the same user's
    row in a plain export."""
    assert note.published_at is not None  # noqa: S101 - checked by the caller
    if key is None:
        yield ["external_id", "last_seen_at", *attributes]
    else:
        yield ["pseudonym", "last_seen_on", *attributes]
    on = support_impact.including(
        note.version, support_impact.app_versions(session, note.product_id)
    )
    statement = (
        select(
            EndUser.external_id,
            EndUser.last_seen_at,
            EndUser.locale,
            EndUser.app_version,
            EndUser.attributes,
        )
        .where(
            EndUser.product_id == note.product_id,
            support_impact.exposed_clause(note.published_at, _NEVER, on),
            ~exists().where(ReadReceipt.note_id == note.id, ReadReceipt.end_user_id == EndUser.id),
        )
        .order_by(EndUser.last_seen_at.desc(), EndUser.id.desc())
    )
    rows: Iterable[Any] = session.execute(statement, execution_options={"yield_per": _BATCH})
    for external_id, last_seen_at, locale, app_version, values in rows:
        own = {**(values or {}), "locale": locale, "app_version": app_version}
        cells = [own.get(name) for name in attributes]
        yield [
            csv_safe(external_id) if key is None else pseudonym(external_id, key),
            last_seen_at.isoformat() if key is None else last_seen_at.date().isoformat(),
            *("" if value is None else csv_safe(str(value)) for value in cells),
        ]


def _by_pseudonym(rows: Iterator[list[str]]) -> Iterator[list[str]]:
    """The header row, then the others in the order of their first cell, a pseudonym:
    ordered by when users were seen, or by their ids, the rows would match a plain
    export's one for one. Sorted through temporary files, one per first hex digit of
    the pseudonym, each read back and sorted in turn: a million users are never in
    memory at once."""
    yield next(rows)
    with contextlib.ExitStack() as files:
        buckets = [
            files.enter_context(tempfile.TemporaryFile("w+", encoding="utf-8", newline=""))
            for _ in range(_SORT_FILES)
        ]
        writers = [csv.writer(bucket) for bucket in buckets]
        for row in rows:
            writers[int(row[0][0], 16)].writerow(row)
        for bucket in buckets:
            bucket.seek(0)
            yield from sorted(csv.reader(bucket))
