"""The desk's front page: this week's picks (add, edit, reorder, feature, remove),
the issue's subject, preheader and intro, the next send time and past issues.

Every change goes through the same functions as the command line (`digest.picks`,
`digest.issues.edit`), so a pick is checked the same way wherever it comes from.
Forms post here and redirect back (POST/redirect/GET); a rejected form is shown
again with the editor's input and the reason, naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from digest.delivery import ledger
from digest.delivery.models import DeliveryStatus
from digest.editorial import editions, picks
from digest.editorial.models import Issue, Pick
from digest.errors import DigestError, InputError, NotFound, SettingsError, StateError
from digest.web.auth import editor_required
from digest.web.context import db, settings_of
from digest.web.pages import render
from digest.web.security import require_csrf
from digest.web.week import next_send, working_key

NOTICES = {
    "added": "Pick added.",
    "added-alt": "Pick added. The picture had no alt text, so the headline stands in for it; "
    "edit the pick to describe the picture.",
    "saved": "Pick saved.",
    "moved": "Pick moved.",
    "featured": "Featured story changed.",
    "removed": "Pick removed.",
    "issue": "Subject, preheader and intro saved.",
}
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


@dataclass
class DeskState:
    key: str
    issue: Issue | None
    picks: list[Pick]
    past: list[tuple[Issue, dict[DeliveryStatus, int]]] = field(default_factory=list)


def _state(session: Session, request: Request) -> DeskState:
    settings = settings_of(request)
    key = working_key(session, settings)
    past = [
        (row, ledger.counts(session, row.id))
        for row in editions.list_issues(session, 20)
        if row.key != key
    ]
    return DeskState(key, editions.find_issue(session, key), picks.unfrozen(session), past)


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


def _checked(form: FormData, sections: list[str]) -> tuple[picks.PickIn, bool]:
    """A validated pick; True when alt text was missing and the title stands in (as the CLI)."""
    pick = picks.validate_pick(pick_data(form, sections), sections, source="desk")
    if pick.image_url and not pick.image_alt:
        pick.image_alt = pick.title
        return pick, True
    return pick, False


def _status(exc: DigestError) -> int:
    return 404 if isinstance(exc, NotFound) else 409 if isinstance(exc, StateError) else 400


def _message(exc: DigestError) -> str:
    return str(exc).removeprefix("desk: ")


async def _home(
    request: Request,
    *,
    error: DigestError | None = None,
    form: FormData | None = None,
    status_code: int = 200,
) -> Response:
    settings = settings_of(request)
    state = await db(request, lambda s: _state(s, request))
    try:
        when, schedule_problem = next_send(settings), None
    except SettingsError as exc:  # the scheduler refuses this schedule; say why
        when, schedule_problem = None, str(exc)
    return render(
        request,
        "desk.html",
        {
            "state": state,
            "sections": settings.sections,
            "next_send": when,
            "schedule": settings.schedule,
            "schedule_problem": schedule_problem,
            "notice": NOTICES.get(request.query_params.get("ok", "")),
            "error": _message(error) if error else None,
            "error_field": getattr(error, "field", None),
            "form": form or {},
        },
        status_code=status_code,
    )


@editor_required
async def home(request: Request) -> Response:
    return await _home(request)


@editor_required
async def add(request: Request) -> Response:
    form = await request.form()
    require_csrf(request, form)
    sections = settings_of(request).sections
    try:
        pick, alt_missing = _checked(form, sections)
        row = await db(request, lambda s: picks.add_pick(s, pick))
    except DigestError as exc:
        return await _home(request, error=exc, form=form, status_code=_status(exc))
    ok = "added-alt" if alt_missing else "added"
    return RedirectResponse(f"/desk/?ok={ok}#pick-{row.id}", 303)


def _pick_id(request: Request) -> int:
    return int(request.path_params["pick_id"])


async def _edit_page(
    request: Request,
    pick_id: int,
    *,
    error: DigestError | None = None,
    form: FormData | None = None,
    status_code: int = 200,
) -> Response:
    try:
        row = await db(request, lambda s: picks.get_pick(s, pick_id))
    except NotFound as exc:
        return await _home(request, error=exc, status_code=404)
    return render(
        request,
        "pick_edit.html",
        {
            "pick": row,
            "values": form if form is not None else pick_values(row),
            "sections": settings_of(request).sections,
            "error": _message(error) if error else None,
            "error_field": getattr(error, "field", None),
        },
        status_code=status_code,
    )


@editor_required
async def edit_page(request: Request) -> Response:
    return await _edit_page(request, _pick_id(request))


@editor_required
async def update(request: Request) -> Response:
    form = await request.form()
    require_csrf(request, form)
    pick_id = _pick_id(request)
    try:
        pick, alt_missing = _checked(form, settings_of(request).sections)
        await db(request, lambda s: picks.update_pick(s, pick_id, pick))
    except DigestError as exc:
        return await _edit_page(request, pick_id, error=exc, form=form, status_code=_status(exc))
    return RedirectResponse(f"/desk/?ok={'added-alt' if alt_missing else 'saved'}", 303)


def _target(form: FormData, current: int, count: int) -> int:
    """'up', 'down', 'first', 'last' or a 1-based position."""
    to = str(form.get("to") or "").strip().lower()
    moves = {"up": current - 1, "down": current + 1, "first": 1, "last": count}
    if to in moves:
        return max(1, min(count, moves[to]))
    if to.isdigit() and int(to) >= 1:
        return int(to)
    raise InputError("must be up, down, first, last or a position (1, 2, ...)", field="to")


@editor_required
async def move(request: Request) -> Response:
    form = await request.form()
    require_csrf(request, form)
    pick_id = _pick_id(request)

    def go(session: Session) -> None:
        rows = picks.unfrozen(session)
        index = next((i for i, p in enumerate(rows, start=1) if p.id == pick_id), None)
        if index is None:
            picks.get_pick(session, pick_id)  # NotFound, or StateError below
            raise StateError(f"pick {pick_id} belongs to an issue that is already being sent")
        picks.move_pick(session, pick_id, _target(form, index, len(rows)))

    try:
        await db(request, go)
    except DigestError as exc:
        return await _home(request, error=exc, status_code=_status(exc))
    return RedirectResponse(f"/desk/?ok=moved#pick-{pick_id}", 303)


@editor_required
async def feature(request: Request) -> Response:
    form = await request.form()
    require_csrf(request, form)
    pick_id = _pick_id(request)
    try:
        await db(request, lambda s: picks.set_featured(s, pick_id))
    except DigestError as exc:
        return await _home(request, error=exc, status_code=_status(exc))
    return RedirectResponse(f"/desk/?ok=featured#pick-{pick_id}", 303)


@editor_required
async def remove(request: Request) -> Response:
    form = await request.form()
    require_csrf(request, form)
    pick_id = _pick_id(request)
    try:
        await db(request, lambda s: picks.remove_pick(s, pick_id))
    except DigestError as exc:
        return await _home(request, error=exc, status_code=_status(exc))
    return RedirectResponse("/desk/?ok=removed#picks", 303)


@editor_required
async def edit_issue(request: Request) -> Response:
    form = await request.form()
    require_csrf(request, form)
    settings = settings_of(request)

    def go(session: Session) -> None:
        key = editions.check_key(str(form.get("key") or ""))
        if key != working_key(session, settings):
            raise StateError(f"issue {key} is no longer the one being prepared; reload the desk")
        editions.edit(
            session,
            key,
            subject=str(form.get("subject") or ""),
            preheader=str(form.get("preheader") or ""),
            intro=str(form.get("intro") or ""),
        )

    try:
        await db(request, go)
    except (DigestError, ValueError) as exc:
        err = exc if isinstance(exc, DigestError) else InputError(str(exc), field="subject")
        return await _home(request, error=err, form=form, status_code=_status(err))
    return RedirectResponse("/desk/?ok=issue#issue", 303)


routes = [
    Route("/desk/", home, methods=["GET"]),
    Route("/desk/picks", add, methods=["POST"]),
    Route("/desk/picks/{pick_id:int}", edit_page, methods=["GET"]),
    Route("/desk/picks/{pick_id:int}", update, methods=["POST"]),
    Route("/desk/picks/{pick_id:int}/move", move, methods=["POST"]),
    Route("/desk/picks/{pick_id:int}/feature", feature, methods=["POST"]),
    Route("/desk/picks/{pick_id:int}/remove", remove, methods=["POST"]),
    Route("/desk/issue", edit_issue, methods=["POST"]),
]
