"""Tables of the editorial stage: picks, and issues (frozen snapshots of the picks)."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from digest.clock import utcnow
from digest.store.base import Base, EnumText, UTCDateTime


class IssueStatus(enum.StrEnum):
    """draft (editors still picking) -> frozen (snapshot + render) -> sending -> sent."""

    DRAFT = "draft"
    FROZEN = "frozen"
    SENDING = "sending"
    SENT = "sent"


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
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    featured: Mapped[bool] = mapped_column(Boolean, default=False)
    position: Mapped[int] = mapped_column(Integer, default=0)
    issue_id: Mapped[int | None] = mapped_column(ForeignKey("issues.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Issue(Base):
    """One week's issue. After freezing, `content` is the immutable snapshot."""

    __tablename__ = "issues"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(32), unique=True)
    status: Mapped[IssueStatus] = mapped_column(EnumText(IssueStatus), default=IssueStatus.DRAFT)
    subject: Mapped[str] = mapped_column(Text, default="")
    preheader: Mapped[str] = mapped_column(Text, default="")
    intro: Mapped[str] = mapped_column(Text, default="")
    content: Mapped[dict] = mapped_column(JSON, default=dict)  # type: ignore[type-arg]
    html: Mapped[str] = mapped_column(Text, default="")
    text: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    frozen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    send_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
