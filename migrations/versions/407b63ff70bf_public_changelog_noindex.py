"""The public changelog: a per-product option to keep it out of search engines.

Revision ID: 407b63ff70bf
Revises: 009e48bfb2eb
Create Date: 2026-11-23 01:38:00
"""

import sqlalchemy as sa
from alembic import op

revision = "407b63ff70bf"
down_revision = "009e48bfb2eb"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("product") as batch_op:
        batch_op.add_column(
            sa.Column("noindex", sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade():
    with op.batch_alter_table("product") as batch_op:
        batch_op.drop_column("noindex")
