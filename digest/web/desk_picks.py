"""The desk's pick actions: add, edit (with Cancel), move, feature, remove (with Undo).

Every change goes through the same functions as the command line (digest.editorial.picks),
so a pick is checked the same way wherever it comes from. Forms post here and redirect
back (POST/redirect/GET); a rejected form is shown again with the editor's input and the
reason, naming the field. A pick moves within its section, as it does in the email.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from digest.delivery import campaign
from digest.editorial import newsletters, picks
from digest.editorial.models import Edition, Pick
from digest.errors import DigestError, InputError, NotFound
from digest.web.auth import editor_required
from digest.web.context import db, settings_of
from digest.web.desk import desk_url, home_page, message, slug_of, status_code
from digest.web.pages import render
from digest.web.security import require_csrf

PICK_FIELDS = (
    "url",
    "title",
    "summary",
    "section",
    "image_url",
    "image_alt",
    "image_credit",
    "byline",
    "read_minutes",
    "tags",
)
#: Ids are 64-bit integers in the store; anything longer is no pick (404, not an error).
MAX_ID = 2**63 - 1


def pick_data(form: FormData, sections: list[str]) -> dict[str, Any]:
    """The form's fields as `validate_pick` takes them (the same checks as the CLI)."""
    value = {name: str(form.get(name) or "").strip() for name in PICK_FIELDS}
    minutes = value["read_minutes"]
    if minutes and not minutes.isdigit():
        raise InputError("must be a whole number of minutes", field="read_minutes")
    return {
        **value,
        "section": value["section"] or sections[0],
        "image_url": value["image_url"] or None,
        "read_minutes": int(minutes) if minutes else None,
        "tags": [t for t in value["tags"].split(",") if t.strip()],
        "featured": form.get("featured") == "on",
    }


def pick_values(row: Pick) -> dict[str, Any]:
    """A stored pick as the form shows it."""
    values = picks.pick_to_dict(row)
    values["tags"] = ", ".join(values["tags"])
    values["read_minutes"] = values["read_minutes"] or ""
    return values


def checked(form: FormData, sections: list[str]) -> tuple[picks.PickIn, bool]:
    """A validated pick; True when alt text was missing and the title stands in (as the CLI)."""
    pick = picks.validate_pick(pick_data(form, sections), sections, source="desk")
    if pick.image_url and not pick.image_alt:
        pick.image_alt = pick.title
        return pick, True
    return pick, False


def _pick_id(request: Request) -> int:
    value = int(request.path_params["pick_id"])
    if value > MAX_ID:
        raise NotFound(f"no pick with id {value}")
    return value


def _context(session: Session, request: Request, pick_id: int) -> tuple[Pick, str, list[str]]:
    """The pick, its newsletter's slug and its sections."""
    row = picks.get_pick(session, pick_id)
    edition = session.get(Edition, row.edition_id)
    assert edition is not None
    nl = newsletters.get_by_id(session, edition.newsletter_id)
    return row, nl.slug, newsletters.settings_for(settings_of(request), nl).sections


@editor_required
async def add(request: Request) -> Response:
    form = await request.form()
    require_csrf(request, form)
    settings, slug = settings_of(request), slug_of(request, form)

    def go(session: Session) -> tuple[Pick, str, bool, int]:
        t = campaign.target(session, settings, slug)
        pick, alt_missing = checked(form, t.settings.sections)
        twice = len(picks.same_url(session, t.edition.id, pick.url))
        return picks.add_pick(session, t.edition.id, pick), t.newsletter.slug, alt_missing, twice

    try:
        row, done, alt_missing, twice = await db(request, go)
    except DigestError as exc:
        return await home_page(request, error=exc, form=form, status=status_code(exc))
    query: dict[str, str | int] = {"ok": "added-alt" if alt_missing else "added"}
    if twice:
        query["twice"] = row.id
    return RedirectResponse(desk_url(done, f"pick-{row.id}", **query), 303)


