"""Languages a stranger chooses: a browser's Accept-Language of hundreds of tags is read
no further than its best few, on the public page and in the console, and answers as an
ordinary header does; a widget user whose language is no language (``zz``) still
subscribes."""

from __future__ import annotations

import lxml.html
import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from announcements import languages, translations
from announcements.models import Note, Product, Subscriber, utcnow
from app import i18n
from tests.factories import make_note, make_product
from tests.test_widget_api import ORIGIN, Widget

# Tags no product here has and no interface speaks, each a real language.
ELSEWHERE = ["ko", "ru", "pl", "nl", "sv", "fi", "it", "cs", "tr", "hu"]


def made_up(count: int) -> list[str]:
    """``count`` distinct tags, each well-formed and each never seen before."""
    return [f"en-x-{number:08d}" for number in range(count)]


@pytest.fixture
def product(session: Session) -> Product:
    product = make_product(session, slug="acme", name="Acme", allowed_origins=(ORIGIN,))
    translations.set_languages(session, product, "en", ["fr"], by=None, now=utcnow())
    session.commit()
    return product


@pytest.fixture
def note(session: Session, product: Product) -> Note:
    note = make_note(session, product, title="Faster sync")
    translations.save(
        session,
        note,
        "fr",
        title="Synchro plus rapide",
        body_md="",
        publish=True,
        by=None,
        now=utcnow(),
    )
    session.commit()
    return note


@pytest.fixture
def looked_at(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many of the browser's tags each negotiation was given."""
    counts: list[int] = []
    negotiate = languages.negotiate

    def counting(requested, available, default):
        requested = list(requested)
        counts.append(len(requested))
        return negotiate(requested, available, default)

    monkeypatch.setattr(languages, "negotiate", counting)
    return counts


def public_page(client: FlaskClient, accept: str):
    response = client.get("/changelog/acme", headers={"Accept-Language": accept})
    assert response.status_code == 200
    return lxml.html.fromstring(response.data)


def notes_language(document) -> str:
    [current] = document.xpath("//nav[@class='languages wrap']/a[@aria-current]")
    return current.get("hreflang")


def test_hundreds_of_tags_answer_as_the_best_of_them(client, note, looked_at) -> None:
    """French, last in the header but the one the browser prefers, is found; no more than
    the best few tags are looked at, for the notes or the interface."""
    accept = ",".join([*(f"{tag};q=0.5" for tag in made_up(700)), "fr"])
    document = public_page(client, accept)
    assert notes_language(document) == "fr"
    assert document.get("lang") == "fr"
    assert "Synchro plus rapide" in document.text_content()
    assert looked_at and max(looked_at) <= i18n.MAX_BROWSER_LANGUAGES


def test_a_language_past_the_best_eight_is_not_looked_at(client, note) -> None:
    """Eight languages the product lacks, equally preferred, then French: the default."""
    best = ELSEWHERE[: i18n.MAX_BROWSER_LANGUAGES]
    document = public_page(client, ",".join([*best, "fr"]))
    assert notes_language(document) == "en"
    assert document.get("lang") == "en"
    document = public_page(client, ",".join([*best[:-1], "fr"]))  # the eighth: found
    assert notes_language(document) == "fr"


def test_the_console_reads_the_best_eight_too(client, product, looked_at) -> None:
    def login_language(accept: str) -> str:
        response = client.get("/console/login", headers={"Accept-Language": accept})
        assert response.status_code == 200
        return lxml.html.fromstring(response.data).get("lang")

    assert login_language(",".join([*made_up(700), "fr;q=1"])) == "en"
    assert max(looked_at) <= i18n.MAX_BROWSER_LANGUAGES
    assert login_language(",".join([*(f"{t};q=0.9" for t in made_up(700)), "fr"])) == "fr"
    best = ELSEWHERE[: i18n.MAX_BROWSER_LANGUAGES]
    assert login_language(",".join([*best, "fr"])) == "en"


@pytest.mark.parametrize("locale", ["zz", "tlh"])
def test_a_widget_user_of_no_language_subscribes(
    client, session: Session, product: Product, note: Note, locale: str
) -> None:
    """The widget's ``?locale=`` is stored as asked, well-formed or not; the subscription,
    which names no language, is not refused for it, and takes none from it."""
    widget = Widget(client, product)
    assert widget.notes(locale=locale).status_code == 200
    for signed in (False, True):
        response = widget.subscribe(f"ann.{int(signed)}@example.com", signed=signed)
        assert response.status_code in (200, 202), response.get_json()
    session.expire_all()
    assert [row.locale for row in session.scalars(select(Subscriber))] == [None, None]


def test_a_widget_user_of_a_language_subscribes_in_it(
    client, session: Session, product: Product, note: Note
) -> None:
    widget = Widget(client, product)
    assert widget.notes(locale="fr-CA").status_code == 200
    response = widget.subscribe("ann@example.com", signed=True)
    assert response.status_code == 200, response.get_json()
    session.expire_all()
    assert session.scalar(select(Subscriber.locale)) == "fr-CA"
