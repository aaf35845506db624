"""Privacy requests: an owner finds an end user by the host's id for them, or a subscriber
by address, sees what Tidings holds about them, downloads it as JSON, or erases it
(``announcements.privacy``); the subscribers page exports and erases one subscriber.

Owners only: an export holds everything about a person, and an erasure cannot be
undone. Every step is a POST, so an id or an address never lands in a URL, where
browsers' histories and servers' access logs would keep it.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from flask import flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext, ngettext
from flask_wtf import FlaskForm
from wtforms import RadioField, StringField
from wtforms.fields.choices import SelectChoice

from announcements import privacy
from announcements.errors import NotFound
from announcements.models import Product, Role, Subscriber, utcnow
from announcements.subscriptions import get_subscriber
from app.auth import current_member, role_required
from app.console import bp
from app.console.common import attachment
from app.database import write_turn
from app.extensions import db

USER = "user"
SUBSCRIBER = "subscriber"


class PrivacyForm(FlaskForm):
    """Who a request is about, and, to erase, that person's id or address typed again."""

    kind = RadioField(
        lazy_gettext("Whose data"),
        choices=[
            SelectChoice(USER, lazy_gettext("An end user of your app")),
            SelectChoice(SUBSCRIBER, lazy_gettext("An e-mail subscriber")),
        ],
        default=USER,
    )
    identifier = StringField(lazy_gettext("Their id in your app, or their e-mail address"))
    confirmation = StringField(lazy_gettext("Type it again to confirm"))


def _held(data: dict[str, Any]) -> list[tuple[str, int]]:
    """What an export holds, as the page counts it: (what, how many), the empty ones too."""
    reactions = data.get("reactions", [])
    emails = sum(len(s["emails"]) for s in data.get("subscriptions", []))
    if "email" in data:  # a subscriber's own export
        return [(_("E-mails sent or queued"), len(data["emails"]))]
    return [
        (_("Days seen"), len(data["days_seen"])),
        (_("Notes read"), len(data["reads"])),
        (_("Reactions"), len(reactions)),
        (_("Comments"), sum(1 for r in reactions if r["comment"])),
        (_("Acknowledgements"), len(data["acknowledgements"])),
        (_("Notes sent by support"), len(data["agent_sends"])),
        (_("Questions before support"), len(data["help_requests"])),
        (_("Tickets"), len(data["tickets"])),
        (_("Subscriptions"), len(data["subscriptions"])),
        (_("E-mails"), emails),
    ]


def _find(product: Product, form: PrivacyForm) -> tuple[dict[str, Any], Subscriber | None]:
    """The export of whom the form names, and the subscriber when it names one;
    NotFound when it names no one (or someone erased)."""
    text = (form.identifier.data or "").strip()
    if form.kind.data == SUBSCRIBER:
        subscriber = privacy.find_subscriber(db.session(), product, text)
        return privacy.export_subscriber(db.session(), subscriber), subscriber
    # An id matches exactly, as the widget was given it: spaces included.
    return privacy.export_end_user(db.session(), product, form.identifier.data or ""), None


def _json_download(data: dict[str, Any], filename: str) -> ResponseReturnValue:
    return attachment(json.dumps(data, ensure_ascii=False, indent=2), filename, "application/json")


def _filename(product: Product, now: datetime) -> str:
    """No one's id in the name: downloads folders are shared and synced."""
    return f"{product.slug}-privacy-export-{now:%Y-%m-%d-%H%M%S}.json"


def erased_message(counts: dict[str, int]) -> str:
    """What an erasure did, in the console's words."""
    parts = [
        ngettext("%(num)s read", "%(num)s reads", counts.get("reads", 0)),
        ngettext("%(num)s reaction", "%(num)s reactions", counts.get("reactions", 0)),
        ngettext("%(num)s comment", "%(num)s comments", counts.get("comments", 0)),
        ngettext("%(num)s ticket", "%(num)s tickets", counts.get("tickets", 0)),
        ngettext("%(num)s subscription", "%(num)s subscriptions", counts.get("subscribers", 0)),
        ngettext("%(num)s e-mail", "%(num)s e-mails", counts.get("emails", 0)),
    ]
    if not counts.get("end_users"):
        return _(
            "Erased the subscriber's data: %(emails)s. Their address is gone.", emails=parts[-1]
        )
    return _(
        "Erased the user's data: %(parts)s anonymised. Only anonymous counts are left.",
        parts=", ".join(parts),
    )


