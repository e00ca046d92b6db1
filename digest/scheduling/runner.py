"""What the scheduler does: send each newsletter's open edition when its time comes.

The database holds the plan: every newsletter has one open edition with a planned send
time (its schedule's next slot, or a time an editor chose). `Runner.check` looks at
every newsletter, starts a run for each edition that is due, resumes sends that broke
off, and says when the next one is due. A run is the `digest send` path: the campaign
manager checks everything (something picked, someone to send to, the preflight, the
SMTP server) before the edition changes state, then the Sender delivers it.

- Within DIGEST_MISFIRE_GRACE of its time a due edition is sent, late if the scheduler
  was down; a run that fails (nothing picked, nobody subscribed, preflight errors, SMTP
  down) is tried again every DIGEST_SCHEDULER_RETRY and the operator is alerted once.
- Past the grace it is missed: not sent, the operator is alerted, and the draft moves to
  the next slot with its picks.
- The edition's atomic move to `sending` decides in the database that it is sent once,
  whatever else fires or sends at the same moment.

Each run ends in exactly one greppable log line:

    scheduler run newsletter=default key=2026-W48 trigger=schedule outcome=sent sent=30 ...
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from digest.clock import utcnow
from digest.delivery import campaign
from digest.delivery.models import DeliveryStatus
from digest.delivery.sender import Sender, SendReport
from digest.delivery.transports import make_transport
from digest.editorial import editions, newsletters
from digest.editorial.models import OPEN, Edition, EditionStatus, Newsletter
from digest.editorial.picks import live_picks
from digest.errors import StateError
from digest.scheduling.alerts import send_alert
from digest.scheduling.trigger import describe, describe_duration
from digest.settings import Settings
from digest.store.engine import session_scope

log = logging.getLogger("digest.scheduler")
T = TypeVar("T")
PROGRESS_EVERY = 30.0  # seconds between progress lines during a long send
#: The longest the scheduler sleeps between looks at the database (edits to planned
#: times, new newsletters, sends started elsewhere are noticed this quickly).
POLL = 5.0

# Outcomes, as they appear after outcome= in the log.
SENT_OUT = "sent"
NOTHING_PICKED = "nothing-picked"
NO_SUBSCRIBERS = "no-subscribers"
PREFLIGHT_FAILED = "preflight-failed"
MISSED = "missed"
STOPPED = "stopped"
PAUSED = "paused"
CANCELLED = "cancelled"
INCOMPLETE = "incomplete"
ERROR = "error"
#: Outcomes that leave the edition due: the run is tried again (within the grace).
RETRIED = (NOTHING_PICKED, NO_SUBSCRIBERS, PREFLIGHT_FAILED, INCOMPLETE, ERROR)


@dataclass
class RunResult:
    """How one run ended; `counts` are this run's deliveries, `totals` the ledger's."""

    newsletter: str
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
            f"newsletter={self.newsletter}",
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


@dataclass(frozen=True)
class Due:
    """An edition the scheduler should act on now."""

    edition_id: int
    newsletter: str
    key: str
    planned_at: datetime | None
    trigger: str  # "schedule" or "resume"


class Runner:
    """Runs due editions and resumes broken-off sends; one asyncio task per edition."""

    def __init__(self, engine: Engine, settings: Settings, halt: asyncio.Event) -> None:
        self.engine = engine
        self.settings = settings
        self.halt = halt
        self.results: list[RunResult] = []
        self._running: set[int] = set()
        self._tried: dict[int, float] = {}  # edition id -> monotonic time of the last run
        self._tasks: set[asyncio.Task[Any]] = set()
        self._alerted: set[tuple[int, str]] = set()
        self._first = True

    # -- the loop's one step ---------------------------------------------------------------

    async def check(self) -> float:
        """Start what is due; return seconds until something may next be due (<= POLL)."""
        now = utcnow()
        due, missed, next_at = await self._db(lambda s: self._survey(s, now))
        for item in missed:
            await self._report_missed(item)
        retry = self.settings.scheduler_retry
        for item in due:
            last = self._tried.get(item.edition_id)
            if item.edition_id in self._running:
                continue
            if last is not None and time.monotonic() - last < retry:
                continue
            if self._first and item.trigger == "schedule" and item.planned_at is not None:
                late = (now - item.planned_at).total_seconds()
                if late > 1:
                    log.warning(
                        "scheduler: the send of %s %s due %s was missed while no scheduler "
                        "ran; catching up (within DIGEST_MISFIRE_GRACE, %s)",
                        item.newsletter,
                        item.key,
                        describe(item.planned_at, self.settings.tz),
                        describe_duration(self.settings.misfire_grace),
                    )
            self.spawn(item)
        self._first = False
        if next_at is None:
            return POLL
        return max(0.0, min(POLL, (next_at - utcnow()).total_seconds()))

    def _survey(
        self, session: Session, now: datetime
    ) -> tuple[list[Due], list[Due], datetime | None]:
        """Due editions, missed ones (rolled to their next slot here), and the next due time."""
        grace = timedelta(seconds=self.settings.misfire_grace)
        due: list[Due] = []
        missed: list[Due] = []
        upcoming: list[datetime] = []
        for nl in newsletters.all_(session) or [newsletters.ensure_default(session)]:
            edition = editions.open_edition(session, self.settings, nl)
            planned = edition.planned_at
            if planned is not None and planned <= now:
                item = Due(edition.id, nl.slug, edition.key, planned, "schedule")
                if now - planned > grace and edition.id not in self._running:
                    editions.roll_to_next_slot(session, self.settings, nl, edition)
                    missed.append(item)
                    if edition.planned_at is not None:
                        upcoming.append(edition.planned_at)
                else:
                    due.append(item)
            elif planned is not None:
                upcoming.append(planned)
        due.extend(_sending(session))
        return due, missed, min(upcoming) if upcoming else None

    # -- runs ------------------------------------------------------------------------------------

    async def resume_all(self) -> list[str]:
        """Resume every send that was cut off (a crash, a kill, a lost SMTP server)."""
        sending = await self._db(_sending)
        for item in sending:
            self.spawn(item)
        return [f"{d.newsletter} {d.key}" for d in sending]

    def spawn(self, item: Due) -> None:
        if self.halt.is_set() or item.edition_id in self._running:
            return
        self._running.add(item.edition_id)
        self._tried[item.edition_id] = time.monotonic()
        task = asyncio.get_running_loop().create_task(self._run(item))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for every run to end (they stop early once `halt` is set)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _run(self, item: Due) -> None:
        started = time.monotonic()
        try:
            result = await self._run_one(item)
        except Exception as exc:  # keep the scheduler alive, say what happened
            log.exception("scheduler: run for %s %s failed", item.newsletter, item.key)
            result = RunResult(item.newsletter, item.key, item.trigger, ERROR, item.planned_at)
            result.detail = one_line(exc)
        finally:
            self._running.discard(item.edition_id)
        result.duration = time.monotonic() - started
        self.results.append(result)
        del self.results[:-100]
        quiet = result.outcome in (SENT_OUT, PAUSED, CANCELLED)
        level = (
            logging.ERROR if result.outcome == ERROR else logging.INFO if quiet else logging.WARNING
        )
        log.log(level, "%s", result.line())
        if result.outcome not in RETRIED:
            self._tried.pop(item.edition_id, None)
        await self._after(item, result)

    async def _run_one(self, item: Due) -> RunResult:
        def result(outcome: str, detail: str = "", report: SendReport | None = None) -> RunResult:
            r = RunResult(item.newsletter, item.key, item.trigger, outcome, item.planned_at)
            r.detail = detail
            if report is not None:
                r.counts, r.totals = report.run, report.totals
            return r

        if self.halt.is_set():
            return result(STOPPED)
        if item.trigger == "schedule":
            picked = await self._db(lambda s: _picked(s, self.settings, item.edition_id))
            if not picked:
                return result(NOTHING_PICKED, "no stories are picked")
        try:
            launch = await asyncio.to_thread(
                campaign.plan_send, self.engine, self.settings, item.newsletter, item.key
            )
        except campaign.PreflightFailed as exc:
            await self._preflight_alert(item, exc)
            return result(PREFLIGHT_FAILED, "; ".join(f.message for f in exc.report.errors))
        except StateError as exc:
            if "nobody to send" in str(exc):
                return result(NO_SUBSCRIBERS, str(exc))
            raise
        if launch.over:
            return result(
                SENT_OUT if launch.target.edition.status == EditionStatus.SENT else CANCELLED
            )
        for finding in launch.report.warnings if launch.report else []:
            log.warning("scheduler: preflight %s %s: %s", item.newsletter, item.key, finding)
        own = launch.target.settings
        async with make_transport(own) as transport:  # an unusable SMTP server fails here
            edition = await asyncio.to_thread(
                campaign.start_send, self.engine, self.settings, launch
            )
            report = await self._send(own, edition, transport)
        if report.halted:
            return result(PAUSED if report.halted == "paused" else CANCELLED, report=report)
        outcome = SENT_OUT if report.finished else STOPPED if report.stopped else INCOMPLETE
        return result(outcome, report=report)

    async def _send(self, own: Settings, edition: Edition, transport: Any) -> SendReport:
        last = [time.monotonic()]

        def progress(rep: SendReport) -> None:
            if time.monotonic() - last[0] >= PROGRESS_EVERY:
                last[0] = time.monotonic()
                log.info(
                    "scheduler progress key=%s sent=%d deferred=%d failed=%d",
                    edition.key,
                    rep.run[DeliveryStatus.SENT],
                    rep.run[DeliveryStatus.DEFERRED],
                    rep.run[DeliveryStatus.FAILED],
                )

        sender = Sender(self.engine, own, edition, transport, on_progress=progress, stop=self.halt)
        return await sender.run()

    # -- afterwards: alerts -------------------------------------------------------------------

    async def _after(self, item: Due, result: RunResult) -> None:
        what = f"{item.newsletter} {item.key}"
        grace = describe_duration(self.settings.misfire_grace)
        retry = describe_duration(self.settings.scheduler_retry)
        if result.outcome == NOTHING_PICKED:
            await self._alert(
                item,
                NOTHING_PICKED,
                f"nothing picked for {what}: no newsletter was sent",
                f"The send of {what} is due, but no stories are picked, so nothing was sent. "
                f"Add picks (`digest picks add --newsletter {item.newsletter}`, or the desk) "
                f"within DIGEST_MISFIRE_GRACE ({grace}) and it goes out automatically; after "
                "that it moves to the next slot with whatever is picked.",
            )
        elif result.outcome == NO_SUBSCRIBERS:
            await self._alert(
                item,
                NO_SUBSCRIBERS,
                f"{what} was not sent: nobody is subscribed",
                f"The send of {what} is due, but the newsletter has no confirmed subscribers; "
                "it stays a draft and is tried again every "
                f"{retry} within DIGEST_MISFIRE_GRACE ({grace}).",
            )
        elif result.outcome in (ERROR, INCOMPLETE):
            await self._alert(
                item,
                ERROR,
                f"the send of {what} broke off",
                f"The scheduled send of {what} stopped:\n\n  {result.detail or result.outcome}"
                f"\n\nThe scheduler tries again every {retry}; deliveries already made are kept "
                f"in the ledger. `digest send --status --newsletter {item.newsletter}` shows "
                "progress.",
            )
        elif result.outcome == SENT_OUT and (item.edition_id, ERROR) in self._alerted:
            self._alerted.discard((item.edition_id, ERROR))
            await self._alert(
                item,
                "recovered",
                f"the send of {what} has completed",
                f"After the earlier error, {what} has now gone out.\n\n{result.line()}",
            )

    async def _preflight_alert(self, item: Due, exc: campaign.PreflightFailed) -> None:
        what = f"{item.newsletter} {item.key}"
        await self._alert(
            item,
            PREFLIGHT_FAILED,
            f"{what} was not sent: preflight found errors",
            "The scheduled send was blocked by the preflight check:\n\n"
            + "\n".join(exc.report.lines())
            + f"\n\nFix the edition (`digest build --newsletter {item.newsletter}` shows the "
            "report); it is tried again automatically within DIGEST_MISFIRE_GRACE, or send it "
            f"with `digest send --newsletter {item.newsletter}`.",
        )

    async def _report_missed(self, item: Due) -> None:
        due = item.planned_at or utcnow()
        late = (utcnow() - due).total_seconds()
        when = describe(due, self.settings.tz)
        grace = describe_duration(self.settings.misfire_grace)
        log.error(
            "scheduler run newsletter=%s key=%s trigger=schedule outcome=%s due=%s late=%s "
            "grace=%s: NOT SENT - its time passed more than DIGEST_MISFIRE_GRACE ago (no "
            "scheduler ran, or every try failed); it moved to the next slot with its picks; "
            "send it now with `digest send --newsletter %s` if it should still go out",
            item.newsletter,
            item.key,
            MISSED,
            f"{due.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}",
            describe_duration(late),
            grace,
            item.newsletter,
        )
        self.results.append(RunResult(item.newsletter, item.key, "schedule", MISSED, due))
        await self._alert(
            item,
            MISSED,
            f"{item.newsletter} {item.key} was NOT sent: its time ({when}) passed",
            f"The send of {item.newsletter} {item.key} was due {when}. It is now "
            f"{describe_duration(late)} later - more than DIGEST_MISFIRE_GRACE ({grace}) - "
            "and it was not sent (no scheduler was running, or every try failed), so that "
            "subscribers do not get a stale newsletter at an odd hour. It moved to the next "
            "slot with its picks.\n\nTo send it now anyway: "
            f"`digest send --newsletter {item.newsletter}`.",
        )

    async def _alert(self, item: Due, kind: str, subject: str, body: str) -> None:
        """Email the operator once per edition and kind (a loud log line either way)."""
        if (item.edition_id, kind) in self._alerted:
            return
        self._alerted.add((item.edition_id, kind))
        log.warning("scheduler alert key=%s kind=%s: %s", item.key, kind, subject)
        await send_alert(self.settings, subject, body)

    async def _db(self, fn: Callable[[Session], T]) -> T:
        def run() -> T:
            with session_scope(self.engine) as session:
                return fn(session)

        return await asyncio.to_thread(run)


def _sending(session: Session) -> list[Due]:
    """Editions whose send started and is not paused: to resume."""
    rows = session.execute(
        select(Edition, Newsletter.slug)
        .join(Newsletter, Newsletter.id == Edition.newsletter_id)
        .where(Edition.status == EditionStatus.SENDING, Edition.paused_at.is_(None))
    ).all()
    return [Due(e.id, slug, e.key, e.planned_at, "resume") for e, slug in rows]


def _picked(session: Session, settings: Settings, edition_id: int) -> bool:
    edition = session.get(Edition, edition_id)
    if edition is None or edition.status not in OPEN:
        return True  # started or gone meanwhile: the run finds out what to do
    nl = editions.newsletter_of(session, edition)
    own = newsletters.settings_for(settings, nl)
    return bool(live_picks(session, edition.id, own.sections))


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
