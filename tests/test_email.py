"""Email: double opt-in, sending on publish, the messages, unsubscribing, digests, dedupe.

Everything goes through a real SMTP server on loopback (aiosmtpd), on SQLite and on
PostgreSQL.
"""

from __future__ import annotations

import email
import email.policy
import re
import time
import types
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import itsdangerous.timed
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from announcements import mailing, services, subscriptions
from announcements import outbox as outbox_claims
from announcements.models import (
    EndUser,
    Frequency,
    OutboxMessage,
    OutboxStatus,
    Product,
    ReadReceipt,
    Subscriber,
    SubscriberStatus,
    utcnow,
)
from announcements.services import Intent, NoteInput
from announcements.subscriptions import Preferences
from app.mail import delivery, tokens, transport
from app.mail.tokens import Purpose
from tests.conftest import HTTPS_BASE_URL as BASE
from tests.conftest import SHARED_TESTDATA
from tests.factories import make_note, make_product
from tests.mailserver import SmtpServer

RFC8058_SAMPLE = (
    SHARED_TESTDATA / "email" / "groupsio_cip-testing-results_list-unsubscribe-post.eml"
)

# Every mail's links are absolute: on the app's https address.
pytestmark = pytest.mark.usefixtures("https_base_url")


def send_all(server: SmtpServer) -> delivery.Report:
    sender = transport.Smtp(server.url)
    try:
        return delivery.deliver_due(sender)
    finally:
        sender.close()


def confirmed(
    session: Session, product: Product, address: str, **preferences: object
) -> Subscriber:
    subscriber = Subscriber(product_id=product.id, email=address, created_at=utcnow())
    session.add(subscriber)
    session.flush()
    return subscriptions.confirm(session, subscriber, Preferences(**preferences), now=utcnow())  # type: ignore[arg-type]


def link(message: EmailMessage, path: str) -> str:
    text = message.get_body(("plain",)).get_content()
    found = re.search(re.escape(BASE) + r"(/subscriptions/" + path + r"/\S+)", text)
    assert found, f"no {path} link in:\n{text}"
    return found.group(1)


def subscribe(client: FlaskClient, product: Product, address: str, **form: object):
    return client.post(f"/changelog/{product.slug}/subscribe", data={"email": address, **form})


# The subscribe form marks the address field as the one that failed.
EMAIL_FIELD_FAILED = 'aria-invalid="true" aria-describedby="subscribe-error"'


def outbox(session: Session, **where: object) -> list[OutboxMessage]:
    query = select(OutboxMessage).filter_by(**where).order_by(OutboxMessage.id)
    return list(session.scalars(query))


# Subscribing ------------------------------------------------------------------


def test_double_opt_in_sends_nothing_but_the_confirmation_until_it_is_followed(
    client: FlaskClient, session: Session, smtp_server: SmtpServer
) -> None:
    product = make_product(session, name="Lumen")
    answer = subscribe(
        client, product, "Ann@Example.com", frequency="important", categories=["Fixed", "Security"]
    )
    assert answer.status_code == 202
    assert "Check your inbox" in answer.get_data(as_text=True)
    subscriber = session.scalar(select(Subscriber))
    assert subscriber is not None
    assert (subscriber.email, subscriber.status) == ("ann@example.com", SubscriberStatus.PENDING)

    make_note(session, product, is_important=True, category="Fixed", email_subscribers=True)
    assert send_all(smtp_server).sent == 1
    [mail] = smtp_server.recorder.to("ann@example.com")
    assert mail["Subject"] == "Confirm your subscription to Lumen release notes"
    assert "List-Unsubscribe" not in mail  # not a list message: nothing to unsubscribe from yet

    assert client.get(link(mail, "confirm")).status_code == 200
    session.refresh(subscriber)
    assert subscriber.status is SubscriberStatus.CONFIRMED
    assert subscriber.frequency is Frequency.IMPORTANT
    assert subscriber.categories == ["Fixed", "Security"]

    make_note(session, product, is_important=True, category="Fixed", email_subscribers=True)
    send_all(smtp_server)
    assert len(smtp_server.recorder.to("ann@example.com")) == 2


