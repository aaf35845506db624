"""Translation files: a note set exported for one language as XLIFF 2.0 or PO, filled by a
translation tool (translate-toolkit here, as Weblate and Pootle use it) and imported back;
the round trip in both formats; files that cannot be used changing nothing; the report's
added, updated, unchanged and skipped rows with their reasons; and the console page,
for editors and owners only."""

from __future__ import annotations

import io
import re

import pytest
from lxml import etree
from sqlalchemy import func, select
from translate.storage import pypo, xliff2

import app.console.translation_files  # noqa: F401  # the lead adds it to app/console/__init__.py
from announcements import translation_files, translations
from announcements.errors import ValidationFailed
from announcements.models import AuditEvent, NoteTranslation, Role, TranslationStatus, utcnow
from announcements.translation_files import Outcome
from tests.conftest import csrf_token
from tests.factories import add_member, make_member, make_note, make_product

XLIFF = "urn:oasis:names:tc:xliff:document:2.0"
XML_SPACE = "{http://www.w3.org/XML/1998/namespace}space"
FORMATS = ["xliff", "po"]
STORES = {"xliff": xliff2.Xliff2File, "po": pypo.pofile}


@pytest.fixture
def world(session):
    """Lumen in en, fr and ar: three notes of 2.0.0 and one of 2.1.0, one with no body,
    one archived and one internal (neither is exported), and a French translation of
    the first."""
    owner = make_member(session, "owner@example.com")
    product = make_product(session, owner=owner, slug="lumen", name="Lumen")
    translations.set_languages(session, product, "en", ["fr", "ar"], by=owner, now=utcnow())
    notes = [
        make_note(session, product, version="2.0.0", title="Dark mode", body_md="Go **dark**."),
        make_note(
            session,
            product,
            version="2.0.0",
            title="Faster sync",
            body_md="- Syncs in half the time\n- Fewer retries\n\n```\ncode  kept\n```",
            status="draft",
        ),
        make_note(session, product, version="2.1.0", title="Fixed the crash", body_md=""),
    ]
    make_note(session, product, version="2.0.0", title="Gone", status="archived")
    make_note(session, product, version="2.0.0", title="Team only", is_internal=True)
    translations.save(
        session,
        notes[0],
        "fr",
        title="Mode sombre",
        body_md="Passez au **sombre**.",
        publish=True,
        by=owner,
        now=utcnow(),
    )
    session.commit()
    return product, notes, owner


def parse(kind: str, data: bytes):
    return STORES[kind].parsestring(data)


def units(kind: str, data: bytes) -> dict[str, tuple[str, str]]:
    """The file's units by id: (source, target)."""
    found = {}
    for unit in parse(kind, data).units:
        if kind == "po" and unit.isheader():
            continue
        unit_id = unit.getid() if kind == "xliff" else unit.getcontext()
        found[unit_id] = (unit.source, unit.target or "")
    return found


def fill(kind: str, data: bytes, targets: dict[str, str], *, fuzzy: bool = False) -> bytes:
    """The file as a translator's tool saves it with these targets."""
    store = parse(kind, data)
    for unit in store.units:
        unit_id = unit.getid() if kind == "xliff" else unit.getcontext()
        if unit_id in targets:
            unit.target = targets[unit_id]
            if kind == "po":
                unit.markfuzzy(fuzzy)
            else:
                unit.xmlelement.set("state", "initial" if fuzzy else "translated")
    return bytes(store)


def export(product, locale: str, kind: str, **options) -> bytes:
    from app.extensions import db

    return translation_files.export(
        db.session(), product, locale, kind, now=utcnow(), **options
    ).data


def import_(product, data: bytes, *, publish: bool = True, dry_run: bool = False):
    from app.extensions import db

    report = translation_files.import_file(
        db.session(), product, data, publish=publish, dry_run=dry_run, by=None, now=utcnow()
    )
    db.session.commit()
    return report


def stored(session, note, locale: str) -> NoteTranslation | None:
    session.expire_all()
    return session.scalar(
        select(NoteTranslation).where(
            NoteTranslation.note_id == note.id, NoteTranslation.locale == locale
        )
    )


