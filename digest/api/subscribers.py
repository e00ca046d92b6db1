"""/api/v1/subscribers: sign-ups from other systems, look-ups and data requests.

POST starts the double opt-in exactly as the sign-up page does (the same confirmation
email, the same per-address limit), unless `"confirmed": true` records consent given
elsewhere - which needs a `consent_source` saying where. Addresses erased at their
owner's request are refused (409). DELETE erases the person everywhere (digest.privacy),
GET .../export gives everything stored about them; both cover every newsletter, so they
need a key that is not limited to one.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from digest.api.picks import validated
from digest.api.schemas import (
    EraseOut,
    PersonExport,
    SubscribeOut,
    SubscriberIn,
    SubscriberOut,
    SubscriptionOut,
)
from digest.api.spec import NEWSLETTER, PREFIX, ApiError, Call, Reply, operation
from digest.editorial import newsletters
from digest.errors import InputError
from digest.privacy import erase, export
from digest.web import signup
from subscribers import erasures, store, subscriptions
from subscribers.model import Subscriber, SubscriberStatus

TAG = "subscribers"
EMAIL = "a path segment: the address, percent-encoded"


def _address(call: Call) -> tuple[str, str]:
    try:
        return store.normalise_email(str(call.path("email")))
    except InputError as exc:
        raise ApiError(422, exc.message.split(": ", 1)[-1], "email") from None


@operation(
    "POST",
    "/subscribers",
    summary="Subscribe an address",
    scope="subscribers",
    tag=TAG,
    ok=201,
    answer=SubscribeOut,
    body=SubscriberIn,
    errors=(200, 409),
    example={"email": "reader@example.org", "name": "Olga"},
)
async def subscribe(call: Call) -> Reply:
    """201 when the address is new to the newsletter, 200 when it was there already.
    A pending (or unsubscribed, or bounced) address is sent the confirmation email, as
    from the sign-up page; it becomes confirmed when its owner clicks. With
    `"confirmed": true` and a `consent_source` it is confirmed at once. An address that
    complained, or was erased at its owner's request, is refused (409)."""
    wanted = validated(SubscriberIn, call.body)
    if wanted.confirmed and not (wanted.consent_source or "").strip():
        raise ApiError(
            422, "say where consent was given (e.g. 'CMS sign-up form')", "consent_source"
        )
    secret = call.settings.secret()
    source = f"api:{call.caller.name}"

    def go(session: Session) -> tuple[SubscribeOut, bool, Any]:
        nl = call.newsletter(session)
        address, key = store.normalise_email(wanted.email)
        erasures.check(session, secret, key)
        before = subscriptions.find(session, nl.id, address)
        existed = before is not None and before.subscription is not None
        if before is not None and before.status == SubscriberStatus.COMPLAINED:
            raise ApiError(409, "this address reported the newsletter as spam", "email")
        if wanted.confirmed:
            if before is not None and before.status == SubscriberStatus.UNSUBSCRIBED:
                raise ApiError(
                    409,
                    "this address unsubscribed; only its owner can come back (POST without "
                    "confirmed sends them a confirmation email)",
                    "email",
                )
            member = subscriptions.add(
                session,
                nl.id,
                address,
                wanted.name,
                status="confirmed",
                source=source,
                attributes=wanted.attributes,
                secret=secret,
            )
            assert member.subscription is not None
            if member.subscription.consent_source == source:
                given = f"{wanted.consent_source} (via API key {call.caller.name})"
                member.subscription.consent_source = given[:500]
            mail_to = None
        else:
            if not existed:
                subscriptions.add(
                    session,
                    nl.id,
                    address,
                    wanted.name,
                    status="pending",
                    source=source,
                    attributes=wanted.attributes,
                    secret=secret,
                )
            mail_to = signup.record(session, secret, address, key, wanted.name, nl.id)
            found = subscriptions.find(session, nl.id, address)
            assert found is not None
            member = found
        own = newsletters.settings_for(call.settings, nl)
        view = newsletters.view(call.settings, nl).as_dict()
        out = SubscribeOut(
            email=member.email,
            newsletter=nl.slug,
            status=str(member.status),
            confirmation_sent=mail_to is not None,
        )
        return out, existed, (own, view, mail_to)

    try:
        out, existed, (own, view, mail_to) = await call.db(go)
    except erasures.Erased as exc:
        raise ApiError(409, exc.message, "email") from None
    if mail_to is not None:
        out.confirmation_sent = await signup.send_confirmation(own, mail_to[0], mail_to[1], view)
    location = f"{PREFIX}/subscribers/{out.email}"
    return Reply(200 if existed else 201, out, {"Location": location})


