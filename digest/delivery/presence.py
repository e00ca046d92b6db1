"""Who is sending: each sender process holds a `sender/<id>` lease (digest.store.leases).

`digest send --status` lists the live ones. A sender that finds ledger rows claimed by a
process on its own machine that no longer exists gives them back at once instead of
waiting for their leases to run out, so a killed `digest send` resumes immediately;
senders on other machines are judged by their leases alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest.clock import utcnow
from digest.delivery import claims
from digest.editorial.models import Edition
from digest.store import leases

PREFIX = "sender/"
#: Leases of senders not seen for this long (and at least 3 leases) are deleted.
STALE_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class Presence:
    """This process as a sender: its holder id prefixes every claim token it makes."""

    holder: leases.Holder
    role: str
    lease_seconds: float

    @classmethod
    def here(cls, role: str, lease_seconds: float) -> Presence:
        return cls(leases.Holder.here(), role, lease_seconds)

    @property
    def id(self) -> str:
        return self.holder.id

    @property
    def name(self) -> str:
        return PREFIX + self.holder.id

    def token(self, batch: int) -> str:
        return self.holder.token(batch)

    def join(self, session: Session, edition_id: int | None = None) -> None:
        leases.acquire(
            session,
            self.name,
            self.holder,
            self.lease_seconds,
            role=self.role,
            edition_id=edition_id,
            sent=0,
        )

    def beat(self, session: Session, edition_id: int | None, sent: int) -> None:
        """Say we are alive and what we are on; re-join if a peer pruned us meanwhile."""
        if not leases.renew(
            session, self.name, self.holder, self.lease_seconds, edition_id=edition_id, sent=sent
        ):
            self.join(session, edition_id)

    def leave(self, session: Session) -> None:
        leases.release(session, self.name, self.holder)


def reap(session: Session, me: Presence) -> int:
    """Free the claims of dead senders on this machine; forget long-silent ones.

    Returns how many ledger rows were given back.
    """
    died, _stale = leases.dead(session, PREFIX, max(STALE_SECONDS, 3 * me.lease_seconds))
    freed = 0
    for row in died:
        freed += claims.release_holder(session, row.holder)
        leases.forget(session, row.name)
    return freed


@dataclass(frozen=True, slots=True)
class Active:
    id: str
    role: str
    host: str
    pid: int
    issue_key: str | None
    sent: int
    seen: float  # seconds since its lease was last renewed


def active(session: Session) -> list[Active]:
    """Senders whose lease still binds."""
    rows = leases.live(session, PREFIX)
    ids = {r.edition_id for r in rows if r.edition_id is not None}
    keys = {
        i: k for i, k in session.execute(select(Edition.id, Edition.key).where(Edition.id.in_(ids)))
    }
    now = utcnow()
    out = []
    for r in rows:
        out.append(
            Active(
                r.holder,
                r.role,
                r.label.rsplit(" pid ", 1)[0],
                r.pid,
                keys.get(r.edition_id) if r.edition_id is not None else None,
                r.sent,
                max(0.0, (now - r.renewed_at).total_seconds()),
            )
        )
    return out


def describe(session: Session) -> str:
    """One line for `digest send --status`."""
    workers = active(session)
    if not workers:
        return "workers: none active"
    parts = [
        f"{w.host}:{w.pid} ({w.role}, {w.issue_key or 'idle'}, {w.sent} sent, "
        f"seen {w.seen:.0f}s ago)"
        for w in workers
    ]
    return f"workers: {len(workers)} active: " + "; ".join(parts)
