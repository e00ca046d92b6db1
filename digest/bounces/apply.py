"""What a notice does to the subscriber it is about.

Hard bounces mark the subscriber bounced, complaints mark them complained; both are
final (never mailed again, never revived by an import). Soft bounces add to the
subscriber's bounce count (shared with SMTP-time 5xx answers) and mark them bounced
at DIGEST_SOFT_BOUNCE_THRESHOLD.
"""

from __future__ import annotations

import logging
from typing import Literal

from sqlalchemy.orm import Session

from digest.bounces.reports import COMPLAINT, HARD, SOFT, Notice
from subscribers import store
from subscribers.model import BLOCKED, Subscriber, SubscriberStatus

log = logging.getLogger("digest.bounces")

Outcome = Literal["bounced", "complained", "counted", "already", "ignored", "unmatched"]


def find_subscriber(session: Session, notice: Notice) -> Subscriber | None:
    """Our Message-ID first (it survives redaction and forwarding), then the addresses."""
    if notice.subscriber_id is not None:
        row = session.get(Subscriber, notice.subscriber_id)
        if row is not None:
            return row
    for address in notice.addresses:
        row = store.get_by_email(session, address)
        if row is not None:
            return row
    return None


def apply(session: Session, notice: Notice, soft_threshold: int) -> Outcome:
    """Record the notice; the caller commits."""
    if notice.kind not in (HARD, SOFT, COMPLAINT):
        return "ignored"
    row = find_subscriber(session, notice)
    if row is None:
        log.info("no subscriber for %s", notice.describe())
        return "unmatched"
    source = f"{notice.report}: {notice.status}"
    if notice.kind == COMPLAINT:
        if row.status == SubscriberStatus.COMPLAINED:
            return "already"
        store.set_status(session, row.id, SubscriberStatus.COMPLAINED, source)
        log.info("subscriber %d complained (%s)", row.id, source)
        return "complained"
    if row.status in BLOCKED:
        return "already"
    if notice.kind == HARD:
        store.set_status(session, row.id, SubscriberStatus.BOUNCED, source)
        log.info("subscriber %d bounced (%s)", row.id, source)
        return "bounced"
    if store.record_bounce(session, row.id, soft_threshold):
        log.info("subscriber %d bounced after repeated soft bounces (%s)", row.id, source)
        return "bounced"
    return "counted"
