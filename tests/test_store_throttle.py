"""Sliding-window limits in the store (both backends), with explicit clocks."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from digest.clock import utcnow
from digest.store.engine import session_scope
from digest.store.throttle import ThrottleEvent
from digest.web import ratelimit
from digest.web.ratelimit import Limit

LIMIT = Limit("test", 3, timedelta(minutes=10))
MIN = timedelta(minutes=1)


def test_a_sliding_window_per_key(engine, settings) -> None:
    secret = settings.secret()
    t0 = utcnow()
    with session_scope(engine) as s:
        for i in range(3):
            assert ratelimit.take(s, LIMIT, "203.0.113.9", secret, now=t0 + i * MIN) is None
        wait = ratelimit.take(s, LIMIT, "203.0.113.9", secret, now=t0 + 3 * MIN)
        assert wait is not None and abs(wait - 7 * MIN) < timedelta(seconds=1)
        assert ratelimit.minutes(wait) == 7
        # Refused attempts are not counted; other keys and scopes are independent.
        assert ratelimit.take(s, LIMIT, "198.51.100.1", secret, now=t0 + 3 * MIN) is None
        other = Limit("other", 3, LIMIT.window)
        assert ratelimit.take(s, other, "203.0.113.9", secret, now=t0 + 3 * MIN) is None
        # Once the oldest event leaves the window, one more is allowed.
        assert ratelimit.take(s, LIMIT, "203.0.113.9", secret, now=t0 + 10 * MIN + MIN / 2) is None
        later = t0 + 10 * MIN + MIN / 2  # events at +1, +2 and +10.5 min fill the window again
        assert ratelimit.retry_after(s, LIMIT, "203.0.113.9", secret, now=later) is not None


def test_keys_are_stored_hashed_and_old_events_purged(engine, settings) -> None:
    secret = settings.secret()
    t0 = utcnow()
    with session_scope(engine) as s:
        ratelimit.hit(s, LIMIT, "reader@example.com", secret, now=t0)
        ratelimit.hit(s, LIMIT, "reader@example.com", secret, now=t0 - timedelta(days=2))
        keys = set(s.scalars(select(ThrottleEvent.key)))
        assert len(keys) == 1 and "reader" not in next(iter(keys)) and len(next(iter(keys))) == 64
        assert ratelimit.purge(s, ratelimit.LONGEST, now=t0) == 1
        ratelimit.clear(s, LIMIT, "reader@example.com", secret)
        assert s.scalars(select(ThrottleEvent)).all() == []


def test_taking_several_events_at_once(engine, settings) -> None:
    secret = settings.secret()
    t0 = utcnow()
    with session_scope(engine) as s:
        assert ratelimit.take(s, LIMIT, "editor-1", secret, now=t0, count=2) is None
        wait = ratelimit.take(s, LIMIT, "editor-1", secret, now=t0 + MIN, count=2)
        assert wait is not None and abs(wait - 9 * MIN) < timedelta(seconds=1)  # first leaves
        assert ratelimit.take(s, LIMIT, "editor-1", secret, now=t0 + MIN, count=1) is None
        assert ratelimit.take(s, LIMIT, "editor-2", secret, now=t0, count=4) == LIMIT.window
        assert ratelimit.retry_after(s, LIMIT, "editor-2", secret, now=t0) is None  # none taken
