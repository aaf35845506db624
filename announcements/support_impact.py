"""Support impact: did telling users about a change cut the tickets that follow it?

For each published outward note, and for each release (all the published notes of one
version), the worker counts, in SQL and never row by row in Python:

- **exposed** users: the product's end users seen by the widget since the note went out
  (``last_seen_at >= P``), first seen before its window closed (``first_seen_at < P +
  W``: one who came later could not have written in during it), on a version that
  includes it (not older than the note's), or on no version the host told us of (the
  widget shows those every note). Audience rules play no part in exposure yet: a
  targeted note counts every user on a recent version;
- **readers**: exposed users with a read receipt for the note (any channel); the others
  are non-readers;
- **attributed tickets**: tickets matched to an exposed user, opened in the note's window
  ``[P, P + W)`` (``W`` = ``Product.support_window_days``) and, when the note lists
  support topics, carrying one of them as a tag or in the subject; a note without topics
  counts every ticket in the window;
- for a note with a hold-back, the same among the treated and the control group, as
  recorded in :class:`~announcements.models.HoldbackAssignment` (the causal estimate).

A release is the same computation over its notes at once: it went out when its first
note did, its window runs ``W`` days from then, a reader read any of its notes, and its
topics are the union of theirs (all tickets as soon as one note has none). A release has
no hold-back of its own: groups are drawn per note.

The answers are kept as :class:`~announcements.models.SupportImpact` rows (a roll-up the
worker refreshes hourly, or at once on request), so the console page and the API read a
few rows however many users a product has. Each row's ``figures`` is a JSON object:

``scope``
    ``"note:12"`` or ``"release:2.4.0"``; ``note_id`` (null for a release), ``note_ids``
    (the notes counted), ``version``, ``title`` ("Release 2.4.0" for a release).
``published_at``, ``window_days``, ``window_end``, ``window_open``
    When it went out (ISO 8601, UTC), the window in days, when the window ends, and
    whether it was still running when the figures were computed.
``topics``
    The folded topics the tickets were matched on; ``[]``: every ticket counts.
``exposed``, ``readers``, ``non_readers``, ``tickets_readers``, ``tickets_non_readers``
    Counts, as above.
``rate_readers``, ``rate_non_readers``
    ``{"per_1000", "low", "high"}``: tickets per 1,000 users with the exact (Garwood)
    95 % Poisson interval; all three null for a group of no users.
``difference``
    Readers against non-readers: ``{"ratio", "ratio_low", "ratio_high",
    "percent_fewer", "low", "high"}`` (percent fewer = (1 - ratio) x 100, so a negative
    figure means more tickets), with the exact conditional binomial 95 % interval;
    a bound that is infinite (non-readers opened none) is null. The whole is null when
    there is nothing to compare: a group with no users, or no ticket at all.
``verdict``
    The difference in a sentence, only when the interval excludes a ratio of 1:
    "Readers opened 64 % fewer tickets about export (95 % CI 31–82 %)."; otherwise
    "Not enough data yet."
``before``, ``after``
    ``{"tickets", "active_users", "per_1000"}``: the topic's tickets (every ticket of the
    product, matched or not) in ``[P - W, P)`` and ``[P, P + W)`` per 1,000 users active
    in that window (first seen before it ended, last seen after it began).
``unmatched_tickets``
    Topic tickets in the window that no end user could be matched to.
``holdback``
    Null, or ``{"percent", "treated", "control", "effect", "verdict"}``: the groups as
    ``{"users", "tickets", "per_1000", "low", "high"}``, the effect shaped as
    ``difference`` (treated against control) and its sentence, "Telling users cut tickets
    about export by 68 % (95 % CI 44–81 %): the causal estimate."
``help``
    ``{"shown", "answered", "needs_help"}``: what the notes did when shown to end users
    about to contact support (``Tidings.beforeSupport``), since they went out: how often
    they were shown, how many of those people said one answered their question (a ticket
    deflected) and how many still needed help (:func:`announcements.help.note_counts`).
    A release's are the sums over its notes: a person answers with one note, so its
    ``answered`` is exact; one shown two of its notes counts twice in the other two.
``acknowledgement``
    For a note that requires acknowledgement, ``{"exposed", "acknowledged", "not_yet"}``
    (:func:`announcements.notices.count`): its exposed users as the widget showed it,
    audience included, and which of them pressed "I understand"; null otherwise and for a
    release. Counted here, hourly, because it reads every exposed user.
``daily``
    ``[{"date": "2026-09-17", "tickets": 3}, ...]``: the topic's tickets (all of them,
    matched or not) on each UTC day from ``P - W`` up to the window's end or the time of
    computing, whichever is first; days without tickets included.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Protocol
from typing import cast as typing_cast

from sqlalchemy import (
    ColumnElement,
    String,
    Table,
    and_,
    case,
    delete,
    exists,
    func,
    or_,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.functions import FunctionElement

from announcements import help, holdback, notices, tickets, versions
from announcements.models import (
    EndUser,
    HelpRequest,
    HelpShown,
    HoldbackAssignment,
    Note,
    NoteStatus,
    Product,
    ReadReceipt,
    SupportImpact,
    Ticket,
    outward_clause,
    status_clause,
    utcnow,
)

log = logging.getLogger(__name__)

CONFIDENCE = 0.95
NOT_ENOUGH_DATA = "Not enough data yet."
# What people typed when help showed them a note, listed on the note's page.
HELP_QUERIES_LISTED = 20
# Hold-back assignments are written this many users at a time: on SQLite each batch is a
# short write, so widget calls waiting for the write lock wait for one batch, not for all.
ASSIGNMENT_BATCH = 20_000

WriteTurn = Callable[[], AbstractContextManager[None]]

_impacts = typing_cast(Table, SupportImpact.__table__)
_assignments = typing_cast(Table, HoldbackAssignment.__table__)


# Statistics -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Ratio:
    """A ratio of two rates with its interval; ``math.inf`` where it has no upper bound."""

    value: float
    low: float
    high: float

    @property
    def is_clear(self) -> bool:
        """Whether the interval leaves out "no difference" (a ratio of 1)."""
        return self.high < 1 or self.low > 1


def _stats() -> Any:
    """scipy.stats, imported when first counted with: it costs 0.6 s and 80 MB, which every
    web process and command would pay for pages that only read the stored figures."""
    from scipy import stats

    return stats


def poisson_interval(events: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The exact (Garwood) interval of a Poisson count, from the chi-square quantiles."""
    stats = _stats()
    tail = (1 - confidence) / 2
    low = 0.0 if events == 0 else float(stats.chi2.ppf(tail, 2 * events)) / 2
    high = float(stats.chi2.ppf(1 - tail, 2 * events + 2)) / 2
    return low, high


