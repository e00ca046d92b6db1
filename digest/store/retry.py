"""Database work that survives a lost connection: retried with backoff.

A sender must not stop, lose or repeat a delivery because PostgreSQL restarted or
a connection broke. Each unit of the sender's database work is one transaction
that is safe to run again (a claim first gives back what its token holds; an
outcome is written only where the token still holds the row, and a retry counts
rather than rewrites what its lost first attempt committed), so a transient error
is simply retried. SQLite's "database is locked" (another process kept writing
longer than the busy timeout) is retried the same way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session

from digest.errors import DigestError
from digest.store.engine import session_scope

log = logging.getLogger("digest.db")
T = TypeVar("T")

#: Give up (and stop the send, leaving every row owed) after this long without a database.
GIVE_UP_AFTER = 300.0
FIRST_DELAY = 0.2
MAX_DELAY = 10.0


class DatabaseUnavailable(DigestError):
    """The database stayed unreachable for longer than the sender waits."""


def is_transient(exc: BaseException) -> bool:
    """A lost connection, a restart, a lock or serialisation conflict: worth retrying."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if not isinstance(exc, OperationalError | InterfaceError):
        return False
    orig = getattr(exc, "orig", None)
    if type(orig).__module__.startswith("sqlite3"):
        text = str(orig).lower()
        return "locked" in text or "busy" in text
    return True


def retrying(
    engine: Engine,
    fn: Callable[[Session], T],
    *,
    give_up_after: float = GIVE_UP_AFTER,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run `fn` in its own transaction until it commits, retrying transient errors."""
    deadline = time.monotonic() + give_up_after
    delay = FIRST_DELAY
    while True:
        try:
            with session_scope(engine) as session:
                return fn(session)
        except Exception as exc:
            if not is_transient(exc):
                raise
            reason = _short(exc)
            if time.monotonic() + delay > deadline:
                raise DatabaseUnavailable(
                    f"the database stayed unavailable for {give_up_after:.0f}s: {reason}"
                ) from exc
            log.warning("database unavailable (%s); retrying in %.1fs", reason, delay)
            sleep(delay)
            delay = min(delay * 2, MAX_DELAY)


def _short(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
