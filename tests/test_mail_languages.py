"""E-mail in the subscriber's language: each note in its best translation by the chain,
the subject and the mail's own wording too, right to left for Arabic; digests; choosing
the language at sign-up and in the preferences; announcing a translation published later.

Every message goes through a real SMTP server on loopback (aiosmtpd).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import pytest
from babel.dates import format_date
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from announcements import mailing, services, subscriptions, translation_mail, translations
from announcements.models import (
    Frequency,
    Note,
    OutboxKind,
    OutboxStatus,
    Product,
    ReadReceipt,
    Subscriber,
    SubscriberStatus,
    utcnow,
)
from announcements.subscriptions import Preferences
from app.mail import account_mail, tokens
from tests.factories import make_end_user, make_note, make_product
from tests.i18n_helpers import needs_catalogue, said, said_plural
from tests.mailserver import SmtpServer
from tests.test_email import BASE, confirmed, link, outbox, send_all, subscribe
from tests.test_widget_api import Widget

FRENCH = {"title": "Entonnoirs", "body_md": "Des entonnoirs **partout**."}
ARABIC = {"title": "القمع", "body_md": "قمع في كل مكان."}

pytestmark = pytest.mark.usefixtures("https_base_url")


def subject(locale: str, title: str) -> str:
    """A note mail's subject for Lumen 1.0.0, worded as ``locale``'s catalogue words it
    (French puts a non-breaking space before the colon)."""
    return said(
        locale, "%(product)s %(version)s: %(title)s", product="Lumen", version="1.0.0", title=title
    )


@pytest.fixture
def lumen(session: Session) -> Product:
    """Lumen speaks English (its default), French, Arabic and German; it has no Japanese."""
    product = make_product(session, name="Lumen", slug="lumen")
    translations.set_languages(session, product, "en", ["fr", "ar", "de"], by=None, now=utcnow())
    session.commit()
    return product


def translated(session: Session, note: Note, locale: str, *, publish: bool = True, **text: str):
    row = translations.save(
        session,
        note,
        locale,
        title=text["title"],
        body_md=text["body_md"],
        publish=publish,
        by=None,
        now=utcnow(),
    )
    session.commit()
    return row


def subscriber_of(session: Session, email: str) -> Subscriber:
    found = session.scalar(select(Subscriber).filter_by(email=email))
    assert found is not None
    return found


def reader(session: Session, product: Product, email: str, locale: str | None, **more: object):
    return confirmed(session, product, email, locale=locale, **more)


def html_of(mail: EmailMessage) -> str:
    return mail.get_body(("html",)).get_content()


def text_of(mail: EmailMessage) -> str:
    return mail.get_body(("plain",)).get_content()


def published_note(session: Session, product: Product, **overrides: object) -> Note:
    """A note with French and Arabic translations and a German draft, published now."""
    note = make_note(
        session,
        product,
        status="draft",
        title="Funnels",
        body_md="Funnels **everywhere**.",
        is_important=True,
        **overrides,
    )
    translated(session, note, "fr", **FRENCH)
    translated(session, note, "ar", **ARABIC)
    translated(session, note, "de", publish=False, title="Trichter", body_md="Überall.")
    services.publish(session, note, by=None, now=utcnow())
    session.commit()
    return note


# One note ---------------------------------------------------------------------------


def test_each_subscriber_reads_the_note_in_the_best_language_of_their_chain(
    session: Session, lumen: Product, smtp_server: SmtpServer
) -> None:
    for email, locale in [
        ("fr@example.com", "fr"),
        ("ca@example.com", "fr-CA"),
        ("de@example.com", "de"),
        ("ja@example.com", "ja"),
        ("ar@example.com", "ar"),
        ("none@example.com", None),
    ]:
        reader(session, lumen, email, locale)
    note = published_note(session, lumen)
    assert send_all(smtp_server).sent == 6

    for email in ("fr@example.com", "ca@example.com"):  # fr-CA → fr
        [mail] = smtp_server.recorder.to(email)
        assert mail["Subject"] == subject("fr", "Entonnoirs")
        assert "Des entonnoirs **partout**." in text_of(mail)
        html = html_of(mail)
        assert "Des entonnoirs <strong>partout</strong>." in html
        assert '<html lang="fr" dir="ltr">' in html
        assert '<table role="presentation" lang="fr" dir="ltr"' in html  # the note's own
        assert "Funnels" not in html  # never title in one language, body in another
        assert format_date(note.published_at, "long", locale="fr") in html  # Babel's date

    # German has only a draft: the default text, never the draft; the wording is German.
    [german] = smtp_server.recorder.to("de@example.com")
    assert german["Subject"] == subject("de", "Funnels")
    assert "Trichter" not in html_of(german) and "Überall" not in text_of(german)
    assert '<html lang="de" dir="ltr">' in html_of(german)
    assert '<table role="presentation" lang="en" dir="ltr"' in html_of(german)

    # Japanese is no language of Lumen's: the default text, Japanese wording.
    [japanese] = smtp_server.recorder.to("ja@example.com")
    assert japanese["Subject"] == subject("ja", "Funnels")
    assert "Funnels <strong>everywhere</strong>." in html_of(japanese)
    assert '<html lang="ja" dir="ltr">' in html_of(japanese)

    [plain] = smtp_server.recorder.to("none@example.com")
    assert plain["Subject"] == "Lumen 1.0.0: Funnels"
    assert '<html lang="en" dir="ltr">' in html_of(plain)
    assert "Read on the web" in html_of(plain)


def test_the_mails_links_open_the_page_in_the_subscribers_language(
    session: Session, lumen: Product, smtp_server: SmtpServer, client: FlaskClient
) -> None:
    """The links "Read on the web" and "All releases" open the public page in the mail's
    language; the default language's page needs no ``?locale=``."""
    reader(session, lumen, "fr@example.com", "fr")
    reader(session, lumen, "ca@example.com", "fr-CA")
    reader(session, lumen, "en@example.com", "en")
    reader(session, lumen, "none@example.com", None)
    note = published_note(session, lumen)
    send_all(smtp_server)
    permalink = "/changelog/lumen/1.0.0"
    for email, query in [
        ("fr@example.com", "?locale=fr"),
        ("ca@example.com", "?locale=fr-CA"),  # the page falls back as the mail did
        ("en@example.com", ""),
        ("none@example.com", ""),
    ]:
        [mail] = smtp_server.recorder.to(email)
        response = client.get(link(mail, "read"))
        assert response.status_code == 302
        assert response.headers["Location"] == f"{permalink}{query}#note-{note.id}"
        assert f'href="{BASE}/changelog/lumen{query}"' in html_of(mail)
        assert f"{BASE}/changelog/lumen{query}" in text_of(mail).split()
    page = client.get(f"{permalink}?locale=fr-CA").get_data(as_text=True)
    assert "Entonnoirs" in page


