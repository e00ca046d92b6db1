"""The desk's stats page: what readers read, per story of an edition and per edition.

/desk/stats?newsletter=SLUG[&edition=KEY] shows an edition's stories (clicks and share,
as a chart and a table), the newsletter's last editions over time (click-through as a
chart; delivered, failed, bounced, complaints, unsubscribes and clicks in a table) and
the CSV exports at /desk/stats.csv (the editions, or with &edition=KEY the stories).
The numbers are those of `digest stats` (digest.stats.report).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from digest.editorial import editions, newsletters
from digest.editorial.models import Edition, Newsletter
from digest.errors import InputError, NotFound
from digest.stats import export, report
from digest.web import charts
from digest.web.auth import editor_required
from digest.web.context import db, settings_of
from digest.web.desk import desk_url, slug_of
from digest.web.pages import render

_WEEK = re.compile(r"^\d{4}-(W\d\d)$")


@dataclass
class StatsPage:
    newsletter: Newsletter
    name: str
    tabs: list[tuple[str, str, bool]]  # slug, name, current
    editions: list[report.EditionRow]
    edition: Edition | None
    stories: list[report.StoryRow]
    row: report.EditionRow | None


def short_key(key: str) -> str:
    """'2026-W49' -> 'W49' under a column; other keys as they are."""
    m = _WEEK.match(key)
    return m.group(1) if m else key[5:] if len(key) >= 10 else key


def _edition(
    session: Session, nl: Newsletter, key: str | None, rows: list[report.EditionRow]
) -> Edition | None:
    if key:
        try:
            return editions.get(session, nl, key)
        except (InputError, NotFound):
            raise HTTPException(404, f"There is no edition {key[:40]} of {nl.slug}.") from None
    return session.get(Edition, rows[0].id) if rows else None


def gather(session: Session, request: Request) -> StatsPage:
    settings = settings_of(request)
    try:
        nl = newsletters.resolve(session, settings, slug_of(request))
    except NotFound:
        raise HTTPException(404, "There is no such newsletter.") from None
    rows = report.editions(session, nl)
    edition = _edition(session, nl, request.query_params.get("edition"), rows)
    tabs = [
        (n.slug, newsletters.settings_for(settings, n).list_name, n.id == nl.id)
        for n in newsletters.all_(session)
    ]
    return StatsPage(
        nl,
        newsletters.settings_for(settings, nl).list_name,
        tabs,
        rows,
        edition,
        report.stories(session, edition) if edition is not None else [],
        next((r for r in rows if edition is not None and r.id == edition.id), None),
    )


def story_chart(page: StatsPage) -> Markup | None:
    if page.edition is None or not page.stories:
        return None
    total = sum(s.clicks for s in page.stories)
    top = max(page.stories, key=lambda s: s.clicks)
    desc = f"{total} clicks on {len(page.stories)} stories of edition {page.edition.key}" + (
        f"; the most read: {top.title} ({top.clicks})." if total else "; none yet."
    )
    points = [
        charts.Point(
            f"{s.position}. {s.title}", s.clicks, f"{s.title}: {s.clicks} clicks, {s.share:.0%}"
        )
        for s in page.stories
    ]
    return charts.bars("clicks-per-story", f"Clicks per story, {page.edition.key}", desc, points)


def editions_chart(page: StatsPage) -> Markup | None:
    rows = [r for r in reversed(page.editions) if r.click_through is not None]
    if not rows:
        return None
    desc = "Click-through of the last editions, oldest first: " + "; ".join(
        f"{r.key} {r.click_through * 100:.1f}%" for r in rows if r.click_through is not None
    )
    points = [
        charts.Point(
            short_key(r.key),
            (r.click_through or 0) * 100,
            f"{r.key}: {r.delivered} delivered, {r.clicks} clicks, "
            f"click-through {(r.click_through or 0) * 100:.1f}%",
        )
        for r in rows
    ]
    return charts.columns("editions-over-time", "Click-through per edition", desc, points, "%")


@editor_required
async def page(request: Request) -> Response:
    data = await db(request, lambda s: gather(s, request))
    settings = settings_of(request)
    return render(
        request,
        "stats.html",
        {
            "page": data,
            "mode": settings.click_stats,
            "story_chart": story_chart(data),
            "editions_chart": editions_chart(data),
            "desk_url": desk_url,
        },
    )


@editor_required
async def csv_export(request: Request) -> Response:
    data = await db(request, lambda s: gather(s, request))
    slug = data.newsletter.slug
    if request.query_params.get("edition") and data.edition is not None:
        table = export.story_table(data.edition.key, data.stories)
        name = f"{slug}-{data.edition.key}-stories.csv"
    else:
        table = export.edition_table(data.editions)
        name = f"{slug}-editions.csv"
    headers: dict[str, Any] = {"content-disposition": f'attachment; filename="{name}"'}
    return Response(export.to_text(table), media_type="text/csv; charset=utf-8", headers=headers)


routes = [
    Route("/desk/stats", page, methods=["GET"]),
    Route("/desk/stats.csv", csv_export, methods=["GET"]),
]
