"""The list of products, a new product, and a product's settings and languages."""

from __future__ import annotations

import dataclasses
from typing import Any

from flask import (
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import login_required
from sqlalchemy import func, select

from announcements import (
    languages,
    personal_data,
    queries,
    rollups,
    services,
    translations,
)
from announcements.models import (
    EndUser,
    Product,
    Role,
    utcnow,
)
from announcements.services import ProductSettings
from app.auth import current_member, role_required
from app.console import bp
from app.console.common import refused
from app.console.forms import (
    DefaultLanguageForm,
    LanguageForm,
    ProductForm,
    SettingsForm,
)
from app.extensions import db
from app.i18n import current_locale

# The settings page lists the attributes of this many users, the most recently seen: a
# bounded read from the (product, last seen) index, however many users a product has.
ATTRIBUTE_SAMPLE = 1000

# Products -------------------------------------------------------------------


@bp.get("/")
@login_required
def products() -> ResponseReturnValue:
    """The products the member belongs to."""
    rows = queries.products_of(db.session(), current_member())
    now = utcnow()
    counts = {
        product.id: queries.note_counts(db.session(), product, now=now) for product, _role in rows
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
            flash(
                _("%(product)s is ready. Write its first release note.", product=product.name),
                "success",
            )
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


# Settings -------------------------------------------------------------------


def _settings_page(
    product: Product,
    *,
    form: SettingsForm | None = None,
    language_form: LanguageForm | None = None,
    default_form: DefaultLanguageForm | None = None,
) -> ResponseReturnValue:
    """The settings page; with the forms given as posted (errors and all), the others as
    the product has them now."""
    if form is None:
        form = SettingsForm(obj=product, formdata=None)
        form.allowed_origins.data = "\n".join(product.allowed_origins)
    posted = [f for f in (form, language_form, default_form) if f is not None and f.errors]
    return render_template(
        "console/settings.html",
        product=product,
        form=form,
        language_form=language_form or LanguageForm(formdata=None),
        default_form=default_form or DefaultLanguageForm(obj=product, formdata=None),
        language_rows=_language_rows(product),
        attributes=_carried_attributes(product),
    ), 422 if posted or request.method == "POST" else 200


def _carried_attributes(product: Product) -> dict[str, Any]:
    """The attribute names the product's most recently seen users carry, commonest first,
    each with how many of them carry it and whether it looks like personal data; and how
    many users were looked at."""
    counts = rollups.attribute_keys(db.session(), product.id, recent=ATTRIBUTE_SAMPLE)
    sampled = db.session.scalar(
        select(func.count()).select_from(
            select(EndUser.id)
            .where(EndUser.product_id == product.id)
            .limit(ATTRIBUTE_SAMPLE)
            .subquery()
        )
    )
    rows = [
        {"name": name, "users": users, "personal": personal_data.looks_personal(name)}
        for name, users in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    ]
    return {"rows": rows, "sampled": sampled or 0, "sample": ATTRIBUTE_SAMPLE}


def language_labels(tag: str) -> dict[str, str]:
    """What the console shows of a language: its tag, its name in itself and in the
    console's language, and its direction."""
    return {
        "tag": tag,
        "own_name": languages.own_name(tag),
        "name": _name(tag),
        "direction": languages.direction(tag),
    }


def _language_rows(product: Product) -> list[dict[str, object]]:
    """Each of the product's languages, default first, with the chain a reader asking
    for it gets."""
    tags = translations.product_languages(product)
    return [
        {
            **language_labels(tag),
            "chain": languages.chain(tag, tags, product.default_locale),
            "is_default": tag == product.default_locale,
        }
        for tag in tags
    ]


@bp.route("/p/<slug>/settings", methods=["GET", "POST"])
@role_required(Role.OWNER)
def settings(product: Product) -> ResponseReturnValue:
    """A product's settings, identity secret included."""
    if request.method == "GET":
        return _settings_page(product)
    form = SettingsForm()
    if form.validate_on_submit():
        # The default language is changed with the languages, below the form.
        kept = dataclasses.replace(_settings_from(form), default_locale=product.default_locale)
        with refused(form):
            services.update_product(db.session(), product, kept, by=current_member(), now=utcnow())
            flash(_("Settings saved."), "success")
            return redirect(url_for("console.settings", slug=product.slug))
    return _settings_page(product, form=form)


@bp.post("/p/<slug>/settings/languages")
@role_required(Role.OWNER)
def language_add(product: Product) -> ResponseReturnValue:
    """Add a language to the product."""
    form = LanguageForm()
    if form.validate_on_submit():
        before = translations.product_languages(product)
        with refused(form):
            _set_languages(
                product, product.default_locale, [*product.languages, form.languages.data or ""]
            )
            added = [tag for tag in product.languages if tag not in before]
            if added:
                message = _(
                    "Added %(language)s. Notes can now be translated into it; until one is, "
                    "its readers see it in the nearest language they read.",
                    language=_name(added[0]),
                )
            else:
                message = _(
                    "%(language)s is already one of %(product)s's languages.",
                    language=_name(languages.normalise(form.languages.data or "")),
                    product=product.name,
                )
            flash(message, "success" if added else "info")
            return redirect(_languages_url(product))
    return _settings_page(product, language_form=form)


@bp.post("/p/<slug>/settings/languages/default")
@role_required(Role.OWNER)
def language_default(product: Product) -> ResponseReturnValue:
    """Say which language the product's notes are written in."""
    form = DefaultLanguageForm()
    if form.validate_on_submit():
        with refused(form):
            _set_languages(product, (form.default_locale.data or "").strip(), product.languages)
            flash(
                _(
                    "Notes are now taken to be written in %(language)s.",
                    language=_name(product.default_locale),
                ),
                "success",
            )
            return redirect(_languages_url(product))
    return _settings_page(product, default_form=form)


@bp.post("/p/<slug>/settings/languages/<tag>/remove")
@role_required(Role.OWNER)
def language_remove(product: Product, tag: str) -> ResponseReturnValue:
    """Take a language off the product; its translations are kept, hidden."""
    if tag == product.default_locale:
        flash(
            _(
                "%(language)s cannot be removed: it is the default language, the one the "
                "notes are written in.",
                language=_name(tag),
            ),
            "error",
        )
    elif tag not in product.languages:
        flash(_("%(product)s has no %(tag)s to remove.", product=product.name, tag=tag), "error")
    else:
        with refused():
            others = [other for other in product.languages if other != tag]
            _set_languages(product, product.default_locale, others)
            flash(
                _(
                    "Removed %(language)s. Its translations are kept but no longer shown; "
                    "they come back if you add the language again.",
                    language=_name(tag),
                ),
                "success",
            )
    return redirect(_languages_url(product))


def _languages_url(product: Product) -> str:
    return url_for("console.settings", slug=product.slug, _anchor="product-languages")


def _set_languages(product: Product, default: str, others: list[str]) -> None:
    translations.set_languages(
        db.session(), product, default, others, by=current_member(), now=utcnow()
    )
    db.session.commit()


def _name(tag: str) -> str:
    """The language's name in the console's language."""
    return languages.display_name(tag, current_locale())


@bp.post("/p/<slug>/settings/rotate-secret")
@role_required(Role.OWNER)
def rotate_secret(product: Product) -> ResponseReturnValue:
    """Replace the identity secret."""
    services.rotate_identity_secret(db.session(), product, by=current_member(), now=utcnow())
    flash(
        _(
            "New identity secret created. Update it on your servers: hashes made with the old "
            "one are now refused."
        ),
        "warning",
    )
    return redirect(url_for("console.settings", slug=product.slug))
