"""The audit's fixes: server-side console sessions and invitations, ids that SQLite never
reuses, a per-subscriber key in every e-mail link, one live note per title in a version,
mail paused on a refusal of the sender, webhook calls built when they are made.

Revision ID: b41c9e2d7a10
Revises: 6e4cd86dccb7
Create Date: 2026-12-01 08:20:00
"""

import hashlib
import secrets

import sqlalchemy as sa
from alembic import op

revision = "b41c9e2d7a10"
down_revision = "6e4cd86dccb7"
branch_labels = None
depends_on = None

# Every table whose key is an integer ``id``: on SQLite each is rebuilt with AUTOINCREMENT,
# so the id of a deleted row is never handed to a new one.
ID_TABLES = [
    "team_member",
    "product",
    "membership",
    "note",
    "note_translation",
    "end_user",
    "subscriber",
    "outbox_message",
    "api_key",
    "webhook",
    "webhook_delivery",
    "audit_event",
]


def _title_key(title):
    """Note.title_key_of, as it was when this migration was written."""
    return hashlib.sha256(title.strip().casefold().encode()).hexdigest()


def upgrade():
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    if sqlite:
        # Rebuilding a table drops the old one; with foreign keys on, that would first
        # delete its rows and cascade to their children. This is the migration's first
        # statement, before SQLite opens a transaction, so the pragma takes effect.
        op.execute("PRAGMA foreign_keys=OFF")

    op.create_table(
        "console_session",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["team_member.id"],
            name=op.f("fk_console_session_member_id_team_member"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_session")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_console_session_token_hash")),
        sqlite_autoincrement=True,
    )
    op.create_index(
        op.f("ix_console_session_member_id"), "console_session", ["member_id"], unique=False
    )
    op.create_table(
        "invitation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column(
            "role",
            sa.Enum("viewer", "editor", "owner", name="role", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("invited_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["invited_by_id"],
            ["team_member.id"],
            name=op.f("fk_invitation_invited_by_id_team_member"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["product.id"],
            name=op.f("fk_invitation_product_id_product"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invitation")),
        sa.UniqueConstraint("product_id", "email", name=op.f("uq_invitation_product_id_email")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_invitation_token_hash")),
        sqlite_autoincrement=True,
    )

    # Every subscriber's links carry a random key of its own from now on; links mailed
    # before carry none and stop working, which only costs a click on a newer mail.
    with op.batch_alter_table("subscriber") as batch_op:
        batch_op.add_column(sa.Column("link_key", sa.String(length=32), nullable=True))
    subscriber = sa.table("subscriber", sa.column("id", sa.Integer), sa.column("link_key"))
    for (row_id,) in bind.execute(sa.select(subscriber.c.id)).all():
        bind.execute(
            subscriber.update()
            .where(subscriber.c.id == row_id)
            .values(link_key=secrets.token_urlsafe(16))
        )
    with op.batch_alter_table("subscriber") as batch_op:
        batch_op.alter_column("link_key", existing_type=sa.String(length=32), nullable=False)

    # One live note per title in a version. Copies that raced in before are archived,
    # keeping the one published first (else the oldest), so nothing is lost, the index
    # can be built, the audit log says why and caches see the change.
    with op.batch_alter_table("note") as batch_op:
        batch_op.add_column(sa.Column("title_key", sa.String(length=64), nullable=True))
    note = sa.table(
        "note",
        sa.column("id", sa.Integer),
        sa.column("product_id", sa.Integer),
        sa.column("version", sa.String),
        sa.column("title", sa.String),
        sa.column("title_key", sa.String),
        sa.column("published_at", sa.DateTime(timezone=True)),
        sa.column("archived_at", sa.DateTime(timezone=True)),
        sa.column("updated_at", sa.DateTime(timezone=True)),
    )
    audit = sa.table(
        "audit_event",
        sa.column("product_id", sa.Integer),
        sa.column("note_id", sa.Integer),
        sa.column("action", sa.String),
        sa.column("summary", sa.String),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    product = sa.table(
        "product", sa.column("id", sa.Integer), sa.column("catalogue_stamp", sa.Integer)
    )
    seen = set()
    rows = bind.execute(
        sa.select(note.c.id, note.c.product_id, note.c.version, note.c.title, note.c.archived_at)
        .order_by(note.c.published_at.is_(None), note.c.published_at, note.c.id)
    ).all()
    for row_id, product_id, version, title, archived_at in rows:
        key = _title_key(title)
        values = {"title_key": key}
        if archived_at is None:
            if (product_id, version, key) in seen:
                values["archived_at"] = values["updated_at"] = sa.func.current_timestamp()
                bind.execute(
                    audit.insert().values(
                        product_id=product_id,
                        note_id=row_id,
                        action="note.archived",
                        summary=f"“{title}” ({version}): archived as a copy of a note "
                        "with the same title",
                        created_at=sa.func.current_timestamp(),
                    )
                )
                bind.execute(
                    product.update()
                    .where(product.c.id == product_id)
                    .values(catalogue_stamp=product.c.catalogue_stamp + 1)
                )
            seen.add((product_id, version, key))
        bind.execute(note.update().where(note.c.id == row_id).values(**values))
    with op.batch_alter_table("note") as batch_op:
        batch_op.alter_column("title_key", existing_type=sa.String(length=64), nullable=False)
    op.create_index(
        op.f("ix_note_product_id_version_title_key"),
        "note",
        ["product_id", "version", "title_key"],
        unique=True,
        sqlite_where=sa.text("archived_at IS NULL"),
        postgresql_where=sa.text("archived_at IS NULL"),
    )

    with op.batch_alter_table("outbox_message") as batch_op:
        batch_op.add_column(sa.Column("paused_at", sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table("webhook_delivery") as batch_op:
        batch_op.drop_column("payload")

    if sqlite:
        # Last, as every batch operation above rebuilds its table without the keyword.
        for table in ID_TABLES:
            with op.batch_alter_table(
                table, recreate="always", table_kwargs={"sqlite_autoincrement": True}
            ):
                pass
        op.execute("PRAGMA foreign_keys=ON")


def downgrade():
    with op.batch_alter_table("webhook_delivery") as batch_op:
        batch_op.add_column(
            sa.Column("payload", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )
    with op.batch_alter_table("outbox_message") as batch_op:
        batch_op.drop_column("paused_at")
    op.drop_index(op.f("ix_note_product_id_version_title_key"), table_name="note")
    with op.batch_alter_table("note") as batch_op:
        batch_op.drop_column("title_key")
    with op.batch_alter_table("subscriber") as batch_op:
        batch_op.drop_column("link_key")
    op.drop_table("invitation")
    op.drop_index(op.f("ix_console_session_member_id"), table_name="console_session")
    op.drop_table("console_session")
