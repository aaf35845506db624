"""The sidebar page and its one action, sending a note to the user it shows.

Both take the signed link's fields (query string or form) and check them first: until
the signature holds, the page says why it refuses and names nothing of the product's
users. The signature is the whole capability, so the form carries no CSRF token: there
is no session for another site to ride, and a help desk's iframe on another site would
send no cookie anyway.

A link is good for ten minutes, so sends are rate-limited: a link sends at most
:data:`SENDS_PER_LINK`, and a note goes to a user at most :data:`SENDS_PER_NOTE` (a
double click, or a script replaying the form, pins and mails nothing more). Only sends
that happen count, so a forged form spends nobody's allowance.
"""

from __future__ import annotations

from typing import Any

from flask import current_app, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext
from werkzeug.wrappers import Response

from announcements import agent_sends, lookup, sidebar_links
from announcements.errors import DomainError, NotFound, ValidationFailed
from announcements.lookup import Match
from announcements.models import utcnow
from announcements.sidebar_links import SidebarLink
from app.errors import STATUS_FOR
from app.extensions import csrf, db, limiter
from app.mail import jobs
from app.sidebar import bp

VIA = "sidebar"
SENDS_PER_LINK = "10 per minute"
SENDS_PER_NOTE = "1 per minute"
TOO_MANY = lazy_gettext(
    "Not sent: this note was sent to this user less than a minute ago, or this link has "
    "sent 10 notes in the last minute. Wait a minute before sending again."
)


def _user(link: SidebarLink) -> Match:
    """The end user the link names, by an address their host signed or their id in the
    host's app, and how; NotFound when the widget has never seen them."""
    found = lookup.match(
        db.session(), link.product, link.user, secret_key=current_app.config["SECRET_KEY"]
    )
    if found is None:
        raise NotFound(_("The widget has not seen this user in this product yet."))
    return found


def _link_key() -> str:
    """One allowance per signed link (its signature), whoever replays it."""
    return "sidebar-send:" + (request.form.get("sig") or "").lower()


def _note_key() -> str:
    """One allowance per product, user (as the link names them) and note."""
    form = request.form
    return "sidebar-send:" + "\n".join(
        (form.get("product") or "", form.get("user") or "", form.get("note_id") or "")
    )


def _sent(response: Response) -> bool:
    """Whether a send happened: only then does it spend an allowance."""
    return response.status_code == 303


def _private(response: Response) -> Response:
    """The page shows one user's record and its URL is a capability: no cache keeps it,
    and no request the page makes tells another server its address."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _page(link: SidebarLink, found: Match, *, error: str = "", status: int = 200) -> Response:
    """The user's sidebar, with why a send was refused when it was."""
    now = utcnow()
    profile = lookup.profile(db.session(), link.product, found.user, now=now)
    sent = request.args.get("sent", type=int)
    page = render_template(
        "sidebar/page.html",
        link=link,
        product=link.product,
        profile=profile,
        # "Sent" is said only of a note the profile shows a send of.
        sent=next((n for n in profile.notes if n.id == sent and n.sends), None),
        error=error,
        found_by=found.by,
        to_acknowledge=sum(
            1 for n in profile.notes if n.requires_acknowledgement and not n.acknowledged_at
        ),
    )
    return _private(current_app.make_response((page, status)))


@bp.get("/sidebar")
def page() -> ResponseReturnValue:
    """One end user beside a ticket: their version and attributes, every note their
    widget lists with what they did with it, and their tickets."""
    link = sidebar_links.verify(db.session(), request.args, now=utcnow())
    return _page(link, _user(link))


@bp.post("/sidebar/send")
@csrf.exempt  # the signed fields are the credential; see the module's docstring
@limiter.limit(SENDS_PER_LINK, key_func=_link_key, deduct_when=_sent)
@limiter.limit(SENDS_PER_NOTE, key_func=_note_key, deduct_when=_sent)
def send() -> ResponseReturnValue:
    """Send one note to the user: pinned unread in their widget, e-mailed if they are
    linked to a confirmed subscriber; refused once the link has expired."""
    link = sidebar_links.verify(db.session(), request.form, now=utcnow())
    found = _user(link)
    note_id = request.form.get("note_id", type=int)
    try:
        if note_id is None:
            raise ValidationFailed({"note_id": _("Choose a note to send.")})
        agent_sends.send(
            db.session(),
            link.product,
            found.user,
            note_id,
            agent=link.agent_name,
            sent_by=None,
            via=VIA,
            now=utcnow(),
        )
    except ValidationFailed as refused:
        db.session.rollback()
        return _page(link, found, error=" ".join(refused.errors.values()), status=422)
    db.session.commit()
    jobs.wake()
    values: dict[str, Any] = {**link.params(), "sent": note_id}
    target = url_for("sidebar.page", _anchor=f"note-{note_id}", **values)
    return _private(redirect(target, 303))


@bp.errorhandler(429)
def _too_many(_error: Exception) -> ResponseReturnValue:
    """A send over its allowance: the sidebar again, saying so, if the link still holds."""
    try:
        link = sidebar_links.verify(db.session(), request.form, now=utcnow())
        found = _user(link)
    except DomainError as error:  # expired since its last send
        return _refused(error)
    return _page(link, found, error=str(TOO_MANY), status=429)


@bp.errorhandler(DomainError)
def _refused(error: DomainError) -> ResponseReturnValue:
    """A link that does not hold, or names nobody: a plain page saying why, in the
    sidebar's own frame, with nothing of the user."""
    status = next((s for kind, s in STATUS_FOR.items() if isinstance(error, kind)), 400)
    page = render_template("sidebar/refused.html", message=error.message, status=status)
    return _private(current_app.make_response((page, status)))