async def _edit_page(
    request: Request,
    pick_id: int,
    *,
    error: DigestError | None = None,
    form: FormData | None = None,
    status: int = 200,
) -> Response:
    try:
        row, slug, sections = await db(request, lambda s: _context(s, request, pick_id))
    except NotFound as exc:
        return await home_page(request, error=exc, status=404)
    return render(
        request,
        "pick_edit.html",
        {
            "pick": row,
            "values": form if form is not None else pick_values(row),
            "sections": sections,
            "cancel_url": desk_url(slug, f"pick-{row.id}"),
            "newsletter": slug,
            "error": message(error) if error else None,
            "error_field": getattr(error, "field", None),
        },
        status_code=status,
    )


@editor_required
async def edit_page(request: Request) -> Response:
    try:
        pick_id = _pick_id(request)
    except NotFound as exc:
        return await home_page(request, error=exc, status=404)
    return await _edit_page(request, pick_id)


@editor_required
async def update(request: Request) -> Response:
    form = await request.form()
    require_csrf(request, form)

    def go(session: Session) -> tuple[str, bool]:
        pick_id = _pick_id(request)
        _row, slug, sections = _context(session, request, pick_id)
        pick, alt_missing = checked(form, sections)
        picks.update_pick(session, pick_id, pick)
        return slug, alt_missing

    try:
        slug, alt_missing = await db(request, go)
    except NotFound as exc:
        return await home_page(request, error=exc, status=404)
    except DigestError as exc:
        return await _edit_page(
            request, _pick_id(request), error=exc, form=form, status=status_code(exc)
        )
    ok = "added-alt" if alt_missing else "saved"
    return RedirectResponse(desk_url(slug, f"pick-{_pick_id(request)}", ok=ok), 303)


def _target(to: str, current: int, first: int, last: int) -> int:
    """'up', 'down', 'first', 'last' (within the pick's section) or a 1-based position."""
    moves = {"up": current - 1, "down": current + 1, "first": first, "last": last}
    if to in moves:
        return max(first, min(last, moves[to]))
    if to.isdigit() and 1 <= int(to) < 10_000:
        return int(to)
    raise InputError("must be up, down, first, last or a position (1, 2, ...)", field="to")


async def _act(request: Request, action: str) -> Response:
    """Move, feature, remove or restore a pick, then back to the desk."""
    form = await request.form()
    require_csrf(request, form)
    to = str(form.get("to") or "").strip().lower()

    def go(session: Session) -> tuple[str, int]:
        pick_id = _pick_id(request)
        row, slug, sections = _context(session, request, pick_id)
        if action == "move":
            picks.editable(session, pick_id)
            order = picks.live_picks(session, row.edition_id, sections)
            index = next(i for i, p in enumerate(order, start=1) if p.id == pick_id)
            block = [
                i
                for i, p in enumerate(order, start=1)
                if p.featured == row.featured and (row.featured or p.section == row.section)
            ]
            picks.move_pick(session, pick_id, _target(to, index, block[0], block[-1]), sections)
        elif action == "feature":
            picks.set_featured(session, pick_id)
        elif action == "remove":
            picks.remove_pick(session, pick_id)
        else:
            picks.restore_pick(session, pick_id)
        return slug, pick_id

    try:
        slug, pick_id = await db(request, go)
    except DigestError as exc:
        return await home_page(request, error=exc, status=status_code(exc))
    if action == "remove":
        return RedirectResponse(desk_url(slug, "picks", ok="removed", undo=pick_id), 303)
    ok = {"move": "moved", "feature": "featured", "restore": "restored"}[action]
    return RedirectResponse(desk_url(slug, f"pick-{pick_id}", ok=ok), 303)


@editor_required
async def move(request: Request) -> Response:
    return await _act(request, "move")


@editor_required
async def feature(request: Request) -> Response:
    return await _act(request, "feature")


@editor_required
async def remove(request: Request) -> Response:
    return await _act(request, "remove")


@editor_required
async def restore(request: Request) -> Response:
    return await _act(request, "restore")


routes = [
    Route("/desk/picks", add, methods=["POST"]),
    Route("/desk/picks/{pick_id:int}", edit_page, methods=["GET"]),
    Route("/desk/picks/{pick_id:int}", update, methods=["POST"]),
    Route("/desk/picks/{pick_id:int}/move", move, methods=["POST"]),
    Route("/desk/picks/{pick_id:int}/feature", feature, methods=["POST"]),
    Route("/desk/picks/{pick_id:int}/remove", remove, methods=["POST"]),
    Route("/desk/picks/{pick_id:int}/restore", restore, methods=["POST"]),
]
