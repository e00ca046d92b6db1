"""`digest build` and `digest editions ...` (alias `digest issues ...`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from digest.cli.app import app
from digest.cli.common import console, engine, session, settings
from digest.cli.options import EditionOpt, NewsletterOpt

editions_app = typer.Typer(
    help="A newsletter's editions: list, show, edit the subject and intro, schedule.",
    no_args_is_help=True,
)
app.add_typer(editions_app, name="editions")
#: The old spelling, kept working (hidden from the command list).
issues_app = typer.Typer(help="Alias of `digest editions`.", no_args_is_help=True)
app.add_typer(issues_app, name="issues", hidden=True)

#: Kept for modules that still import the old name.
IssueOpt = EditionOpt


@app.command("build")
def build(
    newsletter: NewsletterOpt = None,
    edition: EditionOpt = None,
    out: Annotated[Path, typer.Option(help="Folder for issue.html, issue.txt, sample.eml.")] = Path(
        "build"
    ),
) -> None:
    """Render the newsletter's next edition (its picks, subject and intro) once.

    Writes OUT/issue.html (web version), OUT/issue.txt and OUT/sample.eml, and prints the
    preflight report (exit 3 on errors). Building again is idempotent; an edition whose
    send started never changes.
    """
    from digest.delivery import campaign, preflight

    s = settings()
    t = campaign.build(engine(), s, newsletter, edition)
    paths = campaign.write_outputs(t.settings, t.edition, out)
    report = preflight.check_issue(t.edition, t.settings)
    n = len(t.edition.content.get("picks", []))
    console.print(
        f"Built {t.newsletter.slug} edition {t.edition.key}: {n} stories, "
        f"subject {t.edition.content['subject']!r}"
    )
    console.print(f"  {paths.html}\n  {paths.text}\n  {paths.eml}")
    for line in report.lines():
        console.print(line, markup=False)
    if not report.ok:
        raise typer.Exit(3)


def _list(newsletter: str | None, limit: int) -> None:
    from rich.table import Table

    from digest.delivery import ledger
    from digest.delivery.models import DeliveryStatus as D
    from digest.editorial import editions, newsletters

    s = settings()
    with session() as db:
        nl = newsletters.resolve(db, s, newsletter)
        own = newsletters.settings_for(s, nl)
        editions.open_edition(db, s, nl)
        rows = []
        for row in editions.list_editions(db, nl, limit):
            c = ledger.counts(db, row.id)
            planned = row.planned_at.astimezone(own.tz) if row.planned_at else None
            rows.append(
                [
                    row.key,
                    row.status + (" (paused)" if row.paused_at else ""),
                    f"{planned:%d %b %H:%M}" if planned else "-",
                    (row.content or {}).get("subject") or row.subject or "",
                    *(str(n) for n in (c[D.SENT], c[D.PENDING] + c[D.DEFERRED])),
                    *(str(n) for n in (c[D.FAILED], c[D.SKIPPED])),
                ]
            )
        names = ["key", "status", "planned", "subject", "sent", "owed", "failed", "skipped"]
        widths = [max(len(name), *(len(r[i]) for r in rows)) for i, name in enumerate(names)]
        # The subject gives way to the rest on a narrow terminal (cut with an ellipsis).
        room = console.width - sum(widths) + widths[3] - 2 * len(names)
        table = Table(box=None, padding=(0, 2, 0, 0), header_style="bold")
        for i, name in enumerate(names):
            if name == "subject":
                table.add_column(name, overflow="ellipsis", no_wrap=True, max_width=max(12, room))
            else:
                table.add_column(name, no_wrap=True, justify="right" if i > 3 else "left")
        for r in rows:
            table.add_row(*r)
        console.print(f"{nl.slug}: {own.list_name}")
        console.print(table)


@editions_app.command("list")
def list_(
    newsletter: NewsletterOpt = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 50,
) -> None:
    """Editions, newest first: the next one, sends in progress and sent ones with counts."""
    _list(newsletter, limit)


@issues_app.command("list")
def issues_list(newsletter: NewsletterOpt = None) -> None:
    """Alias of `digest editions list`."""
    _list(newsletter, 50)


@editions_app.command("show")
def show(newsletter: NewsletterOpt = None, edition: EditionOpt = None) -> None:
    """One edition: its state, planned time, subject, intro and picks in email order."""
    from digest.delivery import campaign
    from digest.editorial.picks import live_picks
    from digest.scheduling.trigger import describe

    s = settings()
    with session() as db:
        t = campaign.target(db, s, newsletter, edition)
        e = t.edition
        console.print(f"{t.newsletter.slug} edition {e.key}: {e.status}")
        if e.planned_at:
            console.print(f"  planned: {describe(e.planned_at, t.settings.tz)}")
        console.print(f"  subject: {e.subject or '(from the featured story)'}")
        console.print(f"  preheader: {e.preheader or '(from the other stories)'}")
        if e.intro:
            console.print(f"  intro: {e.intro[:200]}")
        for i, p in enumerate(live_picks(db, e.id, t.settings.sections), start=1):
            star = " ★" if p.featured else ""
            console.print(f"  {i:>2}. [{p.id}] {p.section}: {p.title}{star}")


def _edit(
    newsletter: str | None,
    edition: str | None,
    subject: str | None,
    preheader: str | None,
    intro: str | None,
) -> None:
    from digest.delivery import campaign
    from digest.editorial import editions

    s = settings()
    with session() as db:
        t = campaign.target(db, s, newsletter, edition)
        row = editions.edit(db, t.edition, subject=subject, preheader=preheader, intro=intro)
        console.print(
            f"{t.newsletter.slug} edition {row.key}: subject={row.subject!r} "
            f"preheader={row.preheader!r}"
        )


SubjectOpt = Annotated[str | None, typer.Option(help="Subject line (10-78 characters).")]
PreheaderOpt = Annotated[str | None, typer.Option(help="Inbox preview text.")]
IntroOpt = Annotated[
    str | None, typer.Option(help="The editors' intro (blank line = new paragraph).")
]


@editions_app.command("edit")
def edit(
    newsletter: NewsletterOpt = None,
    edition: EditionOpt = None,
    subject: SubjectOpt = None,
    preheader: PreheaderOpt = None,
    intro: IntroOpt = None,
) -> None:
    """Set the subject, preheader or intro of the next edition (or KEY, while still open)."""
    _edit(newsletter, edition, subject, preheader, intro)


@issues_app.command("edit")
def issues_edit(
    newsletter: NewsletterOpt = None,
    edition: EditionOpt = None,
    subject: SubjectOpt = None,
    preheader: PreheaderOpt = None,
    intro: IntroOpt = None,
) -> None:
    """Alias of `digest editions edit`."""
    _edit(newsletter, edition, subject, preheader, intro)


@editions_app.command("schedule")
def schedule(
    at: Annotated[
        str | None,
        typer.Option(
            metavar="'YYYY-MM-DD HH:MM'",
            help="Send at this time (the newsletter's time zone) instead of the next slot.",
        ),
    ] = None,
    slot: Annotated[
        bool, typer.Option("--slot", help="Back to the schedule's next slot (a draft again).")
    ] = False,
    newsletter: NewsletterOpt = None,
    edition: EditionOpt = None,
) -> None:
    """Choose when the next edition goes out; the scheduler sends it then."""
    from datetime import datetime

    from digest.clock import utcnow
    from digest.delivery import campaign
    from digest.editorial import editions
    from digest.errors import InputError
    from digest.scheduling.trigger import describe

    if (at is None) == (not slot):
        raise InputError("give --at 'YYYY-MM-DD HH:MM' or --slot", field="at")
    s = settings()
    with session() as db:
        t = campaign.target(db, s, newsletter, edition)
        if slot:
            row = editions.roll_to_next_slot(db, s, t.newsletter, t.edition)
        else:
            try:
                local = datetime.strptime(str(at).strip(), "%Y-%m-%d %H:%M")
            except ValueError:
                raise InputError("must look like '2026-12-04 09:00'", field="at") from None
            when = local.replace(tzinfo=t.settings.tz)
            if when <= utcnow():
                raise InputError(f"{at} has passed; send now with `digest send`", field="at")
            row = editions.reschedule(db, s, t.newsletter, t.edition, when)
        planned = describe(row.planned_at, t.settings.tz) if row.planned_at else "never"
        console.print(f"{t.newsletter.slug} edition {row.key} ({row.status}) goes out {planned}")
