"""Help before a ticket ranks a catalogue's notes for a query: stemmed words, the title
and support topics weighing more than the body, stop words ignored, newest first on a
tie, and only what the user would still see as new. Unit tests: no database."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from announcements import help, inbox, versions
from announcements.catalogue import Catalogue, CatalogueNote
from announcements.errors import ValidationFailed
from announcements.user_state import EndUserState

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def note(
    note_id: int,
    title: str,
    body: str = "<p>Small fixes.</p>",
    topics: Sequence[str] = (),
    *,
    hours_ago: int | None = None,
    holdback_percent: int = 0,
) -> CatalogueNote:
    """A published note; a higher id is newer unless ``hours_ago`` says otherwise."""
    return CatalogueNote(
        id=note_id,
        sort_version=versions.parse("1.0.0"),
        published_at=NOW - timedelta(hours=1000 - note_id if hours_ago is None else hours_ago),
        expires_at=None,
        audience=None,
        fields={"id": note_id, "title": title, "html": body},
        support_topics=tuple(topics),
        holdback_percent=holdback_percent,
    )


def catalogue(*notes: CatalogueNote, locale: str = "en") -> Catalogue:
    ordered = tuple(sorted(notes, key=lambda n: n.published_at, reverse=True))
    return Catalogue(
        product_id=1,
        stamp=1,
        identity_secret="secret",
        require_identity=False,
        allowed_origins=frozenset(),
        grace_releases=50,
        notes=ordered,
        ids=frozenset(n.id for n in notes),
        product={"name": "P", "accent_color": "#000000"},
        default_locale=locale,
        with_holdback=tuple(n for n in ordered if n.holdback_percent),
    )


def ranked(shown: Catalogue, query: str) -> list[int]:
    return [n.id for n in help.rank(shown, query)]


def test_inflected_words_match_through_their_stems() -> None:
    shown = catalogue(
        note(1, "Exporting reports", "<p>Exports now include every chart.</p>"),
        note(2, "Dark mode"),
    )
    assert ranked(shown, "my export is empty") == [1]
    assert ranked(shown, "REPORT exported?") == [1]


def test_stop_words_and_unknown_words_match_nothing() -> None:
    shown = catalogue(note(1, "What is new in the app"), note(2, "How to do it"))
    assert ranked(shown, "how do I do it with the") == []
    assert ranked(shown, "xylophone") == []


def test_a_topic_outweighs_the_title_and_the_title_the_body() -> None:
    body_only = note(3, "Faster start", "<p>Invoices load faster.</p>")
    in_title = note(2, "Invoices, reworked")
    in_topics = note(1, "Billing changes", topics=["invoices"])
    shown = catalogue(body_only, in_title, in_topics)
    assert ranked(shown, "where are my invoices") == [1, 2, 3]


def test_topics_are_split_into_words() -> None:
    shown = catalogue(note(1, "Fixes", topics=["export-empty"]), note(2, "Other"))
    assert ranked(shown, "the export was empty") == [1]


def test_equal_scores_keep_newest_first() -> None:
    shown = catalogue(
        note(1, "Calendar sync", hours_ago=30),
        note(2, "Calendar sync", hours_ago=10),
        note(3, "Calendar sync", hours_ago=20),
    )
    assert ranked(shown, "calendar") == [2, 3, 1]


def test_more_shared_words_rank_higher() -> None:
    shown = catalogue(
        note(1, "Reports load faster"),
        note(2, "Scheduled reports arrive on Monday"),
    )
    assert ranked(shown, "scheduled report did not arrive")[0] == 2


def test_the_body_is_searched_as_text_not_markup() -> None:
    body = '<p>See <a href="https://x.example/strong">the guide</a> &amp; caf&eacute;</p>'
    assert help.plain_text(body).split() == ["See", "the", "guide", "&", "café"]
    shown = catalogue(note(1, "Docs", body))
    assert ranked(shown, "strong href") == []
    assert ranked(shown, "café guide") == [1]


@pytest.mark.parametrize(
    ("locale", "language"),
    [("de", "german"), ("pt-BR", "portuguese"), ("en", "english"), ("xx", "english")],
)
def test_words_are_stemmed_in_the_products_language(locale: str, language: str) -> None:
    assert help.language(locale) == language


def test_a_german_product_matches_german_inflections() -> None:
    shown = catalogue(
        note(1, "Neue Berichte", "<p>Alle Berichte laden schneller.</p>"), locale="de"
    )
    assert ranked(shown, "Bericht") == [1]


def test_the_index_is_built_once_per_catalogue() -> None:
    shown = catalogue(note(1, "Export"))
    first = shown.remembered("help", help.index)
    ranked(shown, "export")
    assert shown.remembered("help", help.index) is first
    assert catalogue(note(1, "Export")).remembered("help", help.index) is not first


def test_a_long_query_stems_at_most_its_first_32_distinct_words() -> None:
    built = help.index(catalogue(note(1, "Export fixed")))
    query = " ".join(f"word{number}" for number in range(500))
    help.stem.cache_clear()
    terms = built.terms(query)
    info = help.stem.cache_info()
    assert info.hits + info.misses == help.MAX_QUERY_WORDS == 32
    assert terms == {f"word{number}" for number in range(32)}
    # A word repeated counts once: the distinct words are the ones counted.
    assert built.terms("export " * 40 + "sync") == {"export", "sync"}


def state(**fields: Any) -> EndUserState:
    return EndUserState(
        id=1,
        external_id="user-1",
        first_seen_at=NOW - timedelta(days=400),
        last_seen_at=NOW,
        app_version=None,
        locale=None,
        attributes={},
        **fields,
    )


def answers(shown: Catalogue, user: EndUserState | None, query: str, limit: int = 3) -> list[int]:
    found = inbox.unread(
        shown,
        user,
        attributes={},
        app_version=None,
        now=NOW,
        among=help.rank(shown, query),
        limit=limit,
    )
    return [entry[0].id for entry in found.entries]


def test_only_notes_the_user_would_see_as_new_are_answers() -> None:
    shown = catalogue(*(note(i, f"Sync fix {i}") for i in range(1, 6)))
    assert answers(shown, None, "sync", limit=10) == [5, 4, 3, 2, 1]
    assert answers(shown, state(read_ids={5, 3}), "sync", limit=10) == [4, 2, 1]
    assert answers(shown, state(read_ids={5, 3}), "sync") == [4, 2, 1]
    assert answers(shown, state(read_ids={5, 3}), "sync", limit=2) == [4, 2]


def test_a_pinned_note_is_an_answer_even_when_read() -> None:
    shown = catalogue(note(1, "Sync fix"), note(2, "Sync rework"))
    assert answers(shown, state(read_ids={1, 2}, pinned={1}), "sync") == [1]


def test_a_note_held_back_from_the_user_is_no_answer() -> None:
    held = note(1, "Sync fix", hours_ago=1, holdback_percent=50)
    shown = catalogue(held, note(2, "Sync rework"))
    # Users are split by a hash: find one in the control group and one outside it.
    controls = [u for u in (f"user-{i}" for i in range(200)) if shown.withheld(u, NOW)]
    others = [u for u in (f"user-{i}" for i in range(200)) if not shown.withheld(u, NOW)]
    assert controls and others
    control = EndUserState(**{**vars(state()), "external_id": controls[0]})
    other = EndUserState(**{**vars(state()), "external_id": others[0]})
    assert answers(shown, control, "sync") == [2]
    assert answers(shown, other, "sync") == [1, 2]


@pytest.mark.parametrize("raw", [None, "", "   ", 42, "x" * 501, "nul\x00"])
def test_a_missing_blank_long_or_unstorable_query_is_refused(raw: Any) -> None:
    with pytest.raises(ValidationFailed) as refused:
        help.check_query(raw, "q")
    assert set(refused.value.errors) == {"q"}


def test_a_query_of_500_characters_is_taken_trimmed() -> None:
    assert help.check_query(" " + "x" * 500 + " ", "q") == "x" * 500
