"""Tickets as the domain keeps them: the one validation rule, stored once per source and
desk id, updated when the desk's view changes, matched to end users by id or keyed
address, never keeping the address, and found by topic."""

from __future__ import annotations

import hashlib
import hmac
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, func, select

from announcements import tickets
from announcements.errors import ValidationFailed
from announcements.models import EndUser, Ticket
from app.extensions import db
from tests.factories import make_product

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SECRET = "test-secret"


def ticket(**overrides) -> tickets.TicketInput:
    raw = {
        "source": "zendesk",
        "external_id": "5158",
        "created_at": "2026-02-27T10:12:07Z",
        "user_id": "u-1",
        **overrides,
    }
    return tickets.check_ticket(raw, now=NOW)


def rows(session) -> list[Ticket]:
    return list(session.scalars(select(Ticket).order_by(Ticket.id)))


# Validation (no database) ----------------------------------------------------


def test_a_valid_ticket_is_read_trimmed_and_folded() -> None:
    checked = tickets.check_ticket(
        {
            "source": " Zendesk-2 ",
            "external_id": 5158,
            "created_at": "2026-02-27T11:12:07+01:00",
            "email": " Jane@Example.COM ",
            "app_version": " 2.4.0 ",
            "tags": ["Export", "export", "  Billing   Issue ", "", "a|b"],
            "subject": "  Export\n fails  ",
            "unknown": "ignored",
        },
        now=NOW,
    )
    assert checked == tickets.TicketInput(
        source="zendesk-2",
        external_id="5158",
        created_at=datetime(2026, 2, 27, 10, 12, 7, tzinfo=UTC),
        user_id=None,
        email="jane@example.com",
        app_version="2.4.0",
        tags=("export", "billing issue", "a b"),
        subject="Export fails",
    )


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"source": None}, "source", "Name where the ticket comes from, such as zendesk."),
        (
            {"source": "Zen desk"},
            "source",
            "Name the source with letters, digits, - . and _ (starting with a letter or digit), "
            "such as zendesk.",
        ),
        (
            {"source": "_desk"},
            "source",
            "Name the source with letters, digits, - . and _ (starting with a letter or digit), "
            "such as zendesk.",
        ),
        ({"source": "z" * 41}, "source", "Keep it to 40 characters."),
        ({"external_id": ""}, "external_id", "Send the desk's id of the ticket."),
        ({"external_id": "x" * 129}, "external_id", "Keep it to 128 characters."),
        ({"external_id": True}, "external_id", "Send text or a whole number."),
        ({"external_id": "a\x00b"}, "external_id", "Holds characters that are not text."),
        ({"external_id": "\ud800"}, "external_id", "Holds characters that are not text."),
        ({"created_at": None}, "created_at", "Send when the ticket was opened."),
        (
            {"created_at": "2026-02-27T10:12:07"},
            "created_at",
            "Give the time's offset, such as Z or +02:00.",
        ),
        (
            {"created_at": "2026-02-27"},
            "created_at",
            "Give the time's offset, such as Z or +02:00.",
        ),
        (
            {"created_at": "yesterday"},
            "created_at",
            "Send an ISO 8601 time such as 2026-03-01T09:30:00Z.",
        ),
        (
            {"created_at": 1700000000},
            "created_at",
            "Send when the ticket was opened, as ISO 8601 text.",
        ),
        ({"created_at": "2026-03-02T12:00:01Z"}, "created_at", "That time is in the future."),
        ({"created_at": "0001-01-01T00:00:00+01:00"}, "created_at", "That time is out of range."),
        ({"user_id": None}, "user_id", "Send the requester's user_id, email or both."),
        ({"user_id": "u" * 256}, "user_id", "Keep it to 255 characters."),
        ({"email": "not an address"}, "email", None),
        ({"email": "a" * 243 + "@example.com"}, "email", "Keep it to 254 characters."),
        ({"app_version": "1" * 65}, "app_version", "Keep it to 64 characters."),
        ({"tags": "export"}, "tags", "Send the tags as a list of text."),
        ({"tags": [str(n) for n in range(51)]}, "tags", "Send at most 50 tags."),
        ({"tags": ["ok", 3]}, "tags", "Each tag is a line of text."),
        ({"tags": ["x" * 101]}, "tags", "Keep each tag to 100 characters."),
        ({"subject": "s" * 501}, "subject", "Keep it to 500 characters."),
        ({"subject": ["a"]}, "subject", "Send text."),
    ],
)
def test_each_broken_rule_names_its_field(overrides, field, message) -> None:
    with pytest.raises(ValidationFailed) as caught:
        ticket(**overrides)
    assert list(caught.value.errors) == [field]
    if message is not None:
        assert caught.value.errors[field] == message
    else:
        assert caught.value.errors[field].startswith("That is not an email address we can use")


