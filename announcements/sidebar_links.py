"""Signed links to the agent sidebar (``/support/sidebar``) that help desks open.

A link names a product, one of its end users, when it was made and, optionally, the
agent who opens it, and carries ``sig``: the hex HMAC-SHA256, with the product's
``sidebar_secret``, of::

    "sidebar" LF slug LF user LF ts LF agent

(``agent`` empty when absent). The owner's help-desk app or server makes it; the
signature is the whole capability, as the sidebar opens without a console session. A
link is good for ten minutes after ``ts`` (a minute ahead, for a desk's clock that runs
fast), long enough for an agent to read the page and send a note, short enough that a
link copied out of a ticket soon opens nothing.

The fields must not hold a line feed, or another control character: the message joins
them with line feeds, and a user id carrying one could otherwise pass for a different
split of the same text.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from sqlalchemy import select
from sqlalchemy.orm import Session

from announcements.audit import record
from announcements.errors import Forbidden, NotFound, ValidationFailed
from announcements.models import Product, TeamMember
from announcements.reads import is_storable
from announcements.services import SLUG_PATTERN
from announcements.tickets import MAX_USER_ID_LENGTH

MAX_AGE = timedelta(minutes=10)
MAX_AHEAD = timedelta(seconds=60)
MAX_AGENT_LENGTH = 254  # AgentSend.agent holds this many characters
# What an AgentSend records when the link names no agent.
DEFAULT_AGENT = "help desk agent"
PATH = "/support/sidebar"
_TS_DIGITS = 11  # unix seconds until the year 5138: longer is not a time (nor a datetime)


@dataclass(frozen=True)
class SidebarLink:
    """The fields a sidebar link carries, checked against its product's secret."""

    product: Product
    user: str
    ts: str
    agent: str
    sig: str

    @property
    def agent_name(self) -> str:
        """Who an agent send from this link is recorded as."""
        return self.agent.strip() or DEFAULT_AGENT

    @property
    def expires_at(self) -> datetime:
        """When the link stops opening the sidebar or sending from it (UTC)."""
        return _moment(self.ts) + MAX_AGE

    def params(self) -> dict[str, str]:
        """The link's query parameters, as the sidebar's form posts them back."""
        return _params(self.product.slug, self.user, self.ts, self.agent, self.sig)


def signature(secret: str, slug: str, user: str, ts: str, agent: str) -> str:
    """The hex HMAC-SHA256 a link to ``user``'s sidebar made at ``ts`` carries."""
    message = "\n".join(("sidebar", slug, user, ts, agent)).encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(product: Product, user: str, *, agent: str = "", now: datetime) -> dict[str, str]:
    """The query parameters of a link to ``user``'s sidebar made now, as a desk makes
    them (the console's "try it" link); ValidationFailed for a user or agent no link can
    carry."""
    if not user or not _is_field(user, MAX_USER_ID_LENGTH):
        raise ValidationFailed(
            {"user": f"A user id is text of 1 to {MAX_USER_ID_LENGTH} characters on one line."}
        )
    if not _is_field(agent, MAX_AGENT_LENGTH):
        raise ValidationFailed(
            {"agent": f"An agent's name is at most {MAX_AGENT_LENGTH} characters on one line."}
        )
    ts = str(int(now.timestamp()))
    sig = signature(product.sidebar_secret, product.slug, user, ts, agent)
    return _params(product.slug, user, ts, agent, sig)


def url(base_url: str, params: Mapping[str, str]) -> str:
    """The absolute sidebar URL with ``params``."""
    return f"{base_url.rstrip('/')}{PATH}?{urlencode(params)}"


def verify(session: Session, params: Mapping[str, str], *, now: datetime) -> SidebarLink:
    """The link that ``params`` (a query string or a posted form) carry, if its signature
    is the product's and it is less than ten minutes old; otherwise Forbidden, saying
    why in words that name nothing of the product's users. A product that does not
    exist is NotFound: its slug is public on its changelog, so saying so reveals nothing.
    """
    fields = {name: params.get(name) or "" for name in ("product", "user", "ts", "sig")}
    if not all(fields.values()):
        missing = ", ".join(name for name, value in fields.items() if not value)
        raise Forbidden(f"This sidebar link is missing {missing}: it must be signed.")
    agent = params.get("agent") or ""
    if not _is_field(fields["user"], MAX_USER_ID_LENGTH) or not _is_field(agent, MAX_AGENT_LENGTH):
        raise Forbidden("This sidebar link holds a user or agent Tidings cannot sign.")
    if not fields["ts"].isascii() or not fields["ts"].isdigit() or len(fields["ts"]) > _TS_DIGITS:
        raise Forbidden("This sidebar link's time (ts) is not a Unix time in seconds.")
    # Checked before the query: a NUL, say, is an error in PostgreSQL's hands, not a miss.
    if not SLUG_PATTERN.fullmatch(fields["product"]):
        raise NotFound("There is no such product.")
    product = session.scalar(select(Product).where(Product.slug == fields["product"]))
    if product is None:
        raise NotFound("There is no such product.")
    wanted = signature(product.sidebar_secret, product.slug, fields["user"], fields["ts"], agent)
    given = fields["sig"].lower() if fields["sig"].isascii() else ""
    if not hmac.compare_digest(given.encode(), wanted.encode()):
        raise Forbidden(
            "This sidebar link's signature does not match: it was not made with this "
            "product's current sidebar secret, or it was changed after it was signed."
        )
    signed_at = _moment(fields["ts"])
    if signed_at > now + MAX_AHEAD:
        raise Forbidden(
            "This sidebar link was signed in the future: check the clock of the server "
            "that signs it."
        )
    if now - signed_at > MAX_AGE:
        raise Forbidden(
            "This sidebar link has expired (it lasts 10 minutes). Reopen the ticket in "
            "your help desk for a fresh one."
        )
    return SidebarLink(product, fields["user"], fields["ts"], agent, given)


def rotate(session: Session, product: Product, *, by: TeamMember, now: datetime) -> None:
    """Replace the product's sidebar secret, in the caller's transaction: every link
    made with the old one is refused from then on, unexpired ones included."""
    product.sidebar_secret = secrets.token_hex(32)
    record(
        session,
        product,
        by,
        "product.sidebar_secret_rotated",
        "Rotated the agent sidebar's secret",
        now=now,
    )


def _params(slug: str, user: str, ts: str, agent: str, sig: str) -> dict[str, str]:
    """A link's query parameters, in the order the README writes them; no empty agent."""
    params = {"product": slug, "user": user, "ts": ts}
    if agent:
        params["agent"] = agent
    params["sig"] = sig
    return params


def _is_field(text: str, limit: int) -> bool:
    """Whether ``text`` can be signed and stored: not too long, no control character."""
    return (
        len(text) <= limit
        and is_storable(text)
        and not any(ord(c) < 32 or ord(c) == 127 for c in text)
    )


def _moment(ts: str) -> datetime:
    """A link's ``ts`` (at most 11 digits, checked) as a UTC time."""
    return datetime.fromtimestamp(int(ts), tz=UTC)
