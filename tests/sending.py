"""Helpers for tests that send: picks, many subscribers, a started send.

Everything goes to the default newsletter unless a slug is given, as the command line
does on an installation with one newsletter.
"""

from __future__ import annotations

from sqlalchemy.engine import Engine

from digest.clock import utcnow
from digest.delivery import campaign
from digest.editorial import editions, newsletters
from digest.editorial.models import Edition, Newsletter
from digest.editorial.picks import add_pick, validate_pick
from digest.settings import Settings
from digest.store.engine import session_scope
from subscribers import store, subscriptions
from subscribers.model import SubscriptionStatus
from tests.samples import sample_pick


def address(i: int) -> str:
    return f"reader{i}@example.com"


def newsletter(engine: Engine, settings: Settings, slug: str | None = None) -> Newsletter:
    with session_scope(engine) as s:
        return newsletters.resolve(s, settings, slug)


def open_edition(engine: Engine, settings: Settings, slug: str | None = None) -> Edition:
    with session_scope(engine) as s:
        nl = newsletters.resolve(s, settings, slug)
        return editions.open_edition(s, settings, nl)


def add_picks(engine: Engine, settings: Settings, n: int = 3, slug: str | None = None) -> None:
    with session_scope(engine) as s:
        nl = newsletters.resolve(s, settings, slug)
        edition = editions.open_edition(s, settings, nl)
        own = newsletters.settings_for(settings, nl)
        for i in range(n):
            raw = {k: v for k, v in sample_pick(i, featured=i == 0).items()}
            raw = {k: v for k, v in raw.items() if k not in ("id", "position")}
            add_pick(s, edition.id, validate_pick(raw, own.sections))


def add_subscribers(
    engine: Engine,
    n: int,
    start: int = 0,
    *,
    settings: Settings | None = None,
    slug: str | None = None,
) -> list[str]:
    """`n` confirmed subscribers of a newsletter, in one round trip per 5,000."""
    from digest.settings import load_settings

    emails = [address(i) for i in range(start, start + n)]
    now = utcnow()
    with session_scope(engine) as s:
        nl = newsletters.resolve(s, settings or load_settings(), slug)
        for first in range(0, n, 5000):
            chunk = emails[first : first + 5000]
            rows = [store.address_row(e, e, f"Reader {e}", {}) for e in chunk]
            store.upsert_addresses(s, rows, now)
            ids = store.ids_for(s, chunk)
            subscriptions.upsert(
                s,
                [
                    subscriptions.row(nl.id, ids[e], SubscriptionStatus.CONFIRMED, "test", now)
                    for e in chunk
                ],
                now,
            )
    return emails


def subscribe(
    engine: Engine,
    settings: Settings,
    email: str,
    name: str = "",
    *,
    status: str = SubscriptionStatus.CONFIRMED,
    slug: str | None = None,
) -> subscriptions.Member:
    """One address subscribed to a newsletter (the default one unless `slug`)."""
    with session_scope(engine) as s:
        nl = newsletters.resolve(s, settings, slug)
        return subscriptions.add(s, nl.id, email, name, status=status, source="test")


def started_send(engine: Engine, settings: Settings, n: int) -> tuple[Edition, list[str]]:
    """The open edition, rendered and in `sending`, its ledger filled for `n` subscribers."""
    add_picks(engine, settings)
    emails = add_subscribers(engine, n, settings=settings)
    return campaign.prepare_send(engine, settings), emails


def pick_into(session, settings: Settings, raw: dict, slug: str | None = None):  # type: ignore[no-untyped-def, type-arg]
    """Validate `raw` and add it to the newsletter's next edition, inside `session`."""
    nl = newsletters.resolve(session, settings, slug)
    edition = editions.open_edition(session, settings, nl)
    own = newsletters.settings_for(settings, nl)
    return add_pick(session, edition.id, validate_pick(raw, own.sections))
