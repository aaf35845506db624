"""The console's Support, Status, Team, Webhooks, Notes and Subscribers pages and the agent
sidebar in the member's language: every page draws in French as in English; times and
figures are written by Babel, the same as before in English and French in French; and,
once the French catalogue has them, the pages' words are French."""

from __future__ import annotations

from datetime import UTC, datetime

import lxml.html
import pytest
from flask import Flask
from flask.testing import FlaskClient

from announcements import sidebar_links
from announcements.models import Role, utcnow
from app.console import timezones
from tests import test_support_console
from tests.conftest import AuthActions, csrf_token
from tests.factories import make_end_user
from tests.i18n_helpers import needs_catalogue, said

# Acme with a member of each role and its Support impact figures.
world = test_support_console.world
FRENCH = {"Accept-Language": "fr"}
# The formats the console's pages write times in (strftime's fields, as they always were).
FORMATS = (
    "%d %b %Y, %H:%M",
    "%d %b %Y",
    "%d %b, %H:%M",
    "%d %b",
    "%H:%M",
    "%H:%M:%S",
    "%Y-%m-%d",
)


@pytest.mark.parametrize("month", range(1, 13))
def test_times_in_english_read_as_strftime_wrote_them(app: Flask, month: int) -> None:
    moment = datetime(2026, month, 9, 22, 7, 5, tzinfo=UTC)
    headers = {"Accept-Language": "en", "Cookie": "tz=Asia/Tokyo"}
    with app.test_request_context(headers=headers):
        local = moment.astimezone(timezones.member_zone())
        assert [timezones.local(moment, f) for f in FORMATS] == [local.strftime(f) for f in FORMATS]


def test_times_in_french_name_the_month_in_french(app: Flask) -> None:
    moment = datetime(2026, 2, 9, 22, 7, tzinfo=UTC)
    with app.test_request_context(headers={**FRENCH, "Cookie": "tz=Europe/Paris"}):
        assert timezones.local(moment) == "09 févr. 2026, 23:07"
        assert timezones.local(moment, "%d %b") == "09 févr."
        # 23:30 UTC is already the 10th in Paris.
        assert not timezones.same_day(moment, datetime(2026, 2, 9, 23, 30, tzinfo=UTC))


def test_a_format_with_a_field_babel_has_no_name_for_is_refused(app: Flask) -> None:
    with app.test_request_context(), pytest.raises(ValueError, match="%j"):
        timezones.local(utcnow(), "%j")


PAGES = (
    "/console/",
    "/console/products/new",
    "/console/p/acme/notes",
    "/console/p/acme/status",
    "/console/p/acme/subscribers",
    "/console/p/acme/team",
    "/console/p/acme/webhooks",
    "/console/p/acme/support/impact",
    "/console/p/acme/support/impact/notes/{export}",
    "/console/p/acme/support/connections",
    "/console/p/acme/support/import",
    "/console/p/acme/support/lookup",
    "/console/p/acme/support/lookup?q=nobody-at-all",
    "/console/p/acme/support/users/{user}",
    "/console/p/acme/support/sidebar?user=kim-42",
)


@pytest.mark.parametrize("path", PAGES)
def test_every_page_draws_in_french(
    client: FlaskClient,
    auth: AuthActions,
    session,
    world,
    path: str,
) -> None:
    product, notes, people = world
    user = make_end_user(session, product, "kim-42", app_version="2.4.0")
    auth.login(people[Role.OWNER].email)
    url = path.format(export=notes["export"].id, user=user.id)
    english = client.get(url)
    answer = client.get(url, headers=FRENCH)
    assert answer.status_code == english.status_code == 200, answer.get_data(as_text=True)


def test_the_impact_page_writes_dates_and_figures_in_french(
    client: FlaskClient,
    auth: AuthActions,
    world,
) -> None:
    _, _notes, people = world
    auth.login(people[Role.VIEWER].email)
    english = client.get("/console/p/acme/support/impact").get_data(as_text=True)
    page = client.get("/console/p/acme/support/impact", headers=FRENCH).get_data(as_text=True)
    # Published 1 October 2026, 6,000 exposed, 14.54 tickets per 1,000: in each's way.
    assert "01 Oct 2026" in english and "6,000" in english and "14.54" in english
    assert "01 oct. 2026" in page and "6\u202f000" in page and "14,54" in page


def test_the_sidebar_speaks_french_to_a_french_agent(client: FlaskClient, session, world) -> None:
    product, _notes, _people = world
    make_end_user(session, product, "kim-42", app_version="2.4.0")
    link = sidebar_links.sign(product, "kim-42", agent="Ann", now=utcnow())
    page = client.get("/support/sidebar", query_string=link, headers=FRENCH)
    assert page.status_code == 200
    assert lxml.html.fromstring(page.get_data(as_text=True)).get("lang") == "fr"


def test_the_sidebar_speaks_english_where_the_console_has_no_catalogue(
    client: FlaskClient,
    session,
    world,
) -> None:
    """German has the widget's words but not the agent's: a German agent reads English,
    not a page of English sentences around German dates."""
    product, _notes, _people = world
    make_end_user(session, product, "kim-42", app_version="2.4.0")
    link = sidebar_links.sign(product, "kim-42", now=utcnow())
    page = client.get("/support/sidebar", query_string=link, headers={"Accept-Language": "de"})
    assert lxml.html.fromstring(page.get_data(as_text=True)).get("lang") == "en"


@needs_catalogue("fr", "Support impact")
@needs_catalogue("fr", "Tickets per 1,000 readers")
def test_the_impact_page_says_its_words_in_french(
    client: FlaskClient,
    auth: AuthActions,
    world,
) -> None:
    _, _notes, people = world
    auth.login(people[Role.VIEWER].email)
    page = client.get("/console/p/acme/support/impact", headers=FRENCH).get_data(as_text=True)
    assert said("fr", "Support impact") in page and said("fr", "Tickets per 1,000 readers") in page
    assert "Tickets per 1,000 readers" not in page


@needs_catalogue("fr", "Choose a role from the list.")
def test_a_refusal_is_flashed_in_french(
    client: FlaskClient,
    auth: AuthActions,
    world,
) -> None:
    _, _notes, people = world
    auth.login(people[Role.OWNER].email)
    member = people[Role.EDITOR]
    answer = client.post(
        f"/console/p/acme/team/{member.id}/role",
        data={"csrf_token": csrf_token(client), "role": "emperor"},
        headers=FRENCH,
        follow_redirects=True,
    )
    assert said("fr", "Choose a role from the list.") in answer.get_data(as_text=True)


@needs_catalogue("fr", "Notes for their version")
def test_the_sidebar_says_its_words_in_french(client: FlaskClient, session, world) -> None:
    product, _notes, _people = world
    make_end_user(session, product, "kim-42", app_version="2.4.0")
    link = sidebar_links.sign(product, "kim-42", now=utcnow())
    page = client.get("/support/sidebar", query_string=link, headers=FRENCH)
    assert said("fr", "Notes for their version") in page.get_data(as_text=True)
