"""The public archive and the small pages every email links to.

/issues/ lists issues whose send has started (their "view in browser" links are in
inboxes from that moment on); /issues/{key} is an issue's web version, with the
personal parts left out (`digest.render.web_version`). Keys are checked with
`digest.issues.check_key`, so anything but YYYY-Www is a 404.
"""

from __future__ import annotations

import logging
from email.utils import parseaddr

from sqlalchemy import select, text
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from digest.editorial import editions
from digest.editorial.models import Issue, IssueStatus
from digest.editorial.render import SUPPORT_FREQUENCIES, web_version
from digest.errors import InputError
from digest.web.context import db, settings_of
from digest.web.pages import render
from digest.web.security import email_csp

PUBLISHED = (IssueStatus.SENDING, IssueStatus.SENT)
log = logging.getLogger("digest.web")


def published(session: Session, limit: int = 200) -> list[Issue]:
    """Issues readers may have received, newest first."""
    return list(
        session.scalars(
            select(Issue).where(Issue.status.in_(PUBLISHED)).order_by(Issue.key.desc()).limit(limit)
        )
    )


async def index(request: Request) -> Response:
    rows = await db(request, published)
    return render(request, "archive.html", {"issues": rows})


async def show(request: Request) -> Response:
    try:
        key = editions.check_key(request.path_params["key"])
    except InputError:
        raise HTTPException(404, "There is no such issue.") from None
    row = await db(request, lambda s: editions.find_issue(s, key))
    if row is None or row.status not in PUBLISHED or not row.html:
        raise HTTPException(404, f"Issue {key} has not been published.")
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
    Route("/privacy", privacy, methods=["GET"]),
    Route("/support", support, methods=["GET"]),
    Route("/healthz", healthz, methods=["GET"]),
]
