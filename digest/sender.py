"""The mailer: streams owed deliveries from the ledger through a transport.

Data flow: ledger (keyset batches) -> bounded queue -> N workers (splice bytes,
rate limit, transport.send) -> results -> recorder (batched writes). A row is
written as sent only after the server accepted it, so a killed send resumes with
nobody skipped and at most the in-flight messages repeated. 4xx answers are
deferred with backoff and retried in later passes until they succeed or run out
of attempts; 5xx answers are final.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from digest import ledger
from digest.db import session_scope, utcnow
from digest.message import MessageTemplate, Recipient
from digest.models import DEFERRED, FAILED, PENDING, SENT_OK, SKIPPED, Issue
from digest.render import RenderedIssue
from digest.settings import Settings
from digest.transports.base import Outbound, Result, Transport
from subscribers.model import CONFIRMED
from subscribers.tokens import make_token

log = logging.getLogger("digest.sender")
T = TypeVar("T")


@dataclass
class SendReport:
    """What one run did, plus the ledger totals when it ended."""

    issue_key: str
    transport: str
    run: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_KINDS, 0))
    totals: dict[str, int] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    duration: float = 0.0
    stopped: bool = False
    finished: bool = False
    waiting_until: datetime | None = None

    @property
    def attempted(self) -> int:
        return self.run[SENT_OK] + self.run[DEFERRED] + self.run[FAILED]

    @property
    def rate(self) -> float:
        elapsed = self.duration or (time.monotonic() - self.started)
        return self.run[SENT_OK] / elapsed if elapsed > 0 else 0.0

    @property
    def owed(self) -> int:
        return self.totals.get(PENDING, 0) + self.totals.get(DEFERRED, 0)

    def summary(self) -> str:
        t = self.totals
        state = "complete" if self.finished else ("stopped" if self.stopped else "incomplete")
        return (
            f"issue={self.issue_key} state={state} sent={self.run[SENT_OK]} "
            f"deferred={self.run[DEFERRED]} failed={self.run[FAILED]} skipped={self.run[SKIPPED]} "
            f"duration={self.duration:.1f}s rate={self.rate:.0f}/s "
            f"ledger: sent={t.get(SENT_OK, 0)} owed={self.owed} failed={t.get(FAILED, 0)} "
            f"skipped={t.get(SKIPPED, 0)}"
        )


_KINDS = (SENT_OK, DEFERRED, FAILED, SKIPPED)


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


def template_for(issue: Issue, settings: Settings, *, subject_prefix: str = "") -> MessageTemplate:
    """The issue's message, prepared once for this run."""
    subject = subject_prefix + (issue.content.get("subject") or issue.subject)
    return MessageTemplate(
        RenderedIssue(html=issue.html, text=issue.text),
        settings=settings,
        issue_key=issue.key,
        subject=subject,
        date=utcnow(),
    )