def rate(events: int, users: int) -> dict[str, float | None]:
    """Events per 1,000 users with the interval of the count; nulls for no users."""
    if users == 0:
        return {"per_1000": None, "low": None, "high": None}
    low, high = poisson_interval(events)
    scale = 1000 / users
    return {"per_1000": events * scale, "low": low * scale, "high": high * scale}


def rate_ratio(events: int, users: int, other_events: int, other_users: int) -> Ratio | None:
    """The ratio of the first group's rate to the second's, with the exact interval that
    conditions on the total: given ``events + other_events`` events, the first group's
    share is binomial, and its interval maps onto the ratio through the group sizes.
    None when there is nothing to compare: an empty group, or no events at all."""
    total = events + other_events
    if users == 0 or other_users == 0 or total == 0:
        return None
    share = (
        _stats().binomtest(events, total).proportion_ci(confidence_level=CONFIDENCE, method="exact")
    )
    scale = other_users / users

    def ratio_at(p: float) -> float:
        return math.inf if p >= 1 else p / (1 - p) * scale

    return Ratio(
        value=ratio_at(events / total),
        low=ratio_at(float(share.low)),
        high=ratio_at(float(share.high)),
    )


def _finite(value: float) -> float | None:
    return None if math.isinf(value) else value


def difference(ratio: Ratio | None) -> dict[str, float | None] | None:
    """A ratio as the figures hold it: the ratio and "percent fewer", infinite bounds null."""
    if ratio is None:
        return None
    return {
        "ratio": _finite(ratio.value),
        "ratio_low": ratio.low,
        "ratio_high": _finite(ratio.high),
        "percent_fewer": _finite((1 - ratio.value) * 100),
        "low": _finite((1 - ratio.high) * 100),
        "high": (1 - ratio.low) * 100,
    }


def _percent(value: float) -> str:
    return f"{value * 100:,.0f}"