def count_translations(session) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).select_from(NoteTranslation))


# Export ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", FORMATS)
def test_export_holds_a_title_and_a_body_unit_per_note_with_existing_targets(
    app, session, world, kind
) -> None:
    product, notes, _ = world
    found = units(kind, export(product, "fr", kind))
    dark, sync, crash = notes
    assert list(found) == [
        # Newest version first; a note without a body has only its title.
        f"note-{crash.id}-title",
        f"note-{dark.id}-title",
        f"note-{dark.id}-body",
        f"note-{sync.id}-title",
        f"note-{sync.id}-body",
    ]
    assert found[f"note-{dark.id}-title"] == ("Dark mode", "Mode sombre")
    assert found[f"note-{dark.id}-body"] == ("Go **dark**.", "Passez au **sombre**.")
    assert found[f"note-{sync.id}-body"] == (sync.body_md, "")


def test_xliff_export_is_xliff_2_0_as_its_schema_has_it(app, session, world) -> None:
    """Notes on the unit, xml:space on the unit, not on the segment (where translate-toolkit
    puts both and the XLIFF 2.0 schema allows neither); languages and directions said."""
    product, notes, _ = world
    root = etree.fromstring(export(product, "ar", "xliff"))
    assert root.tag == f"{{{XLIFF}}}xliff"
    assert (root.get("version"), root.get("srcLang"), root.get("trgLang")) == ("2.0", "en", "ar")
    file_node = root.find(f"{{{XLIFF}}}file")
    assert file_node.get("trgDir") == "rtl" and file_node.get("srcDir") == "ltr"
    for unit in file_node.iter(f"{{{XLIFF}}}unit"):
        assert [child.tag.split("}")[1] for child in unit] == ["notes", "segment"]
        assert unit.get(XML_SPACE) == "preserve"
        segment = unit.find(f"{{{XLIFF}}}segment")
        assert set(segment.attrib) <= {"id", "canResegment", "state", "subState"}
        assert [child.tag.split("}")[1] for child in segment] in (["source"], ["source", "target"])
        notes_text = [note.text for note in unit.iter(f"{{{XLIFF}}}note")]
        assert notes_text[0].startswith("Version 2.")


def test_export_says_version_category_and_status_to_the_translator(app, session, world) -> None:
    product, notes, _ = world
    dark = notes[0]
    dark.title = "Dark mode, everywhere"  # the French translation is now outdated
    session.commit()
    po = parse("po", export(product, "fr", "po"))
    unit = next(u for u in po.units if u.getcontext() == f"note-{dark.id}-title")
    assert "Version 2.0.0 · New" in unit.getnotes()
    assert "outdated" in unit.getnotes()
    assert unit.isfuzzy()
    xliff = etree.fromstring(export(product, "fr", "xliff"))
    segment = xliff.find(f".//{{{XLIFF}}}unit[@id='note-{dark.id}-title']/{{{XLIFF}}}segment")
    assert segment.get("state") == "initial"


def test_export_of_one_version(app, session, world) -> None:
    product, notes, _ = world
    found = units("po", export(product, "fr", "po", version="2.1.0"))
    assert list(found) == [f"note-{notes[2].id}-title"]
    exported = translation_files.export(
        session, product, "fr", "xliff", version="2.1.0", now=utcnow()
    )
    assert exported.filename == "lumen-2.1.0-fr.xlf"
    assert exported.mimetype == "application/xliff+xml"


@pytest.mark.parametrize(
    ("locale", "kind", "version", "field"),
    [
        ("de", "po", None, "locale"),  # a language Lumen lacks
        ("en", "po", None, "locale"),  # the default: that text is the note's own
        ("fr_xx!", "po", None, "locale"),
        ("fr", "docx", None, "format"),
        ("fr", "po", "not a version!", "version"),
        ("fr", "po", "9.9.9", "version"),  # no notes
    ],
)
def test_export_refuses_what_it_cannot_do(
    app, session, world, locale, kind, version, field
) -> None:
    product, _, _ = world
    with pytest.raises(ValidationFailed) as refused:
        translation_files.export(session, product, locale, kind, version=version, now=utcnow())
    assert field in refused.value.errors


