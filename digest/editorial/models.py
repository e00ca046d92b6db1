"""Tables of the editorial stage: newsletters, their editions, and the picks in them.

A newsletter has its own sender, schedule, template and subscribers; every column of
it left NULL falls back to the operator's settings (DIGEST_FROM, DIGEST_SCHEDULE ...),
so an installation that had one newsletter keeps behaving exactly as configured.

An edition is one newsletter's issue. Each newsletter always has exactly one open
edition (draft or scheduled): picks, subject and intro go into it, previews and test
sends show it, and a send sends it. It goes draft -> scheduled -> sending -> sent, or
is cancelled; once it is sending it never changes.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy import text as sql_text
from sqlalchemy.orm import Mapped, mapped_column

from digest.clock import utcnow
from digest.store.base import Base, EnumText, UTCDateTime


class Newsletter(Base):
    """One newsletter of the installation. NULL columns mean "as in the settings"."""

    __tablename__ = "newsletters"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str | None] = mapped_column(String(200))
    from_addr: Mapped[str | None] = mapped_column(Text)
    reply_to: Mapped[str | None] = mapped_column(Text)
    list_id: Mapped[str | None] = mapped_column(String(200))
    schedule: Mapped[str | None] = mapped_column(String(100))
    timezone: Mapped[str | None] = mapped_column(String(64))
    #: Stem of the template pair: "digest" renders digest.mjml.j2 and digest.txt.j2.
    template: Mapped[str] = mapped_column(String(60), default="digest")
    #: Colour overrides for _palette.j2, e.g. {"accent": "#0b5394"}.
    palette: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    language: Mapped[str] = mapped_column(String(16), default="en")
    sections: Mapped[list[str] | None] = mapped_column(JSON)
    #: The installation's first newsletter: its archive keeps the plain /issues/ paths.
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class EditionStatus(enum.StrEnum):
    """draft -> scheduled -> sending -> sent; or cancelled."""

    DRAFT = "draft"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    SENT = "sent"
    CANCELLED = "cancelled"


#: Still being prepared: the newsletter's "next edition" (exactly one per newsletter).
OPEN = (EditionStatus.DRAFT, EditionStatus.SCHEDULED)
#: Their "view in browser" links are in inboxes: shown in the public archive.
PUBLISHED = (EditionStatus.SENDING, EditionStatus.SENT)


class Edition(Base):
    """One newsletter's issue. Once rendered, `content` is the snapshot that was rendered."""

    __tablename__ = "editions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    newsletter_id: Mapped[int] = mapped_column(ForeignKey("newsletters.id"))
    key: Mapped[str] = mapped_column(String(32))
    status: Mapped[EditionStatus] = mapped_column(
        EnumText(EditionStatus), default=EditionStatus.DRAFT
    )
    #: When the scheduler sends it (the schedule's slot, or a time an editor chose).
    planned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: The schedule that gave planned_at: a draft follows its newsletter's schedule when
    #: that changes (a scheduled edition keeps the time an editor chose).
    slot_rule: Mapped[str | None] = mapped_column(String(200))
    subject: Mapped[str] = mapped_column(Text, default="")
    preheader: Mapped[str] = mapped_column(Text, default="")
    intro: Mapped[str] = mapped_column(Text, default="")
    content: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    html: Mapped[str] = mapped_column(Text, default="")
    text: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: When `content`, `html` and `text` were last rendered (None: never built).
    frozen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    send_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: A send on pause: senders claim nothing new until it is resumed.
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    note: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (
        UniqueConstraint("newsletter_id", "key", name="uq_editions_newsletter_key"),
        # Exactly one open edition per newsletter, decided by the database.
        Index(
            "uq_editions_one_open",
            "newsletter_id",
            unique=True,
            postgresql_where=sql_text("status IN ('draft', 'scheduled')"),
            sqlite_where=sql_text("status IN ('draft', 'scheduled')"),
        ),
    )

    @property
    def is_built(self) -> bool:
        return self.frozen_at is not None and bool(self.html)


class Pick(Base):
    """A story an editor picked for an edition."""

    __tablename__ = "picks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    edition_id: Mapped[int] = mapped_column(ForeignKey("editions.id"), index=True)
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
    #: Removed on the desk, kept a while so "Undo" can bring it back.
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
