"""Single sign-on for the console through OpenID Connect (authorisation code flow with
PKCE), with Authlib's Flask client.

What Authlib 1.9 checks, and what is added here because it does not:

- state: ``authorize_access_token`` takes the state's data out of the session and
  refuses a state it does not hold (MismatchingStateError), so a callback URL works
  once, in the browser that started the sign-in.
- PKCE S256: the verifier is kept with the state and sent with the code.
- the ID token's signature against the provider's published keys (refetched once for
  an unknown key id), with the algorithms its metadata names.
- nonce: checked against the one kept with the state, as long as the state holds one
  (it always does: ``sso_start`` sends one).
- exp and iat: checked (with 120 s of leeway for clocks); ``iss``: checked against
  the metadata's issuer only when no claims options are given.
- ``aud`` is NOT checked against the client id, only ``azp`` when present. So the
  claims options below require ``aud`` to name this client and ``iss`` to be the
  configured issuer, and the metadata's own issuer must be the configured one too.
- the token answer need not carry an ID token, and then nothing above runs: a sign-in
  without one is refused.
- RFC 9207's ``iss`` parameter on the callback (a mix-up defence) is not read by
  Authlib; it is checked here when the provider sends it.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

import requests
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.base_client import MismatchingStateError
from authlib.integrations.flask_client import FlaskOAuth2App, OAuth
from flask import (
    abort,
    current_app,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.blueprints import BlueprintSetupState
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user
from joserfc.errors import ClaimError, ExpiredTokenError, JoseError

from announcements import sso
from announcements.models import utcnow
from app.auth import finish_sign_in
from app.console import bp
from app.console.signin import login_limit, safe_next
from app.extensions import db, limiter
from app.mail import compose

log = logging.getLogger(__name__)

EXTENSION = "tidings.sso"
# Where to go once signed in, kept from the start of the sign-in to its callback.
NEXT_KEY = "sso_next"
# A provider that does not answer within this many seconds is taken as unreachable,
# rather than holding a web worker.
PROVIDER_TIMEOUT = 10


def _register(state: BlueprintSetupState) -> None:
    """Give the app its OpenID Connect client when an issuer is configured."""
    app = state.app
    issuer = app.config["OIDC_ISSUER"]
    if not issuer:
        return
    oauth = OAuth(app)
    oauth.register(
        "oidc",
        client_id=app.config["OIDC_CLIENT_ID"],
        client_secret=app.config["OIDC_CLIENT_SECRET"],
        server_metadata_url=f"{issuer.rstrip('/')}/.well-known/openid-configuration",
        client_kwargs={
            "scope": "openid email profile",
            "code_challenge_method": "S256",
            "default_timeout": PROVIDER_TIMEOUT,
        },
    )
    app.extensions[EXTENSION] = oauth


bp.record_once(_register)


def is_configured() -> bool:
    """Whether the sign-in page offers single sign-on."""
    return EXTENSION in current_app.extensions


def provider_name() -> str:
    return str(current_app.config["OIDC_PROVIDER_NAME"])


def _client() -> FlaskOAuth2App:
    """The provider's client, its metadata loaded and its issuer checked; the routes
    are 404 when no provider is configured."""
    if not is_configured():
        abort(404)
    client: FlaskOAuth2App = current_app.extensions[EXTENSION].create_client("oidc")
    try:
        metadata = client.load_server_metadata()
    except (requests.RequestException, ValueError) as error:
        log.warning("The identity provider's metadata could not be loaded: %s", error)
        raise _unreachable() from error
    if metadata.get("issuer") != current_app.config["OIDC_ISSUER"]:
        raise sso.SignInRefused(
            "issuer_metadata",
            _(
                "The identity provider describes itself as another issuer than the one "
                "configured. An administrator must correct OIDC_ISSUER."
            ),
            status=502,
        )
    return client


def _unreachable() -> sso.SignInRefused:
    return sso.SignInRefused(
        "provider_unreachable",
        _(
            "%(provider)s could not be reached. Try again in a moment, or log in with "
            "your password if your team allows it.",
            provider=provider_name(),
        ),
        status=502,
    )


@bp.errorhandler(sso.SignInRefused)
def _refused(refusal: sso.SignInRefused) -> ResponseReturnValue:
    """Say why on the console's own page, and write it to the audit log."""
    db.session.rollback()
    sso.record_refusal(db.session(), refusal, now=utcnow())
    db.session.commit()
    log.info("Single sign-on refused: %s", refusal.reason)
    return render_template(
        "console/sso_problem.html", refusal=refusal, provider=provider_name()
    ), refusal.status


