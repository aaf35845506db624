"""Sending one note to one end user: pinned for them, e-mailed once to a confirmed
subscriber linked to them, in the audit log; only a note their widget lists."""

from __future__ import annotations

from datetime import timedelta

import lxml.html
import pytest
from sqlalchemy import func, select

from announcements import agent_sends
from announcements.errors import NotFound, ValidationFailed
from announcements.models import (
    AgentSend,
    AuditEvent,
    OutboxKind,
    OutboxMessage,
    Role,
    Subscriber,
    SubscriberStatus,
    utcnow,
)
from tests.conftest import csrf_token
from tests.factories import add_member, make_end_user, make_note, make_product

PRO = {"match": "all", "conditions": [{"attribute": "plan", "op": "in", "value": ["pro"]}]}


def _subscribe(session, product, email: str, status: SubscriberStatus, user=None) -> Subscriber:
    subscriber = Subscriber(
        product_id=product.id,
        email=email,
        status=status,
        end_user_id=user.id if user else None,
    )
    session.add(subscriber)
    session.commit()
    return subscriber


def _count(session, model, *where) -> int:
    return session.scalar(select(func.count()).select_from(model).where(*where))


def _agent_mail(session) -> list[OutboxMessage]:
    return list(
        session.scalars(select(OutboxMessage).where(OutboxMessage.kind == OutboxKind.AGENT))
    )


def test_a_send_pins_the_note_and_mails_a_linked_subscriber_once(session) -> None:
    product = make_product(session, slug="acme")
    agent = add_member(session, product, Role.VIEWER, "dana@example.com")
    note = make_note(session, product, version="1.0.0", title="Export moved")
    ana = make_end_user(session, product, "ana-1", app_version="1.2.0")
    subscriber = _subscribe(session, product, "ana@example.com", SubscriberStatus.CONFIRMED, ana)
    first_at = utcnow()

    first = agent_sends.send(
        session, product, ana, note.id, agent="Dana", sent_by=agent, via="console", now=first_at
    )
    session.commit()
    assert (first.note_id, first.end_user_id, first.read_at, first.emailed) == (
        note.id,
        ana.id,
        None,
        True,
    )
    [mail] = _agent_mail(session)
    assert (mail.subscriber_id, mail.note_id) == (subscriber.id, note.id)

    # Sent again: pinned again, but the subscriber is not mailed twice.
    second = agent_sends.send(
        session,
        product,
        ana,
        note.id,
        agent="Dana",
        sent_by=agent,
        via="console",
        now=first_at + timedelta(hours=1),
    )
    session.commit()
    assert second.emailed is False
    assert len(_agent_mail(session)) == 1
    assert _count(session, AgentSend, AgentSend.end_user_id == ana.id) == 2

    events = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "note.sent_to_user").order_by(AuditEvent.id)
    ).all()
    assert [(e.actor_id, e.note_id) for e in events] == [(agent.id, note.id)] * 2
    assert [e.summary for e in events] == [
        "“Export moved” (1.0.0): Dana (console) sent and e-mailed it to user ana-1",
        "“Export moved” (1.0.0): Dana (console) sent it to user ana-1",
    ]


@pytest.mark.parametrize(
    ("title", "shown"), [("Export moved", "Export moved"), ("T" * 200, "T" * 99 + "…")]
)
def test_the_audit_summary_keeps_the_agent_and_where_whatever_the_ids_length(
    session, title: str, shown: str
) -> None:
    product = make_product(session, slug="acme")
    note = make_note(session, product, version="1.0.0", title=title)
    user = make_end_user(session, product, "u" * 255)
    agent = "A" * agent_sends.MAX_AGENT_LENGTH
    agent_sends.send(
        session, product, user, note.id, agent=agent, sent_by=None, via="sidebar", now=utcnow()
    )
    session.commit()
    summary = session.scalars(
        select(AuditEvent.summary).where(AuditEvent.action == "note.sent_to_user")
    ).one()
    assert len(summary) == 500  # the log's limit: the user's id is cut, nothing before it
    assert summary.startswith(f"“{shown}” (1.0.0): {agent} (sidebar) sent it to user uuu")


def test_no_mail_unless_a_confirmed_subscriber_is_linked(session) -> None:
    product = make_product(session, slug="acme")
    note = make_note(session, product, version="1.0.0")
    ana = make_end_user(session, product, "ana-1")
    # A pending subscriber linked to her, and a confirmed one linked to nobody.
    _subscribe(session, product, "ana@example.com", SubscriberStatus.PENDING, ana)
    _subscribe(session, product, "someone@example.com", SubscriberStatus.CONFIRMED)

    sent = agent_sends.send(
        session, product, ana, note.id, agent="Kim", sent_by=None, via="sidebar", now=utcnow()
    )
    session.commit()
    assert sent.emailed is False
    assert _agent_mail(session) == []
    assert (sent.via, sent.agent, sent.sent_by_id) == ("sidebar", "Kim", None)
    assert _count(session, AuditEvent, AuditEvent.action == "note.sent_to_user") == 1


