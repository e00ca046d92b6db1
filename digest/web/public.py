"""The subscribers' pages: sign up, confirm (double opt-in) and unsubscribe.

- /subscribe answers every accepted sign-up with the same page by the same code path;
  what the address's state decides (a new row, an email, nothing) happens afterwards
  in digest.web.signup's queue, so neither words nor timing tell whether it is known.
- /confirm/{token} shows a button on GET; only the POST confirms, so link scanners
  that fetch the link subscribe nobody. The token is the proof of the mailbox, so the
  POST needs no CSRF token (a forged request would need the token itself).
- Tokens are bound to one newsletter's List-Id: confirming and unsubscribing act on that
  newsletter's subscription only (the reader's other newsletters are untouched).
- /unsubscribe/{token} is also the List-Unsubscribe URL (RFC 8058): the POST needs no
  cookie, login or CSRF token, takes any body (urlencoded or multipart
  `List-Unsubscribe=One-Click`), answers 200 without a redirect and is idempotent.
  A forged or garbled token gets a 400 page and changes nothing.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from sqlalchemy.orm import Session
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from digest.editorial import newsletters
from digest.errors import InputError, NotFound
from digest.web import ratelimit, signup
from digest.web.context import db, settings_of
from digest.web.pages import render
from digest.web.security import client_address, csrf_ok
from subscribers import store, subscriptions
from subscribers.model import BLOCKED, SubscriberStatus, SubscriptionStatus, Suppression
from subscribers.subscriptions import Member
from subscribers.tokens import (
    CONFIRM,
    EVERY_LIST,
    PREFERENCES,
    UNSUBSCRIBE,
    BadToken,
    make_token,
    verify_any,
)

CONSENT_SOURCE = "web sign-up, confirmed by email link"


def mask(email: str) -> str:
    """r•••@example.com: enough to recognise one's address, not to harvest it."""
    local, _, domain = email.rpartition("@")
    return f"{local[:1]}•••@{domain}"


# -- sign-up -------------------------------------------------------------------------


@dataclass
class Offer:
    """A newsletter the sign-up form offers."""

    id: int
    slug: str
    name: str
    checked: bool


def _offers(
    session: Session, request: Request, chosen: set[str], *, posted: bool = False
) -> list[Offer]:
    """The newsletters on offer; ticked: those `chosen`, or on a fresh form the one in
    ?newsletter=SLUG, else the default. With one newsletter it is always ticked."""
    settings = settings_of(request)
    rows = newsletters.all_(session) or [newsletters.ensure_default(session)]
    if len(rows) == 1:
        chosen = {rows[0].slug}
    elif not chosen and not posted:
        wanted = request.query_params.get("newsletter")
        chosen = {wanted} if wanted and any(n.slug == wanted for n in rows) else set()
        chosen = chosen or {next((n.slug for n in rows if n.is_default), rows[0].slug)}
    return [
        Offer(n.id, n.slug, newsletters.settings_for(settings, n).list_name, n.slug in chosen)
        for n in rows
    ]


async def subscribe_page(request: Request) -> Response:
    offers = await db(request, lambda s: _offers(s, request, set()))
    return render(request, "subscribe.html", {"values": {}, "offers": offers})


async def subscribe(request: Request) -> Response:
    form = await request.form()
    settings = settings_of(request)
    values: dict[str, str | bool] = {k: str(form.get(k) or "").strip() for k in ("name", "email")}
    values["consent"] = form.get("consent") == "yes"
    chosen = {str(v)[:40] for v in form.getlist("newsletter")}
    offers = await db(request, lambda s: _offers(s, request, chosen, posted=True))

    def again(message: str, field: str | None, status: int) -> Response:
        return render(
            request,
            "subscribe.html",
            {"values": values, "offers": offers, "error": message, "error_field": field},
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
    ids = tuple(o.id for o in offers if o.checked)
    if not ids:
        return again("Please choose at least one newsletter.", "newsletter", 400)
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
                "offers": offers,
                "error": f"Too many sign-ups from your network. Please try again in {minutes} "
                "minute(s).",
                "error_field": None,
            },
            status_code=429,
            headers={"retry-after": str(int(wait.total_seconds()))},
        )
    response = render(request, "subscribe_sent.html", {"email": email})
    response.background = BackgroundTask(request.app.state.signups.submit, email, key, name, ids)
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


def _newsletter_of(session: Session, request: Request, purpose: str, token: str) -> tuple[int, int]:
    """(subscriber id, newsletter id) of a token bound to one newsletter's List-Id."""
    settings = settings_of(request)
    return verify_any(settings.secret(), purpose, token, newsletters.list_ids(session, settings))


