"""Tables of the pipeline: picks, issues (frozen snapshots) and the delivery ledger.

Subscribers live in the `subscribers` package; everything shares one metadata.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from digest.db import Base, utcnow
from digest.scheduler_lease import SchedulerLease  # noqa: F401 - registers the table
from digest.web.models import Editor  # noqa: F401 - registers the web app's tables
from subscribers.model import Subscriber  # noqa: F401 - registers the table

# Issue statuses: draft (editors still picking) -> frozen (snapshot + render)
# -> sending (ledger filled, immutable) -> sent.
DRAFT, FROZEN, SENDING, SENT = "draft", "frozen", "sending", "sent"

# Delivery statuses. pending/deferred are still owed; sent/failed/skipped are final.
PENDING, DEFERRED, SENT_OK, FAILED, SKIPPED = "pending", "deferred", "sent", "failed", "skipped"
OWED = (PENDING, DEFERRED)


class Pick(Base):
    """A story an editor picked. issue_id is NULL until a build freezes it."""

    __tablename__ = "picks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    title: Mapped[str] = mapped_column(Text)
    summary: Mapped[str] = mapped_column(Text, default="")
    section: Mapped[str] = mapped_column(String(80))
    image_url: Mapped[str | None] = mapped_column(Text)
    image_alt: Mapped[str] = mapped_column(Text, default="")
    image_credit: Mapped[str] = mapped_column(Text, default="")
    byline: Mapped[str] = mapped_column(Text, default="")
    read_minutes: Mapped[int | None] = mapped_column(Integer)
    tags: Mapped[list] = mapped_column(JSON, default=list)
    featured: Mapped[bool] = mapped_column(Boolean, default=False)
    position: Mapped[int] = mapped_column(Integer, default=0)
    issue_id: Mapped[int | None] = mapped_column(ForeignKey("issues.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Issue(Base):
    """One week's issue. After freezing, `content` is the immutable snapshot."""

    __tablename__ = "issues"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(32), unique=True)
    status: Mapped[str] = mapped_column(String(16), default=DRAFT)
    subject: Mapped[str] = mapped_column(Text, default="")
    preheader: Mapped[str] = mapped_column(Text, default="")
    intro: Mapped[str] = mapped_column(Text, default="")
    content: Mapped[dict] = mapped_column(JSON, default=dict)
    html: Mapped[str] = mapped_column(Text, default="")
    text: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    frozen_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    send_started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Delivery(Base):
    """The ledger: one row per issue x subscriber, the truth about who got what."""

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    issue_id: Mapped[int] = mapped_column(ForeignKey("issues.id"))
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id"))
    status: Mapped[str] = mapped_column(String(16), default=PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_code: Mapped[int | None] = mapped_column(Integer)
    last_reply: Mapped[str] = mapped_column(Text, default="")
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    claimed_by: Mapped[str | None] = mapped_column(String(120))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        UniqueConstraint("issue_id", "subscriber_id", name="uq_delivery_issue_subscriber"),
        Index("ix_deliveries_issue_status_id", "issue_id", "status", "id"),
        # Heartbeats and releases look rows up by claim token; most rows have none.
        Index(
            "ix_deliveries_claimed_by",
            "claimed_by",
            postgresql_where=text("claimed_by IS NOT NULL"),
            sqlite_where=text("claimed_by IS NOT NULL"),
        ),
    )


class Worker(Base):
    """A process sending (or ready to send) right now: `digest send` or `digest worker`.

    Lets `digest send --status` show who is working, and lets a sender on the same
    machine see at once that another one died (its pid is gone) instead of waiting
    for its leases to run out. Rows are removed on a clean exit.
    """

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(120), primary_key=True)
    role: Mapped[str] = mapped_column(String(16), default="worker")
    host: Mapped[str] = mapped_column(String(255))
    #: host plus PID namespace: the same node means the same process table.
    node: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    issue_id: Mapped[int | None] = mapped_column(ForeignKey("issues.id", ondelete="SET NULL"))
    sent: Mapped[int] = mapped_column(Integer, default=0)
