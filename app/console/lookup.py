"""Support → Look up: an agent finds one end user by the host's id for them or their
address, sees what they were told and what they did with it, and sends them a note.

Every role may look up and send: answering users is what support does, and a send is
recorded in the audit log with who sent it. The user's page is reached by the row's id,
so an external id never has to fit a URL, and another product's user is a 404. It says
how the search found them (``by``: their id, or the address their host signed), as an
address that is also some user's id finds the user whose address it is.
"""

from __future__ import annotations

from flask import current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _

from announcements import agent_sends, lookup, reads
from announcements.errors import NotFound, ValidationFailed
from announcements.models import EndUser, Product, Role, utcnow
from app.auth import current_member, role_required
from app.console import bp
from app.console.common import refused
from app.extensions import db
from app.mail import jobs


@bp.get("/p/<slug>/support/lookup")
@role_required(Role.VIEWER)
def support_lookup(product: Product) -> ResponseReturnValue:
    """Search an end user by external id or e-mail address; one found opens their page."""
    query = request.args.get("q")
    if query is None:
        return render_template("console/support_lookup.html", product=product, query="")
    try:
        found = lookup.match(
            db.session(), product, query, secret_key=current_app.config["SECRET_KEY"]
        )
    except ValidationFailed as error:
        return render_template(
            "console/support_lookup.html", product=product, query=query, error=error.errors["q"]
        ), 422
    if found is None:
        return render_template(
            "console/support_lookup.html", product=product, query=query.strip(), missing=True
        )
    return redirect(
        url_for("console.support_user", slug=product.slug, user_id=found.user.id, by=found.by)
    )


def _user(product: Product, user_id: int) -> EndUser:
    """The product's end user ``user_id``; another product's, or none, is NotFound."""
    user = db.session.get(EndUser, user_id)
    if user is None or user.product_id != product.id:
        raise NotFound(_("There is no such user in this product."))
    return user


@bp.get("/p/<slug>/support/users/<id:user_id>")
@role_required(Role.VIEWER)
def support_user(product: Product, user_id: int) -> ResponseReturnValue:
    """One end user: their app, every note their widget lists with what they did with it,
    their tickets, and a way to send them a note."""
    user = _user(product, user_id)
    return render_template(
        "console/support_user.html",
        product=product,
        profile=lookup.profile(db.session(), product, user, now=utcnow()),
        sent=request.args.get("sent", type=int),
        found_by=request.args.get("by", ""),
        reactions=reads.REACTIONS,
        max_tickets=lookup.MAX_TICKETS,
    )


@bp.post("/p/<slug>/support/users/<id:user_id>/send")
@role_required(Role.VIEWER)
def support_send(product: Product, user_id: int) -> ResponseReturnValue:
    """Send one note to this user: pinned in their widget, e-mailed if they subscribe."""
    user = _user(product, user_id)
    note_id = request.form.get("note_id", type=int)
    back = url_for("console.support_user", slug=product.slug, user_id=user.id)
    if note_id is None:
        flash(_("Choose a note to send."), "error")
        return redirect(back)
    member = current_member()
    with refused():
        agent_sends.send(
            db.session(),
            product,
            user,
            note_id,
            agent=member.display_name,
            sent_by=member,
            via="console",
            now=utcnow(),
        )
        db.session.commit()
        jobs.wake()
        # Back at the note, which says it was sent: a message at the top of a long page
        # would be out of sight there.
        return redirect(
            url_for("console.support_user", slug=product.slug, user_id=user.id, sent=note_id)
            + f"#note-{note_id}"
        )
    return redirect(back)