def verdict(ratio: Ratio | None, topics: Sequence[str], *, causal: bool = False) -> str:
    """The difference in words, only when its interval leaves out "no difference".

    ``causal`` words it as the hold-back's effect of telling users (treated against
    control) rather than as readers against non-readers."""
    if ratio is None or not ratio.is_clear:
        return NOT_ENOUGH_DATA
    about = f" about {' or '.join(topics)}" if topics else ""
    if ratio.high < 1:
        size = f"{_percent(1 - ratio.value)} %"
        interval = f"95 % CI {_percent(1 - ratio.high)}–{_percent(1 - ratio.low)} %"
        if causal:
            return f"Telling users cut tickets{about} by {size} ({interval}): the causal estimate."
        return f"Readers opened {size} fewer tickets{about} ({interval})."
    if math.isinf(ratio.value):
        # The comparison group opened none: only a lower bound can be said.
        interval = f"95 % CI at least {_percent(ratio.low - 1)} % more"
        if causal:
            return (
                f"Telling users raised tickets{about}; the control group opened none "
                f"({interval}): the causal estimate."
            )
        return f"Readers opened more tickets{about}; non-readers opened none ({interval})."
    size = f"{_percent(ratio.value - 1)} %"
    upper = "∞" if math.isinf(ratio.high) else _percent(ratio.high - 1)
    interval = f"95 % CI {_percent(ratio.low - 1)}–{upper} %"
    if causal:
        return f"Telling users raised tickets{about} by {size} ({interval}): the causal estimate."
    return f"Readers opened {size} more tickets{about} ({interval})."


# SQL pieces --------------------------------------------------------------------------------


class UtcDay(FunctionElement[str]):
    """A timestamp's UTC calendar day as ``YYYY-MM-DD`` text, on either database: SQLite
    stores naive UTC text, PostgreSQL an instant that the session's time zone would shift."""

    type = String()
    inherit_cache = True


@compiles(UtcDay, "sqlite")
def _sqlite_day(element: UtcDay, compiler: Any, **kw: Any) -> str:
    return f"date({compiler.process(element.clauses, **kw)})"


@compiles(UtcDay, "postgresql")
def _postgresql_day(element: UtcDay, compiler: Any, **kw: Any) -> str:
    return f"to_char({compiler.process(element.clauses, **kw)} AT TIME ZONE 'UTC', 'YYYY-MM-DD')"


def app_versions(session: Session, product_id: int) -> list[str]:
    """The distinct versions the product's users run: a short list, read in one grouped
    query, so which of them include a note is decided in Python, as versions."""
    return list(
        session.scalars(
            select(EndUser.app_version)
            .where(EndUser.product_id == product_id, EndUser.app_version.is_not(None))
            .group_by(EndUser.app_version)
        )
    )


def including(version: str, present: Iterable[str]) -> list[str]:
    """The versions in ``present`` that include a note of ``version``: not older. A
    version that cannot be ordered includes nothing (the widget refuses such versions)."""
    wanted = versions.parse(version)
    return [text for text in present if versions.is_valid(text) and versions.parse(text) >= wanted]


def exposed_clause(published_at: datetime, end: datetime, on: Sequence[str]) -> ColumnElement[bool]:
    """End users a note published at ``published_at`` went out to, on the versions ``on``:
    seen since, and first seen before its window ``end``d. A user who came later was never
    there to open a ticket in the window, and would count as a non-reader who opened none.

    It leaves the user's product out: the receipts, tickets and groups it is joined to are
    the product's own already. Said here, it would also steer SQLite's planner into reading
    every recent user through the (product, last seen) index, for a million users, rather
    than following the note's receipts to their users: three times slower, measured on
    200,000 users."""
    version_ok: ColumnElement[bool] = EndUser.app_version.is_(None)
    if on:
        version_ok = or_(EndUser.app_version.in_(on), version_ok)
    return and_(EndUser.last_seen_at >= published_at, EndUser.first_seen_at < end, version_ok)


# What is counted -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Scope:
    """One roll-up row to compute: a note, or a release's notes together. Plain values,
    so the steps that commit between them reload nothing."""

    scope: str
    note_id: int | None
    note_ids: tuple[int, ...]
    version: str
    title: str
    published_at: datetime
    topics: tuple[str, ...]
    holdback_percent: int


def _note_scope(note: Note) -> _Scope:
    assert note.published_at is not None  # noqa: S101 - only published notes are counted
    return _Scope(
        scope=f"note:{note.id}",
        note_id=note.id,
        note_ids=(note.id,),
        version=note.version,
        title=note.title,
        published_at=note.published_at,
        topics=tuple(note.support_topics or ()),
        holdback_percent=note.holdback_percent or 0,
    )


