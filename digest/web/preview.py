"""An issue on the desk: the preview, the preflight, test sends and delivery progress.

The preview is the message a subscriber gets: `campaign.message_for` builds the
complete MIME message for a sample reader (their greeting and unsubscribe link spliced
in, exactly as the sender does), and the frames show that message's HTML part, byte
for byte, served from this origin with frame-ancestors 'self'. Opening the preview
builds the issue being prepared with `campaign.build` (freezing is redone until the
send starts) and never starts a send.
"""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from digest.delivery import campaign, ledger, preflight
from digest.delivery.models import DeliveryStatus
from digest.delivery.transports import make_transport
from digest.delivery.transports.base import Outcome
from digest.editorial import editions
from digest.editorial.models import OPEN, PUBLISHED, Edition, EditionStatus
from digest.errors import DigestError, InputError, NotFound, StateError, TransportError
from digest.settings import Settings
from digest.store.engine import session_scope
from digest.web import ratelimit
from digest.web.auth import editor_required
from digest.web.context import db, engine_of, settings_of
from digest.web.desk import slug_of
from digest.web.pages import render
from digest.web.security import email_csp, require_csrf
from subscribers.addresses import normalise_email

MAX_TEST_ADDRESSES = 10
_DARK_MEDIA = re.compile(r"@media\s*\(\s*prefers-color-scheme\s*:\s*dark\s*\)", re.IGNORECASE)
_SPLIT = re.compile(r"[\s,;]+")


@dataclass
class Preview:
    """The sample subscriber's message, taken apart for display."""

    html: str
    text: str
    headers: list[tuple[str, str]]
    size: int


def sample_message(settings: Settings, issue: Edition) -> EmailMessage:
    email_addr, name = campaign.SAMPLE_RECIPIENT
    raw = campaign.message_for(settings, issue, email_addr, name)
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value,unused-ignore]


def take_apart(msg: EmailMessage, size: int) -> Preview:
    html = msg.get_body(("html",))
    text = msg.get_body(("plain",))
    shown = ("Subject", "From", "To", "List-Unsubscribe", "List-Unsubscribe-Post", "List-Id")
    return Preview(
        html=html.get_content() if html is not None else "",
        text=text.get_content() if text is not None else "",
        headers=[(h, str(msg[h])) for h in shown if msg[h] is not None],
        size=size,
    )


def dark_variant(html: str) -> str:
    """The same document with its dark-mode rules always on, as dark-mode clients apply them."""
    return _DARK_MEDIA.sub("@media all", html)


def _key(request: Request) -> str:
    try:
        return editions.check_key(request.path_params["key"])
    except InputError:
        raise HTTPException(404, "No such edition.") from None


def _query(request: Request) -> str:
    """`?newsletter=SLUG` for links that must stay on the same newsletter."""
    slug = slug_of(request)
    return f"?newsletter={slug}" if slug and re.fullmatch(r"[a-z0-9-]{1,40}", slug) else ""


def _target(request: Request, key: str) -> campaign.Target:
    """The newsletter (?newsletter=, else the default) and its edition `key`; 404 if none."""
    settings = settings_of(request)
    with session_scope(engine_of(request)) as session:
        try:
            return campaign.target(session, settings, slug_of(request), key)
        except NotFound as exc:
            raise HTTPException(404, str(exc)) from None


def _load(
    request: Request, key: str, *, build: bool
) -> tuple[Edition | None, Settings, str | None]:
    """The edition (rendered first if it is still open and `build`), its newsletter's
    settings, and why it cannot be shown (None when it can)."""
    t = _target(request, key)
    issue = t.edition
    if build and issue.status in OPEN:
        try:
            issue = campaign.build(
                engine_of(request), settings_of(request), t.newsletter.slug, key
            ).edition
        except StateError as exc:
            return issue, t.settings, str(exc).replace("`digest picks add`", "the desk")
    if not issue.html:
        return issue, t.settings, f"Edition {key} has not been built yet."
    return issue, t.settings, None


def _progress(request: Request, issue: Edition | None) -> dict[str, Any] | None:
    if issue is None or issue.status not in PUBLISHED:
        return None
    with session_scope(engine_of(request)) as session:
        return progress_data(session, issue, _query(request))


async def _issue_page(
    request: Request,
    key: str,
    *,
    results: list[tuple[str, Any]] | None = None,
    error: str | None = None,
    to: str = "",
    status_code: int = 200,
) -> Response:
    def gather() -> dict[str, Any]:
        issue, settings, problem = _load(request, key, build=True)
        out: dict[str, Any] = {"issue": issue, "problem": problem, "list_name": settings.list_name}
        out["progress"] = _progress(request, issue)
        if problem is None and issue is not None:
            try:
                msg = sample_message(settings, issue)
            except DigestError as exc:  # e.g. a broken DKIM set-up: say so, show the rest
                out["problem"] = str(exc)
            else:
                out["preview"] = take_apart(msg, len(msg.as_bytes()))
            out["report"] = preflight.check_issue(issue, settings)
        return out

    data = await run_in_threadpool(gather)
    editor = request.state.editor
    return render(
        request,
        "issue.html",
        {
            "key": key,
            "q": _query(request),
            **data,
            "preview": data.get("preview"),
            "report": data.get("report"),
            "results": results,
            "error": error,
            "to": to or editor.email,
            "sample": campaign.SAMPLE_RECIPIENT,
            "max_test": MAX_TEST_ADDRESSES,
        },
        status_code=status_code,
    )


