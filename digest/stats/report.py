"""What readers read, per story and per edition: for `digest stats` and the desk.

Per edition: delivered and failed come from the ledger; clicks from the counters
(digest.stats.counting). Bounces, complaints and unsubscribes are not tied to an
edition by anything a reader sends us, so they are counted by time: those recorded
after the edition's send started and before the next edition's did (the newest
edition's window is open). A bounce or complaint counts only for an address the
edition was sent to. Click-through is clicks per delivered message, or with
per-subscriber links the share of delivered readers who clicked at least once.
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from digest.delivery.models import Delivery, DeliveryStatus
from digest.editorial.models import PUBLISHED, Edition, Newsletter
from digest.stats.links import PER_SUBSCRIBER
from digest.stats.models import ReaderClick, StoryClick
from subscribers.model import Subscriber, Subscription, SubscriptionStatus, Suppression

#: Editions whose sections the desk sums up ("the last editions").
RECENT = 4


@dataclass
class StoryRow:
    position: int
    pick_id: int
    title: str
    section: str
    url: str
    clicks: int = 0
    readers: int | None = None  # per-subscriber editions only
    share: float = 0.0  # of the edition's clicks


@dataclass
class EditionRow:
    id: int
    key: str
    status: str
    started: datetime | None
    subject: str
    mode: str  # how its story links were made: aggregate, off, per-subscriber
    delivered: int = 0
    failed: int = 0
    bounced: int = 0
    complaints: int = 0
    unsubscribes: int = 0
    clicks: int = 0
    readers: int | None = None

    @property
    def click_through(self) -> float | None:
        if not self.delivered or self.mode == "off":
            return None
        return (self.readers if self.readers is not None else self.clicks) / self.delivered


@dataclass
class SectionRow:
    section: str
    clicks: int
    stories: int  # picked in the editions summed up
    share: float

    @property
    def per_story(self) -> float:
        return self.clicks / self.stories if self.stories else 0.0


@dataclass
class SectionReads:
    editions: list[str] = field(default_factory=list)  # keys summed up, newest first
    rows: list[SectionRow] = field(default_factory=list)

    @property
    def clicks(self) -> int:
        return sum(r.clicks for r in self.rows)


def _published(session: Session, newsletter: Newsletter, limit: int) -> list[Edition]:
    started = func.coalesce(Edition.send_started_at, Edition.created_at)
    return list(
        session.scalars(
            select(Edition)
            .where(Edition.newsletter_id == newsletter.id, Edition.status.in_(PUBLISHED))
            .order_by(started.desc(), Edition.id.desc())
            .limit(limit)
        )
    )


def click_mode(edition: Edition) -> str:
    """How the edition's story links were made: aggregate, per-subscriber or off."""
    return str((edition.content or {}).get("click_stats") or "off")


_mode = click_mode


def readers(session: Session, edition: Edition) -> int:
    """Per-subscriber editions: how many readers clicked at least one story."""
    return _readers_by_edition(session, [edition.id]).get(edition.id, 0)


def _clicks_by_edition(session: Session, ids: list[int]) -> dict[int, int]:
    rows = session.execute(
        select(StoryClick.edition_id, func.sum(StoryClick.clicks))
        .where(StoryClick.edition_id.in_(ids))
        .group_by(StoryClick.edition_id)
    )
    return {e: int(n or 0) for e, n in rows}


def _readers_by_edition(session: Session, ids: list[int]) -> dict[int, int]:
    rows = session.execute(
        select(ReaderClick.edition_id, func.count(func.distinct(ReaderClick.subscriber_id)))
        .where(ReaderClick.edition_id.in_(ids))
        .group_by(ReaderClick.edition_id)
    )
    return {e: int(n) for e, n in rows}


