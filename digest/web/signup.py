"""Sign-ups after the answer: recording the address and the double opt-in email.

`/subscribe` answers every accepted form the same way and at once, then hands the
address to the app's `SignupQueue`. Whether the address was new, pending, confirmed or
blocked decides what happens here (a row, an email, nothing) - work a visitor cannot
time, because their answer was sent before it began and it runs apart from their
connection (not as a response's background task, which would delay the next request
on a kept-alive connection).

The email is rendered from templates/confirm.*.j2 and sent through the configured
transport, with working one-click List-Unsubscribe headers. It never repeats what was
typed into the form's name field (greeting or To header), so the sign-up form cannot be
used to send strangers a message of one's choosing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from digest.clock import utcnow
from digest.delivery.message import MessageTemplate, Recipient
from digest.delivery.transports import make_transport
from digest.delivery.transports.base import Outbound, Outcome
from digest.editorial import newsletters
from digest.editorial.render import render_confirmation
from digest.errors import DigestError
from digest.settings import Settings
from digest.store import throttle
from digest.store.engine import session_scope
from subscribers import subscriptions
from subscribers.addresses import ascii_address, needs_smtputf8
from subscribers.model import SubscriberStatus
from subscribers.tokens import CONFIRM, UNSUBSCRIBE, make_token

log = logging.getLogger("digest.web.signup")

#: Statuses that get a confirmation email on sign-up (for that newsletter). Confirmed
#: readers need none; an address that reported us as spam is never mailed again from a
#: web form. A bounced address may confirm again: it proves the mailbox works now.
MAILABLE = (SubscriberStatus.PENDING, SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED)
#: Confirmation emails per address: the form cannot be used to flood one mailbox.
CONFIRM_MAIL_PER_ADDRESS = throttle.Limit("confirm-mail", 3, timedelta(hours=24))
QUEUE_SIZE = 1000
#: A sign-up is handled no sooner than this after its answer went out, so its work
#: never overlaps the moment its own answer is read (even on a busy host).
SETTLE = 0.25


def confirm_url(settings: Settings, subscriber_id: int) -> str:
    token = make_token(settings.secret(), CONFIRM, subscriber_id, settings.effective_list_id)
    return f"{settings.base_url}/confirm/{token}"


def subject(settings: Settings) -> str:
    return f"Confirm your subscription to {settings.list_name}"


def confirmation_message(
    settings: Settings, subscriber_id: int, email: str, newsletter: dict[str, Any] | None = None
) -> bytes:
    """The complete confirmation email for one address (SMTP-ready bytes).

    `settings` are the newsletter's (digest.editorial.newsletters.settings_for): its
    sender, name and List-Id, to which the confirm and unsubscribe tokens are bound.
    """
    from digest.delivery.dkim import signer_for

    rendered = render_confirmation(settings, confirm_url(settings, subscriber_id), "", newsletter)
    template = MessageTemplate(
        rendered,
        settings=settings,
        issue_key="confirm",
        subject=subject(settings),
        date=utcnow(),
        signer=signer_for(settings),
        language=str((newsletter or {}).get("language") or "en"),
    )
    unsubscribe = make_token(
        settings.secret(), UNSUBSCRIBE, subscriber_id, settings.effective_list_id
    )
    return template.build(Recipient(subscriber_id, email, "", unsubscribe))


async def send_confirmation(
    settings: Settings, subscriber_id: int, email: str, newsletter: dict[str, Any] | None = None
) -> bool:
    """Send it; problems are logged (the visitor already has their answer page)."""
    # An IDN domain goes as its A-label; only a non-ASCII local part needs SMTPUTF8.
    utf8 = needs_smtputf8(email)
    wire = email if utf8 else ascii_address(email)
    try:
        data = confirmation_message(settings, subscriber_id, wire, newsletter)
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


def record(
    session: Session, secret: bytes, email: str, key: str, name: str, newsletter_id: int
) -> tuple[int, str] | None:
    """Add the address to the newsletter (pending) unless it is there already; the (id,
    address) to send that newsletter's confirmation to, if any."""
    member = subscriptions.find(session, newsletter_id, email)
    if member is None or member.subscription is None:
        member = subscriptions.add(
            session, newsletter_id, email, name, status="pending", source="web sign-up"
        )
    if member.status not in MAILABLE:
        return None
    if throttle.take(session, CONFIRM_MAIL_PER_ADDRESS, f"{newsletter_id}:{key}", secret):
        return None
    return member.subscriber.id, member.subscriber.email


class SignupQueue:
    """Accepted sign-ups, recorded and confirmed one at a time by a task of the app's."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self._queue: asyncio.Queue[tuple[float, str, str, str, tuple[int, ...]]] | None = None
        self._task: asyncio.Task[None] | None = None

    async def submit(
        self, email: str, key: str, name: str, newsletter_ids: tuple[int, ...]
    ) -> None:
        """Queue a sign-up (never waits; a full queue drops it with a warning).

        Called as the response's background task: after the answer is sent, and done
        at once, so a kept-alive connection's next request is not held up.
        """
        if self._queue is None:
            self._queue = asyncio.Queue(QUEUE_SIZE)
            self._task = asyncio.get_running_loop().create_task(self._run())
        try:
            self._queue.put_nowait((time.monotonic() + SETTLE, email, key, name, newsletter_ids))
        except asyncio.QueueFull:
            log.warning("sign-up queue full (%d): a sign-up was dropped", QUEUE_SIZE)

    async def _run(self) -> None:
        assert self._queue is not None
        while True:
            due, email, key, name, newsletter_ids = await self._queue.get()
            try:
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                await self._handle(email, key, name, newsletter_ids)
            except Exception:  # one bad sign-up must not stop the others
                log.exception("sign-up could not be recorded")
            finally:
                self._queue.task_done()

    async def _handle(
        self, email: str, key: str, name: str, newsletter_ids: tuple[int, ...]
    ) -> None:
        secret = self.settings.secret()

        def go() -> list[tuple[Settings, dict[str, Any], tuple[int, str]]]:
            out = []
            with session_scope(self.engine) as session:
                for newsletter_id in newsletter_ids:
                    nl = newsletters.get_by_id(session, newsletter_id)
                    mail_to = record(session, secret, email, key, name, nl.id)
                    if mail_to is not None:
                        own = newsletters.settings_for(self.settings, nl)
                        out.append((own, newsletters.view(self.settings, nl).as_dict(), mail_to))
            return out

        for own, view, (subscriber_id, address) in await run_in_threadpool(go):
            await send_confirmation(own, subscriber_id, address, view)

    async def drain(self, timeout: float = 10.0) -> None:
        """Finish what is queued (at shutdown), then stop the task."""
        if self._queue is None or self._task is None:
            return
        try:
            await asyncio.wait_for(self._queue.join(), timeout)
        except TimeoutError:
            log.warning("%d sign-ups not recorded at shutdown", self._queue.qsize())
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._queue = self._task = None
