"""Command-line tools: ``flask --app wsgi users create``, ``flask --app wsgi demo``."""

from __future__ import annotations

import json
import os
import secrets
import sys

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext
from sqlalchemy import select

from announcements import accounts, demo, services
from announcements.errors import ValidationFailed
from announcements.models import Product, Role, utcnow
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
    "--product",
    "product_slugs",
    multiple=True,
    help="A product to give the role on (repeatable). Default: every existing product.",
)
@click.option("--name", default="", help="The name shown in the console.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def create_user(
    email: str, role: str, product_slugs: tuple[str, ...], name: str, password_stdin: bool
) -> None:
    """Create a console account. New accounts can create products of their own."""
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
    try:
        member = accounts.create_member(db.session, email, password, name=name)
    except ValidationFailed as error:
        raise click.ClickException(error.message) from None
    for product in products:
        services.set_role(db.session, product, member, Role(role), by=None, now=utcnow())
    where = ", ".join(p.slug for p in products) or "no products yet"
    click.echo(f"Created {member.email} ({role} on {where}).")


@click.command("demo")
@with_appcontext
@click.option("--json", "as_json", is_flag=True, help="Print the demo's keys and ids as JSON.")
def load_demo(as_json: bool) -> None:
    """Load the demo data (idempotent) and print the console login."""
    password = os.environ.get("DEMO_PASSWORD") or secrets.token_urlsafe(12)
    try:
        loaded = demo.load(db.session, password=password, now=utcnow())
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


def init_app(app: Flask) -> None:
    app.cli.add_command(users)
    app.cli.add_command(load_demo)