def _release_scope(version: str, notes: Sequence[_Scope]) -> _Scope:
    topics: list[str] = []
    for note in notes:
        topics.extend(topic for topic in note.topics if topic not in topics)
    every_ticket = any(not note.topics for note in notes)
    return _Scope(
        scope=f"release:{version}",
        note_id=None,
        note_ids=tuple(note.note_id for note in notes if note.note_id is not None),
        version=version,
        title=f"Release {version}",
        published_at=min(note.published_at for note in notes),
        topics=() if every_ticket else tuple(topics),
        holdback_percent=0,
    )


def _published_notes(session: Session, product_id: int, now: datetime) -> list[Note]:
    return list(
        session.scalars(
            select(Note)
            .where(
                Note.product_id == product_id,
                outward_clause(),
                status_clause(NoteStatus.PUBLISHED, now),
            )
            .order_by(Note.published_at, Note.id)
        )
    )


def _scopes(notes: Sequence[Note]) -> list[_Scope]:
    """A scope per note, then one per release."""
    per_note = [_note_scope(note) for note in notes]
    by_version: dict[str, list[_Scope]] = {}
    for scope in per_note:
        by_version.setdefault(scope.version, []).append(scope)
    return per_note + [_release_scope(v, group) for v, group in by_version.items()]


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def daily_tickets(
    session: Session,
    product_id: int,
    topics: Sequence[str],
    start: datetime,
    end: datetime,
) -> list[dict[str, Any]]:
    """The topic's tickets (every ticket, matched to a user or not) on each UTC day of
    ``[start, end)``, days without any included; one grouped query."""
    if end <= start:
        return []
    day = UtcDay(Ticket.created_at)
    query = select(day, func.count()).where(
        Ticket.product_id == product_id,
        Ticket.created_at >= start,
        Ticket.created_at < end,
        tickets.topic_clause(topics),
    )
    counts: dict[str, int] = {d: n for d, n in session.execute(query.group_by(day))}
    first: date = start.date()
    last: date = (end - timedelta(microseconds=1)).date()
    days = (first + timedelta(days=n) for n in range((last - first).days + 1))
    return [{"date": d.isoformat(), "tickets": counts.get(d.isoformat(), 0)} for d in days]


def _per_1000(events: int, users: int) -> float | None:
    return events * 1000 / users if users else None


@dataclass(frozen=True)
class _Population:
    """The product's users counted once, by version and by how many of the scopes' edges
    their first and last sightings are at or after; every scope's exposed and active users
    are then read off these counts, where a count per scope would read every user again
    for each of them (seconds each at a million users).

    ``by_version[version][k][j]``: users on ``version`` last seen at or after the k-th
    last edge (counting from 1; 0 is everyone) and first seen before the (j+1)-th first
    edge; ``active_grid`` the same over every version."""

    last_edges: list[datetime]
    first_edges: list[datetime]
    by_version: dict[str | None, list[list[int]]]
    active_grid: list[list[int]]

    def exposed(self, since: datetime, end: datetime, on: Sequence[str]) -> int:
        """Users last seen at or after ``since`` and first seen before ``end``, on one of
        the versions ``on`` or on none."""
        seen, new = self.last_edges.index(since) + 1, self.first_edges.index(end)
        return sum(
            grid[seen][new]
            for version, grid in self.by_version.items()
            if version is None or version in on
        )

    def active(self, start: datetime, end: datetime) -> int:
        """Users first seen before ``end`` and last seen at or after ``start``."""
        seen, new = self.last_edges.index(start) + 1, self.first_edges.index(end)
        return self.active_grid[seen][new]


def _edges_before(column: Any, edges: Sequence[datetime]) -> Any:
    """How many of ``edges`` (in order) are at or before the column's value."""
    return case(
        *((column >= edge, number + 1) for number, edge in reversed(list(enumerate(edges)))),
        else_=0,
    )


def _population(
    session: Session, product_id: int, scopes: Sequence[_Scope], window: timedelta
) -> _Population:
    """One grouped pass over the product's users for every scope's user counts."""
    if not scopes:  # no published note: nothing to count
        return _Population([], [], {}, [[0]])
    starts = {scope.published_at for scope in scopes}
    last_edges = sorted(starts | {start - window for start in starts})
    first_edges = sorted(starts | {start + window for start in starts})
    ranked = (
        select(
            EndUser.app_version.label("version"),
            _edges_before(EndUser.last_seen_at, last_edges).label("last"),
            _edges_before(EndUser.first_seen_at, first_edges).label("first"),
        )
        .where(EndUser.product_id == product_id)
        .subquery()
    )
    rows = session.execute(
        select(ranked.c.version, ranked.c.last, ranked.c.first, func.count()).group_by(
            ranked.c.version, ranked.c.last, ranked.c.first
        )
    )
    lasts, firsts = len(last_edges) + 1, len(first_edges) + 1
    by_version: dict[str | None, list[list[int]]] = {}
    grid = [[0] * firsts for _ in range(lasts)]
    for row in rows:
        version, last, first, users = typing_cast(tuple[str | None, int, int, int], tuple(row))
        by_version.setdefault(version, [[0] * firsts for _ in range(lasts)])[last][first] += users
        grid[last][first] += users
    for counts in [grid, *by_version.values()]:
        _accumulate(counts)
    return _Population(last_edges, first_edges, by_version, grid)


