"""The mailer: streams owed deliveries from the ledger through a transport.

Data flow: ledger (batches claimed under a lease, digest.claims) -> messages
built (digest.delivery.message.Preparer: spliced bytes, DKIM-signed on a thread
per core) -> bounded queue -> N workers (rate limit, transport.send) -> results
-> recorder (batched writes). A row is written as sent only after the server
accepted it, so a killed send resumes with nobody skipped and at most the
in-flight messages repeated; several senders (processes, machines) can share one
send. 4xx answers are deferred with backoff and retried in later passes until
they succeed or run out of attempts; 5xx answers are final.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import TypeVar

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from digest.clock import utcnow
from digest.delivery import claims, ledger
from digest.delivery.message import Prepared, Preparer, template_for
from digest.delivery.models import DeliveryStatus
from digest.delivery.presence import Presence, reap
from digest.delivery.transports.base import Outbound, Result, Transport
from digest.editorial.models import Edition, EditionStatus
from digest.settings import Settings
from digest.store import retry
from digest.store.engine import session_scope

log = logging.getLogger("digest.sender")
T = TypeVar("T")

_KINDS = (
    DeliveryStatus.SENT,
    DeliveryStatus.DEFERRED,
    DeliveryStatus.FAILED,
    DeliveryStatus.SKIPPED,
)


@dataclass
class SendReport:
    """What one run did, plus the ledger totals when it ended."""

    issue_key: str
    transport: str
    run: dict[DeliveryStatus, int] = field(default_factory=lambda: dict.fromkeys(_KINDS, 0))
    totals: dict[DeliveryStatus, int] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    duration: float = 0.0
    stopped: bool = False
    finished: bool = False
    waiting_until: datetime | None = None
    claimed: int = 0  # rows this run took on (0: nothing was there for it to send)
    halted: str = ""  # "paused" or "cancelled" when an operator stopped the send

    @property
    def attempted(self) -> int:
        return (
            self.run[DeliveryStatus.SENT]
            + self.run[DeliveryStatus.DEFERRED]
            + self.run[DeliveryStatus.FAILED]
        )

    @property
    def rate(self) -> float:
        elapsed = self.duration or (time.monotonic() - self.started)
        return self.run[DeliveryStatus.SENT] / elapsed if elapsed > 0 else 0.0

    @property
    def owed(self) -> int:
        return self.totals.get(DeliveryStatus.PENDING, 0) + self.totals.get(
            DeliveryStatus.DEFERRED, 0
        )

    def summary(self) -> str:
        t = self.totals
        state = (
            "complete"
            if self.finished
            else self.halted or ("stopped" if self.stopped else "incomplete")
        )
        return (
            f"edition={self.issue_key} state={state} sent={self.run[DeliveryStatus.SENT]} "
            f"deferred={self.run[DeliveryStatus.DEFERRED]} failed={self.run[DeliveryStatus.FAILED]} skipped={self.run[DeliveryStatus.SKIPPED]} "
            f"duration={self.duration:.1f}s rate={self.rate:.0f}/s "
            f"ledger: sent={t.get(DeliveryStatus.SENT, 0)} owed={self.owed} failed={t.get(DeliveryStatus.FAILED, 0)} "
            f"skipped={t.get(DeliveryStatus.SKIPPED, 0)}"
        )


class RateLimiter:
    """Evenly spaced sends at `rate` messages per second (0 = unlimited)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._next = 0.0

    async def wait(self) -> None:
        if not self.interval:
            return
        now = time.monotonic()
        if self._next <= now:
            self._next = now + self.interval
            return
        due, self._next = self._next, self._next + self.interval
        await asyncio.sleep(due - now)


