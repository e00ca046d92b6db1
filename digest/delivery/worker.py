"""`digest worker`: a process that joins every send in progress (PostgreSQL only).

It registers itself in `workers`, takes the oldest issue that is sending and has
rows to claim, and sends its claims with the same Sender as `digest send`; when
there is nothing to claim it polls. Any number of workers on any number of
machines share a send through the claims in the ledger (digest.claims), so
nobody gets two copies and a worker that dies only delays its batch by one
lease. SIGTERM/SIGINT: the messages in flight finish, the rest is given back,
exit 0. SQLite is one process by design, so there is no worker for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from digest.delivery import claims, ledger
from digest.delivery.models import OWED, Delivery, DeliveryStatus
from digest.delivery.presence import Presence, reap
from digest.delivery.sender import Sender, SendReport
from digest.delivery.transports import make_transport
from digest.delivery.transports.base import Transport
from digest.editorial import newsletters
from digest.editorial.models import Edition, EditionStatus, Newsletter
from digest.errors import StateError, TransportError
from digest.settings import Settings
from digest.store import retry

log = logging.getLogger("digest.worker")
T = TypeVar("T")

SQLITE_REFUSAL = (
    "digest worker needs PostgreSQL: SQLite is one process by design, use `digest send` "
    "(or set DIGEST_DATABASE_URL=postgresql://... to send from several machines)"
)
#: Longest wait between attempts while the SMTP server cannot be used at all.
MAX_TRANSPORT_BACKOFF = 60.0


@dataclass
class WorkerReport:
    """Every issue run a worker took part in."""

    worker_id: str
    runs: list[SendReport] = field(default_factory=list)
    stopped: bool = False

    def total(self, kind: DeliveryStatus) -> int:
        return sum(r.run[kind] for r in self.runs)

    def summary(self) -> str:
        keys = sorted({r.issue_key for r in self.runs if r.claimed})
        state = "stopped" if self.stopped else "done"
        return (
            f"worker={self.worker_id} state={state} issues={','.join(keys) or '-'} "
            f"sent={self.total(DeliveryStatus.SENT)} deferred={self.total(DeliveryStatus.DEFERRED)} "
            f"failed={self.total(DeliveryStatus.FAILED)} skipped={self.total(DeliveryStatus.SKIPPED)}"
        )


class Worker:
    """Loops over the sends in progress until stopped (or, with `once`, until none is left)."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        *,
        once: bool = False,
        stop: asyncio.Event | None = None,
        on_run: Callable[[SendReport], None] | None = None,
        transport_factory: Callable[[Settings], Transport] = make_transport,
    ) -> None:
        if engine.dialect.name != "postgresql":
            raise StateError(SQLITE_REFUSAL)
        self.engine = engine
        self.settings = settings
        self.once = once
        self.stop = stop or asyncio.Event()
        self.on_run = on_run
        self.transport_factory = transport_factory
        self.presence = Presence.here("worker", settings.lease_seconds)
        self.report = WorkerReport(self.presence.id)

    async def _db(self, fn: Callable[[Session], T]) -> T:
        return await asyncio.to_thread(retry.retrying, self.engine, fn)

    async def run(self) -> WorkerReport:
        await self._db(lambda s: self.presence.join(s))
        backoff = self.settings.worker_poll_seconds
        try:
            while not self.stop.is_set():
                issue = await self._db(self._next_issue)
                if issue is None:
                    outlook = await self._db(self._idle)
                    if self.once and not outlook.owed:
                        break
                    await self._sleep(outlook.wait(self.settings.worker_poll_seconds))
                    continue
                try:
                    await self._send(issue)
                    backoff = self.settings.worker_poll_seconds
                except TransportError as exc:
                    if self.once:
                        raise
                    log.warning("%s; trying again in %.0fs", exc, backoff)
                    await self._sleep(backoff)
                    backoff = min(backoff * 2, MAX_TRANSPORT_BACKOFF)
        finally:
            self.report.stopped = self.stop.is_set()
            await self._db(lambda s: self.presence.leave(s))
        return self.report

    async def _send(self, found: tuple[Edition, Settings]) -> None:
        # A Sender sets its stop event when its transport fails; that must end this
        # run only, not the worker, so it gets an event of its own that ours sets.
        issue, own = found
        halt = asyncio.Event()
        relay = asyncio.create_task(self._relay(halt))
        try:
            async with self.transport_factory(own) as transport:
                sender = Sender(
                    self.engine,
                    own,
                    issue,
                    transport,
                    stop=halt,
                    wait_for_retries=False,
                    presence=self.presence,
                )
                result = await sender.run()
        finally:
            relay.cancel()
        self.report.runs.append(result)
        if self.on_run and result.claimed:
            self.on_run(result)

    async def _relay(self, halt: asyncio.Event) -> None:
        await self.stop.wait()
        halt.set()

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self.stop.wait(), timeout=max(seconds, 0.01))
        except TimeoutError:
            pass

    def _next_issue(self, session: Session) -> tuple[Edition, Settings] | None:
        """The oldest sending edition with rows to claim now (after freeing dead peers'
        rows), with its newsletter's view of the settings (sender, List-Id ...)."""
        reap(session, self.presence)
        edition_id = claims.claimable_edition(session)
        edition = session.get(Edition, edition_id) if edition_id is not None else None
        if edition is None:
            return None
        newsletter = session.get(Newsletter, edition.newsletter_id)
        assert newsletter is not None
        return edition, newsletters.settings_for(self.settings, newsletter)

    def _idle(self, session: Session) -> claims.Outlook:
        """Nothing to claim: say we are alive, close finished sends, see what is left."""
        self.presence.beat(session, None, 0)
        finish_idle(session)
        return claims.outlook(session)


def finish_idle(session: Session) -> int:
    """Mark sent every sending issue that owes nothing (its last sender died before)."""
    owed = (
        select(Delivery.id)
        .where(Delivery.edition_id == Edition.id, Delivery.status.in_(OWED))
        .exists()
    )
    done = session.scalars(
        select(Edition).where(Edition.status == EditionStatus.SENDING, ~owed)
    ).all()
    return sum(ledger.finish_if_done(session, issue) for issue in done)
