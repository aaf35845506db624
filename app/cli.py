"""Command-line tools: ``users create``, ``demo``, ``api-keys create``, ``import-changelog``,
``notes rerender``."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sys
from pathlib import Path
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext
from sqlalchemy import select

from announcements import accounts, apikeys, importing, rerender, services
from announcements.errors import DomainError, ValidationFailed
from announcements.models import Product, Role, utcnow
from app import demo_data
from app.extensions import db

users = AppGroup("users", help="Manage console accounts.")


@users.command("create")
@click.argument("email")
@click.option(
    "--role",
    type=click.Choice([r.value for r in Role]),
    default=Role.OWNER.value,
    show_default=True,
    help="The role to give on the products below.",
)
@click.option(
    "--product", "product_slugs", multiple=True, help="A product to give the role on (repeatable)."
)
@click.option("--all-products", is_flag=True, help="Give the role on every existing product.")
@click.option("--name", default="", help="The name shown in the console.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def create_user(
    email: str,
    role: str,
    product_slugs: tuple[str, ...],
    all_products: bool,
    name: str,
    password_stdin: bool,
) -> None:
    """Create a console account with a role on the products named. New accounts can create
    products of their own."""
    # Said outright: every product was once the default, so a forgotten --product made
    # the new account an owner of everything.
    if bool(product_slugs) == all_products:
        raise click.UsageError(
            "Say which products the account gets the role on: --product SLUG (repeatable), "
            "or --all-products for every existing one."
        )
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    query = select(Product)
    if product_slugs:
        query = query.where(Product.slug.in_(product_slugs))
    products = db.session.scalars(query).all()
    missing = set(product_slugs) - {p.slug for p in products}
    if missing:
        raise click.ClickException(f"No product with the slug {', '.join(sorted(missing))}.")
    # The account and its roles are one change: all of it is committed, or none.
    try:
        member = accounts.new_member(db.session(), email, password, name=name)
    except ValidationFailed as error:
        raise click.ClickException(error.message) from None
    for product in products:
        services.assign_role(db.session(), product, member, Role(role), by=None, now=utcnow())
    db.session.commit()
    where = ", ".join(p.slug for p in products) or "no products yet"
    click.echo(f"Created {member.email} ({role} on {where}).")


@click.command("demo")
@with_appcontext
@click.option("--json", "as_json", is_flag=True, help="Print the demo's keys and ids as JSON.")
def load_demo(as_json: bool) -> None:
    """Load the demo data (idempotent) and print the console login."""
    password = os.environ.get("DEMO_PASSWORD") or secrets.token_urlsafe(12)
    try:
        loaded = demo_data.load(db.session(), password=password, now=utcnow())
    except ValidationFailed as error:
        raise click.ClickException(error.message) from None
    loaded["console"]["url"] = current_app.config["BASE_URL"] + "/console/"
    if as_json:
        click.echo(json.dumps(loaded, indent=2))
        return
    console = loaded["console"]
    click.echo("Demo data is loaded.")
    click.echo(f"  Console:  {console['url']}")
    click.echo(f"  Email:    {console['email']}")
    click.echo(f"  Password: {console['password']}")


def _product(slug: str) -> Product:
    product = db.session.scalar(select(Product).where(Product.slug == slug))
    if product is None:
        raise click.ClickException(f"No product with the slug {slug}.")
    return product


api_keys = AppGroup("api-keys", help="Manage management-API keys.")


@api_keys.command("create")
@click.argument("product_slug")
@click.option("--name", required=True, help="What uses the key, such as ci.")
@click.option(
    "--scopes",
    default="notes:read",
    show_default=True,
    help="Comma-separated: notes:read, notes:write, import, subscribers:read.",
)
def create_api_key(product_slug: str, name: str, scopes: str) -> None:
    """Create an API key and print it; it is shown this once."""
    product = _product(product_slug)
    try:
        key, raw = apikeys.create(
            db.session(), product, name, scopes.split(","), by=None, now=utcnow()
        )
    except ValidationFailed as error:
        raise click.ClickException(error.message) from None
    click.echo(raw)
    click.echo(f"Created key {key.prefix}… “{key.name}” ({', '.join(key.scopes)}).", err=True)


# A file with more releases than this shows a progress bar while it is imported.
PROGRESS_FROM = 50


@click.command("import-changelog")
@click.argument("product_slug")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--publish", is_flag=True, help="Publish the notes, dated at their releases.")
@click.option("--dry-run", is_flag=True, help="Only print what would change.")
@click.option("--unreleased-as", metavar="VERSION", help="Import [Unreleased] as this version.")
@with_appcontext
def import_changelog(
    product_slug: str, file: Path, publish: bool, dry_run: bool, unreleased_as: str | None
) -> None:
    """Import a CHANGELOG.md (or git-cliff --context JSON): one note per release."""
    product = _product(product_slug)
    bars = contextlib.ExitStack()
    bar: Any = None  # click's bar, made on the first release of a long file

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if total <= PROGRESS_FROM or not sys.stderr.isatty():
            return
        if bar is None:
            bar = bars.enter_context(
                click.progressbar(length=total, label="Importing", file=sys.stderr)
            )
        bar.update(1)

    with bars:
        try:
            text = importing.read_text(file.read_bytes())
            report = importing.import_changelog(
                db.session(),
                product,
                text,
                publish=publish,
                dry_run=dry_run,
                unreleased_as=unreleased_as,
                by=None,
                now=utcnow(),
                progress=progress,
            )
        except DomainError as error:
            raise click.ClickException(error.message) from None
    click.echo(f"{file.name}: read as {report.format}.")
    for change in report.changes:
        if change.action is not importing.Action.UNCHANGED:
            reason = f" ({change.reason})" if change.reason else ""
            click.echo(f"  {change.action.value:<9} {change.version}: {change.title}{reason}")
    for problem in report.problems:
        click.echo(f"  warning   {problem}")
    if not report.changed:
        click.echo(f"Nothing to change: {report.summary or 'no releases'}.")
    else:
        click.echo(f"{'Would import' if dry_run else 'Imported'}: {report.summary}.")


notes = AppGroup("notes", help="Maintain the notes' stored HTML.")


@notes.command("rerender")
@click.option("--product", "product_slug", metavar="SLUG", help="Only this product's notes.")
@click.option("--dry-run", is_flag=True, help="Only count what would change.")
def rerender_notes(product_slug: str | None, dry_run: bool) -> None:
    """Render every note's and translation's Markdown again with the current renderer, and
    store the HTML that changed (run by the migration that follows a renderer change)."""
    product = _product(product_slug) if product_slug else None
    report = rerender.rerender(db.session(), product=product, dry_run=dry_run)
    if dry_run:
        db.session.rollback()
    else:
        db.session.commit()
    for failure in report.failures:
        click.echo(f"  failed    {failure.what}: {failure.reason}")
    verb = "would change" if dry_run else "changed"
    where = f" ({', '.join(report.products)})" if report.products else ""
    click.echo(
        f"Checked {report.checked}, {verb} {report.changed}{where}, failed {len(report.failures)}."
    )


def init_app(app: Flask) -> None:
    app.cli.add_command(users)
    app.cli.add_command(load_demo)
    app.cli.add_command(api_keys)
    app.cli.add_command(import_changelog)
    app.cli.add_command(notes)
