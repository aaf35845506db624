"""Webhooks against a real HTTP receiver on loopback: what is queued for which change,
the signed payload (checked the way the README tells receivers to check it), Slack's
format, retries with backoff, scheduled notes, calls that carry the note as it is when
made (and none for a note made internal meanwhile), one deadline for a whole call, only
a valid HTTP 2xx answer taken as success, private addresses (in every IPv6 disguise) and
redirects refused, and the console page."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import time
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from announcements import importing, services, webhooks
from announcements.errors import ValidationFailed
from announcements.models import (
    OutboxStatus,
    WebhookDelivery,
    WebhookEvent,
    utcnow,
)
from app import webhooks as sender
from tests.conftest import AuthActions, csrf_token
from tests.factories import make_member, make_note, make_product


def verify(secret: str, headers: dict[str, str], body: bytes, tolerance: int = 300) -> bool:
    """The check the README shows receivers."""
    timestamp = headers["X-Tidings-Timestamp"]
    if abs(time.time() - int(timestamp)) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return hmac.compare_digest("v1=" + expected.hexdigest(), headers["X-Tidings-Signature"])


def deliveries(session) -> list[WebhookDelivery]:
    session.expire_all()
    return list(session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


def make_hook(session, product, url, events=("note.published",), format="json"):
    return webhooks.create(
        session, product, url, list(events), format, by=None, now=utcnow(), allow_private=True
    )


def test_a_published_note_is_posted_signed_with_its_links(session, receiver) -> None:
    product = make_product(session, slug="acme", name="Acme")
    hook = make_hook(session, product, receiver.url)
    note = make_note(session, product, version="2.4.0", title="PDF export", body_md="**New**")
    [queued] = deliveries(session)
    assert queued.event is WebhookEvent.PUBLISHED and queued.status is OutboxStatus.QUEUED

    assert sender.deliver_due() == {"sent": 1, "retried": 0, "failed": 0, "skipped": 0}
    [call] = receiver.calls
    assert call["headers"]["X-Tidings-Event"] == "note.published"
    assert call["headers"]["Content-Type"] == "application/json"
    assert verify(hook.secret, call["headers"], call["body"])
    assert not verify(hook.secret, call["headers"], call["body"] + b" ")
    payload = json.loads(call["body"])
    assert payload["event"] == "note.published" and payload["product"]["slug"] == "acme"
    assert payload["note"]["title"] == "PDF export" and payload["note"]["html"] == (
        "<p><strong>New</strong></p>"
    )
    assert payload["note"]["url"].endswith(f"/changelog/acme/2.4.0#note-{note.id}")
    assert payload["links"]["feed"].endswith("/changelog/acme/feed.atom")
    [sent] = deliveries(session)
    assert sent.status is OutboxStatus.SENT and sent.response_status == 200
    assert sent.duration_ms is not None and sent.delivered_at is not None
    assert sender.deliver_due()["sent"] == 0  # nothing twice


def test_updates_archives_and_the_events_each_webhook_wants(session, receiver) -> None:
    product = make_product(session)
    published_only = make_hook(session, product, receiver.url, events=["note.published"])
    everything = make_hook(session, product, receiver.url + "/all", events=list(WebhookEvent))
    paused = make_hook(session, product, receiver.url + "/paused", events=list(WebhookEvent))
    webhooks.set_active(session, paused, False, by=None, now=utcnow())
    note = make_note(session, product)
    make_note(session, product, is_internal=True)  # never announced
    draft = make_note(session, product, status="draft")
    services.update_note(
        session,
        note,
        services.NoteInput(note.version, "A better title", note.category.value, note.body_md),
        by=None,
        now=utcnow(),
    )
    sender.deliver_due()  # before the archive, or the note is no longer what they announce
    services.archive(session, note, by=None, now=utcnow())
    services.archive(session, draft, by=None, now=utcnow())  # was never public: no call
    sent = [(d.webhook_id, d.event.value) for d in deliveries(session)]
    assert sent == [
        (published_only.id, "note.published"),
        (everything.id, "note.published"),
        (everything.id, "note.updated"),
        (everything.id, "note.archived"),
    ]
    sender.deliver_due()
    assert sorted(c["path"] for c in receiver.calls) == [
        "/hook",
        "/hook/all",
        "/hook/all",
        "/hook/all",
    ]
    archived = [
        json.loads(c["body"])
        for c in receiver.calls
        if c["headers"]["X-Tidings-Event"] == "note.archived"
    ]
    assert len(archived) == 1 and archived[0]["note"]["id"] == note.id
    assert archived[0]["note"]["archived_at"] is not None


def test_slack_gets_an_incoming_webhook_message(session, receiver) -> None:
    product = make_product(session, name="Lumen <Analytics>")
    make_hook(session, product, receiver.url, format="slack")
    make_note(session, product, version="3.1.0", title="Funnels", is_important=True)
    sender.deliver_due()
    message = json.loads(receiver.calls[0]["body"])
    assert set(message) == {"text", "blocks"}
    assert message["text"].startswith("New: Lumen <Analytics> 3.1.0: Funnels http")
    section = message["blocks"][0]["text"]["text"]
    assert section.startswith("*<http") and "Lumen &lt;Analytics&gt; 3.1.0: Funnels>*" in section
    assert "Important" in message["blocks"][1]["elements"][0]["text"]


def test_failures_are_retried_with_backoff_and_logged(session, receiver) -> None:
    product = make_product(session)
    make_hook(session, product, receiver.url)
    make_note(session, product)
    receiver.answers = [503]
    assert sender.deliver_due()["retried"] == 1
    [waiting] = deliveries(session)
    assert waiting.status is OutboxStatus.QUEUED and waiting.attempts == 1
    assert waiting.response_status == 503 and "receiver is down" in waiting.last_error
    assert waiting.next_attempt_at > utcnow() + timedelta(seconds=20)
    assert sender.deliver_due()["sent"] == 0  # not before its time
    session.execute(update(WebhookDelivery).values(next_attempt_at=utcnow()))
    session.commit()
    assert sender.deliver_due()["sent"] == 1
    [done] = deliveries(session)
    assert done.status is OutboxStatus.SENT and done.attempts == 2 and done.last_error is None


def test_a_receiver_that_never_answers_is_retried_then_failed(session) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}/gone"
    product = make_product(session)
    make_hook(session, product, closed)
    make_note(session, product)
    for _ in range(8):
        session.execute(update(WebhookDelivery).values(next_attempt_at=utcnow()))
        session.commit()
        sender.deliver_due()
    [given_up] = deliveries(session)
    assert given_up.status is OutboxStatus.FAILED and given_up.attempts == 8
    assert given_up.last_error.startswith("no answer")


def test_a_scheduled_note_is_announced_when_it_goes_live(session, receiver, monkeypatch) -> None:
    product = make_product(session)
    make_hook(session, product, receiver.url)
    note = make_note(session, product, status="scheduled")
    [waiting] = deliveries(session)
    assert waiting.next_attempt_at == note.published_at
    assert sender.deliver_due()["sent"] == 0
    # Moved a day later: the first delivery is skipped, the new one waits for the new time.
    later = note.published_at + timedelta(days=1)
    services.update_note(
        session,
        note,
        services.NoteInput(note.version, note.title, note.category.value, note.body_md),
        intent=services.Intent.SCHEDULE,
        publish_at=later,
        by=None,
        now=utcnow(),
    )
    first, second = deliveries(session)
    assert second.next_attempt_at == later
    assert first.status is OutboxStatus.SKIPPED and first.last_error == "replaced by a later call"
    # The worker's clock passes the new time: the note is live and announced once.
    monkeypatch.setattr(sender, "utcnow", lambda: later + timedelta(seconds=1))
    assert sender.deliver_due() == {"sent": 1, "retried": 0, "failed": 0, "skipped": 0}
    first, second = deliveries(session)
    assert second.status is OutboxStatus.SENT
    [call] = receiver.calls
    assert json.loads(call["body"])["note"]["published_at"] == later.isoformat()
    # Unscheduled before its time: nothing is announced.
    draft = make_note(session, product, status="scheduled", title="Never mind")
    services.update_note(
        session,
        draft,
        services.NoteInput(draft.version, draft.title, draft.category.value, draft.body_md),
        intent=services.Intent.UNSCHEDULE,
        by=None,
        now=utcnow(),
    )
    monkeypatch.setattr(sender, "utcnow", lambda: utcnow() + timedelta(days=5))
    assert sender.deliver_due()["skipped"] == 1 and len(receiver.calls) == 1
    assert deliveries(session)[-1].last_error == "the note is a draft now"


def test_a_note_made_internal_before_it_goes_live_is_not_announced(
    client, auth: AuthActions, session, receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 12: a public note was scheduled, then made internal and redacted; at go-live
    its webhook call went out with the original text."""
    owner = make_member(session, "owner@example.com")
    product = make_product(session, owner=owner, slug="acme")
    make_hook(session, product, receiver.url, events=list(WebhookEvent))
    note = make_note(session, product, status="scheduled", title="Acquiring Initech")
    redacted = services.NoteInput(
        note.version, "Staff only", "Added", "Redacted.", is_internal=True
    )
    services.update_note(session, note, redacted, by=None, now=utcnow())
    monkeypatch.setattr(sender, "utcnow", lambda: note.published_at + timedelta(seconds=1))
    assert sender.deliver_due() == {"sent": 0, "retried": 0, "failed": 0, "skipped": 1}
    assert receiver.calls == []
    [skipped] = deliveries(session)
    assert (
        skipped.status is OutboxStatus.SKIPPED and skipped.last_error == "the note is internal now"
    )
    auth.login("owner@example.com")
    page = client.get("/console/p/acme/webhooks").get_data(as_text=True)
    assert "skipped" in page and "the note is internal now" in page