class Sender:
    """Delivers what the ledger owes for one issue, alongside any other senders.

    Rows are claimed in batches under a lease (digest.claims) that a heartbeat
    renews, so any number of Senders in any number of processes work on one issue
    without sending anyone a second copy; each writes only outcomes of rows it
    still holds. With `wait_for_retries` it stays until nothing is owed (waiting
    for deferred rows and for other senders); whoever sees nothing owed at the end
    marks the issue sent.
    """

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        issue: Edition,
        transport: Transport,
        *,
        on_progress: Callable[[SendReport], None] | None = None,
        stop: asyncio.Event | None = None,
        batch_size: int | None = None,
        wait_for_retries: bool = True,
        presence: Presence | None = None,
    ) -> None:
        """`presence`: the long-lived identity of a `digest worker`; by default the
        Sender registers itself as a `send` for the duration of `run`."""
        self.engine = engine
        self.settings = settings
        self.issue = issue
        self.transport = transport
        self.on_progress = on_progress
        self.stop = stop or asyncio.Event()
        self.batch_size = batch_size or settings.worker_batch_size
        self.wait_for_retries = wait_for_retries
        self.presence = presence or Presence.here("send", settings.lease_seconds)
        self._own_presence = presence is None
        self.report = SendReport(issue.key, transport.describe())
        self.template = template_for(issue, settings)
        self._messages = Preparer(self.template, settings)
        self._limiter = RateLimiter(settings.rate_limit)
        self._policy = ledger.RetryPolicy.of(settings)
        self._results: list[tuple[ledger.Row, Result | str]] = []
        #: Outcomes not yet committed (waiting or being written). Workers pause at
        #: batch_size, which bounds what a crash can repeat to batch_size + concurrency.
        self._unrecorded = 0
        #: The recorder starts writing at half a batch, so the workers go on sending while
        #: it commits and only wait when a whole batch is still unrecorded.
        self._flush_at = max(1, self.batch_size // 2)
        self._wake = asyncio.Event()  # the recorder: outcomes are waiting
        self._space = asyncio.Event()  # the workers: outcomes may be added again
        self._space.set()
        self._held: dict[str, int] = {}  # claim token -> its rows not yet recorded
        self._batches = 0
        self._cursor = 0  # the largest id claimed in this pass (claims.claim's after_id)
        self._fatal: BaseException | None = None
        self._closing = False
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="digest-db")

    # -- database, on one thread so the event loop never blocks on it ---------

    async def _in_db(self, fn: Callable[[Session], T]) -> T:
        """Run `fn` in a transaction, retried through lost connections (digest.dbretry)."""
        return await asyncio.get_running_loop().run_in_executor(
            self._db, lambda: retry.retrying(self.engine, fn)
        )

    async def _flush(self) -> None:
        if not self._results:
            return
        batch, self._results = self._results, []
        self._wake.clear()
        stamp = utcnow()
        counts = await self._in_db(
            lambda session: ledger.record(session, batch, self._policy, stamp=stamp)
        )
        self._unrecorded -= len(batch)
        if self._unrecorded < self.batch_size:
            self._space.set()
        for row, _ in batch:
            left = self._held.get(row.token, 0) - 1
            if left > 0:
                self._held[row.token] = left
            else:
                self._held.pop(row.token, None)
        for k, n in counts.items():
            self.report.run[k] += n
        if self.on_progress:
            self.on_progress(self.report)

    async def _recorder(self) -> None:
        # Never cancelled mid-write: a lost batch would mean resending on resume.
        while not self._closing:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=0.1)
            except TimeoutError:
                pass
            try:
                await self._flush()
            except Exception as exc:  # the database is gone for good: stop sending
                self._fail(exc)
                return

    def _fail(self, exc: BaseException) -> None:
        """Stop the run because of `exc`: in-flight messages finish, the rest stays owed."""
        if self._fatal is None:
            self._fatal = exc
        self.stop.set()
        self._space.set()  # nobody waits for room any more

    async def _heartbeat(self) -> None:
        """Renew our leases and presence; a missed beat is retried at the next one."""
        while True:
            await asyncio.sleep(self.settings.effective_heartbeat)
            beat = partial(self._beat, list(self._held), self.report.run[DeliveryStatus.SENT])
            try:
                await self._in_db(beat)
            except Exception as exc:  # the run goes on; our leases may lapse meanwhile
                log.warning("heartbeat failed: %s", exc)

    def _beat(self, tokens: list[str], sent: int, session: Session) -> None:
        claims.extend(session, tokens, self.settings.lease_seconds)
        self.presence.beat(session, self.issue.id, sent)

    # -- workers -------------------------------------------------------------

    def _add(self, row: ledger.Row, outcome: Result | str) -> None:
        self._results.append((row, outcome))
        self._unrecorded += 1
        if self._unrecorded >= self._flush_at:
            self._wake.set()
        if self._unrecorded >= self.batch_size:
            self._space.clear()

    async def _room(self) -> None:
        """Wait while a full batch of outcomes is not yet committed (the recorder frees it)."""
        while self._unrecorded >= self.batch_size and not self.stop.is_set():
            self._wake.set()
            await self._space.wait()

    async def _worker(self, queue: asyncio.Queue[tuple[ledger.Row, Prepared]]) -> None:
        while True:
            row, prepared = await queue.get()
            try:
                await self._room()
                if self.stop.is_set():
                    continue  # left owed; its claim is released at the end
                if not isinstance(prepared, Outbound):
                    self._add(row, prepared)
                    continue
                await self._limiter.wait()
                result = await self.transport.send(prepared)
                self._add(row, result)
            except Exception as exc:  # the transport is unusable: stop, keep rows owed
                self._fail(exc)
            finally:
                queue.task_done()

    async def run(self) -> SendReport:
        """Send until nothing is owed (or stopped); returns the report."""
        try:
            await self._in_db(self._arrive)
        except BaseException:
            self._shutdown()
            raise
        queue: asyncio.Queue[tuple[ledger.Row, Prepared]] = asyncio.Queue(
            maxsize=self.settings.concurrency * 4
        )
        workers = [
            asyncio.create_task(self._worker(queue)) for _ in range(self.settings.concurrency)
        ]
        recorder = asyncio.create_task(self._recorder())
        heartbeat = asyncio.create_task(self._heartbeat())
        try:
            await self._passes(queue)
        except BaseException:
            self.stop.set()  # in-flight messages finish; nothing new starts
            raise
        finally:
            await queue.join()  # every worker is now idle at queue.get()
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            self._closing = True
            await recorder
            try:
                await self._flush()
                await self._in_db(self._depart)
                await self._finish()
            finally:
                heartbeat.cancel()
                await asyncio.gather(heartbeat, return_exceptions=True)
                self._shutdown()
        if self._fatal is not None:
            raise self._fatal
        return self.report

    def _shutdown(self) -> None:
        self._db.shutdown(wait=True)
        self._messages.close()

    def _arrive(self, session: Session) -> None:
        if self._own_presence:
            self.presence.join(session, self.issue.id)
        reap(session, self.presence)

    def _depart(self, session: Session) -> None:
        claims.release(session, list(self._held))
        self._held.clear()
        if self._own_presence:
            self.presence.leave(session)

    async def _claim(self) -> list[ledger.Row]:
        """The next batch after the cursor; at the end of a pass, the first of a new one."""
        edition_id, size, lease = self.issue.id, self.batch_size, self.settings.lease_seconds
        while True:
            self._batches += 1
            token, after = self.presence.token(self._batches), self._cursor

            def take(s: Session, token: str = token, after: int = after) -> list[ledger.Row]:
                return claims.claim(s, edition_id, token, size, lease, after_id=after)

            rows = await self._in_db(take)
            if rows:
                self._cursor = rows[-1].id
                self._held[token] = len(rows)
                self.report.claimed += len(rows)
                return rows
            if not after:
                return rows
            self._cursor = 0  # past the end: start a new pass from the beginning

    async def _passes(self, queue: asyncio.Queue[tuple[ledger.Row, Prepared]]) -> None:
        edition_id = self.issue.id
        while not self.stop.is_set():
            while not self.stop.is_set():
                batch = await self._claim()
                if not batch:
                    break
                await self._messages.feed(queue, batch, self.stop)
            await queue.join()
            await self._flush()
            if self.stop.is_set() or not self.wait_for_retries:
                return

            def look(session: Session) -> tuple[claims.Outlook, str]:
                reap(session, self.presence)
                if claims.running(session, edition_id):
                    return claims.outlook(session, edition_id), ""
                edition = session.get(Edition, edition_id)
                paused = edition is not None and edition.paused_at is not None
                return claims.outlook(session, edition_id), "paused" if paused else "cancelled"

            outlook, halted = await self._in_db(look)
            if halted:
                self.report.halted = halted
                return
            if not outlook.owed:
                return
            delay = outlook.wait(self.settings.worker_poll_seconds)
            if not delay:
                continue
            self.report.waiting_until = None if outlook.held else outlook.next_at
            if self.on_progress:
                self.on_progress(self.report)
            try:
                await asyncio.wait_for(self.stop.wait(), timeout=delay)
            except TimeoutError:
                pass
            self.report.waiting_until = None

    async def _finish(self) -> None:
        issue = self.issue

        def done(session: Session) -> tuple[bool, dict[DeliveryStatus, int]]:
            current = session.get(Edition, issue.id)
            if current is not None and current.status == EditionStatus.CANCELLED:
                ledger.skip_owed(session, issue.id, f"skipped: {current.note or 'cancelled'}")
            finished = ledger.finish_if_done(session, session.merge(issue))
            return finished, ledger.counts(session, issue.id)

        finished, totals = await self._in_db(done)
        self.report.finished = finished or not (
            totals.get(DeliveryStatus.PENDING, 0) or totals.get(DeliveryStatus.DEFERRED, 0)
        )
        self.report.totals = totals
        self.report.stopped = self.stop.is_set() and not self.report.finished
        self.report.duration = time.monotonic() - self.report.started
        log.info("send %s", self.report.summary())


def install_signal_handlers(stop: asyncio.Event) -> None:
    """SIGINT/SIGTERM: finish what is in flight, leave the rest owed, exit cleanly."""
    import signal

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - non-main thread
            pass


def ledger_totals(engine: Engine, edition_id: int) -> dict[DeliveryStatus, int]:
    with session_scope(engine) as session:
        return ledger.counts(session, edition_id)
