"""Leadership among schedulers on one database: a lease row, renewed while alive.

Any number of `digest schedule` processes (or web apps running the scheduler) may
point at one database; exactly one holds the lease and fires the weekly job, the
others wait on standby and take over when the holder stops renewing it. This keeps
APScheduler's rule that a job store is never shared by running schedulers, and means
a scheduled send never runs twice at once.

A holder that crashed is replaced at once when its successor runs on the same
machine (same host, boot and PID namespace) and can see its process is gone;
otherwise when the lease expires (DIGEST_SCHEDULER_LEASE). Machines' clocks must
agree to within a fraction of that time (NTP).
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache

from sqlalchemy import DateTime, Integer, String, delete, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from digest.clock import utcnow
from digest.store.base import Base
from digest.store.engine import session_scope

SCHEDULER = "scheduler"


class SchedulerLease(Base):
    """Who leads a role (one row per role), until when."""

    __tablename__ = "scheduler_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    token: Mapped[str] = mapped_column(String(64))
    holder: Mapped[str] = mapped_column(String(255))
    machine: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    acquired_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


@cache
def machine_id() -> str:
    """Host, boot and PID namespace: where a PID means the same process."""
    parts = [socket.gethostname()]
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
            parts.append(fh.read().strip())
        parts.append(os.readlink("/proc/self/ns/pid"))
    except OSError:  # not Linux: host name only, so a crashed holder waits for expiry
        parts.append("?")
    return "|".join(parts)[:255]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, belongs to someone else
        return True
    return True


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass
class Claim:
    """The outcome of one attempt: did we get it, and who holds it otherwise."""

    acquired: bool
    holder: str = ""
    expires_at: datetime | None = None


class Leadership:
    """One process's claim on a role. All methods are blocking (run them in a thread)."""

    def __init__(self, engine: Engine, ttl: float, name: str = SCHEDULER) -> None:
        self.engine = engine
        self.ttl = timedelta(seconds=ttl)
        self.name = name
        self.token = secrets.token_hex(16)
        self.holder = f"{socket.gethostname()} pid {os.getpid()}"[:255]
        self.expires_at: datetime | None = None

    def _stale(self, row: SchedulerLease, now: datetime) -> bool:
        if _aware(row.expires_at) <= now:
            return True
        if row.machine != machine_id():
            return False
        # Same machine: a holder whose process is gone is stale at once.
        return not pid_alive(row.pid)

    def acquire(self) -> Claim:
        """Take the lease if it is free, expired, ours, or held by a dead process."""
        now = utcnow()
        expires = now + self.ttl
        values = {
            "token": self.token,
            "holder": self.holder,
            "machine": machine_id(),
            "pid": os.getpid(),
            "acquired_at": now,
            "expires_at": expires,
        }
        try:
            with session_scope(self.engine) as session:
                row = session.get(SchedulerLease, self.name)
                if row is None:
                    session.add(SchedulerLease(name=self.name, **values))
                    session.flush()
                elif row.token == self.token or self._stale(row, now):
                    if row.token == self.token:
                        values["acquired_at"] = row.acquired_at
                    won = session.execute(
                        update(SchedulerLease)
                        .where(SchedulerLease.name == self.name, SchedulerLease.token == row.token)
                        .values(**values)
                        .execution_options(synchronize_session=False)
                    ).rowcount
                    if won != 1:
                        return Claim(False, "another scheduler")
                else:
                    return Claim(False, row.holder, _aware(row.expires_at))
        except IntegrityError:  # another scheduler inserted the row first
            return Claim(False, "another scheduler")
        self.expires_at = expires
        return Claim(True, self.holder, expires)

    def renew(self) -> bool:
        """Extend our lease; False if it is no longer ours (a standby took over)."""
        now = utcnow()
        with session_scope(self.engine) as session:
            n = session.execute(
                update(SchedulerLease)
                .where(SchedulerLease.name == self.name, SchedulerLease.token == self.token)
                .values(expires_at=now + self.ttl)
                .execution_options(synchronize_session=False)
            ).rowcount
        if n == 1:
            self.expires_at = now + self.ttl
        return n == 1

    def release(self) -> None:
        """Give the lease up so a standby can take over at once."""
        with session_scope(self.engine) as session:
            session.execute(
                delete(SchedulerLease).where(
                    SchedulerLease.name == self.name, SchedulerLease.token == self.token
                )
            )
        self.expires_at = None

    def current(self) -> SchedulerLease | None:
        with session_scope(self.engine) as session:
            return session.scalar(select(SchedulerLease).where(SchedulerLease.name == self.name))
