"""Support → Agent sidebar: how each help desk opens ``/support/sidebar`` beside a ticket,
a signed link for one user to try it with, and the secret that signs the links (owners).

Every desk needs the link signed where the secret is safe, never in an agent's browser:
Freshdesk's apps can sign in their own serverless code; Zendesk, Intercom and Help Scout
ask a small signer on the owner's server, whose code this page shows in Python and
JavaScript with the product filled in. And the signer must sign a user the desk vouches
for, never one the agent's browser names (:data:`BROWSER_WARNING`): each desk's snippet
takes it from the desk's signed payload, or from the desk's API for the ticket.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app, flash, g, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext

from announcements import lookup, sidebar_links
from announcements.errors import ValidationFailed
from announcements.models import Product, Role, SupportDesk, utcnow
from app.auth import current_member, role_required
from app.console import bp
from app.extensions import db


@dataclass(frozen=True)
class DeskGuide:
    """Where a desk shows the sidebar, which of its values are the user and the agent,
    who signs the link, and the desk-side code."""

    desk: SupportDesk
    where: str
    user: tuple[str, str]  # the desk's name for the value, and words about it
    agent: tuple[str, str]
    signs: str
    code: str
    language: str


# Said on the page, and the reason for the way every guide below takes the user.
BROWSER_WARNING = lazy_gettext(
    "A signer that signs a user value coming from the agent's browser lets any desk agent "
    "mint a link for any user of the product: the browser's values are whatever the agent "
    "makes them. Sign the user your desk vouches for: one in the payload the desk signs "
    "(Intercom), or the requester your signer reads from the desk's API for the ticket "
    "or conversation (Zendesk, Help Scout, Freshdesk)."
)

GUIDES = (
    DeskGuide(
        SupportDesk.ZENDESK,
        where=lazy_gettext(
            "A private app in the ticket sidebar (location ticket_sidebar), made with the "
            "Zendesk Apps framework: its page is an iframe, and it turns into the sidebar."
        ),
        user=(
            "ticket.requester.externalId",
            lazy_gettext(
                "read by your signer from Zendesk's API (GET /api/v2/tickets/{id}.json?include="
                "users, with an API token of its own), else the requester's email: the app's "
                "page sends only the ticket's id, as Zendesk signs nothing of the requester "
                "for it"
            ),
        ),
        agent=(
            "currentUser.name",
            lazy_gettext("as the agent's browser says: a name in the audit log"),
        ),
        signs=lazy_gettext(
            "Your signer. An app's page runs in the agent's browser, so the secret must "
            "not be in it: the page asks your signer through Zendesk's proxy with a secure "
            "setting (signer_token), which Zendesk inserts on its servers and never shows the "
            "browser. Your signer accepts only that token, and signs the requester of the "
            "ticket it is given, never a user the page names."
        ),
        code="""\
const client = ZAFClient.init();
client.invoke("resize", { width: "100%", height: "600px" });
// No user from here: your signer reads the ticket's requester from Zendesk's API.
client.get(["ticket.id", "currentUser.name"])
  .then((data) => client.request({
    url: "https://signer.example.com/tidings-sidebar-link",
    type: "POST",
    secure: true,  // Zendesk's proxy fills in the secure setting below
    headers: { Authorization: "Bearer {{setting.signer_token}}" },
    contentType: "application/json",
    data: JSON.stringify({ ticket: data["ticket.id"], agent: data["currentUser.name"] }),
  }))
  .then((answer) => window.location.replace(answer.url));""",
        language=lazy_gettext("JavaScript, in the app's iframe page"),
    ),
    DeskGuide(
        SupportDesk.INTERCOM,
        where=lazy_gettext(
            "A Canvas Kit app in the Inbox's conversation details. Intercom shows no "
            "iframes there, so the app is a button that opens the sidebar in a new tab."
        ),
        user=(
            "contact.external_id",
            lazy_gettext(
                "the contact's user_id in Intercom, else contact.email: from the body Intercom "
                "signs, so the user is the conversation's"
            ),
        ),
        agent=("admin.name", lazy_gettext("from the same signed body")),
        signs=lazy_gettext(
            "Your signer is the app's initialize URL: Intercom POSTs the contact and the "
            "admin to it, signed in the X-Body-Signature header (hex HMAC-SHA256 of the body "
            "with the app's client secret). Check that, then answer a canvas with the link. "
            "Intercom asks again each time the conversation is opened; a button older than "
            "10 minutes opens a refusal, and reopening the conversation makes a fresh one."
        ),
        code="""\