def _confirmable(session: Session, request: Request, token: str) -> tuple[Member, str]:
    """The subscription a confirm link is for, and its newsletter's name; or BadToken.

    For an address that left the newsletter (or bounced) since, only a link issued after
    that change counts: an old link cannot quietly bring a reader back.
    """
    subscriber_id, newsletter_id = _newsletter_of(session, request, CONFIRM, token)
    try:
        member = subscriptions.member(session, newsletter_id, subscriber_id)
    except NotFound:
        raise BadToken() from None
    if member.status not in (*signup.MAILABLE, SubscriberStatus.CONFIRMED):
        raise BadToken()
    changed = [
        t
        for t in (
            member.subscription.status_changed_at if member.subscription else None,
            member.subscriber.suppressed_at,
        )
        if t is not None
    ]
    if member.status in BLOCKED and changed:
        issued = issued_at(token)
        if issued is None or issued <= max(changed).timestamp():
            raise BadToken()
    nl = newsletters.get_by_id(session, newsletter_id)
    return member, newsletters.settings_for(settings_of(request), nl).list_name


async def confirm_page(request: Request) -> Response:
    token = request.path_params["token"]
    try:
        member, name = await db(request, lambda s: _confirmable(s, request, token))
    except BadToken:
        return _invalid(request, "confirmation")
    state = "already" if member.status == SubscriberStatus.CONFIRMED else "ask"
    return render(
        request, "confirm.html", {"state": state, "email": mask(member.email), "name": name}
    )


async def confirm(request: Request) -> Response:
    token = request.path_params["token"]

    def go(session: Session) -> tuple[Member, str]:
        member, name = _confirmable(session, request, token)
        if member.status != SubscriberStatus.CONFIRMED:
            sub = member.subscriber
            if sub.suppression == Suppression.BOUNCED:  # the mailbox works again
                sub.suppression, sub.suppressed_at = None, None
                sub.bounce_count = 0
            force = member.status in BLOCKED  # a fresh double opt-in
            nid = member.subscription.newsletter_id if member.subscription else 0
            subscriptions.set_status(
                session, nid, sub.id, SubscriptionStatus.CONFIRMED, CONSENT_SOURCE, force=force
            )
        return member, name

    await request.body()
    try:
        member, name = await db(request, go)
    except BadToken:
        return _invalid(request, "confirmation")
    return render(
        request, "confirm.html", {"state": "done", "email": mask(member.email), "name": name}
    )


def _unsubscribe_target(session: Session, request: Request) -> tuple[Member, str, str]:
    """The subscription a one-click link leaves, its newsletter's name and the reader's
    preferences page; BadToken for a forged or garbled link."""
    settings = settings_of(request)
    token = request.path_params["token"]
    subscriber_id, newsletter_id = _newsletter_of(session, request, UNSUBSCRIBE, token)
    try:
        member = subscriptions.member(session, newsletter_id, subscriber_id)
    except NotFound:  # erased since: nothing to unsubscribe, and nothing to show
        raise BadToken() from None
    nl = newsletters.get_by_id(session, newsletter_id)
    prefs = make_token(settings.secret(), PREFERENCES, subscriber_id, EVERY_LIST)
    name = newsletters.settings_for(settings, nl).list_name
    return member, name, f"/preferences/{prefs}"


async def unsubscribe_page(request: Request) -> Response:
    try:
        member, name, prefs = await db(request, lambda s: _unsubscribe_target(s, request))
    except BadToken:
        return _invalid(request, "unsubscribe")
    gone = member.status in BLOCKED
    return render(
        request,
        "unsubscribe.html",
        {
            "state": "already" if gone else "ask",
            "email": mask(member.email),
            "name": name,
            "preferences": prefs,
        },
    )


async def unsubscribe(request: Request) -> Response:
    """RFC 8058 one-click: any body, no cookie or CSRF; 200, no redirect; idempotent.

    It leaves the newsletter the message came from, and no other.
    """
    await request.body()

    def go(session: Session) -> tuple[Member, str, str]:
        member, name, prefs = _unsubscribe_target(session, request)
        sub = member.subscription
        if sub is not None and sub.status != SubscriptionStatus.UNSUBSCRIBED:
            subscriptions.set_status(
                session,
                sub.newsletter_id,
                member.subscriber.id,
                SubscriptionStatus.UNSUBSCRIBED,
                "unsubscribe link",
            )
        return member, name, prefs

    try:
        member, name, prefs = await db(request, go)
    except BadToken:
        return _invalid(request, "unsubscribe")
    return render(
        request,
        "unsubscribe.html",
        {"state": "done", "email": mask(member.email), "name": name, "preferences": prefs},
    )


routes = [
    Route("/subscribe", subscribe_page, methods=["GET"]),
    Route("/subscribe", subscribe, methods=["POST"]),
    Route("/confirm/{token}", confirm_page, methods=["GET"]),
    Route("/confirm/{token}", confirm, methods=["POST"]),
    Route("/unsubscribe/{token}", unsubscribe_page, methods=["GET"]),
    Route("/unsubscribe/{token}", unsubscribe, methods=["POST"]),
]
