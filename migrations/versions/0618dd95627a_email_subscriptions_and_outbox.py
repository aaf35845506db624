"""Email: who gets a note by email and when it was queued, the sender per product, the
weekly digest's slot, and what the outbox needs to claim and describe a message.

Revision ID: 0618dd95627a
Revises: 407b63ff70bf
Create Date: 2026-11-23 02:31:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0618dd95627a"
down_revision = "407b63ff70bf"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("note") as batch_op:
        batch_op.add_column(
            sa.Column("email_subscribers", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(sa.Column("emailed_at", sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table("outbox_message") as batch_op:
        batch_op.add_column(sa.Column("payload", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("claimed_by", sa.String(length=128), nullable=True))

    with op.batch_alter_table("product") as batch_op:
        batch_op.add_column(sa.Column("email_from_name", sa.String(length=120), nullable=True))
        batch_op.add_column(sa.Column("email_reply_to", sa.String(length=254), nullable=True))
        batch_op.add_column(
            sa.Column("digest_weekday", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("digest_hour", sa.Integer(), server_default="9", nullable=False))

    with op.batch_alter_table("subscriber") as batch_op:
        batch_op.create_index("ix_subscriber_product_id_status", ["product_id", "status"])


def downgrade():
    with op.batch_alter_table("subscriber") as batch_op:
        batch_op.drop_index("ix_subscriber_product_id_status")

    with op.batch_alter_table("product") as batch_op:
        batch_op.drop_column("digest_hour")
        batch_op.drop_column("digest_weekday")
        batch_op.drop_column("email_reply_to")
        batch_op.drop_column("email_from_name")

    with op.batch_alter_table("outbox_message") as batch_op:
        batch_op.drop_column("claimed_by")
        batch_op.drop_column("payload")

    with op.batch_alter_table("note") as batch_op:
        batch_op.drop_column("emailed_at")
        batch_op.drop_column("email_subscribers")
