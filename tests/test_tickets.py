"""Tickets as the domain keeps them: the one validation rule, stored once per source and
desk id, updated when the desk's view changes, matched to end users by id or keyed
address, never keeping the address, and found by topic."""

from __future__ import annotations

import hashlib
import hmac
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

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
            "Name the source with letters, digits and -, such as zendesk.",
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
