"""Email in the console: settings, the editor's switch, delivery, tests, subscribers."""

from __future__ import annotations

import csv
import io

import pytest
from sqlalchemy import func, select

from announcements import subscriptions
from announcements.models import (
    Frequency,
    Note,
    NoteStatus,
    OutboxMessage,
    Product,
    Role,
    Subscriber,
    SubscriberStatus,
    utcnow,
)
from announcements.subscriptions import Preferences
from app.mail import delivery, transport
from tests.conftest import csrf_token
from tests.factories import add_member, make_member, make_note, make_product
from tests.mailserver import SmtpServer
from tests.test_console import _settings_form, field_errors
from tests.test_notices import split_as_semicolon_locale


@pytest.fixture
def acme(session, auth) -> Product:
    owner = make_member(session, "owner@example.com")
    product = make_product(session, owner=owner, slug="acme", name="Acme")
    auth.login(owner.email)
    return product


def _subscriber(session, product, address, status=SubscriberStatus.CONFIRMED, **preferences):
    subscriber = Subscriber(product_id=product.id, email=address, created_at=utcnow())
    session.add(subscriber)
    session.flush()
    subscriptions.confirm(session, subscriber, Preferences(**preferences), now=utcnow())
    if status is SubscriberStatus.UNSUBSCRIBED:
        subscriptions.unsubscribe(session, subscriber, now=utcnow())
    return subscriber


def test_email_settings_are_saved_and_checked(client, session, acme) -> None:
    form = _settings_form(
        client,
        email_from_name="Acme Product Team",
        email_reply_to="not an address",
        digest_weekday="4",
        digest_hour="16",
    )
    answer = client.post("/console/p/acme/settings", data=form)
    assert answer.status_code == 422
    errors = field_errors(answer.get_data(as_text=True))
    assert list(errors) == ["email_reply_to"]
    assert "not an email address we can use" in errors["email_reply_to"]
    session.refresh(acme)
    assert acme.email_from_name is None

    form["email_reply_to"] = "product@acme.example.com"
    assert client.post("/console/p/acme/settings", data=form).status_code == 302
    session.refresh(acme)
    assert (acme.email_from_name, acme.email_reply_to) == (
        "Acme Product Team",
        "product@acme.example.com",
    )
    assert (acme.digest_weekday, acme.digest_hour) == (4, 16)
    form["digest_hour"] = "24"
    refused = client.post("/console/p/acme/settings", data=form)
    assert refused.status_code == 422
    assert field_errors(refused.get_data(as_text=True)) == {"digest_hour": "Not a valid choice."}
    session.refresh(acme)
    assert (acme.digest_weekday, acme.digest_hour) == (4, 16)


def test_publishing_from_the_editor_with_email_ticked_queues_the_messages(
    client, session, acme
) -> None:
    _subscriber(session, acme, "reader@example.com")
    form = {
        "csrf_token": csrf_token(client),
        "version": "2.0.0",
        "title": "Funnels",
        "category": "Added",
        "body_md": "New.",
        "intent": "publish",
        "email_subscribers": "y",
    }
    assert client.post("/console/p/acme/notes/new", data=form).status_code == 302
    assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 1
    form.update(title="Quiet", intent="publish")
    del form["email_subscribers"]
    assert client.post("/console/p/acme/notes/new", data=form).status_code == 302
    quiet = session.scalar(select(Note).where(Note.title == "Quiet"))
    assert quiet is not None and quiet.status_at(utcnow()) is NoteStatus.PUBLISHED
    assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 1


