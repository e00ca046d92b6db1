"""Editions: each newsletter's issues, and the one resolver everything uses to find them.

Each newsletter always has exactly one open edition (draft or scheduled), "the next
edition", planned for the next slot of its schedule. `open_edition` finds (or opens)
it; picks, subject, intro, build, preview, test-send and send address it unless a key
names another (`resolve`). Sending it moves it to `sending` and opens the next draft at
once, for the slot after this one, in the same transaction.

Keys are readable and unique per newsletter: the ISO week of the slot (2026-W49) for
newsletters that go out at most weekly, otherwise its date (2026-12-04), or date and
time (2026-12-04-0900) for several a day.

Rendering (`freeze`) keeps a snapshot of exactly what was rendered; it is redone on
every build until the send starts, and from then on the edition never changes.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from digest.clock import utcnow
from digest.editorial import i18n, newsletters
from digest.editorial.models import OPEN, Edition, EditionStatus, Newsletter, Pick
from digest.editorial.picks import live_picks, pick_to_dict, plain_text
from digest.editorial.render import render_issue
from digest.errors import InputError, NotFound, SettingsError, StateError
from digest.headertext import check_header_safe, strip_bidi
from digest.settings import Settings
from digest.store.engine import affected

KEY_RE = re.compile(
    r"^\d{4}-(?:W(?:0[1-9]|[1-4]\d|5[0-3])|[01]\d-[0-3]\d(?:-[0-2]\d[0-5]\d(?:[0-5]\d)?)?)(?:-\d{1,3})?$"
)
MAX_SUBJECT = 200
#: Bidirectional-text controls: they can make a subject read differently than it is.
BIDI = re.compile("[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")


def check_key(key: str) -> str:
    """Refuse anything that is not an edition key (keys end up in paths and URLs)."""
    if not KEY_RE.match(key):
        raise InputError(
            f"edition key must look like 2026-W48 or 2026-12-04, got {key[:40]!r}", field="edition"
        )
    return key


# -- slots and keys ------------------------------------------------------------------------


def next_slot(settings: Settings, after: datetime) -> datetime:
    """The newsletter's first send time strictly after `after` (aware, in its zone)."""
    from digest.scheduling.trigger import next_fire_times

    times = next_fire_times(settings, 1, after + timedelta(seconds=1))
    if not times:
        raise SettingsError(f"DIGEST_SCHEDULE: {settings.schedule!r} never fires")
    return times[0]


@lru_cache(maxsize=64)
def _cadence(schedule: str, timezone: str) -> str:
    """'week', 'day' or 'time': how finely keys must tell this schedule's slots apart."""
    from digest.scheduling.trigger import next_fire_times

    probe = Settings.model_construct(schedule=schedule, timezone=timezone, schedule_second="0")
    times = next_fire_times(probe, 12, datetime(2026, 1, 1).astimezone())
    weeks = [t.isocalendar()[:2] for t in times]
    days = [t.date() for t in times]
    if len(set(weeks)) == len(weeks):
        return "week"
    return "day" if len(set(days)) == len(days) else "time"


def slot_rule(settings: Settings) -> str:
    """What a draft's slot was computed from; when it changes, the slot is recomputed."""
    return f"{settings.schedule}|{settings.timezone}|{settings.schedule_second}"


def slot_key(settings: Settings, slot: datetime) -> str:
    local = slot.astimezone(settings.tz)
    cadence = _cadence(settings.schedule, settings.timezone)
    if cadence == "week":
        year, week, _ = local.isocalendar()
        return f"{year}-W{week:02d}"
    if cadence == "day":
        return f"{local:%Y-%m-%d}"
    # DIGEST_SCHEDULE_SECOND other than 0 fires within a minute (tests): keys tell seconds apart
    return f"{local:%Y-%m-%d-%H%M}" + ("" if settings.schedule_second == "0" else f"{local:%S}")


def _free_key(session: Session, newsletter_id: int, key: str, own_id: int | None = None) -> str:
    """`key`, or key-2, key-3 ... if another edition of this newsletter has it."""
    taken = set(
        session.scalars(
            select(Edition.key).where(
                Edition.newsletter_id == newsletter_id,
                Edition.key.startswith(key, autoescape=True),
                Edition.id != (own_id or -1),
            )
        )
    )
    if key not in taken:
        return key
    n = 2
    while f"{key}-{n}" in taken:
        n += 1
    return f"{key}-{n}"


