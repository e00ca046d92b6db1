"""The events digest emits, and what their `data` holds. Called where the change happens.

- subscriber.confirmed / subscriber.unsubscribed: one newsletter's subscription changed
  (`subscription_changed`), from any source: the confirm link, one-click unsubscribe, the
  preferences page, the command line, the API or an import (`source` says which).
- subscriber.bounced / subscriber.complained: the address is suppressed for every
  newsletter (`suppressed`), by a bounce at delivery, a DSN or an abuse report.
- subscriber.erased: the person was erased at their request (`erased`), so systems that
  hold a copy can erase it too (GDPR article 19). The address leaves the stored event
  once every endpoint got it (digest.webhooks.outbox.forget_erased).
- edition.sent: the last owed message of an edition was settled (`edition_sent`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest.clock import utcnow
from digest.editorial.models import Edition, Newsletter
from digest.webhooks.outbox import ERASED, Data, emit, emit_many
from subscribers.model import Subscriber, Subscription, SubscriptionStatus, Suppression

TYPES = {
    SubscriptionStatus.CONFIRMED: "subscriber.confirmed",
    SubscriptionStatus.UNSUBSCRIBED: "subscriber.unsubscribed",
    Suppression.BOUNCED: "subscriber.bounced",
    Suppression.COMPLAINED: "subscriber.complained",
}


def iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def _person(row: Subscriber) -> Data:
    return {"id": row.id, "email": row.email, "name": row.name}


def _slug(session: Session, newsletter_id: int) -> str:
    return session.scalar(select(Newsletter.slug).where(Newsletter.id == newsletter_id)) or ""


def subscription_data(session: Session, sub: Subscription) -> Data:
    subscriber = session.get(Subscriber, sub.subscriber_id)
    assert subscriber is not None
    return {
        "subscriber": _person(subscriber),
        "newsletter": _slug(session, sub.newsletter_id),
        "status": str(sub.status),
        "source": sub.source if sub.status != SubscriptionStatus.CONFIRMED else sub.consent_source,
        "consent_at": iso(sub.consent_at),
        "changed_at": iso(sub.status_changed_at),
    }


def subscription_changed(session: Session, sub: Subscription, before: str | None) -> None:
    """A subscription's status is now `sub.status` (it was `before`)."""
    event_type = TYPES.get(sub.status)
    if event_type is None or before == sub.status:
        return
    emit(
        session,
        event_type,
        lambda: subscription_data(session, sub),
        subscriber_id=sub.subscriber_id,
    )


def subscriptions_changed(
    session: Session, newsletter_id: int, changes: Sequence[tuple[int, SubscriptionStatus]]
) -> None:
    """Many subscriptions of one newsletter changed at once (an import)."""
    for status in (SubscriptionStatus.CONFIRMED, SubscriptionStatus.UNSUBSCRIBED):
        ids = [sid for sid, new in changes if new == status]
        if not ids:
            continue

        def builder(subscriber_id: int) -> Any:
            def build() -> Data:
                sub = session.scalar(
                    select(Subscription).where(
                        Subscription.newsletter_id == newsletter_id,
                        Subscription.subscriber_id == subscriber_id,
                    )
                )
                assert sub is not None
                return subscription_data(session, sub)

            return build

        emit_many(session, TYPES[status], [(builder(sid), sid, None) for sid in ids])


def _subscribed_to(session: Session, subscriber_id: int) -> list[str]:
    """Slugs of the newsletters the person has a subscription to, in any status."""
    slugs = session.scalars(
        select(Newsletter.slug)
        .join(Subscription, Subscription.newsletter_id == Newsletter.id)
        .where(Subscription.subscriber_id == subscriber_id)
        .order_by(Newsletter.id)
    ).all()
    return list(slugs)


def suppression_data(session: Session, subscriber: Subscriber) -> Data:
    return {
        "subscriber": _person(subscriber),
        "newsletters": _subscribed_to(session, subscriber.id),
        "reason": subscriber.suppression_source,
        "bounce_count": subscriber.bounce_count,
        "suppressed_at": iso(subscriber.suppressed_at),
    }


def suppressed(session: Session, subscriber_id: int, kind: Suppression | str) -> None:
    """The address now gets nothing from any newsletter (it bounced or complained)."""

    def build() -> Data:
        row = session.get(Subscriber, subscriber_id)
        assert row is not None
        session.refresh(row)
        return suppression_data(session, row)

    emit(session, TYPES[Suppression(kind)], build, subscriber_id=subscriber_id)


def erased(session: Session, subscriber: Subscriber) -> int:
    """The person is being erased (called before anything about them is removed)."""

    def build() -> Data:
        return {
            "subscriber": {"id": subscriber.id, "email": subscriber.email},
            "newsletters": _subscribed_to(session, subscriber.id),
            "erased_at": iso(utcnow()),
        }

    return emit(session, ERASED, build, subscriber_id=subscriber.id)


def edition_data(session: Session, edition: Edition) -> Data:
    from digest.delivery import ledger

    counts = ledger.counts(session, edition.id)
    content = edition.content or {}
    return {
        "newsletter": _slug(session, edition.newsletter_id),
        "edition": {
            "key": edition.key,
            "subject": content.get("subject") or edition.subject,
            "view_url": content.get("view_url"),
            "send_started_at": iso(edition.send_started_at),
            "sent_at": iso(edition.sent_at),
            "picks": len(content.get("picks") or []),
        },
        "deliveries": {str(k): v for k, v in counts.items()},
    }


def edition_sent(session: Session, edition: Edition) -> None:
    def build() -> Data:
        session.refresh(edition)
        return edition_data(session, edition)

    emit(session, "edition.sent", build, edition_id=edition.id)


def import_changed(
    session: Session,
    newsletter_id: int,
    rows: Sequence[tuple[int, bool, SubscriptionStatus | None, SubscriptionStatus]],
) -> None:
    """An import's batch: (subscriber id, existed, status before, status imported), as the
    upsert rules apply them (subscribers.subscriptions): confirming a new or pending one,
    or leaving one not left yet, is a change."""
    changes = []
    for subscriber_id, _existed, before, status in rows:
        confirms = status == SubscriptionStatus.CONFIRMED and before in (
            None,
            SubscriptionStatus.PENDING,
        )
        leaves = status == SubscriptionStatus.UNSUBSCRIBED and before != status
        if confirms or leaves:
            changes.append((subscriber_id, status))
    subscriptions_changed(session, newsletter_id, changes)
