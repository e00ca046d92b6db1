"""The desk's candidates panel: stories from the newsroom's site, one click to pick.

The panel is templates/web/_candidates.html, included by desk.html; its data comes from
`panel`, registered as one of the desk's panels (digest.web.desk.PANELS). Pick adds the
story with the feed's headline, lead, picture and byline through the same checks as
every pick; Dismiss hides a candidate. Both post with the desk's CSRF token and return to
the desk (POST/redirect/GET).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from digest.candidates import store
from digest.delivery import campaign
from digest.errors import DigestError, NotFound
from digest.web import desk
from digest.web.auth import editor_required
from digest.web.context import db, settings_of
from digest.web.security import require_csrf


def panel(session: Session, request: Request, t: campaign.Target) -> Any:
    """The panel's data, or None when no feed is configured and none was ever polled."""
    data = store.panel(session, t.newsletter, t.edition)
    if not settings_of(request).candidate_feeds and not data.total and data.polled_at is None:
        return None
    return data


desk.PANELS["candidates"] = panel


def _candidate_id(request: Request) -> int:
    value = int(request.path_params["candidate_id"])
    if value > 2**31 - 1:
        raise NotFound(f"no candidate {value}")
    return value


async def _act(request: Request, action: str) -> Response:
    form = await request.form()
    require_csrf(request, form)
    settings, slug = settings_of(request), desk.slug_of(request, form)

    def go(session: Session) -> tuple[str, int | None]:
        t = campaign.target(session, settings, slug)
        if action == "pick":
            row = store.pick(
                session, t.newsletter, t.edition, t.settings.sections, _candidate_id(request)
            )
            return t.newsletter.slug, row.id
        store.dismiss(session, t.newsletter, _candidate_id(request))
        return t.newsletter.slug, None

    try:
        done, pick_id = await db(request, go)
    except DigestError as exc:
        return await desk.home_page(request, error=exc, form=form, status=desk.status_code(exc))
    if pick_id is None:
        return RedirectResponse(desk.desk_url(done, "candidates", ok="dismissed"), 303)
    return RedirectResponse(desk.desk_url(done, f"pick-{pick_id}", ok="picked"), 303)


@editor_required
async def pick(request: Request) -> Response:
    return await _act(request, "pick")


@editor_required
async def dismiss(request: Request) -> Response:
    return await _act(request, "dismiss")


desk.NOTICES["picked"] = (
    "Candidate picked: its headline, lead, picture and byline come from the site."
)
desk.NOTICES["dismissed"] = "Candidate hidden."

routes = [
    Route("/desk/candidates/{candidate_id:int}/pick", pick, methods=["POST"]),
    Route("/desk/candidates/{candidate_id:int}/dismiss", dismiss, methods=["POST"]),
]
