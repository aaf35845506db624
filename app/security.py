"""Response headers that keep console pages from being framed, sniffed or scripted, and a
guard against form input no database can keep.

One page is made to be framed: the agent sidebar, which help desks show beside a ticket
from origins of their own (and of each account's). Any site may frame it: its signed link,
not the page around it, is what lets it show anything."""

from __future__ import annotations

from flask import Flask, Response, abort, current_app, request

CONSOLE_CSP = "; ".join(
    [
        "default-src 'self'",
        "img-src 'self' https: data:",
        "style-src 'self'",
        "script-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "object-src 'none'",
    ]
)
# The sidebar's blueprint: the console's policy, but any site may frame it.
FRAMEABLE_BLUEPRINT = "sidebar"
SIDEBAR_CSP = CONSOLE_CSP.replace("frame-ancestors 'none'", "frame-ancestors *")
# Browser features no Tidings page uses: denied, a page cannot be made to ask for them by
# injected script or a frame. Only names Chromium knows: it warns about any other.
PERMISSIONS_POLICY = ", ".join(
    f"{feature}=()"
    for feature in (
        "accelerometer",
        "camera",
        "display-capture",
        "geolocation",
        "gyroscope",
        "hid",
        "magnetometer",
        "microphone",
        "midi",
        "payment",
        "serial",
        "usb",
    )
)


def _headers(response: Response) -> Response:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
    if request.blueprint == "console" or response.mimetype == "text/html":
        if request.blueprint == FRAMEABLE_BLUEPRINT:
            response.headers.setdefault("Content-Security-Policy", SIDEBAR_CSP)
        else:
            response.headers.setdefault("Content-Security-Policy", CONSOLE_CSP)
            response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
        # A page opened from another site cannot reach back into it through window.opener.
        # Only Tidings' own pages: the widget's script runs in the host's page, whose
        # policy is the host's, and this header on the script would change nothing.
        response.headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    # Browsers ignore HSTS over plain HTTP, and the standard forbids sending it there.
    hsts_seconds = current_app.config["HSTS_SECONDS"]
    if hsts_seconds and request.is_secure:
        response.headers.setdefault("Strict-Transport-Security", f"max-age={hsts_seconds}")
    if request.blueprint == "console":
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def _refuse_nul() -> None:
    """A NUL character is never text a person typed, and PostgreSQL cannot store one."""
    if request.method != "POST" or not request.form:
        return
    if any("\x00" in value for value in request.form.values()):
        abort(400, description="The form holds a character that is not text. Check and resend.")


def init_app(app: Flask) -> None:
    app.before_request(_refuse_nul)
    app.after_request(_headers)
