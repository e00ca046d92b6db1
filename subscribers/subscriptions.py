"""Subscriptions: one address's relation to one newsletter. All SQL on that table.

Rules, kept in SQL so they hold under concurrency too:
- an unsubscribed subscription is left alone: no import or re-add revives it (only a
  fresh double opt-in does, through `set_status(..., force=True)`);
- an incoming "unsubscribed" (an exported suppression list) always wins;
- an incoming "confirmed" confirms a pending subscription and records consent;
- otherwise the status stays.
A suppressed address (bounced, complained) keeps its subscriptions but is never mailed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from typing import cast as typed

from sqlalchemy import Select, String, Table, and_, case, func, or_, select
from sqlalchemy.orm import Session

from digest.clock import utcnow
from digest.errors import InputError, NotFound, StateError
from digest.webhooks import events
from subscribers import erasures, store
from subscribers.addresses import clean_name, normalise_email
from subscribers.model import (
    STATUSES,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
    Suppression,
    effective,
)

TABLE = typed(Table, Subscription.__table__)
_C = store.const


@dataclass(frozen=True, slots=True)
class Member:
    """An address as one newsletter sees it."""

    subscriber: Subscriber
    subscription: Subscription | None
    status: SubscriberStatus | None  # None: no subscription to this newsletter

    @property
    def email(self) -> str:
        return self.subscriber.email


def upsert_statement(session: Session, now: datetime) -> Any:
    """INSERT ... ON CONFLICT (newsletter_id, subscriber_id) DO UPDATE, by the rules above."""
    when = store.timestamp_literal(session, TABLE.c.updated_at, now)
    stmt = store.insert_for(session, TABLE).values(
        created_at=when, updated_at=when, status_changed_at=when
    )
    new, old = stmt.excluded, TABLE.c
    leaving = new.status == _C(SubscriptionStatus.UNSUBSCRIBED)
    confirms = and_(
        old.status == _C(SubscriptionStatus.PENDING),
        new.status == _C(SubscriptionStatus.CONFIRMED),
    )
    changes = or_(leaving, confirms)
    return stmt.on_conflict_do_update(
        index_elements=[old.newsletter_id, old.subscriber_id],
        set_={
            "status": case((leaving, new.status), (confirms, new.status), else_=old.status),
            "consent_at": case((confirms, new.consent_at), else_=old.consent_at),
            "consent_source": case((confirms, new.consent_source), else_=old.consent_source),
            "status_changed_at": case((changes, new.updated_at), else_=old.status_changed_at),
            "updated_at": new.updated_at,
        },
        where=old.status != _C(SubscriptionStatus.UNSUBSCRIBED),
    )


def row(
    newsletter_id: int, subscriber_id: int, status: SubscriptionStatus, source: str, now: datetime
) -> dict[str, Any]:
    """One row for `upsert`; consent is recorded only for confirmed rows."""
    confirmed = status == SubscriptionStatus.CONFIRMED
    return {
        "newsletter_id": newsletter_id,
        "subscriber_id": subscriber_id,
        "status": status,
        "consent_at": now if confirmed else None,
        "consent_source": source if confirmed else "",
        "source": source,
    }


def upsert(session: Session, rows: Sequence[dict[str, Any]], now: datetime) -> None:
    """Upsert rows made by `row` in one executemany round trip."""
    if rows:
        session.connection().execute(upsert_statement(session, now), list(rows))


def add(
    session: Session,
    newsletter_id: int,
    email: str,
    name: str = "",
    *,
    status: SubscriptionStatus | str = SubscriptionStatus.PENDING,
    source: str = "cli",
    attributes: dict[str, str] | None = None,
    secret: bytes | None = None,
) -> Member:
    """Add an address to a newsletter, or update it within the rules above.

    Re-adding an unsubscribed or suppressed address changes nothing: check the returned
    status to tell the user. status=confirmed confirms a pending subscription. An address
    on the erasure list raises `erasures.Erased` (`secret` is DIGEST_SECRET_KEY's bytes,
    needed to check it once the list has entries).
    """
    if status not in (SubscriptionStatus.PENDING, SubscriptionStatus.CONFIRMED):
        raise InputError(f"must be pending or confirmed, not {status!r}", field="status")
    address, key = normalise_email(email)
    erasures.check(session, secret, key)
    name = clean_name(name)
    now = utcnow()
    existing = store.get_by_email(session, address)
    before = get(session, newsletter_id, existing.id) if existing is not None else None
    before_status = before.status if before is not None else None
    merged = {**((existing.attributes or {}) if existing else {}), **(attributes or {})}
    store.upsert_addresses(session, [store.address_row(address, key, name, merged)], now)
    subscriber_id = store.ids_for(session, [key])[key]
    upsert(
        session, [row(newsletter_id, subscriber_id, SubscriptionStatus(status), source, now)], now
    )
    added = member(session, newsletter_id, subscriber_id)
    if added.subscription is not None:
        events.subscription_changed(session, added.subscription, before_status)
    return added


def get(session: Session, newsletter_id: int, subscriber_id: int) -> Subscription | None:
    return session.scalar(
        select(Subscription)
        .where(Subscription.newsletter_id == newsletter_id)
        .where(Subscription.subscriber_id == subscriber_id)
        .execution_options(populate_existing=True)
    )


def member(session: Session, newsletter_id: int, subscriber_id: int) -> Member:
    subscriber = store.get(session, subscriber_id)
    session.refresh(subscriber)
    sub = get(session, newsletter_id, subscriber_id)
    status = effective(sub.status if sub else None, subscriber.suppression)
    return Member(subscriber, sub, status if sub or subscriber.suppression else None)


def find(session: Session, newsletter_id: int, email: str) -> Member | None:
    """The address as this newsletter sees it, or None if it is not in the store at all."""
    subscriber = store.get_by_email(session, email)
    return None if subscriber is None else member(session, newsletter_id, subscriber.id)


def set_status(
    session: Session,
    newsletter_id: int,
    subscriber_id: int,
    status: SubscriptionStatus | str,
    source: str,
    *,
    force: bool = False,
) -> Subscription:
    """Confirm or unsubscribe (creating the subscription if needed).

    An unsubscribed subscription is never made pending or confirmed again unless
    `force` (a fresh double opt-in) - that raises StateError instead. Confirming
    records consent (now, `source`).
    """
    status = SubscriptionStatus(status)
    sub = get(session, newsletter_id, subscriber_id)
    before = sub.status if sub is not None else None
    now = utcnow()
    if sub is None:
        sub = Subscription(
            newsletter_id=newsletter_id, subscriber_id=subscriber_id, source=source, created_at=now
        )
        session.add(sub)
    elif sub.status == status:
        return sub
    elif sub.status == SubscriptionStatus.UNSUBSCRIBED and not force:
        raise StateError(f"the subscription is unsubscribed; it is not made {status} again")
    sub.status = status
    sub.status_changed_at = now
    sub.updated_at = now
    if status == SubscriptionStatus.CONFIRMED:
        sub.consent_at = now
        sub.consent_source = source
    session.flush()
    events.subscription_changed(session, sub, before)
    return sub


def unsubscribe(session: Session, newsletter_id: int, email: str, source: str = "cli") -> Member:
    """Leave one newsletter. The row stays, so no later import can bring it back."""
    subscriber = store.require(session, email)
    sub = get(session, newsletter_id, subscriber.id)
    if sub is None:
        raise NotFound(f"{subscriber.email} is not subscribed to this newsletter")
    if sub.status != SubscriptionStatus.UNSUBSCRIBED:
        set_status(session, newsletter_id, subscriber.id, SubscriptionStatus.UNSUBSCRIBED, source)
    return member(session, newsletter_id, subscriber.id)


def unsubscribe_all(session: Session, subscriber_id: int, source: str) -> int:
    """Leave every newsletter; returns how many subscriptions changed."""
    changed = 0
    for sub in of_subscriber(session, subscriber_id):
        if sub.status != SubscriptionStatus.UNSUBSCRIBED:
            set_status(
                session, sub.newsletter_id, subscriber_id, SubscriptionStatus.UNSUBSCRIBED, source
            )
            changed += 1
    return changed


def of_subscriber(session: Session, subscriber_id: int) -> list[Subscription]:
    return list(
        session.scalars(
            select(Subscription)
            .where(Subscription.subscriber_id == subscriber_id)
            .order_by(Subscription.newsletter_id)
        )
    )


def _status_column() -> Any:
    """The effective status in SQL: the suppression first, then the subscription's."""
    return func.coalesce(store.TABLE.c.suppression, TABLE.c.status, type_=String())


