"""`digest picks ...`: the stories of a newsletter's next edition."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from digest.cli.common import console, session, settings
from digest.cli.options import NewsletterOpt
from digest.errors import InputError

picks_app = typer.Typer(
    help="Add, list, edit, reorder and remove the stories of the next edition.",
    no_args_is_help=True,
)

TitleOpt = Annotated[str, typer.Option(help="Headline as it should appear.")]
SummaryOpt = Annotated[str | None, typer.Option(help="The lead: one or two sentences.")]
SectionOpt = Annotated[str | None, typer.Option(help="Section (the newsletter's sections).")]
ImageOpt = Annotated[str | None, typer.Option(help="Picture URL (https).")]
AltOpt = Annotated[str | None, typer.Option(help="Alt text for the picture.")]
CreditOpt = Annotated[str | None, typer.Option(help="Photo credit.")]
BylineOpt = Annotated[str | None, typer.Option(help="e.g. 'By AFP'.")]
MinutesOpt = Annotated[int | None, typer.Option(help="Reading time in minutes.")]
TagOpt = Annotated[list[str] | None, typer.Option(help="A tag; repeat for more.")]


def _warn_duplicates(db: Any, edition_id: int, url: str, pick_id: int | None = None) -> None:
    from digest.editorial import picks as store

    for other in store.same_url(db, edition_id, url, exclude=pick_id):
        console.print(
            f"warning: this URL is also pick {other.id} ({other.title!r}) in this edition"
        )


@picks_app.command("add")
def add(
    url: Annotated[str, typer.Argument(help="The story's http(s) URL.")],
    title: TitleOpt,
    summary: SummaryOpt = "",
    section: SectionOpt = "",
    image: ImageOpt = "",
    image_alt: AltOpt = "",
    image_credit: CreditOpt = "",
    byline: BylineOpt = "",
    read_minutes: MinutesOpt = None,
    tag: TagOpt = None,
    featured: Annotated[bool, typer.Option(help="Make this the featured story.")] = False,
    newsletter: NewsletterOpt = None,
) -> None:
    """Add a pick to the next edition (at the end of its section)."""
    from digest.delivery import campaign
    from digest.editorial import picks as store

    s = settings()
    with session() as db:
        t = campaign.target(db, s, newsletter)
        sections = t.settings.sections
        data = {
            "url": url,
            "title": title,
            "summary": summary or "",
            "section": section or sections[0],
            "image_url": image or None,
            "image_alt": image_alt or "",
            "image_credit": image_credit or "",
            "byline": byline or "",
            "read_minutes": read_minutes,
            "tags": tag or [],
            "featured": featured,
        }
        pick = store.validate_pick(data, sections, source="command line")
        if pick.image_url and not pick.image_alt:
            console.print("warning: the picture has no --image-alt text; the title is used instead")
            pick.image_alt = pick.title
        _warn_duplicates(db, t.edition.id, pick.url)
        row = store.add_pick(db, t.edition.id, pick)
        order = [p.id for p in store.live_picks(db, t.edition.id, sections)]
        console.print(
            f"Added pick {row.id} to {t.newsletter.slug} edition {t.edition.key} at position "
            f"{order.index(row.id) + 1}: {row.title} ({row.section})"
        )


@picks_app.command("edit")
def edit(
    pick_id: Annotated[int, typer.Argument(metavar="ID")],
    url: Annotated[str | None, typer.Option(help="The story's http(s) URL.")] = None,
    title: Annotated[str | None, typer.Option(help="Headline as it should appear.")] = None,
    summary: SummaryOpt = None,
    section: SectionOpt = None,
    image: ImageOpt = None,
    image_alt: AltOpt = None,
    image_credit: CreditOpt = None,
    byline: BylineOpt = None,
    read_minutes: MinutesOpt = None,
    tag: TagOpt = None,
    featured: Annotated[
        bool | None, typer.Option("--featured/--not-featured", help="Feature it, or not.")
    ] = None,
) -> None:
    """Change a pick of an edition that has not started sending; unset options stay."""
    from digest.editorial import newsletters
    from digest.editorial import picks as store
    from digest.editorial.models import Edition

    s = settings()
    with session() as db:
        row = store.editable(db, pick_id)
        edition = db.get(Edition, row.edition_id)
        assert edition is not None
        sections = newsletters.settings_for(
            s, newsletters.get_by_id(db, edition.newsletter_id)
        ).sections
        data = store.pick_to_dict(row)
        data.pop("id"), data.pop("position")
        changes = {
            "url": url,
            "title": title,
            "summary": summary,
            "section": section,
            "image_url": image,
            "image_alt": image_alt,
            "image_credit": image_credit,
            "byline": byline,
            "read_minutes": read_minutes,
            "tags": tag,
            "featured": featured,
        }
        data.update({k: v for k, v in changes.items() if v is not None})
        pick = store.validate_pick(data, sections, source="command line")
        if url is not None:
            _warn_duplicates(db, row.edition_id, pick.url, row.id)
        updated = store.update_pick(db, pick_id, pick)
        console.print(f"Saved pick {pick_id}: {updated.title} ({updated.section})")


@picks_app.command("list")
def list_(
    newsletter: NewsletterOpt = None,
    all_: Annotated[
        bool, typer.Option("--all", help="Every edition's picks, newest first.")
    ] = False,
) -> None:
    """The next edition's picks, in the order the email shows them."""
    from rich.table import Table

    from digest.delivery import campaign
    from digest.editorial import editions
    from digest.editorial import picks as store

    s = settings()
    with session() as db:
        t = campaign.target(db, s, newsletter)
        scope = editions.list_editions(db, t.newsletter, 200) if all_ else [t.edition]
        table = Table(box=None, padding=(0, 2, 0, 0), header_style="bold")
        for name in ("id", "pos", "edition", "section", "title", "byline", "min", "featured"):
            table.add_column(name, no_wrap=name != "title", overflow="fold")
        n = 0
        for edition in scope:
            for i, p in enumerate(store.live_picks(db, edition.id, t.settings.sections), start=1):
                n += 1
                table.add_row(
                    str(p.id),
                    str(i),
                    edition.key,
                    p.section,
                    p.title,
                    p.byline,
                    str(p.read_minutes or ""),
                    "★" if p.featured else "",
                )
        if not n:
            console.print(
                f"No picks yet for the next edition of {t.settings.list_name}"
                f" ({t.newsletter.slug} {t.edition.key}). "
                "Add one with `digest picks add URL --title ...`."
            )
            return
        console.print(f"{t.newsletter.slug} edition {t.edition.key} ({t.edition.status})")
        console.print(table)


