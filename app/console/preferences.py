"""The member's own preferences: the language the console speaks to them."""

from __future__ import annotations

from flask import flash, redirect, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import refresh
from flask_login import login_required

from announcements import languages
from app.auth import current_member
from app.console import bp
from app.console.forms import ConsoleLanguageForm
from app.extensions import db
from app.i18n import current_locale


@bp.post("/account/language")
@login_required
def account_language() -> ResponseReturnValue:
    """Choose the language the console speaks, or follow the browser's."""
    form = ConsoleLanguageForm()
    if not form.validate_on_submit():
        flash(_("Choose one of the languages listed."), "error")
        return redirect(url_for("console.account"))
    member = current_member()
    member.locale = form.locale.data or None
    db.session.commit()
    refresh()  # say it in the language just chosen
    if member.locale is None:
        flash(_("The console now speaks the language your browser asks for."), "success")
    else:
        language = languages.display_name(member.locale, current_locale())
        flash(_("The console now speaks %(language)s.", language=language), "success")
    return redirect(url_for("console.account"))