class Sender:
    """Delivers what the ledger says is owed for one issue."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        issue: Issue,
        transport: Transport,
        *,
        on_progress: Callable[[SendReport], None] | None = None,
        stop: asyncio.Event | None = None,
        batch_size: int = 500,
        wait_for_retries: bool = True,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.issue = issue
        self.transport = transport
        self.on_progress = on_progress
        self.stop = stop or asyncio.Event()
        self.batch_size = batch_size
        self.wait_for_retries = wait_for_retries
        self.report = SendReport(issue.key, transport.describe())
        self.template = template_for(issue, settings)
        self._secret = settings.secret()
        self._list_id = settings.effective_list_id
        self._limiter = RateLimiter(settings.rate_limit)
        self._results: list[tuple[ledger.Row, Result | str]] = []
        self._fatal: BaseException | None = None
        self._closing = False
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="digest-db")

    # -- database, on one thread so the event loop never blocks on it ---------

    async def _in_db(self, fn: Callable[[Session], T]) -> T:
        def run() -> T:
            with session_scope(self.engine) as session:
                return fn(session)

        return await asyncio.get_running_loop().run_in_executor(self._db, run)

    async def _flush(self) -> None:
        if not self._results:
            return
        batch, self._results = self._results, []
        s = self.settings
        counts = await self._in_db(
            lambda session: ledger.record(
                session,
                batch,
                max_attempts=s.max_attempts,
                backoff_base=s.retry_backoff,
                backoff_cap=s.retry_backoff_max,
                bounce_threshold=s.bounce_threshold,
            )
        )
        for k, n in counts.items():
            self.report.run[k] += n
        if self.on_progress:
            self.on_progress(self.report)

    async def _recorder(self) -> None:
        # Never cancelled mid-write: a lost batch would mean resending on resume.
        while not self._closing:
            await asyncio.sleep(0.1)
            await self._flush()

    # -- workers -------------------------------------------------------------

    async def _worker(self, queue: asyncio.Queue[ledger.Row]) -> None:
        while True:
            row = await queue.get()
            try:
                if self.stop.is_set():
                    continue
                if row.status != CONFIRMED:
                    self._results.append((row, f"skipped: subscriber is {row.status}"))
                    continue
                await self._limiter.wait()
                token = make_token(self._secret, "unsubscribe", row.subscriber_id, self._list_id)
                data = self.template.build(Recipient(row.subscriber_id, row.email, row.name, token))
                message = Outbound(
                    self.settings.envelope_from, row.email, data, smtputf8=not row.email.isascii()
                )
                result = await self.transport.send(message)
                # Append after the await: _flush may have swapped the list meanwhile.
                self._results.append((row, result))
                if len(self._results) >= self.batch_size:
                    await self._flush()
            except Exception as exc:  # the transport is unusable: stop, keep rows owed
                if self._fatal is None:
                    self._fatal = exc
                self.stop.set()
            finally:
                queue.task_done()

    async def run(self) -> SendReport:
        """Send until nothing is owed (or stopped); returns the report."""
        queue: asyncio.Queue[ledger.Row] = asyncio.Queue(maxsize=self.settings.concurrency * 4)
        workers = [
            asyncio.create_task(self._worker(queue)) for _ in range(self.settings.concurrency)
        ]
        recorder = asyncio.create_task(self._recorder())
        try:
            await self._passes(queue)
        finally:
            await queue.join()  # every worker is now idle at queue.get()
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            self._closing = True
            await recorder
            await self._flush()
            await self._finish()
            self._db.shutdown(wait=True)
        if self._fatal is not None:
            raise self._fatal
        return self.report

    async def _passes(self, queue: asyncio.Queue[ledger.Row]) -> None:
        issue_id = self.issue.id
        while not self.stop.is_set():
            after = 0
            while not self.stop.is_set():
                batch = await self._in_db(
                    lambda s, a=after: ledger.owed_batch(s, issue_id, a, self.batch_size)
                )
                if not batch:
                    break
                for row in batch:
                    if self.stop.is_set():
                        break
                    await queue.put(row)
                after = batch[-1].id
            await queue.join()
            await self._flush()
            if self.stop.is_set() or not self.wait_for_retries:
                return
            owed, due = await self._in_db(lambda s: ledger.next_due(s, issue_id))
            if not owed:
                return
            delay = max(0.0, (due - utcnow()).total_seconds()) if due else 0.05
            self.report.waiting_until = due
            if self.on_progress:
                self.on_progress(self.report)
            try:
                await asyncio.wait_for(self.stop.wait(), timeout=max(delay, 0.01))
            except TimeoutError:
                pass
            self.report.waiting_until = None

    async def _finish(self) -> None:
        issue = self.issue

        def done(session: Session) -> tuple[bool, dict[str, int]]:
            finished = ledger.finish_if_done(session, session.merge(issue))
            return finished, ledger.counts(session, issue.id)

        finished, totals = await self._in_db(done)
        self.report.finished = finished or not (totals.get(PENDING, 0) or totals.get(DEFERRED, 0))
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


def ledger_totals(engine: Engine, issue_id: int) -> dict[str, Any]:
    with session_scope(engine) as session:
        return ledger.counts(session, issue_id)
