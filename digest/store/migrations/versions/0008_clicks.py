"""click counters per story, per-reader clicks (opt-in), and welcomed subscriptions

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 12:00:00

- story_clicks: how often each story of an edition was opened through its counted link
  (DIGEST_CLICK_STATS=aggregate: nothing about who clicked);
- reader_clicks: the same per subscriber, filled only with DIGEST_CLICK_STATS=per-subscriber;
  rows go with the subscriber;
- subscriptions.welcomed_at: the welcome email is sent once per subscription. Those
  confirmed before there were welcomes count as welcomed (their first consent), so a
  reader who left and confirms again is not welcomed as a newcomer.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "story_clicks",
        sa.Column("edition_id", sa.Integer(), nullable=False),
        sa.Column("pick_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("clicks", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["edition_id"], ["editions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("edition_id", "pick_id"),
    )
    op.create_table(
        "reader_clicks",
        sa.Column("edition_id", sa.Integer(), nullable=False),
        sa.Column("pick_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("clicks", sa.Integer(), nullable=False),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["edition_id"], ["editions.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscribers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("edition_id", "pick_id", "subscriber_id"),
    )
    op.create_index("ix_reader_clicks_subscriber", "reader_clicks", ["subscriber_id"])
    with op.batch_alter_table("subscriptions") as batch:
        batch.add_column(sa.Column("welcomed_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE subscriptions SET welcomed_at = consent_at WHERE consent_at IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table("subscriptions") as batch:
        batch.drop_column("welcomed_at")
    op.drop_index("ix_reader_clicks_subscriber", table_name="reader_clicks")
    op.drop_table("reader_clicks")
    op.drop_table("story_clicks")
