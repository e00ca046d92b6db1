"""Subscribers (one row per address) and their subscriptions (one per newsletter).

A subscription is pending (signed up, not confirmed), confirmed (receives the
newsletter) or unsubscribed (left it; never revived by an import). Suppression is per
address: an address that bounced or complained gets no newsletter at all, whatever its
subscriptions say, and no import or sign-up changes that.

`SubscriberStatus` is what the operator sees for one address and one newsletter: the
suppression if there is one, otherwise the subscription's status.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from digest.clock import utcnow
from digest.store.base import Base, EnumText, UTCDateTime


class SubscriberStatus(enum.StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"


class SubscriptionStatus(enum.StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    UNSUBSCRIBED = "unsubscribed"


class Suppression(enum.StrEnum):
    """Why an address gets nothing any more, from any newsletter."""

    BOUNCED = "bounced"
    COMPLAINED = "complained"


STATUSES = tuple(SubscriberStatus)
#: Never mailed again, never revived by an import.
BLOCKED = (SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED)


def effective(
    subscription: SubscriptionStatus | str | None, suppression: Suppression | str | None
) -> SubscriberStatus | None:
    """The status an operator sees: the suppression first, then the subscription's."""
    if suppression:
        return SubscriberStatus(suppression)
    return SubscriberStatus(subscription) if subscription else None


class Subscriber(Base):
    """One address, unique case-insensitively."""

    __tablename__ = "subscribers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    #: Lower-cased address; the uniqueness key.
    email_key: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    suppression: Mapped[Suppression | None] = mapped_column(EnumText(Suppression))
    suppressed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    suppression_source: Mapped[str] = mapped_column(Text, default="")
    bounce_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    #: SQLite: never reuse an id (an erased subscriber's links must stay useless).
    __table_args__ = {"sqlite_autoincrement": True}

    def __repr__(self) -> str:
        return f"<Subscriber {self.id} {self.email} {self.suppression or 'active'}>"


class Subscription(Base):
    """One address's relation to one newsletter, with its consent."""

    __tablename__ = "subscriptions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    newsletter_id: Mapped[int] = mapped_column(ForeignKey("newsletters.id", ondelete="CASCADE"))
    status: Mapped[SubscriptionStatus] = mapped_column(
        EnumText(SubscriptionStatus), default=SubscriptionStatus.PENDING
    )
    consent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    consent_source: Mapped[str] = mapped_column(Text, default="")
    #: Where it came from: "csv:file.csv", "web sign-up", "cli", "api" ...
    source: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    status_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: When the welcome email was claimed for sending; set once and never cleared, so a
    #: reader who leaves and confirms again is not welcomed twice (subscriptions confirmed
    #: before welcomes existed carry their first consent time).
    welcomed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("newsletter_id", "subscriber_id", name="uq_subscription"),
        # The send's fill: confirmed subscriptions of one newsletter, in subscriber order.
        Index("ix_subscriptions_newsletter_status", "newsletter_id", "status", "subscriber_id"),
        Index("ix_subscriptions_subscriber", "subscriber_id"),
    )
