"""What one firing of the weekly schedule does: the `digest build` + `digest send` path.

Build (freeze this week's picks, render), preflight (errors block the automatic
send and alert the operator), start the send (campaign.prepare_send: the atomic
FROZEN -> SENDING change in the database) and deliver it with the Sender. Every
step is keyed by the week of the scheduled time, so the database decides what is
left to do: a SENT issue makes a firing a no-op, a SENDING one is resumed from
its ledger. Each run ends in exactly one greppable log line:

    scheduler run key=2026-W48 trigger=schedule outcome=sent sent=30 ... duration=1.2s
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.engine import Engine

from digest.clock import utcnow
from digest.delivery import campaign, ledger, preflight
from digest.delivery.models import DeliveryStatus
from digest.delivery.sender import Sender, SendReport
from digest.delivery.transports import make_transport
from digest.editorial import editions
from digest.editorial.models import Issue, IssueStatus
from digest.editorial.picks import unfrozen
from digest.errors import StateError
from digest.scheduling.alerts import send_alert
from digest.scheduling.trigger import describe, describe_duration, previous_fire_time
from digest.settings import Settings
from digest.store.engine import session_scope

log = logging.getLogger("digest.scheduler")
T = TypeVar("T")
PROGRESS_EVERY = 30.0  # seconds between progress lines during a long send

# Outcomes, as they appear after outcome= in the log.
SENT_OUT = "sent"
ALREADY_SENT = "already-sent"
NOTHING_PICKED = "nothing-picked"
PREFLIGHT_FAILED = "preflight-failed"
MISSED = "missed"
STOPPED = "stopped"
INCOMPLETE = "incomplete"
ERROR = "error"


@dataclass
class RunResult:
    """How one run ended; `counts` are this run's deliveries, `totals` the ledger's."""

    key: str
    trigger: str
    outcome: str
    due: datetime | None = None
    counts: dict[DeliveryStatus, int] = field(default_factory=dict)
    totals: dict[DeliveryStatus, int] = field(default_factory=dict)
    duration: float = 0.0
    detail: str = ""

    def line(self) -> str:
        c, t = self.counts, self.totals
        owed = t.get(DeliveryStatus.PENDING, 0) + t.get(DeliveryStatus.DEFERRED, 0)
        parts = [
            f"key={self.key}",
            f"trigger={self.trigger}",
            f"outcome={self.outcome}",
            f"sent={c.get(DeliveryStatus.SENT, 0)}",
            f"deferred={c.get(DeliveryStatus.DEFERRED, 0)}",
            f"failed={c.get(DeliveryStatus.FAILED, 0)}",
            f"skipped={c.get(DeliveryStatus.SKIPPED, 0)}",
            f"ledger_sent={t.get(DeliveryStatus.SENT, 0)}",
            f"owed={owed}",
            f"recipients={sum(t.values())}",
            f"duration={self.duration:.1f}s",
        ]
        if self.due is not None:
            parts.append(f"due={self.due.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}")
        line = "scheduler run " + " ".join(parts)
        return f"{line} detail={self.detail!r}" if self.detail else line


class Runner:
    """Runs the weekly job and resumes; one asyncio task per run, one run per key at a time."""

    def __init__(
        self, engine: Engine, settings: Settings, trigger: Any, halt: asyncio.Event
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.trigger = trigger
        self.halt = halt
        self.results: list[RunResult] = []
        self._locks: dict[str, asyncio.Lock] = {}
        self._queued: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._alerted: set[tuple[str, str]] = set()

    # -- entry points ------------------------------------------------------------

    def fire(self, now: datetime | None = None) -> None:
        """The schedule fired: send the issue of the week the fire time falls in."""
        now = now or utcnow()
        due = previous_fire_time(self.trigger, now) or now
        self.spawn(editions.week_key(due, self.settings), "schedule", due)

    async def resume_all(self) -> list[str]:
        """Resume every send that was cut off (a crash, a kill, a lost SMTP server)."""
        keys = await self._db(
            lambda s: list(s.scalars(select(Issue.key).where(Issue.status == IssueStatus.SENDING)))
        )
        for key in keys:
            self.spawn(key, "resume")
        return keys

    def missed(self, due: datetime) -> None:
        """APScheduler gave up on a fire time older than the grace period."""
        self._track(self._report_missed(due))

    def spawn(self, key: str, trigger: str, due: datetime | None = None) -> None:
        if self.halt.is_set():
            return
        if key in self._queued:
            log.info("scheduler: a run for %s is already waiting; not queuing another", key)
            return
        self._queued.add(key)
        self._track(self._run(key, trigger, due))

    async def drain(self) -> None:
        """Wait for every run to end (they stop early once `halt` is set)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _track(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- one run -----------------------------------------------------------------

    async def _run(self, key: str, trigger: str, due: datetime | None) -> None:
        lock = self._locks.setdefault(key, asyncio.Lock())
        try:
            async with lock:
                self._queued.discard(key)
                started = time.monotonic()
                try:
                    result = await self._run_locked(key, trigger, due)
                except Exception as exc:  # keep the scheduler alive, say what happened
                    log.exception("scheduler: run for %s failed", key)
                    result = RunResult(key, trigger, ERROR, due, detail=one_line(exc))
                result.duration = time.monotonic() - started
        finally:
            self._queued.discard(key)
        self.results.append(result)
        del self.results[:-100]
        level = logging.INFO if result.outcome in (SENT_OUT, ALREADY_SENT) else logging.WARNING
        log.log(logging.ERROR if result.outcome == ERROR else level, "%s", result.line())
        await self._after(result)

    async def _run_locked(self, key: str, trigger: str, due: datetime | None) -> RunResult:
        status = await self._db(lambda s: _status(s, key))
        if status == IssueStatus.SENT:
            totals = await self._db(lambda s: _totals(s, key))
            return RunResult(key, trigger, ALREADY_SENT, due, totals=totals)
        if trigger == "retry" and status != IssueStatus.SENDING and due and self._past_grace(due):
            when = describe(due, self.settings.tz)
            await self._alert(
                key,
                MISSED,
                f"issue {key} was NOT sent: it kept failing since {when}",
                f"The weekly send of issue {key} was due {when} and failed every time since "
                "(see the earlier alert). It is now past DIGEST_MISFIRE_GRACE, so the "
                f"scheduler stops trying.\n\nTo send it now: `digest send --issue {key}`.",
            )
            detail = "still failing past DIGEST_MISFIRE_GRACE; no more retries"
            return RunResult(key, trigger, MISSED, due, detail=detail)
        if self.halt.is_set():
            return RunResult(key, trigger, STOPPED, due)
        checked: Issue | None = None
        if status != IssueStatus.SENDING:
            if not await self._db(lambda s: bool(unfrozen(s))):
                await self._alert(
                    key,
                    NOTHING_PICKED,
                    f"nothing picked for {key}: no digest was sent",
                    f"The schedule fired for issue {key}, but no stories are picked, so "
                    "nothing was sent.\n\nPicks added from now on go into the next issue "
                    "(`digest picks add`, or the desk). To send this week's issue anyway, "
                    f"add picks and run `digest send --issue {key}`.",
                )
                return RunResult(key, trigger, NOTHING_PICKED, due)
            try:
                checked = await asyncio.to_thread(campaign.build, self.engine, self.settings, key)
            except StateError:  # a manual `digest send` started it a moment ago
                status = await self._db(lambda s: _status(s, key))
                if status not in (IssueStatus.SENDING, IssueStatus.SENT):
                    raise
            if checked is not None:
                blocked = await self._preflight(key, checked, started=False)
                if blocked:
                    return RunResult(key, trigger, PREFLIGHT_FAILED, due, detail=blocked)
        issue = await asyncio.to_thread(campaign.prepare_send, self.engine, self.settings, key)
        if issue.status == IssueStatus.SENT:
            return RunResult(key, trigger, ALREADY_SENT, due)
        if checked is None or (checked.html, checked.content) != (issue.html, issue.content):
            blocked = await self._preflight(key, issue, started=True)
            if blocked:
                return RunResult(key, trigger, PREFLIGHT_FAILED, due, detail=blocked)
        report = await self._send(issue)
        outcome = SENT_OUT if report.finished else STOPPED if report.stopped else INCOMPLETE
        if report.finished and not sum(report.totals.values()):
            log.warning("scheduler: issue %s went out to nobody: no confirmed subscribers", key)
        return RunResult(key, trigger, outcome, due, counts=report.run, totals=report.totals)

    async def _preflight(self, key: str, issue: Issue, *, started: bool) -> str:
        """Log the findings; on errors alert and return a reason (the send is blocked)."""
        report = await asyncio.to_thread(preflight.check_issue, issue, self.settings)
        for finding in report.warnings:
            log.warning("scheduler: preflight %s: %s", key, finding)
        if report.ok:
            return ""
        how = (
            f"Its send had already started, so fix the problem and finish it with "
            f"`digest send --issue {key} --force` (nobody gets it twice)."
            if started
            else f"Fix the issue (`digest build --issue {key}` shows the report), then send "
            f"it with `digest send --issue {key}`."
        )
        await self._alert(
            key,
            PREFLIGHT_FAILED,
            f"issue {key} was not sent: preflight found errors",
            "The scheduled send was blocked by the preflight check:\n\n"
            + "\n".join(report.lines())
            + f"\n\n{how}",
        )
        return "; ".join(f.message for f in report.errors)

    async def _send(self, issue: Issue) -> SendReport:
        last = [time.monotonic()]

        def progress(rep: SendReport) -> None:
            if time.monotonic() - last[0] >= PROGRESS_EVERY:
                last[0] = time.monotonic()
                log.info(
                    "scheduler progress key=%s sent=%d deferred=%d failed=%d",
                    issue.key,
                    rep.run[DeliveryStatus.SENT],
                    rep.run[DeliveryStatus.DEFERRED],
                    rep.run[DeliveryStatus.FAILED],
                )

        transport = make_transport(self.settings)
        async with transport:
            sender = Sender(
                self.engine, self.settings, issue, transport, on_progress=progress, stop=self.halt
            )
            return await sender.run()

    # -- afterwards: alerts and retries -------------------------------------------

    async def _after(self, result: RunResult) -> None:
        key = result.key
        if result.outcome == ERROR:
            await self._alert(
                key,
                ERROR,
                f"the send of {key} broke off",
                f"The scheduled send of issue {key} stopped with an error:\n\n  {result.detail}"
                f"\n\nThe scheduler tries again every "
                f"{describe_duration(self.settings.scheduler_retry)}; deliveries already made "
                f"are kept in the ledger. `digest send --status --issue {key}` shows progress.",
            )
            self._track(self._retry_later(key, result.due))
        elif result.outcome in (SENT_OUT, ALREADY_SENT) and (key, ERROR) in self._alerted:
            self._alerted.discard((key, ERROR))
            await self._alert(
                key,
                "recovered",
                f"the send of {key} has completed",
                f"After the earlier error, issue {key} has now gone out.\n\n{result.line()}",
            )

    async def _retry_later(self, key: str, due: datetime | None) -> None:
        try:
            await asyncio.wait_for(self.halt.wait(), timeout=self.settings.scheduler_retry)
        except TimeoutError:
            self.spawn(key, "retry", due)

    async def _report_missed(self, due: datetime) -> None:
        key = editions.week_key(due, self.settings)
        status = await self._db(lambda s: _status(s, key))
        late = (utcnow() - due).total_seconds()
        when = describe(due, self.settings.tz)
        if status in (IssueStatus.SENDING, IssueStatus.SENT):
            log.info(
                "scheduler: the firing due %s was missed, but issue %s is already %s",
                when,
                key,
                status,
            )
            return
        grace = describe_duration(self.settings.misfire_grace)
        log.error(
            "scheduler run key=%s trigger=schedule outcome=%s due=%s late=%s grace=%s: "
            "NOT SENT - no scheduler was running at send time and it is now past "
            "DIGEST_MISFIRE_GRACE; send it by hand with `digest send --issue %s` if it should "
            "still go out",
            key,
            MISSED,
            f"{due.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}",
            describe_duration(late),
            grace,
            key,
        )
        self.results.append(RunResult(key, "schedule", MISSED, due))
        await self._alert(
            key,
            MISSED,
            f"issue {key} was NOT sent: the scheduler missed {when}",
            f"The weekly send of issue {key} was due {when}, but no scheduler was running "
            f"then, and it came back {describe_duration(late)} late - more than "
            f"DIGEST_MISFIRE_GRACE ({grace}). It was not sent automatically, so that "
            f"subscribers do not get a stale digest at an odd hour.\n\nTo send it now: "
            f"`digest send --issue {key}`.",
        )

    # -- helpers -----------------------------------------------------------------

    def _past_grace(self, due: datetime) -> bool:
        return (utcnow() - due).total_seconds() > self.settings.misfire_grace

    async def _alert(self, key: str, kind: str, subject: str, body: str) -> None:
        """Email the operator once per issue and kind (a loud log line either way)."""
        if (key, kind) in self._alerted:
            return
        self._alerted.add((key, kind))
        log.warning("scheduler alert key=%s kind=%s: %s", key, kind, subject)
        await send_alert(self.settings, subject, body)

    async def _db(self, fn: Callable[[Any], T]) -> T:
        def run() -> T:
            with session_scope(self.engine) as session:
                return fn(session)

        return await asyncio.to_thread(run)


def _status(session: Any, key: str) -> str | None:
    return session.scalar(select(Issue.status).where(Issue.key == key))


def _totals(session: Any, key: str) -> dict[DeliveryStatus, int]:
    issue = editions.find_issue(session, key)
    return ledger.counts(session, issue.id) if issue else {}


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
