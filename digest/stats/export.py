"""Stats as CSV, for spreadsheets: the same columns from `digest stats --csv` and the desk.

Cells that a spreadsheet would run as a formula (a title starting with "=") are quoted
as subscriber exports are (subscribers.csvread.guard_cell). Nothing personal is in
them: counts per story and per edition only.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from digest.errors import InputError
from digest.stats.report import EditionRow, StoryRow
from subscribers.csvread import guard_cell

STORY_COLUMNS = ("edition", "position", "title", "section", "url", "clicks", "readers", "share")
EDITION_COLUMNS = (
    "edition",
    "status",
    "sent",
    "subject",
    "delivered",
    "failed",
    "bounced",
    "complaints",
    "unsubscribes",
    "clicks",
    "readers",
    "click_through",
)


def _ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).isoformat(timespec="seconds") if value else ""


def story_table(key: str, rows: Iterable[StoryRow]) -> list[list[str]]:
    out = [list(STORY_COLUMNS)]
    for r in rows:
        readers = "" if r.readers is None else str(r.readers)
        out.append(
            [key, str(r.position), r.title, r.section, r.url, str(r.clicks), readers]
            + [_ratio(r.share)]
        )
    return out


def edition_table(rows: Iterable[EditionRow]) -> list[list[str]]:
    out = [list(EDITION_COLUMNS)]
    for r in rows:
        counts = (r.delivered, r.failed, r.bounced, r.complaints, r.unsubscribes, r.clicks)
        readers = "" if r.readers is None else str(r.readers)
        out.append(
            [r.key, r.status, _when(r.started), r.subject, *map(str, counts), readers]
            + [_ratio(r.click_through)]
        )
    return out


def to_text(table: Sequence[Sequence[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for row in table:
        writer.writerow([guard_cell(cell) for cell in row])
    return buffer.getvalue()


def write(path: Path, table: Sequence[Sequence[str]]) -> None:
    """Write the file whole or not at all (a temporary file, then a rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(to_text(table), encoding="utf-8", newline="")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(
            f"cannot write the file: {exc.strerror or exc}", source=str(path)
        ) from None