def subscriber_out(
    session: Session, call: Call, row: Subscriber, only: int | None
) -> SubscriberOut:
    """The address with its subscriptions (to newsletter `only`, when given)."""
    subs = []
    for sub in subscriptions.of_subscriber(session, row.id):
        if only not in (None, sub.newsletter_id):
            continue
        subs.append(
            SubscriptionOut(
                newsletter=newsletters.get_by_id(session, sub.newsletter_id).slug,
                status=str(sub.status),
                source=sub.source,
                consent_at=sub.consent_at,
                consent_source=sub.consent_source,
                created_at=sub.created_at,
                status_changed_at=sub.status_changed_at,
            )
        )
    return SubscriberOut(
        email=row.email,
        name=row.name,
        attributes={str(k): str(v) for k, v in (row.attributes or {}).items()},
        suppression=str(row.suppression) if row.suppression else None,
        created_at=row.created_at,
        subscriptions=subs,
    )


@operation(
    "GET",
    "/subscribers/{email}",
    summary="Look up an address",
    scope="subscribers",
    tag=TAG,
    answer=SubscriberOut,
    errors=(422,),
)
async def get_subscriber(call: Call) -> Reply:
    """The address, its suppression (bounced or complained) and its subscriptions with
    their consent: to every newsletter, or to the one in ?newsletter= (a key limited to one
    newsletter sees that one only; 404 when the address has no subscription to it)."""
    _address_, key = _address(call)

    def go(session: Session) -> SubscriberOut:
        only = call.caller.newsletter_id
        if call.query("newsletter"):
            only = call.newsletter(session).id
        row = store.get_by_email(session, key)
        if row is None:
            raise ApiError(404, "no subscriber with this address", "email")
        out = subscriber_out(session, call, row, only)
        if only is not None and not out.subscriptions:
            raise ApiError(404, "no subscriber with this address", "email")
        return out

    return Reply(200, await call.db(go))


@operation(
    "DELETE",
    "/subscribers/{email}",
    summary="Erase an address everywhere",
    scope="subscribers",
    tag=TAG,
    answer=EraseOut,
    errors=(422,),
    params=(NEWSLETTER,),
)
async def erase_subscriber(call: Call) -> Reply:
    """GDPR article 17: removes the address from every newsletter and everything stored
    about it; the ledger keeps anonymous counts; a keyed hash on the erasure list stops any
    later import, sign-up or API call from adding it again. Idempotent (`found` says
    whether anything was stored). Needs a key for every newsletter."""
    call.every_newsletter()
    _address(call)

    def go(session: Session) -> EraseOut:
        done = erase.person(
            session, call.settings, str(call.path("email")), f"api:{call.caller.name}"
        )
        return EraseOut(email=done.email, found=done.found, removed=done.removed)

    return Reply(200, await call.db(go))


@operation(
    "GET",
    "/subscribers/{email}/export",
    summary="Everything stored about an address",
    scope="subscribers",
    tag=TAG,
    answer=PersonExport,
    errors=(422,),
)
async def export_subscriber(call: Call) -> Reply:
    """GDPR article 15: the subscriber, subscriptions with consent times and sources,
    delivery history, bounces and webhook events about them. Needs a key for every
    newsletter."""
    call.every_newsletter()
    _address(call)

    def go(session: Session) -> PersonExport:
        return PersonExport.model_validate(
            export.person(session, call.settings, str(call.path("email")))
        )

    return Reply(200, await call.db(go))
