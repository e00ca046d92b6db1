"""The delivery ledger: what each delivery's state is, and writing outcomes into it.

One row per issue x subscriber (unique), filled in one INSERT ... SELECT so the
list is never held in memory. A row is marked sent only after the server's 250;
rows still pending when a process dies are simply sent on resume. Who is sending
which rows right now (claims and leases) lives in digest.claims; an outcome is
written only by the sender whose claim still holds the row.
"""

from __future__ import annotations

import logging
from datetime import datetime
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
from digest.delivery.outcomes import FINAL_KINDS, Decision, RetryPolicy, Row, decide, plan
from digest.delivery.transports.base import Result
from digest.editorial.models import Edition, EditionStatus
from digest.store.base import UTCDateTime
from digest.store.engine import affected, analyze
from subscribers import store, subscriptions
from subscribers.model import Subscriber, Subscription, effective

__all__ = [  # the outcomes' names are ledger's too (callers and tests use ledger.decide)
    "FINAL_KINDS",
    "Decision",
    "RetryPolicy",
    "Row",
    "counts",
    "decide",
    "explain",
    "fill",
    "finish_if_done",
    "plan",
    "record",
    "skip_owed",
    "start_lock",
    "write",
]
log = logging.getLogger("digest.ledger")
TABLE = cast(Table, Delivery.__table__)


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
        analyze(session, ("subscriptions", "subscribers"), stale_only=True)
    # Two processes filling at once (a scheduler and a manual send) must not collide.
    stmt = (
        (postgresql.insert if pg else sqlite.insert)(Delivery)
        .from_select(["edition_id", "subscriber_id", "status", "attempts", "last_reply"], sel)
        .on_conflict_do_nothing(index_elements=["edition_id", "subscriber_id"])
    )
    result = session.connection().execute(stmt.execution_options(preserve_rowcount=True))
    added = affected(result)
    if added and pg:  # the claims of this send plan with the ledger as it is now
        analyze(session, ("deliveries",))
    return added


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


#: PostgreSQL: a batch's sent rows in one statement, five arrays bound in all (instead of
#: one UPDATE per row, each parsed, planned and answered on its own).
_SENT_PG = text(
    "UPDATE deliveries SET status = 'sent', attempts = v.attempts, last_code = v.code, "
    "last_reply = v.reply, next_attempt_at = NULL, sent_at = :now, updated_at = :now, "
    "claimed_by = NULL, lease_until = NULL "
    "FROM unnest(CAST(:ids AS integer[]), CAST(:tokens AS varchar[]), "
    "CAST(:attempts AS integer[]), CAST(:codes AS integer[]), CAST(:replies AS text[])) "
    "AS v(id, token, attempts, code, reply) "
    "WHERE deliveries.id = v.id AND deliveries.claimed_by = v.token"
).bindparams(bindparam("now", type_=UTCDateTime()))


def write(session: Session, decisions: list[Decision], now: datetime) -> int:
    """Write decided rows (only where the claim still holds), the sent rows in one go and
    the rest in one executemany; returns the rows written."""
    written = 0
    if session.get_bind().dialect.name == "postgresql":
        delivered = [d for d in decisions if d.status == DeliveryStatus.SENT]
        decisions = [d for d in decisions if d.status != DeliveryStatus.SENT]
        if delivered:
            arrays = {
                "ids": [d.id for d in delivered],
                "tokens": [d.token for d in delivered],
                "attempts": [d.attempts for d in delivered],
                "codes": [d.code for d in delivered],
                "replies": [d.reply for d in delivered],
            }
            written += affected(session.execute(_SENT_PG, {"now": now, **arrays}))
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
    done = bool(affected(result))
    if done:
        from digest.webhooks import events

        events.edition_sent(session, issue)
    return done


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
