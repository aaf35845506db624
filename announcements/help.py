"""Help before a ticket: the unread notes that answer what an end user is about to ask
support, best match first, and what came of showing them.

Ranking is BM25 computed in this process over each catalogue note's title (counted
twice), the plain text of its body and its support topics (counted three times), with
words stemmed by Snowball in the language of the text (English where Snowball has none)
and a short list of stop words left out. A note matches when it shares one stem with the
query. Only the query's first 32 distinct words count, so that a long query of new words
costs a bounded number of stems (each memoised, as users ask about the same words).

A reader is answered in their language: the notes are ranked by the text they are shown
in (the first language of their chain a note has a published translation in, else the
default text), each text's words stemmed in its own language and the query's in each of
those languages. Support topics are tags, stemmed in the product's default language.

Why not the database's full-text search (PostgreSQL ``tsvector``, SQLite FTS5): the
candidates are one user's unread notes, already in the catalogue this process caches; a
round trip to the database costs more than ranking a few hundred notes here, the same
code ranks alike on SQLite and PostgreSQL, and no index has to follow every note write.
The index is built once per catalogue stamp and chain of languages, on first use
(:meth:`Catalogue.remembered`): a product with a few languages keeps a few indexes.
"""

from __future__ import annotations

import functools
import html
import itertools
import math
import re
import secrets
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from typing import cast as typing_cast

import numpy as np
import numpy.typing as npt
import snowballstemmer
from sqlalchemy import Connection, Table, case, func, insert, select, update
from sqlalchemy.orm import Session

from announcements import reads
from announcements.catalogue import Catalogue, CatalogueNote
from announcements.errors import InvalidTransition, NotFound, ValidationFailed
from announcements.models import HelpRequest, HelpShown

MAX_QUERY_LENGTH = 500
MAX_SHOWN = 10
# Words whose stems are kept: Snowball in pure Python takes some 45 µs a word, more than
# the rest of a help request, and users ask about the same few words.
REMEMBERED_STEMS = 65_536
# Only a query's first distinct words are stemmed and looked up: a 500-character query of
# words never seen before would otherwise cost some 80 stems (over 2 ms) in one request.
# A question put to support says what it is about well before its 32nd word.
MAX_QUERY_WORDS = 32
OUTCOMES = ("answered", "needs_help")
NO_SUCH_HELP = "No help was shown with this id."
# BM25's usual constants: how soon repeats of a word stop adding, and how much a long
# note's score is scaled down.
K1 = 1.2
B = 0.75
TITLE_WEIGHT = 2
TOPIC_WEIGHT = 3
# Snowball's stemmers by the language part of a locale.
LANGUAGES = {
    "ar": "arabic",
    "hy": "armenian",
    "eu": "basque",
    "ca": "catalan",
    "cs": "czech",
    "da": "danish",
    "nl": "dutch",
    "en": "english",
    "eo": "esperanto",
    "et": "estonian",
    "fi": "finnish",
    "fr": "french",
    "de": "german",
    "el": "greek",
    "hi": "hindi",
    "hu": "hungarian",
    "id": "indonesian",
    "ga": "irish",
    "it": "italian",
    "lt": "lithuanian",
    "ne": "nepali",
    "no": "norwegian",
    "nb": "norwegian",
    "nn": "norwegian",
    "fa": "persian",
    "pl": "polish",
    "pt": "portuguese",
    "ro": "romanian",
    "ru": "russian",
    "sr": "serbian",
    "es": "spanish",
    "sv": "swedish",
    "ta": "tamil",
    "tr": "turkish",
    "yi": "yiddish",
}
# Words that say nothing about what a note is about. English only: queries in the
# product's language keep their small words, which match few notes and count for little.
STOP_WORDS = frozenset(
    """a an and are as at be but by can do does for from has have how i if in is it its
    me my no not of on or our so that the their them there this to was we what when where
    which why will with you your""".split()
)
# Letters and digits; an underscore, a hyphen or punctuation separates words, so a topic
# such as "export-empty" is the two words of "export is empty".
WORD = re.compile(r"[^\W_]+")
TAG = re.compile(r"<[^>]*>")

_help_requests = typing_cast(Table, HelpRequest.__table__)
_help_shown = typing_cast(Table, HelpShown.__table__)


def language(locale: str) -> str:
    """The Snowball stemmer for a locale such as "de" or "pt-BR"; English when there is none."""
    name = LANGUAGES.get(locale.split("-")[0].lower(), "english")
    return name if name in snowballstemmer.algorithms() else "english"


def plain_text(body_html: str) -> str:
    """The text of a note's (sanitised) HTML body, without its tags."""
    return html.unescape(TAG.sub(" ", body_html))


def words(text: str) -> list[str]:
    """The words of ``text``, lower-cased, without stop words and single characters."""
    return [word for word in WORD.findall(text.lower()) if len(word) > 1 and word not in STOP_WORDS]


