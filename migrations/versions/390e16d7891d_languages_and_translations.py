"""Every user in their own language: a product's other languages, a translation's status
and the default text it was made from (so an outdated one is told), and the console
language a team member picked.

Translations written before this were shown to everyone: they stay published, made from
the note's text as it stands.

Revision ID: 390e16d7891d
Revises: 0eb4ef87ae87
Create Date: 2026-12-01 18:05:06
"""

import sqlalchemy as sa
from alembic import op

import announcements.models
from announcements import languages

# revision identifiers, used by Alembic.
revision = "390e16d7891d"
down_revision = "0eb4ef87ae87"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("note_translation", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "status",
                sa.Enum(
                    "draft", "published", name="translationstatus", native_enum=False, length=16
                ),
                server_default="published",
                nullable=False,
            )
        )
        batch_op.add_column(sa.Column("source_title", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("source_body_md", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "published_at", announcements.models.UTCDateTime(timezone=True), nullable=True
            )
        )
    op.execute(
        "UPDATE note_translation SET "
        "source_title = (SELECT note.title FROM note WHERE note.id = note_translation.note_id), "
        "source_body_md = (SELECT note.body_md FROM note WHERE note.id = note_translation.note_id), "
        "published_at = updated_at"
    )
    with op.batch_alter_table("product", schema=None) as batch_op:
        batch_op.add_column(sa.Column("languages", sa.JSON(), nullable=True))
    # Every language a product's translations are already written in becomes one of its
    # languages, so nothing shown before disappears: normalised, as every tag is from now
    # on (``pt-br`` is ``pt-BR``), and the translations with it, unless their note has one
    # in that tag already. A tag that is not one (nothing checked them before) stays out,
    # and its translations hidden.
    bind = op.get_bind()
    rows = bind.execute(
        sa.text(
            "SELECT DISTINCT note.product_id, product.default_locale, note_translation.locale "
            "FROM note_translation "
            "JOIN note ON note.id = note_translation.note_id "
            "JOIN product ON product.id = note.product_id "
            "ORDER BY note.product_id, note_translation.locale"
        )
    ).all()
    product = sa.table("product", sa.column("id", sa.Integer), sa.column("languages", sa.JSON))
    found: dict[int, set[str]] = {}
    for product_id, default, locale in rows:
        tag = _normalised(locale)
        if tag is None or tag == (_normalised(default) or default):
            continue
        found.setdefault(product_id, set()).add(tag)
        if tag != locale:
            bind.execute(
                sa.text(
                    "UPDATE note_translation SET locale = :tag WHERE locale = :locale "
                    "AND note_id IN (SELECT id FROM note WHERE product_id = :product_id) "
                    "AND NOT EXISTS (SELECT 1 FROM note_translation AS other "
                    "WHERE other.note_id = note_translation.note_id AND other.locale = :tag)"
                ),
                {"tag": tag, "locale": locale, "product_id": product_id},
            )
    bind.execute(product.update().values(languages=[]))
    for product_id, tags in found.items():
        bind.execute(
            product.update().where(product.c.id == product_id).values(languages=sorted(tags))
        )
    with op.batch_alter_table("product", schema=None) as batch_op:
        batch_op.alter_column("languages", existing_type=sa.JSON(), nullable=False)

    with op.batch_alter_table("team_member", schema=None) as batch_op:
        batch_op.add_column(sa.Column("locale", sa.String(length=35), nullable=True))


def _normalised(locale):
    try:
        return languages.normalise(locale)
    except languages.BadTag:
        return None


def downgrade():
    with op.batch_alter_table("team_member", schema=None) as batch_op:
        batch_op.drop_column("locale")
    with op.batch_alter_table("product", schema=None) as batch_op:
        batch_op.drop_column("languages")
    with op.batch_alter_table("note_translation", schema=None) as batch_op:
        batch_op.drop_column("published_at")
        batch_op.drop_column("source_body_md")
        batch_op.drop_column("source_title")
        batch_op.drop_column("status")