def test_arabic_mail_reads_right_to_left(
    session: Session, lumen: Product, smtp_server: SmtpServer
) -> None:
    reader(session, lumen, "ar@example.com", "ar")
    published_note(session, lumen)
    send_all(smtp_server)
    [mail] = smtp_server.recorder.to("ar@example.com")
    assert mail["Subject"] == subject("ar", "القمع")
    html = html_of(mail)
    assert '<html lang="ar" dir="rtl">' in html
    assert '<body dir="rtl"' in html
    assert '<table role="presentation" lang="ar" dir="rtl"' in html
    # Mail clients drop style sheets: the alignment is in the inline styles.
    assert 'class="card" align="right"' in html and "text-align:right;" in html
    assert "text-align:left;" not in html
    assert "قمع في كل مكان." in html


def test_an_english_note_in_an_arabic_mail_keeps_its_own_direction(
    session: Session, lumen: Product, smtp_server: SmtpServer
) -> None:
    reader(session, lumen, "ar@example.com", "ar")
    make_note(session, lumen, title="Untranslated", is_important=True)
    send_all(smtp_server)
    html = html_of(smtp_server.recorder.to("ar@example.com")[0])
    assert '<html lang="ar" dir="rtl">' in html
    assert '<table role="presentation" lang="en" dir="ltr"' in html
    assert 'align="left" style="font-family:Arial,Helvetica,sans-serif;font-size:22px' in html


