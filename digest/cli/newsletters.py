"""`digest newsletters ...`: several newsletters in one installation."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from digest.cli.app import app
from digest.cli.common import console, session, settings

newsletters_app = typer.Typer(
    help="Newsletters: each with its own sender, schedule, template and subscribers.",
    no_args_is_help=True,
)
app.add_typer(newsletters_app, name="newsletters")

NameOpt = Annotated[str | None, typer.Option("--name", help="Its name (masthead, List-Id).")]
ScheduleOpt = Annotated[
    str | None, typer.Option(help="Crontab in its time zone (default: DIGEST_SCHEDULE).")
]
TimezoneOpt = Annotated[str | None, typer.Option(help="IANA time zone (default: DIGEST_TIMEZONE).")]
FromOpt = Annotated[
    str | None,
    typer.Option("--from", help="Sender, e.g. 'Culture <culture@news.example.com>'."),
]
ReplyOpt = Annotated[str | None, typer.Option(help="Reply-To address.")]
ListIdOpt = Annotated[
    str | None, typer.Option(help="List-Id identifier (default: SLUG.<the default List-Id>).")
]
TemplateOpt = Annotated[
    str | None,
    typer.Option(help="Template pair NAME.mjml.j2 / NAME.txt.j2 (default: digest)."),
]
LanguageOpt = Annotated[str | None, typer.Option(help="Language tag, e.g. en, ru (default en).")]
SectionsOpt = Annotated[
    str | None, typer.Option(help="Sections in order, comma-separated (default: DIGEST_SECTIONS).")
]
PaletteOpt = Annotated[
    list[str] | None,
    typer.Option(
        metavar="NAME=#RRGGBB",
        help="A colour of templates/_palette.j2, e.g. accent=#0b5394; repeat for more.",
    ),
]


def _values(**given: Any) -> dict[str, Any]:
    from digest.errors import InputError

    values = {k: v for k, v in given.items() if v is not None and k != "palette"}
    if values.get("sections"):  # "" clears the override
        values["sections"] = [x.strip() for x in values["sections"].split(",") if x.strip()]
    if given.get("palette"):
        palette = {}
        for item in given["palette"]:
            name, sep, colour = item.partition("=")
            if not sep:
                raise InputError(f"{item!r}: write NAME=#RRGGBB", field="palette")
            palette[name.strip()] = colour.strip()
        values["palette"] = palette
    return values


@newsletters_app.command("add")
def add(
    slug: Annotated[str, typer.Argument(help="Short name for commands and URLs, e.g. culture.")],
    name: Annotated[str, typer.Option("--name", help="Its name (masthead, List-Id).")],
    schedule: ScheduleOpt = None,
    timezone: TimezoneOpt = None,
    from_: FromOpt = None,
    reply_to: ReplyOpt = None,
    list_id: ListIdOpt = None,
    template: TemplateOpt = None,
    language: LanguageOpt = None,
    sections: SectionsOpt = None,
    palette: PaletteOpt = None,
) -> None:
    """Add a newsletter. Unset options follow the DIGEST_* settings."""
    from digest.editorial import editions, newsletters
    from digest.scheduling.trigger import describe

    values = _values(
        schedule=schedule,
        timezone=timezone,
        from_addr=from_,
        reply_to=reply_to,
        list_id=list_id,
        template=template,
        language=language,
        sections=sections,
        palette=palette,
    )
    s = settings()
    with session() as db:
        newsletters.ensure_default(db)  # the installation's first one stays the default
        row = newsletters.add(db, slug, name, **values)
        own = newsletters.settings_for(s, row)
        first = editions.open_edition(db, s, row)
        when = describe(first.planned_at, own.tz) if first.planned_at else "never"
        console.print(f"Added newsletter {row.slug}: {own.list_name} <{own.envelope_from}>")
        console.print(f"  first edition {first.key}, planned {when}")
        console.print(
            f"  List-Id {own.effective_list_id}; sign-up at {s.base_url}/subscribe?newsletter={row.slug}"
        )


@newsletters_app.command("list")
def list_() -> None:
    """Every newsletter with its sender, schedule, next edition and subscribers."""
    from rich.table import Table

    from digest.editorial import editions, newsletters
    from digest.scheduling.trigger import describe
    from subscribers import subscriptions

    s = settings()
    with session() as db:
        rows = newsletters.all_(db) or [newsletters.ensure_default(db)]
        table = Table("slug", "name", "from", "schedule", "next edition", "confirmed")
        for nl in rows:
            own = newsletters.settings_for(s, nl)
            nxt = editions.open_edition(db, s, nl)
            when = describe(nxt.planned_at, own.tz) if nxt.planned_at else "never"
            table.add_row(
                nl.slug + (" (default)" if nl.is_default else ""),
                own.list_name,
                own.envelope_from,
                f"{own.schedule} {own.timezone}",
                f"{nxt.key}: {when}",
                str(subscriptions.mailable_count(db, nl.id)),
            )
    console.print(table)


@newsletters_app.command("edit")
def edit(
    slug: Annotated[str, typer.Argument(help="The newsletter to change.")],
    new_slug: Annotated[str | None, typer.Option("--slug", help="A new slug.")] = None,
    name: NameOpt = None,
    schedule: ScheduleOpt = None,
    timezone: TimezoneOpt = None,
    from_: FromOpt = None,
    reply_to: ReplyOpt = None,
    list_id: ListIdOpt = None,
    template: TemplateOpt = None,
    language: LanguageOpt = None,
    sections: SectionsOpt = None,
    palette: PaletteOpt = None,
) -> None:
    """Change a newsletter; an empty value (e.g. --schedule '') goes back to the setting.

    A new schedule moves the next edition to its next slot (unless an editor chose its
    time); editions already sent keep their keys.
    """
    from digest.editorial import editions, newsletters
    from digest.scheduling.trigger import describe

    values = _values(
        name=name,
        schedule=schedule,
        timezone=timezone,
        from_addr=from_,
        reply_to=reply_to,
        list_id=list_id,
        template=template,
        language=language,
        sections=sections,
        palette=palette,
    )
    if new_slug:
        values["slug"] = new_slug
    s = settings()
    with session() as db:
        row = newsletters.edit(db, slug, **values)
        own = newsletters.settings_for(s, row)
        nxt = editions.open_edition(db, s, row)
        when = describe(nxt.planned_at, own.tz) if nxt.planned_at else "never"
        console.print(f"Newsletter {row.slug}: {own.list_name} <{own.envelope_from}>")
        console.print(
            f"  schedule {own.schedule!r} in {own.timezone}; next edition {nxt.key}: {when}"
        )
