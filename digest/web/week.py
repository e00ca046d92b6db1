"""Which issue the desk works on, and when the scheduler will send it.

The desk edits this week's issue until its send starts; from then on new picks,
subject and intro belong to next week's issue (the same rule `digest build` and the
scheduler follow: picks not yet in a sent issue go into the next one).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from digest.clock import utcnow
from digest.editorial import editions
from digest.editorial.models import IssueStatus
from digest.scheduling.trigger import next_fire_times
from digest.settings import Settings


def working_key(session: Session, settings: Settings, now: datetime | None = None) -> str:
    """This week's key, or next week's once this week's issue has started sending."""
    now = now or utcnow()
    key = editions.current_key(settings, now)
    row = editions.find_issue(session, key)
    if row is not None and row.status in (IssueStatus.SENDING, IssueStatus.SENT):
        return editions.week_key(now + timedelta(days=7), settings)
    return key


def next_send(settings: Settings, now: datetime | None = None) -> datetime | None:
    """The next time the scheduler fires, in DIGEST_TIMEZONE (None if it never does).

    Uses the scheduler's own trigger (digest.scheduler_trigger), so the desk shows the
    moment `digest schedule` will really send, daylight-saving changes included.
    """
    times = next_fire_times(settings, 1, now)
    return times[0] if times else None
