"""memos: results of slow computations (the preflight of a frozen edition), by input digest

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 20:00:00

`digest build` stores the preflight report it made (SpamAssassin's score included),
keyed by a digest of everything it scored; `digest send` and the scheduler find it
there instead of running SpamAssassin again on the same content. Nothing to copy:
the table starts empty and fills as editions are built.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "memos",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("owner", sa.Integer(), nullable=True),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("kind", "key", name="uq_memos_kind_key"),
    )
    op.create_index("ix_memos_owner", "memos", ["owner"])


def downgrade() -> None:
    op.drop_index("ix_memos_owner", table_name="memos")
    op.drop_table("memos")
