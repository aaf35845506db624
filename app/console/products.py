"""The list of products, a new product, and a product's settings."""

from __future__ import annotations

from flask import (
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_login import login_required

from announcements import (
    queries,
    services,
)
from announcements.models import (
    Product,
    Role,
    utcnow,
)
from announcements.services import ProductSettings
from app.auth import current_member, role_required
from app.console import bp
from app.console.common import refused
from app.console.forms import (
    ProductForm,
)
from app.extensions import db

# Products -------------------------------------------------------------------


@bp.get("/")
@login_required
def products() -> ResponseReturnValue:
    """The products the member belongs to."""
    rows = queries.products_of(db.session(), current_member())
    now = utcnow()
    counts = {
        product.id: queries.note_counts(db.session(), product, now=now) for product, _ in rows
    }
    return render_template("console/products.html", rows=rows, counts=counts)


@bp.route("/products/new", methods=["GET", "POST"])
@login_required
def product_new() -> ResponseReturnValue:
    """Create a product; its creator becomes its owner."""
    form = ProductForm()
    if form.validate_on_submit():
        with refused(form):
            product = services.create_product(
                db.session(), _settings_from(form), by=current_member(), now=utcnow()
            )
            flash(f"{product.name} is ready. Write its first release note.", "success")
            return redirect(url_for("console.notes", slug=product.slug))
    return render_template("console/product_new.html", form=form), 422 if form.errors else 200


def _settings_from(form: ProductForm) -> ProductSettings:
    origins = [line.strip().rstrip("/") for line in (form.allowed_origins.data or "").splitlines()]
    return ProductSettings(
        name=form.name.data or "",
        slug=(form.slug.data or "").strip().lower(),
        allowed_origins=tuple(origin for origin in origins if origin),
        require_identity=bool(form.require_identity.data),
        default_locale=(form.default_locale.data or "").strip(),
        logo_url=(form.logo_url.data or "").strip() or None,
        accent_color=(form.accent_color.data or "").strip(),
        grace_releases=form.grace_releases.data if form.grace_releases.data is not None else 1,
        support_window_days=(
            form.support_window_days.data if form.support_window_days.data is not None else 14
        ),
        noindex=bool(form.noindex.data),
        email_from_name=form.email_from_name.data,
        email_reply_to=form.email_reply_to.data,
        digest_weekday=form.digest_weekday.data or 0,
        digest_hour=form.digest_hour.data or 0,
    )


@bp.get("/p/<slug>/")
@role_required(Role.VIEWER)
def product_home(product: Product) -> ResponseReturnValue:
    """A product's start page is its notes."""
    return redirect(url_for("console.notes", slug=product.slug))


@bp.route("/p/<slug>/settings", methods=["GET", "POST"])
@role_required(Role.OWNER)
def settings(product: Product) -> ResponseReturnValue:
    """A product's settings, identity secret included."""
    form = ProductForm(obj=product)
    if request.method == "GET":
        form.allowed_origins.data = "\n".join(product.allowed_origins)
    if form.validate_on_submit():
        with refused(form):
            services.update_product(
                db.session(), product, _settings_from(form), by=current_member(), now=utcnow()
            )
            flash("Settings saved.", "success")
            return redirect(url_for("console.settings", slug=product.slug))
    status = 422 if form.errors else 200
    return render_template("console/settings.html", product=product, form=form), status


@bp.post("/p/<slug>/settings/rotate-secret")
@role_required(Role.OWNER)
def rotate_secret(product: Product) -> ResponseReturnValue:
    """Replace the identity secret."""
    services.rotate_identity_secret(db.session(), product, by=current_member(), now=utcnow())
    flash(
        "New identity secret created. Update it on your servers: hashes made with the old "
        "one are now refused.",
        "warning",
    )
    return redirect(url_for("console.settings", slug=product.slug))
