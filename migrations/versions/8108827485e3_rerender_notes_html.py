"""Notes' stored HTML, rendered again: lists nest by two or four spaces, ~~strikethrough~~,
bare links and task lists. A data migration; the schema does not change.

A note's HTML is rendered when it is saved and stored, so a change to the renderer reaches
older notes only when it is rendered again, here through the same domain function as
``flask notes rerender``. A later change to the renderer adds a migration like this one.

Revision ID: 8108827485e3
Revises: b41c9e2d7a10
Create Date: 2026-12-02 10:00:00
"""

import logging

from alembic import context, op
from sqlalchemy.orm import Session

from announcements import rerender

revision = "8108827485e3"
down_revision = "b41c9e2d7a10"
branch_labels = None
depends_on = None

logger = logging.getLogger("alembic.runtime.migration")


def upgrade():
    if context.is_offline_mode():
        logger.warning("Rendering needs the database: run `flask notes rerender` after this.")
        return
    # The session joins the migration's transaction, which Alembic commits.
    session = Session(bind=op.get_bind())
    try:
        report = rerender.rerender(session)
    finally:
        session.close()
    logger.info(
        "Rendered notes again: checked %d, changed %d, failed %d.",
        report.checked,
        report.changed,
        len(report.failures),
    )
    for failure in report.failures:
        logger.warning("Kept the stored HTML of %s: it %s.", failure.what, failure.reason)


def downgrade():
    # The HTML stays as this renderer made it; the older code renders it its own way
    # again with `flask notes rerender`.
    pass
