"""Picks: the stories editors choose during the week, before a build freezes them.

`PickIn` is the one validator every entry point uses (command line, import files,
feeds, the desk), so a pick is checked the same way wherever it comes from.
"""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import urlsplit

import nh3
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from digest.clock import utcnow
from digest.editorial.models import Pick
from digest.errors import InputError, NotFound, StateError
from digest.store.base import MAX_ID

_WS = re.compile(r"\s+")
#: C0 and C1 controls (never text; C1 ones are usually mis-decoded Windows-1252) and
#: the noncharacters U+FFFE/U+FFFF (never text either; they break the MJML parser).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffe\uffff]")
MAX_URL = 2048


def plain_text(value: str, *, multiline: bool = False) -> str:
    """Strip markup and control characters: picks hold plain text, templates escape it."""
    value = html.unescape(nh3.clean(value, tags=set()))
    value = _CONTROL.sub("", value)
    if multiline:
        paragraphs = [_WS.sub(" ", p).strip() for p in re.split(r"\n\s*\n", value)]
        return "\n\n".join(p for p in paragraphs if p)
    return _WS.sub(" ", value).strip()


def check_url(value: str, *, field: str = "url") -> str:
    """Absolute http(s) URLs only: no javascript:, data:, relative or spaced URLs."""
    value = value.strip()
    if len(value) > MAX_URL:
        raise ValueError(f"is longer than {MAX_URL} characters")
    if not value.isprintable() or " " in value:  # also controls and invisible characters
        raise ValueError("must not contain spaces, line breaks or invisible characters")
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError(f"must be an http:// or https:// URL, got {value[:60]!r}")
    if not parts.hostname:
        raise ValueError(f"has no host name: {value[:60]!r}")
    return value


class PickIn(BaseModel):
    """A validated pick, before it is stored. Sections are checked by `validate_pick`."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    url: str
    title: str = Field(min_length=1, max_length=300)
    summary: str = Field("", max_length=2000)
    section: str = "News"
    image_url: str | None = None
    image_alt: str = Field("", max_length=300)
    image_credit: str = Field("", max_length=200)
    byline: str = Field("", max_length=200)
    read_minutes: int | None = Field(None, ge=1, le=600)
    tags: list[str] = Field(default_factory=list, max_length=20)
    featured: bool = False

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return check_url(v)

    @field_validator("image_url", mode="before")
    @classmethod
    def _image(cls, v: Any) -> Any:
        if v is None or (isinstance(v, str) and not v.strip()):
            return None
        return check_url(str(v), field="image_url")

    @field_validator("title", "image_alt", "image_credit", "byline", "section", mode="before")
    @classmethod
    def _line(cls, v: Any) -> Any:
        return plain_text(v) if isinstance(v, str) else v

    @field_validator("summary", mode="before")
    @classmethod
    def _para(cls, v: Any) -> Any:
        return plain_text(v, multiline=True) if isinstance(v, str) else v

    @field_validator("tags", mode="before")
    @classmethod
    def _tags(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = v.split(",")
        if isinstance(v, list):
            v = [plain_text(str(t))[:60] for t in v]
            return [t for t in v if t]
        return v


def validate_pick(
    data: dict[str, Any],
    sections: list[str],
    *,
    source: str | None = None,
    line: int | None = None,
) -> PickIn:
    """Validate one record; errors name the source, line (or item) and field."""
    try:
        pick = PickIn.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err.get("loc", ())) or None
        msg = err.get("msg", "invalid").removeprefix("Value error, ")
        raise InputError(msg, source=source, line=line, field=field) from None
    canonical = {s.lower(): s for s in sections}
    if pick.section.lower() not in canonical:
        raise InputError(
            f"unknown section {pick.section!r}; allowed: {', '.join(sections)}",
            source=source,
            line=line,
            field="section",
        )
    pick.section = canonical[pick.section.lower()]
    return pick


# -- store ---------------------------------------------------------------------------------
#
# Picks belong to an edition. Their order is the order readers see: the featured story
# first, then the sections in their configured order, each by position. Everything that
# lists or moves picks (the CLI, the desk, the render) uses `live_picks`, so moving a
# pick moves it in the email.


def email_order(rows: list[Pick], sections: list[str]) -> list[Pick]:
    """Featured first, then by section (configured order, unknown ones last), then position."""
    rank = {s: i for i, s in enumerate(sections)}
    return sorted(
        rows,
        key=lambda p: (
            not p.featured,
            rank.get(p.section, len(rank)),
            p.section if p.section not in rank else "",
            p.position,
            p.id,
        ),
    )


def live_picks(session: Session, edition_id: int, sections: list[str]) -> list[Pick]:
    """An edition's picks (not removed), in the order the email shows them."""
    rows = session.scalars(
        select(Pick).where(Pick.edition_id == edition_id, Pick.removed_at.is_(None))
    ).all()
    return email_order(list(rows), sections)


