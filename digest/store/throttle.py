"""Sliding-window limits kept in the database (sign-in failures, sign-ups, API calls).

Kept in the store rather than in memory so limits hold across restarts and across
several `digest serve` processes on one database. Keys (client addresses, editor
names, email addresses) are stored only as keyed hashes.

Check-then-count must be atomic, or parallel requests all pass the check before any of
them is counted (40 parallel sign-ins once got 19 password checks past a limit of 5):
`take` and callers that combine several limits hold `lock(session)` first, which
serialises throttle writers until the transaction ends.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Index, Integer, String, Table, delete, func, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from digest.clock import utcnow
from digest.store.base import Base, UTCDateTime
from digest.store.engine import affected


class ThrottleEvent(Base):
    """One counted event (a failed sign-in, a sign-up) for sliding-window limits."""

    __tablename__ = "throttle_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scope: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        Index("ix_throttle_events_scope_key_at", "scope", "key", "at"),
        Index("ix_throttle_events_at", "at"),
    )


@dataclass(frozen=True)
class Limit:
    """At most `count` events per `window` for one key within `scope`."""

    scope: str
    count: int
    window: timedelta


#: pg_advisory_xact_lock key serialising throttle writers ("thrt").
THROTTLE_LOCK = 0x74687274


def lock(session: Session) -> None:
    """Hold, until this transaction ends, the right to check and count events.

    PostgreSQL: an advisory lock. SQLite: the database's write lock, taken now by an
    UPDATE that matches no row (a transaction that only read first could not upgrade).
    Call it first in the transaction.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(THROTTLE_LOCK)))
    else:
        table = cast(Table, ThrottleEvent.__table__)
        session.execute(update(table).where(table.c.id == -1).values(scope=table.c.scope))


def _key(secret: bytes, scope: str, value: str) -> str:
    return hmac.new(secret, f"throttle\0{scope}\0{value}".encode(), hashlib.sha256).hexdigest()


def retry_after(
    session: Session, limit: Limit, value: str, secret: bytes, now: datetime | None = None
) -> timedelta | None:
    """None while under the limit; otherwise how long until the next event is allowed."""
    now = now or utcnow()
    since = now - limit.window
    key = _key(secret, limit.scope, value)
    n, oldest = session.execute(
        select(func.count(), func.min(ThrottleEvent.at)).where(
            ThrottleEvent.scope == limit.scope, ThrottleEvent.key == key, ThrottleEvent.at > since
        )
    ).one()
    if n < limit.count:
        return None
    wait = oldest + limit.window - now
    return max(wait, timedelta(seconds=1))


def hit(
    session: Session, limit: Limit, value: str, secret: bytes, now: datetime | None = None
) -> int:
    """Count one event, and forget this key's events that left the window; the event's id."""
    now = now or utcnow()
    key = _key(secret, limit.scope, value)
    session.execute(
        delete(ThrottleEvent).where(
            ThrottleEvent.scope == limit.scope,
            ThrottleEvent.key == key,
            ThrottleEvent.at <= now - limit.window,
        )
    )
    event = ThrottleEvent(scope=limit.scope, key=key, at=now)
    session.add(event)
    session.flush()
    return event.id


def latest(
    session: Session, limit: Limit, value: str, secret: bytes, now: datetime | None = None
) -> tuple[int, datetime | None]:
    """(events in the window, when the newest happened) for one key."""
    since = (now or utcnow()) - limit.window
    key = _key(secret, limit.scope, value)
    n, newest = session.execute(
        select(func.count(), func.max(ThrottleEvent.at)).where(
            ThrottleEvent.scope == limit.scope, ThrottleEvent.key == key, ThrottleEvent.at > since
        )
    ).one()
    return n, newest


def forget(session: Session, ids: list[int]) -> None:
    """Remove particular events (an attempt that turned out fine)."""
    if ids:
        session.execute(delete(ThrottleEvent).where(ThrottleEvent.id.in_(ids)))


def take(
    session: Session,
    limit: Limit,
    value: str,
    secret: bytes,
    now: datetime | None = None,
    *,
    count: int = 1,
) -> timedelta | None:
    """Count `count` events if the limit allows them all (atomically): None when counted,
    else how long until it would (never, for more than the limit: the whole window)."""
    lock(session)
    now = now or utcnow()
    if count == 1:
        wait = retry_after(session, limit, value, secret, now)
    else:
        key = _key(secret, limit.scope, value)
        times = session.scalars(
            select(ThrottleEvent.at)
            .where(
                ThrottleEvent.scope == limit.scope,
                ThrottleEvent.key == key,
                ThrottleEvent.at > now - limit.window,
            )
            .order_by(ThrottleEvent.at)
        ).all()
        excess = len(times) + count - limit.count
        if excess <= 0:
            wait = None
        elif excess > len(times):
            wait = limit.window
        else:
            wait = max(times[excess - 1] + limit.window - now, timedelta(seconds=1))
    if wait is None:
        for _ in range(count):
            hit(session, limit, value, secret, now)
    return wait


def clear(session: Session, limit: Limit, value: str, secret: bytes) -> None:
    """Forget a key's events (a successful sign-in clears its failures)."""
    key = _key(secret, limit.scope, value)
    session.execute(
        delete(ThrottleEvent).where(ThrottleEvent.scope == limit.scope, ThrottleEvent.key == key)
    )


def purge(session: Session, longest: timedelta, now: datetime | None = None) -> int:
    """Delete every event older than `longest`, the longest window in use (at start-up)."""
    cutoff = (now or utcnow()) - longest
    return affected(session.execute(delete(ThrottleEvent).where(ThrottleEvent.at < cutoff)))