def test_a_source_may_hold_dots_and_underscores_as_its_message_says() -> None:
    assert ticket(source="Help.Desk_2").source == "help.desk_2"


def test_a_day_of_clock_skew_is_accepted_and_the_source_can_come_from_the_caller() -> None:
    ahead = tickets.check_ticket(
        {"external_id": "1", "created_at": "2026-03-02T12:00:00Z", "user_id": "u"},
        source="intercom",
        now=NOW,
    )
    assert ahead.source == "intercom"
    assert ahead.created_at == NOW + timedelta(days=1)


def test_a_desk_may_send_a_ticket_without_a_requester() -> None:
    checked = tickets.check_ticket(
        {"external_id": "1", "created_at": NOW}, source="zendesk", now=NOW, require_requester=False
    )
    assert (checked.user_id, checked.email) == (None, None)


def test_the_email_key_is_the_keyed_hash_of_the_normalised_address() -> None:
    expected = hmac.new(b"k", b"ticket-email\njane@example.com", hashlib.sha256).hexdigest()
    assert tickets.email_key("k", " Jane@EXAMPLE.com") == expected
    assert tickets.email_key("other", "jane@example.com") != expected
    assert tickets.email_key("k", "not an address") is None
    assert tickets.email_key("k", "") is None


def test_fold_tag() -> None:
    assert tickets.fold_tag("  Straße  Export ") == "strasse export"
    assert tickets.fold_tag("ＥＸＰＯＲＴ") == "export"
    assert tickets.fold_tag("a|b") == "a b"


# Storing (SQLite and PostgreSQL) -------------------------------------------------


def store(session, product, data, now=NOW) -> str:
    status = tickets.store(session, product, data, secret_key=SECRET, now=now)
    session.commit()
    return status


def test_a_ticket_is_stored_once_then_updated_and_keeps_no_address(session) -> None:
    product = make_product(session)
    first = ticket(user_id=None, email="Jane@Example.com", tags=["Export"], subject="Export fails")
    assert store(session, product, first) == "created"
    assert store(session, product, first, now=NOW + timedelta(hours=1)) == "unchanged"
    [row] = rows(session)
    assert (row.received_at, row.updated_at) == (NOW, NOW)
    assert row.requester_key == tickets.email_key(SECRET, "jane@example.com")
    assert row.requester_external_id is None
    assert (row.tags, row.tag_text, row.subject, row.subject_key) == (
        ["export"],
        "|export|",
        "Export fails",
        "export fails",
    )
    stored = [str(v) for v in session.execute(select(Ticket.__table__)).one()]
    assert not any("example.com" in value.lower() for value in stored)

    changed = ticket(user_id=None, email="jane@example.com", tags=["export", "billing"])
    later = NOW + timedelta(hours=2)
    assert store(session, product, changed, now=later) == "updated"
    session.expire_all()
    [row] = rows(session)
    assert row.tags == ["export", "billing"] and row.tag_text == "|export|billing|"
    assert row.subject == "Export fails"  # a delivery without a subject keeps it
    assert (row.received_at, row.updated_at) == (NOW, later)


def test_a_delivery_without_a_requester_keeps_the_stored_one(session) -> None:
    product = make_product(session)
    assert store(session, product, ticket(user_id="u-1", app_version="2.0")) == "created"
    partial = tickets.check_ticket(
        {"source": "zendesk", "external_id": "5158", "created_at": "2026-02-27T10:12:07Z"},
        now=NOW,
        require_requester=False,
    )
    assert store(session, product, partial) == "unchanged"
    [row] = rows(session)
    assert (row.requester_external_id, row.app_version) == ("u-1", "2.0")