@picks_app.command("remove")
def remove(pick_id: Annotated[int, typer.Argument(metavar="ID")]) -> None:
    """Take a pick out of its edition (before the send starts); `picks restore` undoes it."""
    from digest.editorial import picks as store

    with session() as db:
        row = store.remove_pick(db, pick_id)
        console.print(
            f"Removed pick {pick_id}: {row.title} (undo: `digest picks restore {pick_id}`)"
        )


@picks_app.command("restore")
def restore(pick_id: Annotated[int, typer.Argument(metavar="ID")]) -> None:
    """Bring back a removed pick (while its edition is still open)."""
    from digest.editorial import picks as store

    with session() as db:
        row = store.restore_pick(db, pick_id)
        console.print(f"Restored pick {pick_id}: {row.title}")


@picks_app.command("move")
def move(
    pick_id: Annotated[int, typer.Argument(metavar="ID")],
    position: Annotated[int, typer.Argument(metavar="POSITION", help="1 = first.")],
) -> None:
    """Move a pick to POSITION in the email's order (within its section)."""
    from digest.editorial import newsletters
    from digest.editorial import picks as store
    from digest.editorial.models import Edition

    s = settings()
    with session() as db:
        row = store.editable(db, pick_id)
        edition = db.get(Edition, row.edition_id)
        assert edition is not None
        own = newsletters.settings_for(s, newsletters.get_by_id(db, edition.newsletter_id))
        rows, note = store.move_pick(db, pick_id, position, own.sections)
        if note:
            console.print(f"note: {note}")
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
    newsletter: NewsletterOpt = None,
) -> None:
    """Import picks into the next edition from a YAML or JSON list, or an RSS/Atom feed.

    Any bad record stops the import and nothing is added, unless --skip-invalid.
    """
    from digest.delivery import campaign
    from digest.editorial import picks as store
    from digest.editorial.pickimport import load_picks

    s = settings()
    with session() as db:
        t = campaign.target(db, s, newsletter)
        result = load_picks(source, t.settings.sections, skip_invalid=skip_invalid)
        if not result.picks:
            raise InputError("no valid picks found", source=source)
        for pick in result.picks:
            _warn_duplicates(db, t.edition.id, pick.url)
            store.add_pick(db, t.edition.id, pick)
        key = t.edition.key
    console.print(f"Imported {len(result.picks)} picks from {source} into edition {key}")
    for warning in result.warnings:
        console.print(f"warning: {warning}")
    for problem in result.rejected:
        console.print(f"skipped: {problem}")