@needs_catalogue("fr", "Read on the web")
def test_the_french_mail_is_worded_in_french(
    session: Session, lumen: Product, smtp_server: SmtpServer
) -> None:
    reader(session, lumen, "fr@example.com", "fr")
    published_note(session, lumen)
    send_all(smtp_server)
    [mail] = smtp_server.recorder.to("fr@example.com")
    html, text = html_of(mail), text_of(mail)
    assert said("fr", "Read on the web") in html
    assert said("fr", "Unsubscribe") in html
    assert said("fr", "Important") in html
    assert "Read on the web" not in html and "Unsubscribe" not in text


@needs_catalogue("ar", "Read on the web")
def test_the_arabic_mail_is_worded_in_arabic(
    session: Session, lumen: Product, smtp_server: SmtpServer
) -> None:
    reader(session, lumen, "ar@example.com", "ar")
    published_note(session, lumen)
    send_all(smtp_server)
    html = html_of(smtp_server.recorder.to("ar@example.com")[0])
    assert said("ar", "Read on the web") in html and "Read on the web" not in html


# Digests ----------------------------------------------------------------------------


def test_a_digest_lists_each_note_in_the_subscribers_language(
    session: Session, lumen: Product, smtp_server: SmtpServer
) -> None:
    monday_nine = datetime(2026, 11, 2, 9, tzinfo=UTC)
    weekly = reader(session, lumen, "weekly@example.com", "fr", frequency=Frequency.DIGEST)
    weekly.last_digest_at = monday_nine - timedelta(days=7)
    session.commit()
    week = monday_nine - timedelta(days=3)
    first = make_note(session, lumen, version="2.0.0", title="Funnels", now=week)
    translated(session, first, "fr", **FRENCH)
    make_note(session, lumen, version="2.1.0", title="Cohorts", now=week + timedelta(hours=1))
    assert mailing.queue_digests(session, now=monday_nine) == 1
    send_all(smtp_server)
    [mail] = smtp_server.recorder.to("weekly@example.com")
    assert mail["Subject"] == digest_subject("fr", "Lumen", "2.0.0", "2.1.0", 2)
    text, html = text_of(mail), html_of(mail)
    assert "== Entonnoirs (2.0.0," in text and "== Cohorts (2.1.0," in text
    assert "Funnels" not in text
    assert '<html lang="fr" dir="ltr">' in html
    # Each note says its own language: the French one, then the English one.
    assert html.index('lang="fr" dir="ltr" width="100%"') < html.index(
        'lang="en" dir="ltr" width="100%"'
    )


def digest_subject(locale: str, product: str, first: str, last: str, count: int) -> str:
    span = said(locale, "%(first)s to %(last)s", first=first, last=last)
    return said_plural(
        locale,
        "%(product)s %(span)s: %(num)d update this week",
        "%(product)s %(span)s: %(num)d updates this week",
        count,
        product=product,
        span=span,
    )


@needs_catalogue("fr", "%(product)s %(span)s: %(num)d update this week")
def test_a_french_digests_subject_is_french() -> None:
    assert digest_subject("fr", "Lumen", "2.0.0", "2.1.0", 2) != digest_subject(
        "en", "Lumen", "2.0.0", "2.1.0", 2
    )


# Choosing the language --------------------------------------------------------------


