"""Must-acknowledge notices and notes pinned by agents, as the widget API serves and records
them, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from announcements import holdback
from announcements.models import (
    Acknowledgement,
    AgentSend,
    EndUser,
    Note,
    Product,
    ReadReceipt,
    utcnow,
)
from app.database import widget_engine
from app.extensions import db
from tests.factories import make_note, make_product
from tests.test_widget_api import ORIGIN, Widget, writes_on


@pytest.fixture
def product(session: Session) -> Product:
    return make_product(session, allowed_origins=(ORIGIN,), grace_releases=20)


@pytest.fixture
def widget(client, product: Product) -> Widget:
    return Widget(client, product)


def acknowledge(widget: Widget, note_id: object, **overrides: object):
    body = {**widget.identity(), "note_id": note_id, **overrides}
    return widget.client.post(f"{widget.base}/acknowledgements", json=body)


def shown(widget: Widget, note_id: int) -> dict:
    (found,) = [n for n in widget.notes().get_json()["notes"] if n["id"] == note_id]
    return found


def user_id(session: Session) -> int:
    return session.scalar(select(EndUser.id).where(EndUser.external_id == "user-1"))


def pin(session: Session, product: Product, note: Note, *, read_at=None) -> AgentSend:
    """What an agent's send leaves: a row with no read yet."""
    send = AgentSend(
        product_id=product.id,
        note_id=note.id,
        end_user_id=user_id(session),
        agent="Ann",
        via="console",
        read_at=read_at,
    )
    session.add(send)
    session.commit()
    return send


# Acknowledgements ----------------------------------------------------------------------


def test_a_notice_says_it_must_be_acknowledged_and_whether_it_was(
    session: Session, product: Product, widget: Widget
) -> None:
    notice = make_note(session, product, requires_acknowledgement=True)
    plain = make_note(session, product)
    assert shown(widget, notice.id)["requires_acknowledgement"] is True
    assert shown(widget, notice.id)["acknowledged"] is False
    assert shown(widget, plain.id)["requires_acknowledgement"] is False
    assert acknowledge(widget, notice.id).status_code == 204
    assert shown(widget, notice.id)["acknowledged"] is True
    assert shown(widget, notice.id)["read"] is True
    assert shown(widget, plain.id)["acknowledged"] is False
    # Another user of the product has acknowledged nothing.
    other = Widget(widget.client, product, "user-2")
    (theirs,) = [n for n in other.notes().get_json()["notes"] if n["id"] == notice.id]
    assert theirs["acknowledged"] is False and theirs["read"] is False


def test_acknowledging_twice_changes_nothing(
    session: Session, product: Product, widget: Widget
) -> None:
    notice = make_note(session, product, requires_acknowledgement=True)
    assert acknowledge(widget, notice.id).status_code == 204
    first = session.scalar(select(Acknowledgement))
    assert first is not None
    acknowledged_at = first.acknowledged_at
    receipt = session.scalar(select(ReadReceipt))
    assert receipt is not None and receipt.channel == "popup"
    session.expire_all()
    with writes_on(db.engine, widget_engine()) as again:
        assert acknowledge(widget, notice.id).status_code == 204
    assert again == []
    assert session.scalar(select(func.count()).select_from(Acknowledgement)) == 1
    assert session.scalar(select(Acknowledgement.acknowledged_at)) == acknowledged_at


def test_acknowledging_keeps_an_earlier_read_as_it_was(
    session: Session, product: Product, widget: Widget
) -> None:
    notice = make_note(session, product, requires_acknowledgement=True)
    assert widget.read([notice.id]).status_code == 204
    assert acknowledge(widget, notice.id).status_code == 204
    assert session.scalars(select(ReadReceipt.channel)).all() == ["widget"]
    assert session.scalar(select(func.count()).select_from(Acknowledgement)) == 1


def test_only_a_published_outward_notice_of_the_product_can_be_acknowledged(
    session: Session, product: Product, widget: Widget
) -> None:
    other_product = make_product(session)
    refused = [
        make_note(session, product),  # does not ask for it
        make_note(session, product, status="draft", requires_acknowledgement=True),
        make_note(session, product, status="scheduled", requires_acknowledgement=True),
        make_note(session, product, status="archived", requires_acknowledgement=True),
        make_note(session, product, is_internal=True, requires_acknowledgement=True),
        make_note(session, other_product, requires_acknowledgement=True),
    ]
    for note in refused:
        response = acknowledge(widget, note.id)
        assert response.status_code == 422, note
        assert set(response.get_json()["errors"]) == {"note_id"}
    for bad in (None, "1", True, 1.5, [1], 10**30):
        assert acknowledge(widget, bad).status_code == 422
    assert session.scalar(select(func.count()).select_from(Acknowledgement)) == 0
    assert session.scalar(select(func.count()).select_from(ReadReceipt)) == 0


def test_only_a_notice_the_users_widget_lists_can_be_acknowledged(
    session: Session, product: Product, widget: Widget
) -> None:
    listed = make_note(session, product, version="1.0.0", requires_acknowledgement=True)
    later = make_note(session, product, version="2.0.0", requires_acknowledgement=True)
    pro = make_note(
        session,
        product,
        requires_acknowledgement=True,
        audience={
            "match": "all",
            "conditions": [{"attribute": "plan", "op": "eq", "value": "pro"}],
        },
    )
    # What the widget stored of them: version 1.0.0 on the free plan.
    assert widget.ids(version="1.0.0", **{"attr.plan": "free"}) == [listed.id]
    for unseen in (later, pro):
        response = acknowledge(widget, unseen.id)
        assert response.status_code == 422, unseen.version
        assert set(response.get_json()["errors"]) == {"note_id"}
    assert acknowledge(widget, listed.id).status_code == 204
    acknowledged = session.scalars(select(Acknowledgement.note_id)).all()
    assert acknowledged == [listed.id]
    # A user never seen has nothing stored to go by: any live notice of the product.
    assert acknowledge(Widget(widget.client, product, "user-2"), later.id).status_code == 204


