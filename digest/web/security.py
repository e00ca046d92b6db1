"""Security plumbing shared by every page: headers, body limit, CSRF, signed cookies.

- Every response gets a Content-Security-Policy without inline script, nosniff,
  no-referrer (token URLs must not leak through Referer), frame-ancestors 'none'
  (pages may tighten or, like the desk's preview documents, relax it to 'self').
- Request bodies above `MAX_BODY` are refused with 413 before a handler reads them.
- The Host header must name DIGEST_BASE_URL's host or one in DIGEST_ALLOWED_HOSTS
  (else 400); then host and scheme are replaced by the base URL's, so every URL the
  app builds (redirects, links) comes from the configuration, never from the request.
- CSRF tokens are HMACs of a per-browser value: the editor's session token when
  signed in, otherwise a random cookie (signed double-submit, OWASP's pattern).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import re
import secrets
from typing import Any
from urllib.parse import urlsplit

from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from digest.settings import Settings

MAX_BODY = 1024 * 1024
CSRF_FIELD = "csrf"
_SEED = re.compile(r"^[A-Za-z0-9_-]{43}$")

PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; object-src 'none'"
)


#: The desk's preview frames: no scripts, an opaque origin (no allow-same-origin), links
#: may open a new tab as in a mail client. Also sent as the documents' CSP `sandbox`.
PREVIEW_SANDBOX = "allow-popups allow-popups-to-escape-sandbox"


def email_csp(frame_ancestors: str, *, sandbox: bool = False) -> str:
    """For an email's HTML shown as a page: its inline styles and remote images, no script.

    `sandbox` (the desk's previews, framed by the desk's own origin) also puts the
    document in a sandbox, even if opened on its own: an email can never act as the desk.
    """
    return (
        "default-src 'none'; style-src 'unsafe-inline'; img-src https: http: data:; "
        "font-src https: data:; form-action 'none'; base-uri 'none'; "
        f"frame-ancestors {frame_ancestors}" + (f"; sandbox {PREVIEW_SANDBOX}" if sandbox else "")
    )


def is_https(settings: Settings) -> bool:
    return settings.base_url.startswith("https://")


def cookie_name(settings: Settings, base: str) -> str:
    """`__Host-` cookies (Secure, path /, no Domain) whenever the site is served over https."""
    return f"__Host-{base}" if is_https(settings) else base


def set_cookie(
    response: Response, settings: Settings, base: str, value: str, max_age: int | None
) -> None:
    response.set_cookie(
        cookie_name(settings, base),
        value,
        max_age=max_age,
        path="/",
        secure=is_https(settings),
        httponly=True,
        samesite="lax",
    )


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def mac(secret: bytes, label: str, value: str) -> str:
    """A short keyed hash of `value` for purpose `label` (URL- and cookie-safe)."""
    return _b64(hmac.new(secret, f"{label}\0{value}".encode(), hashlib.sha256).digest()[:18])


def sign(secret: bytes, label: str, value: str) -> str:
    return f"{value}.{mac(secret, label, value)}"


def unsign(secret: bytes, label: str, signed: str | None) -> str | None:
    """The value of a `sign`ed string, or None when it was tampered with."""
    if not signed or "." not in signed:
        return None
    value, _, tag = signed.rpartition(".")
    return value if hmac.compare_digest(mac(secret, label, value), tag) else None


# -- CSRF -------------------------------------------------------------------------


def _csrf_binding(request: Request) -> str:
    session_token = getattr(request.state, "session_token", None)
    if session_token:
        return "session\0" + session_token
    settings: Settings = request.app.state.settings
    seed = request.cookies.get(cookie_name(settings, "digest_csrf"), "")
    if not _SEED.match(seed):
        seed = request.scope["state"].get("csrf_new") or secrets.token_urlsafe(32)
        request.scope["state"]["csrf_new"] = seed  # SecurityMiddleware sets the cookie
    return "browser\0" + seed


def csrf_token(request: Request) -> str:
    """The token every form of this browser (or this editor session) carries."""
    return mac(request.app.state.settings.secret(), "csrf", _csrf_binding(request))


def csrf_ok(request: Request, form: Any) -> bool:
    sent = form.get(CSRF_FIELD) if form is not None else None
    return isinstance(sent, str) and hmac.compare_digest(sent, csrf_token(request))


def require_csrf(request: Request, form: Any) -> None:
    """403 unless the form carries this browser's CSRF token."""
    if not csrf_ok(request, form):
        raise HTTPException(403, "The form expired or came from another site. Please try again.")