@pytest.mark.parametrize(
    "kind", ["draft", "scheduled", "internal", "archived", "newer", "audience", "elsewhere"]
)
def test_a_note_her_widget_does_not_list_is_refused(session, kind) -> None:
    product = make_product(session, slug="acme")
    other = make_product(session, slug="globex")
    ana = make_end_user(session, product, "ana-1", app_version="1.2.0", attributes={"plan": "free"})
    _subscribe(session, product, "ana@example.com", SubscriberStatus.CONFIRMED, ana)
    make_note(session, product, version="1.0.0", title="Listed")  # her widget has one note
    note = {
        "draft": lambda: make_note(session, product, status="draft"),
        "scheduled": lambda: make_note(session, product, status="scheduled"),
        "internal": lambda: make_note(session, product, is_internal=True),
        "archived": lambda: make_note(session, product, status="archived"),
        "newer": lambda: make_note(session, product, version="2.0.0"),
        "audience": lambda: make_note(session, product, audience=PRO),
        "elsewhere": lambda: make_note(session, other),
    }[kind]()

    with pytest.raises(ValidationFailed) as refused:
        agent_sends.send(
            session, product, ana, note.id, agent="Dana", sent_by=None, via="console", now=utcnow()
        )
    session.rollback()
    assert "note_id" in refused.value.errors
    assert _count(session, AgentSend) == 0
    assert _agent_mail(session) == []
    assert _count(session, AuditEvent, AuditEvent.action == "note.sent_to_user") == 0


def test_another_products_user_is_not_found(session) -> None:
    product = make_product(session, slug="acme")
    other = make_product(session, slug="globex")
    note = make_note(session, product)
    stranger = make_end_user(session, other, "ana-1")
    with pytest.raises(NotFound):
        agent_sends.send(
            session,
            product,
            stranger,
            note.id,
            agent="Dana",
            sent_by=None,
            via="console",
            now=utcnow(),
        )


@pytest.mark.parametrize("agent", ["", "   ", "x" * 255])
def test_an_agent_needs_a_name_that_fits(session, agent) -> None:
    product = make_product(session, slug="acme")
    note = make_note(session, product)
    ana = make_end_user(session, product, "ana-1")
    with pytest.raises(ValidationFailed) as refused:
        agent_sends.send(
            session, product, ana, note.id, agent=agent, sent_by=None, via="sidebar", now=utcnow()
        )
    assert "agent" in refused.value.errors


def test_a_viewer_sends_from_the_lookup_page(client, auth, session) -> None:
    product = make_product(session, slug="acme")
    viewer = add_member(session, product, Role.VIEWER, "viewer@example.com")
    viewer.name = "Vera"
    note = make_note(session, product, title="Export moved")
    ana = make_end_user(session, product, "ana-1")
    _subscribe(session, product, "ana@example.com", SubscriberStatus.CONFIRMED, ana)
    auth.login(viewer.email)
    path = f"/console/p/acme/support/users/{ana.id}/send"

    # Without the form's token nothing is sent.
    assert client.post(path, data={"note_id": note.id}).status_code == 400
    assert _count(session, AgentSend) == 0

    answer = client.post(path, data={"note_id": note.id, "csrf_token": csrf_token(client)})
    assert answer.status_code == 302
    back = f"/console/p/acme/support/users/{ana.id}?sent={note.id}#note-{note.id}"
    assert answer.headers["Location"] == back
    # Back at the note, which says so: a message at the top would be out of sight.
    page = lxml.html.fromstring(client.get(back).data)
    said = page.get_element_by_id(f"note-{note.id}").find_class("un-sent")[0].text_content()
    assert "pops up on their next page view" in said and "e-mailed to their subscription" in said
    sends = " ".join(page.find_class("un-sends")[0].text_content().split())
    assert sends.startswith("by Vera (console)") and sends.endswith("e-mailed · not read yet")
    [sent] = session.scalars(select(AgentSend)).all()
    assert (sent.sent_by_id, sent.agent, sent.via) == (viewer.id, "Vera", "console")
    assert len(_agent_mail(session)) == 1


def test_the_page_says_why_a_send_was_refused(client, auth, session) -> None:
    product = make_product(session, slug="acme")
    viewer = add_member(session, product, Role.VIEWER)
    draft = make_note(session, product, status="draft")
    ana = make_end_user(session, product, "ana-1")
    auth.login(viewer.email)
    path = f"/console/p/acme/support/users/{ana.id}/send"
    token = csrf_token(client)
    for data, message in [
        ({"note_id": draft.id}, "not one this user&#39;s widget shows"),
        ({"note_id": "seven"}, "Choose a note to send."),
        ({}, "Choose a note to send."),
    ]:
        answer = client.post(path, data={**data, "csrf_token": token}, follow_redirects=True)
        assert answer.status_code == 200
        assert message in answer.get_data(as_text=True)
    assert _count(session, AgentSend) == 0


def test_an_agent_of_another_product_cannot_send_to_her(client, auth, session) -> None:
    product = make_product(session, slug="acme")
    other = make_product(session, slug="globex")
    note = make_note(session, other)
    ana = make_end_user(session, product, "ana-1")
    auth.login(add_member(session, other, Role.OWNER).email)
    token = csrf_token(client)
    for slug in ("globex", "acme"):
        answer = client.post(
            f"/console/p/{slug}/support/users/{ana.id}/send",
            data={"note_id": note.id, "csrf_token": token},
        )
        assert answer.status_code == 404
    assert _count(session, AgentSend) == 0