def test_a_call_carries_the_note_as_it_is_when_made(session, receiver, monkeypatch) -> None:
    product = make_product(session)
    make_hook(session, product, receiver.url, events=list(WebhookEvent))
    # Edited while it waits to go live: the announcement has the new text.
    scheduled = make_note(session, product, status="scheduled", title="Draft wording")
    services.update_note(
        session,
        scheduled,
        services.NoteInput(scheduled.version, "Final wording", "Added", "Checked."),
        by=None,
        now=utcnow(),
    )
    # Archived and restored before going live: announced once, not twice.
    services.archive(session, scheduled, by=None, now=utcnow())
    services.restore(session, scheduled, by=None, now=utcnow())
    # Published while its receiver is down, then archived: the retry is not sent, the
    # withdrawal is.
    withdrawn = make_note(session, product, title="Withdrawn")
    receiver.answers = [503]
    assert sender.deliver_due()["retried"] == 1
    services.archive(session, withdrawn, by=None, now=utcnow())
    later = scheduled.published_at + timedelta(seconds=1)
    monkeypatch.setattr(sender, "utcnow", lambda: later)
    session.execute(update(WebhookDelivery).values(next_attempt_at=utcnow()))
    session.commit()
    assert sender.deliver_due() == {"sent": 2, "retried": 0, "failed": 0, "skipped": 1}
    sent = [
        (c["headers"]["X-Tidings-Event"], json.loads(c["body"])["note"]) for c in receiver.calls
    ]
    assert [(event, note["title"]) for event, note in sent] == [
        ("note.published", "Withdrawn"),  # the call that met the 503
        ("note.published", "Final wording"),
        ("note.archived", "Withdrawn"),
    ]
    assert sent[1][1]["body_md"] == "Checked."
    skipped = [d for d in deliveries(session) if d.status is OutboxStatus.SKIPPED]
    assert sorted(d.last_error for d in skipped) == [
        "replaced by a later call",
        "the note is archived now",
    ]


