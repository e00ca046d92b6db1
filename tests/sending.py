"""Helpers for the multi-sender tests: a store with picks, many subscribers, a started send."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from digest.clock import utcnow
from digest.delivery import campaign
from digest.editorial.models import Issue
from digest.editorial.picks import add_pick, validate_pick
from digest.settings import Settings
from digest.store.engine import session_scope
from subscribers import store
from subscribers.model import SubscriberStatus
from tests.samples import sample_pick


def address(i: int) -> str:
    return f"reader{i}@example.com"


def add_picks(engine: Engine, settings: Settings, n: int = 3) -> None:
    with session_scope(engine) as s:
        for i in range(n):
            raw = {k: v for k, v in sample_pick(i, featured=i == 0).items()}
            raw = {k: v for k, v in raw.items() if k not in ("id", "position")}
            add_pick(s, validate_pick(raw, settings.sections))


def add_subscribers(engine: Engine, n: int, start: int = 0) -> list[str]:
    """`n` confirmed subscribers in one round trip per 5,000."""
    emails = [address(i) for i in range(start, start + n)]
    now = utcnow()
    with session_scope(engine) as s:
        for first in range(0, n, 5000):
            rows = [
                store.row_values(e, e, f"Reader {e}", {}, SubscriberStatus.CONFIRMED, "test", now)
                for e in emails[first : first + 5000]
            ]
            store.upsert_rows(s, rows, now)
    return emails


def started_send(engine: Engine, settings: Settings, n: int) -> tuple[Issue, list[str]]:
    """This week's issue, frozen and in `sending`, its ledger filled for `n` subscribers."""
    add_picks(engine, settings)
    emails = add_subscribers(engine, n)
    return campaign.prepare_send(engine, settings), emails
