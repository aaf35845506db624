"""Access the way companies run it, and privacy by design: members' two-factor secrets
and recovery codes, their single sign-on identities, a product's access rules (single
sign-on or two-factor required, the role given to members it provisions) and retention
periods, the daily retention runs, and the mark of an erased end user or subscriber.
An audit event with no product is one of the instance (a refused single sign-on).

Revision ID: 011dd849e2d3
Revises: 390e16d7891d
Create Date: 2026-12-02 00:40:53
"""

import sqlalchemy as sa
from alembic import op

import announcements.models


# revision identifiers, used by Alembic.
revision = "011dd849e2d3"
down_revision = "390e16d7891d"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "recovery_code",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("code_hash", sa.String(length=255), nullable=False),
        sa.Column("created_at", announcements.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", announcements.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["team_member.id"],
            name=op.f("fk_recovery_code_member_id_team_member"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recovery_code")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("recovery_code", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_recovery_code_member_id"), ["member_id"], unique=False)

    op.create_table(
        "retention_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("started_at", announcements.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", announcements.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("removed", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["product.id"],
            name=op.f("fk_retention_run_product_id_product"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_retention_run")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("retention_run", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_retention_run_product_id_finished_at"),
            ["product_id", "finished_at"],
            unique=False,
        )

    op.create_table(
        "sso_identity",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("issuer", sa.String(length=500), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("created_at", announcements.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", announcements.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["team_member.id"],
            name=op.f("fk_sso_identity_member_id_team_member"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sso_identity")),
        sa.UniqueConstraint("issuer", "subject", name=op.f("uq_sso_identity_issuer_subject")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("sso_identity", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sso_identity_member_id"), ["member_id"], unique=False)

    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.alter_column("product_id", existing_type=sa.INTEGER(), nullable=True)

    with op.batch_alter_table("end_user", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("erased_at", announcements.models.UTCDateTime(timezone=True), nullable=True)
        )

    with op.batch_alter_table("product", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("require_sso", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(
            sa.Column("require_two_factor", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(
            sa.Column(
                "sso_provision_role",
                sa.Enum("viewer", "editor", "owner", name="role", native_enum=False, length=16),
                nullable=True,
            )
        )
        batch_op.add_column(
            sa.Column("retain_end_users_months", sa.Integer(), server_default="24", nullable=False)
        )
        batch_op.add_column(
            sa.Column("retain_subscribers_days", sa.Integer(), server_default="30", nullable=False)
        )
        batch_op.add_column(
            sa.Column("retain_deliveries_days", sa.Integer(), server_default="30", nullable=False)
        )
        batch_op.add_column(
            sa.Column(
                "retain_comment_authors_months", sa.Integer(), server_default="12", nullable=False
            )
        )

    with op.batch_alter_table("subscriber", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("erased_at", announcements.models.UTCDateTime(timezone=True), nullable=True)
        )

    with op.batch_alter_table("team_member", schema=None) as batch_op:
        batch_op.add_column(sa.Column("totp_secret", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column(
                "totp_enabled_at", announcements.models.UTCDateTime(timezone=True), nullable=True
            )
        )
        batch_op.add_column(sa.Column("totp_last_step", sa.BigInteger(), nullable=True))


def downgrade():
    with op.batch_alter_table("team_member", schema=None) as batch_op:
        batch_op.drop_column("totp_last_step")
        batch_op.drop_column("totp_enabled_at")
        batch_op.drop_column("totp_secret")

    with op.batch_alter_table("subscriber", schema=None) as batch_op:
        batch_op.drop_column("erased_at")

    with op.batch_alter_table("product", schema=None) as batch_op:
        batch_op.drop_column("retain_comment_authors_months")
        batch_op.drop_column("retain_deliveries_days")
        batch_op.drop_column("retain_subscribers_days")
        batch_op.drop_column("retain_end_users_months")
        batch_op.drop_column("sso_provision_role")
        batch_op.drop_column("require_two_factor")
        batch_op.drop_column("require_sso")

    with op.batch_alter_table("end_user", schema=None) as batch_op:
        batch_op.drop_column("erased_at")

    op.execute("DELETE FROM audit_event WHERE product_id IS NULL")
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.alter_column("product_id", existing_type=sa.INTEGER(), nullable=False)

    with op.batch_alter_table("sso_identity", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sso_identity_member_id"))

    op.drop_table("sso_identity")
    with op.batch_alter_table("retention_run", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_retention_run_product_id_finished_at"))

    op.drop_table("retention_run")
    with op.batch_alter_table("recovery_code", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_recovery_code_member_id"))

    op.drop_table("recovery_code")