def test_imports_call_no_webhook(session, receiver) -> None:
    product = make_product(session)
    make_hook(session, product, receiver.url, events=list(WebhookEvent))
    importing.import_changelog(
        session, product, "## 1.0.0 - 2024-01-01\n- First\n", publish=True, by=None, now=utcnow()
    )
    assert deliveries(session) == []


def test_the_console_adds_lists_and_removes_webhooks(
    app, client, auth: AuthActions, session, receiver, monkeypatch: pytest.MonkeyPatch
):
    owner = make_member(session, "owner@example.com")
    product = make_product(session, owner=owner, slug="acme")
    auth.login("owner@example.com")
    token = csrf_token(client)

    def add(url: str):
        form = {"csrf_token": token, "url": url, "events": ["note.published"], "format": "json"}
        return client.post("/console/p/acme/webhooks", data=form)

    bad = add("ftp://x")
    assert bad.status_code == 422 and "full address" in bad.get_data(as_text=True)
    with monkeypatch.context() as private:
        private.setitem(app.config, "WEBHOOK_ALLOW_PRIVATE", False)
        metadata = add("http://169.254.169.254/latest/meta-data/")
    assert metadata.status_code == 422
    assert "169.254.169.254 is on a private network" in metadata.get_data(as_text=True)
    assert webhooks.for_product(session, product) == []
    assert add(receiver.url).status_code == 302
    [hook] = webhooks.for_product(session, product)
    make_note(session, product, title="Shown in the log")
    sender.deliver_due()
    page = client.get("/console/p/acme/webhooks").get_data(as_text=True)
    assert "Shown in the log" in page and "HTTP 200" in page and hook.secret in page
    removed = client.post(f"/console/p/acme/webhooks/{hook.id}/delete", data={"csrf_token": token})
    assert removed.status_code == 302
    session.expire_all()
    assert webhooks.for_product(session, product) == []


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "https://intranet.localhost/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "http://[fd00::1]/hook",
        "http://0.0.0.0/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/",
        "http://[2002:c0a8:a::1]/hook",
    ],
)
def test_a_webhook_cannot_name_a_private_address(session, url: str) -> None:
    product = make_product(session)
    with pytest.raises(ValidationFailed) as refused:
        webhooks.create(session, product, url, ["note.published"], "json", by=None, now=utcnow())
    assert "private network" in refused.value.errors["url"]
    assert webhooks.for_product(session, product) == []
    public = "https://hooks.example.com/tidings"
    webhooks.create(session, product, public, ["note.published"], "json", by=None, now=utcnow())
    assert [hook.url for hook in webhooks.for_product(session, product)] == [public]


