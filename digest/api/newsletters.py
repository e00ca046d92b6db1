"""/api/v1/newsletters: which newsletters there are (a key for one newsletter sees one)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from digest.api.picks import edition_ref
from digest.api.schemas import NewsletterList, NewsletterOut
from digest.api.spec import Call, Reply, operation
from digest.editorial import editions, newsletters


@operation(
    "GET",
    "/newsletters",
    summary="List the newsletters",
    scope=None,
    tag="newsletters",
    answer=NewsletterList,
    params=(),
)
async def list_newsletters(call: Call) -> Reply:
    """Every newsletter any key may see, with its next edition; any scope will do."""

    def go(session: Session) -> NewsletterList:
        rows = newsletters.all_(session) or [newsletters.ensure_default(session)]
        out = []
        for nl in rows:
            if call.caller.newsletter_id not in (None, nl.id):
                continue
            own = newsletters.settings_for(call.settings, nl)
            out.append(
                NewsletterOut(
                    slug=nl.slug,
                    name=own.list_name,
                    is_default=nl.is_default,
                    language=nl.language or "en",
                    schedule=own.schedule,
                    timezone=own.timezone,
                    next_edition=edition_ref(editions.open_edition(session, call.settings, nl)),
                )
            )
        return NewsletterList(newsletters=out)

    return Reply(200, await call.db(go))
