"""The Tidings web application."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from app import (
    api,
    auth,
    cli,
    cli_languages,
    config,
    converters,
    database,
    demo_host,
    errors,
    health,
    i18n,
    live,
    logs,
    ops,
    public,
    security,
    sidebar,
)
from app.api import inbound as support_inbound
from app.console import bp as console_bp
from app.extensions import csrf, db, limiter, migrate
from app.mail import jobs

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def create_app(
    test_config: dict[str, Any] | None = None, *, instance_path: Path | None = None
) -> Flask:
    """Build the app: settings, extensions, blueprints, error pages, CLI.

    ``instance_path`` (default: ``instance/`` in the project) holds the SQLite database
    the job queue and outgoing .eml files; tests give each app a folder of its own.
    """
    app = Flask(
        __name__,
        instance_path=str(instance_path or PROJECT_ROOT / "instance"),
        template_folder=str(PROJECT_ROOT / "templates"),
        static_folder=str(PROJECT_ROOT / "static"),
    )
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    app.config.from_mapping(config.load(app.instance_path, test_config))
    logs.init_app(app)
    if app.config["TRUSTED_PROXIES"]:
        hops = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops
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