# In your initialize handler, after checking X-Body-Signature: the signed body's contact.
contact, admin = body["contact"], body["admin"]
link = sidebar_link(contact.get("external_id") or contact["email"], admin["name"])
return {"canvas": {"content": {"components": [
    {"type": "button", "id": "tidings", "label": "Open in Tidings",
     "action": {"type": "url", "url": link}},
]}}}""",
        language=lazy_gettext("Python, on your server"),
    ),
    DeskGuide(
        SupportDesk.HELPSCOUT,
        where=lazy_gettext(
            "A custom app in the conversation sidebar (Help Scout's app platform): an "
            "iframe of the Content callback URL you give it."
        ),
        user=(
            "primaryCustomer.email",
            lazy_gettext(
                "of the conversation whose conversation-id Help Scout signs in the callback's "
                "query parameters, read by your signer from Help Scout's API (GET "
                "/v2/conversations/{id}); the sidebar finds the user whose address your "
                "widget signed (or sign your own id, if your server looks it up)"
            ),
        ),
        agent=(
            "user.firstName + user.lastName",
            lazy_gettext("from HelpScout.getApplicationContext(): as the agent's browser says"),
        ),
        signs=lazy_gettext(
            "Your signer. Point the Content callback URL at it: Help Scout signs each "
            "call in the X-HelpScout-Signature query parameter (base64 HMAC-SHA1 of the other "
            "parameters with the app's secret key). Check it, then serve a small page that "
            "fetches the link from your signer, passing on the signed parameters so the "
            "signer checks them again and takes the conversation from them."
        ),
        code="""\
import HelpScout from "@helpscout/javascript-sdk";

// Only the agent's name comes from here: the user is the signed conversation's.
const context = await HelpScout.getApplicationContext();
const answer = await fetch("/tidings-sidebar-link" + window.location.search, {
  method: "POST",
  headers: { "Content-Type": "application/json" },
  body: JSON.stringify({ agent: `${context.user.firstName} ${context.user.lastName}` }),
}).then((response) => response.json());
window.location.replace(answer.url);""",
        language=lazy_gettext("JavaScript, in the page your signer serves"),
    ),
    DeskGuide(
        SupportDesk.FRESHDESK,
        where=lazy_gettext(
            "A custom Freshworks app in the ticket sidebar (placeholder ticket_sidebar)."
        ),
        user=(
            "requester.unique_external_id",
            lazy_gettext(
                "else its email: read by the app's serverless function from Freshdesk's API "
                "for the ticket the page names (request templates getTicket, GET "
                "/api/v2/tickets/<%= context.ticket_id %>, and getContact, GET "
                "/api/v2/contacts/<%= context.contact_id %>, with an API key in a secure "
                "installation parameter), never from the page's arguments"
            ),
        ),
        agent=("loggedInUser.contact.name", lazy_gettext('from client.data.get("loggedInUser")')),
        signs=lazy_gettext(
            "The app itself, with no server of yours: keep the secret in a secure "
            "installation parameter (tidings_sidebar_secret, secure: true) and sign in the "
            "app's serverless function, which the app's page calls with "
            'client.request.invoke("sidebarLink", {ticket_id, agent}); the page then loads '
            "the link it returns. The arguments come from the agent's browser, so the "
            "function takes the ticket's requester from Freshdesk."
        ),
        code="""\
// server/server.js
const crypto = require("crypto");

async function get(template, context) {
  return JSON.parse((await $request.invokeTemplate(template, { context })).response);
}

exports = {
  async sidebarLink(args) {
    // The user is the ticket's requester, as Freshdesk says: not one the page names.
    const ticket = await get("getTicket", { ticket_id: Number(args.ticket_id) });
    const contact = await get("getContact", { contact_id: ticket.requester_id });
    const user = contact.unique_external_id || contact.email;
    const ts = String(Math.floor(Date.now() / 1000));
    const message = ["sidebar", "{slug}", user, ts, args.agent].join("\\n");
    const sig = crypto.createHmac("sha256", args.iparams.tidings_sidebar_secret)
      .update(message).digest("hex");
    const query = new URLSearchParams({
      product: "{slug}", user, ts, agent: args.agent, sig,
    });
    renderData(null, { url: "{sidebar}?" + query });
  },
};""",
        language=lazy_gettext("JavaScript, in the Freshworks app"),
    ),
)

PYTHON_SIGNER = """\
import hashlib
import hmac
import os
import time
from urllib.parse import urlencode

