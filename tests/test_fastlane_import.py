"""Importing store changelogs (``<locale>/changelogs/<versionCode>.txt``) on the real files
in ../shared/testdata/localized/: NewPipe's fastlane layout and fdroidclient's F-Droid
layout, 43 locale folders each. Every count is made here by counting files, not by the
importer: notes from the default language's folder, translations from the others where
the default has the code. Folder names normalised (en_GB, zh_Hant_HK); fr-FR filling fr
and en-US the default en; unknown languages reported unless added; a second import
changing nothing; a dry run writing nothing."""

from __future__ import annotations

import errno
import os
import re
import shutil
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

import app.cli_languages as cli_languages
from announcements import fastlane, languages, rendering, translations
from announcements.errors import ValidationFailed
from announcements.models import AuditEvent, Note, NoteStatus, NoteTranslation, utcnow
from announcements.translation_files import Outcome
from tests.conftest import SHARED_TESTDATA
from tests.factories import make_product

LOCALIZED = SHARED_TESTDATA / "localized"
NEWPIPE = LOCALIZED / "NewPipe"
NEWPIPE_LOCALES = NEWPIPE / "fastlane" / "metadata" / "android"
FDROID = LOCALIZED / "fdroidclient"
FDROID_LOCALES = FDROID / "metadata"
needs_newpipe = pytest.mark.skipif(
    not (NEWPIPE_LOCALES / "en-US" / "changelogs").is_dir(),
    reason="NewPipe's store changelogs in ../shared/testdata/localized/NewPipe are absent",
)
needs_fdroid = pytest.mark.skipif(
    not (FDROID_LOCALES / "en-US" / "changelogs").is_dir(),
    reason="fdroidclient's store changelogs in ../shared/testdata/localized/fdroidclient "
    "are absent",
)


def codes(folder: Path) -> set[str]:
    return {path.stem for path in (folder / "changelogs").glob("*.txt")}


def locale_folders(base: Path) -> list[Path]:
    return sorted(path for path in base.iterdir() if (path / "changelogs").is_dir())


def product_in(session, slug: str, others: list[str]):
    product = make_product(session, slug=slug, name=slug.title())
    translations.set_languages(session, product, "en", others, by=None, now=utcnow())
    session.commit()
    return product


def run(session, product, root: Path, **options):
    report = fastlane.import_folder(session, product, root, by=None, now=utcnow(), **options)
    if options.get("dry_run"):
        session.rollback()
    else:
        session.commit()
    return report


def counts(session) -> tuple[int, int, int]:
    session.expire_all()
    return (
        session.scalar(select(func.count(Note.id))),
        session.scalar(select(func.count(NoteTranslation.id))),
        session.scalar(select(func.count(AuditEvent.id))),
    )


def translated(session, locale: str) -> dict[str, NoteTranslation]:
    """The locale's translations by the version code of their note."""
    rows = session.scalars(
        select(NoteTranslation).join(Note).where(NoteTranslation.locale == locale)
    )
    return {row.note.import_key.removeprefix("fastlane:"): row for row in rows}


# The texts as notes ---------------------------------------------------------------------


@needs_newpipe
@pytest.mark.parametrize(
    ("code", "title"),
    [
        # A section's name ("Improved") passed over for its first entry.
        ("1000", "Make playlist description clickable to show more / less content"),
        ("1002", "Fixed YouTube not playing any stream."),
        ("1003", "This is a hotfix release that fixes YouTube errors"),
        ("1006", "Keep current player when clicking on timestamps"),  # under "# Improved"
        ("1008", "Fixed resuming streams at the last playback position"),  # "∙ " bullet
        # "Important", then a line whose address is dropped.
        ("1009", "Information on and call for action for the Keep Android Open campaign added"),
    ],
)
def test_title_is_the_first_line_that_says_something(code: str, title: str) -> None:
    text = (NEWPIPE_LOCALES / "en-US" / "changelogs" / f"{code}.txt").read_text()
    assert fastlane.title_of(text, code) == title


@needs_fdroid
def test_title_of_an_fdroid_text_and_a_cut_one() -> None:
    text = (FDROID_LOCALES / "en-US" / "changelogs" / "1014050.txt").read_text()
    assert fastlane.title_of(text, "x") == "Overhaul Share menu to use built-in options like Nearby"
    long = (FDROID_LOCALES / "en-US" / "changelogs" / "1016050.txt").read_text()
    title = fastlane.title_of(long, "x")
    assert len(title) <= fastlane.MAX_TITLE and title.endswith("…")
    assert long.startswith(title[:-1])


