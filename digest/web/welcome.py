"""The welcome email: once per subscription, after the reader confirms it.

The transaction that confirms a subscription also claims its welcome (`claim` sets
`welcomed_at` only where it is still empty, so of two racing confirmations one wins);
the email itself is sent afterwards by the app's SignupQueue, never before the reader's
answer. A reader who leaves and confirms again is not welcomed twice, nor is one added
by an import or by the command line (they did not confirm by email).

The email (templates/welcome.*.j2) carries the newsletter's sender, language and
List-Id, the same List-Unsubscribe and List-Unsubscribe-Post headers as an edition,
the reader's preferences link, and the latest edition's web page.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from digest.clock import utcnow
from digest.delivery.campaign import tokens_for
from digest.delivery.message import MessageTemplate, Recipient
from digest.editorial import editions, i18n, newsletters
from digest.editorial.render import render_welcome
from digest.errors import NotFound
from digest.settings import Settings
from digest.store.engine import affected, session_scope
from digest.web.archive import published
from digest.web.signup import deliver
from subscribers import subscriptions
from subscribers.model import SubscriberStatus, Subscription, SubscriptionStatus

log = logging.getLogger("digest.web.welcome")


def claim(session: Session, newsletter_id: int, subscriber_id: int) -> bool:
    """Mark a confirmed subscription welcomed; True only for the first claim ever."""
    result = session.execute(
        update(Subscription)
        .where(
            Subscription.newsletter_id == newsletter_id,
            Subscription.subscriber_id == subscriber_id,
            Subscription.status == SubscriptionStatus.CONFIRMED,
            Subscription.welcomed_at.is_(None),
        )
        .values(welcomed_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return affected(result) == 1


@dataclass
class Welcome:
    """What the email needs, read in one transaction."""

    own: Settings
    newsletter: dict[str, Any]
    email: str
    name: str
    latest_url: str | None
    next_date: str | None


def gather(
    session: Session, settings: Settings, subscriber_id: int, newsletter_id: int
) -> Welcome | None:
    """None when the reader is no longer a confirmed subscriber (left, bounced, erased)."""
    try:
        nl = newsletters.get_by_id(session, newsletter_id)
        member = subscriptions.member(session, nl.id, subscriber_id)
    except NotFound:
        return None
    if member.status != SubscriberStatus.CONFIRMED:
        return None
    own = newsletters.settings_for(settings, nl)
    latest = published(session, nl.id, 1)
    latest_url = None
    if latest:
        path = f"{newsletters.archive_path(nl)}/{latest[0].key}"
        latest_url = str(latest[0].content.get("view_url") or settings.base_url + path)
    nxt = editions.open_edition(session, settings, nl)
    next_date = nxt.planned_at.astimezone(own.tz).date().isoformat() if nxt.planned_at else None
    view = newsletters.view(settings, nl).as_dict()
    sub = member.subscriber
    return Welcome(own, view, sub.email, sub.name, latest_url, next_date)


def welcome_message(w: Welcome, subscriber_id: int, wire: str) -> bytes:
    """The complete welcome email for one reader (SMTP-ready bytes)."""
    from digest.delivery.dkim import signer_for

    rendered = render_welcome(w.own, w.newsletter, latest_url=w.latest_url, next_date=w.next_date)
    language = str(w.newsletter.get("language") or "en")
    template = MessageTemplate(
        rendered,
        settings=w.own,
        issue_key="welcome",
        subject=i18n.words(language)["welcome_subject"].format(name=w.own.list_name),
        date=utcnow(),
        signer=signer_for(w.own),
        language=language,
    )
    unsubscribe, prefs = tokens_for(w.own, subscriber_id)
    return template.build(Recipient(subscriber_id, wire, w.name, unsubscribe, prefs))


async def send_welcome(
    engine: Engine, settings: Settings, subscriber_id: int, newsletter_id: int
) -> bool:
    def read() -> Welcome | None:
        with session_scope(engine) as session:
            return gather(session, settings, subscriber_id, newsletter_id)

    w = await run_in_threadpool(read)
    if w is None:
        log.info("no welcome for subscriber %s: no longer subscribed", subscriber_id)
        return False
    return await deliver(
        w.own,
        subscriber_id,
        w.email,
        lambda wire: welcome_message(w, subscriber_id, wire),
        "welcome email",
    )
