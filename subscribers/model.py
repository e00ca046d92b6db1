"""The subscriber: one row per address, unique case-insensitively.

Statuses: pending (signed up, not confirmed), confirmed (receives the digest),
unsubscribed, bounced, complained. The last three are terminal for imports: no
CSV import or sign-up ever turns them back into confirmed.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from digest.clock import utcnow
from digest.store.base import Base, EnumText, UTCDateTime


class SubscriberStatus(enum.StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"


STATUSES = tuple(SubscriberStatus)
#: Never mailed again, never revived by an import.
BLOCKED = (SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED)


class Subscriber(Base):
    __tablename__ = "subscribers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    #: Lower-cased address; the uniqueness key.
    email_key: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[SubscriberStatus] = mapped_column(
        EnumText(SubscriberStatus), default=SubscriberStatus.PENDING
    )
    consent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    consent_source: Mapped[str] = mapped_column(Text, default="")
    bounce_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    status_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_subscribers_status_id", "status", "id"),)

    def __repr__(self) -> str:
        return f"<Subscriber {self.id} {self.email} {self.status}>"
