"""Help before a ticket through the widget API: the user's unread notes that match what
they are about to ask, what was shown and what came of it, and the counts the console
shows, on SQLite and PostgreSQL."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from announcements import help, holdback
from announcements.models import AgentSend, EndUser, HelpRequest, HelpShown, Product, ReadReceipt
from app.database import widget_engine
from app.extensions import db
from tests.factories import make_note, make_product
from tests.test_widget_api import ORIGIN, Widget, writes_on


class Helper(Widget):
    """The widget's calls for help before a ticket."""

    def ask(self, q: Any, **params: Any):
        query = {**self.identity(), "q": q, **params}
        return self.client.get(f"{self.base}/help", query_string=query)

    def found(self, q: str, **params: Any) -> list[int]:
        response = self.ask(q, **params)
        assert response.status_code == 200, response.get_json()
        return [note["id"] for note in response.get_json()["notes"]]

    def shown(self, query: Any, note_ids: Any, **overrides: Any):
        body = {**self.identity(), "query": query, "note_ids": note_ids, **overrides}
        return self.client.post(f"{self.base}/help", json=body)

    def decide(self, token: str, outcome: Any, note_id: Any = None, **overrides: Any):
        body = {**self.identity(), "outcome": outcome, "note_id": note_id, **overrides}
        return self.client.post(f"{self.base}/help/{token}", json=body)


@pytest.fixture
def product(session: Session) -> Product:
    return make_product(session, allowed_origins=(ORIGIN,), grace_releases=20)


@pytest.fixture
def helper(client: FlaskClient, product: Product) -> Helper:
    return Helper(client, product)


def count(session: Session, model: type) -> int:
    return session.scalar(select(func.count()).select_from(model))


# What help finds ------------------------------------------------------------------------


def test_the_users_unread_matching_notes_come_best_first_as_the_notes_endpoint_shows_them(
    session: Session, product: Product, helper: Helper
) -> None:
    in_body = make_note(session, product, title="Faster start", body_md="CSV **export** fixed.")
    in_topics = make_note(session, product, title="Data changes", support_topics=["export-csv"])
    make_note(session, product, title="Dark mode")
    answer = helper.ask("my CSV export is empty", version="1.0.0")
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["query"] == "my CSV export is empty"
    assert [n["id"] for n in body["notes"]] == [in_topics.id, in_body.id]
    listed = {n["id"]: n for n in helper.notes().get_json()["notes"]}
    assert body["notes"] == [listed[in_topics.id], listed[in_body.id]]


def test_read_notes_are_not_shown_again_but_a_pinned_one_is(
    session: Session, product: Product, helper: Helper
) -> None:
    first = make_note(session, product, title="Export fixed")
    second = make_note(session, product, title="Export faster")
    assert helper.read([second.id]).status_code == 204
    assert helper.found("export") == [first.id]
    assert helper.read([first.id]).status_code == 204
    assert helper.found("export") == []
    user_id = session.scalar(select(EndUser.id))
    session.add(
        AgentSend(
            product_id=product.id, note_id=first.id, end_user_id=user_id, agent="Ann", via="console"
        )
    )
    session.commit()
    assert helper.found("export") == [first.id]


def test_never_another_products_an_unpublished_an_internal_or_a_later_versions_note(
    session: Session, product: Product, helper: Helper
) -> None:
    other = make_product(session, allowed_origins=(ORIGIN,))
    make_note(session, other, title="Export fixed")
    make_note(session, product, status="draft", title="Export draft")
    make_note(session, product, status="scheduled", title="Export scheduled")
    make_note(session, product, status="archived", title="Export archived")
    make_note(session, product, is_internal=True, title="Export internal")
    later = make_note(session, product, version="3.0.0", title="Export later")
    assert helper.found("export", version="2.0.0") == []
    assert helper.found("export") == [later.id]
    assert Helper(helper.client, other).found("export") != []


def test_at_most_the_asked_number_of_notes(
    session: Session, product: Product, helper: Helper
) -> None:
    notes = [make_note(session, product, version=f"1.0.{i}", title="Sync fix") for i in range(12)]
    newest_first = [n.id for n in reversed(notes)]
    assert helper.found("sync") == newest_first[:3]
    assert helper.found("sync", limit=10) == newest_first[:10]
    assert helper.found("sync", limit=1) == newest_first[:1]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"q": None}, "q"),
        ({"q": "   "}, "q"),
        ({"q": "x" * 501}, "q"),
        ({"q": "sync", "limit": "11"}, "limit"),
        ({"q": "sync", "limit": "0"}, "limit"),
        ({"q": "sync", "version": "not a version"}, "version"),
    ],
)
def test_bad_questions_are_clear_errors(helper: Helper, params: dict, field: str) -> None:
    query = {**helper.identity(), **{k: v for k, v in params.items() if v is not None}}
    response = helper.client.get(f"{helper.base}/help", query_string=query)
    assert response.status_code == 422
    assert set(response.get_json()["errors"]) == {field}


