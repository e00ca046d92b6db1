"""The subscribers' pages: sign up, confirm (double opt-in) and unsubscribe.

- /subscribe answers every accepted sign-up with the same page by the same code path;
  what the address's state decides (a new row, an email, nothing) happens afterwards
  in digest.web.signup's queue, so neither words nor timing tell whether it is known.
- /confirm/{token} shows a button on GET; only the POST confirms, so link scanners
  that fetch the link subscribe nobody. The token is the proof of the mailbox, so the
  POST needs no CSRF token (a forged request would need the token itself).
- /unsubscribe/{token} is also the List-Unsubscribe URL (RFC 8058): the POST needs no
  cookie, login or CSRF token, takes any body (urlencoded or multipart
  `List-Unsubscribe=One-Click`), answers 200 without a redirect and is idempotent.
  A forged or garbled token gets a 400 page and changes nothing.
"""

from __future__ import annotations

import base64

from sqlalchemy.orm import Session
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from digest.errors import InputError
from digest.web import ratelimit, signup
from digest.web.context import db, settings_of
from digest.web.pages import render
from digest.web.security import client_address, csrf_ok
from subscribers import store
from subscribers.model import BLOCKED, Subscriber, SubscriberStatus
from subscribers.tokens import CONFIRM, UNSUBSCRIBE, BadToken, verify_token

CONSENT_SOURCE = "web sign-up, confirmed by email link"


def mask(email: str) -> str:
    """r•••@example.com: enough to recognise one's address, not to harvest it."""
    local, _, domain = email.rpartition("@")
    return f"{local[:1]}•••@{domain}"


# -- sign-up -------------------------------------------------------------------------


async def subscribe_page(request: Request) -> Response:
    return render(request, "subscribe.html", {"values": {}})


async def subscribe(request: Request) -> Response:
    form = await request.form()
    settings = settings_of(request)
    values: dict[str, str | bool] = {k: str(form.get(k) or "").strip() for k in ("name", "email")}
    values["consent"] = form.get("consent") == "yes"

    def again(message: str, field: str | None, status: int) -> Response:
        return render(
            request,
            "subscribe.html",
            {"values": values, "error": message, "error_field": field},
            status_code=status,
        )

    if not csrf_ok(request, form):
        # E.g. a sign-up box on another site: one more click here, nothing lost.
        return again("Please check your details and press Subscribe once more.", None, 403)
    try:
        email, key = store.normalise_email(str(values["email"]))
        name = store.clean_name(str(values["name"]))
    except InputError as exc:
        field = exc.field or "email"
        label = "Email address" if field == "email" else "Name"
        return again(f"{label} {str(exc).split(': ', 1)[-1]}.", field, 400)
    if not values["consent"]:
        return again("Please tick the box to agree to the privacy policy.", "consent", 400)
    secret = settings.secret()
    client = client_address(request)

    wait = await db(
        request, lambda s: ratelimit.take(s, ratelimit.SIGNUP_PER_CLIENT, client, secret)
    )
    if wait is not None:
        minutes = ratelimit.minutes(wait)
        return render(
            request,
            "subscribe.html",
            {
                "values": values,
                "error": f"Too many sign-ups from your network. Please try again in {minutes} "
                "minute(s).",
                "error_field": None,
            },
            status_code=429,
            headers={"retry-after": str(int(wait.total_seconds()))},
        )
    response = render(request, "subscribe_sent.html", {"email": email})
    response.background = BackgroundTask(request.app.state.signups.submit, email, key, name)
    return response


# -- tokens --------------------------------------------------------------------------


def _invalid(request: Request, what: str) -> Response:
    return render(request, "token_invalid.html", {"what": what}, status_code=400)


def issued_at(token: str) -> int | None:
    """The issue time inside a token (already verified): see subscribers.tokens' format."""
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    values, value, shift = [], 0, 0
    for byte in raw[:20]:
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            values.append(value)
            value, shift = 0, 0
            if len(values) == 2:
                break
    return values[1] if len(values) == 2 and values[0] % 2 else None


def _confirmable(session: Session, request: Request, token: str) -> Subscriber:
    """The subscriber a confirm link is for, or BadToken.

    For an address that unsubscribed (or bounced) since, only a link issued after
    that change counts: an old link cannot quietly bring a reader back.
    """
    settings = settings_of(request)
    subscriber_id = verify_token(settings.secret(), CONFIRM, token, settings.effective_list_id)
    row = session.get(Subscriber, subscriber_id)
    if row is None or row.status not in (*signup.MAILABLE, SubscriberStatus.CONFIRMED):
        raise BadToken()
    changed = row.status_changed_at
    if row.status in BLOCKED and changed is not None:
        issued = issued_at(token)
        if issued is None or issued <= changed.timestamp():
            raise BadToken()
    return row


async def confirm_page(request: Request) -> Response:
    token = request.path_params["token"]
    try:
        row = await db(request, lambda s: _confirmable(s, request, token))
    except BadToken:
        return _invalid(request, "confirmation")
    state = "already" if row.status == SubscriberStatus.CONFIRMED else "ask"
    return render(request, "confirm.html", {"state": state, "email": mask(row.email)})


async def confirm(request: Request) -> Response:
    token = request.path_params["token"]

    def go(session: Session) -> Subscriber:
        row = _confirmable(session, request, token)
        if row.status != SubscriberStatus.CONFIRMED:
            force = row.status in BLOCKED  # a fresh double opt-in
            store.set_status(
                session, row.id, SubscriberStatus.CONFIRMED, CONSENT_SOURCE, force=force
            )
        return row

    await request.body()
    try:
        row = await db(request, go)
    except BadToken:
        return _invalid(request, "confirmation")
    return render(request, "confirm.html", {"state": "done", "email": mask(row.email)})


def _unsubscribe_id(request: Request) -> int:
    settings = settings_of(request)
    return verify_token(
        settings.secret(),
        UNSUBSCRIBE,
        request.path_params["token"],
        settings.effective_list_id,
    )


async def unsubscribe_page(request: Request) -> Response:
    try:
        subscriber_id = _unsubscribe_id(request)
    except BadToken:
        return _invalid(request, "unsubscribe")
    row = await db(request, lambda s: s.get(Subscriber, subscriber_id))
    gone = row is None or row.status in BLOCKED
    return render(
        request,
        "unsubscribe.html",
        {"state": "already" if gone else "ask", "email": mask(row.email) if row else None},
    )


async def unsubscribe(request: Request) -> Response:
    """RFC 8058 one-click: any body, no cookie or CSRF; 200, no redirect; idempotent."""
    await request.body()
    try:
        subscriber_id = _unsubscribe_id(request)
    except BadToken:
        return _invalid(request, "unsubscribe")

    def go(session: Session) -> Subscriber | None:
        row = session.get(Subscriber, subscriber_id)
        if row is not None and row.status not in BLOCKED:
            store.set_status(session, row.id, SubscriberStatus.UNSUBSCRIBED, "unsubscribe link")
        return row

    row = await db(request, go)
    return render(
        request,
        "unsubscribe.html",
        {"state": "done", "email": mask(row.email) if row else None},
    )


routes = [
    Route("/subscribe", subscribe_page, methods=["GET"]),
    Route("/subscribe", subscribe, methods=["POST"]),
    Route("/confirm/{token}", confirm_page, methods=["GET"]),
    Route("/confirm/{token}", confirm, methods=["POST"]),
    Route("/unsubscribe/{token}", unsubscribe_page, methods=["GET"]),
    Route("/unsubscribe/{token}", unsubscribe, methods=["POST"]),
]
