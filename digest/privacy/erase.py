"""Erasing one person (GDPR article 17): everything about the address goes, in one
transaction, and only a keyed hash stays on the erasure list (subscribers.erasures).

`ERASERS` lists what is removed, one entry per place personal data lives; each eraser gets
the subscriber row and returns how many rows (or files) it removed or anonymised. Order
matters: the subscriber row goes last, after everything that refers to it.

What stays is anonymous: the ledger keeps each edition's rows with their statuses (so the
counts of a past send do not change) but without the subscriber and the server's reply;
webhook events keep their type and time, their personal data replaced by {"erased": true}.
Endpoints listening for `subscriber.erased` are told first (so a CRM can erase its copy);
that one event keeps the address only until it was delivered (digest.webhooks.outbox).
Tokens in old emails stop working: they name a subscriber id that no longer exists and is
never given out again (AUTOINCREMENT on SQLite, sequences on PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from digest.clock import utcnow
from digest.delivery import ledger
from digest.delivery.models import OWED, Delivery, DeliveryStatus
from digest.editorial.models import Edition, EditionStatus, Newsletter
from digest.settings import Settings
from digest.store import throttle
from digest.store.engine import affected
from digest.webhooks.models import WebhookEvent
from digest.webhooks.outbox import ERASED as ERASED_EVENT
from subscribers import erasures, store
from subscribers.model import Subscriber, Subscription

Eraser = Callable[[Session, Settings, Subscriber], int]
ERASED = "erased at the subscriber's request"
OUTBOX_HEAD = 1024


def notify_webhooks(session: Session, settings: Settings, row: Subscriber) -> int:
    """A `subscriber.erased` event for every endpoint listening: deliveries written."""
    from digest.webhooks import events

    return events.erased(session, row)


def redact_webhook_events(session: Session, settings: Settings, row: Subscriber) -> int:
    """Earlier events lose the person; the erasure notice keeps the address until sent."""
    events = session.scalars(select(WebhookEvent).where(WebhookEvent.subscriber_id == row.id))
    n = 0
    for event in events:
        event.subscriber_id = None
        if event.type == ERASED_EVENT:
            continue
        event.data = {"erased": True, "newsletter": (event.data or {}).get("newsletter")}
        n += 1
    session.flush()
    return n


def anonymise_ledger(session: Session, settings: Settings, row: Subscriber) -> int:
    """Owed rows are skipped (nobody to send to); every row loses its subscriber."""
    sending = set(
        session.scalars(
            select(Delivery.edition_id).where(
                Delivery.subscriber_id == row.id, Delivery.status.in_(OWED)
            )
        )
    )
    session.execute(
        update(Delivery)
        .where(Delivery.subscriber_id == row.id, Delivery.status.in_(OWED))
        .values(
            status=DeliveryStatus.SKIPPED,
            next_attempt_at=None,
            claimed_by=None,
            lease_until=None,
            updated_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )
    n = affected(
        session.execute(
            update(Delivery)
            .where(Delivery.subscriber_id == row.id)
            .values(subscriber_id=None, last_reply=ERASED)
            .execution_options(synchronize_session=False)
        )
    )
    for edition in session.scalars(select(Edition).where(Edition.id.in_(sending))):
        if edition.status == EditionStatus.SENDING:
            ledger.finish_if_done(session, edition)
    return n


def forget_throttles(session: Session, settings: Settings, row: Subscriber) -> int:
    """Counters keyed by the address (confirmation emails per address and newsletter)."""
    from digest.web.signup import CONFIRM_MAIL_PER_ADDRESS

    secret = settings.secret()
    for newsletter_id in session.scalars(select(Newsletter.id)):
        throttle.clear(
            session, CONFIRM_MAIL_PER_ADDRESS, f"{newsletter_id}:{row.email_key}", secret
        )
    return 0


def delete_reader_clicks(session: Session, settings: Settings, row: Subscriber) -> int:
    """Per-subscriber clicks; the stories' aggregate counts stay (they name nobody)."""
    from digest.stats.models import ReaderClick

    return affected(session.execute(delete(ReaderClick).where(ReaderClick.subscriber_id == row.id)))


def delete_subscriptions(session: Session, settings: Settings, row: Subscriber) -> int:
    return affected(
        session.execute(delete(Subscription).where(Subscription.subscriber_id == row.id))
    )


def delete_outbox_messages(session: Session, settings: Settings, row: Subscriber) -> int:
    """Messages to the address in the outbox folder (used when no SMTP server is set)."""
    forms = {row.email, store.ascii_address(row.email)}
    wanted = {f"delivered-to: {form}".lower().encode("utf-8") for form in forms}
    n = 0
    for sub in ("new", "cur"):
        folder = Path(settings.outbox_dir) / sub
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            try:
                with path.open("rb") as fh:
                    head = fh.read(OUTBOX_HEAD).lower()
            except OSError:
                continue
            if any(line.strip() in wanted for line in head.splitlines()[:3]):
                path.unlink(missing_ok=True)
                n += 1
    return n


def delete_subscriber(session: Session, settings: Settings, row: Subscriber) -> int:
    session.delete(row)
    session.flush()
    return 1


#: (name, eraser), run in this order; the subscriber row last.
ERASERS: list[tuple[str, Eraser]] = [
    ("webhook_notices", notify_webhooks),
    ("webhook_events", redact_webhook_events),
    ("deliveries", anonymise_ledger),
    ("throttles", forget_throttles),
    ("reader_clicks", delete_reader_clicks),
    ("subscriptions", delete_subscriptions),
    ("outbox_messages", delete_outbox_messages),
    ("subscriber", delete_subscriber),
]


@dataclass
class Erasure:
    email: str
    found: bool
    removed: dict[str, int]
    newly_listed: bool

    def summary(self) -> str:
        if not self.found:
            listed = "added to" if self.newly_listed else "already on"
            return (
                f"{self.email}: nothing stored about this address; it is {listed} the "
                "erasure list, so no import or sign-up adds it"
            )
        parts = ", ".join(f"{k.replace('_', ' ')}={v}" for k, v in self.removed.items() if v)
        return (
            f"{self.email}: erased ({parts}); only a keyed hash stays on the erasure list, "
            "so no import or sign-up adds it again"
        )


def person(session: Session, settings: Settings, email: str, source: str) -> Erasure:
    """Erase an address everywhere (see the module docstring); the caller commits."""
    address, key = store.normalise_email(email)
    secret = settings.secret()
    row = store.get_by_email(session, key)
    removed: dict[str, int] = {}
    if row is not None:
        for name, eraser in ERASERS:
            removed[name] = eraser(session, settings, row)
    listed = erasures.record(session, secret, key, source)
    return Erasure(address, row is not None, removed, listed)


def optional_secret(settings: Any) -> bytes | None:
    """DIGEST_SECRET_KEY's bytes, or None (the erasure list is then checked only if empty)."""
    key = getattr(settings, "secret_key", None)
    return key.get_secret_value().encode() if key is not None else None
