"""Commands for the operator: ``flask check`` (is this configuration fit to serve?) and
``flask backup`` (a consistent copy of a live SQLite database)."""

from __future__ import annotations

import enum
import logging
import os
import sqlite3
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import redis
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Config, Flask, current_app
from flask.cli import with_appcontext
from sqlalchemy import create_engine, make_url, pool
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError

from app.config import DEFAULT_SECRET_KEY, ConfigError
from app.mail.transport import Smtp

# Seconds a check waits for a server before calling it unreachable: a firewall that drops
# packets would otherwise hold `flask check` for the system's TCP timeout, minutes.
CONNECT_TIMEOUT = 5
# Shorter than this, a SECRET_KEY is guessable offline from one signed cookie.
SECRET_KEY_MIN_LENGTH = 32


class Level(enum.Enum):
    OK = "ok"
    WARN = "warn"
    FAIL = "FAIL"


@dataclass(frozen=True)
class Finding:
    """What one check found: ``part`` of the set-up, how it stands, and in plain words why."""

    part: str
    level: Level
    says: str


def _is_production(config: Config) -> bool:
    return bool(config["TIDINGS_ENV"] == "production")


def check_secret_key(app: Flask) -> Iterator[Finding]:
    config = app.config
    key = str(config["SECRET_KEY"])
    if key == DEFAULT_SECRET_KEY:
        # Only in development: in production the app refuses to start with it
        # (app.config.load says so before any command runs).
        yield Finding(
            "SECRET_KEY",
            Level.WARN,
            "is unset (the development default): set it to a long random value, "
            "python -c 'import secrets; print(secrets.token_hex(32))'",
        )
    elif len(key) < SECRET_KEY_MIN_LENGTH:
        yield Finding(
            "SECRET_KEY",
            Level.FAIL if _is_production(config) else Level.WARN,
            f"is {len(key)} characters long: use at least {SECRET_KEY_MIN_LENGTH} random ones "
            "(signed-in sessions end when it changes)",
        )
    else:
        yield Finding("SECRET_KEY", Level.OK, "set")


def _address(config: Config, name: str, use: str) -> Finding:
    """BASE_URL or LIVE_URL: an absolute http(s) address, and https in production, where
    browsers refuse secure cookies, and a widget on an https page its stream, otherwise."""
    value = str(config[name])
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return Finding(name, Level.FAIL, f"{value!r} is not an address like https://host")
    if _is_production(config) and parts.scheme != "https":
        return Finding(name, Level.FAIL, f"{value} is not https: {use}")
    return Finding(name, Level.OK, value)


def check_addresses(app: Flask) -> Iterator[Finding]:
    config = app.config
    yield _address(
        config,
        "BASE_URL",
        "console sign-in needs https (its cookies are Secure) and mailed links would be "
        "sent in clear",
    )
    live = _address(
        config,
        "LIVE_URL",
        "widgets on https pages cannot open a stream from an http address",
    )
    if live.level is Level.OK and config["LIVE_URL"] == config["BASE_URL"]:
        live = Finding(
            "LIVE_URL",
            Level.OK,
            f"{live.says} (the public address: the proxy must send "
            "/api/v1/widget/<key>/events to the live process, as deploy/nginx/tidings.conf does)",
        )
    yield live


def check_mail(app: Flask) -> Iterator[Finding]:
    config = app.config
    url = config["SMTP_URL"]
    if not url:
        yield Finding(
            "SMTP_URL",
            Level.FAIL if _is_production(config) else Level.WARN,
            "is unset: mail is written as .eml files under instance/mail/ and reaches "
            "nobody; set it to your relay, smtp://user:pass@host:587",
        )
    else:
        try:
            smtp = Smtp(url)
        except ConfigError as error:
            yield Finding("SMTP_URL", Level.FAIL, str(error))
        else:
            security = "TLS" if smtp.implicit_tls else "STARTTLS" if smtp.starttls else "no TLS"
            yield Finding(
                "SMTP_URL", Level.OK, f"{smtp.host}:{smtp.port} ({security}; not contacted)"
            )
    domain = str(config["MAIL_FROM"]).rpartition("@")[2].rstrip(">").strip()
    if domain in ("localhost", "") and _is_production(config):
        yield Finding(
            "MAIL_FROM",
            Level.FAIL,
            f"{config['MAIL_FROM']} is the default: set an address of your own domain, "
            "which relays and inboxes accept",
        )


def _describe(url: URL) -> str:
    """The database's address without its password."""
    if url.get_backend_name() == "sqlite":
        return f"SQLite {url.database}"
    return f"PostgreSQL {url.host}:{url.port or 5432}/{url.database}"


def check_database(app: Flask) -> Iterator[Finding]:
    """The database answers and its schema is the one this code expects."""
    url = make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    where = _describe(url)
    connect_args: dict[str, Any] = {}
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:":
            yield Finding("database", Level.FAIL, "an in-memory SQLite database keeps nothing")
            return
        if not Path(url.database).is_file():
            # Connecting would make an empty file and call it reachable.
            yield Finding("database", Level.FAIL, f"no {where}: create it with `flask db upgrade`")
            return
    else:
        connect_args["connect_timeout"] = CONNECT_TIMEOUT
    engine = create_engine(url, poolclass=pool.NullPool, connect_args=connect_args)
    try:
        with engine.connect() as connection:
            revisions = set(MigrationContext.configure(connection).get_current_heads())
    except SQLAlchemyError as error:
        reason = " ".join(str(getattr(error, "orig", None) or error).split())
        yield Finding("database", Level.FAIL, f"{where} is unreachable: {reason}")
        return
    finally:
        engine.dispose()
    heads = set(ScriptDirectory(app.extensions["migrate"].directory).get_heads())
    if revisions == heads:
        yield Finding("database", Level.OK, f"{where}, schema up to date")
    elif not revisions:
        yield Finding("database", Level.FAIL, f"{where} has no schema yet: run `flask db upgrade`")
    else:
        yield Finding(
            "database",
            Level.FAIL,
            f"{where} is at revision {', '.join(sorted(revisions))}, this code needs "
            f"{', '.join(sorted(heads))}: run `flask db upgrade`",
        )


