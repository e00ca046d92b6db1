"""The Starlette application: routes, error pages, security middleware, lifespan.

`create_app(settings)` is all `digest serve` and the tests need. The security
middleware wraps the whole stack (outside Starlette's error middleware), so even
a 500 page carries the security headers.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http import HTTPStatus

from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from digest.settings import Settings
from digest.store.engine import get_engine, session_scope
from digest.web import (
    archive,
    auth,
    desk,
    desk_picks,
    preferences,
    preview,
    public,
    ratelimit,
    signup,
)
from digest.web.pages import STATIC_DIR, render
from digest.web.security import SecurityMiddleware

log = logging.getLogger("digest.web")

FRIENDLY = {
    400: "That request could not be understood.",
    403: "You may not do that.",
    404: "We could not find that page.",
    405: "That page does not take this kind of request.",
}


class DigestApp(Starlette):
    """Starlette with SecurityMiddleware outermost (around the error handling too)."""

    def build_middleware_stack(self) -> ASGIApp:
        return SecurityMiddleware(super().build_middleware_stack(), self.state.settings)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = exc.status_code
    try:
        phrase = HTTPStatus(code).phrase
    except ValueError:
        phrase = "Error"
    detail = exc.detail if exc.detail and exc.detail != phrase else FRIENDLY.get(code, phrase)
    return render(
        request,
        "error.html",
        {"status": code, "title": phrase, "detail": detail},
        status_code=code,
        headers=dict(exc.headers or {}),
    )


async def server_error(request: Request, exc: Exception) -> Response:
    log.error("error on %s %s", request.method, request.url.path, exc_info=exc)
    try:
        return render(
            request,
            "error.html",
            {
                "status": 500,
                "title": "Something went wrong",
                "detail": "The error has been logged. Please try again in a moment.",
            },
            status_code=500,
        )
    except Exception:  # the error page itself failed: say it plainly
        return PlainTextResponse("Internal Server Error", status_code=500)


@asynccontextmanager
async def scheduler_hook(settings: Settings) -> AsyncIterator[None]:
    """Run the scheduler (digest.scheduling) in-process when DIGEST_SERVE_SCHEDULER
    is on: a one-process deployment. Imported only then, so the web app alone stays light."""
    if not settings.serve_scheduler:
        yield
        return
    from digest.scheduling.scheduler import scheduler_in_background

    async with scheduler_in_background(settings):
        log.info("scheduler running in-process (DIGEST_SCHEDULE=%r)", settings.schedule)
        yield


def _purge(engine: Engine) -> None:
    with session_scope(engine) as session:
        ratelimit.purge(session, ratelimit.LONGEST)


def create_app(settings: Settings, *, engine: Engine | None = None) -> Starlette:
    """The web app for `settings`; fails early (SettingsError) without a secret key."""
    settings.secret()
    engine = engine or get_engine(settings.database_url, pool_size=settings.db_pool_size)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await run_in_threadpool(_purge, engine)
        try:
            async with scheduler_hook(settings):
                yield
        finally:
            await app.state.signups.drain()

    app = DigestApp(
        routes=[
            *archive.routes,
            *public.routes,
            *preferences.routes,
            *auth.routes,
            *desk.routes,
            *desk_picks.routes,
            *preview.routes,
            Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
        ],
        exception_handlers={HTTPException: http_error, Exception: server_error},
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.signups = signup.SignupQueue(engine, settings)
    return app
