"""`digest stats`: what readers read, per story and per edition."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from digest.cli.app import app
from digest.cli.common import console, session, settings
from digest.cli.options import NewsletterOpt

if TYPE_CHECKING:
    from digest.stats.report import EditionRow, StoryRow

EditionOpt = Annotated[
    str | None,
    typer.Option(
        "--edition",
        "--issue",
        metavar="KEY",
        help="Edition key like 2026-W49 (default: the latest sent edition).",
    ),
]
CsvOpt = Annotated[
    Path | None,
    typer.Option(
        "--csv",
        metavar="FILE",
        help="Also write a CSV file: the editions, or with --edition that edition's stories.",
    ),
]


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


@app.command("stats")
def stats(
    newsletter: NewsletterOpt = None,
    edition: EditionOpt = None,
    csv: CsvOpt = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="Editions to list.")] = 12,
) -> None:
    """Clicks per story (title, section, clicks, share) and per edition: delivered,
    failed, bounced, complaints, unsubscribes and click-through.

    Without --edition: the latest sent edition's stories and the last editions. How
    clicks are counted (DIGEST_CLICK_STATS, scanners left out): docs/stats.md.
    """
    from digest.editorial import editions, newsletters
    from digest.editorial.models import Edition
    from digest.stats import export, report

    s = settings()
    with session() as db:
        nl = newsletters.resolve(db, s, newsletter)
        own = newsletters.settings_for(s, nl)
        rows = report.editions(db, nl, limit)
        chosen = editions.get(db, nl, edition) if edition else None
        if chosen is None and rows:
            chosen = db.get(Edition, rows[0].id)
        story_rows = report.stories(db, chosen) if chosen is not None else []
    console.print(f"{nl.slug}: {own.list_name} · click counting: {s.click_stats}")
    if chosen is None:
        console.print("No edition has been sent yet: nothing to count.")
    else:
        row = next((r for r in rows if r.id == chosen.id), None)
        _stories(chosen.key, str(chosen.status), story_rows, row)
    if rows:
        _editions(rows, own.tz)
    if csv is not None:
        if edition and chosen is not None:
            export.write(csv, export.story_table(chosen.key, story_rows))
            console.print(f"Wrote {len(story_rows)} stories of {chosen.key} to {csv}")
        else:
            export.write(csv, export.edition_table(rows))
            console.print(f"Wrote {len(rows)} editions to {csv}")


def _stories(key: str, status: str, rows: list[StoryRow], summary: EditionRow | None) -> None:
    total = sum(r.clicks for r in rows)
    head = f"Edition {key} ({status}): {len(rows)} stories, {total} clicks"
    if summary is not None:
        head += f", click-through {_percent(summary.click_through)}"
        if summary.mode == "off":
            head += " (sent with direct links: clicks were not counted)"
    console.print(head)
    for r in rows:
        readers = "" if r.readers is None else f", {r.readers} readers"
        console.print(
            f"  {r.position:>2}. {r.title} [{r.section}] {r.clicks} clicks "
            f"({_percent(r.share)}){readers}",
            markup=False,
        )


def _editions(rows: list[EditionRow], tz: object) -> None:
    from rich.table import Table

    table = Table(
        "edition",
        "sent",
        "delivered",
        "failed",
        "bounced",
        "complaints",
        "unsubscribes",
        "clicks",
        "click-through",
        title="Editions",
        title_justify="left",
    )
    for r in rows:
        sent = f"{r.started.astimezone(tz):%d %b %Y}" if r.started else "-"  # type: ignore[arg-type]
        counts = (r.delivered, r.failed, r.bounced, r.complaints, r.unsubscribes, r.clicks)
        table.add_row(r.key, sent, *map(str, counts), _percent(r.click_through))
    console.print(table)
