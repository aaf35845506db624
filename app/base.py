"""What every Tidings process's Flask app starts from: the web app (``create_app``) and
the live process (``app.live.create_live_app``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from app import config, logs

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def make_flask(
    import_name: str,
    test_config: dict[str, Any] | None,
    instance_path: Path | None,
    template_folder: str | None = None,
    static_folder: str | None = None,
) -> Flask:
    """A Flask app with its instance folder (default: ``instance/`` in the project), its
    settings, request ids on its log lines, and the trusted proxies' forwarded headers."""
    app = Flask(
        import_name,
        instance_path=str(instance_path or PROJECT_ROOT / "instance"),
        template_folder=template_folder,
        static_folder=static_folder,
    )
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    app.config.from_mapping(config.load(app.instance_path, test_config))
    logs.init_app(app)
    if app.config["TRUSTED_PROXIES"]:
        hops = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops
        )
    return app
