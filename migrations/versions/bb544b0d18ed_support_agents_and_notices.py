"""Support agents and notices: acknowledgements of must-acknowledge notes and their
escalations by e-mail, notes agents send to one user, what end users about to write to
support were shown and answered, the agent sidebar's secret, and outbox messages unique
per note, subscriber and kind (a note may now reach a subscriber as published, from an
agent and as an escalation); subscribers indexed by their end user.

Revision ID: bb544b0d18ed
Revises: c5a1d2e3f4b6
Create Date: 2026-12-01 12:05:58
"""

import secrets

import sqlalchemy as sa
from alembic import op

from announcements.models import UTCDateTime


# revision identifiers, used by Alembic.
revision = "bb544b0d18ed"
down_revision = "c5a1d2e3f4b6"
branch_labels = None
depends_on = None

# SQLite rebuilds a table to change its constraints; these keep their ids never reused.
AUTOINCREMENT = {"sqlite_autoincrement": True}


def upgrade():
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    if sqlite:
        # Rebuilding a table drops the old one; with foreign keys on, that would first
        # delete its rows and cascade to their children. This is the migration's first
        # statement, before SQLite opens a transaction, so the pragma takes effect.
        op.execute("PRAGMA foreign_keys=OFF")

    op.create_table(
        "acknowledgement",
        sa.Column("end_user_id", sa.Integer(), nullable=False),
        sa.Column("note_id", sa.Integer(), nullable=False),
        sa.Column("acknowledged_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["end_user_id"],
            ["end_user.id"],
            name=op.f("fk_acknowledgement_end_user_id_end_user"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["note_id"],
            ["note.id"],
            name=op.f("fk_acknowledgement_note_id_note"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("end_user_id", "note_id", name=op.f("pk_acknowledgement")),
    )
    with op.batch_alter_table("acknowledgement", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_acknowledgement_note_id_end_user_id"),
            ["note_id", "end_user_id"],
            unique=False,
        )

    op.create_table(
        "agent_send",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("note_id", sa.Integer(), nullable=False),
        sa.Column("end_user_id", sa.Integer(), nullable=False),
        sa.Column("sent_by_id", sa.Integer(), nullable=True),
        sa.Column("agent", sa.String(length=254), nullable=False),
        sa.Column("via", sa.String(length=16), nullable=False),
        sa.Column("sent_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("emailed", sa.Boolean(), nullable=False),
        sa.Column("read_at", UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["end_user_id"],
            ["end_user.id"],
            name=op.f("fk_agent_send_end_user_id_end_user"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["note_id"], ["note.id"], name=op.f("fk_agent_send_note_id_note"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["product.id"],
            name=op.f("fk_agent_send_product_id_product"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["sent_by_id"],
            ["team_member.id"],
            name=op.f("fk_agent_send_sent_by_id_team_member"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_send")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("agent_send", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_agent_send_end_user_id_read_at"),
            ["end_user_id", "read_at"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_agent_send_product_id_sent_at"), ["product_id", "sent_at"], unique=False
        )

    op.create_table(
        "help_request",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("token", sa.String(length=32), nullable=False),
        sa.Column("end_user_id", sa.Integer(), nullable=True),
        sa.Column("query", sa.String(length=500), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.Column("answered_note_id", sa.Integer(), nullable=True),
        sa.Column("decided_at", UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["answered_note_id"],
            ["note.id"],
            name=op.f("fk_help_request_answered_note_id_note"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["end_user_id"],
            ["end_user.id"],
            name=op.f("fk_help_request_end_user_id_end_user"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["product.id"],
            name=op.f("fk_help_request_product_id_product"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_help_request")),
        sa.UniqueConstraint("token", name=op.f("uq_help_request_token")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("help_request", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_help_request_answered_note_id"), ["answered_note_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_help_request_end_user_id"), ["end_user_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_help_request_product_id_created_at"),
            ["product_id", "created_at"],
            unique=False,
        )

    op.create_table(
        "escalation",
        sa.Column("note_id", sa.Integer(), nullable=False),
        sa.Column("end_user_id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=True),
        sa.Column("escalated_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["end_user_id"],
            ["end_user.id"],
            name=op.f("fk_escalation_end_user_id_end_user"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["note_id"], ["note.id"], name=op.f("fk_escalation_note_id_note"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscriber.id"],
            name=op.f("fk_escalation_subscriber_id_subscriber"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("note_id", "end_user_id", name=op.f("pk_escalation")),
    )
    op.create_table(
        "help_shown",
        sa.Column("help_request_id", sa.Integer(), nullable=False),
        sa.Column("note_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["help_request_id"],
            ["help_request.id"],
            name=op.f("fk_help_shown_help_request_id_help_request"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["note_id"], ["note.id"], name=op.f("fk_help_shown_note_id_note"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("help_request_id", "note_id", name=op.f("pk_help_shown")),
    )
    with op.batch_alter_table("help_shown", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_help_shown_note_id_help_request_id"),
            ["note_id", "help_request_id"],
            unique=False,
        )

    with op.batch_alter_table("note", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "requires_acknowledgement", sa.Boolean(), server_default=sa.false(), nullable=False
            )
        )
        batch_op.add_column(sa.Column("escalate_after_days", sa.Integer(), nullable=True))

    with op.batch_alter_table("outbox_message", table_kwargs=AUTOINCREMENT) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("uq_outbox_message_note_id_subscriber_id"), type_="unique"
        )
        batch_op.create_unique_constraint(
            batch_op.f("uq_outbox_message_note_id_subscriber_id_kind"),
            ["note_id", "subscriber_id", "kind"],
        )

    # Support looks up the subscriber of one end user.
    with op.batch_alter_table("subscriber", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_subscriber_end_user_id"), ["end_user_id"], unique=False
        )

    # Every product gets a random secret of its own for the sidebar's links.
    with op.batch_alter_table("product", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sidebar_secret", sa.String(length=64), nullable=True))
    product = sa.table("product", sa.column("id", sa.Integer), sa.column("sidebar_secret"))
    for (row_id,) in bind.execute(sa.select(product.c.id)).all():
        bind.execute(
            product.update()
            .where(product.c.id == row_id)
            .values(sidebar_secret=secrets.token_hex(32))
        )
    with op.batch_alter_table("product", table_kwargs=AUTOINCREMENT) as batch_op:
        batch_op.alter_column("sidebar_secret", existing_type=sa.String(length=64), nullable=False)

    if sqlite:
        op.execute("PRAGMA foreign_keys=ON")


def downgrade():
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    if sqlite:
        op.execute("PRAGMA foreign_keys=OFF")
    with op.batch_alter_table("product", schema=None) as batch_op:
        batch_op.drop_column("sidebar_secret")

    with op.batch_alter_table("subscriber", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_subscriber_end_user_id"))

    with op.batch_alter_table("outbox_message", table_kwargs=AUTOINCREMENT) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("uq_outbox_message_note_id_subscriber_id_kind"), type_="unique"
        )
        batch_op.create_unique_constraint(
            batch_op.f("uq_outbox_message_note_id_subscriber_id"), ["note_id", "subscriber_id"]
        )

    with op.batch_alter_table("note", schema=None) as batch_op:
        batch_op.drop_column("escalate_after_days")
        batch_op.drop_column("requires_acknowledgement")

    with op.batch_alter_table("help_shown", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_help_shown_note_id_help_request_id"))

    op.drop_table("help_shown")
    op.drop_table("escalation")
    with op.batch_alter_table("help_request", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_help_request_product_id_created_at"))
        batch_op.drop_index(batch_op.f("ix_help_request_end_user_id"))
        batch_op.drop_index(batch_op.f("ix_help_request_answered_note_id"))

    op.drop_table("help_request")
    with op.batch_alter_table("agent_send", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_agent_send_product_id_sent_at"))
        batch_op.drop_index(batch_op.f("ix_agent_send_end_user_id_read_at"))

    op.drop_table("agent_send")
    with op.batch_alter_table("acknowledgement", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_acknowledgement_note_id_end_user_id"))

    op.drop_table("acknowledgement")
    if sqlite:
        op.execute("PRAGMA foreign_keys=ON")