def test_title_falls_back_to_the_version() -> None:
    assert fastlane.title_of("Fixed\n\n", "1.2.0") == "Fixed"  # nothing follows: it is a line
    assert fastlane.title_of("# Fixed\n", "1.2.0") == "1.2.0"
    assert fastlane.title_of("", "1.2.0") == "1.2.0"


@needs_newpipe
@pytest.mark.parametrize("locale", ["en-US", "fr", "ja", "ar", "zh_Hant_HK"])
def test_body_keeps_every_line_and_every_bullet_as_a_list_item(locale: str) -> None:
    for path in sorted((NEWPIPE_LOCALES / locale / "changelogs").glob("*.txt")):
        text = path.read_text()
        lines = [line for line in text.splitlines() if line.strip()]
        bullets = [line for line in lines if re.match(r"\s*(?:[•∙·*+-]\s|・)", line)]
        html = rendering.render(fastlane.as_markdown(text))
        assert html.count("<li>") == len(bullets), path
        assert html.count("<li>") + html.count("<p>") + html.count("<h1>") == len(lines), path


# NewPipe, fastlane's layout -------------------------------------------------------------


@needs_newpipe
def test_newpipe_notes_and_the_languages_the_product_has(app, session) -> None:
    product = product_in(session, "newpipe", ["fr", "en-GB", "zh-Hant-HK", "ar"])
    report = run(session, product, NEWPIPE)
    default = codes(NEWPIPE_LOCALES / "en-US")
    assert report.base == str(NEWPIPE_LOCALES.resolve())
    # Normalised names: en_GB fills en-GB and zh_Hant_HK zh-Hant-HK; en-US the default en.
    assert report.fills == {
        "en": "en-US",
        "fr": "fr",
        "en-GB": "en_GB",
        "zh-Hant-HK": "zh_Hant_HK",
        "ar": "ar",
    }
    notes = session.scalars(select(Note).where(Note.product_id == product.id)).all()
    assert {note.version for note in notes} == default  # the code is the version
    assert len(notes) == report.notes.count(fastlane.Action.CREATE) == len(default)
    assert all(note.status_at(utcnow()) is NoteStatus.DRAFT for note in notes)
    for note in notes:
        assert note.body_html == rendering.render(note.body_md)
    for tag, folder in report.fills.items():
        if tag == "en":
            continue
        expected = codes(NEWPIPE_LOCALES / folder) & default
        stored = translated(session, tag)
        assert set(stored) == expected, tag
        assert all(row.status.value == "published" for row in stored.values())
        rows = [row for row in report.translations if row.locale == tag]
        assert [row.outcome for row in rows] == [Outcome.ADDED] * len(expected)
        for code, row in stored.items():
            text = (NEWPIPE_LOCALES / folder / "changelogs" / f"{code}.txt").read_text()
            assert row.body_md == fastlane.as_markdown(text)
            assert row.title == fastlane.title_of(text, code)
    # Every other folder is reported, not imported.
    others = {path.name for path in locale_folders(NEWPIPE_LOCALES)} - set(report.fills.values())
    assert {item.path for item in report.unused} == {name + "/" for name in others}
    assert all("--add-languages" in item.reason for item in report.unused)
    assert len(others) == 43 - 5


@needs_newpipe
def test_reimport_changes_nothing_and_dry_run_writes_nothing(app, session) -> None:
    product = product_in(session, "newpipe", ["fr", "ar"])
    before = counts(session)
    dry = run(session, product, NEWPIPE, dry_run=True)
    assert counts(session) == before
    assert dry.dry_run and dry.changed
    first = run(session, product, NEWPIPE)
    after = counts(session)
    assert after[0] - before[0] == len(codes(NEWPIPE_LOCALES / "en-US"))
    # The dry run said exactly what the import then did.
    assert dry.notes.summary == first.notes.summary
    assert [(r.locale, r.version, r.outcome) for r in dry.translations] == [
        (r.locale, r.version, r.outcome) for r in first.translations
    ]
    stamps = {row.id: row.updated_at for row in session.scalars(select(NoteTranslation))}
    second = run(session, product, NEWPIPE)
    assert not second.changed
    assert counts(session) == after
    assert {row.outcome for row in second.translations} == {Outcome.UNCHANGED}
    assert {change.action for change in second.notes.changes} == {fastlane.Action.UNCHANGED}
    assert {row.id: row.updated_at for row in session.scalars(select(NoteTranslation))} == stamps


