"""The dispatcher: POSTs what the outbox owes, signed, until each endpoint says 2xx.

One dispatcher works at a time per database: it holds the `webhooks` lease
(digest.store.leases) while there is work, so `digest serve`, `digest schedule` and
`digest worker` can all run one and no event goes out twice at once; a dispatcher that
dies is replaced at once on the same machine, else when its lease runs out.

Each turn it takes the head (the lowest id still pending) of each endpoint's order keys
that is due, and runs each group in id order: one subscriber's events arrive in the order
they happened, and one that fails holds back the later ones of that subscriber only (the
other groups go on, DIGEST_WEBHOOK_CONCURRENCY at a time). A failure (no 2xx, a timeout,
a refused connection) is retried after DIGEST_WEBHOOK_RETRY_BACKOFF seconds, doubling up
to DIGEST_WEBHOOK_RETRY_BACKOFF_MAX, until the event is DIGEST_WEBHOOK_GIVE_UP_AFTER old;
then it is marked failed and the next one goes. Every attempt is written before the next
one starts, so a restart resumes where it stopped: at least once, perhaps twice for the
one POST in flight at a crash (receivers de-duplicate by the event id).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, exists, func, or_, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from digest.clock import utcnow
from digest.settings import Settings
from digest.store import leases
from digest.store.engine import session_scope
from digest.webhooks import guard, signing
from digest.webhooks.models import (
    HookStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from digest.webhooks.outbox import ERASED, forget_erased

log = logging.getLogger("digest.webhooks")
D = WebhookDelivery
LEASE = "webhooks"
#: Deliveries done (delivered or given up) are kept this long for `digest webhooks log`.
RETENTION = timedelta(days=30)
#: Groups taken per turn, and events per group.
GROUPS_PER_TURN = 64
PER_GROUP = 50


@dataclass(frozen=True)
class Job:
    """One delivery, with what its POST needs."""

    id: int
    endpoint_id: int
    order_key: str
    url: str
    secret: str
    attempts: int
    event_uid: str
    event_type: str
    created_at: datetime
    body: bytes


def body_of(event: WebhookEvent) -> bytes:
    """The JSON body: {id, type, created_at, data}, compact UTF-8."""
    created = event.created_at.isoformat().replace("+00:00", "Z")
    payload = {"id": event.uid, "type": event.type, "created_at": created, "data": event.data}
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def backoff(attempts: int, base: float, cap: float) -> float:
    return min(cap, base * (2 ** max(0, attempts - 1)))


def due_heads(session: Session, now: datetime, limit: int) -> list[tuple[int, str]]:
    """(endpoint, order key) of the groups whose head is due, oldest head first."""
    heads = (
        select(D.endpoint_id, D.order_key, func.min(D.id).label("head"))
        .where(D.status == HookStatus.PENDING)
        .group_by(D.endpoint_id, D.order_key)
        .subquery()
    )
    rows = session.execute(
        select(D.endpoint_id, D.order_key)
        .join(heads, D.id == heads.c.head)
        .where(D.next_attempt_at <= now)
        .order_by(D.id)
        .limit(limit)
    ).all()
    return [(e, k) for e, k in rows]


def jobs_for(session: Session, groups: list[tuple[int, str]]) -> list[list[Job]]:
    """The pending deliveries of these groups, in id order, at most PER_GROUP each."""
    if not groups:
        return []
    which = or_(*(and_(D.endpoint_id == e, D.order_key == k) for e, k in groups))
    rows = session.execute(
        select(D, WebhookEvent, WebhookEndpoint)
        .join(WebhookEvent, WebhookEvent.id == D.event_id)
        .join(WebhookEndpoint, WebhookEndpoint.id == D.endpoint_id)
        .where(D.status == HookStatus.PENDING, which)
        .order_by(D.id)
    ).all()
    out: dict[tuple[int, str], list[Job]] = {g: [] for g in groups}
    for d, event, endpoint in rows:
        group = out[(d.endpoint_id, d.order_key)]
        if len(group) < PER_GROUP:
            group.append(
                Job(
                    d.id,
                    d.endpoint_id,
                    d.order_key,
                    endpoint.url,
                    endpoint.secret,
                    d.attempts,
                    event.uid,
                    event.type,
                    event.created_at,
                    body_of(event),
                )
            )
    return [jobs for jobs in out.values() if jobs]


def record(
    session: Session,
    job: Job,
    code: int | None,
    error: str,
    duration_ms: int,
    settings: Settings,
    now: datetime | None = None,
) -> HookStatus | None:
    """Write one attempt and the delivery's new state (None: the delivery is gone)."""
    now = now or utcnow()
    row = session.get(D, job.id)
    if row is None or row.status != HookStatus.PENDING:
        return None
    row.attempts += 1
    row.last_code, row.last_error, row.updated_at = code, error[:1000], now
    session.add(
        WebhookAttempt(
            delivery_id=job.id, at=now, code=code, error=error[:1000], duration_ms=duration_ms
        )
    )
    if not error:
        row.status, row.delivered_at = HookStatus.DELIVERED, now
    else:
        wait = backoff(
            row.attempts, settings.webhook_retry_backoff, settings.webhook_retry_backoff_max
        )
        age = (now - job.created_at).total_seconds()
        if age + wait > settings.webhook_give_up_after:
            row.status = HookStatus.FAILED
            row.last_error = f"gave up after {row.attempts} attempts: {error}"[:1000]
        else:
            row.next_attempt_at = now + timedelta(seconds=wait)
    session.flush()
    if job.event_type == ERASED and row.status != HookStatus.PENDING:
        forget_erased(session, [row.event_id])
    return row.status


