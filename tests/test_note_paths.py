"""Every way a note changes reaches the widget at once, on SQLite and PostgreSQL: the
console's forms, the management API, a changelog import, a scheduled note going live,
an expiry, archiving, restoring, publishing and deleting a draft, and a translation.

The widget asks again with the ETag of its last answer, as an open widget does: a 304,
or an answer without the change, is a stale widget. Time passes by moving the widget's
clock, never by sleeping; a change of time writes nothing, and the catalogue stamp stays.
"""

from __future__ import annotations

import io
from datetime import datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from announcements import apikeys, note_rules, services
from announcements.errors import ValidationFailed
from announcements.models import NoteTranslation, Product, utcnow
from announcements.note_rules import NoteInput
from app.api import widget as widget_api
from tests.conftest import AuthActions, csrf_token
from tests.factories import make_member, make_note, make_product
from tests.test_widget_api import ORIGIN, user_hash

NOTE = {"version": "2.5.0", "title": "Accents", "category": "Fixed"}


class Clock:
    """The widget's clock: now, plus however far the test has moved it on."""

    def __init__(self) -> None:
        self.ahead = timedelta()

    def __call__(self) -> datetime:
        return utcnow() + self.ahead


class OpenWidget:
    """One end user's open widget, asking again with the ETag of its last answer."""

    def __init__(self, client: FlaskClient, product: Product) -> None:
        self.client = client
        self.url = f"/api/v1/widget/{product.widget_key}/notes"
        self.query = {"user_id": "reader", "user_hash": user_hash(product, "reader")}
        self.etag: str | None = None

    def titles(self, *, changed: bool = True) -> set[str]:
        """The titles it shows now; with ``changed``, a 304 fails the test."""
        headers = {"If-None-Match": self.etag} if self.etag else {}
        answer = self.client.get(self.url, query_string=self.query, headers=headers)
        if answer.status_code == 304 and not changed:
            return self.shown
        assert answer.status_code == 200, "the widget was told nothing changed"
        self.etag = answer.headers["ETag"]
        self.shown = {note["title"] for note in answer.get_json()["notes"]}
        return self.shown


class Console:
    """A product's owner in the console, posting its forms."""

    def __init__(self, client: FlaskClient, slug: str) -> None:
        self.client = client
        self.base = f"/console/p/{slug}/notes"

    def write(self, title: str, *, intent: str, note_id: int | None = None) -> int:
        form = {
            "csrf_token": csrf_token(self.client),
            "version": "2.4.0",
            "title": title,
            "category": "Added",
            "body_md": f"{title}, in detail.",
            "intent": intent,
        }
        url = f"{self.base}/{note_id}" if note_id else f"{self.base}/new"
        answer = self.client.post(url, data=form)
        assert answer.status_code == 302, answer.get_data(as_text=True)
        return int(answer.headers["Location"].rsplit("/", 1)[1])

    def act(self, note_id: int, action: str) -> None:
        answer = self.client.post(
            f"{self.base}/{note_id}/{action}", data={"csrf_token": csrf_token(self.client)}
        )
        assert answer.status_code == 302