def test_acknowledging_needs_a_known_user_with_the_right_hash(
    session: Session, product: Product, widget: Widget
) -> None:
    notice = make_note(session, product, requires_acknowledgement=True)
    assert acknowledge(widget, notice.id, user_hash="0" * 64).status_code == 401
    assert acknowledge(widget, notice.id, user_hash=None).status_code == 401
    anonymous = acknowledge(widget, notice.id, user_id=None, user_hash=None)
    assert anonymous.status_code == 422
    assert "user_id" in anonymous.get_json()["errors"]
    assert session.scalar(select(func.count()).select_from(Acknowledgement)) == 0


# Reads through the popup, and pinned notes ---------------------------------------------


def test_a_read_says_whether_the_widget_showed_it_as_a_popup(
    session: Session, product: Product, widget: Widget
) -> None:
    first, second = make_note(session, product), make_note(session, product)
    assert widget.read([first.id], channel="popup").status_code == 204
    assert widget.read([second.id]).status_code == 204
    channels = dict(session.execute(select(ReadReceipt.note_id, ReadReceipt.channel)).all())
    assert channels == {first.id: "popup", second.id: "widget"}
    for bad in ("agent", "help", "", 1, ["popup"]):
        response = widget.read([first.id], channel=bad)
        assert response.status_code == 422
        assert set(response.get_json()["errors"]) == {"channel"}


def test_a_pinned_note_is_unread_counted_and_never_quiet_until_read_again(
    session: Session, product: Product, widget: Widget
) -> None:
    note = make_note(session, product, is_important=True)
    assert widget.read([note.id]).status_code == 204
    assert widget.unread() == 0
    send = pin(session, product, note)
    seen = shown(widget, note.id)
    assert (seen["pinned"], seen["read"]) == (True, False)
    assert widget.unread() == 1
    assert widget.read([note.id], channel="popup").status_code == 204
    seen = shown(widget, note.id)
    assert (seen["pinned"], seen["read"]) == (False, True)
    assert widget.unread() == 0
    session.refresh(send)
    assert send.read_at is not None
    # The first read is what attribution counts: it stays as it was.
    assert session.scalars(select(ReadReceipt.channel)).all() == ["widget"]


def test_the_first_read_of_a_pinned_note_is_recorded_as_the_agents(
    session: Session, product: Product, widget: Widget
) -> None:
    note, other = make_note(session, product), make_note(session, product)
    widget.notes()  # the user is seen
    sends = [pin(session, product, note), pin(session, product, note)]
    earlier = pin(session, product, other, read_at=utcnow() - timedelta(days=1))
    assert widget.read([note.id, other.id], channel="popup").status_code == 204
    channels = dict(session.execute(select(ReadReceipt.note_id, ReadReceipt.channel)).all())
    assert channels == {note.id: "agent", other.id: "popup"}
    for send in sends:
        session.refresh(send)
        assert send.read_at is not None
    read_before = earlier.read_at
    session.refresh(earlier)
    assert earlier.read_at == read_before


def test_a_pinned_note_held_back_from_the_user_is_not_quiet(
    session: Session, product: Product, client
) -> None:
    note = make_note(session, product, holdback_percent=50, support_topics=["export"])
    control = next(
        f"user-{i}"
        for i in range(100)
        if holdback.withholds(
            note.id, f"user-{i}", 50, note.published_at, product.support_window_days, utcnow()
        )
    )
    held = Widget(client, product, control)
    (seen,) = held.notes().get_json()["notes"]
    assert seen["quiet"] is True and held.unread() == 0
    session.add(
        AgentSend(
            product_id=product.id,
            note_id=note.id,
            end_user_id=session.scalar(select(EndUser.id).where(EndUser.external_id == control)),
            agent="Ann",
            via="sidebar",
        )
    )
    session.commit()
    (seen,) = held.notes().get_json()["notes"]
    assert "quiet" not in seen and seen["pinned"] is True
    assert held.unread() == 1


def test_a_known_users_page_view_still_writes_nothing(
    session: Session, product: Product, widget: Widget
) -> None:
    notice = make_note(session, product, requires_acknowledgement=True)
    pinned = make_note(session, product)
    widget.notes()
    assert acknowledge(widget, notice.id).status_code == 204
    pin(session, product, pinned)
    with writes_on(db.engine, widget_engine()) as seen:
        body = widget.notes().get_json()
    assert seen == []
    flags = {n["id"]: (n["acknowledged"], n["pinned"]) for n in body["notes"]}
    assert flags == {notice.id: (True, False), pinned.id: (False, True)}


@pytest.mark.parametrize("path", ["acknowledgements", "help", "help/abc123"])
def test_preflight_is_answered_for_the_new_resources(widget: Widget, path: str) -> None:
    headers = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
    response = widget.client.options(f"{widget.base}/{path}", headers=headers)
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    refused = widget.client.options(
        f"{widget.base}/{path}", headers={**headers, "Origin": "https://evil.example"}
    )
    assert refused.status_code == 403