def purge(session: Session, now: datetime | None = None) -> int:
    """Forget events older than RETENTION that nobody is owed any more."""
    cutoff = (now or utcnow()) - RETENTION
    forget_erased(session)  # e.g. the endpoint that was owed one was removed
    owed = exists().where(D.event_id == WebhookEvent.id, D.status == HookStatus.PENDING)
    result = session.execute(delete(WebhookEvent).where(WebhookEvent.created_at < cutoff, ~owed))
    return int(getattr(result, "rowcount", 0) or 0)


class Dispatcher:
    """Delivers due webhook events while it holds the lease (see module doc)."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self.holder = leases.Holder.here()
        self.ttl = max(30.0, 3 * settings.webhook_timeout)
        self.leading = False
        self.lost = False
        self.delivered = 0
        self.failed_attempts = 0
        self._client: Any = None
        self._purged_at = 0.0
        self._stop = asyncio.Event()

    # -- database steps (run in a thread) -------------------------------------------

    def _in_session(self, fn: Any) -> Any:
        with session_scope(self.engine) as session:
            return fn(session)

    def _due(self, session: Session) -> bool:
        return bool(due_heads(session, utcnow(), 1))

    def _acquire(self, session: Session) -> bool:
        return leases.acquire(session, LEASE, self.holder, self.ttl, role="webhooks").acquired

    def _renew(self, session: Session) -> bool:
        return leases.renew(session, LEASE, self.holder, self.ttl)

    def _release(self, session: Session) -> None:
        leases.release(session, LEASE, self.holder)

    def _claim(self, session: Session) -> list[list[Job]]:
        groups = due_heads(session, utcnow(), GROUPS_PER_TURN)
        return jobs_for(session, groups)

    # -- the loop -------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop`: deliver what is due, else look again every poll interval."""
        self._stop = stop
        try:
            while not stop.is_set():
                try:
                    busy = await self.turn()
                except Exception as exc:  # the database went away: try again shortly
                    log.error("webhooks: %s", str(exc).splitlines()[0] if str(exc) else exc)
                    busy = False
                if not busy:
                    try:
                        await asyncio.wait_for(stop.wait(), self.settings.webhook_poll_seconds)
                    except TimeoutError:
                        pass
        finally:
            await self.close()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if self.leading:
            self.leading = False
            try:
                await asyncio.to_thread(self._in_session, self._release)
            except Exception as exc:  # it expires by itself
                log.warning("webhooks: could not release the lease: %s", exc)

    async def turn(self) -> bool:
        """One round: True if something was attempted (look again at once)."""
        if not await asyncio.to_thread(self._in_session, self._due):
            if self.leading:  # idle: let another process take over whenever it likes
                await asyncio.to_thread(self._in_session, self._release)
                self.leading = False
            return False
        if not await asyncio.to_thread(self._in_session, self._acquire):
            self.leading = False
            return False
        self.leading, self.lost = True, False
        groups = await asyncio.to_thread(self._in_session, self._claim)
        if not groups:
            return False
        if self._client is None:
            self._client = guard.client(
                self.settings.webhook_timeout, self.settings.webhook_allow_private
            )
        heartbeat = asyncio.create_task(self._heartbeat())
        gate = asyncio.Semaphore(self.settings.webhook_concurrency)
        try:
            await asyncio.gather(*(self._group(jobs, gate) for jobs in groups))
        finally:
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
        await self._maybe_purge()
        return True

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)
            if not await asyncio.to_thread(self._in_session, self._renew):
                log.warning("webhooks: lost the lease; another dispatcher carries on")
                self.lost = True
                return

    async def _group(self, jobs: list[Job], gate: asyncio.Semaphore) -> None:
        async with gate:
            for job in jobs:
                if self.lost or self._stop.is_set() or not await self._deliver(job):
                    return

    async def _deliver(self, job: Job) -> bool:
        """POST one event and record the outcome; True when the receiver took it."""
        headers = {
            "Content-Type": "application/json",
            signing.HEADER: signing.header(job.secret, job.body),
            "Digest-Event-Id": job.event_uid,
            "Digest-Event-Type": job.event_type,
            "Digest-Attempt": str(job.attempts + 1),
        }
        started = time.monotonic()
        code: int | None = None
        try:
            response = await asyncio.wait_for(
                self._client.post(job.url, content=job.body, headers=headers),
                self.settings.webhook_timeout * 2,
            )
            code = response.status_code
            error = "" if 200 <= code < 300 else f"HTTP {code}"
        except Exception as exc:  # timeouts, refused connections, guarded addresses
            error = (str(exc).splitlines()[0] if str(exc) else type(exc).__name__)[:500]
        duration = int((time.monotonic() - started) * 1000)
        status = await asyncio.to_thread(
            self._in_session,
            lambda s: record(s, job, code, error, duration, self.settings),
        )
        if not error:
            self.delivered += 1
        else:
            self.failed_attempts += 1
            log.warning(
                "webhooks: %s %s to %s failed (attempt %d): %s%s",
                job.event_type,
                job.event_uid,
                job.url,
                job.attempts + 1,
                error,
                "; given up" if status == HookStatus.FAILED else "",
            )
        return not error

    async def _maybe_purge(self) -> None:
        if time.monotonic() - self._purged_at < 3600:
            return
        self._purged_at = time.monotonic()
        await asyncio.to_thread(self._in_session, purge)


@asynccontextmanager
async def in_background(settings: Settings, engine: Engine) -> AsyncIterator[Dispatcher]:
    """Run a dispatcher beside a long-running process (serve, schedule, worker)."""
    stop = asyncio.Event()
    dispatcher = Dispatcher(engine, settings)
    task = asyncio.create_task(dispatcher.run(stop), name="digest-webhooks")
    try:
        yield dispatcher
    finally:
        stop.set()
        try:
            await asyncio.wait_for(task, settings.webhook_timeout * 2 + 5)
        except TimeoutError:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
