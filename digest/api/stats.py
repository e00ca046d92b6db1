"""An edition's numbers, for the API: delivery counts from the ledger and, when the
edition's story links were counted (DIGEST_CLICK_STATS), its clicks per story — the same
figures as `digest stats` and the desk's stats page (digest.stats.report).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from digest.delivery import ledger
from digest.delivery.models import DeliveryStatus
from digest.editorial.models import Edition
from digest.stats import report


def stats_for(session: Session, edition: Edition) -> dict[str, Any]:
    """Delivery counts; clicks, click-through and stories unless links were not counted."""
    counts = ledger.counts(session, edition.id)
    delivered = counts[DeliveryStatus.SENT]
    mode = report.click_mode(edition)
    out: dict[str, Any] = {
        "recipients": sum(counts.values()),
        "delivered": delivered,
        "failed": counts[DeliveryStatus.FAILED],
        "skipped": counts[DeliveryStatus.SKIPPED],
        "owed": counts[DeliveryStatus.PENDING] + counts[DeliveryStatus.DEFERRED],
        "click_stats": mode,
        "clicks": None,
        "click_through": None,
        "stories": None,
    }
    if mode == "off" or not edition.content:
        return out
    stories = report.stories(session, edition)
    clicks = sum(s.clicks for s in stories)
    readers = report.readers(session, edition) if mode == report.PER_SUBSCRIBER else None
    out["clicks"] = clicks
    if delivered:
        out["click_through"] = (readers if readers is not None else clicks) / delivered
    out["stories"] = [
        {
            "pick_id": s.pick_id,
            "position": s.position,
            "title": s.title,
            "section": s.section,
            "url": s.url,
            "clicks": s.clicks,
            "share": round(s.share, 4),
        }
        for s in stories
    ]
    return out
