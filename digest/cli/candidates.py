"""`digest candidates ...`: stories from the newsroom's site (DIGEST_CANDIDATE_FEEDS)."""

from __future__ import annotations

from typing import Annotated

import typer

from digest.cli.app import app
from digest.cli.common import console, engine, session, settings
from digest.cli.options import NewsletterOpt

candidates_app = typer.Typer(
    help="Poll DIGEST_CANDIDATE_FEEDS now and list the candidates the desk offers.",
    no_args_is_help=True,
)
app.add_typer(candidates_app, name="candidates")


@candidates_app.command("poll")
def poll() -> None:
    """Poll every feed now (the scheduler does it every DIGEST_CANDIDATE_INTERVAL seconds)."""
    import asyncio

    from digest.candidates import poll as polling
    from digest.errors import SettingsError

    s = settings()
    if not s.candidate_feeds:
        raise SettingsError(
            "DIGEST_CANDIDATE_FEEDS: not set; list the site's RSS/Atom feed URLs "
            "(comma-separated, SLUG=URL for one newsletter)"
        )
    results = asyncio.run(polling.poll(engine(), s))
    for result in results:
        console.print(result.summary())
    if not any(r.ok for r in results):
        raise typer.Exit(1)


@candidates_app.command("list")
def list_(
    limit: Annotated[int, typer.Option(min=1, max=500, help="At most this many.")] = 30,
    newsletter: NewsletterOpt = None,
) -> None:
    """The newest candidates, marked where they were picked or sent before."""
    from rich.table import Table

    from digest.candidates import store
    from digest.delivery import campaign
    from digest.editorial import repeats

    s = settings()
    with session() as db:
        t = campaign.target(db, s, newsletter)
        rows = store.latest(db, t.newsletter, limit)
        earlier = repeats.earlier_uses(db, t.edition, [c.url for c in rows])
        if not rows:
            console.print(
                "No candidates yet. Set DIGEST_CANDIDATE_FEEDS and run `digest candidates poll`."
            )
            return
        table = Table("id", "seen", "section", "title", "byline", "note")
        for c in rows:
            mark = earlier.get(c.url)
            note = "hidden" if c.dismissed_at else ""
            if mark is not None:
                note = f"sent in {mark.edition_key}" if mark.sent else f"in {mark.edition_key}"
            table.add_row(
                str(c.id),
                f"{c.seen_at.astimezone(s.tz):%Y-%m-%d %H:%M}",
                c.section,
                c.title,
                c.byline,
                note,
            )
        console.print(f"{t.newsletter.slug}: candidates for edition {t.edition.key}")
        console.print(table)