def test_a_delivery_without_tags_keeps_the_stored_ones_and_an_empty_list_clears_them(
    session,
) -> None:
    product = make_product(session)
    assert ticket().tags is None and ticket(tags=[]).tags == ()
    assert store(session, product, ticket(tags=["Export"])) == "created"
    assert store(session, product, ticket(subject="Export fails")) == "updated"
    [row] = rows(session)
    assert (row.tags, row.tag_text, row.subject) == (["export"], "|export|", "Export fails")
    assert store(session, product, ticket()) == "unchanged"
    assert store(session, product, ticket(tags=[])) == "updated"
    session.expire_all()
    [row] = rows(session)
    assert (row.tags, row.tag_text) == ([], "|")


def test_the_same_desk_id_from_another_source_or_product_is_another_ticket(session) -> None:
    product, other = make_product(session), make_product(session)
    assert store(session, product, ticket()) == "created"
    assert store(session, product, ticket(source="intercom")) == "created"
    assert store(session, other, ticket()) == "created"
    assert [(r.product_id, r.source) for r in rows(session)] == [
        (product.id, "zendesk"),
        (product.id, "intercom"),
        (other.id, "zendesk"),
    ]


def test_requesters_match_by_external_id_then_by_keyed_address(session) -> None:
    product, other = make_product(session), make_product(session)
    by_id = EndUser(product_id=product.id, external_id="u-1")
    by_mail = EndUser(
        product_id=product.id,
        external_id="u-2",
        email_key=tickets.email_key(SECRET, "jane@example.com"),
    )
    elsewhere = EndUser(product_id=other.id, external_id="u-9")
    session.add_all([by_id, by_mail, elsewhere])
    session.commit()
    store(session, product, ticket(external_id="1", user_id="u-1", email="jane@example.com"))
    store(session, product, ticket(external_id="2", user_id="nobody", email="JANE@example.com"))
    store(session, product, ticket(external_id="3", user_id=None, email="jane@example.com"))
    store(session, product, ticket(external_id="4", user_id="u-9"))  # another product's user
    store(session, product, ticket(external_id="5", user_id=None, email="else@example.com"))
    assert [r.end_user_id for r in rows(session)] == [by_id.id, by_mail.id, by_mail.id, None, None]


def test_unmatched_tickets_are_matched_once_their_users_are_seen(session) -> None:
    product, other = make_product(session), make_product(session)
    store(session, product, ticket(external_id="1", user_id="late"))
    store(session, product, ticket(external_id="2", user_id=None, email="kim@example.com"))
    store(session, product, ticket(external_id="3", user_id="never"))
    store(session, other, ticket(external_id="4", user_id="late"))
    assert tickets.match_unmatched(db.session, product.id) == 0
    late = EndUser(product_id=product.id, external_id="late")
    kim = EndUser(
        product_id=product.id,
        external_id="k",
        email_key=tickets.email_key(SECRET, "kim@example.com"),
    )
    session.add_all([late, kim])
    session.commit()
    assert tickets.match_unmatched(session, product.id) == 2
    session.commit()
    session.expire_all()
    assert [r.end_user_id for r in rows(session)] == [late.id, kim.id, None, None]
    assert tickets.match_unmatched(session, product.id) == 0


def test_topics_match_folded_tags_and_subjects_with_wildcards_taken_literally(session) -> None:
    product = make_product(session)
    cases = {
        "1": {"tags": ["Export"], "subject": "Question"},
        "2": {"tags": ["exporter"], "subject": "Hello"},
        "3": {"tags": [], "subject": "CSV EXPORT broken"},
        "4": {"tags": ["billing"], "subject": "Invoice"},
        "5": {"tags": ["100%_off"], "subject": None},
        "6": {"tags": ["100x off"], "subject": None},
    }
    for external_id, fields in cases.items():
        store(session, product, ticket(external_id=external_id, **fields))

    def found(topics) -> list[str]:
        query = select(Ticket.external_id).where(tickets.topic_clause(topics))
        return sorted(session.scalars(query.order_by(Ticket.external_id)))

    assert found(["export"]) == ["1", "3"]
    assert found([" EXPORT ", "Billing"]) == ["1", "3", "4"]
    assert found(["100%_off"]) == ["5"]
    assert found(["exp"]) == ["3"]  # a tag matches whole, a subject anywhere
    assert found([]) == ["1", "2", "3", "4", "5", "6"]