# Round trip -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", FORMATS)
def test_round_trip_gives_back_the_targets(app, session, world, kind) -> None:
    product, notes, _ = world
    dark, sync, crash = notes
    filled = {
        f"note-{sync.id}-title": "Synchronisation plus rapide",
        f"note-{sync.id}-body": "- Deux fois plus vite\n- Moins d'essais\n\n```\ncode  kept\n```",
        f"note-{crash.id}-title": "Plantage corrigé",
    }
    first = export(product, "fr", kind)
    report = import_(product, fill(kind, first, filled))
    assert (report.count(Outcome.ADDED), report.count(Outcome.UNCHANGED)) == (2, 1)
    assert report.count(Outcome.UPDATED) == report.count(Outcome.SKIPPED) == 0
    again = units(kind, export(product, "fr", kind))
    for unit_id, target in filled.items():
        assert again[unit_id][1] == target
    assert again[f"note-{dark.id}-title"][1] == "Mode sombre"
    sync_fr = stored(session, sync, "fr")
    assert sync_fr.status is TranslationStatus.PUBLISHED
    assert "<li>Deux fois plus vite</li>" in sync_fr.body_html  # the note's own renderer
    crash_fr = stored(session, crash, "fr")
    assert (crash_fr.title, crash_fr.body_md) == ("Plantage corrigé", "")
    # The file exported after the import, imported as it is, changes nothing.
    second = import_(product, export(product, "fr", kind))
    assert second.count(Outcome.UNCHANGED) == 3 and not second.changed


@pytest.mark.parametrize("kind", FORMATS)
def test_right_to_left_text_survives_the_round_trip(app, session, world, kind) -> None:
    product, notes, _ = world
    dark = notes[0]
    arabic = {
        f"note-{dark.id}-title": "الوضع الداكن",
        f"note-{dark.id}-body": "انتقل إلى **الداكن**.",
    }
    import_(product, fill(kind, export(product, "ar", kind), arabic))
    again = units(kind, export(product, "ar", kind))
    assert again[f"note-{dark.id}-title"][1] == "الوضع الداكن"
    assert again[f"note-{dark.id}-body"][1] == "انتقل إلى **الداكن**."


def test_import_as_drafts_and_then_published(app, session, world) -> None:
    product, notes, _ = world
    sync = notes[1]
    filled = fill(
        "po",
        export(product, "fr", "po"),
        {f"note-{sync.id}-title": "Plus rapide", f"note-{sync.id}-body": "Vite."},
    )
    drafts = import_(product, filled, publish=False)
    row = next(r for r in drafts.rows if r.note_id == sync.id)
    assert (row.outcome, row.reason) == (Outcome.ADDED, "as a draft")
    assert stored(session, sync, "fr").status is TranslationStatus.DRAFT
    published = import_(product, filled, publish=True)
    row = next(r for r in published.rows if r.note_id == sync.id)
    assert (row.outcome, row.reason) == (Outcome.UPDATED, "published")
    assert stored(session, sync, "fr").status is TranslationStatus.PUBLISHED
    # A draft import of the same text leaves the published translation published.
    again = import_(product, filled, publish=False)
    assert next(r for r in again.rows if r.note_id == sync.id).outcome is Outcome.UNCHANGED
    assert stored(session, sync, "fr").status is TranslationStatus.PUBLISHED