def _accumulate(grid: list[list[int]]) -> None:
    """Counts at each pair of ranks become counts at or after the last-seen rank and at or
    before the first-seen rank, in place."""
    lasts, firsts = len(grid), len(grid[0])
    for k in range(lasts):
        for j in range(1, firsts):
            grid[k][j] += grid[k][j - 1]
    for k in range(lasts - 2, -1, -1):
        for j in range(firsts):
            grid[k][j] += grid[k + 1][j]


def _help_figures(counts: Mapping[int, help.HelpCounts], note_ids: Sequence[int]) -> dict[str, int]:
    """The help figures of a scope's notes, summed (see ``help`` in the module's notes)."""
    found = [counts[note_id] for note_id in note_ids if note_id in counts]
    return {
        "shown": sum(c.shown for c in found),
        "answered": sum(c.answered for c in found),
        "needs_help": sum(c.needs_help for c in found),
    }


def _figures(
    session: Session,
    product_id: int,
    window_days: int,
    scope: _Scope,
    present: Sequence[str],
    population: _Population,
    helped: Mapping[int, help.HelpCounts],
    acknowledged: Mapping[int, notices.Acknowledgements],
    now: datetime,
) -> dict[str, Any]:
    """The figures of one scope: its users from the population, the help its notes gave
    from ``helped`` and a notice's acknowledgements from ``acknowledged`` (both counted
    once for every scope), the rest from three or four aggregate queries."""
    start = scope.published_at
    window = timedelta(days=window_days)
    end = holdback.window_end(start, window_days)
    on = including(scope.version, present)
    exposed = exposed_clause(start, end, on)
    topics = list(scope.topics)
    about = tickets.topic_clause(topics)

    users = population.exposed(start, end, on)
    active_before = population.active(start - window, start)
    active_after = population.active(start, end)

    # Readers: from the notes' receipts to their users by the primary key; for several
    # notes, the users among those who read any, which on SQLite costs a third of
    # counting distinct users over the join (measured on 200,000 users).
    read = ReadReceipt.note_id.in_(scope.note_ids)
    if len(scope.note_ids) == 1:
        readers_query = (
            select(func.count())
            .select_from(ReadReceipt)
            .join(EndUser, EndUser.id == ReadReceipt.end_user_id)
            .where(read, exposed)
        )
    else:
        readers_query = (
            select(func.count())
            .select_from(EndUser)
            .where(EndUser.id.in_(select(ReadReceipt.end_user_id).where(read)), exposed)
        )
    readers = session.scalar(readers_query) or 0

    # Tickets from the window before to the window's end; the exposed user, if any, joined.
    read_any = exists().where(
        ReadReceipt.end_user_id == Ticket.end_user_id, ReadReceipt.note_id.in_(scope.note_ids)
    )
    in_window = Ticket.created_at >= start
    matched = EndUser.id.is_not(None)
    tickets_query = (
        select(
            func.count().filter(Ticket.created_at < start),
            func.count().filter(in_window),
            func.count().filter(in_window, Ticket.end_user_id.is_(None)),
            func.count().filter(in_window, matched),
            func.count().filter(in_window, matched, read_any),
        )
        .select_from(Ticket)
        .outerjoin(EndUser, and_(EndUser.id == Ticket.end_user_id, exposed))
        .where(
            Ticket.product_id == product_id,
            Ticket.created_at >= start - window,
            Ticket.created_at < end,
            about,
        )
    )
    before, after, unmatched, tickets_exposed, tickets_readers = session.execute(
        tickets_query
    ).one()

    # Users are counted before their receipts, and widget calls go on meanwhile: a user
    # first seen in between may be a reader the population did not count.
    readers = min(readers, users)
    non_readers = users - readers
    tickets_non_readers = tickets_exposed - tickets_readers
    ratio = rate_ratio(tickets_readers, readers, tickets_non_readers, non_readers)
    counted = acknowledged.get(scope.note_id) if scope.note_id is not None else None
    return {
        "scope": scope.scope,
        "note_id": scope.note_id,
        "note_ids": list(scope.note_ids),
        "version": scope.version,
        "title": scope.title,
        "published_at": _iso(start),
        "window_days": window_days,
        "window_end": _iso(end),
        "window_open": now < end,
        "topics": topics,
        "exposed": users,
        "readers": readers,
        "non_readers": non_readers,
        "tickets_readers": tickets_readers,
        "tickets_non_readers": tickets_non_readers,
        "rate_readers": rate(tickets_readers, readers),
        "rate_non_readers": rate(tickets_non_readers, non_readers),
        "difference": difference(ratio),
        "verdict": verdict(ratio, topics),
        "before": {
            "tickets": before,
            "active_users": active_before,
            "per_1000": _per_1000(before, active_before),
        },
        "after": {
            "tickets": after,
            "active_users": active_after,
            "per_1000": _per_1000(after, active_after),
        },
        "unmatched_tickets": unmatched,
        "holdback": (
            _holdback_figures(session, product_id, scope, exposed, about, end)
            if scope.holdback_percent > 0 and scope.note_id is not None
            else None
        ),
        "help": _help_figures(helped, scope.note_ids),
        "acknowledgement": dataclasses.asdict(counted) if counted is not None else None,
        "daily": daily_tickets(session, product_id, topics, start - window, min(end, now)),
    }


