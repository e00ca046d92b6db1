"""Sliding-window limits kept in the database: sign-in failures and sign-ups.

Kept in the store rather than in memory so limits hold across restarts and across
several `digest serve` processes on one database. Keys (client addresses, editor
names, email addresses) are stored only as keyed hashes.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from digest.clock import utcnow
from digest.web.models import ThrottleEvent


@dataclass(frozen=True)
class Limit:
    """At most `count` events per `window` for one key within `scope`."""

    scope: str
    count: int
    window: timedelta


#: Failed sign-ins per editor name, and per client address (any names).
LOGIN_PER_NAME = Limit("login-name", 5, timedelta(minutes=15))
LOGIN_PER_CLIENT = Limit("login-client", 20, timedelta(minutes=15))
#: Sign-up form posts per client address.
SIGNUP_PER_CLIENT = Limit("signup-client", 10, timedelta(hours=1))
#: Confirmation emails per address: the form cannot be used to flood one mailbox.
CONFIRM_MAIL_PER_ADDRESS = Limit("confirm-mail", 3, timedelta(hours=24))
#: The longest window above; older events are purged.
LONGEST = timedelta(hours=24)


def _key(secret: bytes, scope: str, value: str) -> str:
    return hmac.new(secret, f"throttle\0{scope}\0{value}".encode(), hashlib.sha256).hexdigest()


def _aware(value: datetime) -> datetime:
    """SQLite hands datetimes back naive; they were stored as UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


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
    wait = _aware(oldest) + limit.window - now
    return max(wait, timedelta(seconds=1))


def hit(
    session: Session, limit: Limit, value: str, secret: bytes, now: datetime | None = None
) -> None:
    """Count one event, and forget this key's events that left the window."""
    now = now or utcnow()
    key = _key(secret, limit.scope, value)
    session.execute(
        delete(ThrottleEvent).where(
            ThrottleEvent.scope == limit.scope,
            ThrottleEvent.key == key,
            ThrottleEvent.at <= now - limit.window,
        )
    )
    session.add(ThrottleEvent(scope=limit.scope, key=key, at=now))
    session.flush()


def take(
    session: Session, limit: Limit, value: str, secret: bytes, now: datetime | None = None
) -> timedelta | None:
    """Count an event if the limit allows it: None when counted, else the wait."""
    wait = retry_after(session, limit, value, secret, now)
    if wait is None:
        hit(session, limit, value, secret, now)
    return wait


def clear(session: Session, limit: Limit, value: str, secret: bytes) -> None:
    """Forget a key's events (a successful sign-in clears its failures)."""
    key = _key(secret, limit.scope, value)
    session.execute(
        delete(ThrottleEvent).where(ThrottleEvent.scope == limit.scope, ThrottleEvent.key == key)
    )


def purge(session: Session, now: datetime | None = None) -> int:
    """Delete every event older than the longest window (run at start-up)."""
    cutoff = (now or utcnow()) - LONGEST
    return session.execute(delete(ThrottleEvent).where(ThrottleEvent.at < cutoff)).rowcount or 0


def minutes(wait: timedelta) -> int:
    """A wait as whole minutes for people (at least 1)."""
    return max(1, -(-int(wait.total_seconds()) // 60))
