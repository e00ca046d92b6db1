"""Everything stored about one address (GDPR article 15), as JSON-ready data.

`COLLECTORS` is the list of what is gathered, one entry per kind of data; each collector
gets the subscriber row (None when the address is unknown) and returns JSON-ready data.
A part of digest that stores more about people adds its collector here (as the
per-subscriber clicks do), and its eraser to `digest.privacy.erase.ERASERS`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest.clock import utcnow
from digest.delivery.models import Delivery
from digest.editorial.models import Edition, Newsletter
from digest.settings import Settings
from digest.webhooks.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from subscribers import erasures, store
from subscribers.addresses import normalise_email
from subscribers.model import Subscriber, Subscription

Collector = Callable[[Session, Subscriber], Any]


def iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def subscriber_row(session: Session, row: Subscriber) -> dict[str, Any]:
    return {
        "id": row.id,
        "email": row.email,
        "name": row.name,
        "attributes": dict(row.attributes or {}),
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }


def subscriptions_of(session: Session, row: Subscriber) -> list[dict[str, Any]]:
    rows = session.execute(
        select(Subscription, Newsletter.slug)
        .join(Newsletter, Newsletter.id == Subscription.newsletter_id)
        .where(Subscription.subscriber_id == row.id)
        .order_by(Subscription.id)
    )
    return [
        {
            "newsletter": slug,
            "status": str(sub.status),
            "source": sub.source,
            "consent_at": iso(sub.consent_at),
            "consent_source": sub.consent_source,
            "created_at": iso(sub.created_at),
            "status_changed_at": iso(sub.status_changed_at),
        }
        for sub, slug in rows
    ]


def deliveries_of(session: Session, row: Subscriber) -> list[dict[str, Any]]:
    rows = session.execute(
        select(Delivery, Edition.key, Newsletter.slug)
        .join(Edition, Edition.id == Delivery.edition_id)
        .join(Newsletter, Newsletter.id == Edition.newsletter_id)
        .where(Delivery.subscriber_id == row.id)
        .order_by(Delivery.id)
    )
    return [
        {
            "newsletter": slug,
            "edition": key,
            "status": str(d.status),
            "attempts": d.attempts,
            "last_code": d.last_code,
            "last_reply": d.last_reply,
            "sent_at": iso(d.sent_at),
            "updated_at": iso(d.updated_at),
        }
        for d, key, slug in rows
    ]


def bounces_of(session: Session, row: Subscriber) -> dict[str, Any]:
    return {
        "suppression": str(row.suppression) if row.suppression else None,
        "suppressed_at": iso(row.suppressed_at),
        "source": row.suppression_source,
        "bounce_count": row.bounce_count,
    }


def webhook_events_of(session: Session, row: Subscriber) -> list[dict[str, Any]]:
    events = session.scalars(
        select(WebhookEvent).where(WebhookEvent.subscriber_id == row.id).order_by(WebhookEvent.id)
    ).all()
    out = []
    for event in events:
        sent_to = session.execute(
            select(WebhookEndpoint.url, WebhookDelivery.status, WebhookDelivery.delivered_at)
            .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
            .where(WebhookDelivery.event_id == event.id)
        )
        out.append(
            {
                "id": event.uid,
                "type": event.type,
                "created_at": iso(event.created_at),
                "data": event.data,
                "sent_to": [
                    {"url": url, "status": str(status), "delivered_at": iso(at)}
                    for url, status, at in sent_to
                ],
            }
        )
    return out


def clicks_of(session: Session, row: Subscriber) -> list[dict[str, Any]]:
    """Per-subscriber click statistics (DIGEST_CLICK_STATS=per-subscriber only): which
    stories of which editions the reader opened. Aggregate counts name nobody."""
    from digest.editorial.models import Edition
    from digest.stats.models import ReaderClick

    rows = session.execute(
        select(ReaderClick, Edition.key, Edition.content)
        .join(Edition, Edition.id == ReaderClick.edition_id)
        .where(ReaderClick.subscriber_id == row.id)
        .order_by(ReaderClick.first_at)
    )
    out = []
    for click, key, content in rows:
        picks: list[dict[str, Any]] = (content or {}).get("picks", [])
        story: dict[str, Any] = next((p for p in picks if p.get("id") == click.pick_id), {})
        out.append(
            {
                "edition": key,
                "story": {"title": story.get("title"), "url": story.get("url")},
                "clicks": click.clicks,
                "first_at": iso(click.first_at),
                "last_at": iso(click.last_at),
            }
        )
    return out


#: (name, collector): the sections of an export, in order.
COLLECTORS: list[tuple[str, Collector]] = [
    ("subscriber", subscriber_row),
    ("subscriptions", subscriptions_of),
    ("deliveries", deliveries_of),
    ("bounces", bounces_of),
    ("clicks", clicks_of),
    ("webhook_events", webhook_events_of),
]


def person(session: Session, settings: Settings, email: str) -> dict[str, Any]:
    """The export of one address: {email, exported_at, found, erased, <collector>: ...}."""
    address, key = normalise_email(email)
    row = store.get_by_email(session, key)
    secret = settings.secret_key.get_secret_value().encode() if settings.secret_key else None
    out: dict[str, Any] = {
        "email": row.email if row is not None else address,
        "exported_at": iso(utcnow()),
        "found": row is not None,
        "erased": bool(erasures.erased_keys(session, secret, [key])),
    }
    for name, collect in COLLECTORS:
        out[name] = collect(session, row) if row is not None else None
    return out