@needs_newpipe
def test_a_changed_default_text_updates_its_note_and_leaves_the_translation_outdated(
    app, session, tmp_path
) -> None:
    root = tmp_path / "fastlane" / "metadata" / "android"
    for name in ("en-US", "fr"):
        shutil.copytree(NEWPIPE_LOCALES / name, root / name)
    product = product_in(session, "newpipe", ["fr"])
    run(session, product, tmp_path)
    english = root / "en-US" / "changelogs" / "1005.txt"
    english.write_text(english.read_text() + "\n• One more fix\n")
    report = run(session, product, tmp_path)
    assert report.notes.summary == "1 updated, 9 unchanged"
    assert {row.outcome for row in report.translations} == {Outcome.UNCHANGED}
    fr = translated(session, "fr")["1005"]
    assert translations.status(fr.note, fr) == "outdated"


@needs_newpipe
def test_fr_fr_fills_fr_and_mapped_codes_and_codes_without_a_note(app, session, tmp_path) -> None:
    root = tmp_path / "store"
    shutil.copytree(NEWPIPE_LOCALES / "en-US", root / "en-US")
    shutil.copytree(NEWPIPE_LOCALES / "fr", root / "fr-FR")
    (root / "en-US" / "changelogs" / "1009.txt").unlink()  # fr-FR's 1009 has no note
    mapping = "versionCode,versionName\n1005,0.27.5\n1006,0.27.6\n\n# the rest are codes\n"
    product = product_in(session, "newpipe", ["fr"])
    report = run(session, product, root, codes=fastlane.read_codes(mapping))
    assert report.fills == {"en": "en-US", "fr": "fr-FR"}
    versions = set(session.scalars(select(Note.version)))
    assert {"0.27.5", "0.27.6", "1000", "1008"} <= versions and "1005" not in versions
    assert len(translated(session, "fr")) == len(codes(root / "fr-FR")) - 1
    assert [str(item) for item in report.unused] == [
        "fr-FR/changelogs/1009.txt: en-US/ has no text of this code, so there is no note"
    ]


def test_mapping_file_errors_name_the_line() -> None:
    with pytest.raises(ValidationFailed, match="Line 2: “not a version!” is not a version"):
        fastlane.read_codes("1,1.0\n2,not a version!\n")
    with pytest.raises(ValidationFailed, match="Line 3: code 1 is version 1.0 already"):
        fastlane.read_codes("1,1.0\n2,2.0\n1,3.0\n")
    with pytest.raises(ValidationFailed, match="Line 1: write code,version"):
        fastlane.read_codes("1;1.0\n")


# fdroidclient, F-Droid's layout ---------------------------------------------------------


@needs_fdroid
def test_fdroid_folders_narrower_than_a_language_fill_it_by_likely_region(app, session) -> None:
    product = product_in(session, "fdroid", ["zh", "pt", "he"])
    report = run(session, product, FDROID)
    assert report.base == str(FDROID_LOCALES.resolve())
    # zh: zh-CN (its likely region) over zh-TW and zh-Hant-HK; pt named exactly.
    assert report.fills == {"en": "en-US", "zh": "zh-CN", "pt": "pt", "he": "he"}
    reasons = {item.path: item.reason for item in report.unused}
    assert reasons["en-GB/"].startswith("fits en too, and en-US/ was used for it")
    assert reasons["zh-TW/"].startswith("fits zh too, and zh-CN/ was used for it")
    assert reasons["pt-BR/"].startswith("fits pt too, and pt/ was used for it")
    assert reasons["de/"] == "Fdroid has no de; import with --add-languages"
    default = codes(FDROID_LOCALES / "en-US")
    for tag, folder in report.fills.items():
        if tag != "en":
            assert set(translated(session, tag)) == codes(FDROID_LOCALES / folder) & default


