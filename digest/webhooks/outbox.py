"""Writing events: the outbox half of the webhooks, inside the caller's transaction.

Every place where a subscription is confirmed or left, an address is suppressed, or an
edition finishes sending calls one function here with the session that makes the change,
so the event commits (or rolls back) with it: no event for a change that did not happen,
no change without its event. The body's `data` is built only when an endpoint listens,
so an installation without webhooks pays one indexed read per change.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from digest.clock import utcnow
from digest.webhooks.models import (
    EVENT_TYPES,
    HookStatus,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)

Data = dict[str, Any]


def listeners(session: Session, event_type: str) -> list[int]:
    """Ids of the endpoints that receive `event_type`."""
    assert event_type in EVENT_TYPES, event_type
    rows = session.execute(select(WebhookEndpoint.id, WebhookEndpoint.events)).all()
    return [endpoint_id for endpoint_id, events in rows if event_type in (events or ())]


def new_uid() -> str:
    return "evt_" + secrets.token_hex(12)


def emit(
    session: Session,
    event_type: str,
    data: Callable[[], Data],
    *,
    subscriber_id: int | None = None,
    edition_id: int | None = None,
) -> int:
    """Record one event for every endpoint listening; how many deliveries were written."""
    return emit_many(session, event_type, [(data, subscriber_id, edition_id)])


def emit_many(
    session: Session,
    event_type: str,
    items: Sequence[tuple[Callable[[], Data], int | None, int | None]],
) -> int:
    """Several events of one type (an import): (data builder, subscriber id, edition id)."""
    if not items:
        return 0
    endpoints = listeners(session, event_type)
    if not endpoints:
        return 0
    now = utcnow()
    events = []
    for build, subscriber_id, edition_id in items:
        event = WebhookEvent(
            uid=new_uid(),
            type=event_type,
            created_at=now,
            subscriber_id=subscriber_id,
            data=build(),
        )
        key = f"s:{subscriber_id}" if subscriber_id is not None else f"e:{edition_id}"
        events.append((event, key))
    session.add_all([e for e, _ in events])
    session.flush()
    session.add_all(
        WebhookDelivery(
            event_id=event.id,
            endpoint_id=endpoint_id,
            order_key=key,
            next_attempt_at=now,
            updated_at=now,
        )
        for event, key in events
        for endpoint_id in endpoints
    )
    session.flush()
    return len(events) * len(endpoints)


ERASED = "subscriber.erased"


def forget_erased(session: Session, event_ids: Sequence[int] | None = None) -> int:
    """Drop the address from erasure notices nobody is owed any more.

    A `subscriber.erased` event must carry the address to the systems that hold a copy
    (GDPR article 19); once every endpoint got it or was given up, only the subscriber id
    stays, so the erasure does not leave the address behind in the outbox.
    """
    owed = exists().where(
        WebhookDelivery.event_id == WebhookEvent.id, WebhookDelivery.status == HookStatus.PENDING
    )
    query = select(WebhookEvent).where(WebhookEvent.type == ERASED, ~owed)
    if event_ids is not None:
        query = query.where(WebhookEvent.id.in_(event_ids))
    n = 0
    for event in session.scalars(query):
        data = dict(event.data or {})
        person = dict(data.get("subscriber") or {})
        if "email" not in person:
            continue
        data["subscriber"] = {"id": person.get("id")}
        event.data = data
        n += 1
    session.flush()
    return n