def test_outdated_translation_left_fuzzy_is_skipped_and_confirmed_is_published_again(
    app, session, world
) -> None:
    product, notes, _ = world
    dark = notes[0]
    dark.body_md = "Go **dark**, now on every page."
    session.commit()
    exported = export(product, "fr", "po")
    report = import_(product, exported)
    row = next(r for r in report.rows if r.note_id == dark.id)
    assert (row.outcome, row.reason) == (Outcome.SKIPPED, "still marked as needing review (fuzzy)")
    assert translations.status(dark, stored(session, dark, "fr")) == "outdated"
    # The translator updates the body and clears the fuzzy mark: published for the new text.
    confirmed = fill(
        "po",
        exported,
        {f"note-{dark.id}-title": "Mode sombre", f"note-{dark.id}-body": "Sombre partout."},
        fuzzy=False,
    )
    row = next(r for r in import_(product, confirmed).rows if r.note_id == dark.id)
    assert row.outcome is Outcome.UPDATED
    session.expire_all()
    assert translations.status(dark, stored(session, dark, "fr")) == "published"


# The report's reasons ------------------------------------------------------------------


@pytest.mark.parametrize("kind", FORMATS)
def test_report_skips_half_translations_and_notes_it_cannot_use(app, session, world, kind) -> None:
    product, notes, owner = world
    dark, sync, crash = notes
    other = make_product(session, owner=owner, slug="other")
    foreign = make_note(session, other, title="Elsewhere")
    exported = export(product, "fr", kind)
    filled = fill(
        kind,
        exported,
        {f"note-{sync.id}-title": "Seulement le titre", f"note-{crash.id}-title": "Corrigé"},
    )
    # Units a file may hold that no note here can use: another product's note, a note
    # that does not exist, an id of somebody else's, and a note whose text changed.
    extra = [
        (f"note-{foreign.id}-title", "Elsewhere", "Ailleurs"),
        ("note-999999-title", "Nobody", "Personne"),
        ("greeting", "Hello", "Bonjour"),
    ]
    filled = add_units(kind, filled, extra)
    session.execute(NoteTranslation.__table__.delete().where(NoteTranslation.note_id == dark.id))
    dark.title = "Dark mode, renamed"
    session.commit()
    before = count_translations(session)
    report = import_(product, filled)
    reasons = {(row.note_id, row.outcome, row.reason) for row in report.rows}
    assert (sync.id, Outcome.SKIPPED, "only the title is translated") in reasons
    assert (crash.id, Outcome.ADDED, "") in reasons
    assert (foreign.id, Outcome.SKIPPED, "a note of another product") in reasons
    assert (999999, Outcome.SKIPPED, "no such note") in reasons
    assert (None, Outcome.SKIPPED, "unit greeting: not a unit Tidings wrote") in reasons
    assert (
        dark.id,
        Outcome.SKIPPED,
        "its text changed since the file was made; export again",
    ) in reasons
    foreign_row = next(r for r in report.rows if r.note_id == foreign.id)
    assert foreign_row.title == ""  # nothing of another product's note is told
    assert count_translations(session) == before + 1
    assert stored(session, sync, "fr") is None  # never half a translation


def add_units(kind: str, data: bytes, extra: list[tuple[str, str, str]]) -> bytes:
    store = parse(kind, data)
    for unit_id, source, target in extra:
        unit = store.addsourceunit(source)
        if kind == "xliff":
            unit.setid(unit_id)
        else:
            unit.setcontext(unit_id)
        unit.target = target
    return bytes(store)


@pytest.mark.parametrize("kind", FORMATS)
def test_notes_left_untranslated_are_counted_not_listed(app, session, world, kind) -> None:
    product, notes, _ = world
    report = import_(product, export(product, "fr", kind))
    assert not report.changed
    assert (report.count(Outcome.UNCHANGED), report.count(Outcome.SKIPPED)) == (1, 2)
    assert report.untranslated == 2 and report.listed == []


def test_only_the_body_translated_is_skipped(app, session, world) -> None:
    product, notes, _ = world
    sync = notes[1]
    filled = fill("xliff", export(product, "fr", "xliff"), {f"note-{sync.id}-body": "Corps"})
    row = next(r for r in import_(product, filled).rows if r.note_id == sync.id)
    assert (row.outcome, row.reason) == (Outcome.SKIPPED, "only the body is translated")
    assert stored(session, sync, "fr") is None


