"""Tables of the webhooks: endpoints, the events (the outbox), deliveries and attempts.

An event is written once; each endpoint listening for its type gets a delivery row, the
unit the dispatcher works on. `order_key` names the thing an event is about (`s:ID` for a
subscriber, `e:ID` for an edition): deliveries of one endpoint with one order key go out
strictly in id order, and one still being retried holds back the later ones.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from digest.clock import utcnow
from digest.store.base import Base, EnumText, UTCDateTime
from subscribers.model import Subscriber  # noqa: F401 - events refer to subscribers

EVENT_TYPES = (
    "subscriber.confirmed",
    "subscriber.unsubscribed",
    "subscriber.bounced",
    "subscriber.complained",
    "subscriber.erased",
    "edition.sent",
)


class HookStatus(enum.StrEnum):
    """pending: owed (due at next_attempt_at); delivered: a 2xx came back; failed: given up."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class WebhookEndpoint(Base):
    """A URL that receives signed POSTs for some event types."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    #: The signing secret (whsec_...), kept as is: it must be used, not just checked.
    secret: Mapped[str] = mapped_column(Text)
    events: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookEvent(Base):
    """Something that happened, as its JSON body's `data` says it."""

    __tablename__ = "webhook_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: The public id (evt_...), the same in every attempt: receivers de-duplicate by it.
    uid: Mapped[str] = mapped_column(String(40), unique=True)
    type: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: Whom it is about (NULL for editions, and after the person was erased).
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="SET NULL"), index=True
    )
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class WebhookDelivery(Base):
    """One event owed to one endpoint."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("webhook_events.id", ondelete="CASCADE"))
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    order_key: Mapped[str] = mapped_column(String(40))
    status: Mapped[HookStatus] = mapped_column(EnumText(HookStatus), default=HookStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str] = mapped_column(Text, default="")
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        # The dispatcher: the head (lowest id) of each endpoint's pending order key.
        Index("ix_webhook_deliveries_queue", "status", "endpoint_id", "order_key", "id"),
        Index("ix_webhook_deliveries_event", "event_id"),
    )


class WebhookAttempt(Base):
    """One POST and what came of it (`digest webhooks log`)."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str] = mapped_column(Text, default="")
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
