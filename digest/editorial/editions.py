"""Issues: freezing this week's picks into an immutable snapshot and rendering it once.

An issue is keyed by ISO year and week in DIGEST_TIMEZONE (e.g. 2026-W48). Freezing
is one transaction: a crash during it leaves no half-made issue. A frozen issue may
be re-frozen (same picks give the same result) until its send starts; from then on
it never changes.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from digest.clock import utcnow
from digest.editorial.models import Issue, IssueStatus, Pick
from digest.editorial.picks import pick_to_dict, plain_text
from digest.editorial.render import render_issue
from digest.errors import InputError, NotFound, StateError
from digest.headertext import check_header_safe, strip_bidi
from digest.settings import Settings
from digest.store.engine import affected

KEY_RE = re.compile(r"^\d{4}-W(0[1-9]|[1-4]\d|5[0-3])$")
MAX_SUBJECT = 200


def week_key(when: datetime, settings: Settings) -> str:
    """ISO year and week of `when` in the configured time zone."""
    local = when.astimezone(settings.tz)
    year, week, _ = local.isocalendar()
    return f"{year}-W{week:02d}"


def current_key(settings: Settings, now: datetime | None = None) -> str:
    return week_key(now or utcnow(), settings)


def check_key(key: str) -> str:
    """Refuse anything that is not YYYY-Www (keys end up in paths and URLs)."""
    if not KEY_RE.match(key):
        raise InputError(f"issue key must look like 2026-W48, got {key[:40]!r}", field="issue")
    return key


def get_issue(session: Session, key: str) -> Issue:
    issue = session.scalar(select(Issue).where(Issue.key == check_key(key)))
    if issue is None:
        raise NotFound(f"no issue {key} (see `digest build`)")
    return issue


def find_issue(session: Session, key: str) -> Issue | None:
    return session.scalar(select(Issue).where(Issue.key == key))


def draft(session: Session, key: str) -> Issue:
    """The issue row for `key`, created as a draft if it does not exist yet."""
    issue = find_issue(session, check_key(key))
    if issue is None:
        issue = Issue(key=key, status=IssueStatus.DRAFT)
        session.add(issue)
        session.flush()
    return issue


def edit(
    session: Session,
    key: str,
    *,
    subject: str | None = None,
    preheader: str | None = None,
    intro: str | None = None,
) -> Issue:
    """Set the subject, preheader or intro of an issue that has not started sending."""
    issue = draft(session, key)
    if issue.status in (IssueStatus.SENDING, IssueStatus.SENT):
        raise StateError(f"issue {key} is {issue.status}; it can no longer change")
    if subject is not None:
        subject = plain_text(subject)
        try:
            check_header_safe(subject)
        except ValueError as exc:
            raise InputError(str(exc), field="subject") from None
        if len(subject) > MAX_SUBJECT:
            raise InputError(f"longer than {MAX_SUBJECT} characters", field="subject")
        issue.subject = subject
    if preheader is not None:
        issue.preheader = plain_text(preheader)[:300]
    if intro is not None:
        issue.intro = plain_text(intro, multiline=True)[:4000]
    session.flush()
    return issue


def default_subject(settings: Settings, picks: list[dict[str, Any]]) -> str:
    lead = next((p for p in picks if p["featured"]), picks[0])
    subject = f"{settings.list_name}: {strip_bidi(lead['title'])}"
    return subject if len(subject) <= 78 else subject[:77].rstrip() + "…"


def default_preheader(picks: list[dict[str, Any]]) -> str:
    titles = [p["title"] for p in picks if not p["featured"]][:3]
    text = "Also this week: " + "; ".join(titles) if titles else picks[0]["summary"]
    return text if len(text) <= 140 else text[:139].rstrip() + "…"


def freeze(
    session: Session, settings: Settings, key: str | None = None, *, for_send: bool = False
) -> Issue:
    """Freeze this week's picks (those in no sent issue yet) into a snapshot and render.

    Picks stay editable until the send starts (`start_sending` ties them to the
    issue); building again picks up edits, and unchanged picks give the same issue.
    Raises StateError when the issue is already sending or sent, or nothing is picked.
    `for_send` also refreshes the date shown in the issue (a Monday preview must not
    put Monday's date on Friday's send).
    """
    key = check_key(key or current_key(settings))
    issue = draft(session, key)
    if issue.status in (IssueStatus.SENDING, IssueStatus.SENT):
        raise StateError(
            f"issue {key} is already {issue.status} and is never re-frozen; "
            "new picks go into the next week's issue"
        )
    rows = list(
        session.scalars(
            select(Pick).where(Pick.issue_id.is_(None)).order_by(Pick.position, Pick.id)
        )
    )
    if not rows:
        raise StateError(f"nothing picked for issue {key}: add picks with `digest picks add`")
    picks = [pick_to_dict(p) for p in rows]
    for i, p in enumerate(picks, start=1):
        p["position"] = i
    now = utcnow()
    content = {
        "key": key,
        "subject": issue.subject or default_subject(settings, picks),
        "preheader": issue.preheader or default_preheader(picks),
        "intro": issue.intro,
        "date": now.astimezone(settings.tz).date().isoformat(),
        "picks": picks,
    }
    if issue.status == IssueStatus.FROZEN and _same(issue.content, content, with_date=for_send):
        return issue  # idempotent: nothing changed since the last build
    rendered = render_issue(content, settings)
    issue.content = content
    issue.html = rendered.html
    issue.text = rendered.text
    issue.status = IssueStatus.FROZEN
    issue.frozen_at = now
    session.flush()
    return issue


def _same(old: dict[str, Any] | None, new: dict[str, Any], *, with_date: bool = False) -> bool:
    if not old:
        return False
    if with_date:
        return old == new
    strip = {k: v for k, v in new.items() if k != "date"}
    return {k: v for k, v in old.items() if k != "date"} == strip


def start_sending(session: Session, issue: Issue) -> bool:
    """Atomically move FROZEN -> SENDING; False if someone else already did."""
    result = session.execute(
        update(Issue)
        .where(Issue.id == issue.id, Issue.status == IssueStatus.FROZEN)
        .values(status=IssueStatus.SENDING, send_started_at=utcnow())
    )
    session.refresh(issue)
    if affected(result) != 1:
        return False
    ids = [p["id"] for p in issue.content.get("picks", [])]
    session.execute(
        update(Pick).where(Pick.id.in_(ids), Pick.issue_id.is_(None)).values(issue_id=issue.id)
    )
    return True


def resumable(session: Session) -> Issue | None:
    """The oldest issue whose send started but did not finish."""
    return session.scalar(
        select(Issue).where(Issue.status == IssueStatus.SENDING).order_by(Issue.id)
    )


def list_issues(session: Session, limit: int = 50) -> list[Issue]:
    return list(session.scalars(select(Issue).order_by(Issue.id.desc()).limit(limit)))
