"""The days the widget saw each end user: one row on a user's first sighting of each UTC
day, with the day and version of the sighting before, and nothing more that day, on
SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from announcements import reads, user_state
from announcements.models import EndUser, EndUserDay, Product, utcnow
from app.database import widget_engine
from app.extensions import db
from tests.factories import make_note, make_product
from tests.test_widget_api import Widget, writes_on

ONE_DAY = timedelta(days=1)


@pytest.fixture
def product(session: Session) -> Product:
    return make_product(session)


@pytest.fixture
def widget(client: FlaskClient, product: Product) -> Widget:
    return Widget(client, product)


def days(session: Session) -> list[tuple[object, ...]]:
    """Every stored day row as (external id, day, seen_at, version, previous day, previous
    version), in order."""
    session.expire_all()
    rows = session.execute(
        select(
            EndUser.external_id,
            EndUserDay.day,
            EndUserDay.seen_at,
            EndUserDay.app_version,
            EndUserDay.previous_day,
            EndUserDay.previous_version,
        )
        .join(EndUser, EndUser.id == EndUserDay.end_user_id)
        .order_by(EndUser.external_id, EndUserDay.day)
    )
    return [tuple(row) for row in rows]


def move_back(session: Session, external_id: str, to: datetime) -> None:
    """Make the stored user last seen at ``to``, as if their last visit had been then."""
    user = session.scalars(select(EndUser).where(EndUser.external_id == external_id)).one()
    user.last_seen_at = to
    session.commit()


def see(product: Product, external_id: str, now: datetime, app_version: str | None = None) -> bool:
    """What the widget's notes endpoint does at ``now``: read the user, and when the
    sighting needs writing, see them. Returns whether it wrote."""
    with widget_engine().connect() as connection:
        _, state = user_state.ReferenceStateReader().fetch_state(
            connection, product.widget_key, external_id
        )
        wanted = reads.Sighting(external_id, app_version=app_version)
        if not reads.needs_writing(wanted, state, now):
            return False
        reads.see(connection, product.id, wanted, state, now)
        connection.commit()
    return True


def test_a_new_users_first_page_view_records_the_day_without_a_previous_one(
    session: Session, widget: Widget
) -> None:
    before = utcnow()
    assert widget.notes(version="2.0.0").status_code == 200
    [(external_id, day, seen_at, version, previous_day, previous_version)] = days(session)
    assert (external_id, version, previous_day, previous_version) == (
        "user-1",
        "2.0.0",
        None,
        None,
    )
    assert before <= seen_at <= utcnow()
    assert day == seen_at.date()


def test_a_page_view_later_the_same_day_writes_nothing(
    session: Session, product: Product, widget: Widget
) -> None:
    widget.notes(version="2.0.0")
    with writes_on(db.engine, widget_engine()) as again:
        widget.notes(version="2.0.0")
        widget.notes()
    assert again == []
    assert len(days(session)) == 1


def test_the_first_sighting_of_a_new_day_records_the_previous_day_and_version(
    session: Session, product: Product, widget: Widget
) -> None:
    three_days_ago = utcnow() - 3 * ONE_DAY
    see(product, "user-1", three_days_ago, "1.0.0")
    with writes_on(db.engine, widget_engine()) as seen:
        assert widget.notes(version="1.1.0").status_code == 200
    assert seen == ["INSERT", "UPDATE"]
    [first, today] = days(session)
    assert first[1:] == (three_days_ago.date(), three_days_ago, "1.0.0", None, None)
    assert today[3:] == ("1.1.0", three_days_ago.date(), "1.0.0")
    assert today[1] == today[2].date() == first[1] + 3 * ONE_DAY
    user = session.scalars(select(EndUser)).one()
    assert (user.app_version, user.last_seen_at) == ("1.1.0", today[2])


def test_a_new_day_within_the_hour_is_recorded_once(session: Session, product: Product) -> None:
    evening = datetime(2026, 3, 9, 23, 30, tzinfo=UTC)
    assert see(product, "night-owl", evening, app_version="3.0.0")
    assert not see(product, "night-owl", evening + timedelta(minutes=20), app_version="3.0.0")
    after_midnight = datetime(2026, 3, 10, 0, 10, tzinfo=UTC)
    assert see(product, "night-owl", after_midnight, app_version="3.0.0")
    assert not see(product, "night-owl", after_midnight + timedelta(minutes=5))
    assert days(session) == [
        ("night-owl", date(2026, 3, 9), evening, "3.0.0", None, None),
        ("night-owl", date(2026, 3, 10), after_midnight, "3.0.0", date(2026, 3, 9), "3.0.0"),
    ]


def test_a_user_without_a_version_is_recorded_with_none(session: Session, product: Product) -> None:
    monday = datetime(2026, 3, 9, 8, tzinfo=UTC)
    see(product, "plain", monday)
    see(product, "plain", monday + 2 * ONE_DAY, app_version="1.0.0")
    see(product, "plain", monday + 3 * ONE_DAY)
    assert [row[3:] for row in days(session)] == [
        (None, None, None),
        ("1.0.0", date(2026, 3, 9), None),
        # No version sent keeps the stored one.
        ("1.0.0", date(2026, 3, 11), "1.0.0"),
    ]


def test_two_first_sightings_of_the_same_day_keep_the_first(
    session: Session, product: Product
) -> None:
    """Two requests that both read the user as last seen yesterday both write; the day's
    row is the first one's."""
    monday = datetime(2026, 3, 9, 8, tzinfo=UTC)
    see(product, "racer", monday, app_version="1.0.0")
    with widget_engine().connect() as connection:
        _, stale = user_state.ReferenceStateReader().fetch_state(
            connection, product.widget_key, "racer"
        )
    assert stale is not None
    tuesday = monday + ONE_DAY
    for minutes, version in ((0, "1.1.0"), (1, "1.2.0")):
        with widget_engine().connect() as connection:
            state = replace(stale)  # see() updates the state it is given
            sighting = reads.Sighting("racer", app_version=version)
            reads.see(connection, product.id, sighting, state, tuesday + timedelta(minutes=minutes))
            connection.commit()
    assert [row[1:4] for row in days(session)] == [
        (date(2026, 3, 9), monday, "1.0.0"),
        (date(2026, 3, 10), tuesday, "1.1.0"),
    ]


def test_reading_and_reacting_on_a_new_day_record_it_too(
    session: Session, product: Product, widget: Widget
) -> None:
    note = make_note(session, product)
    see(product, "user-1", utcnow() - 3 * ONE_DAY)
    assert widget.read([note.id]).status_code == 204
    assert len(days(session)) == 2
    move_back(session, "user-1", utcnow() - 2 * ONE_DAY)
    assert widget.react(note.id, "👍").status_code == 200
    assert len(days(session)) == 2  # the same day: its row is there


def test_each_product_has_its_own_days_for_the_same_external_id(
    session: Session, client: FlaskClient, product: Product
) -> None:
    other = make_product(session)
    Widget(client, product, "shared").notes(version="1.0.0")
    Widget(client, other, "shared").notes(version="9.0.0")
    stored = session.execute(select(EndUserDay.product_id, EndUserDay.app_version)).all()
    assert sorted(tuple(row) for row in stored) == sorted(
        [(product.id, "1.0.0"), (other.id, "9.0.0")]
    )
