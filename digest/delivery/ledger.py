"""The delivery ledger: what each delivery's state is, and writing outcomes into it.

One row per issue x subscriber (unique), filled in one INSERT ... SELECT so the
list is never held in memory. A row is marked sent only after the server's 250;
rows still pending when a process dies are simply sent on resume. Who is sending
which rows right now (claims and leases) lives in digest.claims; an outcome is
written only by the sender whose claim still holds the row.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    Integer,
    String,
    Table,
    and_,
    bindparam,
    func,
    literal,
    null,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from digest.clock import utcnow
from digest.delivery.models import OWED, Delivery, DeliveryStatus
from digest.delivery.transports.base import Outcome, Result
from digest.editorial.models import Edition, EditionStatus
from digest.store.engine import affected
from subscribers import store, subscriptions
from subscribers.model import Subscriber, Subscription, effective

log = logging.getLogger("digest.ledger")
TABLE = cast(Table, Delivery.__table__)


@dataclass(slots=True)
class Row:
    """A delivery that is owed, joined with what is needed to build its message."""

    id: int
    subscriber_id: int
    attempts: int
    email: str
    name: str
    status: str  # the subscriber's status right now
    token: str = ""  # the claim under which this sender holds the row (digest.claims)


#: pg_advisory_xact_lock key that serialises starting sends ("send").
START_LOCK = 0x73656E64


def start_lock(session: Session) -> None:
    """Hold, until this transaction ends, the right to freeze, start and fill a send.

    Several processes may start the same week's send at once (schedulers on several
    machines, a manual `digest send`): the first freezes the issue and fills the
    ledger, the others wait here and then find it sending. PostgreSQL: an advisory
    lock; SQLite: the database's write lock, taken now by an UPDATE that matches no
    row. Call it first in the transaction.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(START_LOCK)))
    else:
        table = cast(Table, Edition.__table__)
        session.execute(update(table).where(table.c.id == -1).values(status=table.c.status))


def fill(session: Session, edition: Edition) -> int:
    """Add a pending row for every address the newsletter goes to, not yet in the ledger:
    a confirmed subscription whose address is not suppressed."""
    wanted = [Subscription.newsletter_id == edition.newsletter_id, subscriptions.mailable()]
    if session.scalar(select(Delivery.id).where(Delivery.edition_id == edition.id).limit(1)):
        # Adding to a ledger (a resumed send): only who is not in it yet. Not asked on a
        # first fill, where ON CONFLICT suffices: a planner that takes the empty ledger for
        # empty rescans it once per subscriber while the INSERT grows it (quadratic).
        wanted.append(
            ~select(Delivery.id)
            .where(
                Delivery.edition_id == edition.id,
                Delivery.subscriber_id == Subscription.subscriber_id,
            )
            .exists()
        )
    sel = (
        select(
            literal(edition.id, Integer),
            Subscription.subscriber_id,
            literal(DeliveryStatus.PENDING, String),
            literal(0, Integer),
            literal("", String),
        )
        .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
        .where(*wanted)
    )
    pg = session.get_bind().dialect.name == "postgresql"
    if pg:  # a list imported a moment ago has no statistics yet
        _analyze(session, ("subscriptions", "subscribers"), stale_only=True)
    # Two processes filling at once (a scheduler and a manual send) must not collide.
    stmt = (
        (postgresql.insert if pg else sqlite.insert)(Delivery)
        .from_select(["edition_id", "subscriber_id", "status", "attempts", "last_reply"], sel)
        .on_conflict_do_nothing(index_elements=["edition_id", "subscriber_id"])
    )
    result = session.connection().execute(stmt.execution_options(preserve_rowcount=True))
    added = affected(result)
    if added and pg:  # the claims of this send plan with the ledger as it is now
        _analyze(session, ("deliveries",))
    return added


def _analyze(session: Session, tables: tuple[str, ...], *, stale_only: bool = False) -> None:
    """PostgreSQL: ANALYZE these tables (with `stale_only`, those autovacuum has not
    analysed since 10 % of their rows changed): a list imported a moment ago, or a ledger
    just filled, would otherwise be planned as a few rows (a claim of a large send then
    scans every owed row). ANALYZE sees this transaction's own rows."""
    if stale_only:
        tables = tuple(
            session.scalars(
                text(
                    "SELECT relname FROM pg_stat_user_tables WHERE relname = ANY(:names) AND "
                    "(COALESCE(last_analyze, last_autoanalyze) IS NULL "
                    "OR n_mod_since_analyze > 50 + 0.1 * n_live_tup)"
                ),
                {"names": list(tables)},
            )
        )
    for name in tables:
        session.execute(text(f'ANALYZE "{name}"'))  # our own table names only