def test_concurrent_deliveries_of_one_ticket_make_one_row(app, session) -> None:
    product = make_product(session)
    product_id = product.id
    barrier = threading.Barrier(6)
    statuses: list[str] = []
    errors: list[BaseException] = []

    def deliver(number: int) -> None:
        with app.app_context():
            try:
                own = db.session
                mine = own.get(type(product), product_id)
                barrier.wait()
                tags = ["a"] if number % 2 else ["b"]
                statuses.append(store(own, mine, ticket(tags=tags)))
            except BaseException as error:  # noqa: BLE001 - reported below
                errors.append(error)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=deliver, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert statuses.count("created") == 1 and len(statuses) == 6
    assert session.scalar(select(func.count()).select_from(Ticket)) == 1


def test_a_ticket_stored_by_another_delivery_midway_turns_this_one_into_an_update(
    session, monkeypatch
) -> None:
    """The moment a race needs, made to happen: between this delivery's look-up and its
    insert, another connection stores the same ticket and commits."""
    product = make_product(session)
    matching = tickets._matching_user
    raced = []

    def other_delivery_first(*args, **kwargs):
        if raced:
            return matching(*args, **kwargs)
        raced.append(True)
        with db.engine.connect() as other:
            other.execute(
                Ticket.__table__.insert(),
                {
                    "product_id": product.id,
                    "source": "zendesk",
                    "external_id": "5158",
                    "created_at": NOW - timedelta(days=3),
                    "received_at": NOW,
                    "updated_at": NOW,
                    "tags": ["old"],
                    "tag_text": "|old|",
                    "subject_key": "",
                },
            )
            other.commit()
        return matching(*args, **kwargs)

    monkeypatch.setattr(tickets, "_matching_user", other_delivery_first)
    assert store(session, product, ticket(tags=["new"])) == "updated"
    session.expire_all()
    [row] = rows(session)
    assert (row.tags, row.requester_external_id) == (["new"], "u-1")
    assert row.created_at == datetime(2026, 2, 27, 10, 12, 7, tzinfo=UTC)


# Storing in bulk ---------------------------------------------------------------------


def store_many(session, product, batch, now=NOW) -> list[str]:
    statuses = tickets.store_many(session, product, batch, secret_key=SECRET, now=now)
    session.commit()
    return statuses


def saved(session, product) -> list[tuple]:
    """Each of the product's tickets as stored, read afresh, its user by their external id."""
    session.expire_all()
    query = (
        select(Ticket)
        .where(Ticket.product_id == product.id)
        .order_by(Ticket.source, Ticket.external_id)
    )
    return [
        (
            t.source,
            t.external_id,
            t.created_at,
            t.received_at,
            t.updated_at,
            t.end_user.external_id if t.end_user else None,
            t.requester_external_id,
            t.requester_key,
            t.app_version,
            t.tags,
            t.tag_text,
            t.subject,
            t.subject_key,
        )
        for t in session.scalars(query)
    ]


@pytest.fixture
def statements(session):
    """The SQL statements the test's engine runs, as a list that fills as they run."""
    ran: list[str] = []

    def count(_connection, _cursor, statement, *_args) -> None:
        ran.append(statement.split(None, 1)[0].upper())

    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", count)
    yield ran
    event.remove(engine, "before_cursor_execute", count)


def deliveries() -> tuple[list[tickets.TicketInput], list[tickets.TicketInput]]:
    """Tickets stored first, then a batch of new, changed, unchanged and repeated ones."""
    first = [
        ticket(external_id="1", tags=["export"]),
        ticket(external_id="2", tags=["export"], app_version="2.0"),
        ticket(external_id="3", user_id="u-3", subject="Login"),
    ]
    batch = [
        ticket(external_id="1", tags=["export"]),  # unchanged
        ticket(external_id="2", tags=["export", "billing"]),  # changed; keeps its version
        ticket(external_id="10", tags=["sync"]),  # new
        ticket(external_id="10", tags=["sync", "login"]),  # new, then changed in the batch
        ticket(external_id="11", user_id=None, email="kim@example.com"),  # new
        ticket(external_id="11", user_id=None, email="KIM@example.com"),  # and the same again
        tickets.check_ticket(  # a partial delivery keeps the requester: unchanged
            {"source": "zendesk", "external_id": "3", "created_at": "2026-02-27T10:12:07Z"},
            now=NOW,
            require_requester=False,
        ),
        ticket(external_id="3", user_id="u-30", subject="Login"),  # a new requester
        ticket(external_id="10", source="intercom"),  # the same id from another source
    ]
    return first, batch