def test_a_title_too_long_is_skipped_with_the_note_rule(app, session, world) -> None:
    product, notes, _ = world
    crash = notes[2]
    filled = fill("po", export(product, "fr", "po"), {f"note-{crash.id}-title": "x" * 201})
    row = next(r for r in import_(product, filled).rows if r.note_id == crash.id)
    assert row.outcome is Outcome.SKIPPED and "200 characters" in row.reason


def test_dry_run_reports_and_writes_nothing(app, session, world) -> None:
    product, notes, _ = world
    crash = notes[2]
    filled = fill("po", export(product, "fr", "po"), {f"note-{crash.id}-title": "Corrigé"})
    before = count_translations(session), session.scalar(select(func.count(AuditEvent.id)))
    report = import_(product, filled, dry_run=True)
    assert report.dry_run and report.count(Outcome.ADDED) == 1
    after = count_translations(session), session.scalar(select(func.count(AuditEvent.id)))
    assert after == before


@pytest.mark.parametrize(
    ("title", "outcome", "reason"),
    [
        ("  Mode sombre  ", Outcome.UNCHANGED, ""),  # stored without the blanks, as saved
        ("Mode\x00sombre", Outcome.SKIPPED, "not text"),  # which the save refuses too
        ("Mode nuit", Outcome.UPDATED, "new text"),
    ],
)
def test_a_dry_run_decides_by_the_rules_the_save_follows(
    app, session, world, title, outcome, reason
) -> None:
    product, notes, owner = world
    dark = notes[0]
    text = {"title": title, "body_md": "Passez au **sombre**.", "publish": True}
    decided = translation_files.decide(dark, "fr", **text, refresh_outdated=True)
    assert decided[0] is outcome and reason in decided[1]
    before = stored(session, dark, "fr").updated_at
    refused = translation_files.save(session, dark, "fr", **text, by=owner, now=utcnow())
    session.commit()
    assert (refused is not None) == (outcome is Outcome.SKIPPED)
    assert (stored(session, dark, "fr").updated_at != before) == (outcome is Outcome.UPDATED)


# Files that cannot be used --------------------------------------------------------------


def _xliff_with(**languages: str) -> bytes:
    attributes = " ".join(f'{name}="{value}"' for name, value in languages.items())
    return (
        f'<?xml version="1.0"?><xliff xmlns="{XLIFF}" version="2.0" {attributes}>'
        '<file id="f"><unit id="note-1-title"><segment><source>a</source>'
        "<target>b</target></segment></unit></file></xliff>"
    ).encode()


