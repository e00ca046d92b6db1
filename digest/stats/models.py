"""The click counters: per story of an edition, and per reader only when chosen.

`story_clicks` is all DIGEST_CLICK_STATS=aggregate ever stores: a number per story
of an edition, with no reader, address or time of a click in it. `reader_clicks`
exists for DIGEST_CLICK_STATS=per-subscriber (personal links, disclosed in every
email and on the privacy page); its rows go with the subscriber when the address
is erased.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer
from sqlalchemy.orm import Mapped, mapped_column

from digest.editorial.models import Edition  # noqa: F401 - the counters refer to editions
from digest.store.base import Base, UTCDateTime
from subscribers.model import Subscriber  # noqa: F401 - reader clicks refer to subscribers


class StoryClick(Base):
    """Counted clicks on one story (a pick of the snapshot) of one edition."""

    __tablename__ = "story_clicks"

    edition_id: Mapped[int] = mapped_column(
        ForeignKey("editions.id", ondelete="CASCADE"), primary_key=True
    )
    pick_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    clicks: Mapped[int] = mapped_column(Integer, default=0)


class ReaderClick(Base):
    """Per-subscriber mode only: one reader's clicks on one story of one edition."""

    __tablename__ = "reader_clicks"

    edition_id: Mapped[int] = mapped_column(
        ForeignKey("editions.id", ondelete="CASCADE"), primary_key=True
    )
    pick_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True
    )
    clicks: Mapped[int] = mapped_column(Integer, default=0)
    first_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_reader_clicks_subscriber", "subscriber_id"),)
