"""newsletters, editions and subscriptions: one installation, several newsletters

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 18:00:00

An existing installation becomes one newsletter (slug "default", every setting taken
from DIGEST_* as before) with all its data:
- issues become that newsletter's editions (same keys, so archive links keep working);
  "frozen" was a draft with a render and becomes a draft; of several unsent ones the
  newest stays the open edition and the others are cancelled (they held no picks of
  their own: unsent picks belonged to no issue);
- picks that were in no issue yet go into the open edition (opened if there was none);
- each subscriber gets a subscription to it with the status and consent it had;
  bounced and complained become a suppression of the address (every newsletter), and
  their subscription keeps what they had before (confirmed when consent was recorded).
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

OPEN = sa.text("status IN ('draft', 'scheduled')")


def _now() -> sa.TextClause:
    return sa.text("CURRENT_TIMESTAMP")


def upgrade() -> None:
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"

    op.create_table(
        "newsletters",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("from_addr", sa.Text(), nullable=True),
        sa.Column("reply_to", sa.Text(), nullable=True),
        sa.Column("list_id", sa.String(length=200), nullable=True),
        sa.Column("schedule", sa.String(length=100), nullable=True),
        sa.Column("timezone", sa.String(length=64), nullable=True),
        sa.Column("template", sa.String(length=60), nullable=False),
        sa.Column("palette", sa.JSON(), nullable=False),
        sa.Column("language", sa.String(length=16), nullable=False),
        sa.Column("sections", sa.JSON(), nullable=True),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("slug"),
    )
    newsletters = sa.table(
        "newsletters",
        sa.column("slug", sa.String),
        sa.column("template", sa.String),
        sa.column("palette", sa.JSON),
        sa.column("language", sa.String),
        sa.column("is_default", sa.Boolean),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    import datetime

    op.bulk_insert(
        newsletters,
        [
            {
                "slug": "default",
                "template": "digest",
                "palette": {},
                "language": "en",
                "is_default": True,
                "created_at": datetime.datetime.now(datetime.UTC),
            }
        ],
    )
    nid = bind.execute(sa.text("SELECT id FROM newsletters WHERE slug = 'default'")).scalar_one()

    # -- issues -> editions ------------------------------------------------------------
    op.rename_table("issues", "editions")
    with op.batch_alter_table("editions") as batch:
        batch.add_column(sa.Column("newsletter_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("planned_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("slot_rule", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("paused_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("note", sa.Text(), nullable=False, server_default=""))
    op.execute(sa.text("UPDATE editions SET newsletter_id = :n").bindparams(n=nid))
    op.execute("UPDATE editions SET status = 'draft' WHERE status = 'frozen'")
    newest = bind.execute(sa.text("SELECT max(id) FROM editions WHERE status = 'draft'")).scalar()
    if newest is not None:
        op.execute(
            sa.text(
                "UPDATE editions SET status = 'cancelled', cancelled_at = CURRENT_TIMESTAMP, "
                "note = 'an older unsent draft, closed by the upgrade to several newsletters' "
                "WHERE status = 'draft' AND id <> :keep"
            ).bindparams(keep=newest)
        )
    # The unique key of 0001 has no name: name it so batch mode (SQLite) can drop it.
    naming = {"uq": "uq_%(table_name)s_%(column_0_name)s"}
    with op.batch_alter_table("editions", naming_convention=naming) as batch:
        batch.alter_column("newsletter_id", existing_type=sa.Integer(), nullable=False)
        batch.drop_constraint("uq_editions_key" if sqlite else "issues_key_key", type_="unique")
        batch.create_unique_constraint("uq_editions_newsletter_key", ["newsletter_id", "key"])
        batch.create_foreign_key("fk_editions_newsletter", "newsletters", ["newsletter_id"], ["id"])
    op.create_index(
        "uq_editions_one_open",
        "editions",
        ["newsletter_id"],
        unique=True,
        postgresql_where=OPEN,
        sqlite_where=OPEN,
    )

    # -- picks belong to an edition --------------------------------------------------------
    orphans = bind.execute(sa.text("SELECT count(*) FROM picks WHERE issue_id IS NULL")).scalar()
    open_id = bind.execute(
        sa.text("SELECT id FROM editions WHERE status = 'draft' AND newsletter_id = :n").bindparams(
            n=nid
        )
    ).scalar()
    if orphans and open_id is None:
        key = bind.execute(
            sa.text("SELECT 'migrated-' || CAST(count(*) + 1 AS TEXT) FROM editions")
        ).scalar()
        op.execute(
            sa.text(
                "INSERT INTO editions (newsletter_id, key, status, subject, preheader, intro, "
                "content, html, text, created_at, note) VALUES (:n, :k, 'draft', '', '', '', "
                "'{}', '', '', CURRENT_TIMESTAMP, '')"
            ).bindparams(n=nid, k=key)
        )
        open_id = bind.execute(
            sa.text(
                "SELECT id FROM editions WHERE status = 'draft' AND newsletter_id = :n"
            ).bindparams(n=nid)
        ).scalar()
    if orphans:
        op.execute(
            sa.text("UPDATE picks SET issue_id = :e WHERE issue_id IS NULL").bindparams(e=open_id)
        )
    with op.batch_alter_table("picks") as batch:
        batch.add_column(sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True))
        batch.drop_index("ix_picks_issue_id")
        batch.alter_column(
            "issue_id", new_column_name="edition_id", existing_type=sa.Integer(), nullable=False
        )
    op.create_index("ix_picks_edition_id", "picks", ["edition_id"], unique=False)

    # -- the ledger -----------------------------------------------------------------------
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_index("ix_deliveries_issue_status_id")
        batch.drop_constraint("uq_delivery_issue_subscriber", type_="unique")
        batch.alter_column("issue_id", new_column_name="edition_id", existing_type=sa.Integer())
    with op.batch_alter_table("deliveries") as batch:
        batch.create_unique_constraint(
            "uq_delivery_edition_subscriber", ["edition_id", "subscriber_id"]
        )
    op.create_index("ix_deliveries_edition_status_id", "deliveries", ["edition_id", "status", "id"])

    # -- subscriptions ----------------------------------------------------------------------
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("newsletter_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("consent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("consent_source", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status_changed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscribers.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["newsletter_id"], ["newsletters.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("newsletter_id", "subscriber_id", name="uq_subscription"),
    )
    op.create_index(
        "ix_subscriptions_newsletter_status",
        "subscriptions",
        ["newsletter_id", "status", "subscriber_id"],
    )
    op.create_index("ix_subscriptions_subscriber", "subscriptions", ["subscriber_id"])
    op.execute(
        sa.text(
            "INSERT INTO subscriptions (subscriber_id, newsletter_id, status, consent_at, "
            "consent_source, source, created_at, updated_at, status_changed_at) "
            "SELECT id, :n, CASE "
            "  WHEN status IN ('pending', 'confirmed', 'unsubscribed') THEN status "
            "  WHEN status = 'complained' THEN 'unsubscribed' "
            "  WHEN consent_at IS NOT NULL THEN 'confirmed' ELSE 'pending' END, "
            "consent_at, consent_source, consent_source, created_at, updated_at, "
            "status_changed_at FROM subscribers"
        ).bindparams(n=nid)
    )
    with op.batch_alter_table("subscribers") as batch:
        batch.add_column(sa.Column("suppression", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("suppressed_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column("suppression_source", sa.Text(), nullable=False, server_default="")
        )
    op.execute(
        "UPDATE subscribers SET suppression = status, suppressed_at = status_changed_at, "
        "suppression_source = 'before the upgrade' WHERE status IN ('bounced', 'complained')"
    )
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_index("ix_subscribers_status_id")
        batch.drop_column("status")
        batch.drop_column("consent_at")
        batch.drop_column("consent_source")
        batch.drop_column("status_changed_at")

    # The scheduler keeps its state in editions now, not in APScheduler's job table.
    op.execute("DROP TABLE IF EXISTS apscheduler_jobs")


def downgrade() -> None:
    raise RuntimeError(
        "0006 turns one issue list into newsletters and subscriptions and cannot be undone "
        "in place; restore the backup taken before the upgrade to go back"
    )
