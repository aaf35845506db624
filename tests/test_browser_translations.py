"""Translating a note in headless Chromium: the editor's language tabs, a translation saved
and published, what changed in an outdated one, a product's languages in Settings, and
the console in French once its member chooses it.

Screenshots of the editor and Settings, at desktop and phone widths, are left in
/tmp/shots-17/ to look at after a run.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from announcements import rendering, translations
from announcements.models import Note, TeamMember, TranslationStatus, utcnow
from app.extensions import db
from tests.browser import DESKTOP, PHONE, assert_fits, assert_fits_inside
from tests.conftest import PASSWORD
from tests.factories import make_note, make_product
from tests.i18n_helpers import needs_catalogue, said

pytestmark = pytest.mark.browser

SHOTS = Path("/tmp/shots-17")  # noqa: S108 - where the brief asks for them
BODY = (
    "Reports now export to **PDF** as well as CSV.\n\n"
    "- Pick *Export → PDF* on any report\n- Charts keep their colours\n\n"
    "Large reports are e-mailed to you when they are ready."
)


@pytest.fixture(scope="module")
def globex(live_app) -> dict[str, int]:
    """Globex, in English, French and Arabic, run by pm@example.com: a note translated into
    French then changed (outdated), and one not translated yet."""
    with live_app.app_context():
        session = db.session
        pm = session.scalar(select(TeamMember).where(TeamMember.email == "pm@example.com"))
        product = make_product(session, owner=pm, slug="globex", name="Globex")
        translations.set_languages(session, product, "en", ["fr", "ar"], by=pm, now=utcnow())
        exports = make_note(session, product, version="3.2.0", title="PDF export", body_md=BODY)
        translations.save(
            session,
            exports,
            "fr",
            title="Export en PDF",
            body_md="Les rapports s'exportent maintenant en **PDF** comme en CSV.",
            publish=True,
            by=pm,
            now=utcnow(),
        )
        exports.body_md = BODY.replace("CSV.", "CSV or Excel.")
        exports.body_html = rendering.render(exports.body_md)
        exports.title = "PDF and Excel export"
        fresh = make_note(
            session,
            product,
            version="3.3.0",
            title="Faster search",
            body_md="Search answers in half the time.",
        )
        session.commit()
        return {"exports": exports.id, "fresh": fresh.id}


def log_in(page, live_server: str) -> None:
    page.goto(f"{live_server}/console/login")
    page.fill("input[name=email]", "pm@example.com")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server}/console/")


def note_url(live_server: str, note_id: int) -> str:
    return f"{live_server}/console/p/globex/notes/{note_id}"


def test_the_tabs_switch_languages_and_a_translation_is_saved_then_published(
    page, live_app, live_server, globex
) -> None:
    log_in(page, live_server)
    page.goto(note_url(live_server, globex["fresh"]))
    english, french = page.locator("#panel-en"), page.locator("#panel-fr")
    expect(english).to_be_visible()
    expect(french).to_be_hidden()
    tab = page.get_by_role("tab", name="Français")
    expect(tab.locator(".badge")).to_have_text("Missing")

    tab.click()
    expect(french).to_be_visible()
    expect(english).to_be_hidden()
    assert page.url.endswith("?language=fr")  # a reload comes back to this tab
    expect(tab).to_have_attribute("aria-selected", "true")
    # The arrow keys move between tabs, as in any tab list.
    tab.press("ArrowRight")
    expect(page.locator("#panel-ar")).to_be_visible()
    arabic_body = page.locator("#ar-body_md")
    assert arabic_body.evaluate("e => getComputedStyle(e).direction") == "rtl"
    page.get_by_role("tab", name="العربية").press("ArrowLeft")
    expect(french).to_be_visible()

    french.locator("#fr-title").fill("Recherche plus rapide")
    french.locator("#fr-body_md").fill("La recherche répond **deux fois** plus vite.")
    preview = french.locator("[data-preview]")
    expect(preview.locator("strong")).to_have_text("deux fois")
    expect(french.locator("[data-preview-title]")).to_have_text("Recherche plus rapide")

    french.get_by_role("button", name="Save draft").click()
    page.get_by_text("saved as a draft").wait_for()
    expect(page.locator("#panel-fr")).to_be_visible()  # back on the tab it was saved from
    expect(page.get_by_role("tab", name="Français").locator(".badge")).to_have_text("Draft")

    page.locator("#panel-fr").get_by_role("button", name="Publish translation").click()
    page.get_by_text("nobody was told").wait_for()
    expect(page.get_by_role("tab", name="Français").locator(".badge")).to_have_text("Published")
    with live_app.app_context():
        row = translations.find(db.session.get(Note, globex["fresh"]), "fr")
        assert (row.status, row.title) == (TranslationStatus.PUBLISHED, "Recherche plus rapide")


def test_a_bad_translation_is_shown_in_its_own_tab(page, live_server, globex) -> None:
    log_in(page, live_server)
    page.goto(note_url(live_server, globex["fresh"]) + "?language=ar")
    panel = page.locator("#panel-ar")
    panel.locator("#ar-body_md").fill("نص بلا عنوان")
    panel.get_by_role("button", name="Save draft").click()
    expect(page.locator("#panel-ar")).to_be_visible()
    expect(page.locator("#ar-title-error")).to_be_visible()
    expect(page.locator("#ar-body_md")).to_have_value("نص بلا عنوان")  # nothing typed is lost
    expect(page.locator("#ar-title")).to_have_attribute("aria-invalid", "true")


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_an_outdated_translation_shows_what_changed(page, live_server, globex, viewport) -> None:
    label = "phone" if viewport is PHONE else "desktop"
    SHOTS.mkdir(parents=True, exist_ok=True)
    log_in(page, live_server)
    page.goto(note_url(live_server, globex["exports"]))
    page.screenshot(path=SHOTS / f"editor-default-{label}.png", full_page=True)
    page.get_by_role("tab", name="Français").click()
    changes = page.locator("#panel-fr .changes")
    expect(changes).to_be_visible()
    expect(changes.locator(".title-diff del")).to_have_text("PDF export")
    expect(changes.locator(".title-diff ins")).to_have_text("PDF and Excel export")
    expect(changes.locator("del.diff-line")).to_have_count(1)
    expect(changes.locator("ins.diff-line")).to_contain_text(["CSV or Excel."])
    expect(page.locator("#panel-fr .translation-status")).to_contain_text("Outdated")
    expect(page.locator("#fr-title")).to_have_value("Export en PDF")  # the text readers see
    assert_fits(page, f"the outdated translation ({label})")
    page.screenshot(path=SHOTS / f"editor-outdated-{label}.png", full_page=True)
    page.get_by_role("tab", name="العربية").click()
    assert_fits(page, f"the Arabic tab ({label})")
    page.screenshot(path=SHOTS / f"editor-arabic-{label}.png", full_page=True)


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_settings_list_the_languages_and_refuse_a_bad_tag(
    page, live_server, globex, viewport
) -> None:
    label = "phone" if viewport is PHONE else "desktop"
    log_in(page, live_server)
    page.goto(f"{live_server}/console/p/globex/settings")
    rows = page.locator("#product-languages tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.nth(2).locator(".chain")).to_have_text("ar → en")
    assert_fits(page, f"Settings ({label})", boxes=False)  # the install snippet scrolls
    assert_fits_inside(page, "#product-languages")
    page.screenshot(path=SHOTS / f"settings-{label}.png", full_page=True)
    page.locator("#product-languages").screenshot(path=SHOTS / f"settings-languages-{label}.png")

    page.fill("#product-languages input[name=languages]", "klingon")
    page.get_by_role("button", name="Add language").click()
    expect(page.locator("#languages-error")).to_contain_text("is not a language tag")
    expect(page.locator("#product-languages tbody tr")).to_have_count(3)
    assert_fits(page, f"Settings with an error ({label})", boxes=False)
    assert_fits_inside(page, "#product-languages")
    page.locator("#product-languages").screenshot(
        path=SHOTS / f"settings-languages-error-{label}.png"
    )


def test_a_language_is_added_and_removed_in_settings(page, live_server, globex) -> None:
    log_in(page, live_server)
    page.goto(f"{live_server}/console/p/globex/settings")
    page.fill("#product-languages input[name=languages]", "fr_CA")
    page.get_by_role("button", name="Add language").click()
    page.get_by_text("Added French (Canada)").wait_for()
    row = page.locator('#product-languages tr[data-language="fr-CA"]')
    expect(row.locator(".chain")).to_have_text("fr-CA → fr → en")
    page.on("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Remove").click()
    page.get_by_text("Removed French (Canada)").wait_for()
    expect(page.locator('#product-languages tr[data-language="fr-CA"]')).to_have_count(0)


def test_the_console_speaks_french_once_chosen_on_the_account_page(
    page, live_server, globex
) -> None:
    log_in(page, live_server)
    page.goto(f"{live_server}/console/account")
    assert page.locator("html").get_attribute("lang") == "en"
    page.screenshot(path=SHOTS / "account-desktop.png", full_page=True)
    page.select_option("select[name=locale]", "fr")
    page.locator("#language button[type=submit]").click()
    page.wait_for_url(f"{live_server}/console/account")
    try:
        assert page.locator("html").get_attribute("lang") == "fr"
        expect(page.locator("select[name=locale]")).to_have_value("fr")
        page.goto(note_url(live_server, globex["exports"]) + "?language=fr")
        assert page.locator("html").get_attribute("lang") == "fr"
        page.screenshot(path=SHOTS / "editor-outdated-console-fr-desktop.png", full_page=True)
    finally:  # the other tests of this module read the console in English
        page.goto(f"{live_server}/console/account")
        page.select_option("select[name=locale]", "")
        page.locator("#language button[type=submit]").click()
        page.wait_for_url(f"{live_server}/console/account")
    assert page.locator("html").get_attribute("lang") == "en"


@needs_catalogue("fr", "Outdated")
@needs_catalogue("fr", "Languages")
def test_the_french_console_says_its_words_in_french(page, live_app, live_server, globex) -> None:
    with live_app.app_context():
        pm = db.session.scalar(select(TeamMember).where(TeamMember.email == "pm@example.com"))
        pm.locale = "fr"
        db.session.commit()
    try:
        log_in(page, live_server)
        page.goto(note_url(live_server, globex["exports"]))
        badge = page.get_by_role("tab", name="Français").locator(".badge")
        expect(badge).to_have_text(said("fr", "Outdated"))
        page.goto(f"{live_server}/console/p/globex/settings")
        expect(page.locator("#languages-title")).to_have_text(said("fr", "Languages"))
    finally:
        with live_app.app_context():
            pm = db.session.scalar(select(TeamMember).where(TeamMember.email == "pm@example.com"))
            pm.locale = None
            db.session.commit()
