"""Leadership among schedulers on one database: the `scheduler` lease (digest.store.leases).

Any number of `digest schedule` processes (or web apps running the scheduler) may point
at one database; exactly one holds the lease and fires the jobs, the others stand by
and take over when the holder stops renewing it (or at once, when it died on their own
machine). This keeps APScheduler's rule that a job store is never shared by running
schedulers, and means a scheduled send never runs twice at once.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.engine import Engine

from digest.store import leases
from digest.store.engine import session_scope

SCHEDULER = "scheduler"


class Leadership:
    """One process's claim on the leadership. All methods block (run them in a thread)."""

    def __init__(self, engine: Engine, ttl: float, name: str = SCHEDULER) -> None:
        self.engine = engine
        self.ttl = ttl
        self.name = name
        self.me = leases.Holder.here()
        self.holder = self.me.label
        self.expires_at: datetime | None = None

    def acquire(self) -> leases.Claim:
        """Take the lease if it is free, expired, ours, or held by a dead process here."""
        with session_scope(self.engine) as session:
            claim = leases.acquire(session, self.name, self.me, self.ttl, role="scheduler")
            if claim.acquired:
                self.expires_at = self._expiry(session)
        return claim

    def renew(self) -> bool:
        """Extend our lease; False if it is no longer ours (a standby took over)."""
        with session_scope(self.engine) as session:
            ok = leases.renew(session, self.name, self.me, self.ttl)
            self.expires_at = self._expiry(session) if ok else None
        return ok

    def release(self) -> None:
        """Give the lease up so a standby can take over at once."""
        with session_scope(self.engine) as session:
            leases.release(session, self.name, self.me)
        self.expires_at = None

    def current(self) -> leases.Lease | None:
        with session_scope(self.engine) as session:
            return leases.current(session, self.name)

    def _expiry(self, session) -> datetime | None:  # type: ignore[no-untyped-def]
        row = leases.current(session, self.name)
        return row.expires_at if row is not None and row.holder == self.me.id else None
