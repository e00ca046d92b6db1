"""The delivery ledger: all SQL about deliveries in one place.

One row per issue x subscriber (unique), filled in one INSERT ... SELECT so the
list is never held in memory. A row is marked sent only after the server's 250;
rows still pending when a process dies are simply sent on resume.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Integer, String, and_, bindparam, func, insert, literal, or_, select, update
from sqlalchemy.orm import Session

from digest.db import utcnow
from digest.models import (
    DEFERRED,
    FAILED,
    OWED,
    PENDING,
    SENT,
    SENT_OK,
    SKIPPED,
    Delivery,
    Issue,
)
from digest.transports.base import Outcome, Result
from subscribers.model import BOUNCED, CONFIRMED, Subscriber


@dataclass(slots=True)
class Row:
    """A delivery that is owed, joined with what is needed to build its message."""

    id: int
    subscriber_id: int
    attempts: int
    email: str
    name: str
    status: str  # the subscriber's status right now


def fill(session: Session, issue: Issue) -> int:
    """Add a pending row for every confirmed subscriber not yet in the ledger."""
    sel = select(
        literal(issue.id, Integer),
        Subscriber.id,
        literal(PENDING, String),
        literal(0, Integer),
        literal("", String),
    ).where(
        Subscriber.status == CONFIRMED,
        ~select(Delivery.id)
        .where(Delivery.issue_id == issue.id, Delivery.subscriber_id == Subscriber.id)
        .exists(),
    )
    stmt = insert(Delivery).from_select(
        ["issue_id", "subscriber_id", "status", "attempts", "last_reply"], sel
    )
    return session.execute(stmt).rowcount or 0


def owed_batch(
    session: Session, issue_id: int, after_id: int, limit: int, now: datetime | None = None
) -> list[Row]:
    """The next `limit` owed rows after `after_id` that are due now (keyset paging)."""
    now = now or utcnow()
    stmt = (
        select(
            Delivery.id,
            Delivery.subscriber_id,
            Delivery.attempts,
            Subscriber.email,
            Subscriber.name,
            Subscriber.status,
        )
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(
            Delivery.issue_id == issue_id,
            Delivery.status.in_(OWED),
            Delivery.id > after_id,
            or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now),
        )
        .order_by(Delivery.id)
        .limit(limit)
    )
    return [Row(*r) for r in session.execute(stmt)]


def next_due(session: Session, issue_id: int) -> tuple[int, datetime | None]:
    """How many rows are still owed, and when the earliest deferred one is due."""
    owed, due = session.execute(
        select(func.count(), func.min(Delivery.next_attempt_at)).where(
            Delivery.issue_id == issue_id, Delivery.status.in_(OWED)
        )
    ).one()
    if due is not None and due.tzinfo is None:
        from datetime import UTC

        due = due.replace(tzinfo=UTC)
    return owed, due


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
) -> dict[str, int]:
    """Write a batch of outcomes; returns counts by final status for this batch.

    A plain string instead of a Result means the row was skipped for that reason
    (e.g. the subscriber unsubscribed while the send was running).
    """
    now = utcnow()
    params: list[dict[str, Any]] = []
    counts = {SENT_OK: 0, DEFERRED: 0, FAILED: 0, SKIPPED: 0}
    bounced: list[int] = []
    for row, res in results:
        attempts = row.attempts + 1
        due: datetime | None = None
        if isinstance(res, str):
            status, attempts, code, reply = SKIPPED, row.attempts, None, res[:1000]
        else:
            code, reply = res.code, res.reply[:1000]
            if res.outcome is Outcome.SENT:
                status = SENT_OK
            elif res.outcome is Outcome.DEFERRED and attempts < max_attempts:
                status = DEFERRED
                due = now + timedelta(seconds=backoff(attempts, backoff_base, backoff_cap))
            elif res.outcome is Outcome.DEFERRED:
                status = FAILED
                reply = f"gave up after {attempts} attempts; last reply: {reply}"[:1000]
            else:
                status = FAILED
                if res.recipient_rejected:
                    bounced.append(row.subscriber_id)
        counts[status] += 1
        params.append(
            {
                "b_id": row.id,
                "b_status": status,
                "b_attempts": attempts,
                "b_code": code,
                "b_reply": reply,
                "b_due": due,
                "b_sent": now if status == SENT_OK else None,
                "b_now": now,
            }
        )
    if params:
        table = Delivery.__table__
        session.connection().execute(
            update(table)
            .where(table.c.id == bindparam("b_id"))
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
            ),
            params,
        )
    for sid in bounced:
        _count_bounce(session, sid, bounce_threshold, now)
    return counts


def _count_bounce(session: Session, subscriber_id: int, threshold: int, now: datetime) -> None:
    session.execute(
        update(Subscriber)
        .where(Subscriber.id == subscriber_id)
        .values(bounce_count=Subscriber.bounce_count + 1)
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(Subscriber)
        .where(
            Subscriber.id == subscriber_id,
            Subscriber.bounce_count >= threshold,
            Subscriber.status == CONFIRMED,
        )
        .values(status=BOUNCED, status_changed_at=now)
        .execution_options(synchronize_session=False)
    )


def counts(session: Session, issue_id: int) -> dict[str, int]:
    """Deliveries by status for one issue (every status present, zero if none)."""
    out = {PENDING: 0, DEFERRED: 0, SENT_OK: 0, FAILED: 0, SKIPPED: 0}
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
        .where(Issue.id == issue.id, Issue.status != SENT)
        .values(status=SENT, sent_at=utcnow())
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