def test_a_bad_limit_says_how_many_notes_of_help_may_be_asked_for(helper: Helper) -> None:
    response = helper.ask("sync", limit="11")
    assert response.status_code == 422
    assert response.get_json()["errors"]["limit"] == "Ask for 1 to 10 notes of help."


def test_a_user_never_seen_is_offered_only_what_the_notes_endpoint_will_leave_unread(
    session: Session, client: FlaskClient
) -> None:
    product = make_product(session, allowed_origins=(ORIGIN,), grace_releases=1)
    make_note(session, product, version="1.0.0", title="Export fixed")
    latest = make_note(session, product, version="2.0.0", title="Export faster")
    newcomer = Helper(client, product, "newcomer")
    # The grace releases apply as if they were first seen now: the older release's note
    # counts as read, as the notes endpoint will say once it has stored them.
    assert newcomer.found("export") == [latest.id]
    assert count(session, EndUser) == 0
    listed = newcomer.notes().get_json()["notes"]
    assert [n["id"] for n in listed if not n["read"]] == [latest.id]
    assert newcomer.found("export") == [latest.id]


def test_a_query_of_500_characters_is_answered(
    session: Session, product: Product, helper: Helper
) -> None:
    note = make_note(session, product, title="Export fixed")
    assert helper.found(("export " * 100)[:500]) == [note.id]


def test_identity_rules_are_the_notes_endpoints(
    session: Session, product: Product, helper: Helper, client: FlaskClient
) -> None:
    note = make_note(session, product, title="Export fixed")
    assert helper.ask("export", user_hash="0" * 64).status_code == 401
    anonymous = Helper(client, product, None)
    assert anonymous.ask("export").status_code == 401  # identity is required
    product.require_identity = False
    session.commit()
    assert anonymous.found("export") == [note.id]


def test_asking_writes_nothing(session: Session, product: Product, helper: Helper) -> None:
    make_note(session, product, title="Export fixed")
    with writes_on(db.engine, widget_engine()) as seen:
        assert len(helper.found("export")) == 1
    assert seen == []
    assert count(session, EndUser) == 0


# What was shown, and what came of it ----------------------------------------------------


def test_what_was_shown_is_recorded_in_order(
    session: Session, product: Product, helper: Helper
) -> None:
    first, second = make_note(session, product), make_note(session, product)
    response = helper.shown("export is empty", [second.id, first.id])
    assert response.status_code == 201
    token = response.get_json()["id"]
    request = session.scalar(select(HelpRequest))
    assert request is not None and request.token == token
    assert request.query == "export is empty" and request.outcome is None
    assert request.end_user_id == session.scalar(select(EndUser.id))
    rows = session.execute(select(HelpShown.note_id, HelpShown.position)).all()
    assert sorted(rows, key=lambda r: r.position) == [(second.id, 0), (first.id, 1)]


def test_only_published_notes_of_the_product_can_be_recorded_as_shown(
    session: Session, product: Product, helper: Helper
) -> None:
    other = make_note(session, make_product(session))
    draft = make_note(session, product, status="draft")
    internal = make_note(session, product, is_internal=True)
    note = make_note(session, product)
    for note_ids in ([], [other.id], [draft.id], [internal.id], [note.id] * 11, "1", [True]):
        response = helper.shown("export", note_ids)
        assert response.status_code == 422, note_ids
        assert set(response.get_json()["errors"]) == {"note_ids"}
    for query in (None, "", "x" * 501):
        assert helper.shown(query, [note.id]).status_code == 422
    assert helper.shown("export", [note.id], user_hash="0" * 64).status_code == 401
    assert count(session, HelpRequest) == 0


def test_an_answer_is_recorded_once_with_a_read_through_help(
    session: Session, product: Product, helper: Helper
) -> None:
    first, second = make_note(session, product), make_note(session, product)
    token = helper.shown("export", [first.id, second.id]).get_json()["id"]
    assert helper.decide(token, "answered", second.id).status_code == 204
    request = session.scalar(select(HelpRequest))
    assert request is not None
    decided_at = request.decided_at
    assert (request.outcome, request.answered_note_id) == ("answered", second.id)
    assert session.execute(select(ReadReceipt.note_id, ReadReceipt.channel)).all() == [
        (second.id, "help")
    ]
    # The same choice again changes nothing; another one is a conflict.
    assert helper.decide(token, "answered", second.id).status_code == 204
    assert helper.decide(token, "answered", first.id).status_code == 409
    assert helper.decide(token, "needs_help").status_code == 409
    session.expire_all()
    request = session.scalar(select(HelpRequest))
    assert request is not None and request.decided_at == decided_at
    assert request.answered_note_id == second.id
    assert count(session, ReadReceipt) == 1


