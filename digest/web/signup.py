"""The double opt-in email: rendered from templates/confirm.*.j2 and sent through the
configured transport, with working one-click List-Unsubscribe headers.

It never repeats what was typed into the form's name field (greeting or To header),
so the sign-up form cannot be used to send strangers a message of one's choosing.
"""

from __future__ import annotations

import logging

from digest.clock import utcnow
from digest.delivery.message import MessageTemplate, Recipient
from digest.delivery.transports import make_transport
from digest.delivery.transports.base import Outbound, Outcome
from digest.editorial.render import render_confirmation
from digest.errors import DigestError
from digest.settings import Settings
from subscribers.addresses import ascii_address, needs_smtputf8
from subscribers.tokens import CONFIRM, UNSUBSCRIBE, make_token

log = logging.getLogger("digest.web.signup")


def confirm_url(settings: Settings, subscriber_id: int) -> str:
    token = make_token(settings.secret(), CONFIRM, subscriber_id, settings.effective_list_id)
    return f"{settings.base_url}/confirm/{token}"


def subject(settings: Settings) -> str:
    return f"Confirm your subscription to {settings.list_name}"


def confirmation_message(settings: Settings, subscriber_id: int, email: str) -> bytes:
    """The complete confirmation email for one address (SMTP-ready bytes)."""
    from digest.delivery.dkim import signer_for

    rendered = render_confirmation(settings, confirm_url(settings, subscriber_id), "")
    template = MessageTemplate(
        rendered,
        settings=settings,
        issue_key="confirm",
        subject=subject(settings),
        date=utcnow(),
        signer=signer_for(settings),
    )
    unsubscribe = make_token(
        settings.secret(), UNSUBSCRIBE, subscriber_id, settings.effective_list_id
    )
    return template.build(Recipient(subscriber_id, email, "", unsubscribe))


async def send_confirmation(settings: Settings, subscriber_id: int, email: str) -> bool:
    """Send it; problems are logged (the visitor already has their answer page)."""
    # An IDN domain goes as its A-label; only a non-ASCII local part needs SMTPUTF8.
    utf8 = needs_smtputf8(email)
    wire = email if utf8 else ascii_address(email)
    try:
        data = confirmation_message(settings, subscriber_id, wire)
        message = Outbound(settings.envelope_from, wire, data, smtputf8=utf8)
        async with make_transport(settings, concurrency=1) as transport:
            result = await transport.send(message)
    except DigestError as exc:  # no transport, or a broken DKIM set-up
        log.error("confirmation email for subscriber %s not sent: %s", subscriber_id, exc)
        return False
    if result.outcome is not Outcome.SENT:
        log.warning(
            "confirmation email for subscriber %s %s: %s %s",
            subscriber_id,
            result.outcome.value,
            result.code or "",
            result.reply,
        )
        return False
    log.info("confirmation email sent to subscriber %s", subscriber_id)
    return True
