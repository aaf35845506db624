"""A pretend host product that embeds the widget, so a newcomer sees it working.

It exists only while the demo data is loaded. Like a real host, it computes the
user's hash, and the hash that vouches for their address, on the server and hands them
to the widget; its own Content-Security-Policy allows no inline script, which the widget
does not need, and its connect-src names the live process (LIVE_URL), where the widget
opens its event stream, as a real host with a strict policy must. ``?locale=fr`` (or ar, or
any tag) is the user's language as the host passes it; without it the widget reads the
browser's.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from flask import Blueprint, Flask, abort, current_app, make_response, render_template, request
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from announcements import languages
from announcements.models import Product
from app.api.widget import expected_email_hash, expected_hash
from app.demo_data import DEMO_HOST_PRODUCT, DEMO_HOST_USER
from app.extensions import db
from app.security import CONSOLE_CSP

bp = Blueprint("demo", __name__, url_prefix="/demo")
USER_PATTERN = re.compile(r"[A-Za-z0-9_.@-]{1,64}")


@bp.get("/host")
def host() -> ResponseReturnValue:
    """Lumen, a pretend analytics app, with the Tidings widget in its header."""
    product = db.session.scalar(select(Product).where(Product.slug == DEMO_HOST_PRODUCT))
    if product is None:
        abort(404)
    user_id = request.args.get("user", DEMO_HOST_USER)
    if not USER_PATTERN.fullmatch(user_id):
        abort(404)
    locale = request.args.get("locale") or None
    if locale is not None:
        if not languages.is_valid(locale):
            abort(404)
        locale = languages.normalise(locale)
    email = f"{user_id}@example.com"
    config = {
        "product": product.widget_key,
        "selector": "#whats-new",
        "user": {
            "id": user_id,
            "hash": expected_hash(product.identity_secret, user_id),
            "email": email,
            "email_hash": expected_email_hash(product.identity_secret, user_id, email),
            "version": "2.10.0",
            "locale": locale,
            "attributes": {"plan": "pro", "role": "admin"},
        },
    }
    response = make_response(
        render_template(
            "demo/host.html", product=product, config=config, user_id=user_id, locale=locale
        )
    )
    live = urlsplit(current_app.config["LIVE_URL"])
    response.headers["Content-Security-Policy"] = CONSOLE_CSP.replace(
        "connect-src 'self'", f"connect-src 'self' {live.scheme}://{live.netloc}"
    )
    return response


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