@contextmanager
def another_call_decides_first(request_id: int, outcome: str, note_id: int | None):
    """Make the next decision on the widget's engine find that another call decided the
    request between its read and its write: that call's UPDATE runs and is committed
    just before its own, on the same cursor. Yields the statements it raced (one, once it has)."""
    raced: list[str] = []
    answered = "NULL" if note_id is None else str(int(note_id))

    def before(_conn: Any, cursor: Any, statement: str, *_args: Any) -> None:
        if statement.startswith("UPDATE help_request ") and not raced:
            raced.append(statement)
            cursor.execute(
                f"UPDATE help_request SET outcome = '{outcome}', answered_note_id = {answered}"
                f" WHERE id = {int(request_id)}"
            )
            cursor.connection.commit()  # as that call's own transaction would have

    event.listen(widget_engine(), "before_cursor_execute", before)
    try:
        yield raced
    finally:
        event.remove(widget_engine(), "before_cursor_execute", before)


@pytest.mark.parametrize(
    ("theirs", "ours", "status"),
    [
        ("needs_help", "answered", 409),
        ("answered", "needs_help", 409),
        ("answered", "answered", 204),
        ("needs_help", "needs_help", 204),
    ],
)
def test_of_two_racing_choices_the_first_is_kept_and_the_second_told(
    session: Session, product: Product, helper: Helper, theirs: str, ours: str, status: int
) -> None:
    note = make_note(session, product)
    token = helper.shown("export", [note.id]).get_json()["id"]
    request_id = session.scalar(select(HelpRequest.id))
    assert request_id is not None

    def answered(outcome: str) -> int | None:
        return note.id if outcome == "answered" else None

    with another_call_decides_first(request_id, theirs, answered(theirs)) as raced:
        assert helper.decide(token, ours, answered(ours)).status_code == status
    assert len(raced) == 1
    session.expire_all()
    kept = session.execute(select(HelpRequest.outcome, HelpRequest.answered_note_id)).one()
    assert tuple(kept) == (theirs, answered(theirs))
    # The call that lost records no read: the one that won records its own.
    assert count(session, ReadReceipt) == 0


def test_still_needing_help_reads_nothing(
    session: Session, product: Product, helper: Helper
) -> None:
    note = make_note(session, product)
    token = helper.shown("export", [note.id]).get_json()["id"]
    assert helper.decide(token, "needs_help").status_code == 204
    assert helper.decide(token, "needs_help").status_code == 204
    assert helper.decide(token, "answered", note.id).status_code == 409
    assert session.scalar(select(HelpRequest.outcome)) == "needs_help"
    assert count(session, ReadReceipt) == 0


def test_bad_outcomes_are_clear_errors(session: Session, product: Product, helper: Helper) -> None:
    note, unshown = make_note(session, product), make_note(session, product)
    token = helper.shown("export", [note.id]).get_json()["id"]
    for outcome, note_id, field in [
        ("solved", note.id, "outcome"),
        (None, None, "outcome"),
        ("answered", None, "note_id"),
        ("answered", unshown.id, "note_id"),
        ("answered", str(note.id), "note_id"),
    ]:
        response = helper.decide(token, outcome, note_id)
        assert response.status_code == 422
        assert set(response.get_json()["errors"]) == {field}
    assert session.scalar(select(HelpRequest.outcome)) is None


def test_a_token_of_another_user_or_product_is_not_found(
    session: Session, product: Product, helper: Helper, client: FlaskClient
) -> None:
    note = make_note(session, product)
    token = helper.shown("export", [note.id]).get_json()["id"]
    assert Helper(client, product, "user-2").decide(token, "needs_help").status_code == 404
    other = make_product(session, allowed_origins=(ORIGIN,))
    assert Helper(client, other).decide(token, "needs_help").status_code == 404
    assert helper.decide("no-such-token", "needs_help").status_code == 404
    assert helper.decide(token, "needs_help", user_hash="0" * 64).status_code == 401
    assert session.scalar(select(HelpRequest.outcome)) is None


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/widget/a%00b/notes"),
        ("GET", "/api/v1/widget/a%00b/help?q=export"),
        ("POST", "/api/v1/widget/a%00b/reads"),
        ("POST", "/api/v1/widget/a%00b/acknowledgements"),
        ("POST", "/api/v1/widget/a%00b/help"),
        ("OPTIONS", "/api/v1/widget/a%00b/notes"),
        ("POST", "{base}/help/x%00"),
        ("POST", "{base}/help/" + "x" * 33),
        ("POST", "{base}/help/x.y"),
        ("OPTIONS", "{base}/help/x%00"),
    ],
)
def test_a_widget_key_or_help_id_that_names_nothing_is_not_found(
    helper: Helper, method: str, path: str
) -> None:
    """Not a 500 from PostgreSQL, which refuses a NUL in a query."""
    response = helper.client.open(
        path.format(base=helper.base), method=method, json=helper.identity()
    )
    assert response.status_code == 404
    assert response.get_json()["error"]