@needs_fdroid
def test_add_languages_adds_the_most_translated_up_to_the_limit(app, session) -> None:
    product = product_in(session, "fdroid", [])
    report = run(session, product, FDROID, add_languages=True)
    folders = [path for path in locale_folders(FDROID_LOCALES) if path.name != "en-US"]
    room = translations.MAX_LANGUAGES - 1
    # Counted here: most files first, then by tag; the rest do not fit.
    ranked = sorted(folders, key=lambda p: (-len(codes(p)), languages.normalise(p.name)))
    kept, dropped = ranked[:room], ranked[room:]
    session.refresh(product)
    assert product.languages == [languages.normalise(p.name) for p in kept]
    assert report.added_languages == product.languages
    assert "en-GB" in product.languages  # it lost en to en-US, and was added as itself
    limit = f"a product has at most {translations.MAX_LANGUAGES} languages"
    assert {item.path for item in report.unused if limit in item.reason} == {
        p.name + "/" for p in dropped
    }
    default = codes(FDROID_LOCALES / "en-US")
    expected = sum(len(codes(p) & default) for p in kept)
    assert counts(session)[1] == expected == len(report.translations)
    arabic = translated(session, "ar")
    assert set(arabic) == codes(FDROID_LOCALES / "ar") & default
    assert languages.direction("ar") == "rtl" and "<script" not in "".join(
        row.body_html for row in arabic.values()
    )


# The command ----------------------------------------------------------------------------


@pytest.fixture
def cli(app, runner):
    if "import-translations" not in app.cli.commands:  # until app/cli.py registers it
        cli_languages.init_app(app)
    return runner


