"""Signing editors in and out: server-side sessions, the login page, throttling.

The session cookie carries a random 256-bit token, signed with the secret key; the
database keeps only its SHA-256, with an expiry. Signing out, changing a password or
removing an editor ends sessions at once (a signed-only cookie could not be revoked).
Without a session, desk GETs redirect to the login page and other methods get 403.
Sign-in attempts are throttled by digest.web.loginguard (docs/security.md).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Awaitable, Callable
from datetime import timedelta
from functools import wraps
from urllib.parse import quote

from sqlalchemy import delete, select
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from digest.clock import utcnow
from digest.editors import store as editors
from digest.editors.models import Editor, EditorSession
from digest.editors.store import EditorInfo
from digest.web import loginguard, ratelimit
from digest.web.context import db, settings_of
from digest.web.pages import render
from digest.web.security import client_address, cookie_name, require_csrf, set_cookie, sign, unsign

SESSION_COOKIE = "digest_session"
SESSION_LIFETIME = timedelta(hours=12)
Handler = Callable[[Request], Awaitable[Response]]


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def open_session(session: Session, editor_id: int) -> str:
    """A new session for the editor (and expired ones of anybody are cleared)."""
    now = utcnow()
    session.execute(delete(EditorSession).where(EditorSession.expires_at <= now))
    token = secrets.token_urlsafe(32)
    session.add(
        EditorSession(
            token_hash=_hash(token), editor_id=editor_id, expires_at=now + SESSION_LIFETIME
        )
    )
    session.flush()
    return token


def lookup(session: Session, token: str) -> EditorInfo | None:
    row = session.execute(
        select(Editor)
        .join(EditorSession, EditorSession.editor_id == Editor.id)
        .where(EditorSession.token_hash == _hash(token), EditorSession.expires_at > utcnow())
    ).scalar_one_or_none()
    return editors.info(row) if row is not None else None


def close_session(session: Session, token: str) -> None:
    session.execute(delete(EditorSession).where(EditorSession.token_hash == _hash(token)))


async def current_editor(request: Request) -> EditorInfo | None:
    """The signed-in editor, looked up once per request."""
    if "editor" in request.scope["state"]:
        return request.state.editor
    settings = settings_of(request)
    raw = request.cookies.get(cookie_name(settings, SESSION_COOKIE))
    token = unsign(settings.secret(), "session", raw)
    found = await db(request, lambda s: lookup(s, token)) if token else None
    request.state.editor = found
    if found is not None:
        request.state.session_token = token
    return found


def editor_required(handler: Handler) -> Handler:
    """Desk pages: GET/HEAD without a session go to the login page, anything else is 403."""

    @wraps(handler)
    async def wrapper(request: Request) -> Response:
        if await current_editor(request) is None:
            if request.method in ("GET", "HEAD"):
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"/desk/login?next={quote(target, safe='')}", 303)
            raise HTTPException(403, "Please sign in to the desk first.")
        return await handler(request)

    return wrapper


def safe_next(value: str | None) -> str:
    """Only ever redirect back into the desk (no open redirect)."""
    if value and value.startswith("/desk/") and "\\" not in value and "//" not in value:
        return value
    return "/desk/"


async def login_page(request: Request) -> Response:
    if await current_editor(request) is not None:
        return RedirectResponse(safe_next(request.query_params.get("next")), 303)
    notice = "You are signed out." if request.query_params.get("ok") == "signed-out" else None
    return render(
        request,
        "login.html",
        {"next": safe_next(request.query_params.get("next")), "name": "", "notice": notice},
    )


async def login(request: Request) -> Response:
    form = await request.form()
    require_csrf(request, form)
    settings = settings_of(request)
    secret = settings.secret()
    name = str(form.get("name") or "").strip()[:64]
    password = str(form.get("password") or "")
    target = safe_next(str(form.get("next") or ""))
    client = client_address(request)

    device = loginguard.Device.from_cookie(
        secret, request.cookies.get(cookie_name(settings, loginguard.DEVICE_COOKIE))
    )
    admission = await db(request, lambda s: loginguard.admit(s, name, client, device, secret))
    if admission.wait is not None:
        seconds = int(admission.wait.total_seconds())
        when = (
            f"{seconds} seconds"
            if seconds < 120
            else f"{ratelimit.minutes(admission.wait)} minutes"
        )
        return render(
            request,
            "login.html",
            {
                "next": target,
                "name": name,
                "error": f"Too many sign-in attempts for this name. Please wait {when} and "
                "try again.",
            },
            status_code=429,
            headers={"retry-after": str(seconds)},
        )
    async with password_checks(request):
        found = await db(
            request,
            lambda s: editors.authenticate(s, name, password) if name and password else None,
        )
    if found is None:
        return render(
            request,
            "login.html",
            {"next": target, "name": name, "error": "That name and password do not match."},
            status_code=400,
        )

    def welcome(session: Session) -> str:
        loginguard.succeeded(session, admission, name, client, device, secret)
        return open_session(session, found.id)

    token = await db(request, welcome)
    response = RedirectResponse(target, 303)
    set_cookie(
        response,
        settings,
        SESSION_COOKIE,
        sign(secret, "session", token),
        int(SESSION_LIFETIME.total_seconds()),
    )
    if device is None or device.editor_id != found.id:
        lifetime = int(loginguard.DEVICE_LIFETIME.total_seconds())
        cookie = loginguard.Device.new(found.id).cookie(secret)
        set_cookie(response, settings, loginguard.DEVICE_COOKIE, cookie, lifetime)
    return response


def password_checks(request: Request) -> asyncio.Semaphore:
    """The app's bound on concurrent argon2 checks (made on first use, in its loop)."""
    state = request.app.state
    if getattr(state, "password_checks", None) is None:
        state.password_checks = asyncio.Semaphore(loginguard.MAX_CHECKS)
    return state.password_checks


@editor_required
async def logout(request: Request) -> Response:
    form = await request.form()
    require_csrf(request, form)
    token = request.state.session_token
    await db(request, lambda s: close_session(s, token))
    response = RedirectResponse("/desk/login?ok=signed-out", 303)
    settings = settings_of(request)
    response.delete_cookie(
        cookie_name(settings, SESSION_COOKIE),
        path="/",
        secure=settings.base_url.startswith("https://"),
        httponly=True,
        samesite="lax",
    )
    return response


routes = [
    Route("/desk/login", login_page, methods=["GET"]),
    Route("/desk/login", login, methods=["POST"]),
    Route("/desk/logout", logout, methods=["POST"]),
]