def backoff(attempts: int, base: float, cap: float) -> float:
    """Exponential backoff: base, 2*base, 4*base ... capped."""
    return min(cap, base * (2 ** max(0, attempts - 1)))


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How outcomes become statuses: attempts, backoff and the bounce threshold."""

    max_attempts: int
    backoff_base: float
    backoff_cap: float
    bounce_threshold: int

    @classmethod
    def of(cls, settings: Any) -> RetryPolicy:
        return cls(
            settings.max_attempts,
            settings.retry_backoff,
            settings.retry_backoff_max,
            settings.bounce_threshold,
        )


@dataclass(frozen=True, slots=True)
class Decision:
    """What to write into one ledger row."""

    id: int
    token: str
    status: DeliveryStatus
    attempts: int
    code: int | None
    reply: str
    due: datetime | None


#: What a batch's counts report: everything a row can end a pass as.
FINAL_KINDS = (
    DeliveryStatus.SENT,
    DeliveryStatus.DEFERRED,
    DeliveryStatus.FAILED,
    DeliveryStatus.SKIPPED,
)


@dataclass
class Plan:
    """The outcome of a batch, decided without touching the database."""

    writes: list[Decision] = field(default_factory=list)
    counts: dict[DeliveryStatus, int] = field(default_factory=lambda: dict.fromkeys(FINAL_KINDS, 0))
    bounced: list[int] = field(default_factory=list)
    lost: int = 0


def decide(row: Row, res: Result | str, now: datetime, policy: RetryPolicy) -> Decision:
    """One row's new state. A plain string means it was skipped for that reason."""
    if isinstance(res, str):
        return Decision(
            row.id, row.token, DeliveryStatus.SKIPPED, row.attempts, None, res[:1000], None
        )
    attempts = row.attempts + 1
    code, reply, due = res.code, res.reply[:1000], None
    if res.outcome is Outcome.SENT:
        status = DeliveryStatus.SENT
    elif res.outcome is Outcome.DEFERRED and attempts < policy.max_attempts:
        status = DeliveryStatus.DEFERRED
        wait = backoff(attempts, policy.backoff_base, policy.backoff_cap)
        due = now + timedelta(seconds=wait)
    elif res.outcome is Outcome.DEFERRED:
        status = DeliveryStatus.FAILED
        reply = f"gave up after {attempts} attempts; last reply: {reply}"[:1000]
    else:
        status = DeliveryStatus.FAILED
    return Decision(row.id, row.token, status, attempts, code, reply, due)


def plan(
    results: list[tuple[Row, Result | str]],
    holders: dict[int, tuple[str | None, datetime | None]],
    now: datetime,
    policy: RetryPolicy,
) -> Plan:
    """Decide a batch: which rows to write, the counts, who bounced, what was lost.

    `holders` says who holds each row now and when it was last written. Only rows
    still held under their claim token are written: a sender whose lease ran out
    cannot overwrite what the sender that took over recorded. A row no longer held
    but written at exactly `now` was written by this very batch before a lost
    connection made us retry it: it is counted, not written twice.
    """
    out = Plan()
    for row, res in results:
        holder, updated = holders.get(row.id, (None, None))
        mine = bool(row.token) and holder == row.token
        if not mine and not (holder is None and updated == now):
            out.lost += 1
            continue
        decision = decide(row, res, now, policy)
        out.counts[decision.status] += 1
        if not mine:
            continue
        out.writes.append(decision)
        if isinstance(res, Result) and res.outcome is Outcome.FAILED and res.recipient_rejected:
            out.bounced.append(row.subscriber_id)
    return out


_UNCACHED: dict[str, Any] = {"compiled_cache": None}


def _update(session: Session, now: datetime, *, sent: bool) -> Any:
    """The UPDATE for a batch's sent rows, or for its other rows. The batch's one
    timestamp is inlined as SQL and only what differs per row is bound (five values
    per sent row instead of nine; no datetimes formatted per row)."""
    stamp = store.timestamp_literal(session, TABLE.c.updated_at, now)
    values: dict[str, Any] = {
        "attempts": bindparam("b_attempts"),
        "last_code": bindparam("b_code"),
        "last_reply": bindparam("b_reply"),
        "updated_at": stamp,
        "claimed_by": null(),
        "lease_until": null(),
    }
    if sent:
        values.update(status=store.const(DeliveryStatus.SENT), next_attempt_at=null())
        values.update(sent_at=stamp)
    else:
        values.update(status=bindparam("b_status"), next_attempt_at=bindparam("b_due"))
    return (
        update(TABLE)
        .where(TABLE.c.id == bindparam("b_id"), TABLE.c.claimed_by == bindparam("b_token"))
        .values(**values)
    )


