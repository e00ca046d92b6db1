"""Tables of the delivery stage: the ledger, and the senders working on it."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from digest.editorial.models import Edition  # noqa: F401 - the ledger refers to editions
from digest.store.base import Base, EnumText, UTCDateTime
from subscribers.model import Subscriber  # noqa: F401 - the ledger refers to subscribers


class DeliveryStatus(enum.StrEnum):
    """pending/deferred are still owed; sent/failed/skipped are final."""

    PENDING = "pending"
    DEFERRED = "deferred"
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"


#: Still owed to the subscriber: a sender will (re)try these.
OWED = (DeliveryStatus.PENDING, DeliveryStatus.DEFERRED)


class Delivery(Base):
    """The ledger: one row per edition x subscriber, the truth about who got what."""

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    edition_id: Mapped[int] = mapped_column(ForeignKey("editions.id"))
    #: NULL once the subscriber was erased (digest.privacy): the row stays, anonymous,
    #: so the edition's counts do not change.
    subscriber_id: Mapped[int | None] = mapped_column(ForeignKey("subscribers.id"))
    status: Mapped[DeliveryStatus] = mapped_column(
        EnumText(DeliveryStatus), default=DeliveryStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_code: Mapped[int | None] = mapped_column(Integer)
    last_reply: Mapped[str] = mapped_column(Text, default="")
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(120))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("edition_id", "subscriber_id", name="uq_delivery_edition_subscriber"),
        Index("ix_deliveries_edition_status_id", "edition_id", "status", "id"),
        # Heartbeats and releases look rows up by claim token; most rows have none.
        Index(
            "ix_deliveries_claimed_by",
            "claimed_by",
            postgresql_where=text("claimed_by IS NOT NULL"),
            sqlite_where=text("claimed_by IS NOT NULL"),
        ),
    )