def add_pick(session: Session, edition_id: int, pick: PickIn) -> Pick:
    """Append a pick at the end of its section in the edition."""
    last = session.scalar(
        select(func.max(Pick.position)).where(
            Pick.edition_id == edition_id, Pick.removed_at.is_(None)
        )
    )
    row = Pick(**pick.model_dump(), edition_id=edition_id, position=(last or 0) + 1)
    if pick.featured:
        _clear_featured(session, edition_id)
    session.add(row)
    session.flush()
    return row


def same_url(
    session: Session, edition_id: int, url: str, *, exclude: int | None = None
) -> list[Pick]:
    """Other live picks of the edition with this URL (an editor picked it twice)."""
    key = url.strip().rstrip("/")
    rows = session.scalars(
        select(Pick).where(
            Pick.edition_id == edition_id, Pick.removed_at.is_(None), Pick.id != (exclude or -1)
        )
    )
    return [p for p in rows if p.url.strip().rstrip("/") == key]


def _clear_featured(session: Session, edition_id: int) -> None:
    for other in session.scalars(
        select(Pick).where(Pick.edition_id == edition_id, Pick.featured.is_(True))
    ):
        other.featured = False


def get_pick(session: Session, pick_id: int) -> Pick:
    row = session.get(Pick, pick_id) if 0 < pick_id <= MAX_ID else None
    if row is None:
        raise NotFound(f"no pick with id {pick_id} (see `digest picks list`)")
    return row


def editable(session: Session, pick_id: int, edition_id: int | None = None) -> Pick:
    """A pick that may change: in an open edition (and in `edition_id` when given)."""
    from digest.editorial.models import OPEN, Edition

    row = get_pick(session, pick_id)
    edition = session.get(Edition, row.edition_id)
    if edition_id is not None and row.edition_id != edition_id:
        raise NotFound(f"pick {pick_id} is not in this edition (see `digest picks list`)")
    if edition is None or edition.status not in OPEN:
        raise StateError(f"pick {pick_id} belongs to an edition that is already being sent")
    if row.removed_at is not None:
        raise NotFound(f"pick {pick_id} was removed")
    return row


def update_pick(session: Session, pick_id: int, pick: PickIn) -> Pick:
    row = editable(session, pick_id)
    if pick.featured and not row.featured:
        _clear_featured(session, row.edition_id)
    for key, value in pick.model_dump().items():
        setattr(row, key, value)
    session.flush()
    return row


def set_featured(session: Session, pick_id: int) -> Pick:
    row = editable(session, pick_id)
    _clear_featured(session, row.edition_id)
    row.featured = True
    session.flush()
    return row


def remove_pick(session: Session, pick_id: int) -> Pick:
    """Take a pick out of the edition; `restore_pick` undoes it."""
    row = editable(session, pick_id)
    row.removed_at = utcnow()
    session.flush()
    return row


def restore_pick(session: Session, pick_id: int) -> Pick:
    """Undo a removal (while the edition is still open)."""
    from digest.editorial.models import OPEN, Edition

    row = get_pick(session, pick_id)
    edition = session.get(Edition, row.edition_id)
    if edition is None or edition.status not in OPEN:
        raise StateError(f"pick {pick_id} belongs to an edition that is already being sent")
    if row.featured and any(
        p.featured for p in live_picks(session, row.edition_id, []) if p.id != row.id
    ):
        row.featured = False  # another story was featured meanwhile
    row.removed_at = None
    session.flush()
    return row


def move_pick(
    session: Session, pick_id: int, position: int, sections: list[str]
) -> tuple[list[Pick], str]:
    """Move a pick to 1-based `position` in the email's order.

    A pick stays within its own section (and the featured story stays first): a
    position outside that block moves it to the block's nearest end, and the note
    says so. Returns the new order and the note ("" when the move was exact).
    """
    if position < 1:
        raise InputError(f"position must be 1 or more, got {position}", field="POSITION")
    row = editable(session, pick_id)
    order = live_picks(session, row.edition_id, sections)
    block = [
        p
        for p in order
        if p.featured == row.featured and (row.featured or p.section == row.section)
    ]
    start = order.index(block[0]) + 1
    end = start + len(block) - 1
    note = ""
    if not start <= position <= end:
        where = "the featured story" if row.featured else f"the {row.section} section"
        note = (
            f"pick {pick_id} stays in {where} (positions {start}-{end}); "
            f"change its section with `digest picks edit {pick_id} --section ...`"
        )
        position = min(max(position, start), end)
    others = [p for p in block if p.id != row.id]
    others.insert(position - start, row)
    for i, p in enumerate(others, start=1):
        p.position = i
    session.flush()
    return live_picks(session, row.edition_id, sections), note


def pick_to_dict(p: Pick) -> dict[str, Any]:
    """The snapshot form of a pick, as frozen into an edition."""
    return {
        "id": p.id,
        "url": p.url,
        "title": p.title,
        "summary": p.summary,
        "section": p.section,
        "image_url": p.image_url,
        "image_alt": p.image_alt,
        "image_credit": p.image_credit,
        "byline": p.byline,
        "read_minutes": p.read_minutes,
        "tags": list(p.tags or []),
        "featured": bool(p.featured),
        "position": p.position,
    }
