"""Leases: who holds what, and until when. One scheme for every holder.

A process is a `Holder`: an id (`host:pid:random`), the machine it runs on (host, boot
and PID namespace: where a PID means the same process) and its PID. It holds named
leases in the `leases` table - the scheduler's leadership (`scheduler`), each sender's
presence (`sender/<holder id>`) - and its senders hold ledger rows under claim tokens
`<holder id>/<batch>` (digest.delivery.claims), judged by the same rule:

    a lease binds while it has not expired by the database's clock and, when its
    holder ran on this machine, while that process still exists.

So a holder that crashed is replaced at once by a successor on the same machine, and
otherwise when its lease runs out; times come from the database (PostgreSQL's now()),
so machines with skewed clocks still agree on when a lease ends.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import Integer, Interval, String, delete, func, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column
from sqlalchemy.sql.elements import ColumnElement

from digest.clock import utcnow
from digest.store.base import Base, UTCDateTime
from digest.store.engine import affected


class Lease(Base):
    """One named lease: who holds it, from where, until when, and what it is doing."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(160), primary_key=True)
    holder: Mapped[str] = mapped_column(String(120))
    label: Mapped[str] = mapped_column(String(255))
    machine: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(16), default="")
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime)
    renewed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: What a sender is working on, for `digest send --status`.
    edition_id: Mapped[int | None] = mapped_column(Integer)
    sent: Mapped[int] = mapped_column(Integer, default=0)


# -- identity -----------------------------------------------------------------------


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
    """Whether a process with this PID exists here (a zombie counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. EPERM: it exists but belongs to someone else
        return True
    return True


def gone(machine: str, pid: int) -> bool:
    """True when a holder provably died: it ran on this machine and its PID is gone."""
    return machine == machine_id() and pid != os.getpid() and not pid_alive(pid)


@dataclass(frozen=True, slots=True)
class Holder:
    """This process (or one role in it) as a lease holder."""

    id: str
    host: str
    machine: str
    pid: int

    @classmethod
    def here(cls) -> Holder:
        """A new holder identity for this process (each call is a distinct holder)."""
        host = socket.gethostname()
        safe = re.sub(r"[^A-Za-z0-9.-]", "-", host)[:80] or "host"
        pid = os.getpid()
        return cls(f"{safe}:{pid}:{secrets.token_hex(3)}", host[:255], machine_id(), pid)

    @property
    def label(self) -> str:
        return f"{self.host} pid {self.pid}"[:255]

    def token(self, batch: int) -> str:
        """The claim token for one batch of ledger rows."""
        return f"{self.id}/{batch}"


# -- the clock ------------------------------------------------------------------------


def db_now(session: Session, offset: float = 0.0) -> ColumnElement[Any]:
    """The database's now (+ `offset` seconds) on PostgreSQL; this machine's on SQLite.

    SQLite is one machine by design, so its clock is the only one there is.
    """
    if session.get_bind().dialect.name == "postgresql":
        if not offset:
            return func.now()
        return func.now() + literal(timedelta(seconds=offset), Interval())
    return literal(utcnow() + timedelta(seconds=offset), UTCDateTime())


# -- named leases ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Claim:
    """The outcome of one attempt: did we get it, and who holds it otherwise."""

    acquired: bool
    holder: str = ""
    expires_at: datetime | None = None


def acquire(
    session: Session, name: str, holder: Holder, ttl: float, role: str = "", **info: Any
) -> Claim:
    """Take lease `name` if it is free, ours, expired, or held by a process that died here."""
    values = {
        "holder": holder.id,
        "label": holder.label,
        "machine": holder.machine,
        "pid": holder.pid,
        "role": role,
        "acquired_at": db_now(session),
        "renewed_at": db_now(session),
        "expires_at": db_now(session, ttl),
        **info,
    }
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    created = affected(
        session.execute(
            insert(Lease)
            .values(name=name, **values)
            .on_conflict_do_nothing(index_elements=["name"])
            .execution_options(preserve_rowcount=True)
        )
    )
    if created == 1:
        return Claim(True, holder.label)
    row = session.execute(select(Lease).where(Lease.name == name)).scalar_one_or_none()
    if row is None:  # released between the two statements: try once more
        return acquire(session, name, holder, ttl, role, **info)
    free = Lease.expires_at <= db_now(session)
    if row.holder == holder.id:
        values.pop("acquired_at")
        free = literal(True)
    elif gone(row.machine, row.pid):
        free = literal(True)
    taken = affected(
        session.execute(
            update(Lease)
            .where(Lease.name == name, Lease.holder == row.holder, free)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
    )
    if taken == 1:
        return Claim(True, holder.label)
    session.expire(row)
    current = session.get(Lease, name)
    if current is None:
        return Claim(False, "another holder")
    return Claim(False, current.label, current.expires_at)


def renew(session: Session, name: str, holder: Holder, ttl: float, **info: Any) -> bool:
    """Extend our lease (and update what it says); False if it is no longer ours."""
    result = affected(
        session.execute(
            update(Lease)
            .where(Lease.name == name, Lease.holder == holder.id)
            .values(renewed_at=db_now(session), expires_at=db_now(session, ttl), **info)
            .execution_options(synchronize_session=False)
        )
    )
    return result == 1


def release(session: Session, name: str, holder: Holder) -> None:
    """Give the lease up so a successor can take over at once."""
    session.execute(delete(Lease).where(Lease.name == name, Lease.holder == holder.id))


def current(session: Session, name: str) -> Lease | None:
    return session.execute(select(Lease).where(Lease.name == name)).scalar_one_or_none()


def live(session: Session, prefix: str) -> list[Lease]:
    """Leases under `prefix` that still bind by the clock, oldest first."""
    return list(
        session.scalars(
            select(Lease)
            .where(
                Lease.name.startswith(prefix, autoescape=True), Lease.expires_at >= db_now(session)
            )
            .order_by(Lease.acquired_at, Lease.name)
        )
    )


def dead(session: Session, prefix: str, stale_after: float) -> tuple[list[Lease], int]:
    """Leases under `prefix` whose holder died on this machine (returned, for the caller to
    clean up after), and how many expired more than `stale_after` seconds ago (deleted)."""
    here = session.scalars(
        select(Lease).where(
            Lease.name.startswith(prefix, autoescape=True), Lease.machine == machine_id()
        )
    ).all()
    died = [row for row in here if gone(row.machine, row.pid)]
    stale = affected(
        session.execute(
            delete(Lease).where(
                Lease.name.startswith(prefix, autoescape=True),
                Lease.expires_at < db_now(session, -stale_after),
            )
        )
    )
    return died, stale or 0


def forget(session: Session, name: str) -> None:
    """Delete a lease whatever holds it (after cleaning up behind a dead holder)."""
    session.execute(delete(Lease).where(Lease.name == name))
