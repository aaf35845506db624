"""A note's e-mail: sending it and following the send; the product's subscribers."""

from __future__ import annotations

from flask import (
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import ngettext

from announcements import (
    mailing_list,
    outbox,
    services,
)
from announcements.models import (
    Product,
    Role,
    SubscriberStatus,
    utcnow,
)
from app.auth import current_member, role_required
from app.console import bp
from app.console.charts import number
from app.console.common import csv_download, refused
from app.converters import page_arg
from app.extensions import db
from app.mail import delivery, jobs, transport

# Email ------------------------------------------------------------------------


@bp.get("/p/<slug>/notes/<id:note_id>/delivery")
@role_required(Role.VIEWER)
def note_delivery(product: Product, note_id: int) -> ResponseReturnValue:
    """How the note's emails stand, for the note page to follow while they go out, and
    why they wait when the mail server refuses us."""
    found = services.get_note(db.session(), product, note_id)
    pause = outbox.pause_of(db.session(), found.id)
    paused = pause and {
        "error": pause.error,
        "since": pause.since.isoformat(),
        "retry_at": pause.retry_at.isoformat(),
    }
    return jsonify({**mailing_list.delivery(db.session(), found), "paused": paused})


@bp.post("/p/<slug>/notes/<id:note_id>/email")
@role_required(Role.EDITOR)
def note_email(product: Product, note_id: int) -> ResponseReturnValue:
    """Send a published note to the subscribers who want it and have not had it."""
    found = services.get_note(db.session(), product, note_id)
    with refused():
        queued = services.email_note(db.session(), found, by=current_member(), now=utcnow())
        jobs.wake()
        if queued:
            flash(
                ngettext(
                    "Sending “%(title)s” to %(count)s subscriber.",
                    "Sending “%(title)s” to %(count)s subscribers.",
                    queued,
                    title=found.title,
                    count=number(queued),
                ),
                "success",
            )
        else:
            flash(_("Every subscriber who wants this note already has it."), "info")
    return redirect(url_for("console.note", slug=product.slug, note_id=found.id))


@bp.post("/p/<slug>/notes/<id:note_id>/test-email")
@role_required(Role.EDITOR)
def note_test_email(product: Product, note_id: int) -> ResponseReturnValue:
    """Send the note, as subscribers will get it, to the person asking; at once."""
    found = services.get_note(db.session(), product, note_id)
    address = current_member().email
    sender = transport.from_config(current_app.config["SMTP_URL"], current_app.instance_path)
    try:
        delivery.send_test(found, address, sender)
    except delivery.NotSent as error:
        flash(
            _("The test could not be sent to %(address)s: %(error)s", address=address, error=error),
            "error",
        )
    else:
        flash(
            _("Sent a test of “%(title)s” to %(address)s.", title=found.title, address=address),
            "success",
        )
    return redirect(url_for("console.note", slug=product.slug, note_id=found.id))


@bp.get("/p/<slug>/subscribers")
@role_required(Role.VIEWER)
def subscribers(product: Product) -> ResponseReturnValue:
    """The product's email subscribers: counts by status, search, export, remove."""
    status_arg = request.args.get("status", "")
    known = SubscriberStatus._value2member_map_
    status = SubscriberStatus(status_arg) if status_arg in known else None
    text = request.args.get("q", "")[:200]
    page = page_arg()
    found, has_more = mailing_list.search(
        db.session(), product, text=text, status=status, page=page
    )
    return render_template(
        "console/subscribers.html",
        product=product,
        subscribers=found,
        has_more=has_more,
        page=page,
        counts=mailing_list.status_counts(db.session(), product),
        filters={"status": status_arg, "q": text},
        statuses=list(SubscriberStatus),
        can_edit=g.role.allows(Role.EDITOR),
        # An export holds everything about a person and an erasure is for good: owners'.
        can_erase=g.role.allows(Role.OWNER),
    )


@bp.get("/p/<slug>/subscribers.csv")
@role_required(Role.EDITOR)
def subscribers_csv(product: Product) -> ResponseReturnValue:
    """Every subscriber of the product as CSV."""
    rows = mailing_list.export_csv(db.session(), product, by=current_member(), now=utcnow())
    filename = f"{product.slug}-subscribers-{utcnow():%Y-%m-%d}.csv"
    return csv_download(rows, filename)


@bp.post("/p/<slug>/subscribers/<id:subscriber_id>/remove")
@role_required(Role.EDITOR)
def subscriber_remove(product: Product, subscriber_id: int) -> ResponseReturnValue:
    """Delete a subscriber and what was queued for them."""
    removed = mailing_list.remove(
        db.session(), product, subscriber_id, by=current_member(), now=utcnow()
    )
    flash(
        _("Removed %(email)s. Nothing more will be sent to them.", email=removed.email), "success"
    )
    return redirect(url_for("console.subscribers", slug=product.slug))