@needs_newpipe
def test_command_dry_run_then_import_then_nothing_to_change(app, session, cli) -> None:
    product_in(session, "newpipe", ["fr"])
    dry = cli.invoke(args=["import-translations", "newpipe", str(NEWPIPE), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    notes = len(codes(NEWPIPE_LOCALES / "en-US"))
    assert f"Notes: {notes} new." in dry.output
    assert "  fr/            fr" in dry.output and "  en-US/         en" in dry.output
    assert "  ar/: Newpipe has no ar; import with --add-languages" in dry.output
    assert "Would import:" in dry.output
    assert counts(session)[0] == 0
    done = cli.invoke(args=["import-translations", "newpipe", str(NEWPIPE)])
    assert done.exit_code == 0 and "Imported:" in done.output
    again = cli.invoke(args=["import-translations", "newpipe", str(NEWPIPE)])
    assert again.exit_code == 0 and "Nothing to change." in again.output


@needs_newpipe
def test_command_with_a_versions_file(app, session, cli, tmp_path) -> None:
    product_in(session, "newpipe", ["fr"])
    mapping = tmp_path / "codes.csv"
    mapping.write_text("1009,0.28.4\n")
    result = cli.invoke(
        args=["import-translations", "newpipe", str(NEWPIPE), "--versions", str(mapping)]
    )
    assert result.exit_code == 0, result.output
    assert "0.28.4" in set(session.scalars(select(Note.version)))


def test_command_refuses_what_it_cannot_use(app, session, cli, tmp_path) -> None:
    product_in(session, "newpipe", [])
    unknown = cli.invoke(args=["import-translations", "nobody", str(tmp_path)])
    assert unknown.exit_code == 1 and "No product with the slug nobody." in unknown.output
    empty = cli.invoke(args=["import-translations", "newpipe", str(tmp_path)])
    assert empty.exit_code == 1 and "holds no <locale>/changelogs/ folders" in empty.output
    (tmp_path / "fr" / "changelogs").mkdir(parents=True)
    (tmp_path / "fr" / "changelogs" / "1.txt").write_text("Corrigé")
    no_default = cli.invoke(args=["import-translations", "newpipe", str(tmp_path)])
    assert no_default.exit_code == 1 and "default language, en" in no_default.output
    bad = tmp_path / "codes.csv"
    bad.write_text("1,one\n")
    refused = cli.invoke(
        args=["import-translations", "newpipe", str(tmp_path), "--versions", str(bad)]
    )
    assert refused.exit_code == 1 and "Line 1: “one” is not a version." in refused.output
    assert counts(session)[:2] == (0, 0)


# A hostile checkout --------------------------------------------------------------------

SECRET = "SECRET_KEY = 'hunter2-prod-key'\n"
LINK = "a symbolic link, which the import does not follow"


def store_with_links(tmp_path: Path) -> Path:
    """A checkout whose French text, German folder and Spanish changelogs folder are links
    to the server's own files, beside a plain English text."""
    outside = tmp_path / "server"
    (outside / "changelogs").mkdir(parents=True)
    (outside / "changelogs" / "100.txt").write_text(SECRET)
    (outside / ".env").write_text(SECRET)
    root = tmp_path / "repo" / "fastlane" / "metadata" / "android"
    for locale in ("en-US", "fr", "es"):
        (root / locale).mkdir(parents=True)
    (root / "en-US" / "changelogs").mkdir()
    (root / "en-US" / "changelogs" / "100.txt").write_text("Faster sync.\n")
    (root / "fr" / "changelogs").mkdir()
    os.symlink(outside / ".env", root / "fr" / "changelogs" / "100.txt")
    os.symlink(outside, root / "de")
    os.symlink(outside / "changelogs", root / "es" / "changelogs")
    return tmp_path / "repo"


def test_links_in_a_checkout_are_reported_and_never_read(app, session, tmp_path) -> None:
    product = product_in(session, "acme", ["fr", "de", "es"])
    report = run(session, product, store_with_links(tmp_path))
    assert report.fills == {"en": "en-US", "fr": "fr"}
    assert {item.path: item.reason for item in report.unused} == {
        "de/": LINK,
        "es/changelogs/": LINK,
        "fr/changelogs/100.txt": LINK,
    }
    assert counts(session)[:2] == (1, 0)
    assert session.scalar(select(Note.body_md)) == "Faster sync."


def test_a_link_to_the_layout_folder_is_not_followed(app, session, tmp_path) -> None:
    store = tmp_path / "elsewhere"
    (store / "en-US" / "changelogs").mkdir(parents=True)
    (store / "en-US" / "changelogs" / "100.txt").write_text(SECRET)
    (tmp_path / "repo" / "fastlane" / "metadata").mkdir(parents=True)
    os.symlink(store, tmp_path / "repo" / "fastlane" / "metadata" / "android")
    product = product_in(session, "acme", [])
    with pytest.raises(ValidationFailed, match="holds no <locale>/changelogs/ folders"):
        run(session, product, tmp_path / "repo")
    os.symlink(store / "en-US", tmp_path / "repo" / "en-US")
    with pytest.raises(ValidationFailed, match=f"Not followed: en-US/: {LINK}"):
        run(session, product, tmp_path / "repo")
    assert counts(session)[0] == 0


def test_a_pipe_is_reported_and_never_opened(app, session, tmp_path) -> None:
    """A text that is a named pipe: opened, it would wait for a writer, and read what the
    writer sends. Here a writer waits with a secret, for as long as the import runs."""
    root = tmp_path / "repo"
    (root / "en-US" / "changelogs").mkdir(parents=True)
    (root / "en-US" / "changelogs" / "100.txt").write_text("Faster sync.\n")
    (root / "fr" / "changelogs").mkdir(parents=True)
    pipe = root / "fr" / "changelogs" / "100.txt"
    os.mkfifo(pipe)
    done = threading.Event()

    def writer() -> None:
        deadline = time.monotonic() + 10
        while not done.is_set() and time.monotonic() < deadline:
            try:
                descriptor = os.open(pipe, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as error:  # no reader yet
                assert error.errno == errno.ENXIO
                time.sleep(0.01)
                continue
            with os.fdopen(descriptor, "w") as end:
                end.write(SECRET)
            return

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    product = product_in(session, "acme", ["fr"])
    try:
        report = run(session, product, root)
    finally:
        done.set()
        thread.join()
    assert [str(item) for item in report.unused] == ["fr/changelogs/100.txt: not a plain file"]
    assert counts(session)[:2] == (1, 0)


def test_a_text_over_the_limit_is_reported_unread(app, session, tmp_path) -> None:
    root = tmp_path / "repo"
    (root / "en-US" / "changelogs").mkdir(parents=True)
    (root / "en-US" / "changelogs" / "100.txt").write_text("Faster sync.\n")
    (root / "en-US" / "changelogs" / "101.txt").write_bytes(b"a" * (2 * 1024 * 1024 + 1))
    product = product_in(session, "acme", [])
    report = run(session, product, root)
    assert [str(item) for item in report.unused] == [
        "en-US/changelogs/101.txt: The file is over 2 MB; import it in parts."
    ]
    assert counts(session)[0] == 1