def _free_slot(
    session: Session, newsletter_id: int, own: Settings, after: datetime, own_id: int | None = None
) -> tuple[datetime, str]:
    """The first slot after `after` whose key no other edition of the newsletter holds.

    An edition sent early holds its slot's key (2026-W49 sent on Wednesday), so the next
    draft goes to the slot after it, not to Friday of the same week.
    """
    taken = set(
        session.scalars(
            select(Edition.key).where(
                Edition.newsletter_id == newsletter_id,
                Edition.id != (own_id or -1),
                Edition.status != EditionStatus.CANCELLED,
            )
        )
    )
    slot = next_slot(own, after)
    for _ in range(100):
        key = slot_key(own, slot)
        if key not in taken:
            return slot, key
        slot = next_slot(own, slot)
    return slot, _free_key(session, newsletter_id, slot_key(own, slot), own_id)


# -- the resolver -------------------------------------------------------------------------


def open_edition(session: Session, settings: Settings, newsletter: Newsletter) -> Edition:
    """The newsletter's one open edition, opened for the next slot if there is none."""
    own = newsletters.settings_for(settings, newsletter)
    row = session.scalar(
        select(Edition).where(Edition.newsletter_id == newsletter.id, Edition.status.in_(OPEN))
    )
    if row is None:
        last = session.scalar(
            select(Edition.planned_at)
            .where(Edition.newsletter_id == newsletter.id, Edition.planned_at.is_not(None))
            .order_by(Edition.planned_at.desc())
            .limit(1)
        )
        now = utcnow()
        slot, key = _free_slot(session, newsletter.id, own, max(now, last) if last else now)
        row = Edition(
            newsletter_id=newsletter.id, key=key, planned_at=slot, slot_rule=slot_rule(own)
        )
        session.add(row)
        session.flush()
    elif row.planned_at is None or (
        row.status == EditionStatus.DRAFT and row.slot_rule != slot_rule(own)
    ):
        # Migrated from one weekly issue, or the schedule changed: the next slot from now.
        slot, key = _free_slot(session, newsletter.id, own, utcnow(), row.id)
        row.planned_at, row.key, row.slot_rule = slot, key, slot_rule(own)
        session.flush()
    return row


def get(session: Session, newsletter: Newsletter, key: str) -> Edition:
    row = session.scalar(
        select(Edition).where(Edition.newsletter_id == newsletter.id, Edition.key == check_key(key))
    )
    if row is None:
        raise NotFound(f"no edition {key} of {newsletter.slug} (see `digest editions list`)")
    return row


def resolve(
    session: Session, settings: Settings, newsletter: Newsletter, key: str | None = None
) -> Edition:
    """The edition named by `key`, or the newsletter's open edition."""
    return get(session, newsletter, key) if key else open_edition(session, settings, newsletter)


def require_open(edition: Edition) -> Edition:
    if edition.status not in OPEN:
        raise StateError(
            f"edition {edition.key} is {edition.status} and can no longer change; "
            "new picks go into the next edition"
        )
    return edition


# -- editing and rendering ------------------------------------------------------------------


def check_line(value: str, field: str, limit: int) -> str:
    """One line of text for a header: no markup, controls or bidirectional overrides."""
    value = plain_text(value)
    if BIDI.search(value):
        raise InputError("must not contain bidirectional control characters", field=field)
    try:
        check_header_safe(value)
    except ValueError as exc:
        raise InputError(str(exc), field=field) from None
    if len(value) > limit:
        raise InputError(f"longer than {limit} characters", field=field)
    return value


def edit(
    session: Session,
    edition: Edition,
    *,
    subject: str | None = None,
    preheader: str | None = None,
    intro: str | None = None,
) -> Edition:
    """Set the subject, preheader or intro of an edition that is still open."""
    require_open(edition)
    if subject is not None:
        edition.subject = check_line(subject, "subject", MAX_SUBJECT)
    if preheader is not None:
        edition.preheader = check_line(preheader, "preheader", 300)
    if intro is not None:
        edition.intro = plain_text(intro, multiline=True)[:4000]
    session.flush()
    return edition


def default_subject(name: str, picks: list[dict[str, Any]]) -> str:
    lead = next((p for p in picks if p["featured"]), picks[0])
    subject = f"{name}: {strip_bidi(lead['title'])}"
    return subject if len(subject) <= 78 else subject[:77].rstrip() + "…"


def default_preheader(picks: list[dict[str, Any]], language: str = "en") -> str:
    titles = [p["title"] for p in picks if not p["featured"]][:3]
    also = i18n.words(language)["also"]
    text = f"{also}: " + "; ".join(titles) if titles else picks[0]["summary"]
    return text if len(text) <= 140 else text[:139].rstrip() + "…"


