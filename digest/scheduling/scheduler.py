"""The scheduler: one leader per database sends every newsletter's editions on time.

`run_scheduler(settings, stop)` is the whole thing; `digest schedule` runs it in the
foreground and the web app can run it in-process (`scheduler_in_background`).

How the promises are kept:

* Once per edition: the plan is in the database (each newsletter's open edition and
  its planned time, digest.scheduling.runner); a run only calls the campaign manager,
  whose atomic move to `sending` decides whether there is anything to do, so a second
  scheduler, a restart or a manual `digest send` never start an edition twice.
* One scheduler at a time: schedulers on one database elect a leader with a lease
  (digest.scheduling.leadership); the others stand by and take over if it dies.
* Downtime: a planned time that passed while no scheduler ran is still in the
  database; the new leader sends it at once if that is within DIGEST_MISFIRE_GRACE,
  and otherwise reports it missed, logged loudly and emailed to DIGEST_ALERT_EMAIL.
* Crash: on taking the lead, every edition still sending is resumed from its ledger.
* Shutdown: `stop` makes running sends finish the messages in flight and leave the
  rest owed; nothing is cancelled half-way.

APScheduler runs the housekeeping beside it (the bounce mailbox, hourly by default).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.engine import Engine

from digest.clock import utcnow
from digest.errors import SettingsError, StateError
from digest.scheduling.leadership import Leadership
from digest.scheduling.runner import Runner, one_line
from digest.scheduling.trigger import (
    describe,
    describe_duration,
    make_trigger,
    next_fire_times,
)
from digest.settings import Settings
from digest.store.engine import get_engine

log = logging.getLogger("digest.scheduler")
_running = False

__all__ = ["check", "next_fire_times", "run_scheduler", "scheduler_in_background"]


def check(settings: Settings) -> None:
    """Fail at start, not on Friday: the schedule and the signing key must be usable."""
    trigger = make_trigger(settings)
    if trigger.get_next_fire_time(None, utcnow().astimezone(settings.tz)) is None:
        raise SettingsError(f"DIGEST_SCHEDULE: {settings.schedule!r} never fires")
    settings.secret()


async def run_scheduler(settings: Settings, stop: asyncio.Event) -> None:
    """Run until `stop` is set: lead (send what is due, resume sends) or stand by."""
    global _running
    check(settings)
    if _running:
        raise StateError("a scheduler is already running in this process")
    _running = True
    try:
        await _run(settings, stop)
    finally:
        _running = False


async def _run(settings: Settings, stop: asyncio.Event) -> None:
    engine = await asyncio.to_thread(
        get_engine, settings.database_url, pool_size=settings.db_pool_size
    )
    leadership = Leadership(engine, settings.scheduler_lease)
    log.info(
        "scheduler started: default schedule=%r timezone=%s grace=%s",
        settings.schedule,
        settings.timezone,
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
                if not await _lead(settings, engine, leadership, stop):
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
    settings: Settings, engine: Engine, leadership: Leadership, stop: asyncio.Event
) -> bool:
    """Send what is due while we hold the lease; True if the lease was lost."""
    halt = asyncio.Event()
    runner = Runner(engine, settings, halt)
    housekeeping = AsyncIOScheduler(event_loop=asyncio.get_running_loop(), timezone=settings.tz)
    lost = False
    try:
        housekeeping.start()
        _install_bounces(housekeeping, engine, settings)
        _install_candidates(housekeeping, engine, settings)
        resumed = await runner.resume_all()
        if resumed:
            log.info("scheduler: resuming the interrupted send of %s", ", ".join(resumed))
        await _log_next(runner, settings)
        renew_every = settings.scheduler_lease / 3
        renewed = asyncio.get_running_loop().time()
        while not stop.is_set():
            try:
                wait = await runner.check()
            except Exception as exc:  # a database hiccup: look again shortly
                log.error("scheduler: could not look at the plan: %s", one_line(exc))
                wait = 1.0
            await _sleep(stop, max(0.05, min(wait, renew_every)))
            if stop.is_set():
                break
            if asyncio.get_running_loop().time() - renewed >= renew_every:
                if not await _renew(leadership):
                    lost = True
                    break
                renewed = asyncio.get_running_loop().time()
    finally:
        halt.set()
        if housekeeping.running:
            housekeeping.shutdown(wait=False)
            await asyncio.sleep(0)  # AsyncIOScheduler shuts down on the next loop turn
        await runner.drain()
    return lost


async def _log_next(runner: Runner, settings: Settings) -> None:
    """One line per newsletter: when its next edition goes out."""
    from digest.editorial import editions, newsletters
    from digest.store.engine import session_scope

    def plan() -> list[tuple[str, str, str]]:
        with session_scope(runner.engine) as session:
            out = []
            for nl in newsletters.all_(session) or [newsletters.ensure_default(session)]:
                edition = editions.open_edition(session, settings, nl)
                own = newsletters.settings_for(settings, nl)
                when = describe(edition.planned_at, own.tz) if edition.planned_at else "never"
                out.append((nl.slug, edition.key, when))
            return out

    for slug, key, when in await asyncio.to_thread(plan):
        log.info("scheduler: next send of %s (%s): %s", slug, key, when)


def _every(
    scheduler: AsyncIOScheduler, job: Any, seconds: float, settings: Settings, *args: Any
) -> None:
    """Run `job(*args)` now, then every `seconds`; never two at once."""
    scheduler.add_job(
        job,
        IntervalTrigger(seconds=seconds, timezone=settings.tz),
        args=list(args),
        id=job.__name__,
        name=(job.__doc__ or job.__name__).splitlines()[0],
        replace_existing=True,
        next_run_time=utcnow(),
        coalesce=True,
        max_instances=1,
    )


def _install_bounces(scheduler: AsyncIOScheduler, engine: Engine, settings: Settings) -> None:
    """Read the bounce mailbox every DIGEST_BOUNCE_INTERVAL seconds, when one is set."""
    if settings.bounce_mailbox is None or not settings.bounce_interval:
        return
    _every(scheduler, process_bounces, settings.bounce_interval, settings, engine, settings)


def _install_candidates(scheduler: AsyncIOScheduler, engine: Engine, settings: Settings) -> None:
    """Poll DIGEST_CANDIDATE_FEEDS every DIGEST_CANDIDATE_INTERVAL seconds, when set."""
    if not settings.candidate_feeds or not settings.candidate_interval:
        return
    from digest.candidates.poll import scheduled_poll

    _every(scheduler, scheduled_poll, settings.candidate_interval, settings, engine, settings)


async def process_bounces(engine: Engine, settings: Settings) -> None:
    """One bounce run off the event loop (IMAP and the store block); never raises."""
    from digest.bounces import process

    try:
        report = await asyncio.to_thread(process, engine, settings)
    except Exception as exc:  # a broken mailbox must not stop the sends
        log.error("scheduler: bounce processing failed: %s", one_line(exc))
        return
    log.info("scheduler bounces: %s", report.summary())


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
