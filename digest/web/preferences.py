"""The preferences page every email links to: choose newsletters, or leave them all.

/preferences/{token} carries a token signed for the subscriber (not for one newsletter),
so the page needs no sign-in: the link is the proof of the mailbox, as for one-click
unsubscribe. GET shows the newsletters with the address's status in each; only a POST
changes anything (link scanners fetch, they do not submit), and a forged or garbled
token gets the invalid-link page and changes nothing.

Ticking a newsletter the reader had left subscribes them again at once: they proved the
mailbox by following the link, which is what the double opt-in asks. An address that
bounced or complained stays suppressed whatever is ticked (the page says so).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from digest.editorial import newsletters
from digest.errors import NotFound
from digest.web.context import db, settings_of
from digest.web.pages import render
from subscribers import store, subscriptions
from subscribers.model import SubscriptionStatus
from subscribers.tokens import EVERY_LIST, PREFERENCES, BadToken, verify_token

SOURCE = "preferences page (link from an email)"


@dataclass
class Choice:
    slug: str
    name: str
    subscribed: bool
    status: str  # the subscription's own status, or "" when there is none


def _subscriber_id(request: Request) -> int:
    settings = settings_of(request)
    token = request.path_params["token"]
    return verify_token(settings.secret(), PREFERENCES, token, EVERY_LIST)


def _choices(session: Session, request: Request, subscriber_id: int) -> list[Choice]:
    settings = settings_of(request)
    own = {s.newsletter_id: s.status for s in subscriptions.of_subscriber(session, subscriber_id)}
    out = []
    for nl in newsletters.all_(session):
        status = own.get(nl.id)
        out.append(
            Choice(
                nl.slug,
                newsletters.settings_for(settings, nl).list_name,
                status in (SubscriptionStatus.CONFIRMED, SubscriptionStatus.PENDING),
                str(status or ""),
            )
        )
    return out


def _page(request: Request, session: Session, subscriber_id: int, state: str) -> Response:
    from digest.web.public import mask

    row = store.get(session, subscriber_id)
    return render(
        request,
        "preferences.html",
        {
            "state": state,
            "email": mask(row.email),
            "suppressed": row.suppression,
            "choices": _choices(session, request, subscriber_id),
        },
    )


async def page(request: Request) -> Response:
    try:
        subscriber_id = _subscriber_id(request)
    except BadToken:
        return render(request, "token_invalid.html", {"what": "preferences"}, status_code=400)
    try:
        return await db(request, lambda s: _page(request, s, subscriber_id, "ask"))
    except NotFound:  # the address was erased since the email went out
        return render(request, "token_invalid.html", {"what": "preferences"}, status_code=400)


async def save(request: Request) -> Response:
    """Apply the ticked boxes, or leave every newsletter ("leave" button)."""
    form = await request.form()
    try:
        subscriber_id = _subscriber_id(request)
    except BadToken:
        return render(request, "token_invalid.html", {"what": "preferences"}, status_code=400)
    wanted = {str(v) for v in form.getlist("newsletter")}
    leave_all = form.get("action") == "leave"

    def go(session: Session) -> Response:
        store.get(session, subscriber_id)  # NotFound for an erased address
        if leave_all:
            subscriptions.unsubscribe_all(session, subscriber_id, SOURCE)
            return _page(request, session, subscriber_id, "left")
        current = {
            s.newsletter_id: s.status for s in subscriptions.of_subscriber(session, subscriber_id)
        }
        for nl in newsletters.all_(session):
            status = current.get(nl.id)
            if nl.slug in wanted and status != SubscriptionStatus.CONFIRMED:
                subscriptions.set_status(
                    session, nl.id, subscriber_id, SubscriptionStatus.CONFIRMED, SOURCE, force=True
                )
            elif nl.slug not in wanted and status in (
                SubscriptionStatus.CONFIRMED,
                SubscriptionStatus.PENDING,
            ):
                subscriptions.set_status(
                    session, nl.id, subscriber_id, SubscriptionStatus.UNSUBSCRIBED, SOURCE
                )
        return _page(request, session, subscriber_id, "saved")

    try:
        return await db(request, go)
    except NotFound:
        return render(request, "token_invalid.html", {"what": "preferences"}, status_code=400)


routes = [
    Route("/preferences/{token}", page, methods=["GET"]),
    Route("/preferences/{token}", save, methods=["POST"]),
]
