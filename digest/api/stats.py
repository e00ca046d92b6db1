"""An edition's numbers, for the API (and anything else that reports on an edition).

`stats_for(session, edition)` is the one place that gathers them: the ledger's delivery
counts today. Click statistics (issue 15) plug in here at merge: add the edition's story
clicks to the returned dict (`clicks`, and any further keys: EditionStats allows them).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from digest.delivery import ledger
from digest.delivery.models import DeliveryStatus
from digest.editorial.models import Edition


def stats_for(session: Session, edition: Edition) -> dict[str, Any]:
    """Delivery counts from the ledger; `clicks` is None until click statistics are wired."""
    counts = ledger.counts(session, edition.id)
    return {
        "recipients": sum(counts.values()),
        "delivered": counts[DeliveryStatus.SENT],
        "failed": counts[DeliveryStatus.FAILED],
        "skipped": counts[DeliveryStatus.SKIPPED],
        "owed": counts[DeliveryStatus.PENDING] + counts[DeliveryStatus.DEFERRED],
        "clicks": None,
    }
