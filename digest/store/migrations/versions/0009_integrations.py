"""integrations: API keys, webhooks, candidates, the erasure list; erasable ledger rows

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-09 12:00:00

- api_keys (hashed keys with scopes), webhook_endpoints / webhook_events /
  webhook_deliveries / webhook_attempts (the outbox and its log), candidate_feeds and
  candidates (stories from the newsroom's site), erasures (keyed hashes of erased
  addresses);
- deliveries.subscriber_id may be NULL: an erased subscriber's ledger rows stay, anonymous,
  so every edition's counts stay as they were;
- SQLite: subscribers get AUTOINCREMENT, so the id of an erased subscriber is never given
  to a new one (its old unsubscribe links must stay useless). PostgreSQL's sequences never
  reuse ids anyway.
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

LIVE_KEY = sa.text("revoked_at IS NULL")


def _when(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"

    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("newsletter_id", sa.Integer(), nullable=True),
        _when("created_at", False),
        _when("last_used_at"),
        _when("revoked_at"),
        sa.ForeignKeyConstraint(["newsletter_id"], ["newsletters.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
    )
    op.create_index(
        "uq_api_keys_live_name",
        "api_keys",
        ["name"],
        unique=True,
        postgresql_where=LIVE_KEY,
        sqlite_where=LIVE_KEY,
    )

    op.create_table(
        "erasures",
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.String(length=16), nullable=False),
        _when("erased_at", False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key_hash"),
    )

    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("events", sa.JSON(), nullable=False),
        _when("created_at", False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "webhook_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uid", sa.String(length=40), nullable=False),
        sa.Column("type", sa.String(length=40), nullable=False),
        _when("created_at", False),
        sa.Column("subscriber_id", sa.Integer(), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscribers.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("uid", name="uq_webhook_events_uid"),
    )
    op.create_index("ix_webhook_events_subscriber_id", "webhook_events", ["subscriber_id"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("endpoint_id", sa.Integer(), nullable=False),
        sa.Column("order_key", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _when("next_attempt_at", False),
        sa.Column("last_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=False),
        _when("delivered_at"),
        _when("updated_at"),
        sa.ForeignKeyConstraint(["event_id"], ["webhook_events.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["endpoint_id"], ["webhook_endpoints.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_webhook_deliveries_queue",
        "webhook_deliveries",
        ["status", "endpoint_id", "order_key", "id"],
    )
    op.create_index("ix_webhook_deliveries_event", "webhook_deliveries", ["event_id"])
    op.create_table(
        "webhook_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("delivery_id", sa.Integer(), nullable=False),
        _when("at", False),
        sa.Column("code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["delivery_id"], ["webhook_deliveries.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_webhook_attempts_delivery_id", "webhook_attempts", ["delivery_id"])
    op.create_index("ix_webhook_attempts_at", "webhook_attempts", ["at"])

    op.create_table(
        "candidate_feeds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("url_key", sa.String(length=64), nullable=False),
        sa.Column("etag", sa.Text(), nullable=True),
        sa.Column("last_modified", sa.Text(), nullable=True),
        _when("polled_at"),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("items", sa.Integer(), nullable=False),
        sa.Column("added", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("url_key", name="uq_candidate_feeds_url_key"),
    )
    op.create_table(
        "candidates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("newsletter_id", sa.Integer(), nullable=True),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("url_key", sa.String(length=64), nullable=False),
        sa.Column("feed_url", sa.Text(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("section", sa.String(length=80), nullable=False),
        sa.Column("image_url", sa.Text(), nullable=True),
        sa.Column("image_alt", sa.Text(), nullable=False),
        sa.Column("image_credit", sa.Text(), nullable=False),
        sa.Column("byline", sa.Text(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        _when("seen_at", False),
        _when("dismissed_at"),
        sa.ForeignKeyConstraint(["newsletter_id"], ["newsletters.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("url_key", name="uq_candidates_url_key"),
    )
    op.create_index("ix_candidates_seen_at", "candidates", ["seen_at"])

    with op.batch_alter_table("deliveries") as batch:
        batch.alter_column("subscriber_id", existing_type=sa.Integer(), nullable=True)
    if sqlite:
        with op.batch_alter_table(
            "subscribers", recreate="always", table_kwargs={"sqlite_autoincrement": True}
        ):
            pass


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.alter_column("subscriber_id", existing_type=sa.Integer(), nullable=False)
    for index, table in (
        ("ix_candidates_seen_at", "candidates"),
        ("ix_webhook_attempts_at", "webhook_attempts"),
        ("ix_webhook_attempts_delivery_id", "webhook_attempts"),
        ("ix_webhook_deliveries_event", "webhook_deliveries"),
        ("ix_webhook_deliveries_queue", "webhook_deliveries"),
        ("ix_webhook_events_subscriber_id", "webhook_events"),
        ("uq_api_keys_live_name", "api_keys"),
    ):
        op.drop_index(index, table_name=table)
    for table in (
        "candidates",
        "candidate_feeds",
        "webhook_attempts",
        "webhook_deliveries",
        "webhook_events",
        "webhook_endpoints",
        "erasures",
        "api_keys",
    ):
        op.drop_table(table)
