"""Command-line tools: ``users create``, ``demo``, ``api-keys create``, ``import-changelog``,
``notes rerender``."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext
from sqlalchemy import select

from announcements import (
    accounts,
    apikeys,
    importing,
    rerender,
    retention,
    rollups,
    services,
    support_desks,
    support_impact,
    ticket_import,
    two_factor,
)
from announcements.errors import DomainError, ValidationFailed
from announcements.models import Product, Role, SupportConnection, SupportDesk, utcnow
from app import demo_data
from app.database import write_turn
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


@users.command("reset-two-factor")
@click.argument("email")
def reset_two_factor(email: str) -> None:
    """Turn off two-factor sign-in for someone who lost their phone and their recovery codes."""
    member = accounts.find_by_email(db.session(), email)
    if member is None:
        raise click.ClickException(f"No account with the address {email}.")
    two_factor.turn_off_for(db.session(), member, now=utcnow())
    db.session.commit()
    click.echo(f"Two-factor sign-in is off for {member.email}.")


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
    for product in loaded["products"]:
        if product["support"]:
            click.echo(f"  Support:  {product['support']}")
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


# The bad rows listed after an import; the rest are counted.
LISTED_BAD_ROWS = 50


@click.command("import-tickets")
@click.argument("product_slug")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--source",
    help="Where the tickets come from, such as helpscout; a Zendesk or Freshdesk export "
    "names its desk itself.",
)
@click.option(
    "--map",
    "mappings",
    multiple=True,
    metavar="FIELD=HEADER",
    help=f"The file's column for a field (repeatable); fields: {', '.join(ticket_import.FIELDS)}.",
)
@click.option(
    "--date-format",
    metavar="FORMAT",
    help="How the file writes times, in strptime codes (such as '%d-%m-%Y %H:%M:%S'), when "
    "not as ISO 8601 or YYYY-MM-DD HH:MM:SS.",
)
@click.option("--dry-run", is_flag=True, help="Only report what would be stored.")
@with_appcontext
def import_tickets(
    product_slug: str,
    file: Path,
    source: str | None,
    mappings: tuple[str, ...],
    date_format: str | None,
    dry_run: bool,
) -> None:
    """Import a help desk's ticket history from a CSV export (Zendesk's and Freshdesk's are
    recognised; map the columns of any other). Exits with 1 when no row could be used."""
    product = _product(product_slug)
    mapping: dict[str, str] = {}
    for pair in mappings:
        name, equals, header = pair.partition("=")
        if not equals:
            raise click.BadParameter(f"“{pair}” is not FIELD=HEADER.", param_hint="--map")
        mapping[name.strip()] = header.strip()
    bars = contextlib.ExitStack()
    bar: Any = None  # click's bar, made when the rows are counted

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if not sys.stderr.isatty():
            return
        if bar is None:
            bar = bars.enter_context(
                click.progressbar(length=total, label="Importing tickets", file=sys.stderr)
            )
        bar.update(done - bar.pos)

    with bars, file.open("rb") as data:
        try:
            csv_file = ticket_import.read_csv(data.read(ticket_import.MAX_BYTES + 1))
            report = ticket_import.import_tickets(
                db.session(),
                product,
                csv_file,
                secret_key=current_app.config["SECRET_KEY"],
                now=utcnow(),
                mapping=mapping,
                source=source,
                date_format=date_format,
                dry_run=dry_run,
                progress=progress,
            )
        except DomainError as error:
            db.session.rollback()
            raise click.ClickException(error.message) from None
    delimiter = ticket_import.DELIMITERS[csv_file.delimiter]
    click.echo(
        f"{file.name}: read as {report.format} ({csv_file.encoding}, {delimiter}), "
        f"source {report.source}, {report.rows:,} rows."
    )
    for line, reason in report.bad[:LISTED_BAD_ROWS]:
        click.echo(f"  line {line}: {reason}")
    if report.bad_rows > LISTED_BAD_ROWS:
        click.echo(f"  … and {report.bad_rows - LISTED_BAD_ROWS:,} more bad rows.")
    click.echo(f"{'Would import' if dry_run else 'Imported'}: {report.summary}.")
    if report.bad_rows and not report.usable:
        sys.exit(1)


rollups_group = AppGroup("rollups", help="Recount the figures the worker keeps.")


@rollups_group.command("rebuild")
@click.option("--product", "product_slug", metavar="SLUG", help="Only this product.")
def rebuild_rollups(product_slug: str | None) -> None:
    """Recount the Insights roll-up from the raw tables (the worker adds to it every ten
    minutes; after importing notes with past dates, or moving a note's publication, a
    rebuild counts them again) and support impact, as the worker does hourly: match
    waiting tickets, record hold-back groups, rewrite the figures of every note and
    release."""
    products = (
        [_product(product_slug)]
        if product_slug
        else list(db.session.scalars(select(Product).order_by(Product.slug)))
    )
    began = time.perf_counter()
    for product in products:
        slug, started = product.slug, time.perf_counter()
        rows = rollups.rebuild(db.session(), product, now=utcnow(), write_turn=write_turn)
        click.echo(
            f"{slug}: insights, {_counted(rows, 'row')} in {time.perf_counter() - started:.1f} s"
        )
        started = time.perf_counter()
        rows = support_impact.refresh(db.session(), product, now=utcnow(), write_turn=write_turn)
        click.echo(
            f"{slug}: support impact, {_counted(rows, 'row')} "
            f"in {time.perf_counter() - started:.1f} s"
        )
        for release in support_impact.report(db.session(), product):
            figures = release.figures
            tickets = figures["tickets_readers"] + figures["tickets_non_readers"]
            click.echo(
                f"  {release.version}: {figures['exposed']:,} exposed, "
                f"{_counted(figures['readers'], 'reader')}, {_counted(tickets, 'ticket')}. "
                f"{figures['verdict']}"
            )
    took = time.perf_counter() - began
    click.echo(f"Recounted {_counted(len(products), 'product')} in {took:.1f} s.")


def _counted(number: int, noun: str) -> str:
    """``1 product``, ``2 products``: the recount's summary is read by people."""
    return f"{number:,} {noun}" + ("" if number == 1 else "s")


