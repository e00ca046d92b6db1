"""The delivery ledger: what each delivery's state is, and writing outcomes into it.

One row per issue x subscriber (unique), filled in one INSERT ... SELECT so the
list is never held in memory. A row is marked sent only after the server's 250;
rows still pending when a process dies are simply sent on resume. Who is sending
which rows right now (claims and leases) lives in digest.claims; an outcome is
written only by the sender whose claim still holds the row.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Integer, String, and_, bindparam, func, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from digest.clock import utcnow
from digest.delivery.models import OWED, Delivery, DeliveryStatus
from digest.delivery.transports.base import Outcome, Result
from digest.editorial.models import Issue, IssueStatus
from subscribers import store
from subscribers.model import Subscriber, SubscriberStatus

log = logging.getLogger("digest.ledger")
TABLE = Delivery.__table__


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
        table = Issue.__table__
        session.execute(update(table).where(table.c.id == -1).values(status=table.c.status))


def fill(session: Session, issue: Issue) -> int:
    """Add a pending row for every confirmed subscriber not yet in the ledger."""
    sel = select(
        literal(issue.id, Integer),
        Subscriber.id,
        literal(DeliveryStatus.PENDING, String),
        literal(0, Integer),
        literal("", String),
    ).where(
        Subscriber.status == SubscriberStatus.CONFIRMED,
        ~select(Delivery.id)
        .where(Delivery.issue_id == issue.id, Delivery.subscriber_id == Subscriber.id)
        .exists(),
    )
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    # Two processes filling at once (a scheduler and a manual send) must not collide.
    stmt = (
        insert(Delivery)
        .from_select(["issue_id", "subscriber_id", "status", "attempts", "last_reply"], sel)
        .on_conflict_do_nothing(index_elements=["issue_id", "subscriber_id"])
    )
    result = session.connection().execute(stmt.execution_options(preserve_rowcount=True))
    return max(result.rowcount or 0, 0)


def backoff(attempts: int, base: float, cap: float) -> float:
    """Exponential backoff: base, 2*base, 4*base ... capped."""
    return min(cap, base * (2 ** max(0, attempts - 1)))


def record(
    session: Session,
    results: list[tuple[Row, Result | str]],
    *,
    max_attempts: int,
    backoff_base: float,
    backoff_cap: float,
    bounce_threshold: int,
    stamp: datetime | None = None,
) -> dict[str, int]:
    """Write a batch of outcomes; returns counts by final status for this batch.

    A plain string instead of a Result means the row was skipped for that reason
    (e.g. the subscriber unsubscribed while the send was running). Only rows still
    held under their claim token are written: a sender whose lease ran out cannot
    overwrite what the sender that took over recorded. `stamp` makes a retry safe
    after a lost connection: rows this very call already wrote (the commit reached
    the server, its answer did not reach us) are counted, not written twice.
    """
    now = stamp or utcnow()
    state = _claim_state(session, [row.id for row, _ in results])
    params: list[dict[str, Any]] = []
    counts = {
        DeliveryStatus.SENT: 0,
        DeliveryStatus.DEFERRED: 0,
        DeliveryStatus.FAILED: 0,
        DeliveryStatus.SKIPPED: 0,
    }
    bounced: list[int] = []
    lost = 0
    for row, res in results:
        holder, updated = state.get(row.id, (None, None))
        mine = bool(row.token) and holder == row.token
        if not mine and not (holder is None and updated == now):
            lost += 1
            continue
        attempts = row.attempts + 1
        due: datetime | None = None
        if isinstance(res, str):
            status, attempts, code, reply = DeliveryStatus.SKIPPED, row.attempts, None, res[:1000]
        else:
            code, reply = res.code, res.reply[:1000]
            if res.outcome is Outcome.SENT:
                status = DeliveryStatus.SENT
            elif res.outcome is Outcome.DEFERRED and attempts < max_attempts:
                status = DeliveryStatus.DEFERRED
                due = now + timedelta(seconds=backoff(attempts, backoff_base, backoff_cap))
            elif res.outcome is Outcome.DEFERRED:
                status = DeliveryStatus.FAILED
                reply = f"gave up after {attempts} attempts; last reply: {reply}"[:1000]
            else:
                status = DeliveryStatus.FAILED
                if res.recipient_rejected and mine:
                    bounced.append(row.subscriber_id)
        counts[status] += 1
        if not mine:
            continue  # written by this same call before the connection broke
        params.append(
            {
                "b_id": row.id,
                "b_token": row.token,
                "b_status": status,
                "b_attempts": attempts,
                "b_code": code,
                "b_reply": reply,
                "b_due": due,
                "b_sent": now if status == DeliveryStatus.SENT else None,
                "b_now": now,
            }
        )
    if params:
        stmt = (
            update(TABLE)
            .where(TABLE.c.id == bindparam("b_id"), TABLE.c.claimed_by == bindparam("b_token"))
            .values(
                status=bindparam("b_status"),
                attempts=bindparam("b_attempts"),
                last_code=bindparam("b_code"),
                last_reply=bindparam("b_reply"),
                next_attempt_at=bindparam("b_due"),
                sent_at=bindparam("b_sent"),
                updated_at=bindparam("b_now"),
                claimed_by=None,
                lease_until=None,
            )
        )
        written = session.connection().execute(stmt, params).rowcount
        if written is not None and 0 <= written < len(params):
            lost += len(params) - written
    if lost:
        log.warning(
            "%d outcome(s) not recorded: their lease ran out and another sender took them over",
            lost,
        )
    for sid in bounced:
        store.record_bounce(session, sid, bounce_threshold)
    return counts


def _claim_state(session: Session, ids: list[int]) -> dict[int, tuple[str | None, datetime | None]]:
    """Who holds each row now, and when it was last written (locked on PostgreSQL)."""
    if not ids:
        return {}
    query = select(TABLE.c.id, TABLE.c.claimed_by, TABLE.c.updated_at).where(TABLE.c.id.in_(ids))
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    return {i: (holder, at) for i, holder, at in session.execute(query)}


def counts(session: Session, issue_id: int) -> dict[str, int]:
    """Deliveries by status for one issue (every status present, zero if none)."""
    out = {
        DeliveryStatus.PENDING: 0,
        DeliveryStatus.DEFERRED: 0,
        DeliveryStatus.SENT: 0,
        DeliveryStatus.FAILED: 0,
        DeliveryStatus.SKIPPED: 0,
    }
    rows = session.execute(
        select(Delivery.status, func.count())
        .where(Delivery.issue_id == issue_id)
        .group_by(Delivery.status)
    )
    for status, n in rows:
        out[status] = n
    return out


def finish_if_done(session: Session, issue: Issue) -> bool:
    """Mark the issue sent when nothing is owed any more (atomic, whoever is last)."""
    owed = session.scalar(
        select(func.count()).where(Delivery.issue_id == issue.id, Delivery.status.in_(OWED))
    )
    if owed:
        return False
    result = session.execute(
        update(Issue)
        .where(Issue.id == issue.id, Issue.status != IssueStatus.SENT)
        .values(status=IssueStatus.SENT, sent_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    session.expire(issue)
    return bool(result.rowcount)


def explain(session: Session, issue_id: int, email_key: str) -> dict[str, Any] | None:
    """One recipient's delivery state, for `digest send --status EMAIL`."""
    row = session.execute(
        select(Delivery, Subscriber)
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(and_(Delivery.issue_id == issue_id, Subscriber.email_key == email_key))
    ).first()
    if row is None:
        return None
    d, s = row
    return {
        "email": s.email,
        "subscriber_status": s.status,
        "status": d.status,
        "attempts": d.attempts,
        "last_code": d.last_code,
        "last_reply": d.last_reply,
        "next_attempt_at": d.next_attempt_at,
        "sent_at": d.sent_at,
        "updated_at": d.updated_at,
    }