def _holdback_figures(
    session: Session,
    product_id: int,
    scope: _Scope,
    exposed: ColumnElement[bool],
    about: ColumnElement[bool],
    end: datetime,
) -> dict[str, Any]:
    """Treated against control among the exposed users, by their recorded groups."""
    assignment = HoldbackAssignment
    control, treated = assignment.control.is_(True), assignment.control.is_(False)
    treated_users, control_users = session.execute(
        select(func.count().filter(treated), func.count().filter(control))
        .select_from(assignment)
        .join(EndUser, EndUser.id == assignment.end_user_id)
        .where(assignment.note_id == scope.note_id, exposed)
    ).one()
    tickets_query = (
        select(func.count().filter(treated), func.count().filter(control))
        .select_from(Ticket)
        .join(EndUser, EndUser.id == Ticket.end_user_id)
        .join(
            assignment,
            and_(assignment.note_id == scope.note_id, assignment.end_user_id == EndUser.id),
        )
        .where(
            Ticket.product_id == product_id,
            Ticket.created_at >= scope.published_at,
            Ticket.created_at < end,
            exposed,
            about,
        )
    )
    treated_tickets, control_tickets = session.execute(tickets_query).one()
    effect = rate_ratio(treated_tickets, treated_users, control_tickets, control_users)
    return {
        "percent": scope.holdback_percent,
        "treated": {
            "users": treated_users,
            "tickets": treated_tickets,
            **rate(treated_tickets, treated_users),
        },
        "control": {
            "users": control_users,
            "tickets": control_tickets,
            **rate(control_tickets, control_users),
        },
        "effect": difference(effect),
        "verdict": verdict(effect, scope.topics, causal=True),
    }


# Hold-back groups ---------------------------------------------------------------------------