def freeze(
    session: Session,
    settings: Settings,
    newsletter: Newsletter,
    edition: Edition,
    *,
    for_send: bool = False,
) -> Edition:
    """Render the open edition's picks into a snapshot (HTML and text, slots in place).

    Building again picks up edits; unchanged picks give the same edition. Raises
    StateError when the edition is no longer open or nothing is picked. `for_send`
    also refreshes the date shown (a Monday preview must not put Monday's date on
    Friday's send).
    """
    require_open(edition)
    own = newsletters.settings_for(settings, newsletter)
    rows = live_picks(session, edition.id, own.sections)
    if not rows:
        raise StateError(
            f"nothing picked for edition {edition.key} of {newsletter.slug}: "
            "add picks with `digest picks add`"
        )
    picks = [pick_to_dict(p) for p in rows]
    for i, p in enumerate(picks, start=1):
        p["position"] = i
    now = utcnow()
    nl = newsletters.view(settings, newsletter)
    content = {
        "key": edition.key,
        "subject": edition.subject or default_subject(nl.name, picks),
        "preheader": edition.preheader or default_preheader(picks, nl.language),
        "intro": edition.intro,
        "date": now.astimezone(own.tz).date().isoformat(),
        "view_url": f"{settings.base_url}{newsletters.archive_path(newsletter)}/{edition.key}",
        "newsletter": nl.as_dict(),
        "picks": picks,
    }
    if edition.is_built and _same(edition.content, content, with_date=for_send):
        return edition  # idempotent: nothing changed since the last build
    rendered = render_issue(content, own)
    edition.content = content
    edition.html = rendered.html
    edition.text = rendered.text
    edition.frozen_at = now
    session.flush()
    return edition


def _same(old: dict[str, Any] | None, new: dict[str, Any], *, with_date: bool = False) -> bool:
    if not old:
        return False
    if with_date:
        return old == new
    strip = {k: v for k, v in new.items() if k != "date"}
    return {k: v for k, v in old.items() if k != "date"} == strip


# -- the lifecycle ---------------------------------------------------------------------------


def start_sending(
    session: Session, settings: Settings, newsletter: Newsletter, edition: Edition
) -> bool:
    """Atomically move the open edition to `sending` and open the next draft; False if
    someone else already did. A late edition (past its slot) takes the time it goes out."""
    now = utcnow()
    result = session.execute(
        update(Edition)
        .where(Edition.id == edition.id, Edition.status.in_(OPEN))
        .values(status=EditionStatus.SENDING, send_started_at=now)
        .execution_options(synchronize_session=False)
    )
    session.refresh(edition)
    if affected(result) != 1:
        return False
    own = newsletters.settings_for(settings, newsletter)
    planned = edition.planned_at or now
    if planned < now - timedelta(seconds=own.misfire_grace):
        edition.planned_at = now
        key = _free_key(session, newsletter.id, slot_key(own, now), edition.id)
        if key != edition.key:
            edition.key = key
            edition.content = {**edition.content, "key": key}
    session.flush()
    open_edition(session, settings, newsletter)  # the next draft, for the next slot
    return True


def reschedule(
    session: Session, settings: Settings, newsletter: Newsletter, edition: Edition, at: datetime
) -> Edition:
    """Move an open edition to another time (it is then `scheduled`)."""
    require_open(edition)
    edition.planned_at = at
    edition.status = EditionStatus.SCHEDULED
    session.flush()
    return edition


def roll_to_next_slot(
    session: Session, settings: Settings, newsletter: Newsletter, edition: Edition
) -> Edition:
    """A draft whose slot was missed moves to the next slot (its picks stay with it)."""
    require_open(edition)
    own = newsletters.settings_for(settings, newsletter)
    slot, key = _free_slot(session, newsletter.id, own, utcnow(), edition.id)
    edition.planned_at, edition.key, edition.slot_rule = slot, key, slot_rule(own)
    edition.status = EditionStatus.DRAFT
    session.flush()
    return edition


def resumable(session: Session, newsletter: Newsletter | None = None) -> Edition | None:
    """The oldest edition whose send started, is not paused, and did not finish."""
    query = select(Edition).where(
        Edition.status == EditionStatus.SENDING, Edition.paused_at.is_(None)
    )
    if newsletter is not None:
        query = query.where(Edition.newsletter_id == newsletter.id)
    return session.scalar(query.order_by(Edition.id))


def list_editions(session: Session, newsletter: Newsletter, limit: int = 50) -> list[Edition]:
    return list(
        session.scalars(
            select(Edition)
            .where(Edition.newsletter_id == newsletter.id)
            .where(Edition.status != EditionStatus.CANCELLED)
            .order_by(Edition.id.desc())
            .limit(limit)
        )
    )


def newsletter_of(session: Session, edition: Edition) -> Newsletter:
    row = session.get(Newsletter, edition.newsletter_id)
    assert row is not None
    return row


def pick_rows(session: Session, edition: Edition) -> list[Pick]:
    return list(
        session.scalars(
            select(Pick)
            .where(Pick.edition_id == edition.id, Pick.removed_at.is_(None))
            .order_by(Pick.position, Pick.id)
        )
    )