def test_a_batch_stores_what_storing_each_ticket_in_turn_would(session, statements) -> None:
    first, batch = deliveries()
    one_by_one, together = make_product(session), make_product(session)
    session.add_all(
        [
            EndUser(product_id=product.id, external_id=user)
            for product in (one_by_one, together)
            for user in ("u-1", "u-30")
        ]
    )
    session.commit()
    for product in (one_by_one, together):
        assert store_many(session, product, first) == ["created"] * 3
    later = NOW + timedelta(hours=1)
    each = [store(session, one_by_one, data, now=later) for data in batch]
    session.refresh(together)  # not to count its reload after the last commit
    statements.clear()
    assert store_many(session, together, batch, now=later) == each
    assert each == [
        "unchanged",
        "updated",
        "created",
        "updated",
        "created",
        "unchanged",
        "unchanged",
        "updated",
        "created",
    ]
    # The stored rows, the users by id and by address, the new rows, and the changed ones:
    # those whose requester changed, and the others.
    assert statements == ["SELECT", "SELECT", "SELECT", "INSERT", "UPDATE", "UPDATE"]
    assert saved(session, together) == saved(session, one_by_one)
    by_name = {row[:2]: row for row in saved(session, together)}
    assert by_name[("zendesk", "1")][3:5] == (NOW, NOW)  # unchanged: not written
    assert by_name[("zendesk", "2")][3:5] == (NOW, later)
    assert by_name[("zendesk", "2")][8:10] == ("2.0", ["export", "billing"])
    assert by_name[("zendesk", "10")][3:5] == (later, later)
    assert by_name[("zendesk", "10")][9] == ["sync", "login"]
    assert by_name[("zendesk", "3")][5:7] == ("u-30", "u-30")  # matched again
    assert by_name[("zendesk", "2")][5] == "u-1"


def test_storing_a_batch_again_only_reads_it(session, statements) -> None:
    product = make_product(session)
    batch = [ticket(external_id=str(n), user_id=f"u-{n % 7}") for n in range(300)]
    assert store_many(session, product, batch) == ["created"] * 300
    session.refresh(product)
    statements.clear()
    assert store_many(session, product, batch) == ["unchanged"] * 300
    assert statements == ["SELECT"]
    assert tickets.store_many(session, product, [], secret_key=SECRET, now=NOW) == []


def test_a_batch_larger_than_a_round_is_stored_a_round_at_a_time(session, monkeypatch) -> None:
    monkeypatch.setattr(tickets, "STORE_ROUND", 2)
    product = make_product(session)
    batch = [
        ticket(external_id="1"),
        ticket(external_id="2"),
        ticket(external_id="1", tags=["a"]),  # in the next round: sees the first's row
        ticket(external_id="1", tags=["a"]),
        ticket(external_id="3"),
    ]
    assert store_many(session, product, batch) == [
        "created",
        "created",
        "updated",
        "unchanged",
        "created",
    ]
    assert [r.tags for r in rows(session)] == [["a"], [], []]


def test_a_batch_keeps_tags_a_later_delivery_leaves_out(session) -> None:
    product = make_product(session)
    batch = [ticket(), ticket(tags=["a"]), ticket(subject="Sync"), ticket(external_id="2")]
    assert store_many(session, product, batch) == ["created", "updated", "updated", "created"]
    assert {r.external_id: (r.tags, r.tag_text, r.subject) for r in rows(session)} == {
        "5158": (["a"], "|a|", "Sync"),
        "2": ([], "|", None),
    }


