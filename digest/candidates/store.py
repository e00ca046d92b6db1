"""Candidates for a newsletter's next edition, and turning one into a pick."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from digest.candidates.models import Candidate, CandidateFeed
from digest.clock import utcnow
from digest.editorial import picks, repeats
from digest.editorial.models import Edition, Newsletter, Pick
from digest.errors import NotFound, StateError
from digest.store.base import MAX_ID

#: Candidates the desk shows at a time (newest first).
SHOWN = 12


@dataclass
class Offer:
    """A candidate as the desk shows it, with where it was picked before (if anywhere)."""

    candidate: Candidate
    earlier: repeats.Earlier | None

    @property
    def in_this_edition(self) -> bool:
        return self.earlier is not None and not self.earlier.sent

    @property
    def mark(self) -> str:
        if self.earlier is None:
            return ""
        if self.earlier.sent:
            return f"Already sent in edition {self.earlier.edition_key}"
        return "Picked for this edition"


@dataclass
class Panel:
    offers: list[Offer]
    total: int
    polled_at: datetime | None
    problems: list[str]


def _mine(newsletter: Newsletter) -> ColumnElement[bool]:
    return or_(Candidate.newsletter_id.is_(None), Candidate.newsletter_id == newsletter.id)


def offers(
    session: Session, newsletter: Newsletter, edition: Edition, limit: int = SHOWN
) -> list[Offer]:
    """The newest candidates not dismissed, marked where picked before."""
    rows = session.scalars(
        select(Candidate)
        .where(Candidate.dismissed_at.is_(None), _mine(newsletter))
        .order_by(Candidate.seen_at.desc(), Candidate.id.desc())
        .limit(limit)
    ).all()
    earlier = repeats.earlier_uses(session, edition, [c.url for c in rows])
    return [Offer(c, earlier.get(c.url)) for c in rows]


def panel(session: Session, newsletter: Newsletter, edition: Edition) -> Panel:
    total = session.scalar(
        select(func.count()).where(Candidate.dismissed_at.is_(None), _mine(newsletter))
    )
    feeds = session.scalars(select(CandidateFeed)).all()
    polled = max((f.polled_at for f in feeds if f.polled_at), default=None)
    problems = [f"{f.url}: {f.outcome}" for f in feeds if f.outcome not in ("", "200", "304")]
    return Panel(offers(session, newsletter, edition), int(total or 0), polled, problems)


def get(session: Session, newsletter: Newsletter, candidate_id: int) -> Candidate:
    row = session.get(Candidate, candidate_id) if 0 < candidate_id <= MAX_ID else None
    if row is None or row.newsletter_id not in (None, newsletter.id):
        raise NotFound(f"no candidate {candidate_id}")
    return row


def pick(
    session: Session,
    newsletter: Newsletter,
    edition: Edition,
    sections: list[str],
    candidate_id: int,
) -> Pick:
    """Add a candidate to the edition with what the feed said (title, lead, picture,
    byline), checked by PickIn like any pick; refused if it is already in the edition."""
    row = get(session, newsletter, candidate_id)
    earlier = repeats.earlier_uses(session, edition, [row.url]).get(row.url)
    if earlier is not None and not earlier.sent:
        raise StateError(f"“{row.title}” is already in this edition (pick {earlier.pick_id})")
    canonical = {s.lower(): s for s in sections}
    data = {
        "url": row.url,
        "title": row.title,
        "summary": row.summary,
        "section": canonical.get(row.section.lower(), sections[0]),
        "image_url": row.image_url,
        "image_alt": row.image_alt or (row.title if row.image_url else ""),
        "image_credit": row.image_credit,
        "byline": row.byline,
        "tags": list(row.tags or []),
    }
    return picks.add_pick(session, edition.id, picks.validate_pick(data, sections, source="feed"))


def dismiss(session: Session, newsletter: Newsletter, candidate_id: int) -> Candidate:
    row = get(session, newsletter, candidate_id)
    row.dismissed_at = utcnow()
    session.flush()
    return row


def latest(session: Session, newsletter: Newsletter | None, limit: int) -> list[Candidate]:
    query = select(Candidate).order_by(Candidate.seen_at.desc(), Candidate.id.desc()).limit(limit)
    if newsletter is not None:
        query = query.where(_mine(newsletter))
    return list(session.scalars(query))
