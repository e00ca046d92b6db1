"""/r/{token}: a counted story link (DIGEST_CLICK_STATS, docs/stats.md).

The token names an edition and a story and nothing else; the redirect goes to the story
URL in that edition's stored snapshot, so a link can never send anyone elsewhere (a
tampered or unknown token gets 404). Every valid request is redirected (302); whether it
is counted is decided by digest.stats.filters, and a failure to count never breaks the
redirect. No address, reader or time of a click is logged (digest.web.server strips
the client from the access log line of /r/ requests).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from digest.clock import utcnow
from digest.editorial.models import PUBLISHED, Edition, EditionStatus
from digest.stats import counting, filters, links
from digest.web.context import db, settings_of
from digest.web.security import client_address

log = logging.getLogger("digest.web.clicks")

NOT_OURS = "This link is not one of ours, or it was changed on the way."
CACHE_SECONDS = 30.0
CACHE_SIZE = 64


@dataclass(frozen=True)
class Stories:
    """What a click needs of an edition: its story URLs, and whether clicks count."""

    urls: dict[int, str]
    published: bool
    near_send: bool


def _stories(session: Session, edition_id: int) -> Stories | None:
    row = session.execute(
        select(Edition.status, Edition.content, Edition.sent_at).where(Edition.id == edition_id)
    ).first()
    if row is None:
        return None
    status, content, sent_at = row
    urls = {}
    for pick in (content or {}).get("picks") or []:
        url = str(pick.get("url") or "")
        if isinstance(pick.get("id"), int) and url.startswith(("https://", "http://")):
            urls[pick["id"]] = url
    near = status == EditionStatus.SENDING or (
        sent_at is not None and utcnow() - sent_at < timedelta(seconds=filters.NEAR_SEND_SECONDS)
    )
    return Stories(urls, status in PUBLISHED, near)


def _state(app: Starlette, name: str, factory: Any) -> Any:
    """Per-app memory of this module (made on first use: the app needs no set-up)."""
    value = getattr(app.state, name, None)
    if value is None:
        value = factory()
        setattr(app.state, name, value)
    return value


async def _cached(request: Request, edition_id: int) -> Stories | None:
    """Published editions never change their stories: keep them a while (click storms)."""
    cache: dict[int, tuple[float, Stories]] = _state(request.app, "click_editions", dict)
    hit = cache.get(edition_id)
    now = time.monotonic()
    if hit is not None and now - hit[0] < CACHE_SECONDS:
        return hit[1]
    found = await db(request, lambda s: _stories(s, edition_id))
    if found is not None and found.published:
        if len(cache) >= CACHE_SIZE:
            cache.clear()
        cache[edition_id] = (now, found)
    return found


def countable(request: Request) -> bool:
    """Rules 1-3 of digest.stats.filters: a GET from a browser that is not prefetching."""
    return (
        request.method == "GET"
        and not filters.prefetch(request.headers)
        and not filters.scanner_agent(request.headers.get("user-agent"))
    )


async def follow(request: Request) -> Response:
    settings = settings_of(request)
    try:
        click = links.verify(
            settings.secret(), request.path_params["token"], request.path_params.get("reader")
        )
    except links.BadLink:
        raise HTTPException(404, NOT_OURS) from None
    stories = await _cached(request, click.edition_id)
    url = stories.urls.get(click.pick_id) if stories is not None else None
    if stories is None or url is None:
        raise HTTPException(404, NOT_OURS)
    mode = settings.click_stats
    if stories.published and mode != links.OFF and countable(request):
        reader = click.subscriber_id if mode == links.PER_SUBSCRIBER else None
        guard: filters.BurstGuard = _state(request.app, "click_guard", filters.BurstGuard)
        verdict = guard.check(
            guard.client_key(client_address(request)),
            click.edition_id,
            click.pick_id,
            reader,
            near_send=stories.near_send,
        )
        if verdict.count or verdict.take_back:
            await _record(request, click.edition_id, click.pick_id, reader, verdict)
    return RedirectResponse(url, 302, headers={"x-robots-tag": "noindex"})


async def _record(
    request: Request,
    edition_id: int,
    pick_id: int,
    reader: int | None,
    verdict: filters.Verdict,
) -> None:
    def go(session: Session) -> None:
        if verdict.take_back:
            counting.take_back(session, edition_id, verdict.take_back)
        if verdict.count:
            counting.add(session, edition_id, pick_id, reader, utcnow())

    try:
        await db(request, go)
    except Exception:  # the reader gets the story whatever happens to the count
        log.exception("a click on edition %d was not counted", edition_id)


routes = [
    Route("/r/{token}", follow, methods=["GET", "HEAD"]),
    Route("/r/{token}/{reader}", follow, methods=["GET", "HEAD"]),
]
