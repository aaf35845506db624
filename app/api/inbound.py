"""Help desks' webhook deliveries: ``POST /api/v1/support/inbound/<id>/<token>``.

Each connection has its own URL. A delivery proves itself (token, signature, Zendesk's
timestamp) before anything is read or written; then its ticket is stored once, in the
connection's product only. Answers are JSON: 200 or 201 with ``{"ticket": {"id",
"status"}}``, 202 with ``{"ignored": why}`` for events that are no ticket, 400 for a
body that is not a JSON object, 401 for a delivery that does not prove itself, 413 over
a megabyte, 422 for a ticket that breaks the rule.

Deliveries are limited per connection (``RATELIMIT_SUPPORT_INBOUND``, 1,200 a minute by
default: a desk catching up after an outage sends a burst, and 1,000 at once must all be
stored). Only deliveries that prove themselves count against it, so nobody who merely
knows a connection's number can spend its allowance.
"""

from __future__ import annotations

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from announcements import support_desks
from announcements.errors import Unauthenticated
from announcements.models import SupportConnection, utcnow
from app.converters import MAX_ID
from app.database import write_turn
from app.extensions import csrf, db, limiter

bp = Blueprint("support_inbound", __name__, url_prefix="/api/v1/support/inbound")

MAX_BODY = 1024 * 1024


def _limit() -> str:
    return str(current_app.config["RATELIMIT_SUPPORT_INBOUND"])


def _connection_key() -> str:
    return f"support:{(request.view_args or {}).get('connection_id')}"


def _proved(response: Response) -> bool:
    return response.status_code != 401


def _body() -> bytes | None:
    """The body, or None when it is over the limit (read no further than the limit)."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        return None
    body = request.stream.read(MAX_BODY + 1)
    return None if len(body) > MAX_BODY else body


@bp.post("/<int:connection_id>/<token>")
@limiter.limit(_limit, key_func=_connection_key, deduct_when=_proved)
def deliver(connection_id: int, token: str) -> ResponseReturnValue:
    """Take one delivery from a help desk."""
    connection = (
        db.session.get(SupportConnection, connection_id) if connection_id <= MAX_ID else None
    )
    if connection is None:
        raise Unauthenticated("This inbound URL is not valid. Copy it again from Tidings.")
    # Before the size: a request without the token must not count against the limit.
    support_desks.check_token(connection, token)
    body = _body()
    if body is None:
        return jsonify(error="A delivery is at most 1 MB."), 413
    # SQLite has one writer: deliveries wait their turn rather than time out in a burst.
    with write_turn():
        outcome = support_desks.receive(
            db.session(),
            connection,
            token,
            dict(request.headers),
            body,
            secret_key=current_app.config["SECRET_KEY"],
            now=utcnow(),
        )
        db.session.commit()
    if outcome.status == "ignored":
        return jsonify(ignored=outcome.reason), 202
    ticket = {"id": outcome.ticket_id, "status": outcome.status}
    return jsonify(ticket=ticket), 201 if outcome.status == "created" else 200


def init_app(app: Flask) -> None:
    # Desks prove each delivery with a token and a signature; there is no session to forge.
    csrf.exempt(bp)
    app.register_blueprint(bp)
