"""Settings: defaults, then environment variables, then the test overrides.

Every variable is parsed strictly; a value that cannot be read stops the app at
start-up with a message naming the variable, rather than misbehaving later.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

DEFAULT_SECRET_KEY = "dev-only-change-me"  # noqa: S105 - refused outside development below
ENVIRONMENTS = ("development", "production", "testing")


class ConfigError(RuntimeError):
    """A setting that cannot be used."""


def _env(name: str, default: str) -> str:
    """The variable's value; unset and empty both mean the default."""
    return os.environ.get(name) or default


def _flag(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, not {raw!r}")


def _number(name: str, default: float, *, integer: bool = False) -> Any:
    raw = os.environ.get(name) or ""
    if not raw:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        kind = "a whole number" if integer else "a number"
        raise ConfigError(f"{name} must be {kind}, not {raw!r}") from None
    if value < 0:
        raise ConfigError(f"{name} cannot be negative")
    return value


def load(instance_path: str, overrides: dict[str, Any] | None) -> dict[str, Any]:
    """Build the app's configuration for one process."""
    env = _env("TIDINGS_ENV", "production")
    if overrides and "TIDINGS_ENV" in overrides:
        env = overrides["TIDINGS_ENV"]
    if env not in ENVIRONMENTS:
        raise ConfigError(f"TIDINGS_ENV must be one of {', '.join(ENVIRONMENTS)}, not {env!r}")
    development = env != "production"
    sqlite_path = Path(instance_path) / "tidings.db"
    config: dict[str, Any] = {
        "TIDINGS_ENV": env,
        "SECRET_KEY": _env("SECRET_KEY", DEFAULT_SECRET_KEY),
        "SQLALCHEMY_DATABASE_URI": _env("DATABASE_URL", f"sqlite:///{sqlite_path}"),
        "BASE_URL": _env("BASE_URL", "http://127.0.0.1:5000").rstrip("/"),
        "MAIL_FROM": _env("MAIL_FROM", "Tidings <tidings@localhost>"),
        "SMTP_URL": _env("SMTP_URL", "") or None,
        "REDIS_URL": _env("REDIS_URL", "") or None,
        # Where widgets open their live event stream (the live process, `flask live` or
        # gunicorn's gevent worker on app.live); unset, the public address, where a proxy
        # sends /api/v1/widget/<key>/events to the live process.
        "LIVE_URL": _env("LIVE_URL", "") or None,
        # The live process: a comment line this often keeps proxies and browsers from
        # closing an idle stream; how long a browser waits before it reconnects one that
        # ended; a client whose socket takes nothing for this long is dropped; and the
        # kernel's send buffer of a stream, a few events' worth, so a client that never
        # reads holds this much of the server's memory, not the megabytes TCP grows to.
        "LIVE_HEARTBEAT_SECONDS": _number("LIVE_HEARTBEAT_SECONDS", 25.0),
        "LIVE_RETRY_MS": _number("LIVE_RETRY_MS", 3000, integer=True),
        "LIVE_WRITE_TIMEOUT_SECONDS": _number("LIVE_WRITE_TIMEOUT_SECONDS", 30.0),
        "LIVE_SEND_BUFFER_BYTES": _number("LIVE_SEND_BUFFER_BYTES", 16384, integer=True),
        # "json": one JSON object a line with the request's id; "text" for a terminal.
        "LOG_FORMAT": _env("LOG_FORMAT", "text" if development else "json"),
        # Messages a second each worker sends at most (0: no limit), in claimed batches.
        "MAIL_RATE": _number("MAIL_RATE", 10.0),
        "MAIL_BATCH": max(1, _number("MAIL_BATCH", 50, integer=True)),
        # Permanent failures in a row after which an address is mailed no more.
        "MAIL_BOUNCE_LIMIT": max(1, _number("MAIL_BOUNCE_LIMIT", 3, integer=True)),
        # The mailbox named in List-Unsubscribe's mailto (default: MAIL_FROM's address).
        "MAIL_UNSUBSCRIBE_TO": _env("MAIL_UNSUBSCRIBE_TO", "") or None,
        "RATELIMIT_SUBSCRIBE": _env("RATELIMIT_SUBSCRIBE", "5 per minute;30 per hour"),
        "RATELIMIT_SUBSCRIBE_ADDRESS": _env("RATELIMIT_SUBSCRIBE_ADDRESS", "3 per hour;10 per day"),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": _flag("SESSION_COOKIE_SECURE", not development),
        # Strict-Transport-Security's max-age on HTTPS answers; 0 sends none. Off by default:
        # once sent, browsers refuse plain HTTP to the host for that long.
        "HSTS_SECONDS": _number("HSTS_SECONDS", 0, integer=True),
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        "REMEMBER_COOKIE_SECURE": _flag("SESSION_COOKIE_SECURE", not development),
        "WTF_CSRF_TIME_LIMIT": None,  # the token lives as long as the session
        "MAX_CONTENT_LENGTH": 2 * 1024 * 1024,
        # Limits are counted in Redis when it is configured, so every process shares them.
        "RATELIMIT_STORAGE_URI": _env("REDIS_URL", "memory://"),
        # How many proxies in front of Tidings set X-Forwarded-For/-Proto/-Host; behind
        # one, every client would otherwise share the proxy's address, and its rate limits.
        "TRUSTED_PROXIES": _number("TRUSTED_PROXIES", 0, integer=True),
        "RATELIMIT_LOGIN": _env("RATELIMIT_LOGIN", "10 per minute;100 per hour"),
        "RATELIMIT_HEADERS_ENABLED": True,
        # Webhooks may call loopback and private-network addresses (a receiver inside
        # the operator's own network); off, so product owners cannot reach them.
        "WEBHOOK_ALLOW_PRIVATE": _flag("WEBHOOK_ALLOW_PRIVATE", False),
        # Management-API calls per key.
        "RATELIMIT_API": _env("RATELIMIT_API", "120 per minute;5000 per hour"),
        # Help-desk deliveries per connection: enough for a burst of 1,000 new tickets.
        "RATELIMIT_SUPPORT_INBOUND": _env("RATELIMIT_SUPPORT_INBOUND", "1200 per minute"),
        # The bearer token a Prometheus scraper sends for GET /metrics; unset, /metrics is
        # not served (404).
        "METRICS_TOKEN": _env("METRICS_TOKEN", "") or None,
        # Single sign-on for the console through an OpenID Connect provider: its issuer,
        # exactly as its ID tokens name it, a trailing "/" included where the provider has
        # one (discovery at <issuer>/.well-known/openid-configuration), this client's id and
        # secret there, and the name on the sign-in button. Unset issuer: no SSO.
        "OIDC_ISSUER": _env("OIDC_ISSUER", "") or None,
        "OIDC_CLIENT_ID": _env("OIDC_CLIENT_ID", "") or None,
        "OIDC_CLIENT_SECRET": _env("OIDC_CLIENT_SECRET", "") or None,
        "OIDC_PROVIDER_NAME": _env("OIDC_PROVIDER_NAME", "your identity provider"),
        # Create a console account on the first SSO sign-in of an address no member has
        # (just-in-time provisioning), with each product's ``sso_provision_role``. Off:
        # only members already invited can sign in with SSO.
        "OIDC_PROVISIONING": _flag("OIDC_PROVISIONING", False),
        # Two-factor codes tried a minute, per signing-in member and per address.
        "RATELIMIT_TWO_FACTOR": _env("RATELIMIT_TWO_FACTOR", "5 per minute;30 per hour"),
    }
    if overrides:
        config.update(overrides)
    config["LIVE_URL"] = (config["LIVE_URL"] or config["BASE_URL"]).rstrip("/")
    if config["OIDC_ISSUER"] and not (config["OIDC_CLIENT_ID"] and config["OIDC_CLIENT_SECRET"]):
        raise ConfigError("OIDC_ISSUER is set: set OIDC_CLIENT_ID and OIDC_CLIENT_SECRET too.")
    if config["TIDINGS_ENV"] == "production" and config["SECRET_KEY"] == DEFAULT_SECRET_KEY:
        raise ConfigError(
            "SECRET_KEY is the development default. Set SECRET_KEY to a long random value "
            "(python -c 'import secrets; print(secrets.token_hex(32))') before serving."
        )
    return config
