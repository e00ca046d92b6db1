"""Who is sending: one row per live sender process in the `workers` table.

`digest send --status` lists them. A sender that finds rows claimed by a process
on its own machine that no longer exists gives them back at once instead of
waiting for the lease to run out, so a killed `digest send` resumes immediately;
senders on other machines are only ever judged by their leases.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from digest.clock import utcnow
from digest.delivery import claims
from digest.delivery.models import Worker
from digest.editorial.models import Issue

#: Rows of senders not seen for this long (and at least 3 leases) are deleted.
STALE_SECONDS = 3600.0


def _node() -> str:
    """This machine's process table: the host name plus the PID namespace."""
    try:
        ns = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        ns = 0
    return f"{socket.gethostname()}#{ns}"


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists here (a zombie counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. EPERM: it exists but belongs to someone else
        return True
    return True


@dataclass(frozen=True, slots=True)
class Presence:
    """This process as a sender: its id is the prefix of every claim token it makes."""

    id: str
    role: str
    host: str
    node: str
    pid: int

    @classmethod
    def here(cls, role: str) -> Presence:
        host = socket.gethostname()
        safe = re.sub(r"[^A-Za-z0-9.-]", "-", host)[:80] or "host"
        pid = os.getpid()
        return cls(f"{safe}:{pid}:{secrets.token_hex(3)}", role, host[:255], _node()[:255], pid)

    def token(self, batch: int) -> str:
        return f"{self.id}/{batch}"

    def join(self, session: Session, issue_id: int | None = None) -> None:
        now = claims.now_sql(session)
        session.add(
            Worker(
                id=self.id,
                role=self.role,
                host=self.host,
                node=self.node,
                pid=self.pid,
                started_at=utcnow(),
                heartbeat_at=now,
                issue_id=issue_id,
                sent=0,
            )
        )
        session.flush()

    def beat(self, session: Session, issue_id: int | None, sent: int) -> None:
        """Say we are alive and what we are on; re-join if a peer pruned us meanwhile."""
        result = session.execute(
            update(Worker)
            .where(Worker.id == self.id)
            .values(heartbeat_at=claims.now_sql(session), issue_id=issue_id, sent=sent)
        )
        if not result.rowcount:
            self.join(session, issue_id)

    def leave(self, session: Session) -> None:
        session.execute(delete(Worker).where(Worker.id == self.id))


def reap(session: Session, me: Presence, lease_seconds: float) -> int:
    """Free the claims of dead senders on this machine; forget long-silent ones.

    Returns how many rows were given back.
    """
    freed = 0
    others = session.execute(
        select(Worker.id, Worker.pid).where(Worker.node == me.node, Worker.id != me.id)
    ).all()
    for worker_id, pid in others:
        if pid != me.pid and not pid_alive(pid):
            freed += claims.release_worker(session, worker_id)
            session.execute(delete(Worker).where(Worker.id == worker_id))
    stale = claims.now_sql(session, -max(STALE_SECONDS, 3 * lease_seconds))
    session.execute(delete(Worker).where(Worker.heartbeat_at < stale))
    return freed


@dataclass(frozen=True, slots=True)
class Active:
    id: str
    role: str
    host: str
    pid: int
    issue_key: str | None
    sent: int
    seen: float  # seconds since its last heartbeat


def active(session: Session, lease_seconds: float) -> list[Active]:
    """Senders that renewed their presence within one lease."""
    rows = session.execute(
        select(
            Worker.id,
            Worker.role,
            Worker.host,
            Worker.pid,
            Issue.key,
            Worker.sent,
            Worker.heartbeat_at,
        )
        .outerjoin(Issue, Issue.id == Worker.issue_id)
        .where(Worker.heartbeat_at >= claims.now_sql(session, -lease_seconds))
        .order_by(Worker.started_at, Worker.id)
    ).all()
    now = utcnow()
    return [Active(*r[:6], seen=max(0.0, (now - _aware(r[6])).total_seconds())) for r in rows]


def describe(session: Session, lease_seconds: float) -> str:
    """One line for `digest send --status`."""
    workers = active(session, lease_seconds)
    if not workers:
        return "workers: none active"
    parts = [
        f"{w.host}:{w.pid} ({w.role}, {w.issue_key or 'idle'}, {w.sent} sent, "
        f"seen {w.seen:.0f}s ago)"
        for w in workers
    ]
    return f"workers: {len(workers)} active: " + "; ".join(parts)


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
