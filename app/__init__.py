"""The Tidings web application."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask

from app import (
    api,
    auth,
    cli,
    cli_languages,
    converters,
    database,
    demo_host,
    errors,
    health,
    i18n,
    live,
    ops,
    public,
    security,
    sidebar,
)
from app.api import inbound as support_inbound
from app.base import PROJECT_ROOT, make_flask
from app.console import bp as console_bp
from app.extensions import csrf, db, limiter, migrate
from app.mail import jobs


def create_app(
    test_config: dict[str, Any] | None = None, *, instance_path: Path | None = None
) -> Flask:
    """Build the app: settings, extensions, blueprints, error pages, CLI.

    ``instance_path`` (default: ``instance/`` in the project) holds the SQLite database
    the job queue and outgoing .eml files; tests give each app a folder of its own.
    """
    app = make_flask(
        __name__,
        test_config,
        instance_path,
        template_folder=str(PROJECT_ROOT / "templates"),
        static_folder=str(PROJECT_ROOT / "static"),
    )
    converters.init_app(app)
    i18n.init_app(app, str(PROJECT_ROOT / "translations"))

    db.init_app(app)
    database.init_app(app)
    live.init_app(app)
    health.init_app(app)
    migrate.init_app(app, db, directory=str(PROJECT_ROOT / "migrations"))
    csrf.init_app(app)
    limiter.init_app(app)
    auth.init_app(app)
    security.init_app(app)
    errors.init_app(app)
    cli.init_app(app)
    cli_languages.init_app(app)
    ops.init_app(app)
    jobs.init_app(app)
    app.register_blueprint(console_bp)
    public.init_app(app)
    api.init_app(app)
    support_inbound.init_app(app)
    demo_host.init_app(app)
    sidebar.init_app(app)
    return app
