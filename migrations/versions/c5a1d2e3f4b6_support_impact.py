"""Support impact: help-desk connections and their tickets, each note's support topics
and hold-back share, who is in which hold-back group, the per-note figures the worker
rolls up, the attribution window, and the keyed hash of an end user's signed address.

Receipts are indexed by note with the reader, for counting a note's readers.

Revision ID: c5a1d2e3f4b6
Revises: 8108827485e3
Create Date: 2026-12-01 09:11:23
"""

import sqlalchemy as sa
from alembic import op

from announcements.models import UTCDateTime


# revision identifiers, used by Alembic.
revision = "c5a1d2e3f4b6"
down_revision = "8108827485e3"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "support_connection",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column(
            "desk",
            sa.Enum(
                "zendesk",
                "intercom",
                "helpscout",
                "freshdesk",
                name="supportdesk",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("secret", sa.String(length=200), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_delivery_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("deliveries", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["team_member.id"],
            name=op.f("fk_support_connection_created_by_id_team_member"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["product.id"],
            name=op.f("fk_support_connection_product_id_product"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_support_connection")),
        sa.UniqueConstraint(
            "product_id", "source", name=op.f("uq_support_connection_product_id_source")
        ),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "holdback_assignment",
        sa.Column("note_id", sa.Integer(), nullable=False),
        sa.Column("end_user_id", sa.Integer(), nullable=False),
        sa.Column("control", sa.Boolean(), nullable=False),
        sa.Column("assigned_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["end_user_id"],
            ["end_user.id"],
            name=op.f("fk_holdback_assignment_end_user_id_end_user"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["note_id"],
            ["note.id"],
            name=op.f("fk_holdback_assignment_note_id_note"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("note_id", "end_user_id", name=op.f("pk_holdback_assignment")),
    )
    op.create_table(
        "support_impact",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("scope", sa.String(length=80), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("note_id", sa.Integer(), nullable=True),
        sa.Column("figures", sa.JSON(), nullable=False),
        sa.Column("computed_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["note_id"],
            ["note.id"],
            name=op.f("fk_support_impact_note_id_note"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["product.id"],
            name=op.f("fk_support_impact_product_id_product"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_support_impact")),
        sa.UniqueConstraint("product_id", "scope", name=op.f("uq_support_impact_product_id_scope")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("support_impact", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_support_impact_note_id"), ["note_id"], unique=False)

    op.create_table(
        "ticket",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("connection_id", sa.Integer(), nullable=True),
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("external_id", sa.String(length=128), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("received_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("end_user_id", sa.Integer(), nullable=True),
        sa.Column("requester_external_id", sa.String(length=255), nullable=True),
        sa.Column("requester_key", sa.String(length=64), nullable=True),
        sa.Column("app_version", sa.String(length=64), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("tag_text", sa.Text(), nullable=False),
        sa.Column("subject", sa.String(length=500), nullable=True),
        sa.Column("subject_key", sa.String(length=500), nullable=False),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["support_connection.id"],
            name=op.f("fk_ticket_connection_id_support_connection"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["end_user_id"],
            ["end_user.id"],
            name=op.f("fk_ticket_end_user_id_end_user"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["product.id"],
            name=op.f("fk_ticket_product_id_product"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ticket")),
        sa.UniqueConstraint(
            "product_id",
            "source",
            "external_id",
            name=op.f("uq_ticket_product_id_source_external_id"),
        ),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ticket_end_user_id_created_at"),
            ["end_user_id", "created_at"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_ticket_product_id_created_at"),
            ["product_id", "created_at"],
            unique=False,
        )

    with op.batch_alter_table("end_user", schema=None) as batch_op:
        batch_op.add_column(sa.Column("email_key", sa.String(length=64), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_end_user_product_id_email_key"),
            ["product_id", "email_key"],
            unique=False,
        )

    with op.batch_alter_table("note", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("support_topics", sa.JSON(), server_default="[]", nullable=False)
        )
        batch_op.add_column(
            sa.Column("holdback_percent", sa.Integer(), server_default="0", nullable=False)
        )

    with op.batch_alter_table("read_receipt", schema=None) as batch_op:
        batch_op.drop_index("ix_read_receipt_note_id")
        batch_op.create_index(
            batch_op.f("ix_read_receipt_note_id_end_user_id"),
            ["note_id", "end_user_id"],
            unique=False,
        )

    with op.batch_alter_table("product", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("support_window_days", sa.Integer(), server_default="14", nullable=False)
        )


def downgrade():
    with op.batch_alter_table("read_receipt", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_read_receipt_note_id_end_user_id"))
        batch_op.create_index("ix_read_receipt_note_id", ["note_id"], unique=False)

    with op.batch_alter_table("product", schema=None) as batch_op:
        batch_op.drop_column("support_window_days")

    with op.batch_alter_table("note", schema=None) as batch_op:
        batch_op.drop_column("holdback_percent")
        batch_op.drop_column("support_topics")

    with op.batch_alter_table("end_user", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_end_user_product_id_email_key"))
        batch_op.drop_column("email_key")

    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ticket_product_id_created_at"))
        batch_op.drop_index(batch_op.f("ix_ticket_end_user_id_created_at"))

    op.drop_table("ticket")
    with op.batch_alter_table("support_impact", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_support_impact_note_id"))

    op.drop_table("support_impact")
    op.drop_table("holdback_assignment")
    op.drop_table("support_connection")
