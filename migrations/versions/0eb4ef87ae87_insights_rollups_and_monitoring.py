"""Insights and Tidings watching itself: the days the widget saw each end user, the daily
roll-ups the Insights pages read and how far each product's is counted, receipts indexed
by note and time, workers' heartbeats, widget traffic a minute at a time, alerts, and
outbox messages to team members (an alert goes to a member, not a subscriber).

Revision ID: 0eb4ef87ae87
Revises: bb544b0d18ed
Create Date: 2026-12-01 15:05:12
"""

import sqlalchemy as sa
from alembic import op

import announcements.models

# SQLite rebuilds a table to change its constraints; these keep their ids never reused.
AUTOINCREMENT = {"sqlite_autoincrement": True}


# revision identifiers, used by Alembic.
revision = "0eb4ef87ae87"
down_revision = "bb544b0d18ed"
branch_labels = None
depends_on = None


def upgrade():
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        # Rebuilding outbox_message drops the old table; with foreign keys on, that would
        # first delete its rows. The first statement, before SQLite opens a transaction.
        op.execute("PRAGMA foreign_keys=OFF")
    op.create_table(
        "alert",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("failing_since", announcements.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("detail", sa.String(length=500), nullable=False),
        sa.Column("alerted_at", announcements.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("recovered_at", announcements.models.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("alert", schema=None) as batch_op:
        batch_op.create_index(
            "uq_alert_open_kind",
            ["kind"],
            unique=True,
            sqlite_where=sa.text("recovered_at IS NULL"),
            postgresql_where=sa.text("recovered_at IS NULL"),
        )

    op.create_table(
        "worker_heartbeat",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("started_at", announcements.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("beat_at", announcements.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_worker_heartbeat")),
    )
    op.create_table(
        "rollup",
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("note_id", sa.Integer(), nullable=False),
        sa.Column("metric", sa.String(length=16), nullable=False),
        sa.Column("dimension", sa.String(length=80), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("value", sa.String(length=128), nullable=False),
        sa.Column("bucket", sa.Integer(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["product.id"],
            name=op.f("fk_rollup_product_id_product"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "product_id",
            "note_id",
            "metric",
            "dimension",
            "day",
            "value",
            "bucket",
            name=op.f("pk_rollup"),
        ),
    )
    op.create_table(
        "rollup_state",
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("counted_until", announcements.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("segments", sa.JSON(), nullable=False),
        sa.Column("updated_at", announcements.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["product.id"],
            name=op.f("fk_rollup_state_product_id_product"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("product_id", name=op.f("pk_rollup_state")),
    )
    op.create_table(
        "traffic_minute",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("process", sa.String(length=128), nullable=False),
        sa.Column("minute", announcements.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("latency", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["product.id"],
            name=op.f("fk_traffic_minute_product_id_product"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_traffic_minute")),
        sa.UniqueConstraint(
            "process",
            "minute",
            "product_id",
            name=op.f("uq_traffic_minute_process_minute_product_id"),
        ),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("traffic_minute", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_traffic_minute_minute"), ["minute"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_traffic_minute_product_id_minute"),
            ["product_id", "minute"],
            unique=False,
        )

    op.create_table(
        "end_user_day",
        sa.Column("end_user_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("seen_at", announcements.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("app_version", sa.String(length=64), nullable=True),
        sa.Column("previous_day", sa.Date(), nullable=True),
        sa.Column("previous_version", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["end_user_id"],
            ["end_user.id"],
            name=op.f("fk_end_user_day_end_user_id_end_user"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["product.id"],
            name=op.f("fk_end_user_day_product_id_product"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("end_user_id", "day", name=op.f("pk_end_user_day")),
    )
    with op.batch_alter_table("end_user_day", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_end_user_day_product_id_seen_at"),
            ["product_id", "seen_at"],
            unique=False,
        )

    # Users seen before this release have no days yet: each gets the day the widget last
    # saw them, as a first sighting, so notes already out count them as exposed (as
    # Support impact does, from last_seen_at) rather than never.
    day = "date(last_seen_at)" if sqlite else "(last_seen_at AT TIME ZONE 'UTC')::date"
    op.execute(
        "INSERT INTO end_user_day (end_user_id, day, product_id, seen_at, app_version)"
        f" SELECT id, {day}, product_id, last_seen_at, app_version FROM end_user"
    )

    with op.batch_alter_table("outbox_message", table_kwargs=AUTOINCREMENT) as batch_op:
        batch_op.add_column(sa.Column("member_id", sa.Integer(), nullable=True))
        batch_op.alter_column("subscriber_id", existing_type=sa.INTEGER(), nullable=True)
        batch_op.create_foreign_key(
            batch_op.f("fk_outbox_message_member_id_team_member"),
            "team_member",
            ["member_id"],
            ["id"],
            ondelete="CASCADE",
        )

    with op.batch_alter_table("read_receipt", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_read_receipt_note_id_read_at"), ["note_id", "read_at"], unique=False
        )


def downgrade():
    if op.get_bind().dialect.name == "sqlite":
        op.execute("PRAGMA foreign_keys=OFF")
    with op.batch_alter_table("read_receipt", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_read_receipt_note_id_read_at"))

    with op.batch_alter_table("outbox_message", table_kwargs=AUTOINCREMENT) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_outbox_message_member_id_team_member"), type_="foreignkey"
        )
        batch_op.alter_column("subscriber_id", existing_type=sa.INTEGER(), nullable=False)
        batch_op.drop_column("member_id")

    with op.batch_alter_table("end_user_day", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_end_user_day_product_id_seen_at"))

    op.drop_table("end_user_day")
    with op.batch_alter_table("traffic_minute", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_traffic_minute_product_id_minute"))
        batch_op.drop_index(batch_op.f("ix_traffic_minute_minute"))

    op.drop_table("traffic_minute")
    op.drop_table("rollup_state")
    op.drop_table("rollup")
    op.drop_table("worker_heartbeat")
    with op.batch_alter_table("alert", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_alert_open_kind",
            sqlite_where=sa.text("recovered_at IS NULL"),
            postgresql_where=sa.text("recovered_at IS NULL"),
        )

    op.drop_table("alert")
