"""Webhook endpoints: add (with a new signing secret), list, remove; and the log of attempts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from digest.clock import utcnow
from digest.errors import InputError, NotFound
from digest.store.base import MAX_ID
from digest.webhooks import guard
from digest.webhooks.models import (
    EVENT_TYPES,
    HookStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from digest.webhooks.outbox import forget_erased
from digest.webhooks.signing import new_secret

MAX_URL = 2048


def check_url(url: str, *, allow_private: bool) -> str:
    """An absolute http(s) URL without credentials whose host resolves to public addresses
    (unless allowed); InputError naming the URL otherwise."""
    url = url.strip()
    parts = urlsplit(url)
    if len(url) > MAX_URL or not url.isprintable() or " " in url:
        raise InputError("must be a URL without spaces or control characters", field="URL")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"must be an http:// or https:// URL, not {url[:80]!r}", field="URL")
    if parts.username or parts.password:
        raise InputError("must not carry a user name or password", field="URL")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise InputError("has an invalid port", field="URL") from None
    if allow_private:
        return url
    try:
        addresses = guard.resolve(parts.hostname, port)
    except (OSError, UnicodeError) as exc:
        raise InputError(f"cannot resolve {parts.hostname}: {exc}", field="URL") from None
    bad = guard.refused(addresses)
    if bad is not None:
        raise InputError(
            f"{parts.hostname} resolves to {bad}, a loopback or private address; webhooks go "
            "to public addresses only (set DIGEST_WEBHOOK_ALLOW_PRIVATE=true to allow it)",
            field="URL",
        )
    return url


def check_events(events: list[str] | None) -> list[str]:
    """The event types asked for (every type when none are named)."""
    wanted = [e.strip().lower() for e in (events or EVENT_TYPES)]
    for event in wanted:
        if event not in EVENT_TYPES:
            raise InputError(
                f"unknown event {event!r}; events: {', '.join(EVENT_TYPES)}", field="event"
            )
    return sorted(set(wanted), key=EVENT_TYPES.index)


def add(
    session: Session, url: str, events: list[str] | None, *, allow_private: bool
) -> WebhookEndpoint:
    """A new endpoint with a new signing secret (`row.secret`, to be shown once)."""
    wanted = check_events(events)
    row = WebhookEndpoint(
        url=check_url(url, allow_private=allow_private),
        secret=new_secret(),
        events=wanted,
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    return row


def all_(session: Session) -> list[WebhookEndpoint]:
    return list(session.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.id)))


def find(session: Session, ident: str) -> WebhookEndpoint:
    """An endpoint by id or by its exact URL."""
    ident = ident.strip()
    row = None
    if ident.isdigit() and 0 < int(ident) <= MAX_ID:
        row = session.get(WebhookEndpoint, int(ident))
    if row is None:
        matches = session.scalars(select(WebhookEndpoint).where(WebhookEndpoint.url == ident)).all()
        if len(matches) > 1:
            raise InputError(f"several endpoints have that URL; name one by id ({matches[0].id}…)")
        row = matches[0] if matches else None
    if row is None:
        raise NotFound(f"no webhook endpoint {ident[:80]!r} (see `digest webhooks list`)")
    return row


def remove(session: Session, ident: str) -> tuple[WebhookEndpoint, int]:
    """Delete an endpoint and what was still owed to it; (the endpoint, deliveries dropped)."""
    row = find(session, ident)
    owed = pending(session, row.id)
    session.delete(row)
    session.flush()
    forget_erased(session)  # an erasure notice owed only to it no longer needs the address
    return row, owed


def pending(session: Session, endpoint_id: int) -> int:
    return int(
        session.scalar(
            select(func.count()).where(
                WebhookDelivery.endpoint_id == endpoint_id,
                WebhookDelivery.status == HookStatus.PENDING,
            )
        )
        or 0
    )


@dataclass(frozen=True)
class LogLine:
    """One attempt as `digest webhooks log` shows it."""

    at: datetime
    endpoint: str
    event_type: str
    event_uid: str
    attempt: int
    code: int | None
    error: str
    duration_ms: int
    status: str
    next_attempt_at: datetime | None


def log(session: Session, limit: int = 50, *, failed_only: bool = False) -> list[LogLine]:
    """The newest attempts first."""
    query = (
        select(WebhookAttempt, WebhookDelivery, WebhookEvent, WebhookEndpoint.url)
        .join(WebhookDelivery, WebhookDelivery.id == WebhookAttempt.delivery_id)
        .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .order_by(WebhookAttempt.id.desc())
        .limit(limit)
    )
    if failed_only:
        query = query.where(WebhookAttempt.error != "")
    out = []
    for attempt, delivery, event, url in session.execute(query):
        n = session.scalar(
            select(func.count()).where(
                WebhookAttempt.delivery_id == delivery.id, WebhookAttempt.id <= attempt.id
            )
        )
        out.append(
            LogLine(
                attempt.at,
                url,
                event.type,
                event.uid,
                int(n or 0),
                attempt.code,
                attempt.error,
                attempt.duration_ms,
                str(delivery.status),
                delivery.next_attempt_at if delivery.status == HookStatus.PENDING else None,
            )
        )
    return out
