"""/api/v1/editions: a newsletter's editions, and one with its counts and statistics."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from digest.api.schemas import (
    DeliveryCounts,
    EditionCounts,
    EditionDetail,
    EditionList,
    EditionStats,
    EditionSummary,
)
from digest.api.spec import LIMIT, NEWSLETTER, ApiError, Call, Reply, operation
from digest.api.stats import stats_for
from digest.delivery import ledger
from digest.editorial import editions
from digest.editorial.models import PUBLISHED, Edition, Pick
from digest.errors import InputError

TAG = "editions"


def _picks(session: Session, edition: Edition) -> int:
    if edition.status in PUBLISHED and edition.content.get("picks") is not None:
        return len(edition.content["picks"])
    return int(
        session.scalar(
            select(func.count()).where(Pick.edition_id == edition.id, Pick.removed_at.is_(None))
        )
        or 0
    )


def summary(session: Session, edition: Edition) -> dict[str, object]:
    content = edition.content or {}
    return {
        "key": edition.key,
        "status": str(edition.status),
        "subject": content.get("subject") or edition.subject,
        "planned_at": edition.planned_at,
        "send_started_at": edition.send_started_at,
        "sent_at": edition.sent_at,
        "picks": _picks(session, edition),
    }


@operation(
    "GET",
    "/editions",
    summary="List a newsletter's editions",
    scope="stats",
    tag=TAG,
    answer=EditionList,
    params=(NEWSLETTER, LIMIT),
)
async def list_editions(call: Call) -> Reply:
    """Newest first: the open edition, editions being sent and those sent (cancelled ones
    are left out)."""
    limit = call.limit()

    def go(session: Session) -> EditionList:
        nl = call.newsletter(session)
        editions.open_edition(session, call.settings, nl)
        rows = editions.list_editions(session, nl, limit)
        return EditionList(
            newsletter=nl.slug,
            editions=[EditionSummary.model_validate(summary(session, e)) for e in rows],
        )

    return Reply(200, await call.db(go))


@operation(
    "GET",
    "/editions/{key}",
    summary="One edition with its counts and statistics",
    scope="stats",
    tag=TAG,
    answer=EditionDetail,
)
async def get_edition(call: Call) -> Reply:
    """An edition by key (e.g. 2026-W49): its picks, the ledger's delivery counts and
    what is known of how it did."""
    key = str(call.path("key"))
    try:
        editions.check_key(key)
    except InputError:
        raise ApiError(404, f"no edition {key[:40]!r}") from None

    def go(session: Session) -> EditionDetail:
        nl = call.newsletter(session)
        edition = editions.get(session, nl, key)
        counts = ledger.counts(session, edition.id)
        content = edition.content or {}
        return EditionDetail(
            **summary(session, edition),  # type: ignore[arg-type]
            newsletter=nl.slug,
            preheader=content.get("preheader") or edition.preheader,
            view_url=content.get("view_url") if edition.status in PUBLISHED else None,
            counts=EditionCounts(
                picks=_picks(session, edition),
                deliveries=DeliveryCounts(**{str(k): v for k, v in counts.items()}),
            ),
            stats=EditionStats(**stats_for(session, edition)),
        )

    return Reply(200, await call.db(go))