MALFORMED = {
    "empty": (b"", "The file is empty."),
    "binary": (b"PNG\r\n\x00\x00", "not a text file"),
    "latin-1": ('msgid "café"'.encode("latin-1"), "not UTF-8"),
    "garbage": (b"hello world", "neither XLIFF 2.0 nor PO"),
    "broken PO": (b'msgid "abc\nmsgstr "x"\n', "neither XLIFF 2.0 nor PO"),
    "broken XML": (b"<xliff><file>", "not XLIFF 2.0"),
    "HTML": (b"<html><body>hi</body></html>", "not XLIFF 2.0"),
    "XLIFF 1.2": (
        b'<?xml version="1.0"?><xliff version="1.2" '
        b'xmlns="urn:oasis:names:tc:xliff:document:1.2"><file><body/></file></xliff>',
        "XLIFF 1.x",
    ),
    "entities": (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        + _xliff_with(srcLang="en", trgLang="fr").split(b"?>", 1)[1],
        "DTD",
    ),
    "no target language": (_xliff_with(srcLang="en"), "which language"),
    "a language Lumen lacks": (_xliff_with(srcLang="en", trgLang="de"), "Lumen has no de"),
    "the default language": (_xliff_with(srcLang="en", trgLang="en"), "default language"),
    "another source language": (_xliff_with(srcLang="de", trgLang="fr"), "translates from de"),
    "too big": (b"#" * (2 * 1024 * 1024 + 1), "over 2 MB"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_file_that_cannot_be_used_is_a_clear_error_and_changes_nothing(
    app, session, world, case
) -> None:
    product, _, _ = world
    data, words = MALFORMED[case]
    before = count_translations(session)
    with pytest.raises(ValidationFailed) as refused:
        translation_files.import_file(session, product, data, publish=True, by=None, now=utcnow())
    assert words in refused.value.message
    session.rollback()
    assert count_translations(session) == before


# The console page -----------------------------------------------------------------------


@pytest.fixture
def team(session, world):
    product, notes, owner = world
    people = {
        role: add_member(session, product, role, f"{role.value}@example.com")
        for role in (Role.VIEWER, Role.EDITOR)
    }
    people[Role.OWNER] = owner
    return product, notes, people


PAGE = "/console/p/lumen/notes/translations"


@pytest.mark.parametrize(
    ("role", "allowed"), [(Role.VIEWER, False), (Role.EDITOR, True), (Role.OWNER, True)]
)
def test_only_editors_and_owners_reach_the_page(client, auth, team, role, allowed) -> None:
    _, _, people = team
    auth.login(people[role].email)
    expected = 200 if allowed else 403
    assert client.get(PAGE).status_code == expected
    assert client.get(PAGE + "/export?locale=fr&format=po").status_code == expected
    upload = {"csrf_token": csrf_token(client), "file": (io.BytesIO(b"x"), "fr.po")}
    assert client.post(PAGE, data=upload).status_code in ((422,) if allowed else (403,))


def test_outsiders_get_404_and_visitors_the_login(client, auth, session, team) -> None:
    assert client.get(PAGE).status_code == 302
    make_member(session, "outsider@example.com")
    auth.login("outsider@example.com")
    assert client.get(PAGE).status_code == 404
    assert client.get(PAGE + "/export?locale=fr&format=po").status_code == 404


def test_console_export_downloads_the_file(client, auth, team) -> None:
    _, notes, people = team
    auth.login(people[Role.EDITOR].email)
    response = client.get(PAGE + "/export?locale=ar&format=xliff")
    assert response.status_code == 200
    assert response.mimetype == "application/xliff+xml"
    assert response.headers["Content-Disposition"] == "attachment; filename=lumen-ar.xlf"
    assert f'id="note-{notes[0].id}-title"'.encode() in response.data
    refused = client.get(PAGE + "/export?locale=de&format=po", follow_redirects=True)
    assert "Lumen has no de" in refused.get_data(as_text=True)


def test_console_import_dry_run_then_import(client, auth, session, team) -> None:
    product, notes, people = team
    auth.login(people[Role.EDITOR].email)
    crash = notes[2]
    exported = client.get(PAGE + "/export?locale=fr&format=po").data
    filled = fill("po", exported, {f"note-{crash.id}-title": "Plantage corrigé"})

    def upload(**fields):
        data = {"csrf_token": csrf_token(client), "file": (io.BytesIO(filled), "lumen-fr.po")}
        return client.post(PAGE, data={**data, **fields})

    dry = upload(publish="published", dry_run="y")
    page = dry.get_data(as_text=True)
    assert dry.status_code == 200
    assert "Dry run" in page and "Fixed the crash" in page
    assert re.search(r'data-count="added">\s*1<', page)
    assert stored(session, crash, "fr") is None
    done = upload(publish="draft")
    assert done.status_code == 200
    assert re.search(r'data-count="added">\s*1<', done.get_data(as_text=True))
    assert stored(session, crash, "fr").status is TranslationStatus.DRAFT


def test_console_import_of_a_bad_file_says_why(client, auth, session, team) -> None:
    _, _, people = team
    auth.login(people[Role.OWNER].email)
    data = {"csrf_token": csrf_token(client), "file": (io.BytesIO(b"hello"), "x.po")}
    response = client.post(PAGE, data=data)
    assert response.status_code == 422
    assert "neither XLIFF 2.0 nor PO" in response.get_data(as_text=True)


def test_console_import_needs_the_csrf_token(client, auth, team) -> None:
    _, _, people = team
    auth.login(people[Role.EDITOR].email)
    response = client.post(PAGE, data={"file": (io.BytesIO(b"x"), "fr.po")})
    assert response.status_code == 400