def test_the_subscribe_form_offers_the_products_languages_in_their_own_names(
    client: FlaskClient, lumen: Product
) -> None:
    page = client.get("/changelog/lumen").get_data(as_text=True)
    assert '<option value="en" lang="en" selected>English</option>' in page
    assert '<option value="fr" lang="fr">Français</option>' in page
    assert '<option value="ar" lang="ar">العربية</option>' in page
    assert 'value="ja"' not in page
    # It starts on the language the page shows the notes in.
    french = client.get("/changelog/lumen?locale=fr").get_data(as_text=True)
    assert '<option value="fr" lang="fr" selected>Français</option>' in french
    arabic = client.get("/changelog/lumen", headers={"Accept-Language": "ar"})
    assert '<option value="ar" lang="ar" selected>' in arabic.get_data(as_text=True)


def test_the_language_chosen_at_sign_up_is_the_mails(
    client: FlaskClient, session: Session, lumen: Product, smtp_server: SmtpServer
) -> None:
    answer = subscribe(client, lumen, "anne@example.com", locale="FR")
    assert answer.status_code == 202
    anne = subscriber_of(session, "anne@example.com")
    assert anne.locale == "fr"  # normalised
    send_all(smtp_server)
    [confirmation] = smtp_server.recorder.to("anne@example.com")
    assert '<html lang="fr" dir="ltr">' in html_of(confirmation)
    assert client.get(link(confirmation, "confirm")).status_code == 200
    session.refresh(anne)
    assert (anne.status, anne.locale) == (SubscriberStatus.CONFIRMED, "fr")
    published_note(session, lumen)
    send_all(smtp_server)
    assert smtp_server.recorder.to("anne@example.com")[-1]["Subject"] == subject("fr", "Entonnoirs")


@pytest.mark.parametrize("locale", ["ja", "fr-CA", "not a tag", "x" * 40])
def test_a_language_the_product_lacks_is_a_form_error(
    client: FlaskClient, session: Session, lumen: Product, locale: str
) -> None:
    answer = subscribe(client, lumen, "anne@example.com", locale=locale)
    assert answer.status_code == 422
    page = answer.get_data(as_text=True)
    assert 'role="alert">' in page
    assert "Choose one of the languages in the list." in page or "language tag" in page
    assert '<select id="subscribe-locale" name="locale" aria-invalid="true">' in page
    assert session.scalar(select(Subscriber)) is None
    assert outbox(session) == []


@needs_catalogue("fr", "Confirm your subscription to %(product)s release notes")
def test_the_confirmation_is_worded_in_the_chosen_language(
    client: FlaskClient, session: Session, lumen: Product, smtp_server: SmtpServer
) -> None:
    subscribe(client, lumen, "anne@example.com", locale="fr")
    send_all(smtp_server)
    [mail] = smtp_server.recorder.to("anne@example.com")
    wanted = said("fr", "Confirm your subscription to %(product)s release notes", product="Lumen")
    assert mail["Subject"] == wanted
    page = client.get(link(mail, "confirm")).get_data(as_text=True)
    assert said("fr", "You are subscribed") in page


def test_the_preferences_link_changes_the_language(
    client: FlaskClient, session: Session, lumen: Product, smtp_server: SmtpServer
) -> None:
    reader(session, lumen, "anne@example.com", "fr")
    published_note(session, lumen)
    send_all(smtp_server)
    [mail] = smtp_server.recorder.to("anne@example.com")
    page_url = link(mail, "unsubscribe")
    page = client.get(page_url)
    assert page.status_code == 200
    shown = page.get_data(as_text=True)
    assert '<html lang="fr" dir="ltr">' in shown  # the page speaks the subscriber's language
    assert '<option value="fr" lang="fr" selected>Français</option>' in shown

    token = page_url.rsplit("/", 1)[1]
    bad = client.post(f"/subscriptions/preferences/{token}", data={"locale": "ja"})
    assert bad.status_code == 422
    assert subscriber_of(session, "anne@example.com").locale == "fr"

    saved = client.post(
        f"/subscriptions/preferences/{token}", data={"frequency": "every", "locale": "ar"}
    )
    assert saved.status_code == 200
    assert '<html lang="ar" dir="rtl">' in saved.get_data(as_text=True)
    anne = subscriber_of(session, "anne@example.com")
    session.refresh(anne)
    assert anne.locale == "ar"
    make_note(session, lumen, version="1.1.0", title="Later", is_important=True)
    send_all(smtp_server)
    assert '<html lang="ar" dir="rtl">' in html_of(smtp_server.recorder.to("anne@example.com")[-1])


