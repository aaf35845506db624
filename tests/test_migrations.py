"""The migrations build, on an empty database, exactly the schema the models describe."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from flask_migrate import upgrade
from sqlalchemy import text

from announcements.models import Base
from app import database
from app.extensions import db
from tests.conftest import POSTGRES_URL, create_postgres_database, drop_postgres_database, make_app


def _upgrade_and_compare(url: str, instance) -> list:
    app = make_app(url, instance)
    with app.app_context():
        upgrade()
        with db.engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    database.dispose(app)
    return differences


def test_sqlite_upgrade_matches_the_models(tmp_path) -> None:
    assert _upgrade_and_compare(f"sqlite:///{tmp_path / 'fresh.db'}", tmp_path / "instance") == []


@pytest.mark.skipif(
    not POSTGRES_URL, reason="PostgreSQL is not configured: run the suite with `make test`"
)
def test_postgresql_upgrade_matches_the_models(tmp_path) -> None:
    url = create_postgres_database("tidings_migrations")
    try:
        assert _upgrade_and_compare(url, tmp_path / "instance") == []
    finally:
        drop_postgres_database(url)


def test_upgrading_a_populated_sqlite_database_keeps_every_row(tmp_path) -> None:
    """The audit's migration rebuilds every SQLite table (for AUTOINCREMENT) with foreign
    keys on ``ON DELETE CASCADE``: a rebuild that dropped a parent with the pragma on
    would take its children along."""
    app = make_app(f"sqlite:///{tmp_path / 'old.db'}", tmp_path / "instance")
    with app.app_context():
        upgrade(revision="6e4cd86dccb7")
        now = "2026-11-01 10:00:00"
        statements = [
            "INSERT INTO team_member VALUES (1, 'a@example.com', '', 'x', 1, :now, NULL)",
            "INSERT INTO product (id, slug, name, widget_key, identity_secret, require_identity,"
            " allowed_origins, default_locale, accent_color, grace_releases, noindex,"
            " catalogue_stamp, digest_weekday, digest_hour, created_at)"
            " VALUES (1, 'p', 'P', 'k', 's', 1, '[]', 'en', '#000000', 1, 0, 0, 0, 9, :now)",
            "INSERT INTO membership VALUES (1, 1, 1, 'owner', :now)",
            "INSERT INTO end_user (id, product_id, external_id, attributes, first_seen_at,"
            " last_seen_at) VALUES (1, 1, 'u', '{}', :now, :now)",
        ]
        for number, title in enumerate(["Same", " same ", "Other"], start=1):
            statements.append(
                "INSERT INTO note (id, product_id, version, locale, title, body_md, body_html,"
                " category, is_important, is_internal, email_subscribers, created_at,"
                f" updated_at) VALUES ({number}, 1, '1.0', 'en', '{title}', '', '', 'Added',"
                " 0, 0, 0, :now, :now)"
            )
            statements.append(f"INSERT INTO read_receipt VALUES (1, {number}, :now, 'widget')")
        for number in (1, 2):
            statements.append(
                "INSERT INTO subscriber (id, product_id, email, status, frequency, categories,"
                f" hard_bounces, created_at) VALUES ({number}, 1, 's{number}@example.com',"
                " 'confirmed', 'every', '[]', 0, :now)"
            )
        statements.append(
            "INSERT INTO outbox_message (id, product_id, subscriber_id, note_id, kind, status,"
            " attempts, created_at, next_attempt_at) VALUES (1, 1, 2, 1, 'note', 'queued', 0,"
            " :now, :now)"
        )
        for statement in statements:
            db.session.execute(text(statement), {"now": now})
        db.session.commit()

        upgrade()
        counts = {
            table: db.session.scalar(text(f"SELECT count(*) FROM {table}"))
            for table in ("membership", "note", "read_receipt", "subscriber", "outbox_message")
        }
        assert counts == {
            "membership": 1,
            "note": 3,
            "read_receipt": 3,
            "subscriber": 2,
            "outbox_message": 1,
        }
        live = db.session.scalars(
            text("SELECT id FROM note WHERE archived_at IS NULL ORDER BY id")
        ).all()
        assert live == [1, 3]  # the later copy of "Same" is archived, nothing deleted
        assert db.session.scalar(text("SELECT note_id FROM audit_event")) == 2
        assert db.session.scalar(text("SELECT catalogue_stamp FROM product")) == 1
        keys = db.session.scalars(text("SELECT link_key FROM subscriber")).all()
        assert len(set(keys)) == 2 and all(len(key) >= 16 for key in keys)
        assert db.session.execute(text("PRAGMA foreign_key_check")).all() == []
        # The user seen before the widget kept days has the day it last saw them.
        days = db.session.execute(text("SELECT * FROM end_user_day")).all()
        assert [tuple(day) for day in days] == [
            (1, "2026-11-01", 1, "2026-11-01 10:00:00", None, None, None)
        ]
        db.session.execute(text("DELETE FROM subscriber WHERE id = 2"))
        db.session.execute(
            text(
                "INSERT INTO subscriber (product_id, email, status, frequency, categories,"
                " hard_bounces, created_at, link_key) VALUES (1, 'new@example.com', 'pending',"
                " 'every', '[]', 0, :now, 'k')"
            ),
            {"now": now},
        )
        assert db.session.scalar(text("SELECT max(id) FROM subscriber")) == 3
        db.session.rollback()
    database.dispose(app)
