"""A note's hold-back: the users its hash puts in the control group get no popup, badge or
email for it during the attribution window, and find it in the panel, where reading it
counts like any read; everyone else, and everyone once the window ends, gets it as usual.
On SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from announcements import catalogue, inbox, mailing, subscriptions
from announcements.models import (
    EndUser,
    Frequency,
    Note,
    OutboxKind,
    OutboxMessage,
    Product,
    ReadReceipt,
    Subscriber,
    SubscriberStatus,
    utcnow,
)
from announcements.subscriptions import Preferences
from announcements.user_state import ReferenceStateReader
from app.database import widget_engine
from app.mail import delivery, transport
from tests.factories import make_note, make_product
from tests.mailserver import SmtpServer
from tests.test_widget_api import Widget

USERS = [f"user-{n}" for n in range(2000)]
PERCENT = 20


def in_control(note_id: int, external_id: str, percent: int) -> bool:
    """The rule as the holdback module states it, computed here on its own: the first 8
    bytes of sha256("tidings-holdback", note id, external id joined by line feeds), big
    endian, modulo 10,000, below the share in hundredths of a per cent."""
    digest = hashlib.sha256(f"tidings-holdback\n{note_id}\n{external_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 10_000 < percent * 100


@pytest.fixture
def product(session: Session) -> Product:
    return make_product(session, grace_releases=20)


def split(note: Note, users: list[str]) -> tuple[set[str], set[str]]:
    control = {user for user in users if in_control(note.id, user, note.holdback_percent)}
    return control, set(users) - control


def test_the_control_group_gets_no_badge_or_popup_but_finds_the_note_in_the_panel(
    session: Session, client: FlaskClient, product: Product
) -> None:
    held = make_note(session, product, version="2.0.0", is_important=True, holdback_percent=PERCENT)
    plain = make_note(session, product, version="2.0.0", is_important=True)
    control, treated = split(held, USERS)
    # About a fifth, as a binomial count of 2,000 with p = 0.2 is 400 +- 18.
    assert 300 < len(control) < 500

    for user in USERS:
        body = Widget(client, product, user).notes().get_json()
        shown = {note["id"]: (note["read"], note.get("quiet")) for note in body["notes"]}
        assert set(shown) == {held.id, plain.id}, user  # listed in the panel either way
        # Unread for the control group too, so that the panel records their read, but
        # quiet: out of the count, and the widget pops it up for nobody.
        if user in control:
            quiet = {held.id: (False, True), plain.id: (False, None)}
            assert (body["unread_count"], shown) == (1, quiet), user
        else:
            loud = {held.id: (False, None), plain.id: (False, None)}
            assert (body["unread_count"], shown) == (2, loud), user
    assert treated  # and both groups were asked


def test_a_quiet_note_says_so_and_nothing_else_changes(
    session: Session, client: FlaskClient, product: Product
) -> None:
    held = make_note(session, product, version="2.0.0", is_important=True, holdback_percent=50)
    control, treated = split(held, USERS[:50])
    quiet = Widget(client, product, min(control)).notes().get_json()["notes"]
    loud = Widget(client, product, min(treated)).notes().get_json()["notes"]
    assert quiet == [{**loud[0], "quiet": True}] and "quiet" not in loud[0]


def test_a_read_by_the_control_group_is_recorded_and_still_not_counted(
    session: Session, client: FlaskClient, product: Product
) -> None:
    held = make_note(session, product, version="2.0.0", holdback_percent=PERCENT)
    plain = make_note(session, product, version="2.0.0")
    control, _ = split(held, USERS[:100])
    widget = Widget(client, product, min(control))
    etag = widget.notes().headers["ETag"]
    assert widget.unread() == 1

    # What the widget sends when the user opens the panel: every unread note it lists.
    assert widget.read([held.id]).status_code == 204
    receipts = session.execute(select(ReadReceipt.note_id, ReadReceipt.channel)).all()
    assert receipts == [(held.id, "widget")]
    after = widget.notes(headers={"If-None-Match": etag})
    assert after.status_code == 200  # the answer changed, so its validator did
    shown = {note["id"]: (note["read"], note.get("quiet")) for note in after.get_json()["notes"]}
    assert (after.get_json()["unread_count"], shown) == (
        1,
        {held.id: (True, None), plain.id: (False, None)},
    )


def test_after_the_window_everyone_gets_the_note_unread(
    app: Flask, session: Session, client: FlaskClient, product: Product
) -> None:
    held = make_note(session, product, version="2.0.0", holdback_percent=PERCENT)
    assert held.published_at is not None
    control, _ = split(held, USERS[:300])
    assert control
    widgets = [Widget(client, product, user) for user in sorted(control)[:5]]
    assert [widget.unread() for widget in widgets] == [0] * 5

    # The catalogue knows the window: asked at its last moment and just after it.
    with widget_engine().connect() as connection:
        loaded = catalogue.load(connection, product.widget_key, app.config["BASE_URL"])
        assert loaded is not None
        _, state = ReferenceStateReader().fetch_state(
            connection, product.widget_key, widgets[0].user_id
        )
    end = held.published_at + timedelta(days=product.support_window_days)

    def unread_at(moment: datetime) -> int:
        return inbox.inbox(
            loaded, state, attributes={}, app_version=None, now=moment, limit=20, after=None
        ).unread_count

    assert (unread_at(end - timedelta(seconds=1)), unread_at(end)) == (0, 1)

    # A shorter window that has passed: the widget shows it to everyone.
    product.support_window_days = 0
    session.commit()
    assert [widget.unread() for widget in widgets] == [1] * 5
    assert all(Widget(client, product, user).unread() == 1 for user in USERS[:300])


def test_no_hold_back_and_anonymous_users_hold_nobody_back(
    session: Session, client: FlaskClient
) -> None:
    product = make_product(session, require_identity=False, grace_releases=20)
    make_note(session, product, holdback_percent=0)
    held = make_note(session, product, holdback_percent=50)
    assert Widget(client, product, None).unread() == 2  # no id to hash
    control, treated = split(held, USERS[:50])
    assert {Widget(client, product, user).unread() for user in control} == {1}
    assert {Widget(client, product, user).unread() for user in treated} == {2}


# Email ------------------------------------------------------------------------------------


def linked_subscribers(
    session: Session, product: Product, users: list[str], frequency: Frequency
) -> dict[str, str]:
    """A confirmed subscriber linked to an end user for each of ``users``: address by user."""
    addresses = {}
    for user in users:
        end_user_id = session.execute(
            insert(EndUser)
            .values(product_id=product.id, external_id=user, attributes={})
            .returning(EndUser.id)
        ).scalar_one()
        address = f"{user}@example.com"
        subscriptions.subscribe_end_user(
            session, product, end_user_id, address, Preferences(frequency), now=utcnow()
        )
        addresses[user] = address
    session.commit()
    return addresses


def send_all(server: SmtpServer) -> None:
    sender = transport.Smtp(server.url)
    try:
        delivery.deliver_due(sender)
    finally:
        sender.close()


def test_no_email_goes_to_a_subscriber_in_the_control_group(
    session: Session, product: Product, smtp_server: SmtpServer
) -> None:
    users = USERS[:200]
    addresses = linked_subscribers(session, product, users, Frequency.EVERY)
    # Linked to no end user: outside the experiment.
    unlinked = "unlinked@example.com"
    session.add(
        Subscriber(product_id=product.id, email=unlinked, status=SubscriberStatus.CONFIRMED)
    )
    session.commit()

    held = make_note(session, product, is_important=True, holdback_percent=PERCENT)
    control, treated = split(held, users)
    assert control and treated
    send_all(smtp_server)
    received = set(smtp_server.recorder.per_recipient())
    assert received == {addresses[user] for user in treated} | {unlinked}

    # Sent again by hand while the window is open: still nobody in the control group.
    assert mailing.queue_note(session, held, now=utcnow()) == 0
    session.rollback()


def test_a_digest_leaves_out_a_note_that_holds_the_subscriber_back(
    session: Session, product: Product
) -> None:
    users = USERS[:200]
    addresses = linked_subscribers(session, product, users, Frequency.DIGEST)
    now = utcnow()
    slot = mailing.digest_slot(product, now)
    session.execute(update(Subscriber).values(last_digest_at=slot - timedelta(days=7)))
    session.commit()
    # Out during the week the digest covers, and within the window at ``now``.
    week = slot - timedelta(hours=1)
    held = make_note(session, product, version="2.0.0", holdback_percent=PERCENT, now=week)
    plain = make_note(session, product, version="2.0.0", now=week)
    control, treated = split(held, users)
    assert control and treated
    assert mailing.queue_digests(session, now=now) == len(users)
    digests = session.execute(
        select(Subscriber.email, OutboxMessage.payload)
        .join(Subscriber, Subscriber.id == OutboxMessage.subscriber_id)
        .where(OutboxMessage.kind == OutboxKind.DIGEST)
    ).all()
    listed = {email: payload["note_ids"] for email, payload in digests}
    assert listed == {
        addresses[user]: [plain.id] if user in control else [held.id, plain.id]
        for user in control | treated
    }