def test_a_batch_matches_requesters_by_id_then_by_keyed_address(session) -> None:
    product, other = make_product(session), make_product(session)
    jane_key = tickets.email_key(SECRET, "jane@example.com")
    by_id = EndUser(product_id=product.id, external_id="u-1")
    by_mail = EndUser(product_id=product.id, external_id="u-2", email_key=jane_key)
    same_mail = EndUser(product_id=product.id, external_id="u-3", email_key=jane_key)
    elsewhere = EndUser(product_id=other.id, external_id="u-9")
    elsewhere_mail = EndUser(
        product_id=other.id,
        external_id="u-8",
        email_key=tickets.email_key(SECRET, "else@example.com"),
    )
    session.add_all([by_id, by_mail, same_mail, elsewhere, elsewhere_mail])
    session.commit()
    batch = [
        ticket(external_id="1", user_id="u-1", email="jane@example.com"),  # the id wins
        ticket(external_id="2", user_id="nobody", email="JANE@example.com"),
        ticket(external_id="3", user_id=None, email="jane@example.com"),
        ticket(external_id="4", user_id="u-9"),  # another product's user
        ticket(external_id="5", user_id=None, email="else@example.com"),  # and address
        ticket(external_id="6", user_id="u-2"),
    ]
    assert store_many(session, product, batch) == ["created"] * 6
    first_by_mail = min(by_mail.id, same_mail.id)
    assert [r.end_user_id for r in rows(session)] == [
        by_id.id,
        first_by_mail,
        first_by_mail,
        None,
        None,
        by_mail.id,
    ]
    # Later deliveries: a new requester is matched again; one without keeps the match.
    again = [
        ticket(external_id="1", user_id="u-2"),
        tickets.check_ticket(
            {"source": "zendesk", "external_id": "2", "created_at": "2026-02-27T10:12:07Z"},
            now=NOW,
            require_requester=False,
        ),
        ticket(external_id="4", user_id=None, email="jane@example.com"),
    ]
    assert store_many(session, product, again) == ["updated", "unchanged", "updated"]
    assert [r.end_user_id for r in rows(session)][:4] == [
        by_mail.id,
        first_by_mail,
        first_by_mail,
        first_by_mail,
    ]


def test_tickets_stored_by_another_delivery_midway_turn_those_of_the_batch_into_updates(
    session, monkeypatch
) -> None:
    """The race the batch's insert must survive: between its look-up of stored rows and
    its insert, another connection stores two of its tickets and commits."""
    product = make_product(session)
    user = EndUser(product_id=product.id, external_id="u-1")
    session.add(user)
    session.commit()
    matching = tickets._matching_user
    raced = []

    def other_delivery_first(*args, **kwargs):
        if not raced:
            raced.append(True)
            with db.engine.connect() as other:
                other.execute(
                    Ticket.__table__.insert(),
                    [
                        {
                            "product_id": product.id,
                            "source": "zendesk",
                            "external_id": external_id,
                            "created_at": NOW - timedelta(days=3),
                            "received_at": NOW - timedelta(hours=1),
                            "updated_at": NOW - timedelta(hours=1),
                            "tags": ["old"],
                            "tag_text": "|old|",
                            "subject_key": "",
                        }
                        for external_id in ("2", "3")
                    ],
                )
                other.commit()
        return matching(*args, **kwargs)

    monkeypatch.setattr(tickets, "_matching_user", other_delivery_first)
    batch = [
        ticket(external_id="1", tags=["new"]),
        ticket(external_id="2", tags=["new"]),
        ticket(external_id="3", tags=["new"]),
        ticket(external_id="3", tags=["new", "more"]),
    ]
    assert store_many(session, product, batch) == ["created", "updated", "updated", "updated"]
    assert raced
    assert sorted((r.external_id, r.tags, r.end_user_id) for r in rows(session)) == [
        ("1", ["new"], user.id),
        ("2", ["new"], user.id),
        ("3", ["new", "more"], user.id),
    ]
    [received] = {r.received_at for r in rows(session) if r.external_id != "1"}
    assert received == NOW - timedelta(hours=1)  # still the other delivery's row
    assert {r.created_at for r in rows(session)} == {datetime(2026, 2, 27, 10, 12, 7, tzinfo=UTC)}


def test_concurrent_batches_of_the_same_tickets_make_one_row_each(app, session) -> None:
    product = make_product(session)
    product_id = product.id
    barrier = threading.Barrier(4)
    statuses: list[list[str]] = []
    errors: list[BaseException] = []

    def deliver(number: int) -> None:
        with app.app_context():
            try:
                own = db.session
                mine = own.get(type(product), product_id)
                order = range(40) if number % 2 else reversed(range(40))
                batch = [ticket(external_id=str(n), tags=[f"t{number}"]) for n in order]
                barrier.wait()
                statuses.append(store_many(own, mine, batch))
            except BaseException as error:  # noqa: BLE001 - reported below
                errors.append(error)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=deliver, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sum(batch.count("created") for batch in statuses) == 40
    assert session.scalar(select(func.count()).select_from(Ticket)) == 40