def test_a_name_that_resolves_to_a_private_address_is_refused_when_called(
    app, session, receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The name passes when saved; by the time of the call it resolves to loopback (DNS
    rebinding): the worker refuses to connect, and says why in the delivery log."""
    port = receiver.server.server_address[1]
    resolve = socket.getaddrinfo

    def rebound(host: str, *args: object, **kwargs: object) -> list:
        return resolve("127.0.0.1" if host == "hooks.example.com" else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebound)
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOW_PRIVATE", False)
    product = make_product(session)
    for scheme in ("http", "https"):
        url = f"{scheme}://hooks.example.com:{port}/hook"
        webhooks.create(session, product, url, ["note.published"], "json", by=None, now=utcnow())
    make_note(session, product)
    assert sender.deliver_due()["retried"] == 2
    assert receiver.calls == []
    for refused in deliveries(session):
        assert refused.response_status is None
        assert refused.last_error.startswith("hooks.example.com resolves to an address that")
        assert "127.0.0.1" not in refused.last_error  # the owner learns nothing inside
        assert "WEBHOOK_ALLOW_PRIVATE" in refused.last_error

    monkeypatch.setitem(app.config, "WEBHOOK_ALLOW_PRIVATE", True)
    session.execute(update(WebhookDelivery).values(next_attempt_at=utcnow()))
    session.commit()
    # Allowed, the plain call arrives; the TLS one reaches the port and fails its handshake.
    assert sender.deliver_due() == {"sent": 1, "retried": 1, "failed": 0, "skipped": 0}
    assert [call["path"] for call in receiver.calls] == ["/hook"]


def test_a_redirect_is_not_followed(session, receiver) -> None:
    product = make_product(session)
    make_hook(session, product, receiver.url)
    make_note(session, product)
    receiver.answers = [302]
    assert sender.deliver_due()["retried"] == 1
    assert [call["path"] for call in receiver.calls] == ["/hook"]
    [waiting] = deliveries(session)
    assert waiting.response_status == 302
    assert waiting.last_error == "HTTP 302: redirects to /elsewhere, which is not followed"


def test_a_test_call_from_the_console_is_signed_and_says_what_came_back(
    client, auth: AuthActions, session, receiver
) -> None:
    owner = make_member(session, "owner@example.com")
    product = make_product(session, owner=owner, slug="acme")
    hook = make_hook(session, product, receiver.url)
    auth.login("owner@example.com")
    token = csrf_token(client)
    test_call = f"/console/p/acme/webhooks/{hook.id}/test"

    page = client.post(test_call, data={"csrf_token": token}, follow_redirects=True)
    assert "Test call answered with HTTP 200" in page.get_data(as_text=True)
    [call] = receiver.calls
    assert call["headers"]["X-Tidings-Delivery"] == "test"
    assert verify(hook.secret, call["headers"], call["body"])
    payload = json.loads(call["body"])
    assert payload["test"] is True and payload["delivery_id"] is None
    assert payload["note"]["title"] == "A test call from Tidings"  # no note published yet

    make_note(session, product, version="2.0.0", title="Older")
    make_note(session, product, version="2.1.0", title="Newest public note")
    make_note(session, product, version="2.2.0", title="Not yet", status="scheduled")
    make_note(session, product, version="2.1.1", title="Staff only", is_internal=True)
    session.execute(update(WebhookDelivery).values(status=OutboxStatus.SENT))
    session.commit()
    receiver.answers = [500]
    page = client.post(test_call, data={"csrf_token": token}, follow_redirects=True)
    assert "The test call failed: HTTP 500: receiver is down" in page.get_data(as_text=True)
    assert json.loads(receiver.calls[-1]["body"])["note"]["title"] == "Newest public note"
    assert all(d.status is OutboxStatus.SENT for d in deliveries(session))  # none logged


def test_an_owner_retries_a_failed_call_and_it_goes_out_once_more(
    client, auth: AuthActions, session, receiver
) -> None:
    owner = make_member(session, "owner@example.com")
    product = make_product(session, owner=owner, slug="acme")
    make_hook(session, product, receiver.url)
    make_note(session, product, title="Retried")
    receiver.answers = [503] * 8
    for _ in range(8):
        session.execute(update(WebhookDelivery).values(next_attempt_at=utcnow()))
        session.commit()
        sender.deliver_due()
    [failed] = deliveries(session)
    assert failed.status is OutboxStatus.FAILED and failed.attempts == 8
    auth.login("owner@example.com")
    token = csrf_token(client)
    page = client.get("/console/p/acme/webhooks").get_data(as_text=True)
    retry = f"/console/p/acme/webhooks/calls/{failed.id}/retry"
    assert f'action="{retry}"' in page

    answer = client.post(retry, data={"csrf_token": token}, follow_redirects=True)
    assert "goes out again in a moment" in answer.get_data(as_text=True)
    assert sender.deliver_due()["sent"] == 1  # due at once, not after a backoff
    [sent] = deliveries(session)
    assert sent.status is OutboxStatus.SENT and sent.attempts == 9 and len(receiver.calls) == 9
    again = client.post(retry, data={"csrf_token": token}, follow_redirects=True)
    assert "This call is sent after 9 tries" in again.get_data(as_text=True)
    assert sender.deliver_due()["sent"] == 0 and len(receiver.calls) == 9
    other = make_product(session, owner=owner, slug="other")
    elsewhere = f"/console/p/{other.slug}/webhooks/calls/{failed.id}/retry"
    assert client.post(elsewhere, data={"csrf_token": token}).status_code == 404
    # An announcement waiting for its note to go live has not failed: it is not retried.
    scheduled = make_note(session, product, status="scheduled", title="Tomorrow")
    [waiting] = [d for d in deliveries(session) if d.note_id == scheduled.id]
    early = f"/console/p/acme/webhooks/calls/{waiting.id}/retry"
    refused = client.post(early, data={"csrf_token": token}, follow_redirects=True)
    assert "only a failed call, or one waiting to try again" in refused.get_data(as_text=True)
    assert sender.deliver_due() == {"sent": 0, "retried": 0, "failed": 0, "skipped": 0}
    [still_waiting] = [d for d in deliveries(session) if d.note_id == scheduled.id]
    assert still_waiting.status is OutboxStatus.QUEUED
    assert still_waiting.next_attempt_at == scheduled.published_at


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.215.14", True),
        ("2606:4700:4700::1111", True),
        ("10.0.0.1", False),
        ("fe80::1%eth0", False),
        ("ff0e::1", False),  # multicast
        # IPv4-mapped: the IPv4 address decides.
        ("::ffff:127.0.0.1", False),
        ("::ffff:93.184.215.14", True),
        # NAT64's well-known prefix reaches the IPv4 address in its last 32 bits.
        ("64:ff9b::7f00:1", False),
        ("64:ff9b::169.254.169.254", False),
        ("64:ff9b::c0a8:1", False),
        ("64:ff9b::93.184.215.14", True),
        # The local-use NAT64 prefix puts it where each network chooses: refused whole.
        ("64:ff9b:1::5db8:d70e", False),
        ("64:ff9b:1:5db8:d7:e00::", False),
        # 6to4 carries the IPv4 address in bits 16 to 48.
        ("2002:7f00:1::1", False),
        ("2002:a00:1::", False),
        ("2002:5db8:d70e::1", True),
        ("::7f00:1", False),  # IPv4-compatible, long deprecated
    ],
)
def test_addresses_that_embed_a_private_ipv4_one_are_not_public(address: str, public: bool) -> None:
    assert webhooks.is_public(address) is public


def test_a_call_has_one_deadline_however_slowly_the_receiver_answers(
    session, receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A header line every 0.2 s passes any timeout on a single read; the whole call is
    cut off at its deadline all the same, and counts as failed."""
    monkeypatch.setattr(sender, "TIMEOUT", 1)
    product = make_product(session)
    make_hook(session, product, receiver.url)
    make_note(session, product)
    headers = [b"X-Wait: %d\r\n" % line for line in range(25)]  # 5 s of them
    receiver.answers = [[b"HTTP/1.1 200 OK\r\n", *headers, b"Content-Length: 2\r\n\r\nok"]]
    assert sender.deliver_due()["retried"] == 1
    [cut_off] = deliveries(session)
    assert cut_off.response_status is None and cut_off.status is OutboxStatus.QUEUED
    assert cut_off.last_error == "no complete answer within 1 s"
    assert cut_off.duration_ms is not None and cut_off.duration_ms < 4000


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (b"NOT-HTTP garbage\r\n", "not a valid HTTP answer (BadStatusLine)"),
        (b"HTTP/1.1 2OO OK\r\n\r\n", "not a valid HTTP answer (BadStatusLine)"),
        (b"HTTP/2 200\r\n\r\n", "not a valid HTTP answer (UnknownProtocol)"),
    ],
)
def test_only_a_valid_http_answer_counts(session, receiver, answer: bytes, error: str) -> None:
    product = make_product(session)
    make_hook(session, product, receiver.url)
    make_note(session, product)
    receiver.answers = [answer]
    assert sender.deliver_due()["retried"] == 1
    [refused] = deliveries(session)
    assert refused.response_status is None and refused.last_error == error


def test_a_refused_test_call_names_the_refusal_not_the_address(
    app, client, auth: AuthActions, session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An owner must not learn, by a test call, what a name inside the operator's network
    resolves to."""
    resolve = socket.getaddrinfo

    def internal(host: str, *args: object, **kwargs: object) -> list:
        return resolve("10.20.30.40" if host == "build.corp.example" else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", internal)
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOW_PRIVATE", False)
    owner = make_member(session, "owner@example.com")
    product = make_product(session, owner=owner, slug="acme")
    hook = webhooks.create(
        session,
        product,
        "http://build.corp.example/hook",
        ["note.published"],
        "json",
        by=None,
        now=utcnow(),
    )
    auth.login("owner@example.com")
    test_call = f"/console/p/acme/webhooks/{hook.id}/test"
    page = client.post(
        test_call, data={"csrf_token": csrf_token(client)}, follow_redirects=True
    ).get_data(as_text=True)
    assert (
        "The test call failed: build.corp.example resolves to an address that is on a private "
        "network" in page
    )
    assert "10.20.30.40" not in page
