"""``flask import-translations``: per-locale store changelogs (fastlane's and F-Droid's
``<locale>/changelogs/<versionCode>.txt``) imported as notes and their translations."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import click
from flask import Flask
from flask.cli import with_appcontext

from announcements import fastlane, importing, translation_files
from announcements.errors import DomainError
from announcements.models import utcnow
from announcements.translation_files import Outcome
from app.cli import _product
from app.extensions import db


@click.command("import-translations")
@click.argument("product_slug")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--versions",
    "codes_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    metavar="CODES.CSV",
    help="code,version per line: the version each version code is (else the code itself).",
)
@click.option(
    "--add-languages",
    is_flag=True,
    help="Add the languages of folders the product does not have, and import them too.",
)
@click.option("--dry-run", is_flag=True, help="Only print what would change.")
@with_appcontext
def import_translations(
    product_slug: str, folder: Path, codes_file: Path | None, add_languages: bool, dry_run: bool
) -> None:
    """Import store changelogs, <locale>/changelogs/<versionCode>.txt under FOLDER (or its
    fastlane/metadata/android/ or metadata/): the default language's texts as notes (new
    ones are drafts), the other languages' as their published translations."""
    product = _product(product_slug)
    try:
        codes = (
            fastlane.read_codes(importing.read_text(codes_file.read_bytes())) if codes_file else {}
        )
        report = fastlane.import_folder(
            db.session(),
            product,
            folder,
            codes=codes,
            add_languages=add_languages,
            dry_run=dry_run,
            by=None,
            now=utcnow(),
        )
    except DomainError as error:
        db.session.rollback()
        raise click.ClickException(error.message) from None
    if dry_run:
        db.session.rollback()
    else:
        db.session.commit()
    _print(report)


def _print(report: fastlane.Report) -> None:
    click.echo(f"Read {report.base}:")
    for tag, name in report.fills.items():
        added = " (added)" if tag in report.added_languages else ""
        click.echo(f"  {name + '/':<14} {tag}{added}")
    click.echo(f"Notes: {report.notes.summary or 'none'}.")
    for change in report.notes.changes:
        if change.action is not importing.Action.UNCHANGED:
            reason = f" ({change.reason})" if change.reason else ""
            click.echo(f"  {change.action.value:<9} {change.version}: {change.title}{reason}")
    by_language: dict[str, list[translation_files.Row]] = defaultdict(list)
    for row in report.translations:
        by_language[row.locale].append(row)
    click.echo(f"Translations: {translation_files.summary(report.translations) or 'none'}.")
    for tag, rows in by_language.items():
        click.echo(f"  {tag}: {translation_files.summary(rows)}")
        for row in rows:
            if row.outcome is Outcome.SKIPPED:
                click.echo(f"    skipped {row.version}: {row.reason}")
    if report.unused:
        click.echo(f"Not used ({len(report.unused)}):")
        for item in report.unused:
            click.echo(f"  {item}")
    if not report.changed:
        click.echo("Nothing to change.")
    else:
        click.echo(f"{'Would import' if report.dry_run else 'Imported'}: {report.summary}.")


def init_app(app: Flask) -> None:
    app.cli.add_command(import_translations)