def test_saving_preferences_keeps_a_language_the_product_lacks(
    client: FlaskClient, session: Session, lumen: Product
) -> None:
    """A widget user's own language (Japanese here) stays theirs when they save other
    preferences: the form offers it beside the product's."""
    anne = reader(session, lumen, "anne@example.com", "ja")
    token = link_token(anne)
    page = client.get(f"/subscriptions/unsubscribe/{token}").get_data(as_text=True)
    assert '<option value="ja" lang="ja" selected>日本語</option>' in page
    client.post(
        f"/subscriptions/preferences/{token}", data={"frequency": "important", "locale": "ja"}
    )
    session.refresh(anne)
    assert (anne.frequency, anne.locale) == (Frequency.IMPORTANT, "ja")


def link_token(subscriber: Subscriber) -> str:
    return tokens.for_subscriber(tokens.Purpose.UNSUBSCRIBE, subscriber)


def test_the_widget_subscription_keeps_the_users_language(
    client: FlaskClient, session: Session, lumen: Product
) -> None:
    widget = Widget(client, lumen)
    assert widget.notes(locale="fr-ca").status_code == 200
    assert widget.subscribe("ann@example.com", signed=True).status_code == 200
    assert subscriber_of(session, "ann@example.com").locale == "fr-CA"


# Announcing a translation published later -------------------------------------------


def test_announcing_a_translation_mails_its_readers_who_have_not_read_the_note_once(
    session: Session, lumen: Product, smtp_server: SmtpServer
) -> None:
    emails = {
        "fr": reader(session, lumen, "fr@example.com", "fr"),
        "ca": reader(session, lumen, "ca@example.com", "fr-CA"),
        "en": reader(session, lumen, "en@example.com", "en"),
        "ar": reader(session, lumen, "ar@example.com", "ar"),
        "weekly": reader(session, lumen, "weekly@example.com", "fr", frequency=Frequency.DIGEST),
        "fixes": reader(
            session, lumen, "fixes@example.com", "fr", categories=(subscriptions.Category.FIXED,)
        ),
    }
    linked_read = make_end_user(session, lumen, "read-it")
    linked_unread = make_end_user(session, lumen, "not-yet")
    for name, user in (("read", linked_read), ("unread", linked_unread)):
        emails[name] = subscriptions.subscribe_end_user(
            session, lumen, user.id, f"{name}@example.com", Preferences(locale="fr"), now=utcnow()
        )
    note = make_note(session, lumen, title="Funnels", is_important=True)
    # In English, to all but the digest's reader and the one who wants only fixes.
    assert send_all(smtp_server).sent == 6
    session.add(ReadReceipt(end_user_id=linked_read.id, note_id=note.id, channel="widget"))
    session.commit()

    french = translations.save(
        session, note, "fr", **FRENCH, publish=True, announce=True, by=None, now=utcnow()
    )
    session.commit()
    queued = outbox(session, kind=OutboxKind.TRANSLATION)
    assert {row.subscriber_id for row in queued} == {
        emails["fr"].id,
        emails["ca"].id,
        emails["unread"].id,
    }
    assert {row.payload["locale"] for row in queued} == {"fr"}
    # A second announce, in this language or another, tells nobody twice.
    assert translation_mail.announce(session, french, now=utcnow()) == 0
    translated(session, note, "ar", **ARABIC)
    assert translation_mail.announce(session, translations.find(note, "ar"), now=utcnow()) == 1
    session.commit()

    send_all(smtp_server)
    for email in ("fr@example.com", "ca@example.com", "unread@example.com"):
        english, again = smtp_server.recorder.to(email)
        # The first mail: the English text, in French wording; the second: French.
        assert english["Subject"] == subject("fr", "Funnels")
        assert again["Subject"] == subject("fr", "Entonnoirs")
    assert smtp_server.recorder.to("ar@example.com")[-1]["Subject"] == subject("ar", "القمع")
    for email in ("en@example.com", "read@example.com"):
        assert len(smtp_server.recorder.to(email)) == 1
    assert smtp_server.recorder.to("weekly@example.com") == []
    assert smtp_server.recorder.to("fixes@example.com") == []