def write(session: Session, decisions: list[Decision], now: datetime) -> int:
    """Write decided rows (only where the claim still holds), one executemany for the
    sent rows and one for the rest; returns the rows written."""
    written = 0
    for sent in (True, False):
        params = [
            {
                "b_id": d.id,
                "b_token": d.token,
                "b_attempts": d.attempts,
                "b_code": d.code,
                "b_reply": d.reply,
                **({} if sent else {"b_status": d.status, "b_due": d.due}),
            }
            for d in decisions
            if (d.status == DeliveryStatus.SENT) == sent
        ]
        if params:
            # Compiled afresh for each batch: with the batch's timestamp in its SQL, a
            # cached copy would never be used again, and 500 of them would fill the
            # engine's statement cache (+15 MB over a long send).
            result = session.connection().execute(
                _update(session, now, sent=sent), params, execution_options=_UNCACHED
            )
            count = cast("CursorResult[Any]", result).rowcount
            written += len(params) if count is None or count < 0 else count
    return written


def record(
    session: Session,
    results: list[tuple[Row, Result | str]],
    policy: RetryPolicy,
    *,
    stamp: datetime | None = None,
) -> dict[DeliveryStatus, int]:
    """Decide and write a batch of outcomes; returns counts by status for this batch.

    `stamp` makes a retry safe after a lost connection (see `plan`).
    """
    now = stamp or utcnow()
    decided = plan(results, _claim_state(session, [row.id for row, _ in results]), now, policy)
    lost = decided.lost + len(decided.writes) - write(session, decided.writes, now)
    if lost:
        log.warning(
            "%d outcome(s) not recorded: their lease ran out and another sender took them over",
            lost,
        )
    for sid in decided.bounced:
        store.record_bounce(session, sid, policy.bounce_threshold)
    return decided.counts


def _claim_state(session: Session, ids: list[int]) -> dict[int, tuple[str | None, datetime | None]]:
    """Who holds each row now, and when it was last written (locked on PostgreSQL)."""
    if not ids:
        return {}
    query = select(TABLE.c.id, TABLE.c.claimed_by, TABLE.c.updated_at).where(TABLE.c.id.in_(ids))
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    return {i: (holder, at) for i, holder, at in session.execute(query)}


def counts(session: Session, edition_id: int) -> dict[DeliveryStatus, int]:
    """Deliveries by status for one issue (every status present, zero if none)."""
    out: dict[DeliveryStatus, int] = {
        DeliveryStatus.PENDING: 0,
        DeliveryStatus.DEFERRED: 0,
        DeliveryStatus.SENT: 0,
        DeliveryStatus.FAILED: 0,
        DeliveryStatus.SKIPPED: 0,
    }
    rows = session.execute(
        select(Delivery.status, func.count())
        .where(Delivery.edition_id == edition_id)
        .group_by(Delivery.status)
    )
    for status, n in rows:
        out[status] = n
    return out


def skip_owed(session: Session, edition_id: int, reason: str) -> int:
    """Mark every owed row that no live claim holds skipped (a cancelled send).

    Rows a sender holds are left to it: it records what the server said, so nothing
    that went out is ever recorded as skipped. A sender finishing on a cancelled
    edition skips the rows it gave back the same way.
    """
    from digest.store.leases import db_now

    now = db_now(session)
    free = (TABLE.c.claimed_by.is_(None)) | (TABLE.c.lease_until < now)
    result = session.execute(
        update(TABLE)
        .where(TABLE.c.edition_id == edition_id, TABLE.c.status.in_(OWED), free)
        .values(
            status=DeliveryStatus.SKIPPED,
            last_reply=reason,
            next_attempt_at=None,
            claimed_by=None,
            lease_until=None,
            updated_at=utcnow(),
        )
    )
    return affected(result)


def finish_if_done(session: Session, issue: Edition) -> bool:
    """Mark a sending edition sent when nothing is owed any more (atomic, whoever is last)."""
    owed = session.scalar(
        select(func.count()).where(Delivery.edition_id == issue.id, Delivery.status.in_(OWED))
    )
    if owed:
        return False
    result = session.execute(
        update(Edition)
        .where(Edition.id == issue.id, Edition.status == EditionStatus.SENDING)
        .values(status=EditionStatus.SENT, sent_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    session.expire(issue)
    return bool(affected(result))


def explain(session: Session, edition: Edition, email_key: str) -> dict[str, Any] | None:
    """One recipient's delivery state, for `digest send --status EMAIL`."""
    row = session.execute(
        select(Delivery, Subscriber, Subscription.status)
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .outerjoin(
            Subscription,
            (Subscription.subscriber_id == Subscriber.id)
            & (Subscription.newsletter_id == edition.newsletter_id),
        )
        .where(and_(Delivery.edition_id == edition.id, Subscriber.email_key == email_key))
    ).first()
    if row is None:
        return None
    d, s, sub_status = row
    return {
        "email": s.email,
        "subscriber_status": effective(sub_status, s.suppression),
        "status": d.status,
        "attempts": d.attempts,
        "last_code": d.last_code,
        "last_reply": d.last_reply,
        "next_attempt_at": d.next_attempt_at,
        "sent_at": d.sent_at,
        "updated_at": d.updated_at,
    }
