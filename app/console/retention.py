"""Console → Retention (owners): how long the product keeps what names its end users and
subscribers, and what the nightly runs removed. Viewers and editors are refused (403),
as on the other settings pages: the periods are a decision about people's data."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext, ngettext
from flask_wtf import FlaskForm
from wtforms import IntegerField
from wtforms.validators import InputRequired

from announcements import retention
from announcements.models import Product, RetentionRun, Role, utcnow
from app.auth import current_member, role_required
from app.console import bp
from app.console.common import refused
from app.extensions import db


class RetentionForm(FlaskForm):
    """The four periods, named as the product's columns; the bounds are the domain's."""

    end_users_months = IntegerField(
        lazy_gettext("End users not seen for (months)"),
        validators=[InputRequired()],
        description=lazy_gettext(
            "Then erased: their id, attributes and comments go; what they read and their "
            "reactions still count, under no name. A subscription they still hold is kept."
        ),
    )
    subscribers_days = IntegerField(
        lazy_gettext("Subscribers who left, after (days)"),
        validators=[InputRequired()],
        description=lazy_gettext(
            "Unsubscribed or bounced addresses are then erased, and those never confirmed, "
            "counted from their last confirmation e-mail. The list's past figures stay."
        ),
    )
    deliveries_days = IntegerField(
        lazy_gettext("E-mail and webhook details, after (days)"),
        validators=[InputRequired()],
        description=lazy_gettext(
            "What a sent e-mail or webhook call held, and the errors quoting the mail server "
            "or the receiver. Those still waiting to go out are never touched."
        ),
    )
    comment_authors_months = IntegerField(
        lazy_gettext("Comment authors, after (months)"),
        validators=[InputRequired()],
        description=lazy_gettext(
            "The comment and its reaction stay on the note's page, no longer linked to "
            "the end user who wrote them."
        ),
    )


def removed_words(removed: dict[str, int]) -> list[str]:
    """What a run removed, one phrase for each kind it removed any of."""
    phrases = {
        "end_users": lambda n: ngettext("%(num)s end user erased", "%(num)s end users erased", n),
        "subscribers": lambda n: ngettext(
            "%(num)s subscriber erased", "%(num)s subscribers erased", n
        ),
        "emails": lambda n: ngettext("%(num)s e-mail emptied", "%(num)s e-mails emptied", n),
        "webhook_calls": lambda n: ngettext(
            "%(num)s webhook answer dropped", "%(num)s webhook answers dropped", n
        ),
        "comment_authors": lambda n: ngettext(
            "%(num)s comment made anonymous", "%(num)s comments made anonymous", n
        ),
    }
    return [phrases[kind](removed[kind]) for kind in retention.KINDS if removed.get(kind)]


bp.add_app_template_global(removed_words)


def _page(product: Product, form: RetentionForm, *, status: int = 200) -> ResponseReturnValue:
    runs: list[RetentionRun] = retention.last_runs(db.session(), product)
    return render_template(
        "console/retention.html",
        product=product,
        form=form,
        runs=runs,
        kinds=retention.KINDS,
        bounds=retention.BOUNDS,
        now=utcnow(),
    ), status


@bp.route("/p/<slug>/retention", methods=["GET", "POST"], endpoint="retention")
@role_required(Role.OWNER)
def retention_page(product: Product) -> ResponseReturnValue:
    """The product's retention periods, and its last runs."""
    if request.method == "GET":
        return _page(product, RetentionForm(obj=retention.Periods.of(product), formdata=None))
    form = RetentionForm()
    if form.validate_on_submit():
        periods = retention.Periods(
            end_users_months=form.end_users_months.data or 0,
            subscribers_days=form.subscribers_days.data or 0,
            deliveries_days=form.deliveries_days.data or 0,
            comment_authors_months=form.comment_authors_months.data or 0,
        )
        with refused(form):
            changed = retention.set_periods(
                db.session(), product, periods, by=current_member(), now=utcnow()
            )
            db.session.commit()
            flash(
                _("Retention periods saved. The next nightly run applies them.")
                if changed
                else _("Nothing changed."),
                "success" if changed else "info",
            )
            return redirect(url_for("console.retention", slug=product.slug))
    return _page(product, form, status=422)
