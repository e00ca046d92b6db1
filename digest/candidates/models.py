"""Tables of the candidates: each polled feed's state, and the stories found in them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from digest.clock import utcnow
from digest.editorial.models import Newsletter  # noqa: F401 - candidates may belong to one
from digest.store.base import Base, UTCDateTime


class CandidateFeed(Base):
    """One feed of DIGEST_CANDIDATE_FEEDS: what the last poll got, for a conditional GET."""

    __tablename__ = "candidate_feeds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    #: SHA-256 of the URL: unique, and short enough for any index.
    url_key: Mapped[str] = mapped_column(String(64), unique=True)
    etag: Mapped[str | None] = mapped_column(Text)
    last_modified: Mapped[str | None] = mapped_column(Text)
    polled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: "200", "304" or why the poll failed.
    outcome: Mapped[str] = mapped_column(Text, default="")
    items: Mapped[int] = mapped_column(Integer, default=0)
    added: Mapped[int] = mapped_column(Integer, default=0)


class Candidate(Base):
    """A story from the newsroom's site, offered on the desk (deduplicated by URL)."""

    __tablename__ = "candidates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: NULL: offered to every newsletter; else to this one only (`slug=URL` feeds).
    newsletter_id: Mapped[int | None] = mapped_column(
        ForeignKey("newsletters.id", ondelete="CASCADE")
    )
    url: Mapped[str] = mapped_column(Text)
    #: SHA-256 of the normalised URL (digest.editorial.repeats.url_key): the dedup key.
    url_key: Mapped[str] = mapped_column(String(64), unique=True)
    feed_url: Mapped[str] = mapped_column(Text, default="")
    title: Mapped[str] = mapped_column(Text)
    summary: Mapped[str] = mapped_column(Text, default="")
    section: Mapped[str] = mapped_column(String(80), default="")
    image_url: Mapped[str | None] = mapped_column(Text)
    image_alt: Mapped[str] = mapped_column(Text, default="")
    image_credit: Mapped[str] = mapped_column(Text, default="")
    byline: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    dismissed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_candidates_seen_at", "seen_at"),)