def test_asking_again_reveals_nothing_and_changes_nothing_until_confirmed(
    client: FlaskClient, session: Session, smtp_server: SmtpServer
) -> None:
    product = make_product(session)
    confirmed(session, product, "known@example.com", frequency=Frequency.DIGEST)
    known = subscribe(client, product, "known@example.com", frequency="every")
    fresh = subscribe(client, product, "fresh@example.com", frequency="every")
    assert known.status_code == fresh.status_code == 202
    assert known.get_data(as_text=True).replace("known", "fresh") == fresh.get_data(as_text=True)
    subscriber = session.scalar(select(Subscriber).filter_by(email="known@example.com"))
    assert subscriber is not None and subscriber.frequency is Frequency.DIGEST
    send_all(smtp_server)
    [mail] = smtp_server.recorder.to("known@example.com")
    assert client.get(link(mail, "confirm")).status_code == 200
    session.refresh(subscriber)
    assert subscriber.frequency is Frequency.EVERY


@pytest.mark.parametrize(
    "address",
    [
        "",
        "   ",
        "not-an-address",
        "ann@",
        "@example.com",
        "ann@@example.com",
        "ann@example",
        "ann example@example.com",
        "ünï@example.com",
        "a" * 250 + "@example.com",
        "ann@example.com\r\nBcc: victim@example.com",
    ],
)
def test_bad_addresses_get_a_clear_message_and_store_nothing(
    client: FlaskClient, session: Session, address: str
) -> None:
    product = make_product(session)
    answer = subscribe(client, product, address)
    assert answer.status_code == 422
    page = answer.get_data(as_text=True)
    assert 'class="field-error"' in page and EMAIL_FIELD_FAILED in page
    assert (
        "Enter your email address." in page
        or "That is not an email address we can use" in page
        or "That address is too long to be real." in page
    )
    assert session.scalar(select(func.count()).select_from(Subscriber)) == 0
    assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 0


@pytest.mark.parametrize(
    ("preferences", "message"),
    [
        ({"frequency": "hourly"}, "Choose every release, important notes only, or a digest."),
        ({"categories": ["Gossip"]}, "Choose categories from the list."),
    ],
)
def test_bad_preferences_are_refused(
    client: FlaskClient, session: Session, preferences: dict[str, object], message: str
) -> None:
    product = make_product(session)
    answer = subscribe(client, product, "a@example.com", **preferences)
    assert answer.status_code == 422
    page = answer.get_data(as_text=True)
    assert f'role="alert">{message}</p>' in page
    assert EMAIL_FIELD_FAILED not in page  # the address was fine
    assert session.scalar(select(func.count()).select_from(Subscriber)) == 0
    assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 0


def test_subscribing_is_rate_limited_per_address_and_per_ip(app_factory, session: Session) -> None:
    limited = app_factory(
        RATELIMIT_ENABLED=True,
        RATELIMIT_SUBSCRIBE="4 per minute",
        RATELIMIT_SUBSCRIBE_ADDRESS="2 per hour",
    )
    product = make_product(session)
    client = limited.test_client()
    codes = [subscribe(client, product, "same@example.com").status_code for _ in range(3)]
    assert codes == [202, 202, 429]
    assert subscribe(client, product, "other@example.com").status_code == 202
    answer = subscribe(client, product, "third@example.com")
    assert answer.status_code == 429
    assert "Too many subscription requests" in answer.get_data(as_text=True)