def client_address(request: Request) -> str:
    """The client, as rate limits count it: its IPv4 address, or its IPv6 /64 (one
    subscriber line gets a whole /64 to pick addresses from). uvicorn has applied
    X-Forwarded-For from trusted proxies (DIGEST_FORWARDED_ALLOW_IPS)."""
    host = request.client.host if request.client else "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


# -- middleware --------------------------------------------------------------------


class _TooLarge(HTTPException):
    """Raised from `receive` when a streamed body passes the limit; Starlette's
    exception handling turns it into the 413 page (or we do, if it escapes)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"The form sent more than {limit // 1024} KB.")


class SecurityMiddleware:
    """Headers on every response, the body-size limit, and the CSRF cookie."""

    def __init__(self, app: ASGIApp, settings: Settings, max_body: int = MAX_BODY) -> None:
        self.app = app
        self.settings = settings
        self.max_body = max_body
        self.https = is_https(settings)
        self.csrf_cookie = cookie_name(settings, "digest_csrf")
        base = urlsplit(settings.base_url)
        self.scheme = base.scheme
        self.host = base.netloc.encode("ascii", "replace")
        self.allowed_hosts = settings.allowed_host_names

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})
        headers = [(k, v) for k, v in scope.get("headers", []) if k != b"host"]
        given = [v for k, v in scope.get("headers", []) if k == b"host"]
        if len(given) > 1 or (given and host_name(given[0]) not in self.allowed_hosts):
            await self._refuse(scope, receive, send, 400, "Unknown host", UNKNOWN_HOST)
            return
        scope["headers"] = [*headers, (b"host", self.host)]
        scope["scheme"] = self.scheme
        started = False
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body:
            await self._too_large(scope, receive, send)
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise _TooLarge(self.max_body)
            return message

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                self._add_headers(scope, MutableHeaders(scope=message))
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_headers)
        except _TooLarge:
            if started:
                raise
            await self._too_large(scope, receive, send)

    def _add_headers(self, scope: Scope, headers: MutableHeaders) -> None:
        path: str = scope.get("path", "")
        defaults = {
            "content-security-policy": PAGE_CSP,
            "x-content-type-options": "nosniff",
            "referrer-policy": "no-referrer",
            "x-frame-options": "DENY",
            "cross-origin-opener-policy": "same-origin",
            "permissions-policy": "camera=(), microphone=(), geolocation=(), payment=()",
            "cache-control": "public, max-age=3600" if path.startswith("/static/") else "no-store",
        }
        if self.https:
            defaults["strict-transport-security"] = "max-age=31536000"
        for name, value in defaults.items():
            if name not in headers:
                headers[name] = value
        seed = scope["state"].get("csrf_new")
        if seed:
            cookie = f"{self.csrf_cookie}={seed}; Path=/; HttpOnly; SameSite=Lax"
            headers.append("set-cookie", cookie + ("; Secure" if self.https else ""))

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        text = f"The form sent more than {self.max_body // 1024} KB."
        await self._refuse(scope, receive, send, 413, "Request too large", text)

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, status: int, title: str, text: str
    ) -> None:
        """A short page (not the app's templates: the request never reached the app)."""
        response = Response(
            f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}'
            f"</title></head><body><h1>{title}</h1><p>{text}</p></body></html>",
            status_code=status,
            media_type="text/html",
            headers={"connection": "close"},
        )

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                self._add_headers(scope, MutableHeaders(scope=message))
            await send(message)

        await response(scope, receive, send_with_headers)


UNKNOWN_HOST = "This server does not answer to that host name."


def host_name(value: bytes) -> str:
    """b"News.Example.com:8000" -> "news.example.com"; b"[::1]:80" -> "::1"."""
    text = value.decode("latin-1").strip().lower()
    if text.startswith("["):
        return text[1 : text.find("]")] if "]" in text else text
    name, sep, port = text.rpartition(":")
    return (name if sep and port.isdigit() else text).rstrip(".")


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
