"""What a notice does to the subscriber it is about, once we know we sent the message.

A notice acts only through a signed reference (digest.delivery.reference) that
verifies under DIGEST_SECRET_KEY and names an edition the ledger shows as sent to
that subscriber. Without one it is "rejected": it changes nobody, and the caller keeps
the message flagged in the mailbox for a person to judge. The addresses a report names
are never used to find a subscriber: anyone can write `Final-Recipient: victim@...`.

Hard bounces suppress the address as bounced, complaints as complained; both are final
and per address (no newsletter mails it again, no import revives it). Soft bounces add to the
subscriber's bounce count (shared with SMTP-time 5xx answers) and mark them bounced
at DIGEST_SOFT_BOUNCE_THRESHOLD.
"""

from __future__ import annotations

import logging
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest.bounces.reports import COMPLAINT, HARD, SOFT, Notice
from digest.delivery import reference
from digest.delivery.models import Delivery, DeliveryStatus
from digest.store.base import MAX_ID
from subscribers import store
from subscribers.model import Subscriber, Suppression

log = logging.getLogger("digest.bounces")

Outcome = Literal["bounced", "complained", "counted", "already", "ignored", "rejected"]


def verified(secret: bytes, notice: Notice) -> reference.Reference | None | str:
    """The one reference in the notice that verifies; None if none does; a reason string
    when several valid ones disagree (someone added theirs to a report about another)."""
    found = {r for r in (reference.verify(secret, c) for c in notice.refs) if r is not None}
    if len(found) > 1:
        return "references to different deliveries"
    return found.pop() if found else None


def find_subscriber(session: Session, secret: bytes, notice: Notice) -> Subscriber | str:
    """The subscriber a verified reference names and the ledger confirms, or why not."""
    ref = verified(secret, notice)
    if isinstance(ref, str):
        return ref
    if ref is None:
        return "no valid signed reference"
    if not (0 < ref.issue_id <= MAX_ID and 0 < ref.subscriber_id <= MAX_ID):
        return "a test send or confirmation email"
    sent = session.scalar(
        select(Delivery.status).where(
            Delivery.edition_id == ref.issue_id, Delivery.subscriber_id == ref.subscriber_id
        )
    )
    if sent != DeliveryStatus.SENT:
        return f"the ledger has no sent delivery of issue {ref.issue_id} to that subscriber"
    row = session.get(Subscriber, ref.subscriber_id)
    return row if row is not None else "the subscriber was erased"


def apply(session: Session, notice: Notice, soft_threshold: int, secret: bytes) -> Outcome:
    """Record the notice; the caller commits (and flags the message when "rejected")."""
    if notice.kind not in (HARD, SOFT, COMPLAINT):
        return "ignored"
    row = find_subscriber(session, secret, notice)
    if isinstance(row, str):
        log.warning("rejected %s: %s", notice.describe(), row)
        return "rejected"
    source = f"{notice.report}: {notice.status}"
    if notice.kind == COMPLAINT:
        if not store.suppress(session, row.id, Suppression.COMPLAINED, source):
            return "already"
        log.info("subscriber %d complained (%s)", row.id, source)
        return "complained"
    if row.suppression is not None:
        return "already"
    if notice.kind == HARD:
        store.suppress(session, row.id, Suppression.BOUNCED, source)
        log.info("subscriber %d bounced (%s)", row.id, source)
        return "bounced"
    if store.record_bounce(session, row.id, soft_threshold):
        log.info("subscriber %d bounced after repeated soft bounces (%s)", row.id, source)
        return "bounced"
    return "counted"
