"""`digest picks ...`: this week's stories."""

from __future__ import annotations

from typing import Annotated

import typer

from digest.cli.common import console, session, settings
from digest.errors import InputError

picks_app = typer.Typer(
    help="Add, list, reorder and remove this week's picks.", no_args_is_help=True
)


@picks_app.command("add")
def add(
    url: Annotated[str, typer.Argument(help="The story's http(s) URL.")],
    title: Annotated[str, typer.Option(help="Headline as it should appear.")],
    summary: Annotated[str, typer.Option(help="The lead: one or two sentences.")] = "",
    section: Annotated[str, typer.Option(help="Section (DIGEST_SECTIONS).")] = "",
    image: Annotated[str, typer.Option(help="Picture URL (https).")] = "",
    image_alt: Annotated[str, typer.Option(help="Alt text for the picture.")] = "",
    image_credit: Annotated[str, typer.Option(help="Photo credit.")] = "",
    byline: Annotated[str, typer.Option(help="e.g. 'By AFP'.")] = "",
    read_minutes: Annotated[int | None, typer.Option(help="Reading time in minutes.")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="A tag; repeat for more.")] = None,
    featured: Annotated[bool, typer.Option(help="Make this the featured story.")] = False,
) -> None:
    """Add a pick at the end of this week's list."""
    from digest.editorial import picks as store

    s = settings()
    data = {
        "url": url,
        "title": title,
        "summary": summary,
        "section": section or s.sections[0],
        "image_url": image or None,
        "image_alt": image_alt,
        "image_credit": image_credit,
        "byline": byline,
        "read_minutes": read_minutes,
        "tags": tag or [],
        "featured": featured,
    }
    pick = store.validate_pick(data, s.sections, source="command line")
    if pick.image_url and not pick.image_alt:
        console.print("warning: the picture has no --image-alt text; the title is used instead")
        pick.image_alt = pick.title
    with session() as db:
        row = store.add_pick(db, pick)
        console.print(
            f"Added pick {row.id} at position {row.position}: {row.title} ({row.section})"
        )


@picks_app.command("list")
def list_(
    all_: Annotated[bool, typer.Option("--all", help="Also picks already sent.")] = False,
) -> None:
    """This week's picks, in the order they will appear."""
    from rich.table import Table
    from sqlalchemy import select

    from digest.editorial import picks as store
    from digest.editorial.models import Pick

    with session() as db:
        if all_:
            rows = list(db.scalars(select(Pick).order_by(Pick.id)))
        else:
            rows = store.unfrozen(db)
        if not rows:
            console.print("No picks yet. Add one with `digest picks add URL --title ...`.")
            return
        table = Table("id", "pos", "section", "title", "byline", "min", "featured")
        for p in rows:
            table.add_row(
                str(p.id),
                str(p.position),
                p.section,
                p.title,
                p.byline,
                str(p.read_minutes or ""),
                "★" if p.featured else "",
            )
        console.print(table)


@picks_app.command("remove")
def remove(pick_id: Annotated[int, typer.Argument(metavar="ID")]) -> None:
    """Remove a pick (only before its issue starts sending)."""
    from digest.editorial import picks as store

    with session() as db:
        row = store.remove_pick(db, pick_id)
        console.print(f"Removed pick {pick_id}: {row.title}")


@picks_app.command("move")
def move(
    pick_id: Annotated[int, typer.Argument(metavar="ID")],
    position: Annotated[int, typer.Argument(metavar="POSITION", help="1 = first.")],
) -> None:
    """Move a pick to POSITION (1-based) in this week's order."""
    from digest.editorial import picks as store

    with session() as db:
        rows = store.move_pick(db, pick_id, position)
        console.print(f"Moved pick {pick_id}; order is now: {' '.join(str(p.id) for p in rows)}")


@picks_app.command("feature")
def feature(pick_id: Annotated[int, typer.Argument(metavar="ID")]) -> None:
    """Make a pick the featured story (shown first, with its picture)."""
    from digest.editorial import picks as store

    with session() as db:
        row = store.set_featured(db, pick_id)
        console.print(f"Pick {pick_id} is now the featured story: {row.title}")


@picks_app.command("import")
def import_(
    source: Annotated[str, typer.Argument(metavar="FILE_OR_URL", help="YAML/JSON list or feed.")],
    skip_invalid: Annotated[
        bool, typer.Option(help="Import the good records and report the bad ones.")
    ] = False,
) -> None:
    """Import picks from a YAML or JSON list, or an RSS/Atom feed (file or URL).

    Any bad record stops the import and nothing is added, unless --skip-invalid.
    """
    from digest.editorial import picks as store
    from digest.editorial.pickimport import load_picks

    s = settings()
    result = load_picks(source, s.sections, skip_invalid=skip_invalid)
    if not result.picks:
        raise InputError("no valid picks found", source=source)
    with session() as db:
        for pick in result.picks:
            store.add_pick(db, pick)
    console.print(f"Imported {len(result.picks)} picks from {source}")
    for warning in result.warnings:
        console.print(f"warning: {warning}")
    for problem in result.rejected:
        console.print(f"skipped: {problem}")
