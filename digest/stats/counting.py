"""The counters in the store: add a click, take back a burst's clicks.

One statement per counter (an upsert), so concurrent clicks never lose an increment
on either backend.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, update
from sqlalchemy.orm import Session

from digest.stats.models import ReaderClick, StoryClick
from subscribers.model import Subscriber


def _insert(session: Session, model: type[Any]) -> Any:
    """The dialect's INSERT (both have ON CONFLICT ... DO UPDATE)."""
    from sqlalchemy.dialects import postgresql, sqlite

    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(model)
    return sqlite.insert(model)


def add(
    session: Session, edition_id: int, pick_id: int, subscriber_id: int | None, now: datetime
) -> None:
    """One counted click; with `subscriber_id` (per-subscriber mode) also the reader's."""
    story = _insert(session, StoryClick).values(edition_id=edition_id, pick_id=pick_id, clicks=1)
    session.execute(
        story.on_conflict_do_update(
            index_elements=["edition_id", "pick_id"],
            set_={"clicks": StoryClick.clicks + 1},
        )
    )
    if subscriber_id is None or session.get(Subscriber, subscriber_id) is None:
        return  # an erased reader's old link still counts for the story
    reader = _insert(session, ReaderClick).values(
        edition_id=edition_id,
        pick_id=pick_id,
        subscriber_id=subscriber_id,
        clicks=1,
        first_at=now,
        last_at=now,
    )
    session.execute(
        reader.on_conflict_do_update(
            index_elements=["edition_id", "pick_id", "subscriber_id"],
            set_={"clicks": ReaderClick.clicks + 1, "last_at": now},
        )
    )


def take_back(session: Session, edition_id: int, clicks: Iterable[tuple[int, int | None]]) -> None:
    """Undo clicks counted before a burst showed they were a scanner's."""
    for pick_id, subscriber_id in clicks:
        session.execute(
            update(StoryClick)
            .where(
                StoryClick.edition_id == edition_id,
                StoryClick.pick_id == pick_id,
                StoryClick.clicks > 0,
            )
            .values(clicks=StoryClick.clicks - 1)
        )
        if subscriber_id is None:
            continue
        mine = and_(
            ReaderClick.edition_id == edition_id,
            ReaderClick.pick_id == pick_id,
            ReaderClick.subscriber_id == subscriber_id,
        )
        session.execute(update(ReaderClick).where(mine).values(clicks=ReaderClick.clicks - 1))
        session.execute(delete(ReaderClick).where(mine, ReaderClick.clicks <= 0))