support = AppGroup("support", help="Connect help desks.")


@support.command("connect")
@click.argument("product_slug")
@click.argument("desk", type=click.Choice([desk.value for desk in SupportDesk]))
@click.option("--secret", help="The signing secret Zendesk or Intercom shows, if you have it.")
@click.option("--json", "as_json", is_flag=True, help='Print {"url", "secret"} as JSON.')
def connect_desk(product_slug: str, desk: str, secret: str | None, as_json: bool) -> None:
    """Connect a help desk to a product; print its inbound URL, secret and set-up steps."""
    product = _product(product_slug)
    try:
        connection = support_desks.connect(db.session(), product, desk, secret=secret)
    except ValidationFailed as error:
        raise click.ClickException(error.message) from None
    db.session.commit()
    url = support_desks.inbound_url(current_app.config["BASE_URL"], connection)
    if as_json:
        click.echo(json.dumps({"url": url, "secret": connection.secret or None}))
        return
    label, source = connection.desk.label, connection.source
    click.echo(f"Connected {label} to {product.slug}; its tickets come in as “{source}”.")
    click.echo(f"  URL:    {url}")
    if connection.secret:
        click.echo(f"  Secret: {connection.secret}")
    elif connection.desk in support_desks.DESK_MAKES_SECRET:
        click.echo(
            f"  Secret: {label} shows it once the webhook exists; then run "
            f"flask support set-secret {product.slug} {source}"
        )
    for number, step in enumerate(support_desks.SETUP_STEPS[connection.desk], start=1):
        click.echo(f"{number}. {step.text}")
        if step.body:
            click.echo(step.body)


@support.command("set-secret")
@click.argument("product_slug")
@click.argument("source")
@click.option("--secret", prompt=True, hide_input=True, help="The secret the desk shows.")
def set_desk_secret(product_slug: str, source: str, secret: str) -> None:
    """Give a connection the signing secret its desk shows (SOURCE: zendesk, zendesk-2…)."""
    product = _product(product_slug)
    connection = db.session.scalar(
        select(SupportConnection).where(
            SupportConnection.product_id == product.id, SupportConnection.source == source
        )
    )
    if connection is None:
        raise click.ClickException(f"{product.slug} has no connection named {source}.")
    try:
        support_desks.set_secret(db.session(), connection, secret)
    except ValidationFailed as error:
        raise click.ClickException(error.message) from None
    db.session.commit()
    click.echo(f"{connection.desk.label} ({source}) now proves its deliveries with that secret.")


retention_group = AppGroup("retention", help="Apply the products' retention periods.")


@retention_group.command("run")
@click.option("--product", "product_slug", metavar="SLUG", help="Only this product.")
def run_retention(product_slug: str | None) -> None:
    """Apply retention now, as the worker does every night (even if it ran today)."""
    products = (
        [_product(product_slug)]
        if product_slug
        else list(db.session.scalars(select(Product).order_by(Product.slug)))
    )
    for product in products:
        done = retention.run(db.session(), product, now=utcnow(), write_turn=write_turn)
        said = retention.summary(done.removed) if any(done.removed.values()) else "nothing removed"
        click.echo(f"{product.slug}: {said}")


def init_app(app: Flask) -> None:
    app.cli.add_command(users)
    app.cli.add_command(load_demo)
    app.cli.add_command(api_keys)
    app.cli.add_command(import_changelog)
    app.cli.add_command(notes)
    app.cli.add_command(rollups_group)
    app.cli.add_command(retention_group)
    app.cli.add_command(import_tickets)
    app.cli.add_command(support)