def test_help_records_only_notes_the_users_widget_lists(
    session: Session, product: Product, helper: Helper
) -> None:
    everyone = make_note(session, product, version="1.0.0", title="Export fixed")
    later = make_note(session, product, version="2.0.0", title="Export faster")
    pro = make_note(
        session,
        product,
        title="Export for teams",
        audience={
            "match": "all",
            "conditions": [{"attribute": "plan", "op": "eq", "value": "pro"}],
        },
    )
    seen_as = {"version": "1.0.0", "attr.plan": "free"}
    helper.notes(**seen_as)  # what the widget stores of them
    assert helper.found("export", **seen_as) == [everyone.id]
    for unseen in (later.id, pro.id):
        response = helper.shown("export", [everyone.id, unseen])
        assert response.status_code == 422, unseen
        assert str(unseen) in response.get_json()["errors"]["note_ids"]
    assert count(session, HelpRequest) == 0

    # Shown while the user was on 2.0.0, answered once they are back on 1.0.0: the
    # answer is a note their widget no longer lists.
    helper.notes(version="2.0.0")
    token = helper.shown("export", [later.id]).get_json()["id"]
    helper.notes(version="1.0.0")
    response = helper.decide(token, "answered", later.id)
    assert response.status_code == 422
    assert set(response.get_json()["errors"]) == {"note_id"}
    assert count(session, ReadReceipt) == 0


def test_help_records_no_note_held_back_from_the_user_unless_an_agent_sent_it(
    session: Session, product: Product, client: FlaskClient
) -> None:
    held = make_note(session, product, title="Export fixed", holdback_percent=50)
    control = next(
        f"user-{i}" for i in range(1000) if holdback.in_control(held.id, f"user-{i}", 50)
    )
    asker = Helper(client, product, control)
    assert asker.found("export") == []
    assert asker.shown("export", [held.id]).status_code == 422
    end_user = session.scalar(select(EndUser.id).where(EndUser.external_id == control))
    session.add(
        AgentSend(
            product_id=product.id, note_id=held.id, end_user_id=end_user, agent="Ann", via="console"
        )
    )
    session.commit()
    assert asker.found("export") == [held.id]
    assert asker.shown("export", [held.id]).status_code == 201


def test_an_anonymous_users_help_is_recorded_without_a_read(
    session: Session, product: Product, client: FlaskClient
) -> None:
    product.require_identity = False
    session.commit()
    note = make_note(session, product)
    anonymous = Helper(client, product, None)
    token = anonymous.shown("export", [note.id]).get_json()["id"]
    assert Helper(client, product).decide(token, "needs_help").status_code == 404
    assert anonymous.decide(token, "answered", note.id).status_code == 204
    assert session.scalar(select(HelpRequest.end_user_id)) is None
    assert count(session, ReadReceipt) == 0


def test_note_counts_say_how_often_a_note_was_shown_and_what_came_of_it(
    session: Session, product: Product, helper: Helper, client: FlaskClient
) -> None:
    first, second, never = (make_note(session, product) for _ in range(3))
    other = make_product(session, allowed_origins=(ORIGIN,))
    elsewhere = make_note(session, other)
    asked = [
        (helper, [first.id, second.id], ("answered", first.id)),
        (Helper(client, product, "user-2"), [second.id, first.id], ("answered", second.id)),
        (Helper(client, product, "user-3"), [first.id], ("needs_help", None)),
        (Helper(client, product, "user-4"), [first.id, second.id], None),
    ]
    for asker, shown, outcome in asked:
        token = asker.shown("export", shown).get_json()["id"]
        if outcome:
            assert asker.decide(token, *outcome).status_code == 204
    Helper(client, other).shown("export", [elsewhere.id])
    counts = help.note_counts(session, product.id)
    assert counts == {
        first.id: help.HelpCounts(shown=4, answered=1, needs_help=1),
        second.id: help.HelpCounts(shown=3, answered=1, needs_help=0),
    }
    assert help.note_counts(session, product.id, [second.id, never.id]) == {
        second.id: help.HelpCounts(shown=3, answered=1, needs_help=0),
        never.id: help.HelpCounts(),
    }
