"""The widget: how many releases a new user finds unread, and who was active when.

``product.grace_releases`` starts at 1 for existing products (the latest release).
The index on ``end_user (product_id, last_seen_at)`` serves the console's read rate,
which counts the users seen since a note was published.

Revision ID: 009e48bfb2eb
Revises: 602b702f8c57
Create Date: 2026-11-23 00:02:32.398743
"""

import sqlalchemy as sa
from alembic import op

revision = "009e48bfb2eb"
down_revision = "602b702f8c57"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("product") as batch_op:
        batch_op.add_column(
            sa.Column("grace_releases", sa.Integer(), server_default="1", nullable=False)
        )
    op.create_index(
        "ix_end_user_product_id_last_seen_at", "end_user", ["product_id", "last_seen_at"]
    )


def downgrade():
    op.drop_index("ix_end_user_product_id_last_seen_at", table_name="end_user")
    with op.batch_alter_table("product") as batch_op:
        batch_op.drop_column("grace_releases")
