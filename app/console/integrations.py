"""API keys and webhooks."""

from __future__ import annotations

from flask import (
    current_app,
    flash,
    redirect,
    render_template,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _

from announcements import (
    apikeys,
    webhooks,
)
from announcements.audit import owned
from announcements.models import (
    Product,
    Role,
    Webhook,
    WebhookEvent,
    utcnow,
)
from app import webhooks as calls
from app.auth import current_member, role_required
from app.console import bp
from app.console.common import refused
from app.console.forms import (
    ApiKeyForm,
    WebhookForm,
)
from app.extensions import db
from app.mail import jobs

# API keys and webhooks ----------------------------------------------------------


@bp.route("/p/<slug>/api-keys", methods=["GET", "POST"])
@role_required(Role.OWNER)
def api_keys(product: Product) -> ResponseReturnValue:
    """The product's API keys; a new key is shown once, on the page that created it."""
    form = ApiKeyForm()
    created = None
    if form.validate_on_submit():
        with refused(form):
            key, raw = apikeys.create(
                db.session(),
                product,
                form.name.data or "",
                form.scopes.data or [],
                by=current_member(),
                now=utcnow(),
            )
            created = (key, raw)
            form = ApiKeyForm(formdata=None)
    status = 422 if form.errors else 200
    return render_template(
        "console/api_keys.html",
        product=product,
        form=form,
        keys=apikeys.for_product(db.session(), product),
        created=created,
    ), status


@bp.post("/p/<slug>/api-keys/<id:key_id>/revoke")
@role_required(Role.OWNER)
def api_key_revoke(product: Product, key_id: int) -> ResponseReturnValue:
    with refused():
        key = apikeys.revoke(db.session(), product, key_id, by=current_member(), now=utcnow())
        flash(
            _(
                "Revoked %(prefix)s… “%(name)s”. Calls with it are refused from now on.",
                prefix=key.prefix,
                name=key.name,
            ),
            "success",
        )
    return redirect(url_for("console.api_keys", slug=product.slug))


@bp.route("/p/<slug>/webhooks", methods=["GET", "POST"])
@role_required(Role.OWNER)
def webhooks_page(product: Product) -> ResponseReturnValue:
    """The product's webhooks and what their receivers answered lately."""
    form = WebhookForm()
    if form.validate_on_submit():
        with refused(form):
            webhooks.create(
                db.session(),
                product,
                form.url.data or "",
                form.events.data or [],
                form.format.data or "",
                by=current_member(),
                now=utcnow(),
                allow_private=current_app.config["WEBHOOK_ALLOW_PRIVATE"],
            )
            flash(
                _("Webhook added. Verify its calls with the signing secret shown below."),
                "success",
            )
            return redirect(url_for("console.webhooks_page", slug=product.slug))
    status = 422 if form.errors else 200
    return render_template(
        "console/webhooks.html",
        product=product,
        form=form,
        hooks=webhooks.for_product(db.session(), product),
        deliveries=webhooks.recent_deliveries(db.session(), product),
    ), status


@bp.post("/p/<slug>/webhooks/<id:webhook_id>/<any(pause, resume):change>")
@role_required(Role.OWNER)
def webhook_toggle(product: Product, webhook_id: int, change: str) -> ResponseReturnValue:
    webhook = owned(db.session(), Webhook, product, webhook_id)
    webhooks.set_active(
        db.session(), webhook, change == "resume", by=current_member(), now=utcnow()
    )
    flash(_("Webhook resumed.") if change == "resume" else _("Webhook paused."), "success")
    return redirect(url_for("console.webhooks_page", slug=product.slug))


@bp.post("/p/<slug>/webhooks/<id:webhook_id>/test")
@role_required(Role.OWNER)
def webhook_test(product: Product, webhook_id: int) -> ResponseReturnValue:
    """Call the webhook now, signed like any call, with the latest note; say what came back."""
    webhook = owned(db.session(), Webhook, product, webhook_id)
    now = utcnow()
    note = webhooks.sample(db.session(), product, now=now)
    call = calls.Call(webhook, WebhookEvent.PUBLISHED.value, None, now, note)
    status, error, took = calls.timed(call)
    if calls.succeeded(status):
        flash(
            _("Test call answered with HTTP %(status)s in %(took)s ms.", status=status, took=took),
            "success",
        )
    else:
        flash(_("The test call failed: %(error)s", error=error), "error")
    return redirect(url_for("console.webhooks_page", slug=product.slug))


@bp.post("/p/<slug>/webhooks/calls/<id:delivery_id>/retry")
@role_required(Role.OWNER)
def webhook_retry(product: Product, delivery_id: int) -> ResponseReturnValue:
    """Send a failed call once more, or a waiting one now, by the worker."""
    with refused():
        webhooks.retry(db.session(), product, delivery_id, by=current_member(), now=utcnow())
        jobs.wake()
        flash(_("The call goes out again in a moment; its result shows below."), "success")
    return redirect(url_for("console.webhooks_page", slug=product.slug))


@bp.post("/p/<slug>/webhooks/<id:webhook_id>/delete")
@role_required(Role.OWNER)
def webhook_delete(product: Product, webhook_id: int) -> ResponseReturnValue:
    webhook = owned(db.session(), Webhook, product, webhook_id)
    webhooks.delete(db.session(), webhook, by=current_member(), now=utcnow())
    flash(_("Webhook removed, with its delivery log."), "success")
    return redirect(url_for("console.webhooks_page", slug=product.slug))