def check_redis(app: Flask) -> Iterator[Finding]:
    url = app.config["REDIS_URL"]
    if not url:
        yield Finding(
            "REDIS_URL",
            Level.OK,
            "unset: jobs queue in instance/huey.db and rate limits count per process; "
            "set it to run on more than one machine",
        )
        return
    parts = urlsplit(url)
    where = f"{parts.hostname}:{parts.port or 6379}"
    try:
        client = redis.Redis.from_url(
            url, socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=CONNECT_TIMEOUT
        )
    except ValueError as error:
        yield Finding("REDIS_URL", Level.FAIL, f"{error}")
        return
    try:
        version = client.info("server")["redis_version"]
    except redis.RedisError as error:
        yield Finding("REDIS_URL", Level.FAIL, f"Redis at {where} is unreachable: {error}")
    else:
        yield Finding("REDIS_URL", Level.OK, f"Redis {version} at {where}")
    finally:
        client.close()


def check_log_format(app: Flask) -> Iterator[Finding]:
    # create_app refuses any other value (app.logs), so here it is one of the two.
    log_format = app.config["LOG_FORMAT"]
    what = "one JSON object a line" if log_format == "json" else "text lines"
    yield Finding("LOG_FORMAT", Level.OK, f"{log_format}: {what}")


CHECKS: tuple[Callable[[Flask], Iterator[Finding]], ...] = (
    check_secret_key,
    check_database,
    check_redis,
    check_addresses,
    check_mail,
    check_log_format,
)


def findings(app: Flask) -> list[Finding]:
    """What every check found for this app's configuration, in the order they are listed."""
    return [finding for check in CHECKS for finding in check(app)]


@click.command("check")
@with_appcontext
def check_command() -> None:
    """Check the configuration, the database and Redis, and say what is wrong; exits with 1
    when anything must be fixed before serving."""
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    # Alembic announces its context at INFO when the schema is read: not for this reader.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    click.echo(f"Checking the {app.config['TIDINGS_ENV']} configuration.")
    found = findings(app)
    for finding in found:
        click.echo(f"  {finding.level.value:<5} {finding.part}: {finding.says}")
    problems = sum(finding.level is Level.FAIL for finding in found)
    if problems:
        click.echo(f"{problems} problem{'s' if problems > 1 else ''} to fix before serving.")
        sys.exit(1)
    click.echo("Ready to serve.")


def backup_sqlite(database: Path, target: Path) -> int:
    """Copy the SQLite database at ``database`` to ``target`` as it stood at one moment,
    while other processes go on writing; returns the copy's size in bytes.

    SQLite's online-backup API in one step: the copy is one read transaction, a snapshot
    that WAL mode lets writers work beside. Copied a few pages at a time, it would start
    again each time another connection wrote, and under steady writes might never finish.
    The copy is written beside ``target``, checked, switched to a single file (no -wal),
    and only then renamed into place, so no half-made file ever bears the name.
    """
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    # Readable by its owner alone, whatever the umask: it holds every product's identity
    # secret and the team's password hashes. SQLite keeps an existing file's mode.
    os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
    source = sqlite3.connect(database)
    try:
        copy = sqlite3.connect(partial)
        try:
            source.backup(copy)
            copy.execute("PRAGMA journal_mode=DELETE")
            (verdict,) = copy.execute("PRAGMA quick_check").fetchone()
            if verdict != "ok":
                raise click.ClickException(f"the copy failed SQLite's check: {verdict}")
        finally:
            copy.close()
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        source.close()
    with partial.open("rb") as written:
        os.fsync(written.fileno())
    partial.replace(target)
    return target.stat().st_size


@click.command("backup")
@click.argument("target", type=click.Path(dir_okay=False, path_type=Path))
@with_appcontext
def backup_command(target: Path) -> None:
    """Copy the SQLite database to TARGET (a new file) while the app keeps serving. On
    PostgreSQL, use pg_dump (this says how). Uploaded images live in instance/media/:
    copy that folder too."""
    url = make_url(current_app.config["SQLALCHEMY_DATABASE_URI"])
    if url.get_backend_name() != "sqlite":
        raise click.ClickException(
            f"The database is {_describe(url)}: back it up with pg_dump, "
            f"pg_dump --format=custom --file={target} "
            f"--host={url.host} --port={url.port or 5432} "
            f"--username={url.username or 'postgres'} {url.database} "
            "(restore with pg_restore --clean --dbname=…)."
        )
    if not url.database or not Path(url.database).is_file():
        raise click.ClickException(f"There is no SQLite database at {url.database}.")
    if target.exists():
        raise click.ClickException(f"{target} exists already: name a new file.")
    if not target.parent.is_dir():
        raise click.ClickException(f"There is no folder {target.parent}.")
    size = backup_sqlite(Path(url.database), target)
    click.echo(f"Backed up {url.database} to {target} ({size / 1e6:,.1f} MB).")


def init_app(app: Flask) -> None:
    app.cli.add_command(check_command)
    app.cli.add_command(backup_command)