@bp.route("/p/<slug>/privacy", methods=["GET", "POST"], endpoint="privacy")
@role_required(Role.OWNER)
def privacy_requests(product: Product) -> ResponseReturnValue:
    """Find a person, see what is held about them, download it, or erase it."""
    form = PrivacyForm()
    if request.method == "GET" or not form.validate_on_submit():
        return _page(product, form, status=200 if request.method == "GET" else 422)
    action = request.form.get("action", "find")
    now = utcnow()
    try:
        data, subscriber = _find(product, form)
    except NotFound:
        form.identifier.errors = [_nobody(form)]
        return _page(product, form, status=422)
    whom = data["end_user"]["external_id"] if subscriber is None else subscriber.email
    if action == "export":
        with write_turn():
            kind = "an end user" if subscriber is None else f"subscriber #{subscriber.id}"
            privacy.record_export(db.session(), product, current_member(), whom=kind, now=now)
            db.session.commit()
        return _json_download(data, _filename(product, now))
    if action == "erase":
        if (form.confirmation.data or "").strip() != whom.strip():
            form.confirmation.errors = [
                _("Type the id or address exactly as shown above to confirm the erasure.")
            ]
            return _page(product, form, status=422, data=data, subscriber=subscriber, whom=whom)
        with write_turn():
            if subscriber is None:
                counts = privacy.erase_end_user(
                    db.session(), product, whom, actor=current_member(), now=now
                )
            else:
                counts = privacy.erase_subscriber_of(
                    db.session(), product, subscriber, actor=current_member(), now=now
                )
            db.session.commit()
        flash(erased_message(counts), "success")
        return redirect(url_for("console.privacy", slug=product.slug))
    form.confirmation.data = ""
    return _page(product, form, data=data, subscriber=subscriber, whom=whom)


def _nobody(form: PrivacyForm) -> str:
    if not (form.identifier.data or "").strip():
        return _("Enter the id your app gives the user, or the subscriber's address.")
    if form.kind.data == SUBSCRIBER:
        return _("No subscriber of this product has that address, or their data was erased.")
    return _(
        "No user of this product has that id, or their data was erased. Ids match exactly, "
        "case and spaces included."
    )


def _page(
    product: Product, form: PrivacyForm, *, status: int = 200, **found: Any
) -> ResponseReturnValue:
    data = found.get("data")
    user = data.get("end_user") if data else None
    return render_template(
        "console/privacy.html",
        product=product,
        form=form,
        held=_held(data) if data else [],
        seen=[datetime.fromisoformat(user[key]) for key in ("first_seen_at", "last_seen_at")]
        if user
        else None,
        **found,
    ), status


# One subscriber, from the subscribers page --------------------------------------------


def _subscriber(product: Product, subscriber_id: int) -> Subscriber:
    subscriber = get_subscriber(db.session(), subscriber_id)
    if subscriber.product_id != product.id or subscriber.erased_at is not None:
        raise NotFound(_("There is no such subscriber in this product."))
    return subscriber


@bp.post("/p/<slug>/subscribers/<id:subscriber_id>/export")
@role_required(Role.OWNER)
def subscriber_export(product: Product, subscriber_id: int) -> ResponseReturnValue:
    """Everything held about one subscriber, as a JSON file."""
    subscriber = _subscriber(product, subscriber_id)
    data = privacy.export_subscriber(db.session(), subscriber)
    now = utcnow()
    with write_turn():
        whom = f"subscriber #{subscriber.id}"
        privacy.record_export(db.session(), product, current_member(), whom=whom, now=now)
        db.session.commit()
    return _json_download(data, _filename(product, now))


@bp.post("/p/<slug>/subscribers/<id:subscriber_id>/erase")
@role_required(Role.OWNER)
def subscriber_erase(product: Product, subscriber_id: int) -> ResponseReturnValue:
    """Erase one subscriber's data: the row stays, unsubscribed and nameless, so the
    list's past figures stay true."""
    subscriber = _subscriber(product, subscriber_id)
    with write_turn():
        counts = privacy.erase_subscriber_of(
            db.session(), product, subscriber, actor=current_member(), now=utcnow()
        )
        db.session.commit()
    flash(erased_message(counts), "success")
    return redirect(url_for("console.subscribers", slug=product.slug))
