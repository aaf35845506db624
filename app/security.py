"""Response headers that keep console pages from being framed, sniffed or scripted, and a
guard against form input no database can keep."""

from __future__ import annotations

from flask import Flask, Response, abort, request

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


def _headers(response: Response) -> Response:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
    if request.blueprint == "console" or response.mimetype == "text/html":
        response.headers.setdefault("Content-Security-Policy", CONSOLE_CSP)
        response.headers.setdefault("X-Frame-Options", "DENY")
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
