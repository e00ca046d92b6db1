"""Leases on deliveries: which sender is sending which rows right now.

Any number of senders (`digest send`, `digest worker`, schedulers; on one machine
or many) share one ledger. A sender claims a batch of owed rows that are due by
writing its claim token and a lease expiry into them in one UPDATE: on PostgreSQL
the rows are chosen with SELECT ... FOR UPDATE SKIP LOCKED, so concurrent claimers
neither wait for nor take each other's rows; on SQLite the statement is atomic
because writes are serialised. A sender renews its leases while it lives
(`extend`); rows whose lease ran out because their sender died are claimable
again. On PostgreSQL lease times come from the database's clock, so machines with
skewed clocks still agree on when a lease ends.

A claim token is `<worker id>/<batch number>`, one per batch: a claim retried
because its answer was lost with the connection first gives back whatever that
token may already hold, so no row is ever held by a batch nobody is sending.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import String, Table, case, func, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from digest.clock import utcnow
from digest.delivery.ledger import Row
from digest.delivery.models import OWED, Delivery
from digest.editorial.models import Edition, EditionStatus
from digest.store.base import UTCDateTime
from digest.store.engine import affected
from digest.store.leases import db_now
from subscribers.model import Subscriber, Subscription

TABLE = cast(Table, Delivery.__table__)


def _pg(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _free(now: ColumnElement[Any]) -> ColumnElement[bool]:
    return or_(TABLE.c.claimed_by.is_(None), TABLE.c.lease_until < now)


def _due(now: ColumnElement[Any]) -> ColumnElement[bool]:
    return or_(TABLE.c.next_attempt_at.is_(None), TABLE.c.next_attempt_at <= now)


def claim(
    session: Session,
    edition_id: int,
    token: str,
    limit: int,
    lease_seconds: float,
    *,
    after_id: int = 0,
) -> list[Row]:
    """Claim up to `limit` owed, due, unheld rows of the issue for `token`; return them.

    `after_id` is a keyset cursor: only rows with a larger id are looked at. A sender
    passes the largest id of its previous batch, and 0 again once a claim comes back
    empty (a new pass, which also finds deferred rows and expired leases behind it).
    Without it, every claim on PostgreSQL walks the index entries of all the rows
    already sent (dead until vacuum) before it reaches an owed one.
    """
    release(session, [token])
    now = db_now(session)
    conditions = [
        TABLE.c.edition_id == edition_id,
        TABLE.c.status.in_(OWED),
        _due(now),
        _free(now),
        _running(edition_id),
    ]
    if after_id:
        conditions.append(TABLE.c.id > after_id)
    pick = select(TABLE.c.id).where(*conditions).order_by(TABLE.c.id).limit(limit)
    if _pg(session):
        pick = pick.with_for_update(skip_locked=True)
    session.execute(
        update(TABLE)
        .where(TABLE.c.id.in_(pick.scalar_subquery()))
        .values(claimed_by=token, lease_until=db_now(session, lease_seconds))
    )
    return held(session, token)


def _running(edition_id: Any) -> ColumnElement[bool]:
    """The edition is sending and not paused (a paused or cancelled send claims nothing)."""
    return (
        select(Edition.id)
        .where(
            Edition.id == edition_id,
            Edition.status == EditionStatus.SENDING,
            Edition.paused_at.is_(None),
        )
        .exists()
    )


def held(session: Session, token: str) -> list[Row]:
    """The owed rows `token` holds, with what is needed to build their messages.

    The status is the address's as the edition's newsletter sees it right now (an
    unsubscribe or a bounce since the ledger was filled makes the row skipped).
    """
    rows = session.execute(
        select(
            Delivery.id,
            Subscriber.id,  # = Delivery.subscriber_id (NULL only for erased rows, not joined)
            Delivery.attempts,
            Subscriber.email,
            Subscriber.name,
            func.coalesce(Subscriber.suppression, Subscription.status, type_=String()),
        )
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .join(Edition, Edition.id == Delivery.edition_id)
        .outerjoin(
            Subscription,
            (Subscription.subscriber_id == Delivery.subscriber_id)
            & (Subscription.newsletter_id == Edition.newsletter_id),
        )
        .where(Delivery.claimed_by == token, Delivery.status.in_(OWED))
        .order_by(Delivery.id)
    )
    return [Row(*r, token=token) for r in rows]


def extend(session: Session, tokens: list[str], lease_seconds: float) -> int:
    """Renew the lease of every row these tokens hold (the heartbeat)."""
    if not tokens:
        return 0
    result = session.execute(
        update(TABLE)
        .where(TABLE.c.claimed_by.in_(tokens))
        .values(lease_until=db_now(session, lease_seconds))
    )
    return affected(result)


def release(session: Session, tokens: list[str]) -> int:
    """Give back what these tokens hold (stop, or a claim being retried)."""
    if not tokens:
        return 0
    result = session.execute(
        update(TABLE)
        .where(TABLE.c.claimed_by.in_(tokens))
        .values(claimed_by=None, lease_until=None)
    )
    return affected(result)


def release_holder(session: Session, holder_id: str) -> int:
    """Give back everything a holder that is known to be dead still holds."""
    result = session.execute(
        update(TABLE)
        .where(TABLE.c.claimed_by.startswith(holder_id + "/", autoescape=True))
        .values(claimed_by=None, lease_until=None)
    )
    return affected(result)


@dataclass(frozen=True, slots=True)
class Outlook:
    """What is left of a send, seen from a sender that has nothing in hand."""

    owed: int  # pending + deferred, whoever holds them
    held: int  # of those, under another sender's live lease
    claimable: int  # of those, free and due now
    next_at: datetime | None  # when the next held or deferred one may become claimable

    def wait(self, poll: float) -> float:
        """Seconds to sleep before looking again (never longer than `poll`)."""
        if self.claimable:
            return 0.0
        if self.next_at is None:
            return poll
        return min(poll, max(0.01, (self.next_at - utcnow()).total_seconds()))


def outlook(session: Session, edition_id: int | None = None) -> Outlook:
    """The state of owed rows for one issue, or for every issue that is sending."""
    now = db_now(session)
    live = TABLE.c.claimed_by.is_not(None) & (TABLE.c.lease_until >= now)
    ready = ~live & _due(now)
    query = select(
        func.count(),
        func.coalesce(func.sum(case((live, 1), else_=0)), 0),
        func.coalesce(func.sum(case((ready, 1), else_=0)), 0),
        func.min(
            case((live, TABLE.c.lease_until), else_=TABLE.c.next_attempt_at), type_=UTCDateTime()
        ),
    ).where(TABLE.c.status.in_(OWED))
    if edition_id is None:
        sending = select(Edition.id).where(
            Edition.status == EditionStatus.SENDING, Edition.paused_at.is_(None)
        )
        query = query.where(TABLE.c.edition_id.in_(sending.scalar_subquery()))
    else:
        query = query.where(TABLE.c.edition_id == edition_id)
    owed, held_n, claimable, next_at = session.execute(query).one()
    return Outlook(int(owed), int(held_n), int(claimable), next_at)


def running(session: Session, edition_id: int) -> bool:
    """Whether senders should still work on the edition (sending, not paused)."""
    return bool(session.scalar(select(_running(edition_id))))


def claimable_edition(session: Session) -> int | None:
    """The oldest edition that is sending (not paused) with rows a sender could claim now."""
    now = db_now(session)
    return session.scalar(
        select(TABLE.c.edition_id)
        .join(Edition, Edition.id == TABLE.c.edition_id)
        .where(
            Edition.status == EditionStatus.SENDING,
            Edition.paused_at.is_(None),
            TABLE.c.status.in_(OWED),
            _due(now),
            _free(now),
        )
        .order_by(TABLE.c.edition_id)
        .limit(1)
    )