def test_a_translation_is_not_announced_to_who_gets_or_got_the_note_in_it(
    session: Session, lumen: Product
) -> None:
    """A mail of the note still to go will carry the translation; one that went after the
    translation was published carried it."""
    note = make_note(session, lumen, status="draft", title="Funnels", is_important=True)
    reader(session, lumen, "waiting@example.com", "fr")
    french = translated(session, note, "fr", **FRENCH)
    services.publish(session, note, by=None, now=utcnow())
    session.commit()
    [waiting] = outbox(session, kind=OutboxKind.NOTE)
    assert translation_mail.announce(session, french, now=utcnow()) == 0
    waiting.status, waiting.sent_at = OutboxStatus.SENT, utcnow()
    session.commit()
    assert translation_mail.announce(session, french, now=utcnow()) == 0
    # One who subscribed after the note went out has had nothing: they are told.
    late = reader(session, lumen, "late@example.com", "fr")
    assert translation_mail.announce(session, french, now=utcnow()) == 1
    assert outbox(session, kind=OutboxKind.TRANSLATION)[0].subscriber_id == late.id


def test_nothing_is_announced_for_a_draft_or_a_note_not_out(
    session: Session, lumen: Product
) -> None:
    reader(session, lumen, "fr@example.com", "fr")
    draft_note = make_note(session, lumen, status="draft")
    assert (
        translation_mail.announce(
            session, translated(session, draft_note, "fr", **FRENCH), now=utcnow()
        )
        == 0
    )
    out = make_note(session, lumen, version="1.1.0")
    draft = translated(session, out, "fr", publish=False, **FRENCH)
    assert translation_mail.announce(session, draft, now=utcnow()) == 0
    assert outbox(session, kind=OutboxKind.TRANSLATION) == []


def test_an_announcement_withdrawn_before_it_goes_is_skipped(
    session: Session, lumen: Product, smtp_server: SmtpServer
) -> None:
    reader(session, lumen, "fr@example.com", "fr")
    note = make_note(session, lumen, title="Funnels", is_important=True)
    send_all(smtp_server)
    translations.save(
        session, note, "fr", **FRENCH, publish=True, announce=True, by=None, now=utcnow()
    )
    session.commit()
    translations.save(session, note, "fr", **FRENCH, publish=False, by=None, now=utcnow())
    session.commit()
    report = send_all(smtp_server)
    assert (report.sent, report.skipped) == (0, 1)
    [row] = outbox(session, kind=OutboxKind.TRANSLATION)
    assert row.last_error == "the translation is no longer the subscriber's language"


# Account mail -----------------------------------------------------------------------


def test_account_mail_speaks_the_members_console_language(
    app,
    smtp_server: SmtpServer,  # type: ignore[no-untyped-def]
) -> None:
    app.config["SMTP_URL"] = smtp_server.url
    account_mail.send(
        "member@example.com",
        "Choose a new Tidings password",
        "password_reset",
        locale="fr",
        email="member@example.com",
        action_url=f"{BASE}/reset",
    )
    [mail] = smtp_server.recorder.to("member@example.com")
    assert '<html lang="fr" dir="ltr">' in html_of(mail)
