"""The migrations build, on an empty database, exactly the schema the models describe."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from flask_migrate import upgrade

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