def editions(session: Session, newsletter: Newsletter, limit: int = 12) -> list[EditionRow]:
    """The newsletter's published editions, newest first, with their counts."""
    rows = _published(session, newsletter, limit)
    if not rows:
        return []
    ids = [e.id for e in rows]
    starts = [e.send_started_at or e.created_at for e in rows]
    out = [
        EditionRow(
            e.id,
            e.key,
            str(e.status),
            e.send_started_at,
            str((e.content or {}).get("subject") or e.subject),
            _mode(e),
        )
        for e in rows
    ]
    by_id = {r.id: r for r in out}
    for edition_id, status, n in session.execute(
        select(Delivery.edition_id, Delivery.status, func.count())
        .where(Delivery.edition_id.in_(ids))
        .group_by(Delivery.edition_id, Delivery.status)
    ):
        if status == DeliveryStatus.SENT:
            by_id[edition_id].delivered = n
        elif status == DeliveryStatus.FAILED:
            by_id[edition_id].failed = n
    clicks, readers = _clicks_by_edition(session, ids), _readers_by_edition(session, ids)
    for r in out:
        r.clicks = clicks.get(r.id, 0)
        if r.mode == PER_SUBSCRIBER:
            r.readers = readers.get(r.id, 0)
    _attribute(session, newsletter, out, starts)
    return out


def _attribute(
    session: Session, newsletter: Newsletter, rows: list[EditionRow], starts: list[datetime]
) -> None:
    """Bounces, complaints and unsubscribes into each edition's window (module docstring)."""
    ascending = sorted(zip(starts, (r.id for r in rows)))
    bounds = [s for s, _ in ascending]
    order = [edition_id for _, edition_id in ascending]
    by_id = {r.id: r for r in rows}

    def edition_at(when: datetime | None) -> int | None:
        if when is None:
            return None
        i = bisect.bisect_right(bounds, when) - 1
        return order[i] if i >= 0 else None

    since = bounds[0]
    for (changed,) in session.execute(
        select(Subscription.status_changed_at).where(
            Subscription.newsletter_id == newsletter.id,
            Subscription.status == SubscriptionStatus.UNSUBSCRIBED,
            Subscription.status_changed_at >= since,
        )
    ):
        found = edition_at(changed)
        if found is not None:
            by_id[found].unsubscribes += 1
    suppressed = session.execute(
        select(Delivery.edition_id, Subscriber.suppression, Subscriber.suppressed_at)
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(
            Delivery.edition_id.in_(order),
            Delivery.status.in_((DeliveryStatus.SENT, DeliveryStatus.FAILED)),
            Subscriber.suppression.is_not(None),
            Subscriber.suppressed_at >= since,
        )
    )
    for edition_id, suppression, when in suppressed:
        if edition_at(when) != edition_id:
            continue
        if suppression == Suppression.BOUNCED:
            by_id[edition_id].bounced += 1
        else:
            by_id[edition_id].complaints += 1


def stories(session: Session, edition: Edition) -> list[StoryRow]:
    """The edition's stories in the email's order, with their clicks and share."""
    picks: list[dict[str, Any]] = list((edition.content or {}).get("picks") or [])
    clicks = {
        p: int(n)
        for p, n in session.execute(
            select(StoryClick.pick_id, StoryClick.clicks).where(StoryClick.edition_id == edition.id)
        )
    }
    readers: dict[int, int] | None = None
    if _mode(edition) == PER_SUBSCRIBER:
        readers = {
            p: int(n)
            for p, n in session.execute(
                select(ReaderClick.pick_id, func.count())
                .where(ReaderClick.edition_id == edition.id)
                .group_by(ReaderClick.pick_id)
            )
        }
    total = sum(clicks.values())
    out = []
    for i, p in enumerate(picks, start=1):
        pick_id = int(p.get("id") or 0)
        n = clicks.get(pick_id, 0)
        out.append(
            StoryRow(
                position=int(p.get("position") or i),
                pick_id=pick_id,
                title=str(p.get("title") or p.get("url") or ""),
                section=str(p.get("section") or ""),
                url=str(p.get("url") or ""),
                clicks=n,
                readers=None if readers is None else readers.get(pick_id, 0),
                share=n / total if total else 0.0,
            )
        )
    return out


def sections(session: Session, newsletter: Newsletter, last: int = RECENT) -> SectionReads:
    """Clicks per section over the newsletter's last published editions, most read first."""
    recent = [e for e in _published(session, newsletter, last) if _mode(e) != "off"]
    reads = SectionReads([e.key for e in recent])
    clicks: Counter[str] = Counter()
    picked: defaultdict[str, int] = defaultdict(int)
    for edition in recent:
        for row in stories(session, edition):
            clicks[row.section] += row.clicks
            picked[row.section] += 1
    total = sum(clicks.values())
    reads.rows = sorted(
        (SectionRow(s, clicks[s], picked[s], clicks[s] / total if total else 0.0) for s in picked),
        key=lambda r: (-r.clicks, -r.per_story, r.section),
    )
    return reads
