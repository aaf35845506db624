"""Rendering stored notes again: ``flask notes rerender`` and the migration that runs it.

Stale HTML is written straight into the database, as an older renderer left it; the
command and the migration must replace it with what the renderer makes now, leave the
rest alone, and move the catalogue stamp of each product whose notes changed.
"""

from __future__ import annotations

import pytest
from flask_migrate import upgrade
from sqlalchemy import select, text, update

from announcements import rendering, rerender
from announcements.models import Note, NoteTranslation, Product, utcnow
from app import database
from app.extensions import db
from tests.conftest import POSTGRES_URL, create_postgres_database, drop_postgres_database, make_app
from tests.factories import make_note, make_product

NESTED_MD = "- Importer\n  - reads two-space lists\n- ~~Withdrawn~~ https://example.com"
# What the renderer before issue 13 stored for NESTED_MD.
OLD_HTML = (
    "<ul>\n<li>Importer</li>\n<li>reads two-space lists</li>\n"
    "<li>~~Withdrawn~~ https://example.com</li>\n</ul>"
)
NEW_HTML = rendering.render(NESTED_MD)


def _stale(session, row: Note | NoteTranslation, body_md: str = NESTED_MD) -> None:
    """Store ``body_md`` with the HTML an older renderer made, as the database holds it."""
    table = type(row)
    session.execute(
        update(table).where(table.id == row.id).values(body_md=body_md, body_html=OLD_HTML)
    )
    session.commit()


def _stamp(session, product: Product) -> int:
    return session.scalar(select(Product.catalogue_stamp).where(Product.id == product.id))


def _html(session, row: Note | NoteTranslation) -> str:
    table = type(row)
    return session.scalar(select(table.body_html).where(table.id == row.id))


@pytest.fixture
def two_products(session):
    """Product a with a stale note, a current one and a stale translation; b with a stale
    note."""
    a, b = make_product(session, slug="a"), make_product(session, slug="b")
    stale_a = make_note(session, a, title="Stale")
    make_note(session, a, title="Current", body_md="Already *right*.")
    translation = NoteTranslation(note=stale_a, locale="fr", title="Vieille", body_md="")
    session.add(translation)
    session.commit()
    stale_b = make_note(session, b)
    for row in (stale_a, translation, stale_b):
        _stale(session, row)
    return a, b, stale_a, translation, stale_b