def test_the_note_page_shows_delivery_and_sends_to_newcomers(
    client, session, acme, smtp_server: SmtpServer
) -> None:
    _subscriber(session, acme, "first@example.com")
    note = make_note(session, acme, title="Funnels")
    page = client.get(f"/console/p/acme/notes/{note.id}").get_data(as_text=True)
    assert "Send to subscribers" in page and "Not emailed" in page

    token = csrf_token(client)
    sent = client.post(
        f"/console/p/acme/notes/{note.id}/email", data={"csrf_token": token}, follow_redirects=True
    )
    assert "Sending “Funnels” to 1 subscriber." in sent.get_data(as_text=True)
    assert client.get(f"/console/p/acme/notes/{note.id}/delivery").get_json() == {
        "queued": 1,
        "sent": 0,
        "failed": 0,
        "skipped": 0,
        "paused": None,
    }
    page = client.get(f"/console/p/acme/notes/{note.id}").get_data(as_text=True)
    assert "data-delivery-url" in page and "Send to new subscribers" in page

    _subscriber(session, acme, "gone@example.com", status=SubscriberStatus.UNSUBSCRIBED)
    sender = transport.Smtp(smtp_server.url)
    delivery.deliver_due(sender)
    sender.close()
    counts = client.get(f"/console/p/acme/notes/{note.id}/delivery").get_json()
    assert counts == {"queued": 0, "sent": 1, "failed": 0, "skipped": 0, "paused": None}
    assert smtp_server.recorder.per_recipient() == {"first@example.com": 1}
    page = client.get(f"/console/p/acme/notes/{note.id}").get_data(as_text=True)
    assert "data-delivery-url" not in page  # nothing left to follow

    answer = client.post(
        f"/console/p/acme/notes/{note.id}/email", data={"csrf_token": token}, follow_redirects=True
    )
    assert "already has it" in answer.get_data(as_text=True)

    # A newcomer gets it, and only the newcomer.
    _subscriber(session, acme, "newcomer@example.com")
    again = client.post(
        f"/console/p/acme/notes/{note.id}/email", data={"csrf_token": token}, follow_redirects=True
    )
    assert "Sending “Funnels” to 1 subscriber." in again.get_data(as_text=True)
    sender = transport.Smtp(smtp_server.url)
    assert delivery.deliver_due(sender).sent == 1
    sender.close()
    assert smtp_server.recorder.per_recipient() == {
        "first@example.com": 1,
        "newcomer@example.com": 1,
    }


def test_the_note_page_says_why_sending_is_paused_until_the_server_takes_mail(
    client, session, acme, smtp_server: SmtpServer
) -> None:
    _subscriber(session, acme, "first@example.com")
    _subscriber(session, acme, "second@example.com")
    note = make_note(session, acme, title="Funnels", is_important=True)
    smtp_server.recorder.sender_reply = "550 5.7.1 Sender address rejected: not owned by user"
    sender = transport.Smtp(smtp_server.url)
    run = delivery.deliver_due(sender)
    sender.close()

    page = client.get(f"/console/p/acme/notes/{note.id}").get_data(as_text=True)
    assert "Sending is paused" in page
    pause = run.paused
    assert pause is not None
    retry_at = pause.retry_at.strftime("%d %b %Y, %H:%M")  # in UTC: no time-zone cookie
    assert (
        "Sending is paused: the mail server refused our sender address tidings@localhost "
        f"(550 5.7.1 Sender address rejected: not owned by user). Retrying at {retry_at} (UTC)"
    ) in page
    assert 'data-count="queued">2<' in page and 'data-count="failed">0<' in page
    report = client.get(f"/console/p/acme/notes/{note.id}/delivery").get_json()
    assert report["queued"] == 2 and report["failed"] == 0
    assert report["paused"] == {
        "error": pause.error,
        "since": pause.since.isoformat(),
        "retry_at": pause.retry_at.isoformat(),
    }

    smtp_server.recorder.sender_reply = None
    sender = transport.Smtp(smtp_server.url)
    make_note(session, acme, title="Cohorts", is_important=True)  # due at once; the rest follow
    assert delivery.deliver_due(sender).sent == 4
    sender.close()
    page = client.get(f"/console/p/acme/notes/{note.id}").get_data(as_text=True)
    assert "Sending is paused" not in page
    assert client.get(f"/console/p/acme/notes/{note.id}/delivery").get_json()["paused"] is None