@functools.lru_cache(maxsize=REMEMBERED_STEMS)
def stem(name: str, word: str) -> str:
    """The stem of ``word`` by Snowball's stemmer ``name``.

    A stemmer keeps state while it works, so each call makes its own (0.3 µs) rather
    than share one between threads.
    """
    stemmed: str = snowballstemmer.stemmer(name).stemWord(word)
    return stemmed


@dataclass(frozen=True)
class Index:
    """For each stem, the positions in the catalogue of the notes that hold it and their
    BM25 scores for it; ``languages`` are the stemmers its texts were stemmed by."""

    languages: tuple[str, ...]
    size: int
    postings: dict[str, tuple[npt.NDArray[np.intp], npt.NDArray[np.float64]]]

    def terms(self, query: str) -> set[str]:
        """The stems, in each of the index's languages, of the query's first
        :data:`MAX_QUERY_WORDS` distinct words."""
        distinct = list(itertools.islice(dict.fromkeys(words(query)), MAX_QUERY_WORDS))
        return {stem(name, word) for name in self.languages for word in distinct}


def index(catalogue: Catalogue, chain: Sequence[str] = ()) -> Index:
    """The BM25 index of the catalogue's notes (all of them, so that a word's weight does
    not depend on which notes one user has left unread), each in the text a reader of
    ``chain`` is shown (none: the default text)."""
    topics = language(catalogue.default_locale)

    def counted(text: str, weight: int, name: str) -> Counter[str]:
        stems = Counter(stem(name, word) for word in words(text))
        return Counter({found: count * weight for found, count in stems.items()})

    frequencies = []
    used = {topics}
    for note in catalogue.notes:
        shown = note.shown_in(chain)
        name = language(shown.get("locale", catalogue.default_locale))
        used.add(name)
        frequency = counted(shown["title"], TITLE_WEIGHT, name)
        frequency.update(counted(plain_text(shown["html"]), 1, name))
        frequency.update(counted(" ".join(note.support_topics), TOPIC_WEIGHT, topics))
        frequencies.append(frequency)
    total = len(frequencies)
    lengths = [sum(frequency.values()) for frequency in frequencies]
    average = sum(lengths) / total if total else 0.0
    documents = Counter(found for frequency in frequencies for found in frequency)
    weights = {
        found: math.log(1 + (total - count + 0.5) / (count + 0.5))
        for found, count in documents.items()
    }
    postings: dict[str, tuple[list[int], list[float]]] = {}
    for position, frequency in enumerate(frequencies):
        scale = K1 * (1 - B + B * lengths[position] / (average or 1))
        for found, count in frequency.items():
            positions, scores = postings.setdefault(found, ([], []))
            positions.append(position)
            scores.append(weights[found] * count * (K1 + 1) / (count + scale))
    return Index(
        languages=tuple(sorted(used)),
        size=total,
        postings={
            found: (np.array(positions, dtype=np.intp), np.array(scores))
            for found, (positions, scores) in postings.items()
        },
    )


def rank(catalogue: Catalogue, query: str, chain: Sequence[str] = ()) -> Iterator[CatalogueNote]:
    """The catalogue's notes that share a stem with the query, best match first, each by
    the text a reader of ``chain`` is shown; equal scores keep the catalogue's order
    (newest first). Lazy: the caller takes what it keeps.

    Scores are summed with numpy over the postings of the query's stems: a loop in Python
    over a few hundred notes cost more than the rest of the request.
    """
    if tuple(chain) in {(), (catalogue.default_locale,)}:
        built = catalogue.remembered("help", index)
    else:
        built = catalogue.remembered(
            "help:" + " ".join(chain), functools.partial(index, chain=chain)
        )
    totals = np.zeros(built.size)
    for term in built.terms(query):
        found = built.postings.get(term)
        if found is not None:
            totals[found[0]] += found[1]
    matching = np.flatnonzero(totals)
    best_first = matching[np.argsort(-totals[matching], kind="stable")]
    for position in best_first.tolist():
        yield catalogue.notes[position]


def check_query(raw: Any, name: str) -> str:
    """The text the user typed, trimmed; ValidationFailed when blank, over 500 characters
    or not storable."""
    if not isinstance(raw, str) or not raw.strip():
        raise ValidationFailed({name: "Give the text the user is asking support about."})
    query = raw.strip()
    if len(query) > MAX_QUERY_LENGTH:
        raise ValidationFailed({name: f"Keep the query under {MAX_QUERY_LENGTH} characters."})
    if not reads.is_storable(query):
        raise ValidationFailed({name: "The query holds characters that are not text."})
    return query


