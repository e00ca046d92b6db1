"""The desk's front page: each newsletter's next edition, its picks in the email's order,
its subject and intro, when it goes out, sends in progress and past editions.

The newsletter comes from `?newsletter=SLUG` (every link and form on the desk carries it);
without one, the default. The edition is always the newsletter's open one, found by the
same resolver the command line and the scheduler use (digest.delivery.campaign.target),
so the desk never works on anything else. Picks are shown grouped and ordered exactly as
the email shows them: the lead story, then the sections in their order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from digest.delivery import campaign, ledger
from digest.delivery.models import DeliveryStatus
from digest.editorial import editions, newsletters, picks
from digest.editorial.models import Edition, EditionStatus, Newsletter, Pick
from digest.errors import DigestError, InputError, NotFound, StateError
from digest.settings import Settings
from digest.web.auth import editor_required
from digest.web.context import db, settings_of
from digest.web.pages import local_time, render
from digest.web.security import require_csrf
from subscribers import subscriptions

NOTICES = {
    "added": "Pick added.",
    "added-alt": "Pick added. The picture had no alt text, so the headline stands in for it; "
    "edit the pick to describe the picture.",
    "saved": "Pick saved.",
    "moved": "Pick moved.",
    "featured": "Lead story changed.",
    "removed": "Pick removed.",
    "restored": "Pick restored.",
    "edition": "Subject, preheader and intro saved.",
    "scheduled": "Send time saved.",
    "paused": "Send paused: no new messages go out; those in flight finish.",
    "resumed": "Send resumed: the scheduler carries it on within seconds.",
    "cancelled": "Send cancelled: what was still owed is skipped.",
}


@dataclass
class Row:
    """One pick as the desk lists it."""

    pick: Pick
    position: int  # in the email's order
    first: bool  # first of its block (cannot move up)
    last: bool  # last of its block (cannot move down)
    movable: bool = True  # its block has other picks


@dataclass
class NewsletterTab:
    slug: str
    name: str
    key: str
    planned: datetime | None
    current: bool


@dataclass
class DeskState:
    newsletter: Newsletter
    own: Settings
    edition: Edition
    tabs: list[NewsletterTab]
    lead: Row | None
    sections: list[tuple[str, list[Row]]]
    subscribers: int
    sending: list[tuple[Edition, dict[DeliveryStatus, int]]] = field(default_factory=list)
    past: list[tuple[Edition, dict[DeliveryStatus, int]]] = field(default_factory=list)
    removed: Pick | None = None

    @property
    def count(self) -> int:
        return (1 if self.lead else 0) + sum(len(rows) for _, rows in self.sections)


def slug_of(request: Request, form: FormData | None = None) -> str | None:
    """The newsletter a desk request is about (a form field, else the query)."""
    value = (form.get("newsletter") if form is not None else None) or request.query_params.get(
        "newsletter"
    )
    return str(value)[:40] if value else None


def desk_url(slug: str, anchor: str = "", **query: str | int) -> str:
    """A desk link that keeps the newsletter (slugs are [a-z0-9-], nothing to escape)."""
    parts = [f"newsletter={slug}"] + [f"{k}={v}" for k, v in query.items()]
    return f"/desk/?{'&'.join(parts)}" + (f"#{anchor}" if anchor else "")


def _rows(session: Session, edition: Edition, sections: list[str]) -> tuple[Row | None, list]:
    """The lead story and the sections, each with its picks, as the email shows them.

    Up and Down move a pick within its block, as `picks.move_pick` does: a featured lead
    is a block of its own; an unfeatured lead (the email's first pick) is the head of its
    section, so the story after it can move up and become the lead.
    """
    ordered = picks.live_picks(session, edition.id, sections)
    if not ordered:
        return None, []
    head = ordered[0]
    blocks: dict[str, list[Pick]] = {}
    for p in ordered[1:]:
        blocks.setdefault(p.section, []).append(p)
    joined = [] if head.featured else blocks.get(head.section, [])
    lead = Row(head, 1, True, not joined, movable=bool(joined))
    out, position = [], 2
    for name, items in blocks.items():
        rows = []
        for i, p in enumerate(items):
            first = i == 0 and items is not joined
            rows.append(Row(p, position, first, i == len(items) - 1, len(items) > 1 or not first))
            position += 1
        out.append((name, rows))
    return lead, out


def state_of(session: Session, request: Request, slug: str | None) -> DeskState:
    settings = settings_of(request)
    t = campaign.target(session, settings, slug)
    tabs = []
    for nl in newsletters.all_(session):
        nxt = editions.open_edition(session, settings, nl)
        name = newsletters.settings_for(settings, nl).list_name
        tabs.append(NewsletterTab(nl.slug, name, nxt.key, nxt.planned_at, nl.id == t.newsletter.id))
    lead, sections = _rows(session, t.edition, t.settings.sections)
    recent = editions.list_editions(session, t.newsletter, 25)
    sending = [(e, ledger.counts(session, e.id)) for e in recent if e.status == "sending"]
    past = [(e, ledger.counts(session, e.id)) for e in recent if e.status == "sent"]
    undo = request.query_params.get("undo", "")
    removed = None
    if undo.isdigit() and len(undo) < 19:
        row = session.get(Pick, int(undo))
        if row is not None and row.removed_at is not None and row.edition_id == t.edition.id:
            removed = row
    return DeskState(
        t.newsletter,
        t.settings,
        t.edition,
        tabs,
        lead,
        sections,
        subscriptions.mailable_count(session, t.newsletter.id),
        sending,
        past,
        removed,
    )


def status_code(exc: DigestError) -> int:
    return 404 if isinstance(exc, NotFound) else 409 if isinstance(exc, StateError) else 400


def message(exc: DigestError) -> str:
    return str(exc).removeprefix("desk: ")


async def home_page(
    request: Request,
    *,
    slug: str | None = None,
    error: DigestError | None = None,
    form: FormData | None = None,
    status: int = 200,
) -> Response:
    slug = slug or slug_of(request, form)
    try:
        state = await db(request, lambda s: state_of(s, request, slug))
    except NotFound as exc:  # an unknown ?newsletter=: the default newsletter, and why
        state = await db(request, lambda s: state_of(s, request, None))
        error, status = exc, 404
    return render(
        request,
        "desk.html",
        {
            "state": state,
            "sections": state.own.sections,
            # a removal's own notice carries its Undo: one status region, not two
            "notice": None if state.removed else NOTICES.get(request.query_params.get("ok", "")),
            "error": message(error) if error else None,
            "error_field": getattr(error, "field", None),
            "form": form or {},
            "desk_url": desk_url,
            # times in the newsletter's own zone, as its schedule is
            "when": lambda value: local_time(value, state.own),
        },
        status_code=status,
    )


@editor_required
async def home(request: Request) -> Response:
    return await home_page(request)


@editor_required
async def edit_edition(request: Request) -> Response:
    """The next edition's subject, preheader and intro."""
    form = await request.form()
    require_csrf(request, form)
    settings, slug = settings_of(request), slug_of(request, form)

    def go(session: Session) -> str:
        t = campaign.target(session, settings, slug)
        if str(form.get("key") or "") != t.edition.key:
            raise StateError(
                f"edition {form.get('key')} is no longer the one being prepared; reload the desk"
            )
        editions.edit(
            session,
            t.edition,
            subject=str(form.get("subject") or ""),
            preheader=str(form.get("preheader") or ""),
            intro=str(form.get("intro") or ""),
        )
        return t.newsletter.slug

    try:
        done = await db(request, go)
    except DigestError as exc:
        return await home_page(request, error=exc, form=form, status=status_code(exc))
    return RedirectResponse(desk_url(done, "edition", ok="edition"), 303)


@editor_required
async def schedule(request: Request) -> Response:
    """Send the next edition at a chosen time, or back at the schedule's next slot."""
    form = await request.form()
    require_csrf(request, form)
    settings, slug = settings_of(request), slug_of(request, form)

    def go(session: Session) -> str:
        from digest.clock import utcnow

        t = campaign.target(session, settings, slug)
        if form.get("action") == "slot":
            editions.roll_to_next_slot(session, settings, t.newsletter, t.edition)
            return t.newsletter.slug
        raw = str(form.get("at") or "").strip()
        try:
            local = datetime.fromisoformat(raw)
        except ValueError:
            raise InputError("choose a date and time", field="at") from None
        when = local.replace(tzinfo=t.settings.tz) if local.tzinfo is None else local
        if when <= utcnow():
            raise InputError("that time has passed; use Send now on the preview", field="at")
        editions.reschedule(session, settings, t.newsletter, t.edition, when)
        return t.newsletter.slug

    try:
        done = await db(request, go)
    except DigestError as exc:
        return await home_page(request, error=exc, form=form, status=status_code(exc))
    return RedirectResponse(desk_url(done, "when", ok="scheduled"), 303)


@editor_required
async def control(request: Request) -> Response:
    """Pause, resume or cancel the send of an edition (the same calls as `digest send`)."""
    form = await request.form()
    require_csrf(request, form)
    settings, slug = settings_of(request), slug_of(request, form)
    key, action = str(request.path_params["key"]), str(request.path_params["action"])
    if action not in ("pause", "resume", "cancel"):
        raise HTTPException(404)
    engine = request.app.state.engine
    try:
        editions.check_key(key)
        if action == "pause":
            t = await _thread(campaign.pause, engine, settings, slug, key)
        elif action == "resume":  # the scheduler (or `digest worker`) carries it on
            t = await _thread(campaign.resume, engine, settings, slug, key)
        else:
            reason = str(form.get("reason") or "").strip()[:200] or "cancelled on the desk"
            t, _n = await _thread(campaign.cancel, engine, settings, slug, key, reason=reason)
    except DigestError as exc:
        return await home_page(request, error=exc, form=form, status=status_code(exc))
    done = {"pause": "paused", "resume": "resumed", "cancel": "cancelled"}[action]
    return RedirectResponse(desk_url(t.newsletter.slug, "sending", ok=done), 303)


async def _thread(fn: Any, *args: Any, **kwargs: Any) -> Any:
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(lambda: fn(*args, **kwargs))


def sending_of(session: Session, newsletter_id: int) -> list[Edition]:
    return list(
        session.scalars(
            select(Edition).where(
                Edition.newsletter_id == newsletter_id, Edition.status == EditionStatus.SENDING
            )
        )
    )


routes = [
    Route("/desk/", home, methods=["GET"]),
    Route("/desk/edition", edit_edition, methods=["POST"]),
    Route("/desk/issue", edit_edition, methods=["POST"]),  # the old form action
    Route("/desk/edition/schedule", schedule, methods=["POST"]),
    Route("/desk/editions/{key}/{action:str}", control, methods=["POST"]),
]