def _insert_ignoring_duplicates(session: Session) -> Any:
    """An INSERT of assignments that leaves a row another worker wrote first as it is."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert(_assignments).on_conflict_do_nothing()


def _assign(
    session: Session,
    product_id: int,
    scope: _Scope,
    present: Sequence[str],
    window_days: int,
    now: datetime,
    write_turn: WriteTurn,
) -> int:
    """Record the group of every exposed user of a hold-back note who has none yet."""
    assert scope.note_id is not None  # noqa: S101 - hold-backs are per note
    note_id, percent = scope.note_id, scope.holdback_percent
    exposed = and_(
        EndUser.product_id == product_id,
        exposed_clause(
            scope.published_at,
            holdback.window_end(scope.published_at, window_days),
            including(scope.version, present),
        ),
    )
    unassigned = ~exists().where(
        HoldbackAssignment.note_id == note_id, HoldbackAssignment.end_user_id == EndUser.id
    )
    insert = _insert_ignoring_duplicates(session)
    written, after = 0, 0
    while True:
        # A batch at a time by id, each a complete query: nothing is read while writing.
        batch = session.execute(
            select(EndUser.id, EndUser.external_id)
            .where(exposed, unassigned, EndUser.id > after)
            .order_by(EndUser.id)
            .limit(ASSIGNMENT_BATCH)
        ).all()
        if not batch:
            return written
        after = batch[-1][0]
        rows = [
            {
                "note_id": note_id,
                "end_user_id": user_id,
                "control": holdback.in_control(note_id, external_id, percent),
                "assigned_at": now,
            }
            for user_id, external_id in batch
        ]
        with write_turn():
            session.execute(insert, rows)
            session.commit()
        written += len(rows)


# The roll-up ---------------------------------------------------------------------------------


def _upsert_impacts(session: Session) -> Any:
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    insert = dialect.insert(_impacts)
    return insert.on_conflict_do_update(
        index_elements=[_impacts.c.product_id, _impacts.c.scope],
        set_={
            name: insert.excluded[name] for name in ("version", "note_id", "figures", "computed_at")
        },
    )


def refresh(
    session: Session,
    product: Product,
    *,
    now: datetime,
    write_turn: WriteTurn = contextlib.nullcontext,
) -> int:
    """Match the tickets not matched yet, record hold-back groups, and recompute every
    roll-up row of the product, with the help its notes gave before a ticket: one per
    published outward note and one per release with such notes; rows of notes no longer
    published go. Returns how many rows it wrote.

    It commits in steps, each write in ``write_turn()`` (the app's SQLite write queue):
    on SQLite one connection writes at a time, and a transaction held open across the
    counting of a million users would make every widget call that writes wait for it.
    The counting itself only reads, between the writes.
    """
    product_id, window_days = product.id, product.support_window_days
    with write_turn():
        tickets.match_unmatched(session, product_id)
        session.commit()
    notes = _published_notes(session, product_id, now)
    scopes = _scopes(notes)
    present = app_versions(session, product_id)
    for scope in scopes:
        if scope.holdback_percent > 0:
            _assign(session, product_id, scope, present, window_days, now, write_turn)
    population = _population(session, product_id, scopes, timedelta(days=window_days))
    helped = help.note_counts(session, product_id, [note.id for note in notes])
    acknowledged = {
        note.id: counted
        for note in notes
        if note.requires_acknowledgement
        and (counted := notices.count(session, note, now=now, present=present)) is not None
    }
    rows = [
        {
            "product_id": product_id,
            "scope": scope.scope,
            "version": scope.version,
            "note_id": scope.note_id,
            "figures": _figures(
                session,
                product_id,
                window_days,
                scope,
                present,
                population,
                helped,
                acknowledged,
                now,
            ),
            "computed_at": now,
        }
        for scope in scopes
    ]
    with write_turn():
        if rows:
            session.execute(_upsert_impacts(session), rows)
        session.execute(
            delete(SupportImpact).where(
                SupportImpact.product_id == product_id,
                SupportImpact.scope.not_in([row["scope"] for row in rows]),
            )
        )
        session.commit()
    return len(rows)


class ProductStep(Protocol):
    """One product's roll-up run, as :func:`refresh` here and ``rollups.refresh`` are."""

    def __call__(
        self, session: Session, product: Product, *, now: datetime, write_turn: WriteTurn
    ) -> int: ...


def for_each_product(
    session: Session,
    step: ProductStep,
    *,
    now: datetime,
    write_turn: WriteTurn = contextlib.nullcontext,
) -> dict[str, int]:
    """Run ``step`` for every product; returns its answer (rows written) per product slug,
    for the products it succeeded on. A product that fails is logged and rolled back, and
    the others still run: one product's odd data must not stop every product's figures."""
    products = [(product.id, product.slug) for product in session.scalars(select(Product))]
    done = {}
    for product_id, slug in products:
        try:
            product = session.get(Product, product_id)
            if product is not None:  # deleted meanwhile
                done[slug] = step(session, product, now=now, write_turn=write_turn)
        except Exception:
            # The step's module names the roll-up: announcements.rollups, ….support_impact.
            log.exception("%s: the product %s failed; the others go on", step.__module__, slug)
            session.rollback()
    return done


def rebuild(
    session: Session, *, now: datetime, write_turn: WriteTurn = contextlib.nullcontext
) -> dict[str, int]:
    """Refresh every product's roll-up (see :func:`for_each_product`); returns the rows
    written per product slug."""
    return for_each_product(session, refresh, now=now, write_turn=write_turn)


# Reading the roll-up ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ReleaseImpact:
    """One release's figures as last rolled up, with those of each of its notes."""

    version: str
    figures: dict[str, Any]
    notes: list[dict[str, Any]]
    computed_at: datetime


def report(session: Session, product: Product) -> list[ReleaseImpact]:
    """The product's roll-up: per release, newest version first, its notes in the order
    they went out. Empty until the worker first computes it."""
    rows = session.scalars(select(SupportImpact).where(SupportImpact.product_id == product.id))
    releases: dict[str, SupportImpact] = {}
    notes: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row.note_id is None:
            releases[row.version] = row
        else:
            notes.setdefault(row.version, []).append(row.figures)
    return [
        ReleaseImpact(
            version=version,
            figures=releases[version].figures,
            notes=sorted(notes.get(version, []), key=lambda n: (n["published_at"], n["note_id"])),
            computed_at=releases[version].computed_at,
        )
        for version in versions.newest_first(releases)
    ]


def note_impact(session: Session, note: Note) -> SupportImpact | None:
    """The note's roll-up row (its figures and when they were counted); None before the
    worker has counted it."""
    return session.scalar(
        select(SupportImpact).where(
            SupportImpact.product_id == note.product_id, SupportImpact.note_id == note.id
        )
    )


def note_figures(session: Session, note: Note) -> dict[str, Any] | None:
    """The note's figures as last rolled up; None before the worker has counted it."""
    impact = note_impact(session, note)
    return impact.figures if impact is not None else None


@dataclass(frozen=True)
class HelpQuery:
    """What a user about to contact support typed when help showed them a note, and how
    it ended: ``outcome`` "answered" (by ``answered_note_id``), "needs_help", or None
    (they closed it)."""

    query: str
    outcome: str | None
    answered_note_id: int | None
    asked_at: datetime


def help_queries(
    session: Session, note: Note, *, limit: int = HELP_QUERIES_LISTED
) -> list[HelpQuery]:
    """The latest ``limit`` queries for which help showed ``note``, newest first: what
    users asked, in their words, that the note was offered for."""
    rows = session.execute(
        select(
            HelpRequest.query,
            HelpRequest.outcome,
            HelpRequest.answered_note_id,
            HelpRequest.created_at,
        )
        .join(HelpShown, HelpShown.help_request_id == HelpRequest.id)
        .where(HelpShown.note_id == note.id)
        .order_by(HelpRequest.created_at.desc(), HelpRequest.id.desc())
        .limit(limit)
    )
    return [HelpQuery(*row) for row in rows]


@dataclass(frozen=True)
class UserGroup:
    """Which side of a note's hold-back an end user is on: the hash's answer, and what the
    worker recorded once it counted them (None before)."""

    note_id: int
    version: str
    title: str
    percent: int
    control: bool
    recorded_control: bool | None
    assigned_at: datetime | None
    holding_back: bool  # the note is withheld from its control group right now

    @property
    def recorded(self) -> bool:
        return self.recorded_control is not None


def user_groups(
    session: Session, product: Product, external_id: str, *, now: datetime | None = None
) -> list[UserGroup]:
    """For each published note of the product with a hold-back, the user's group, newest
    note first. A user the widget never saw still has a group: the hash needs only the id."""
    now = now or utcnow()
    user_id = session.scalar(
        select(EndUser.id).where(
            EndUser.product_id == product.id, EndUser.external_id == external_id
        )
    )
    notes = [n for n in _published_notes(session, product.id, now) if n.holdback_percent > 0]
    recorded: dict[int, tuple[bool, datetime]] = {}
    if user_id is not None and notes:
        recorded = {
            note_id: (control, assigned_at)
            for note_id, control, assigned_at in session.execute(
                select(
                    HoldbackAssignment.note_id,
                    HoldbackAssignment.control,
                    HoldbackAssignment.assigned_at,
                ).where(
                    HoldbackAssignment.end_user_id == user_id,
                    HoldbackAssignment.note_id.in_([n.id for n in notes]),
                )
            )
        }
    groups = []
    for note in reversed(notes):
        assert note.published_at is not None  # noqa: S101 - published notes only
        control = holdback.in_control(note.id, external_id, note.holdback_percent)
        stored = recorded.get(note.id)
        groups.append(
            UserGroup(
                note_id=note.id,
                version=note.version,
                title=note.title,
                percent=note.holdback_percent,
                control=control,
                recorded_control=None if stored is None else stored[0],
                assigned_at=None if stored is None else stored[1],
                holding_back=holdback.withholds(
                    note.id,
                    external_id,
                    note.holdback_percent,
                    note.published_at,
                    product.support_window_days,
                    now,
                ),
            )
        )
    return groups
