"""What a product manager sees and does in the console."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from announcements import apikeys, services
from announcements.models import (
    AuditEvent,
    EndUser,
    Note,
    NoteStatus,
    Product,
    Reaction,
    ReadReceipt,
    Role,
    Subscriber,
    utcnow,
)
from announcements.services import Intent, NoteInput
from tests.conftest import AuthActions, csrf_token
from tests.factories import add_member, make_member, make_note, make_product


@pytest.fixture
def editor_on_acme(session, auth):
    owner = make_member(session, "owner@example.com")
    product = make_product(session, owner=owner, slug="acme", name="Acme")
    auth.login(owner.email)
    return product


def _note_form(client, **overrides: str) -> dict[str, str]:
    form = {
        "csrf_token": csrf_token(client),
        "version": "2.4.0",
        "title": "Dark mode",
        "category": "Added",
        "body_md": "Now **everywhere**.",
        "intent": "save",
    }
    form.update(overrides)
    return form


FIELD_ERROR = re.compile(r'<p class="field-error" id="([\w-]+)-error">([^<]*)</p>')


def field_errors(page: str) -> dict[str, str]:
    """The messages the form shows beside its fields, by field name."""
    return {field: html.unescape(message) for field, message in FIELD_ERROR.findall(page)}


def _count_notes(session) -> int:
    return session.scalar(select(func.count()).select_from(Note))


def _settings_form(client, **overrides: str) -> dict[str, str]:
    """Every field of the settings form, as a browser posts it."""
    form = {
        "csrf_token": csrf_token(client),
        "name": "Acme",
        "slug": "acme",
        "allowed_origins": "",
        "default_locale": "en",
        "logo_url": "",
        "accent_color": "#4f46e5",
        "grace_releases": "1",
        "support_window_days": "14",
        "email_from_name": "",
        "email_reply_to": "",
        "digest_weekday": "0",
        "digest_hour": "9",
        "require_identity": "y",
    }
    form.update(overrides)
    return form


def test_login_with_a_wrong_password_says_so_and_sets_no_session(client, auth, session) -> None:
    make_member(session, "pm@example.com")
    response = auth.login("pm@example.com", "wrong password")
    assert response.status_code == 422
    assert "do not match an account" in response.get_data(as_text=True)
    still_out = client.get("/console/")
    assert still_out.status_code == 302
    assert still_out.headers["Location"].startswith("/console/login")


def test_login_sets_a_hardened_session_cookie(client, auth, session) -> None:
    member = make_member(session, "pm@example.com")
    assert member.password_hash.startswith("scrypt:")
    response = auth.login("PM@example.com")
    assert response.status_code == 302 and response.headers["Location"] == "/console/"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_login_does_not_redirect_off_site(auth, session) -> None:
    make_member(session, "pm@example.com")
    response = auth.login("pm@example.com", next="https://evil.example.com/")
    assert response.headers["Location"] == "/console/"
    assert auth.logout().status_code == 302
    response = auth.login("pm@example.com", next="/console/p/acme/notes")
    assert response.headers["Location"] == "/console/p/acme/notes"


def test_login_is_rate_limited(app_factory) -> None:
    limited = app_factory(RATELIMIT_ENABLED=True, RATELIMIT_LOGIN="3 per minute")
    attempts = AuthActions(limited.test_client())
    responses = [attempts.login("x@example.com", "nope") for _ in range(5)]
    assert [r.status_code for r in responses] == [422, 422, 422, 429, 429]
    assert "Too many attempts" in responses[-1].get_data(as_text=True)


def test_secure_cookies_outside_development(app_factory) -> None:
    production = app_factory(TIDINGS_ENV="production", SECRET_KEY="s" * 40)
    assert production.config["SESSION_COOKIE_SECURE"] is True
    # And the cookie a browser is given says so.
    page = production.test_client().get("/console/login", base_url="https://localhost")
    [cookie] = page.headers.getlist("Set-Cookie")
    assert cookie.startswith("session=")
    assert {"Secure", "HttpOnly", "SameSite=Lax"} <= {part.strip() for part in cookie.split(";")}


def test_an_editor_writes_a_draft_then_publishes_it(client, session, editor_on_acme) -> None:
    response = client.post("/console/p/acme/notes/new", data=_note_form(client))
    assert response.status_code == 302
    note = session.scalar(select(Note))
    assert note.status_at(utcnow()) is NoteStatus.DRAFT
    assert note.body_html == "<p>Now <strong>everywhere</strong>.</p>"
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Draft “Dark mode” saved." in page
    response = client.post(
        f"/console/p/acme/notes/{note.id}", data=_note_form(client, intent="publish")
    )
    assert response.status_code == 302
    session.expire_all()
    assert note.status_at(utcnow()) is NoteStatus.PUBLISHED


def test_scheduling_reads_the_time_in_the_members_zone(client, session, editor_on_acme) -> None:
    client.set_cookie("tz", "Europe/Berlin", path="/console")
    when = (utcnow() + timedelta(days=30)).replace(second=0, microsecond=0)
    berlin = when.astimezone(ZoneInfo("Europe/Berlin"))
    form = _note_form(client, intent="schedule", publish_at=berlin.strftime("%Y-%m-%dT%H:%M"))
    assert client.post("/console/p/acme/notes/new", data=form).status_code == 302
    note = session.scalar(select(Note))
    assert note.published_at == when
    assert note.status_at(utcnow()) is NoteStatus.SCHEDULED


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"title": ""}, "title", "Give the note a title."),
        ({"version": "soon"}, "version", "is not a version we can order"),
        ({"category": "Bogus"}, "category", "Not a valid choice"),
        ({"body_md": "x" * (100 * 1024 + 10)}, "body_md", "over 100 KB"),
        (
            {"intent": "schedule", "publish_at": "2001-01-01T10:00"},
            "publish_at",
            "That time has passed",
        ),
        ({"intent": "schedule", "publish_at": "not a date"}, "publish_at", "Enter a date and time"),
        ({"expires_at": "yesterday"}, "expires_at", "Enter a date and time"),
    ],
)
def test_bad_input_shows_a_message_on_the_form_and_saves_nothing(
    client, session, editor_on_acme, overrides, field, message
) -> None:
    response = client.post("/console/p/acme/notes/new", data=_note_form(client, **overrides))
    assert response.status_code == 422
    errors = field_errors(response.get_data(as_text=True))
    assert list(errors) == [field] and message in errors[field]
    assert _count_notes(session) == 0


def test_a_duplicate_title_in_the_same_version_is_a_form_error(
    client, session, editor_on_acme
) -> None:
    make_note(session, editor_on_acme, version="2.4.0", title="Dark mode")
    response = client.post("/console/p/acme/notes/new", data=_note_form(client))
    assert response.status_code == 422
    assert field_errors(response.get_data(as_text=True)) == {
        "title": "Version 2.4.0 already has a note with this title."
    }
    assert _count_notes(session) == 1


def test_bad_edits_leave_the_note_as_it_was(client, session, editor_on_acme) -> None:
    note = make_note(session, editor_on_acme, title="Exports")
    response = client.post(
        f"/console/p/acme/notes/{note.id}", data=_note_form(client, title="", version="x")
    )
    assert response.status_code == 422
    assert set(field_errors(response.get_data(as_text=True))) == {"title", "version"}
    session.expire_all()
    assert (note.title, note.version) == ("Exports", "1.0.0")


def test_the_preview_uses_the_publishing_sanitiser(client, editor_on_acme) -> None:
    response = client.post(
        "/console/p/acme/preview",
        data={"body_md": "**hi** <img src=x onerror=alert(1)> [x](javascript:alert(1))"},
        headers={"X-CSRFToken": csrf_token(client)},
    )
    assert response.json == {
        "html": '<p><strong>hi</strong>  <a rel="noopener noreferrer nofollow">x</a></p>'
    }


def test_notes_page_groups_by_version_newest_first(client, session, editor_on_acme) -> None:
    for version in ("2.9.1", "2.10.0", "2.10.0-beta.1"):
        make_note(session, editor_on_acme, version=version, title=f"In {version}")
    page = client.get("/console/p/acme/notes").get_data(as_text=True)
    positions = [page.index(f">{v}</h2>") for v in ("2.10.0", "2.10.0-beta.1", "2.9.1")]
    assert positions == sorted(positions)


def test_empty_notes_page_says_what_to_do(client, editor_on_acme) -> None:
    page = client.get("/console/p/acme/notes").get_data(as_text=True)
    assert "Write your first release note" in page


def test_product_settings_validate_and_change_nothing_on_error(
    client, session, editor_on_acme
) -> None:
    form = _settings_form(
        client,
        slug="Not A Slug!",
        allowed_origins="https://app.example.com/path",
        accent_color="red",
        logo_url="http://logo.example.com/a.png",
    )
    response = client.post("/console/p/acme/settings", data=form)
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    errors = field_errors(page)
    expected = {
        "slug": "lowercase letters",
        "allowed_origins": "is not an origin",
        "accent_color": "#4f46e5",
        "logo_url": "https://",
    }
    assert set(errors) == set(expected)
    for field, message in expected.items():
        assert message in errors[field], field
    session.expire_all()
    assert editor_on_acme.slug == "acme" and editor_on_acme.allowed_origins == []


def test_owners_rotate_the_identity_secret_and_only_owners_see_it(
    client, session, auth, editor_on_acme
) -> None:
    old = editor_on_acme.identity_secret
    assert old in client.get("/console/p/acme/settings").get_data(as_text=True)
    client.post("/console/p/acme/settings/rotate-secret", data={"csrf_token": csrf_token(client)})
    session.expire_all()
    assert editor_on_acme.identity_secret != old
    editor = add_member(session, editor_on_acme, Role.EDITOR)
    auth.logout()
    auth.login(editor.email)
    for path in ("/console/p/acme/notes", "/console/p/acme/settings"):
        assert editor_on_acme.identity_secret not in client.get(path).get_data(as_text=True)


def test_the_last_owner_stays(client, session, editor_on_acme) -> None:
    owner = session.scalar(select(Product)).memberships[0].member
    response = client.post(
        f"/console/p/acme/team/{owner.id}/role",
        data={"csrf_token": csrf_token(client), "role": "viewer"},
        follow_redirects=True,
    )
    assert "at least one owner" in response.get_data(as_text=True)
    session.expire_all()
    assert [(m.member_id, m.role) for m in editor_on_acme.memberships] == [(owner.id, Role.OWNER)]


def test_a_change_the_state_forbids_is_refused_with_a_message_and_changes_nothing(
    client, session, editor_on_acme
) -> None:
    product = editor_on_acme
    token = csrf_token(client)
    published = make_note(session, product, title="Live one")
    draft = make_note(session, product, status="draft", title="Half written")

    def post(path: str):
        response = client.post(path, data={"csrf_token": token})
        page = client.get(response.headers["Location"]).get_data(as_text=True)
        return response.headers["Location"], page

    where, page = post(f"/console/p/acme/notes/{published.id}/delete")
    assert where.endswith(f"/notes/{published.id}") and "Only drafts can be deleted" in page
    where, page = post(f"/console/p/acme/notes/{published.id}/publish")
    assert "Only drafts and scheduled notes can be published" in page
    where, page = post(f"/console/p/acme/notes/{draft.id}/email")
    assert "Only published, public notes can be emailed" in page
    owner = product.memberships[0].member
    where, page = post(f"/console/p/acme/team/{owner.id}/remove")
    assert "at least one owner" in page
    session.expire_all()
    assert session.get(Note, published.id).status_at(utcnow()) is NoteStatus.PUBLISHED
    assert [m.member_id for m in product.memberships] == [owner.id]

    where, page = post(f"/console/p/acme/notes/{draft.id}/delete")
    assert where.endswith("/console/p/acme/notes") and "Deleted the draft “Half written”" in page
    assert session.get(Note, draft.id) is None
    key, _ = apikeys.create(session, product, "ci", ["notes:read"], by=owner, now=utcnow())
    where, page = post(f"/console/p/acme/api-keys/{key.id}/revoke")
    assert "Calls with it are refused from now on" in page
    where, page = post(f"/console/p/acme/api-keys/{key.id}/revoke")
    assert "This key is already revoked." in page


def test_the_audit_log_shows_who_did_what(client, session, editor_on_acme) -> None:
    posted = client.post("/console/p/acme/notes/new", data=_note_form(client, intent="publish"))
    assert posted.status_code == 302
    page = client.get("/console/p/acme/audit").get_data(as_text=True)
    assert "note.created" in page and "owner@example.com" in page and "Dark mode" in page
    owner = editor_on_acme.memberships[0].member
    events = session.execute(
        select(AuditEvent.action, AuditEvent.actor_id).order_by(AuditEvent.id)
    ).all()
    assert events == [("product.created", owner.id), ("note.created", owner.id)]


def test_console_pages_forbid_framing_and_inline_script(client, editor_on_acme) -> None:
    response = client.get("/console/p/acme/notes")
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "<script>" not in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("path", "status", "shown"),
    [
        ("/console/p/acme/notes/99999999999999999999", 404, None),
        ("/console/p/acme/notes/2147483648", 404, None),
        # Past the last page is the last page, with the events it holds.
        ("/console/p/acme/audit?page=100000000000000000000", 200, "Created Acme"),
        (
            "/console/p/acme/notes?page=100000000000000000000&status=bogus&category=%00",
            200,
            "<h2>No notes match</h2>",
        ),
    ],
)
def test_crafted_ids_and_pages_never_cause_a_server_error(
    client, editor_on_acme, path, status, shown
) -> None:
    response = client.get(path)
    assert response.status_code == status
    if shown is not None:
        assert shown in response.get_data(as_text=True)


def test_crafted_member_ids_are_not_found(client, editor_on_acme) -> None:
    response = client.post(
        "/console/p/acme/team/99999999999999999999/remove", data={"csrf_token": csrf_token(client)}
    )
    assert response.status_code == 404


def test_settings_show_the_install_snippet_and_hash_samples(client, session, editor_on_acme):
    page = client.get("/console/p/acme/settings").get_data(as_text=True)
    assert f'product: "{editor_on_acme.widget_key}"' in page
    assert "http://127.0.0.1:5000/widget.js" in page
    for language in ("Python", "Node.js", "Ruby", "PHP"):
        assert f"<summary>{language}</summary>" in page
    assert "hash_hmac(" in page and "OpenSSL::HMAC.hexdigest(" in page


def test_owners_choose_how_many_releases_new_users_find_unread(client, session, editor_on_acme):
    form = _settings_form(client)
    bad = client.post("/console/p/acme/settings", data={**form, "grace_releases": "25"})
    assert bad.status_code == 422
    assert field_errors(bad.get_data(as_text=True)) == {
        "grace_releases": "Choose between 0 and 20 releases."
    }
    session.expire_all()
    assert editor_on_acme.grace_releases == 1
    client.post("/console/p/acme/settings", data={**form, "grace_releases": "3"})
    session.expire_all()
    assert editor_on_acme.grace_releases == 3


@pytest.mark.parametrize("days", ["0", "91", "x", "7.5"])
def test_an_attribution_window_outside_1_to_90_whole_days_is_refused(
    client, session, editor_on_acme, days
) -> None:
    bad = client.post(
        "/console/p/acme/settings", data=_settings_form(client, support_window_days=days)
    )
    assert bad.status_code == 422
    errors = field_errors(bad.get_data(as_text=True))
    assert list(errors) == ["support_window_days"]
    if days in ("0", "91"):
        assert errors["support_window_days"] == "Choose a whole number of days from 1 to 90."
    session.expire_all()
    assert editor_on_acme.support_window_days == 14


def test_owners_set_the_attribution_window_and_editors_cannot(
    client, session, auth, editor_on_acme
) -> None:
    page = client.get("/console/p/acme/settings").get_data(as_text=True)
    assert "Attribution window (days)" in page
    assert "within this many days after the note went out" in page
    response = client.post(
        "/console/p/acme/settings", data=_settings_form(client, support_window_days="30")
    )
    assert response.status_code == 302
    session.expire_all()
    assert editor_on_acme.support_window_days == 30
    shown = client.get("/console/p/acme/settings").get_data(as_text=True)
    assert re.search(r'name="support_window_days"[^>]*value="30"', shown)

    editor = add_member(session, editor_on_acme, Role.EDITOR)
    auth.logout()
    auth.login(editor.email)
    refused = client.post(
        "/console/p/acme/settings", data=_settings_form(client, support_window_days="60")
    )
    assert refused.status_code == 403
    session.expire_all()
    assert editor_on_acme.support_window_days == 30


def _audience_rows(*rows: tuple[str, str, str]) -> dict[str, list[str]]:
    return {
        "audience_attribute": [row[0] for row in rows] + [""],
        "audience_op": [row[1] for row in rows] + ["eq"],
        "audience_value": [row[2] for row in rows] + [""],
    }


def test_the_editor_saves_an_audience_rule(client, session, editor_on_acme) -> None:
    rows = _audience_rows(("plan", "in", "pro, team"), ("seats", "gte", "10"))
    response = client.post(
        "/console/p/acme/notes/new", data={**_note_form(client), "audience": "any", **rows}
    )
    assert response.status_code == 302
    note = session.scalar(select(Note))
    assert note.audience == {
        "match": "any",
        "conditions": [
            {"attribute": "plan", "op": "in", "value": ["pro", "team"]},
            {"attribute": "seats", "op": "gte", "value": "10"},
        ],
    }
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert 'value="pro, team"' in page and 'value="seats"' in page


def test_a_bad_audience_rule_is_a_form_error_and_saves_nothing(client, session, editor_on_acme):
    rows = _audience_rows(("seats", "gt", "lots"))
    response = client.post("/console/p/acme/notes/new", data={**_note_form(client), **rows})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    errors = field_errors(page)
    assert list(errors) == ["audience"]
    assert "neither a number nor a version" in errors["audience"]
    assert 'value="lots"' in page  # what was typed stays in the form
    assert _count_notes(session) == 0


def test_a_published_note_shows_its_readers_and_read_rate(client, session, editor_on_acme):
    note = make_note(session, editor_on_acme, now=utcnow() - timedelta(days=1))
    users = [EndUser(product_id=editor_on_acme.id, external_id=f"u{n}") for n in range(4)]
    session.add_all(users)
    session.flush()
    for user in users[:2]:
        session.add(ReadReceipt(end_user_id=user.id, note_id=note.id, channel="widget"))
    session.add(
        Reaction(
            end_user_id=users[0].id,
            note_id=note.id,
            reaction="😕",
            comment="Where is the export button?",
        )
    )
    session.commit()
    page = client.get(f"/console/p/acme/notes/{note.id}").get_data(as_text=True)
    assert "2 users" in page and "50%" in page
    assert "4 users the widget has seen" in page
    assert "Where is the export button?" in page


def test_a_nul_character_in_a_form_is_a_clear_error_and_saves_nothing(
    client, session, editor_on_acme
) -> None:
    response = client.post("/console/p/acme/notes/new", data=_note_form(client, title="a\x00b"))
    assert response.status_code == 400
    assert "not text" in response.get_data(as_text=True)
    assert _count_notes(session) == 0


@pytest.mark.parametrize(
    "zone", ["America", "Etc", "zone.tab", "../../etc/passwd", "Nowhere/At_all"]
)
def test_a_time_zone_cookie_that_is_no_zone_falls_back_to_utc(
    client, session, editor_on_acme, zone
) -> None:
    note = make_note(session, editor_on_acme, title="Exports")
    client.set_cookie("tz", zone, path="/console")
    for path in ("/console/p/acme/notes", f"/console/p/acme/notes/{note.id}"):
        response = client.get(path)
        assert response.status_code == 200
    assert "UTC" in response.get_data(as_text=True)
    when = (utcnow() + timedelta(days=30)).replace(second=0, microsecond=0)
    form = _note_form(client, intent="schedule", publish_at=when.strftime("%Y-%m-%dT%H:%M"))
    assert client.post("/console/p/acme/notes/new", data=form).status_code == 302
    assert session.scalar(select(Note).where(Note.title == "Dark mode")).published_at == when


@pytest.mark.parametrize(
    ("zone", "moment"),
    [
        ("UTC", "9999-12-31T23:59:59-14:00"),
        ("America/Los_Angeles", "9999-12-31T23:59"),
        ("Asia/Tokyo", "0001-01-01T00:00"),
    ],
)
@pytest.mark.parametrize("field", ["publish_at", "expires_at"])
def test_a_time_with_no_utc_equivalent_is_a_form_error(
    client, session, editor_on_acme, zone, moment, field
) -> None:
    client.set_cookie("tz", zone, path="/console")
    form = _note_form(client, intent="schedule" if field == "publish_at" else "save")
    response = client.post("/console/p/acme/notes/new", data={**form, field: moment})
    assert response.status_code == 422
    errors = field_errors(response.get_data(as_text=True))
    assert list(errors) == [field] and "Enter a date and time" in errors[field]
    assert _count_notes(session) == 0


def test_a_time_at_the_calendars_end_shows_in_any_zone(client, session, editor_on_acme) -> None:
    """Stored through the API in UTC, a time near year 9999 has no local time in a zone
    ahead of UTC; the page shows it in UTC rather than failing."""
    end = datetime(9999, 12, 31, 23, 0, tzinfo=UTC)
    note = make_note(session, editor_on_acme, status="draft", expires_at=end)
    services.update_note(
        session,
        note,
        NoteInput(version="1.0.0", title=note.title, category="Added", expires_at=end),
        intent=Intent.SCHEDULE,
        publish_at=end - timedelta(minutes=30),
        by=None,
        now=utcnow(),
    )
    client.set_cookie("tz", "Pacific/Kiritimati", path="/console")
    for path in ("/console/p/acme/notes", f"/console/p/acme/notes/{note.id}"):
        response = client.get(path)
        assert response.status_code == 200
    assert "9999-12-31T22:30" in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "left_out",
    [
        ("allowed_origins",),
        ("name", "grace_releases", "digest_hour", "logo_url"),
        ("support_window_days",),
    ],
)
def test_settings_posted_without_some_fields_are_a_form_error_and_change_nothing(
    client, session, editor_on_acme, left_out
) -> None:
    form = _settings_form(client, name="Acme Analytics", allowed_origins="https://app.example.com")
    assert client.post("/console/p/acme/settings", data=form).status_code == 302
    session.expire_all()
    saved = (editor_on_acme.name, editor_on_acme.allowed_origins, editor_on_acme.catalogue_stamp)
    response = client.post(
        "/console/p/acme/settings",
        data={name: value for name, value in form.items() if name not in left_out},
    )
    assert response.status_code == 422
    assert "This field was not sent. Reload the page" in response.get_data(as_text=True)
    session.expire_all()
    assert (
        editor_on_acme.name,
        editor_on_acme.allowed_origins,
        editor_on_acme.catalogue_stamp,
    ) == saved


def test_a_new_product_posted_with_no_fields_is_a_form_error(client, session, editor_on_acme):
    response = client.post("/console/products/new", data={"csrf_token": csrf_token(client)})
    assert response.status_code == 422
    assert "This field was not sent. Reload the page" in response.get_data(as_text=True)
    assert session.scalar(select(func.count()).select_from(Product)) == 1


@pytest.mark.parametrize(
    ("logo", "message"),
    [
        ("http://logo.example.com/a.png", "must be served over https://"),
        ("javascript:alert(1)", "must be served over https://"),
        ("/static/logo.png", "must be served over https://"),
        ("https://", "full address"),
        ("https:///logo.png", "full address"),
        ("https://logo.example.com/a logo.png", "full address"),
        ('https://logo.example.com/a.png"onerror="alert(1)', "full address"),
        ("https://logo.example.com:99999/a.png", "full address"),
        ("https://user:secret@logo.example.com/a.png", "no user name or password"),
        ("https://logo.example.com/" + "a" * 500, "under 500 characters"),
    ],
)
def test_a_logo_address_that_is_no_https_url_is_a_form_error(
    client, session, editor_on_acme, logo, message
) -> None:
    response = client.post("/console/p/acme/settings", data=_settings_form(client, logo_url=logo))
    assert response.status_code == 422
    errors = field_errors(response.get_data(as_text=True))
    assert list(errors) == ["logo_url"] and message in errors["logo_url"]
    session.expire_all()
    assert editor_on_acme.logo_url is None


def test_an_https_logo_is_saved_and_shown(client, session, editor_on_acme) -> None:
    logo = "https://cdn.example.com/acme/logo.svg?v=2"
    response = client.post("/console/p/acme/settings", data=_settings_form(client, logo_url=logo))
    assert response.status_code == 302
    session.expire_all()
    assert editor_on_acme.logo_url == logo
    assert f'src="{logo}"' in client.get("/changelog/acme").get_data(as_text=True)


def test_removing_a_subscriber_and_exporting_the_list_are_in_the_audit_log(
    client, session, editor_on_acme
) -> None:
    """Both touch personal data; the log names who did it, and the removed subscriber by id
    only, since a removal is often a request to be forgotten."""
    kept, gone = (
        Subscriber(product_id=editor_on_acme.id, email=f"{name}@example.com")
        for name in ("kept", "gone")
    )
    session.add_all([kept, gone])
    session.commit()
    assert client.get("/console/p/acme/subscribers.csv").status_code == 200
    response = client.post(
        f"/console/p/acme/subscribers/{gone.id}/remove",
        data={"csrf_token": csrf_token(client)},
        follow_redirects=True,
    )
    assert "Removed gone@example.com" in response.get_data(as_text=True)
    events = session.execute(
        select(AuditEvent.action, AuditEvent.summary, AuditEvent.actor_id).order_by(AuditEvent.id)
    ).all()
    owner = editor_on_acme.memberships[0].member
    assert events[-2:] == [
        ("subscribers.exported", "Downloaded the subscriber list as CSV", owner.id),
        ("subscriber.removed", f"Removed subscriber #{gone.id}", owner.id),
    ]
    page = client.get("/console/p/acme/audit").get_data(as_text=True)
    assert "subscribers.exported" in page and "subscriber.removed" in page
    assert "gone@example.com" not in page


def test_pages_deny_device_features_and_keep_their_window_to_themselves(
    client, session, editor_on_acme
) -> None:
    make_note(session, editor_on_acme)
    for path in ("/console/p/acme/notes", "/changelog/acme", "/console/login"):
        headers = client.get(path).headers
        policy = headers["Permissions-Policy"]
        for feature in ("camera", "microphone", "geolocation", "payment", "usb"):
            assert f"{feature}=()" in policy
        assert headers["Cross-Origin-Opener-Policy"] == "same-origin"
        assert "Strict-Transport-Security" not in headers  # off unless HSTS_SECONDS is set
    # Host pages load the widget's script from another origin; nothing may stop that.
    with client.get("/widget.js") as script:
        assert script.status_code == 200
        assert "Cross-Origin-Resource-Policy" not in script.headers


def test_hsts_is_sent_over_https_once_the_operator_sets_it(
    app_factory, session, editor_on_acme
) -> None:
    client = app_factory(HSTS_SECONDS=31536000).test_client()
    for path in ("/console/login", "/changelog/acme", "/widget.js", "/api/v1/openapi.json"):
        with client.get(path, base_url="https://localhost") as secure:
            assert secure.headers["Strict-Transport-Security"] == "max-age=31536000"
        with client.get(path) as plain:
            assert "Strict-Transport-Security" not in plain.headers