def _members_query(newsletter_id: int) -> Select[Subscriber, Subscription]:
    return (
        select(Subscriber, Subscription)
        .join(Subscription, Subscription.subscriber_id == Subscriber.id)
        .where(Subscription.newsletter_id == newsletter_id)
    )


def members(
    session: Session,
    newsletter_id: int,
    status: str | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> list[Member]:
    """A newsletter's subscribers in id order, optionally of one (effective) status."""
    query = _members_query(newsletter_id).order_by(Subscriber.id).offset(offset).limit(limit)
    if status is not None:
        check_status(status)
        query = query.where(_status_column() == status)
    return [
        Member(sub, subscription, effective(subscription.status, sub.suppression))
        for sub, subscription in session.execute(query).all()
    ]


def count(session: Session, newsletter_id: int) -> dict[SubscriberStatus, int]:
    """Subscribers of a newsletter per effective status; every status present."""
    counts = dict.fromkeys(STATUSES, 0)
    status = _status_column()
    rows = session.execute(
        select(status, func.count())
        .select_from(TABLE)
        .join(store.TABLE, store.TABLE.c.id == TABLE.c.subscriber_id)
        .where(TABLE.c.newsletter_id == newsletter_id)
        .group_by(status)
    )
    for value, n in rows:
        counts[SubscriberStatus(value)] = n
    return counts


def mailable() -> Any:
    """The condition under which a subscription gets the newsletter (join both tables)."""
    return and_(
        TABLE.c.status == SubscriptionStatus.CONFIRMED.value, store.TABLE.c.suppression.is_(None)
    )


def mailable_count(session: Session, newsletter_id: int) -> int:
    """How many addresses a send of this newsletter would go to right now."""
    return int(
        session.scalar(
            select(func.count())
            .select_from(TABLE)
            .join(store.TABLE, store.TABLE.c.id == TABLE.c.subscriber_id)
            .where(TABLE.c.newsletter_id == newsletter_id, mailable())
        )
        or 0
    )


def check_status(status: str) -> None:
    if status not in STATUSES:
        raise InputError(f"must be one of {', '.join(STATUSES)}; got {status!r}", field="status")


__all__ = [
    "Member",
    "Suppression",
    "add",
    "count",
    "find",
    "get",
    "mailable",
    "mailable_count",
    "member",
    "members",
    "of_subscriber",
    "row",
    "set_status",
    "unsubscribe",
    "unsubscribe_all",
    "upsert",
]