def record_shown(
    connection: Connection,
    catalogue: Catalogue,
    end_user_id: int | None,
    query: str,
    note_ids: Any,
    *,
    listed: AbstractSet[int] | None,
    now: datetime,
) -> str:
    """Record that these notes (1 to 10 published notes of the product, best first, and
    of ``listed``: what help may show the user, see :func:`inbox.listed`) were shown for
    ``query``; returns the token with which the widget records the outcome."""
    if not isinstance(note_ids, list) or not 1 <= len(note_ids) <= MAX_SHOWN:
        raise ValidationFailed(
            {"note_ids": f"List the ids of the 1 to {MAX_SHOWN} notes shown, best first."}
        )
    shown = reads.check_readable(catalogue, note_ids, now=now, listed=listed)
    token = secrets.token_urlsafe(16)
    request_id: int = connection.execute(
        insert(_help_requests)
        .values(
            product_id=catalogue.product_id,
            token=token,
            end_user_id=end_user_id,
            query=query,
            created_at=now,
        )
        .returning(_help_requests.c.id)
    ).scalar_one()
    connection.execute(
        insert(_help_shown),
        [
            {"help_request_id": request_id, "note_id": note_id, "position": position}
            for position, note_id in enumerate(shown)
        ],
    )
    return token


def decide(
    connection: Connection,
    product_id: int,
    token: str,
    end_user_id: int | None,
    outcome: Any,
    note_id: Any,
    *,
    listed: AbstractSet[int] | None,
    now: datetime,
) -> int | None:
    """Record what the user chose: a note answered their question, or they still need
    help. Returns the note that answered, when this call recorded it; the same choice
    again changes nothing.

    NotFound for a token of another product or another user (``end_user_id``: the caller,
    None when anonymous); ValidationFailed for an unknown outcome, or "answered" with a
    note that was not shown or is not in ``listed`` (what help may show the user now, see
    :func:`inbox.listed`); InvalidTransition for another choice after one was made, here
    or by a call that raced this one.
    """
    request = connection.execute(
        select(
            _help_requests.c.id,
            _help_requests.c.end_user_id,
        ).where(_help_requests.c.token == token, _help_requests.c.product_id == product_id)
    ).one_or_none()
    if request is None or request.end_user_id != end_user_id:
        raise NotFound(NO_SUCH_HELP)
    if outcome not in OUTCOMES:
        raise ValidationFailed({"outcome": 'The outcome is "answered" or "needs_help".'})
    answered = None
    if outcome == "answered":
        shown: Sequence[int] = connection.scalars(
            select(_help_shown.c.note_id).where(_help_shown.c.help_request_id == request.id)
        ).all()
        if (
            not isinstance(note_id, int)
            or isinstance(note_id, bool)
            or note_id not in shown
            or (listed is not None and note_id not in listed)
        ):
            raise ValidationFailed({"note_id": "Give the id of the shown note that answered."})
        answered = note_id
    # Only the first choice is kept, even when two calls race: the second finds the row
    # decided and is answered by what the first chose.
    decided = connection.execute(
        update(_help_requests)
        .where(_help_requests.c.id == request.id, _help_requests.c.outcome.is_(None))
        .values(outcome=outcome, answered_note_id=answered, decided_at=now)
    )
    if decided.rowcount == 1:
        return answered
    chosen = connection.execute(
        select(_help_requests.c.outcome, _help_requests.c.answered_note_id).where(
            _help_requests.c.id == request.id
        )
    ).one()
    if tuple(chosen) == (outcome, answered):
        return None
    raise InvalidTransition("The user already chose an answer to this help.")


@dataclass(frozen=True)
class HelpCounts:
    """How often help before a ticket showed a note, and what came of it."""

    shown: int = 0
    # Requests in which this note answered the question.
    answered: int = 0
    # Requests that showed this note and ended with the user still needing help.
    needs_help: int = 0


def note_counts(
    session: Session, product_id: int, note_ids: Iterable[int] | None = None
) -> dict[int, HelpCounts]:
    """Help counts per note of the product, in one grouped query; with ``note_ids``, for
    those notes only (each present, zeros included), else for every note ever shown."""
    statement = (
        select(
            HelpShown.note_id,
            func.count(),
            func.count(case((HelpRequest.answered_note_id == HelpShown.note_id, 1))),
            func.count(case((HelpRequest.outcome == "needs_help", 1))),
        )
        .join(HelpRequest, HelpRequest.id == HelpShown.help_request_id)
        .where(HelpRequest.product_id == product_id)
        .group_by(HelpShown.note_id)
    )
    wanted = None if note_ids is None else list(note_ids)
    if wanted is not None:
        statement = statement.where(HelpShown.note_id.in_(wanted))
    counts = {
        note_id: HelpCounts(shown, answered, needs_help)
        for note_id, shown, answered, needs_help in session.execute(statement)
    }
    if wanted is not None:
        return {note_id: counts.get(note_id, HelpCounts()) for note_id in wanted}
    return counts