def test_a_dry_run_counts_what_would_change_and_changes_nothing(runner, session, two_products):
    a, b, stale_a, translation, stale_b = two_products
    stamps = _stamp(session, a), _stamp(session, b)
    result = runner.invoke(args=["notes", "rerender", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert result.output == "Checked 4, would change 3 (a, b), failed 0.\n"
    session.expire_all()
    assert [_html(session, row) for row in (stale_a, translation, stale_b)] == [OLD_HTML] * 3
    assert (_stamp(session, a), _stamp(session, b)) == stamps


def test_rerender_stores_the_new_html_and_moves_the_stamps_of_what_changed(
    runner, session, two_products
):
    a, b, stale_a, translation, stale_b = two_products
    stamp_a, stamp_b = _stamp(session, a), _stamp(session, b)
    updated_at = stale_a.updated_at
    result = runner.invoke(args=["notes", "rerender", "--product", "a"])
    assert result.exit_code == 0, result.output
    assert result.output == "Checked 3, changed 2 (a), failed 0.\n"
    session.expire_all()
    assert _html(session, stale_a) == _html(session, translation) == NEW_HTML
    assert "<del>Withdrawn</del>" in NEW_HTML and '<a href="https://example.com"' in NEW_HTML
    assert _html(session, stale_b) == OLD_HTML  # another product's
    assert (_stamp(session, a), _stamp(session, b)) == (stamp_a + 1, stamp_b)
    assert session.get(Note, stale_a.id).updated_at == updated_at  # nobody edited it
    again = runner.invoke(args=["notes", "rerender"])
    assert again.output == "Checked 4, changed 1 (b), failed 0.\n"
    assert runner.invoke(args=["notes", "rerender"]).output == "Checked 4, changed 0, failed 0.\n"


def test_a_body_too_intricate_to_format_keeps_its_html_and_is_reported(runner, session):
    product = make_product(session, slug="a")
    note = make_note(session, product, version="2.0.0")
    _stale(session, note, body_md="[" * 8000)
    result = runner.invoke(args=["notes", "rerender"])
    assert result.exit_code == 0, result.output
    assert result.output == (
        f"  failed    note {note.id} (2.0.0): takes more than {rendering.CPU_SECONDS} s "
        "of CPU time to format\nChecked 1, changed 0, failed 1.\n"
    )
    session.expire_all()
    assert _html(session, note) == OLD_HTML


def test_a_body_edited_while_rendering_keeps_the_html_its_save_made(
    session, two_products, monkeypatch
):
    a, _, stale_a, _, _ = two_products
    render = rendering.render

    def render_while_an_editor_saves(body_md: str) -> str:
        # The editor's save commits first, with HTML of its own.
        session.execute(
            update(Note)
            .where(Note.id == stale_a.id)
            .values(body_md="Edited.", body_html="<p>Edited.</p>")
        )
        return render(body_md)

    monkeypatch.setattr(rendering, "render", render_while_an_editor_saves)
    report = rerender.rerender(session, product=a)
    assert (report.checked, report.changed) == (3, 1)  # the translation only
    assert _html(session, stale_a) == "<p>Edited.</p>"


def test_an_unknown_product_is_a_clear_error(runner, session) -> None:
    result = runner.invoke(args=["notes", "rerender", "--product", "nope"])
    assert result.exit_code != 0
    assert "No product with the slug nope." in result.output


MIGRATION = "8108827485e3"


def _upgrade_renders_stale_html(url: str, instance) -> None:
    app = make_app(url, instance)
    with app.app_context():
        upgrade(revision="b41c9e2d7a10")
        now = utcnow()
        rows = {"md": NESTED_MD, "html": OLD_HTML, "now": now, "true": True, "false": False}
        for statement in (
            "INSERT INTO product (id, slug, name, widget_key, identity_secret, require_identity,"
            " allowed_origins, default_locale, accent_color, catalogue_stamp, created_at)"
            " VALUES (1, 'p', 'P', 'k', 's', :true, '[]', 'en', '#000000', 7, :now)",
            "INSERT INTO note (id, product_id, version, locale, title, title_key, body_md,"
            " body_html, category, is_important, is_internal, created_at, updated_at)"
            " VALUES (1, 1, '1.0', 'en', 'T', 'k', :md, :html, 'Added', :false, :false, :now,"
            " :now)",
            "INSERT INTO note_translation (id, note_id, locale, title, body_md, body_html,"
            " updated_at) VALUES (1, 1, 'fr', 'T', :md, :html, :now)",
        ):
            db.session.execute(text(statement), rows)
        db.session.commit()
        upgrade(revision=MIGRATION)
        stored = db.session.execute(
            text(
                "SELECT note.body_html, note_translation.body_html, product.catalogue_stamp"
                " FROM note JOIN note_translation ON note_translation.note_id = note.id"
                " JOIN product ON product.id = note.product_id"
            )
        ).one()
        assert tuple(stored) == (NEW_HTML, NEW_HTML, 8)
        db.session.remove()
    database.dispose(app)


def test_the_migration_renders_stored_html_again_on_sqlite(tmp_path) -> None:
    _upgrade_renders_stale_html(f"sqlite:///{tmp_path / 'old.db'}", tmp_path / "instance")


@pytest.mark.skipif(
    not POSTGRES_URL, reason="PostgreSQL is not configured: run the suite with `make test`"
)
def test_the_migration_renders_stored_html_again_on_postgresql(tmp_path) -> None:
    url = create_postgres_database("tidings_rerender")
    try:
        _upgrade_renders_stale_html(url, tmp_path / "instance")
    finally:
        drop_postgres_database(url)