SIDEBAR = "{sidebar}"
SECRET = os.environ["TIDINGS_SIDEBAR_SECRET"]


def sidebar_link(user: str, agent: str = "") -> str:
    ts = str(int(time.time()))
    message = "\\n".join(["sidebar", "{slug}", user, ts, agent])
    sig = hmac.new(SECRET.encode(), message.encode(), hashlib.sha256).hexdigest()
    query = {{"product": "{slug}", "user": user, "ts": ts, "agent": agent, "sig": sig}}
    return SIDEBAR + "?" + urlencode(query)
"""

JAVASCRIPT_SIGNER = """\
const crypto = require("crypto");

const SIDEBAR = "{sidebar}";
const SECRET = process.env.TIDINGS_SIDEBAR_SECRET;

function sidebarLink(user, agent = "") {{
  const ts = String(Math.floor(Date.now() / 1000));
  const message = ["sidebar", "{slug}", user, ts, agent].join("\\n");
  const sig = crypto.createHmac("sha256", SECRET).update(message).digest("hex");
  const query = new URLSearchParams({{ product: "{slug}", user, ts, agent, sig }});
  return SIDEBAR + "?" + query;
}}
"""


def signers(product: Product, sidebar: str) -> dict[str, str]:
    """The signer's code, in Python and in JavaScript (Node), for ``product``."""
    return {
        "Python": PYTHON_SIGNER.format(sidebar=sidebar, slug=product.slug),
        "JavaScript (Node)": JAVASCRIPT_SIGNER.format(sidebar=sidebar, slug=product.slug),
    }


@dataclass(frozen=True)
class Trial:
    """A signed link an owner made to try the sidebar, and what to expect of it."""

    url: str
    known: bool  # whether the widget has seen the user: else the link answers 404


def _trial(product: Product, user: str, agent: str) -> Trial:
    """A link to ``user``'s sidebar (an id, or an address the widget signed), made now."""
    text = lookup.check_query(user)
    found = lookup.find(db.session(), product, text, secret_key=current_app.config["SECRET_KEY"])
    params = sidebar_links.sign(
        product,
        found.external_id if found else text,
        agent=agent.strip(),
        now=utcnow(),
    )
    return Trial(sidebar_links.url(current_app.config["BASE_URL"], params), found is not None)


@bp.get("/p/<slug>/support/sidebar", endpoint="support_sidebar")
@role_required(Role.VIEWER)
def sidebar_page(product: Product) -> ResponseReturnValue:
    """How each desk opens the agent sidebar; for owners, its secret and a link to try."""
    sidebar = current_app.config["BASE_URL"].rstrip("/") + sidebar_links.PATH
    is_owner = g.role.allows(Role.OWNER)
    user, agent = request.args.get("user", ""), request.args.get("agent", "")
    trial, errors = None, {}
    if is_owner and "user" in request.args:
        try:
            trial = _trial(product, user, agent)
        except ValidationFailed as refused:
            errors = {
                "user" if name == "q" else name: text for name, text in refused.errors.items()
            }
    return render_template(
        "console/support_sidebar.html",
        product=product,
        sidebar=sidebar,
        template=f"{sidebar}?product={product.slug}&user={{user}}&ts={{ts}}&agent={{agent}}&sig={{sig}}",
        guides=[
            (guide, guide.code.replace("{slug}", product.slug).replace("{sidebar}", sidebar))
            for guide in GUIDES
        ],
        signers=signers(product, sidebar),
        browser_warning=BROWSER_WARNING,
        max_age_minutes=int(sidebar_links.MAX_AGE.total_seconds() // 60),
        is_owner=is_owner,
        user=user,
        agent=agent,
        trial=trial,
        errors=errors,
    ), 422 if errors else 200


@bp.post("/p/<slug>/support/sidebar/rotate")
@role_required(Role.OWNER)
def support_sidebar_rotate(product: Product) -> ResponseReturnValue:
    """Replace the sidebar's secret: every link signed with the old one is refused."""
    sidebar_links.rotate(db.session(), product, by=current_member(), now=utcnow())
    db.session.commit()
    flash(
        _(
            "New sidebar secret made. Put it in your signer (or your Freshdesk app's "
            "settings): links signed with the old one are refused from now on."
        ),
        "warning",
    )
    return redirect(url_for("console.support_sidebar", slug=product.slug))
