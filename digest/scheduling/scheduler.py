"""The weekly scheduler: APScheduler on asyncio, its job store in the digest database.

`run_scheduler(settings, stop)` is the whole thing; `digest schedule` runs it in the
foreground and the web app can run it in-process (`scheduler_in_background`).

How the promises are kept:

* Once per week key: a firing only calls the campaign functions (digest.scheduler_run);
  the issue's unique key and its atomic FROZEN -> SENDING change decide in the
  database whether there is anything to do, so a second firing, a restart or a
  manual `digest send` find the issue SENDING or SENT and never start it again.
* One scheduler at a time: schedulers on one database elect a leader with a lease
  row (digest.scheduler_lease); the others stand by and take over if it dies.
* Downtime: the job lives in APScheduler's SQLAlchemyJobStore in the same database
  and is kept across restarts while DIGEST_SCHEDULE is unchanged, so its stored
  next run time is in the past after an outage. APScheduler then runs it at once
  if that is within DIGEST_MISFIRE_GRACE (coalesced to one run), and otherwise
  reports it missed, which is logged loudly and emailed to DIGEST_ALERT_EMAIL.
* Crash: on taking the lead, every issue still SENDING is resumed from its ledger.
* Shutdown: `stop` makes running sends finish the messages in flight and leave the
  rest owed; nothing is cancelled half-way.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.engine import Engine

from digest.clock import utcnow
from digest.errors import SettingsError, StateError
from digest.scheduling.leadership import Leadership
from digest.scheduling.runner import Runner, one_line
from digest.scheduling.trigger import (
    ScheduleTrigger,
    describe,
    describe_duration,
    make_trigger,
    next_fire_times,
    same_trigger,
)
from digest.settings import Settings
from digest.store.engine import get_engine

log = logging.getLogger("digest.scheduler")
JOB_ID = "digest-weekly-send"
JOBS_TABLE = "apscheduler_jobs"
MIN_GRACE = 1  # APScheduler counts any lateness beyond the grace time as a miss
_active: Runner | None = None
_running = False

__all__ = ["fire", "next_fire_times", "run_scheduler", "scheduler_in_background"]


async def fire() -> None:
    """The stored job. Kept importable under this name: the job store refers to it."""
    if _active is None:
        log.error("scheduler: the weekly job fired, but no scheduler runs in this process")
        return
    _active.fire()


def check(settings: Settings) -> ScheduleTrigger:
    """Fail at start, not on Friday: the schedule and the signing key must be usable."""
    trigger = make_trigger(settings)
    if trigger.get_next_fire_time(None, utcnow().astimezone(settings.tz)) is None:
        raise SettingsError(f"DIGEST_SCHEDULE: {settings.schedule!r} never fires")
    settings.secret()
    return trigger


async def run_scheduler(settings: Settings, stop: asyncio.Event) -> None:
    """Run until `stop` is set: lead (fire weekly, resume sends) or stand by."""
    global _running
    trigger = check(settings)
    if _running:
        raise StateError("a scheduler is already running in this process")
    _running = True
    try:
        await _run(settings, trigger, stop)
    finally:
        _running = False


async def _run(settings: Settings, trigger: ScheduleTrigger, stop: asyncio.Event) -> None:
    engine = await asyncio.to_thread(
        get_engine, settings.database_url, pool_size=settings.db_pool_size
    )
    leadership = Leadership(engine, settings.scheduler_lease)
    upcoming = next_fire_times(settings, 1)
    log.info(
        "scheduler started: schedule=%r timezone=%s next=%s grace=%s",
        settings.schedule,
        settings.timezone,
        describe(upcoming[0], settings.tz) if upcoming else "never",
        describe_duration(settings.misfire_grace),
    )
    poll = min(5.0, settings.scheduler_lease / 4)
    waiting_on: str | None = None
    try:
        while not stop.is_set():
            try:
                claim = await asyncio.to_thread(leadership.acquire)
            except Exception as exc:  # the database is unreachable: keep trying
                log.error("scheduler: cannot reach the database: %s", one_line(exc))
                await _sleep(stop, poll)
                continue
            if not claim.acquired:
                if claim.holder != waiting_on:
                    waiting_on = claim.holder
                    log.warning(
                        "scheduler: standing by - %s leads on this database; "
                        "taking over if it stops",
                        claim.holder,
                    )
                await _sleep(stop, poll)
                continue
            waiting_on = None
            log.info("scheduler: leading as %s", leadership.holder)
            try:
                if not await _lead(settings, engine, trigger, leadership, stop):
                    break
                log.warning("scheduler: lost the lead (lease taken over); standing by")
            except Exception:  # e.g. the database went away: start over, don't die
                log.exception("scheduler: stopped leading after an error; trying again")
                await _sleep(stop, poll)
    finally:
        try:
            await asyncio.to_thread(leadership.release)
        except Exception as exc:  # the lease expires by itself
            log.warning("scheduler: could not release the lease: %s", exc)
    log.info("scheduler stopped")


async def _lead(
    settings: Settings,
    engine: Engine,
    trigger: ScheduleTrigger,
    leadership: Leadership,
    stop: asyncio.Event,
) -> bool:
    """Fire the job while we hold the lease; True if the lease was lost."""
    global _active
    halt = asyncio.Event()
    runner = Runner(engine, settings, trigger, halt)
    _active = runner
    scheduler = _make_scheduler(settings, engine, runner)
    lost = False
    try:
        scheduler.start(paused=True)
        job = _install_job(scheduler, trigger, settings)
        _install_bounces(scheduler, engine, settings)
        resumed = await runner.resume_all()
        if resumed:
            log.info("scheduler: resuming the interrupted send of %s", ", ".join(resumed))
        scheduler.resume()
        _log_next(job.next_run_time, settings)
        renew_every = settings.scheduler_lease / 3
        while not stop.is_set():
            await _sleep(stop, renew_every)
            if stop.is_set():
                break
            if not await _renew(leadership):
                lost = True
                break
    finally:
        halt.set()
        if scheduler.running:
            scheduler.shutdown(wait=False)
            await asyncio.sleep(0)  # AsyncIOScheduler shuts down on the next loop turn
        await runner.drain()
        _active = None
    return lost


def _make_scheduler(settings: Settings, engine: Engine, runner: Runner) -> AsyncIOScheduler:
    scheduler = AsyncIOScheduler(
        event_loop=asyncio.get_running_loop(),
        timezone=settings.tz,
        jobstores={
            "default": SQLAlchemyJobStore(engine=engine, tablename=JOBS_TABLE),
            "memory": MemoryJobStore(),  # housekeeping that needs no catching up
        },
        job_defaults=_job_options(settings),
    )

    def on_missed(event: JobExecutionEvent) -> None:
        runner.missed(event.scheduled_run_time)

    def on_error(event: JobExecutionEvent) -> None:  # pragma: no cover - fire() cannot raise
        log.error("scheduler: the weekly job raised %r", event.exception)

    scheduler.add_listener(on_missed, EVENT_JOB_MISSED)
    scheduler.add_listener(on_error, EVENT_JOB_ERROR)
    return scheduler


def _job_options(settings: Settings) -> dict[str, object]:
    return {
        "misfire_grace_time": max(math.ceil(settings.misfire_grace), MIN_GRACE),
        "coalesce": True,
        "max_instances": 1,
    }


def _install_job(scheduler: AsyncIOScheduler, trigger: ScheduleTrigger, settings: Settings):  # type: ignore[no-untyped-def]
    """Keep the stored job (and its possibly overdue next run) unless the schedule changed."""
    job = scheduler.get_job(JOB_ID)
    if job is not None and same_trigger(job.trigger, trigger):
        job = job.modify(**_job_options(settings))
        if job.next_run_time is not None and job.next_run_time <= utcnow():
            log.warning(
                "scheduler: the send due %s was missed while no scheduler ran; "
                "catching up if within DIGEST_MISFIRE_GRACE (%s)",
                describe(job.next_run_time, settings.tz),
                describe_duration(settings.misfire_grace),
            )
        return job
    if job is not None:
        log.info("scheduler: schedule changed (was %s); next run recomputed", job.trigger)
    return scheduler.add_job(
        fire,
        trigger,
        id=JOB_ID,
        name="weekly send",
        replace_existing=True,
        **_job_options(settings),
    )


def _install_bounces(scheduler: AsyncIOScheduler, engine: Engine, settings: Settings) -> None:
    """Read the bounce mailbox every DIGEST_BOUNCE_INTERVAL seconds, when one is set."""
    if settings.bounce_mailbox is None or not settings.bounce_interval:
        return
    scheduler.add_job(
        process_bounces,
        IntervalTrigger(seconds=settings.bounce_interval, timezone=settings.tz),
        args=[engine, settings],
        id="bounces",
        name="bounce processing",
        jobstore="memory",
        replace_existing=True,
        next_run_time=utcnow(),
        coalesce=True,
        max_instances=1,
    )


async def process_bounces(engine: Engine, settings: Settings) -> None:
    """One bounce run off the event loop (IMAP and the store block); never raises."""
    from digest.bounces import process

    try:
        report = await asyncio.to_thread(process, engine, settings)
    except Exception as exc:  # a broken mailbox must not stop the weekly send
        log.error("scheduler: bounce processing failed: %s", one_line(exc))
        return
    log.info("scheduler bounces: %s", report.summary())


def _log_next(when: datetime | None, settings: Settings) -> None:
    if when is None:
        log.warning("scheduler: DIGEST_SCHEDULE never fires again")
    elif when > utcnow():
        log.info("scheduler: next send %s", describe(when, settings.tz))


async def _renew(leadership: Leadership) -> bool:
    try:
        return await asyncio.to_thread(leadership.renew)
    except Exception as exc:  # database hiccup: keep leading while the lease lasts
        log.warning("scheduler: could not renew the lease: %s", exc)
        return leadership.expires_at is not None and utcnow() < leadership.expires_at


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass


@asynccontextmanager
async def scheduler_in_background(settings: Settings) -> AsyncIterator[asyncio.Task[None] | None]:
    """For the web app's lifespan: run the scheduler alongside it if DIGEST_SERVE_SCHEDULER.

    The schedule is checked before the app starts serving; on exit running sends
    finish their messages in flight and the lease is released.
    """
    if not settings.serve_scheduler:
        yield None
        return
    check(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(run_scheduler(settings, stop), name="digest-scheduler")
    try:
        yield task
    finally:
        stop.set()
        await task