@bp.get("/login/sso")
def sso_start() -> ResponseReturnValue:
    """Send the browser to the identity provider to sign in."""
    client = _client()
    if current_user.is_authenticated:
        return redirect(url_for("console.products"))
    session[NEXT_KEY] = safe_next(request.args.get("next"))
    try:
        return client.authorize_redirect(
            compose.external("console.sso_callback"), nonce=secrets.token_urlsafe(32)
        )
    except (requests.RequestException, ValueError) as error:
        raise _unreachable() from error


@bp.get("/login/sso/callback")
@limiter.limit(login_limit)
def sso_callback() -> ResponseReturnValue:
    """Where the provider sends the browser back: check its answer, find the account,
    sign in."""
    identity = _identity(_client())
    member = sso.member_for(
        db.session(),
        identity,
        provisioning=bool(current_app.config["OIDC_PROVISIONING"]),
        now=utcnow(),
    )
    next_url = session.pop(NEXT_KEY, None) or url_for("console.products")
    return finish_sign_in(member, next_url=safe_next(next_url))


def _identity(client: FlaskOAuth2App) -> sso.Identity:
    """The identity the provider's answer proves, or SignInRefused."""
    issuer = current_app.config["OIDC_ISSUER"]
    error = request.args.get("error")
    if error == "access_denied":
        raise sso.SignInRefused(
            "access_denied",
            _(
                "The sign-in at %(provider)s was cancelled or refused, so you are not logged in.",
                provider=provider_name(),
            ),
        )
    if error:
        raise sso.SignInRefused(
            "provider_error",
            _(
                "%(provider)s could not sign you in. Try again, or ask its administrator "
                "whether Tidings may use it.",
                provider=provider_name(),
            ),
            status=400,
        )
    if request.args.get("iss", issuer) != issuer:
        raise _untrusted("callback_issuer")
    claims_options: dict[str, Any] = {
        "iss": {"essential": True, "value": issuer},
        "aud": {"essential": True, "values": [client.client_id]},
    }
    try:
        token = client.authorize_access_token(claims_options=claims_options)
    except MismatchingStateError as refusal:
        raise sso.SignInRefused(
            "state",
            _(
                "This sign-in did not start in this browser, or its answer was used "
                "already. Start again from the log-in page."
            ),
            status=400,
        ) from refusal
    except AuthlibBaseError as refusal:  # the token endpoint's error, a missing code
        raise sso.SignInRefused(
            "code_refused",
            _(
                "%(provider)s did not accept this sign-in's code; it may have been used "
                "already or have expired. Start again from the log-in page.",
                provider=provider_name(),
            ),
            status=400,
        ) from refusal
    except ExpiredTokenError as refusal:
        raise _untrusted("expired") from refusal
    except ClaimError as refusal:
        raise _untrusted(f"claim_{refusal.claim}") from refusal
    except JoseError as refusal:
        raise _untrusted("signature") from refusal
    except (requests.RequestException, ValueError) as unreachable:
        raise _unreachable() from unreachable
    claims = token.get("userinfo")
    if not claims:
        raise _untrusted("no_id_token")
    if "email" not in claims:
        claims = _with_userinfo(client, token, claims)
    return sso.Identity(
        issuer=issuer,
        subject=claims["sub"],
        email=claims.get("email") or None,
        # Boolean by the standard; some providers send the string.
        email_verified=claims.get("email_verified") in (True, "true"),
        name=str(claims.get("name") or ""),
    )


def _with_userinfo(
    client: FlaskOAuth2App, token: dict[str, Any], claims: dict[str, Any]
) -> dict[str, Any]:
    """The ID token's claims with the address from the userinfo endpoint, where many
    providers put it in the code flow. Its subject must be the ID token's."""
    try:
        info = client.userinfo(token=token)
    except (requests.RequestException, ValueError) as error:
        raise _unreachable() from error
    if info.get("sub") != claims["sub"]:
        raise _untrusted("userinfo_subject")
    return {
        **claims,
        **{key: info[key] for key in ("email", "email_verified", "name") if key in info},
    }


def _untrusted(reason: str) -> sso.SignInRefused:
    """The provider's answer failed a check: forged, replayed, meant for another
    client, or stale. The page says so without telling a forger which check."""
    return sso.SignInRefused(
        reason,
        _(
            "The answer from %(provider)s could not be trusted, so you are not logged in. "
            "Start again from the log-in page; if it happens again, tell your "
            "administrator.",
            provider=provider_name(),
        ),
    )
