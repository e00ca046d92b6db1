"""Outcomes of deliveries: what the SMTP answer (or a skip) makes of a ledger row.

Pure decisions, tested without a database: digest.delivery.ledger writes what
`plan` decides. A 4xx answer is deferred with exponential backoff until the
attempts run out; a 5xx answer is final; only rows still held under their claim
are written (see `plan`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from digest.delivery.models import DeliveryStatus
from digest.delivery.transports.base import Outcome, Result


@dataclass(slots=True)
class Row:
    """A delivery that is owed, joined with what is needed to build its message."""

    id: int
    subscriber_id: int
    attempts: int
    email: str
    name: str
    status: str  # the subscriber's status right now
    token: str = ""  # the claim under which this sender holds the row (digest.claims)


def backoff(attempts: int, base: float, cap: float) -> float:
    """Exponential backoff: base, 2*base, 4*base ... capped."""
    return min(cap, base * (2 ** max(0, attempts - 1)))


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How outcomes become statuses: attempts, backoff and the bounce threshold."""

    max_attempts: int
    backoff_base: float
    backoff_cap: float
    bounce_threshold: int

    @classmethod
    def of(cls, settings: Any) -> RetryPolicy:
        return cls(
            settings.max_attempts,
            settings.retry_backoff,
            settings.retry_backoff_max,
            settings.bounce_threshold,
        )


@dataclass(frozen=True, slots=True)
class Decision:
    """What to write into one ledger row."""

    id: int
    token: str
    status: DeliveryStatus
    attempts: int
    code: int | None
    reply: str
    due: datetime | None


#: What a batch's counts report: everything a row can end a pass as.
FINAL_KINDS = (
    DeliveryStatus.SENT,
    DeliveryStatus.DEFERRED,
    DeliveryStatus.FAILED,
    DeliveryStatus.SKIPPED,
)


@dataclass
class Plan:
    """The outcome of a batch, decided without touching the database."""

    writes: list[Decision] = field(default_factory=list)
    counts: dict[DeliveryStatus, int] = field(default_factory=lambda: dict.fromkeys(FINAL_KINDS, 0))
    bounced: list[int] = field(default_factory=list)
    lost: int = 0


def decide(row: Row, res: Result | str, now: datetime, policy: RetryPolicy) -> Decision:
    """One row's new state. A plain string means it was skipped for that reason."""
    if isinstance(res, str):
        return Decision(
            row.id, row.token, DeliveryStatus.SKIPPED, row.attempts, None, res[:1000], None
        )
    attempts = row.attempts + 1
    code, reply, due = res.code, res.reply[:1000], None
    if res.outcome is Outcome.SENT:
        status = DeliveryStatus.SENT
    elif res.outcome is Outcome.DEFERRED and attempts < policy.max_attempts:
        status = DeliveryStatus.DEFERRED
        wait = backoff(attempts, policy.backoff_base, policy.backoff_cap)
        due = now + timedelta(seconds=wait)
    elif res.outcome is Outcome.DEFERRED:
        status = DeliveryStatus.FAILED
        reply = f"gave up after {attempts} attempts; last reply: {reply}"[:1000]
    else:
        status = DeliveryStatus.FAILED
    return Decision(row.id, row.token, status, attempts, code, reply, due)


def plan(
    results: list[tuple[Row, Result | str]],
    holders: dict[int, tuple[str | None, datetime | None]],
    now: datetime,
    policy: RetryPolicy,
) -> Plan:
    """Decide a batch: which rows to write, the counts, who bounced, what was lost.

    `holders` says who holds each row now and when it was last written. Only rows
    still held under their claim token are written: a sender whose lease ran out
    cannot overwrite what the sender that took over recorded. A row no longer held
    but written at exactly `now` was written by this very batch before a lost
    connection made us retry it: it is counted, not written twice.
    """
    out = Plan()
    for row, res in results:
        holder, updated = holders.get(row.id, (None, None))
        mine = bool(row.token) and holder == row.token
        if not mine and not (holder is None and updated == now):
            out.lost += 1
            continue
        decision = decide(row, res, now, policy)
        out.counts[decision.status] += 1
        if not mine:
            continue
        out.writes.append(decision)
        if isinstance(res, Result) and res.outcome is Outcome.FAILED and res.recipient_rejected:
            out.bounced.append(row.subscriber_id)
    return out
