"""Has this story been picked before? The same URL in this edition, or in one of the last
editions that went out, is usually a mistake (a CMS posting twice, a story sent last week).

URLs are compared normalised (`url_key`): scheme and host lower-cased, a trailing slash and
a fragment dropped, so `https://News.example.com/a/` and `https://news.example.com/a#top`
are one story. The API answers such a pick with 409 (unless forced); the desk marks such
candidates.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest.editorial.models import PUBLISHED, Edition, Pick

#: How many of a newsletter's latest sent (or sending) editions are looked at.
RECENT = 4


def normalise(url: str) -> str:
    parts = urlsplit(url.strip())
    path = parts.path.rstrip("/")
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), path, parts.query, ""))


def url_key(url: str) -> str:
    return hashlib.sha256(normalise(url).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Earlier:
    """Where a URL was picked before."""

    edition_key: str
    status: str  # the edition's: draft/scheduled (this one), sending or sent
    pick_id: int

    @property
    def sent(self) -> bool:
        return self.status in PUBLISHED


def recent_editions(session: Session, newsletter_id: int, limit: int = RECENT) -> list[Edition]:
    return list(
        session.scalars(
            select(Edition)
            .where(Edition.newsletter_id == newsletter_id, Edition.status.in_(PUBLISHED))
            .order_by(Edition.send_started_at.desc(), Edition.id.desc())
            .limit(limit)
        )
    )


def earlier_uses(
    session: Session, edition: Edition, urls: Iterable[str], *, exclude: int | None = None
) -> dict[str, Earlier]:
    """For each of `urls` picked in `edition` itself or in its newsletter's last RECENT
    sent editions: where (this edition first, then the newest sent one). Keys are the
    URLs as given."""
    wanted: dict[str, list[str]] = {}
    for url in urls:
        wanted.setdefault(normalise(url), []).append(url)
    if not wanted:
        return {}
    scope = [edition, *recent_editions(session, edition.newsletter_id)]
    ids = [e.id for e in scope]
    rows = session.execute(
        select(Pick.id, Pick.url, Pick.edition_id).where(
            Pick.edition_id.in_(ids), Pick.removed_at.is_(None), Pick.id != (exclude or -1)
        )
    ).all()
    rank = {e.id: i for i, e in enumerate(scope)}
    by_id = {e.id: e for e in scope}
    found: dict[str, Earlier] = {}
    for pick_id, url, edition_id in sorted(rows, key=lambda r: (rank[r[2]], r[0])):
        for given in wanted.get(normalise(url), []):
            if given not in found:
                e = by_id[edition_id]
                found[given] = Earlier(e.key, str(e.status), pick_id)
    return found
