"""The interface's language: Flask-Babel, its catalogues, and which language a request
speaks.

The catalogues are ``translations/<locale>/LC_MESSAGES/messages.po``, compiled to ``.mo``
by ``make`` (the ``translations`` target, which ``make run`` and ``make test`` depend
on). A request speaks what a view chose with :func:`speak` (the public page's
``?locale=``, a subscriber's language); otherwise the console, and the agent sidebar
that agents read beside it, speak the member's chosen language or the best of
:data:`~announcements.languages.CONSOLE_LOCALES` for the browser, and every other page
the best of
:data:`~announcements.languages.INTERFACE_LOCALES`.
"""

from __future__ import annotations

from itertools import islice

from flask import Flask, g, has_request_context, request
from flask_babel import Babel, get_locale, refresh
from flask_login import current_user

from announcements import languages

babel = Babel()
# How many of a browser's languages are looked at, best first. Browsers send a handful;
# each tag looked at is parsed, and parsed tags are cached for good, so a header of
# hundreds of made-up tags must cost no more than an ordinary one.
MAX_BROWSER_LANGUAGES = 8


def init_app(app: Flask, translations: str) -> None:
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", translations)
    babel.init_app(app, default_locale=languages.INTERFACE_DEFAULT, locale_selector=_selected)
    app.jinja_env.globals.update(
        interface_locale=current_locale, interface_direction=current_direction
    )


def _selected() -> str:
    chosen = g.get("interface_locale")
    if chosen:
        return str(chosen)
    if not has_request_context():
        return languages.INTERFACE_DEFAULT
    if request.blueprint in ("console", "sidebar"):
        member = getattr(current_user, "member", None)
        if member is not None and member.locale in languages.CONSOLE_LOCALES:
            return str(member.locale)
        return languages.interface_locale(browser_languages(), languages.CONSOLE_LOCALES)
    return languages.interface_locale(browser_languages())


def browser_languages() -> list[str]:
    """The request's Accept-Language tags by quality, best first (a tie in the header's
    order), at most :data:`MAX_BROWSER_LANGUAGES` of them."""
    return list(islice(request.accept_languages.values(), MAX_BROWSER_LANGUAGES))


def speak(tag: str | None, available: tuple[str, ...] = languages.INTERFACE_LOCALES) -> str:
    """Speak the interface language nearest ``tag`` for the rest of this request (or app
    context, in the worker); returns it."""
    chosen = languages.interface_locale([tag] if tag else [], available)
    g.interface_locale = chosen
    refresh()
    return chosen


def current_locale() -> str:
    """The interface language this request speaks, as a BCP 47 tag."""
    locale = get_locale()
    return str(locale).replace("_", "-") if locale is not None else languages.INTERFACE_DEFAULT


def current_direction() -> str:
    return languages.direction(current_locale())
