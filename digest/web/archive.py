"""The public archive and the small pages every email links to.

Each newsletter's archive lists its editions whose send has started (their "view in
browser" links are in inboxes from that moment on): the default newsletter's at
/issues/ (where links in mail sent before there were several newsletters point), the
others' at /newsletters/SLUG/issues/. /…/issues/{key} is an edition's web version, with
the personal parts left out (`digest.editorial.render.web_version`). Keys are checked
with `editions.check_key`, so anything else is a 404.
"""

from __future__ import annotations

import logging
from email.utils import parseaddr

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from digest.editorial import editions, newsletters
from digest.editorial.models import PUBLISHED, Edition, Newsletter
from digest.editorial.render import SUPPORT_FREQUENCIES, web_version
from digest.errors import InputError, NotFound
from digest.web.context import db, settings_of
from digest.web.pages import render
from digest.web.security import email_csp

log = logging.getLogger("digest.web")


def published(session: Session, newsletter_id: int, limit: int = 200) -> list[Edition]:
    """A newsletter's editions readers may have received, newest first."""
    return list(
        session.scalars(
            select(Edition)
            .where(Edition.newsletter_id == newsletter_id, Edition.status.in_(PUBLISHED))
            .order_by(func.coalesce(Edition.send_started_at, Edition.created_at).desc())
            .limit(limit)
        )
    )


def _newsletter(session: Session, slug: str | None) -> Newsletter:
    """The default newsletter (no slug), or the one named; 404 for an unknown one."""
    if slug is None:
        return newsletters.ensure_default(session)
    try:
        return newsletters.get(session, slug)
    except NotFound:
        raise HTTPException(404, "There is no such newsletter.") from None


async def index(request: Request) -> Response:
    slug = request.path_params.get("slug")
    settings = settings_of(request)

    def gather(session: Session) -> dict[str, object]:
        nl = _newsletter(session, slug)
        others = [
            (o.slug, newsletters.settings_for(settings, o).list_name, newsletters.archive_path(o))
            for o in newsletters.all_(session)
            if o.id != nl.id
        ]
        return {
            "issues": published(session, nl.id),
            "name": newsletters.settings_for(settings, nl).list_name,
            "base": newsletters.archive_path(nl),
            "slug": nl.slug,
            "others": others,
        }

    return render(request, "archive.html", await db(request, gather))


async def show(request: Request) -> Response:
    slug = request.path_params.get("slug")
    try:
        key = editions.check_key(request.path_params["key"])
    except InputError:
        raise HTTPException(404, "There is no such edition.") from None

    def find(session: Session) -> Edition | None:
        nl = _newsletter(session, slug)
        return session.scalar(
            select(Edition).where(Edition.newsletter_id == nl.id, Edition.key == key)
        )

    row = await db(request, find)
    if row is None or row.status not in PUBLISHED or not row.html:
        raise HTTPException(404, f"Edition {key} has not been published.")
    return HTMLResponse(
        web_version(row.html, settings_of(request)),
        headers={
            "content-security-policy": email_csp("'none'"),
            "cache-control": "public, max-age=300",
        },
    )


async def privacy(request: Request) -> Response:
    return render(request, "privacy.html", {"contact": _contact(request)})


async def support(request: Request) -> Response:
    chosen = request.query_params.get("frequency", "")
    return render(
        request,
        "support.html",
        {
            "chosen": chosen if chosen in SUPPORT_FREQUENCIES else None,
            "frequencies": SUPPORT_FREQUENCIES,
            "contact": _contact(request),
        },
    )


def _contact(request: Request) -> str:
    settings = settings_of(request)
    return parseaddr(settings.reply_to)[1] if settings.reply_to else settings.envelope_from


async def healthz(request: Request) -> Response:
    """Liveness and database reachability, for load balancers and monitors."""
    try:
        await db(request, lambda s: s.execute(text("SELECT 1")).scalar_one())
    except Exception:  # any database failure means "not healthy"; the reason is logged
        log.exception("health check: database unreachable")
        return JSONResponse({"status": "error", "database": "unreachable"}, status_code=503)
    return JSONResponse({"status": "ok", "database": "ok"})


async def home(request: Request) -> Response:
    return RedirectResponse("/subscribe", 303)


routes = [
    Route("/", home, methods=["GET"]),
    Route("/issues/", index, methods=["GET"]),
    Route("/issues/{key}", show, methods=["GET"]),
    Route("/newsletters/{slug}/issues/", index, methods=["GET"]),
    Route("/newsletters/{slug}/issues/{key}", show, methods=["GET"]),
    Route("/privacy", privacy, methods=["GET"]),
    Route("/support", support, methods=["GET"]),
    Route("/healthz", healthz, methods=["GET"]),
]
