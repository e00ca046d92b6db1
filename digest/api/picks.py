"""/api/v1/picks: the next edition's stories, for a CMS that posts what editors mark.

Picks go through the command line's functions (digest.editorial.picks) and its model
(PickIn), so a pick posted here is checked exactly like `digest picks add`. A URL that is
already in the edition, or went out in one of the newsletter's last 4 editions, answers
409 naming that edition, unless the body says `"force": true`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session

from digest.api.schemas import EditionRef, MoveIn, MoveOut, PickCreate, PickList, PickOut, PickPatch
from digest.api.spec import PREFIX, ApiError, Call, Reply, operation
from digest.delivery import campaign
from digest.editorial import newsletters, picks, repeats
from digest.editorial.models import Edition, Newsletter, Pick

TAG = "picks"
EXAMPLE = {
    "url": "https://www.themoscowtimes.com/2026/11/27/a-new-bridge-over-the-volga-a91234",
    "title": "A new bridge over the Volga opens after twelve years",
    "summary": "The crossing at Kazan halves the trip between two regions.",
    "section": "News",
    "byline": "By AFP",
    "read_minutes": 3,
}


def validated(model: type[BaseModel], body: dict[str, Any] | None) -> Any:
    """The body as `model`, or 422 naming the first bad field."""
    try:
        return model.model_validate(body or {})
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err.get("loc", ())) or None
        raise ApiError(
            422, err.get("msg", "invalid").removeprefix("Value error, "), where
        ) from None


def edition_ref(edition: Edition) -> EditionRef:
    return EditionRef(key=edition.key, status=str(edition.status), planned_at=edition.planned_at)


def pick_out(row: Pick, edition: Edition, order: int) -> BaseModel:
    data = picks.pick_to_dict(row)
    data.pop("position")
    return PickOut(**data, edition=edition.key, order=order)


def _force(body: dict[str, Any]) -> bool:
    force = body.pop("force", False)
    if not isinstance(force, bool):
        raise ApiError(422, "must be true or false", "force")
    return force


def _check_repeat(session: Session, edition: Edition, url: str, exclude: int | None) -> None:
    earlier = repeats.earlier_uses(session, edition, [url], exclude=exclude).get(url)
    if earlier is None:
        return
    if earlier.sent:
        where = f"was sent in edition {earlier.edition_key} (pick {earlier.pick_id})"
    else:
        where = f"is already pick {earlier.pick_id} of this edition {earlier.edition_key}"
    raise ApiError(
        409,
        f'this URL {where}; send "force": true to pick it anyway',
        "url",
        edition=earlier.edition_key,
        pick_id=earlier.pick_id,
    )


def _ordered(session: Session, sections: list[str], edition: Edition, pick_id: int) -> BaseModel:
    rows = picks.live_picks(session, edition.id, sections)
    for i, row in enumerate(rows, start=1):
        if row.id == pick_id:
            return pick_out(row, edition, i)
    raise ApiError(404, f"pick {pick_id} was removed")


def _locate(session: Session, call: Call) -> tuple[Pick, Edition, Newsletter, list[str]]:
    """The pick in the path, its edition, newsletter and sections (the key must allow it)."""
    row = picks.get_pick(session, int(call.path("pick_id")))
    edition = session.get(Edition, row.edition_id)
    assert edition is not None
    nl = newsletters.get_by_id(session, edition.newsletter_id)
    call.allow(session, nl.id)
    wanted = call.query("newsletter")
    if wanted and wanted != nl.slug:
        raise ApiError(404, f"pick {row.id} is not in the newsletter {wanted!r}")
    return row, edition, nl, newsletters.settings_for(call.settings, nl).sections


@operation(
    "GET",
    "/picks",
    summary="List the next edition's picks",
    scope="picks",
    tag=TAG,
    answer=PickList,
)
async def list_picks(call: Call) -> Reply:
    """The newsletter's next (open) edition and its picks, in the order the email shows
    them: the featured story, then the sections in their order."""

    def go(session: Session) -> PickList:
        nl = call.newsletter(session)
        t = campaign.target(session, call.settings, nl.slug)
        rows = picks.live_picks(session, t.edition.id, t.settings.sections)
        return PickList(
            newsletter=nl.slug,
            edition=edition_ref(t.edition),
            picks=[pick_out(p, t.edition, i) for i, p in enumerate(rows, start=1)],
        )

    return Reply(200, await call.db(go))


@operation(
    "POST",
    "/picks",
    summary="Add a pick to the next edition",
    scope="picks",
    tag=TAG,
    ok=201,
    answer=PickOut,
    body=PickCreate,
    errors=(409,),
    example=EXAMPLE,
)
async def add_pick(call: Call) -> Reply:
    """Appends the story at the end of its section (default: the newsletter's first).
    Validated like `digest picks add`; a picture without alt text gets the headline."""
    body = dict(call.body or {})
    force = _force(body)

    def go(session: Session) -> BaseModel:
        nl = call.newsletter(session)
        t = campaign.target(session, call.settings, nl.slug)
        sections = t.settings.sections
        body.setdefault("section", sections[0])
        pick = picks.validate_pick(body, sections)
        if pick.image_url and not pick.image_alt:
            pick.image_alt = pick.title
        if not force:
            _check_repeat(session, t.edition, pick.url, None)
        row = picks.add_pick(session, t.edition.id, pick)
        return _ordered(session, sections, t.edition, row.id)

    out = await call.db(go)
    return Reply(201, out, {"Location": f"{PREFIX}/picks/{out.id}"})  # type: ignore[attr-defined]


@operation(
    "GET", "/picks/{pick_id:int}", summary="One pick", scope="picks", tag=TAG, answer=PickOut
)
async def get_pick(call: Call) -> Reply:
    """A pick of any edition of the newsletter (removed picks are gone: 404)."""

    def go(session: Session) -> BaseModel:
        row, edition, _nl, sections = _locate(session, call)
        return _ordered(session, sections, edition, row.id)

    return Reply(200, await call.db(go))


@operation(
    "PATCH",
    "/picks/{pick_id:int}",
    summary="Change a pick",
    scope="picks",
    tag=TAG,
    answer=PickOut,
    body=PickPatch,
    errors=(409,),
    example={"title": "A new title"},
)
async def update_pick(call: Call) -> Reply:
    """Changes the given fields; the pick is validated as a whole, like `digest picks
    edit`. Only picks of an edition that has not started sending change (else 409)."""
    changes = validated(PickPatch, call.body).model_dump(exclude_unset=True)
    force = bool(changes.pop("force", False))

    def go(session: Session) -> BaseModel:
        row, edition, _nl, sections = _locate(session, call)
        picks.editable(session, row.id)
        data = picks.pick_to_dict(row)
        data.pop("id"), data.pop("position")
        data.update(changes)
        pick = picks.validate_pick(data, sections)
        if "url" in changes and not force:
            _check_repeat(session, edition, pick.url, row.id)
        picks.update_pick(session, row.id, pick)
        return _ordered(session, sections, edition, row.id)

    return Reply(200, await call.db(go))


@operation(
    "DELETE",
    "/picks/{pick_id:int}",
    summary="Remove a pick",
    scope="picks",
    tag=TAG,
    ok=204,
    errors=(409,),
)
async def remove_pick(call: Call) -> Reply:
    """Takes the pick out of its edition (POST .../restore brings it back while the
    edition is open)."""

    def go(session: Session) -> None:
        row, _edition, _nl, _sections = _locate(session, call)
        picks.remove_pick(session, row.id)

    await call.db(go)
    return Reply(204)


@operation(
    "POST",
    "/picks/{pick_id:int}/restore",
    summary="Bring back a removed pick",
    scope="picks",
    tag=TAG,
    answer=PickOut,
    errors=(409,),
)
async def restore_pick(call: Call) -> Reply:
    """Undoes a removal while the edition is still open."""

    def go(session: Session) -> BaseModel:
        row, edition, _nl, sections = _locate(session, call)
        picks.restore_pick(session, row.id)
        return _ordered(session, sections, edition, row.id)

    return Reply(200, await call.db(go))


@operation(
    "POST",
    "/picks/{pick_id:int}/move",
    summary="Move a pick",
    scope="picks",
    tag=TAG,
    answer=MoveOut,
    body=MoveIn,
    errors=(409,),
    example={"position": 1},
)
async def move_pick(call: Call) -> Reply:
    """Moves the pick to a 1-based position in the email's order. A pick stays within its
    section (the featured story stays first): `note` says where it landed instead."""
    wanted = validated(MoveIn, call.body)

    def go(session: Session) -> MoveOut:
        row, edition, _nl, sections = _locate(session, call)
        rows, note = picks.move_pick(session, row.id, wanted.position, sections)
        return MoveOut(
            picks=[pick_out(p, edition, i) for i, p in enumerate(rows, start=1)], note=note
        )

    return Reply(200, await call.db(go))