def test_send_a_test_to_me(app, client, session, acme, smtp_server: SmtpServer) -> None:
    app.config["SMTP_URL"] = smtp_server.url
    draft = make_note(session, acme, status="draft", title="Not out yet", version="3.0.0")
    answer = client.post(
        f"/console/p/acme/notes/{draft.id}/test-email",
        data={"csrf_token": csrf_token(client)},
        follow_redirects=True,
    )
    assert "Sent a test" in answer.get_data(as_text=True)
    [mail] = smtp_server.recorder.to("owner@example.com")
    assert mail["Subject"] == "[Test] Acme 3.0.0: Not out yet"
    assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 0

    app.config["SMTP_URL"] = "smtp://127.0.0.1:9?starttls=off"
    answer = client.post(
        f"/console/p/acme/notes/{draft.id}/test-email",
        data={"csrf_token": csrf_token(client)},
        follow_redirects=True,
    )
    assert "could not be sent" in answer.get_data(as_text=True)


def test_subscribers_page_counts_searches_exports_and_removes(client, session, acme) -> None:
    _subscriber(session, acme, "ann@example.com", frequency=Frequency.DIGEST)
    _subscriber(session, acme, "bob@example.com", status=SubscriberStatus.UNSUBSCRIBED)
    formula = _subscriber(session, acme, "=cmd@example.com")
    session.add(Subscriber(product_id=acme.id, email="pending@example.com"))
    session.commit()

    page = client.get("/console/p/acme/subscribers").get_data(as_text=True)
    for expected in (
        "ann@example.com",
        "bob@example.com",
        "pending@example.com",
        "A weekly digest",
    ):
        assert expected in page
    assert "<strong>4</strong> all" in page and "<strong>2</strong> confirmed" in page
    found = client.get("/console/p/acme/subscribers?q=ANN").get_data(as_text=True)
    assert "ann@example.com" in found and "bob@example.com" not in found
    unsubscribed = client.get("/console/p/acme/subscribers?status=unsubscribed").get_data(
        as_text=True
    )
    assert "bob@example.com" in unsubscribed and "ann@example.com" not in unsubscribed
    assert client.get("/console/p/acme/subscribers?status=nonsense&q=%00").status_code == 200

    export = client.get("/console/p/acme/subscribers.csv")
    assert export.mimetype == "text/csv"
    assert "attachment" in export.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(export.get_data(as_text=True))))
    assert {row["email"] for row in rows} == {
        "ann@example.com",
        "bob@example.com",
        "'=cmd@example.com",
        "pending@example.com",
    }

    removed = client.post(
        f"/console/p/acme/subscribers/{formula.id}/remove", data={"csrf_token": csrf_token(client)}
    )
    assert removed.status_code == 302
    session.expire_all()
    assert session.get(Subscriber, formula.id) is None
    other = make_product(session, slug="other")
    stranger = _subscriber(session, other, "stranger@example.com")
    answer = client.post(
        f"/console/p/acme/subscribers/{stranger.id}/remove",
        data={"csrf_token": csrf_token(client)},
    )
    assert answer.status_code == 404
    session.expire_all()
    assert session.get(Subscriber, stranger.id) is not None


def test_the_subscriber_export_quotes_every_cell_against_a_semicolon_separator(
    client, session, acme
) -> None:
    """Where ";" separates cells, an unquoted ``x;=cmd|...`` would split into a formula."""
    _subscriber(session, acme, "x;=cmd|' /C calc'!A0@example.com")
    session.commit()
    text = client.get("/console/p/acme/subscribers.csv").get_data(as_text=True)
    assert text.startswith('"email","status",')
    cells = [cell for line in text.splitlines() for cell in split_as_semicolon_locale(line)]
    assert any("x;=cmd" in cell for cell in cells)
    assert not any(cell.startswith("=") for cell in cells)


def test_viewers_see_subscribers_but_cannot_export_or_remove(client, session, auth) -> None:
    product = make_product(session, slug="acme")
    viewer = add_member(session, product, Role.VIEWER)
    subscriber = _subscriber(session, product, "ann@example.com")
    auth.login(viewer.email)
    assert client.get("/console/p/acme/subscribers").status_code == 200
    assert client.get("/console/p/acme/subscribers.csv").status_code == 403
    answer = client.post(
        f"/console/p/acme/subscribers/{subscriber.id}/remove",
        data={"csrf_token": csrf_token(client)},
    )
    assert answer.status_code == 403
    session.expire_all()
    assert session.get(Subscriber, subscriber.id) is not None