@editor_required
async def issue_page(request: Request) -> Response:
    return await _issue_page(request, _key(request))


def _document(request: Request, *, dark: bool) -> Response:
    issue, settings, problem = _load(request, _key(request), build=False)
    if problem is not None or issue is None:
        raise HTTPException(404, problem or "No such edition.")
    try:
        html = take_apart(sample_message(settings, issue), 0).html
    except DigestError as exc:
        raise HTTPException(409, str(exc)) from None
    return HTMLResponse(
        dark_variant(html) if dark else html,
        headers={
            "content-security-policy": email_csp("'self'", sandbox=True),
            "x-frame-options": "SAMEORIGIN",
        },
    )


@editor_required
async def email_html(request: Request) -> Response:
    return await run_in_threadpool(_document, request, dark=False)


@editor_required
async def email_dark(request: Request) -> Response:
    return await run_in_threadpool(_document, request, dark=True)


def addresses(raw: str) -> list[str]:
    found = [a for a in _SPLIT.split(raw) if a]
    if not found:
        raise InputError("enter at least one email address", field="to")
    if len(found) > MAX_TEST_ADDRESSES:
        raise InputError(f"at most {MAX_TEST_ADDRESSES} addresses at a time", field="to")
    for address in found:  # all checked before the mail server is contacted
        try:
            normalise_email(address)
        except InputError as exc:
            raise InputError(
                f"{address[:80]!r} {str(exc).split(': ', 1)[-1]}", field="to"
            ) from None
    return found


@editor_required
async def test_send(request: Request) -> Response:
    form = await request.form()
    require_csrf(request, form)
    key = _key(request)
    settings = settings_of(request)
    raw = str(form.get("to") or "")
    editor = request.state.editor
    try:
        targets = addresses(raw)
        secret = settings.secret()
        wait = await db(
            request,
            lambda s: ratelimit.take(
                s, ratelimit.TEST_SEND_PER_EDITOR, str(editor.id), secret, count=len(targets)
            ),
        )
        if wait is not None:
            limit = ratelimit.TEST_SEND_PER_EDITOR
            return await _issue_page(
                request,
                key,
                error=f"At most {limit.count} test recipients an hour per editor; try again in "
                f"{ratelimit.minutes(wait)} minute(s).",
                to=raw,
                status_code=429,
            )
        issue, own, problem = await run_in_threadpool(lambda: _load(request, key, build=True))
        if problem is not None or issue is None:
            raise StateError(problem or f"There is no edition {key}.")
        transport = make_transport(own, concurrency=1)
        results = await campaign.test_send(own, issue, targets, transport)
    except TransportError as exc:
        return await _issue_page(
            request, key, error=f"The mail server could not be used: {exc}", to=raw, status_code=502
        )
    except DigestError as exc:
        status = 409 if isinstance(exc, StateError) else 400
        return await _issue_page(request, key, error=str(exc), to=raw, status_code=status)
    failed = any(res.outcome is not Outcome.SENT for _, res in results)
    return await _issue_page(
        request, key, results=results, to=raw, status_code=502 if failed else 200
    )


def progress_data(session: Session, issue: Edition, q: str = "") -> dict[str, Any]:
    """Delivery counts of one edition, for the progress page and its JSON twin."""
    counts = ledger.counts(session, issue.id)
    total = sum(counts.values())
    done = (
        counts[DeliveryStatus.SENT] + counts[DeliveryStatus.FAILED] + counts[DeliveryStatus.SKIPPED]
    )
    return {
        "key": issue.key,
        "status": issue.status,
        "counts": counts,
        "total": total,
        "done": done,
        "percent": round(100 * done / total, 1)
        if total
        else (100.0 if issue.status == EditionStatus.SENT else 0),
        "finished": issue.status == EditionStatus.SENT,
        "sending": issue.status == EditionStatus.SENDING,
        "paused": issue.paused_at is not None,
        "q": q,
    }


def _progress_of(request: Request) -> dict[str, Any]:
    key, q = _key(request), _query(request)
    t = _target(request, key)
    with session_scope(engine_of(request)) as session:
        return progress_data(session, session.merge(t.edition), q)


@editor_required
async def progress_page(request: Request) -> Response:
    data = await run_in_threadpool(_progress_of, request)
    return render(request, "progress.html", {"p": data})


@editor_required
async def progress_json(request: Request) -> Response:
    data = await run_in_threadpool(_progress_of, request)
    return JSONResponse({k: v for k, v in data.items() if k != "q"})


routes = [
    Route("/desk/issues/{key}", issue_page, methods=["GET"]),
    Route("/desk/issues/{key}/email.html", email_html, methods=["GET"]),
    Route("/desk/issues/{key}/email-dark.html", email_dark, methods=["GET"]),
    Route("/desk/issues/{key}/test", test_send, methods=["POST"]),
    Route("/desk/issues/{key}/progress", progress_page, methods=["GET"]),
    Route("/desk/issues/{key}/progress.json", progress_json, methods=["GET"]),
]