class Api:
    """A pipeline holding a key with every note scope."""

    def __init__(self, client: FlaskClient, session: Session, product: Product) -> None:
        scopes = ["notes:read", "notes:write", "import"]
        _, raw = apikeys.create(session, product, "ci", scopes, by=None, now=utcnow())
        self.client = client
        self.headers = {"Authorization": f"Bearer {raw}"}
        self.base = f"/api/v1/products/{product.slug}"

    def call(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        answer = self.client.open(self.base + path, method=method, headers=self.headers, **kwargs)
        assert answer.status_code == status, answer.get_json()
        return answer.get_json()

    def write(self, title: str, **fields: Any) -> int:
        note = {"version": "2.5.0", "title": title, "category": "Fixed", **fields}
        return int(self.call("POST", "/notes", 201, json=note)["id"])

    def import_changelog(self, text: str) -> None:
        self.call(
            "POST",
            "/import",
            data={"file": (io.BytesIO(text.encode()), "CHANGELOG.md"), "publish": "true"},
            content_type="multipart/form-data",
        )


def stamp(session: Session, product: Product) -> int:
    return int(session.scalar(select(Product.catalogue_stamp).where(Product.id == product.id)) or 0)


@pytest.fixture
def product(session: Session, auth: AuthActions) -> Product:
    owner = make_member(session, "owner@example.com")
    made = make_product(session, owner=owner, slug="acme", allowed_origins=(ORIGIN,))
    auth.login(owner.email)
    return made


def test_every_way_of_changing_a_note_shows_in_the_widget_at_once(
    app: Flask,
    client: FlaskClient,
    session: Session,
    product: Product,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock()
    monkeypatch.setattr(widget_api, "utcnow", clock)
    widget = OpenWidget(app.test_client(), product)
    console, api = Console(client, product.slug), Api(app.test_client(), session, product)
    assert widget.titles() == set()

    # The console.
    dark = console.write("Dark mode", intent="publish")
    assert widget.titles() == {"Dark mode"}
    console.write("Dark mode everywhere", intent="save", note_id=dark)
    assert widget.titles() == {"Dark mode everywhere"}

    # The management API.
    pdf = api.write("PDF export", publish=True)
    assert widget.titles() == {"Dark mode everywhere", "PDF export"}
    api.call("PATCH", f"/notes/{pdf}", json={"title": "PDF and CSV export"})
    assert widget.titles() == {"Dark mode everywhere", "PDF and CSV export"}

    # A changelog import, then the same file with its entry edited.
    api.import_changelog("## 3.0.0 - 2024-01-02\n### Added\n- Offline mode\n")
    assert "Offline mode" in widget.titles()
    api.import_changelog("## 3.0.0 - 2024-01-02\n### Added\n- Offline mode for teams\n")
    assert "Offline mode" not in widget.titles()
    assert "Offline mode for teams" in widget.shown

    # A scheduled note going live, and a note expiring: time passes, nothing is written.
    api.write("Soon", publish_at=(utcnow() + timedelta(hours=1)).isoformat())
    api.write("Briefly", publish=True, expires_at=(utcnow() + timedelta(hours=3)).isoformat())
    assert "Soon" not in widget.titles() and "Briefly" in widget.shown
    before = stamp(session, product)
    clock.ahead = timedelta(hours=2)
    assert {"Soon", "Briefly"} <= widget.titles()
    clock.ahead = timedelta(hours=4)
    assert "Briefly" not in widget.titles() and "Soon" in widget.shown
    assert stamp(session, product) == before

    # Archiving and restoring, in the console and the API.
    console.act(dark, "archive")
    assert "Dark mode everywhere" not in widget.titles()
    console.act(dark, "restore")
    assert "Dark mode everywhere" in widget.titles()
    api.call("POST", f"/notes/{pdf}/archive")
    assert "PDF and CSV export" not in widget.titles()

    # A draft, published in the console; another, deleted unseen.
    draft = console.write("Keyboard shortcuts", intent="save")
    assert "Keyboard shortcuts" not in widget.titles(changed=False)
    console.act(draft, "publish")
    assert "Keyboard shortcuts" in widget.titles()
    unseen = api.write("Never mind")
    before = stamp(session, product)
    api.call("DELETE", f"/notes/{unseen}", 204)
    assert stamp(session, product) > before  # caches reload, though the widget shows the same
    assert "Never mind" not in widget.titles(changed=False)


def test_a_translation_moves_the_catalogue_stamp(session: Session, product: Product) -> None:
    """No service writes translations yet: whichever does will move the stamp."""
    note = make_note(session, product)
    before = stamp(session, product)
    session.add(NoteTranslation(note=note, locale="fr", title="Mode sombre", body_md="Oui."))
    session.commit()
    assert stamp(session, product) == before + 1
    translation = session.scalar(select(NoteTranslation))
    assert translation is not None
    translation.title = "Le mode sombre"
    session.commit()
    assert stamp(session, product) == before + 2


def test_a_product_settings_change_moves_the_stamp_and_a_refused_write_does_not(
    session: Session, product: Product
) -> None:
    before = stamp(session, product)
    product.accent_color = "#000000"
    session.commit()
    assert stamp(session, product) == before + 1
    product.accent_color = "#000000"  # the same colour: no change
    session.commit()
    make_note(session, product, title="Taken")
    with pytest.raises(ValidationFailed):
        make_note(session, product, title="taken")
    session.rollback()
    assert stamp(session, product) == before + 2


def test_the_api_counts_the_body_in_bytes_as_the_note_rules_do(
    app: Flask, session: Session, product: Product
) -> None:
    accented = "é" * (note_rules.MAX_BODY_BYTES // 2 + 1)  # fewer characters than bytes
    assert len(accented) < note_rules.MAX_BODY_BYTES
    api = Api(app.test_client(), session, product)
    refused = api.call("POST", "/notes", 422, json={**NOTE, "body_md": accented})
    assert refused["errors"] == {"body_md": note_rules.body_problem(accented)}
    with pytest.raises(ValidationFailed) as caught:
        services.create_note(
            session, product, NoteInput(**NOTE, body_md=accented), by=None, now=utcnow()
        )
    assert caught.value.errors == refused["errors"]


def test_the_mail_worker_marking_a_note_emailed_leaves_the_stamp(
    session: Session, product: Product
) -> None:
    """It holds the note's row as it does: taking the product's too could deadlock with an
    editor, who takes the product's row first."""
    note = make_note(session, product)
    before = stamp(session, product)
    note.emailed_at = utcnow()
    session.commit()
    assert stamp(session, product) == before
