"""The API as one ASGI app mounted at /api/v1: every declared operation, the OpenAPI
document, JSON errors for unknown paths and methods, and CORS only when configured
(DIGEST_API_CORS_ORIGINS). Bearer keys, no cookies: the desk's CSRF does not apply."""

from __future__ import annotations

import logging

from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from digest.api import editions, newsletters, picks, subscribers  # noqa: F401 - declare routes
from digest.api.spec import OPERATIONS, PREFIX, ApiError, document, endpoint, error_response
from digest.settings import Settings

log = logging.getLogger("digest.api")


async def openapi(request: Request) -> Response:
    return JSONResponse(document(request.app.state.settings))


async def server_error(request: Request, exc: Exception) -> Response:
    log.error("API error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(ApiError(500, "something went wrong; the error has been logged"))


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    messages = {404: "no such API path", 405: "this path does not take that method"}
    message = messages.get(exc.status_code, str(exc.detail))
    return error_response(ApiError(exc.status_code, message, headers=dict(exc.headers or {})))


def app(settings: Settings) -> Starlette:
    """The API application (its state is filled by the parent app's)."""
    routes = [Route("/openapi.json", openapi, methods=["GET"])]
    by_path: dict[str, list] = {}
    for op in OPERATIONS:
        by_path.setdefault(op.path, []).append(op)
    for path, ops in by_path.items():
        for op in ops:
            routes.append(Route(path, endpoint(op), methods=[op.method]))
    middleware = []
    if settings.api_cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=settings.api_cors_origins,
                allow_methods=["GET", "POST", "PATCH", "DELETE"],
                allow_headers=["Authorization", "Content-Type"],
                expose_headers=["Location", "Retry-After"],
                max_age=600,
            )
        )
    return Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={HTTPException: http_error, Exception: server_error},
    )


def mount(settings: Settings, engine: Engine) -> Mount:
    """The API mounted at /api/v1, sharing the web app's settings and engine."""
    api = app(settings)
    api.state.settings, api.state.engine = settings, engine
    return Mount(PREFIX, app=api, name="api")