def test_expired_and_forged_confirmation_links_change_nothing(
    client: FlaskClient, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    product = make_product(session)
    subscribe(client, product, "late@example.com")
    subscriber = session.scalar(select(Subscriber))
    assert subscriber is not None
    eight_days_ago = datetime.now(UTC).timestamp() - 8 * 86400
    with monkeypatch.context() as patched:
        patched.setattr(
            itsdangerous.timed, "time", types.SimpleNamespace(time=lambda: eight_days_ago)
        )
        expired = tokens.make(Purpose.CONFIRM, {"s": subscriber.id, "p": {}})
    answer = client.get(f"/subscriptions/confirm/{expired}")
    assert answer.status_code == 400
    assert "This link has expired." in answer.get_data(as_text=True)

    good = tokens.make(Purpose.CONFIRM, {"s": subscriber.id, "p": {}})
    forged = good[:-3] + ("aaa" if not good.endswith("aaa") else "bbb")
    other_purpose = tokens.make(Purpose.UNSUBSCRIBE, {"s": subscriber.id})
    for token in (forged, other_purpose, "nonsense", "x" * 500):
        answer = client.get(f"/subscriptions/confirm/{token}")
        assert answer.status_code == 400
        assert "This link is not valid" in answer.get_data(as_text=True)
    forged_unsubscribe = other_purpose[:-3] + (
        "aaa" if not other_purpose.endswith("aaa") else "bbb"
    )
    for token in (forged_unsubscribe, good, "nonsense"):
        assert client.post(f"/subscriptions/unsubscribe/{token}").status_code == 400
        assert client.post(f"/subscriptions/preferences/{token}").status_code == 400
    session.refresh(subscriber)
    assert subscriber.status is SubscriberStatus.PENDING


# Sending --------------------------------------------------------------------


def test_publishing_queues_in_the_same_transaction_for_those_who_want_it(
    client: FlaskClient, session: Session, smtp_server: SmtpServer
) -> None:
    product = make_product(session)
    confirmed(session, product, "every@example.com")
    confirmed(session, product, "important@example.com", frequency=Frequency.IMPORTANT)
    confirmed(session, product, "digest@example.com", frequency=Frequency.DIGEST)
    confirmed(session, product, "fixes@example.com", categories=(subscriptions.Category.FIXED,))
    gone = confirmed(session, product, "gone@example.com")
    subscriptions.unsubscribe(session, gone, now=utcnow())
    subscribe(client, product, "pending@example.com")
    send_all(smtp_server)
    smtp_server.recorder.received.clear()

    note = make_note(session, product, category="Added", email_subscribers=True)
    queued = {row.subscriber.email for row in outbox(session, note_id=note.id)}
    assert queued == {"every@example.com"}  # in the database before any worker ran
    important = make_note(session, product, category="Fixed", is_important=True)
    queued = {row.subscriber.email for row in outbox(session, note_id=important.id)}
    assert queued == {"every@example.com", "important@example.com", "fixes@example.com"}
    quiet = make_note(session, product, category="Fixed")
    assert outbox(session, note_id=quiet.id) == []

    assert send_all(smtp_server).sent == 4
    assert smtp_server.recorder.per_recipient() == {
        "every@example.com": 2,
        "important@example.com": 1,
        "fixes@example.com": 1,
    }
    assert send_all(smtp_server).sent == 0  # nothing twice


def test_a_failed_publish_queues_nothing(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    product = make_product(session)
    confirmed(session, product, "every@example.com")
    note = make_note(session, product, status="draft", email_subscribers=True)

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("the audit log is down")

    monkeypatch.setattr(services, "record", broken)
    with pytest.raises(RuntimeError):
        services.publish(session, note, by=None, now=utcnow())
    session.rollback()
    assert outbox(session) == []
    session.refresh(note)
    assert note.published_at is None and note.emailed_at is None


def test_a_scheduled_note_is_sent_when_it_goes_live(
    session: Session, smtp_server: SmtpServer
) -> None:
    product = make_product(session, name="Lumen")
    confirmed(session, product, "every@example.com")
    # Written a day and five minutes ago for a day later: it went live five minutes ago,
    # so the message queued then is due for a sending run now.
    written = utcnow() - timedelta(days=1, minutes=5)
    note = make_note(
        session,
        product,
        status="scheduled",
        now=written,
        title="Cohorts",
        email_subscribers=True,
    )
    live_at = note.published_at
    assert outbox(session) == []
    assert mailing.queue_due_notes(session, now=live_at - timedelta(minutes=1)) == 0
    assert send_all(smtp_server).sent == 0
    assert smtp_server.recorder.received == []  # nothing before its time
    assert mailing.queue_due_notes(session, now=live_at + timedelta(minutes=1)) == 1
    assert mailing.queue_due_notes(session, now=live_at + timedelta(minutes=2)) == 0
    assert [row.note_id for row in outbox(session)] == [note.id]

    assert send_all(smtp_server).sent == 1
    assert smtp_server.recorder.per_recipient() == {"every@example.com": 1}
    [mail] = smtp_server.recorder.to("every@example.com")
    assert mail["Subject"] == f"Lumen {note.version}: Cohorts"
    assert send_all(smtp_server).sent == 0  # once


def test_an_already_published_note_can_be_sent_and_only_to_newcomers_again(
    session: Session, smtp_server: SmtpServer
) -> None:
    product = make_product(session)
    confirmed(session, product, "first@example.com")
    note = make_note(session, product)
    assert services.email_note(session, note, by=None, now=utcnow()) == 1
    confirmed(session, product, "second@example.com")
    assert services.email_note(session, note, by=None, now=utcnow()) == 1
    send_all(smtp_server)
    assert smtp_server.recorder.per_recipient() == {"first@example.com": 1, "second@example.com": 1}
    draft = make_note(session, product, status="draft")
    with pytest.raises(services.InvalidTransition):
        services.email_note(session, draft, by=None, now=utcnow())


def test_the_message_is_multipart_alternative_with_rfc8058_headers(
    session: Session, smtp_server: SmtpServer, client: FlaskClient
) -> None:
    if not RFC8058_SAMPLE.exists():
        pytest.skip(f"{RFC8058_SAMPLE} is absent: the shared test data is not beside the project")
    sample = email.message_from_bytes(RFC8058_SAMPLE.read_bytes(), policy=email.policy.default)
    product = make_product(session, name="Lumen")
    product.email_from_name = "Lumen Updates"
    product.email_reply_to = "product@lumen.example.com"
    session.commit()
    confirmed(session, product, "ann@example.com")
    note = make_note(
        session,
        product,
        version="2.10.0",
        title="Funnels",
        is_important=True,
        body_md="Build **funnels** from any events.\n\n![chart](https://img.example.com/a.png)",
    )
    send_all(smtp_server)
    [received] = smtp_server.recorder.received
    assert received.sender == "tidings@localhost"
    raw_headers = received.data.split(b"\r\n\r\n", 1)[0].decode()
    assert "=?utf-8?" not in raw_headers.split("Subject:")[0]  # no encoded words in list headers
    mail = received.message

    # The headers RFC 8058 asks for, as the real list message has them.
    assert mail["List-Unsubscribe-Post"] == sample["List-Unsubscribe-Post"]
    https, mailto = re.findall(r"<([^>]+)>", str(mail["List-Unsubscribe"]))
    assert https.startswith(f"{BASE}/subscriptions/unsubscribe/")
    assert re.findall(r"<([^>]+)>", str(sample["List-Unsubscribe"]))[0].startswith("https://")
    assert mailto.startswith("mailto:tidings@localhost?subject=unsubscribe%20")
    assert mail["List-Id"] == f"Lumen release notes <{product.slug}.changes.example.com>"
    assert sample["List-Id"]
    assert mail["Subject"] == "Lumen 2.10.0: Funnels"
    assert str(mail["From"]) == "Lumen Updates <tidings@localhost>"
    assert str(mail["Reply-To"]) == "product@lumen.example.com"
    assert str(mail["To"]) == "ann@example.com"
    [row] = outbox(session, note_id=note.id)
    assert row.status is OutboxStatus.SENT and row.sent_at is not None
    assert mail["Message-ID"] == row.message_id

    # multipart/alternative: plain text first, then HTML that holds up in mail clients.
    assert mail.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in mail.iter_parts()] == ["text/plain", "text/html"]
    text = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    assert "Build **funnels** from any events." in text
    assert "<strong>funnels</strong>" in html
    assert 'width="600"' in html and "max-width:600px" in html
    assert "<table" in html and "<link" not in html and "<script" not in html
    assert html.count(https) >= 1 and text.count(https) >= 1  # the footer's own link
    assert f"{BASE}/subscriptions/read/" in html

    # One-click unsubscribe, as a mail provider does it: no cookie, no token, no login.
    path = https.removeprefix(BASE)
    fresh = client.application.test_client()
    answer = fresh.post(
        path, data="List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
    )
    assert answer.status_code == 200
    assert "You are unsubscribed" in answer.get_data(as_text=True)
    assert fresh.post(path, data="List-Unsubscribe=One-Click").status_code == 200
    subscriber = session.scalar(select(Subscriber))
    assert subscriber is not None
    session.refresh(subscriber)
    assert subscriber.status is SubscriberStatus.UNSUBSCRIBED
    make_note(session, product, is_important=True)
    assert send_all(smtp_server).sent == 0


def test_the_unsubscribe_page_shows_preferences_and_changes_nothing_until_asked(
    session: Session, client: FlaskClient
) -> None:
    product = make_product(session, name="Lumen")
    subscriber = confirmed(session, product, "ann@example.com", frequency=Frequency.IMPORTANT)
    token = tokens.make(Purpose.UNSUBSCRIBE, {"s": subscriber.id})
    page = client.get(f"/subscriptions/unsubscribe/{token}")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert "ann@example.com" in body and "Important notes only" in body
    assert 'value="important" checked' in body
    session.refresh(subscriber)
    assert subscriber.status is SubscriberStatus.CONFIRMED

    saved = client.post(
        f"/subscriptions/preferences/{token}", data={"frequency": "digest", "categories": ["Fixed"]}
    )
    assert saved.status_code == 200 and "Saved." in saved.get_data(as_text=True)
    session.refresh(subscriber)
    assert (subscriber.frequency, subscriber.categories) == (Frequency.DIGEST, ["Fixed"])
    bad = client.post(f"/subscriptions/preferences/{token}", data={"frequency": "hourly"})
    assert bad.status_code == 422
    page = bad.get_data(as_text=True)
    assert 'role="alert">Choose every release, important notes only, or a digest.</p>' in page
    session.refresh(subscriber)
    assert (subscriber.frequency, subscriber.categories) == (Frequency.DIGEST, ["Fixed"])


def test_the_eml_folder_takes_the_mail_without_smtp(
    app: Flask, session: Session, tmp_path: Path
) -> None:
    product = make_product(session)
    confirmed(session, product, "ann@example.com")
    make_note(session, product, title="Offline", email_subscribers=True)
    folder = tmp_path / "mail"
    assert delivery.deliver_due(transport.from_config(None, str(tmp_path))).sent == 1
    [written] = folder.glob("*.eml")
    mail = email.message_from_bytes(written.read_bytes(), policy=email.policy.default)
    assert mail["Subject"].endswith(": Offline")
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


# Failures ---------------------------------------------------------------------


def test_transient_failures_are_retried_later_and_permanent_ones_counted(
    app: Flask, session: Session, smtp_server: SmtpServer
) -> None:
    product = make_product(session)
    for name in ("fine", "later", "nobody"):
        confirmed(session, product, f"{name}@example.com")
    smtp_server.recorder.replies["later@example.com"] = "451 4.3.0 Mailbox busy, try later"
    smtp_server.recorder.replies["nobody@example.com"] = "550 5.1.1 No such user"
    for _ in range(app.config["MAIL_BOUNCE_LIMIT"]):
        make_note(session, product, is_important=True)
    report = send_all(smtp_server)
    assert (report.sent, report.retried, report.failed) == (3, 3, 3)
    later = outbox(session, status=OutboxStatus.QUEUED)
    assert len(later) == 3 and all(row.attempts == 1 for row in later)
    assert all(row.next_attempt_at > utcnow() + timedelta(seconds=20) for row in later)
    assert all("451" in (row.last_error or "") for row in later)
    nobody = session.scalar(select(Subscriber).filter_by(email="nobody@example.com"))
    assert nobody is not None
    session.refresh(nobody)
    assert nobody.status is SubscriberStatus.BOUNCED
    assert all(
        "550" in (row.last_error or "") for row in outbox(session, status=OutboxStatus.FAILED)
    )

    del smtp_server.recorder.replies["later@example.com"]
    for row in later:
        row.next_attempt_at = utcnow()
    session.commit()
    assert send_all(smtp_server).sent == 3
    assert smtp_server.recorder.per_recipient()["later@example.com"] == 3


def test_an_unreachable_server_keeps_every_message_for_later(session: Session) -> None:
    product = make_product(session)
    confirmed(session, product, "a@example.com")
    confirmed(session, product, "b@example.com")
    make_note(session, product, is_important=True)
    sender = transport.Smtp("smtp://127.0.0.1:9?starttls=off")
    report = delivery.deliver_due(sender)
    assert report.sent == 0 and report.paused and "cannot reach" in report.paused.error
    rows = outbox(session)
    assert [row.status for row in rows] == [OutboxStatus.QUEUED] * 2
    assert all(row.attempts == 0 and row.next_attempt_at > utcnow() for row in rows)


# A refusal of us is not a bounce ------------------------------------------------------

READERS = ("ann@example.com", "bob@example.com", "eve@example.com")
REFUSED_SENDER = "550 5.7.1 Sender address rejected: not owned by user relay@example.com"


def _readers(session: Session) -> Product:
    product = make_product(session)
    for address in READERS:
        confirmed(session, product, address)
    return product


def _bounced(session: Session) -> set[str]:
    session.expire_all()
    bounced = select(Subscriber.email).filter_by(status=SubscriberStatus.BOUNCED)
    return set(session.scalars(bounced))


def _notes_enough_to_bounce(app: Flask, session: Session, product: Product, server: SmtpServer):
    """Publish MAIL_BOUNCE_LIMIT notes, a sending run after each: enough refusals to bounce
    every reader, were each counted against them. Returns the last run's report."""
    report = delivery.Report()
    for _ in range(app.config["MAIL_BOUNCE_LIMIT"]):
        make_note(session, product, is_important=True)
        report = send_all(server)
    return report


def _retry_is_due(session: Session, *, refused_for: timedelta | None = None) -> None:
    """Make the queued messages due now, as if the server had refused us ``refused_for``."""
    now = utcnow()
    values: dict[str, object] = {"next_attempt_at": now}
    if refused_for is not None:
        values["paused_at"] = now - refused_for
    queued = OutboxMessage.status == OutboxStatus.QUEUED
    session.execute(update(OutboxMessage).where(queued).values(**values))
    session.commit()


def test_a_refused_sender_address_bounces_nobody_and_keeps_every_message(
    app: Flask, session: Session, smtp_server: SmtpServer
) -> None:
    product = _readers(session)
    smtp_server.recorder.sender_reply = REFUSED_SENDER
    report = _notes_enough_to_bounce(app, session, product, smtp_server)
    assert _bounced(session) == set()
    rows = outbox(session)
    assert len(rows) == 3 * len(READERS)
    assert all(row.status is OutboxStatus.QUEUED and row.attempts == 0 for row in rows)
    refusal = f"the mail server refused our sender address tidings@localhost ({REFUSED_SENDER})"
    assert {row.last_error for row in rows} == {refusal}
    assert smtp_server.recorder.senders_offered == 3  # one try a run, not one a message
    assert (report.sent, report.retried, report.failed) == (0, 0, 0)
    assert report.paused and report.paused.error == refusal
    assert report.paused.retry_at > utcnow()


def test_a_pause_backs_off_and_a_restarted_worker_keeps_to_it(
    session: Session, smtp_server: SmtpServer
) -> None:
    product = _readers(session)
    make_note(session, product, is_important=True)
    smtp_server.recorder.sender_reply = REFUSED_SENDER
    report = send_all(smtp_server)
    assert [(row.status, row.attempts) for row in outbox(session)] == [(OutboxStatus.QUEUED, 0)] * 3
    first = report.paused
    assert first and first.retry_at - first.since == outbox_claims.FIRST_RETRY
    # A new run with a new connection, as a restarted worker makes: nothing is due yet.
    assert send_all(smtp_server).paused is None
    assert smtp_server.recorder.senders_offered == 1

    # Each wait is as long as the refusals have lasted, up to LONGEST_PAUSE.
    _retry_is_due(session, refused_for=timedelta(minutes=4))
    second = send_all(smtp_server).paused
    assert second and abs(second.retry_at - utcnow() - timedelta(minutes=4)) < timedelta(seconds=10)
    _retry_is_due(session, refused_for=timedelta(hours=5))
    third = send_all(smtp_server).paused
    assert third and third.retry_at - utcnow() <= outbox_claims.LONGEST_PAUSE
    assert third.retry_at - utcnow() > outbox_claims.LONGEST_PAUSE - timedelta(minutes=1)
    assert smtp_server.recorder.senders_offered == 3

    smtp_server.recorder.sender_reply = None
    _retry_is_due(session)
    assert send_all(smtp_server).sent == len(READERS)
    rows = outbox(session)
    assert all(row.status is OutboxStatus.SENT and row.attempts == 1 for row in rows)
    assert all(row.paused_at is None and row.last_error is None for row in rows)


def test_once_the_sender_is_fixed_only_the_address_refused_at_rcpt_to_bounces(
    app: Flask, session: Session, smtp_server: SmtpServer
) -> None:
    product = _readers(session)
    smtp_server.recorder.sender_reply = REFUSED_SENDER
    _notes_enough_to_bounce(app, session, product, smtp_server)

    smtp_server.recorder.sender_reply = None
    smtp_server.recorder.replies["bob@example.com"] = "550 5.1.1 No such user"
    _retry_is_due(session)
    report = send_all(smtp_server)
    assert _bounced(session) == {"bob@example.com"}
    assert (report.sent, report.failed, report.paused) == (6, 3, None)
    assert smtp_server.recorder.per_recipient() == {"ann@example.com": 3, "eve@example.com": 3}
    failed = outbox(session, status=OutboxStatus.FAILED)
    assert {row.last_error for row in failed} == {"550 5.1.1 No such user"}


def test_a_message_refused_at_data_bounces_nobody(
    app: Flask, session: Session, smtp_server: SmtpServer
) -> None:
    product = _readers(session)
    reject = "554 5.7.1 Message rejected: the DMARC policy of localhost is reject"
    smtp_server.recorder.data_reply = reject
    report = _notes_enough_to_bounce(app, session, product, smtp_server)
    assert _bounced(session) == set()
    rows = outbox(session)
    assert all(row.status is OutboxStatus.QUEUED and row.attempts == 0 for row in rows)
    assert {row.last_error for row in rows} == {f"the mail server refused the message ({reject})"}
    assert smtp_server.recorder.received == []
    assert report.paused and report.paused.retry_at > utcnow()


# Read in the app, read by mail -----------------------------------------------------


def _end_user(session: Session, product: Product, address: str) -> EndUser:
    user = EndUser(
        product_id=product.id, external_id=address, attributes={"email": address.upper()}
    )
    session.add(user)
    session.commit()
    return user


def test_a_note_read_in_the_app_is_not_emailed_and_read_on_the_web_is_recorded(
    session: Session, smtp_server: SmtpServer, client: FlaskClient
) -> None:
    product = make_product(session)
    reader = _end_user(session, product, "reader@example.com")
    # Linked as the widget links a user whose address the host signed.
    linked = subscriptions.subscribe_end_user(
        session, product, reader.id, "reader@example.com", Preferences(), now=utcnow()
    )
    assert linked.end_user_id == reader.id
    other = confirmed(session, product, "other@example.com")
    assert other.end_user_id is None

    read_in_app = make_note(session, product, status="draft", is_important=True)
    session.add(ReadReceipt(end_user_id=reader.id, note_id=read_in_app.id, channel="widget"))
    session.commit()
    services.publish(session, read_in_app, by=None, now=utcnow())
    unread = make_note(session, product, is_important=True, title="Unread one")
    send_all(smtp_server)
    assert smtp_server.recorder.per_recipient() == {"reader@example.com": 1, "other@example.com": 2}
    [skipped] = outbox(session, status=OutboxStatus.SKIPPED)
    assert skipped.last_error == "already read in the app"

    [mail] = smtp_server.recorder.to("reader@example.com")
    answer = client.get(link(mail, "read"))
    assert answer.status_code == 302
    assert answer.headers["Location"].endswith(f"/{unread.version}#note-{unread.id}")
    receipt = session.get(ReadReceipt, (reader.id, unread.id))
    assert receipt is not None and receipt.channel == "email"
    assert client.get(link(mail, "read")).status_code == 302  # idempotent


def test_the_email_attribute_links_nobody_where_identity_is_not_verified(
    session: Session,
) -> None:
    product = make_product(session, require_identity=False)
    _end_user(session, product, "claimed@example.com")
    assert confirmed(session, product, "claimed@example.com").end_user_id is None


# Digests ----------------------------------------------------------------------


def test_the_weekly_digest_lists_what_is_new_and_unread_and_skips_an_empty_week(
    session: Session, smtp_server: SmtpServer
) -> None:
    product = make_product(session, name="Lumen")
    monday_nine = datetime(2026, 11, 2, 9, tzinfo=UTC)
    assert mailing.digest_slot(product, monday_nine + timedelta(days=3)) == monday_nine
    reader = _end_user(session, product, "weekly@example.com")
    digest = Preferences(Frequency.DIGEST)
    weekly = subscriptions.subscribe_end_user(
        session, product, reader.id, "weekly@example.com", digest, now=utcnow()
    )
    weekly.last_digest_at = monday_nine - timedelta(days=7)
    session.commit()
    week = monday_nine - timedelta(days=3)
    make_note(session, product, version="2.0.0", title="One", now=week)
    make_note(session, product, version="2.1.0", title="Two", now=week + timedelta(hours=1))
    already = make_note(
        session, product, version="2.1.0", title="Seen already", now=week + timedelta(hours=2)
    )
    make_note(session, product, version="2.1.0", title="Secret", now=week, is_internal=True)
    session.add(ReadReceipt(end_user_id=reader.id, note_id=already.id, channel="widget"))
    session.commit()

    assert mailing.queue_digests(session, now=monday_nine - timedelta(minutes=1)) == 0
    assert mailing.queue_digests(session, now=monday_nine) == 1
    assert mailing.queue_digests(session, now=monday_nine + timedelta(hours=1)) == 0
    send_all(smtp_server)
    [mail] = smtp_server.recorder.to("weekly@example.com")
    assert mail["Subject"] == "Lumen 2.0.0 to 2.1.0: 2 updates this week"
    text = mail.get_body(("plain",)).get_content()
    assert "== One" in text and "== Two" in text
    assert "Seen already" not in text and "Secret" not in text
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    # Next week: one note, read in the app before the digest goes: no digest at all.
    later = make_note(session, product, version="2.2.0", now=monday_nine + timedelta(days=2))
    session.add(ReadReceipt(end_user_id=reader.id, note_id=later.id, channel="widget"))
    session.commit()
    assert mailing.queue_digests(session, now=monday_nine + timedelta(days=7)) == 1
    report = send_all(smtp_server)
    assert (report.sent, report.skipped) == (0, 1)
    # The notes of a digest are not also sent one by one: one message in all, the digest.
    assert smtp_server.recorder.per_recipient() == {"weekly@example.com": 1}
    assert outbox(session, kind=subscriptions.OutboxKind.NOTE) == []


def test_a_digest_subscriber_is_not_sent_single_notes(session: Session) -> None:
    product = make_product(session)
    confirmed(session, product, "weekly@example.com", frequency=Frequency.DIGEST)
    make_note(session, product, is_important=True)
    assert outbox(session) == []


def test_note_input_defaults_email_to_important(session: Session) -> None:
    product = make_product(session)
    data = NoteInput(version="1.0.0", title="Big", category="Added", is_important=True)
    note = services.create_note(session, product, data, intent=Intent.SAVE, by=None, now=utcnow())
    assert note.email_subscribers is True
    quiet = make_note(session, product, status="draft")
    assert quiet.email_subscribers is False


def test_the_pacer_keeps_to_the_configured_rate() -> None:
    pacer = transport.Pacer(20)
    started = time.monotonic()
    for _ in range(5):
        pacer.wait()
    assert time.monotonic() - started >= 4 / 20 * 0.95  # four intervals between five sends
    assert transport.Pacer(0).interval == 0  # no limit: never waits


def test_workers_claim_no_more_than_a_batch_and_never_the_same_message(
    session: Session,
) -> None:
    product = make_product(session)
    for number in range(120):
        confirmed(session, product, f"reader{number}@example.com")
    make_note(session, product, is_important=True)
    lease = timedelta(minutes=2)
    first = outbox_claims.claim(session, "host:1:1", now=utcnow(), limit=50, lease=lease)
    second = outbox_claims.claim(session, "host:2:1", now=utcnow(), limit=50, lease=lease)
    third = outbox_claims.claim(session, "host:3:1", now=utcnow(), limit=50, lease=lease)
    assert (len(first), len(second), len(third)) == (50, 50, 20)
    assert not set(first) & set(second) and not set(second) & set(third)
