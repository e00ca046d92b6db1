"""`digest build` and `digest issues ...`: freezing, rendering and looking at issues."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from digest.cli.app import app
from digest.cli.common import console, engine, settings
from digest.delivery import campaign, ledger, preflight
from digest.delivery.models import DeliveryStatus
from digest.editorial import editions
from digest.store.engine import session_scope

issues_app = typer.Typer(help="List issues and edit the subject, preheader and intro.")
app.add_typer(issues_app, name="issues")

IssueOpt = Annotated[
    str | None, typer.Option("--issue", help="Issue key like 2026-W48 (default: this week).")
]


@app.command("build")
def build(
    issue: IssueOpt = None,
    out: Annotated[Path, typer.Option(help="Folder for issue.html, issue.txt, sample.eml.")] = Path(
        "build"
    ),
) -> None:
    """Freeze this week's picks into the issue and render it once.

    Writes OUT/issue.html (web version), OUT/issue.txt and OUT/sample.eml, and prints the
    preflight report. Building again is idempotent; a sent issue is never re-frozen.
    """
    s = settings()
    row = campaign.build(engine(), s, issue)
    paths = campaign.write_outputs(s, row, out)
    report = preflight.check_issue(row, s)
    n = len(row.content.get("picks", []))
    console.print(f"Built issue {row.key}: {n} stories, subject {row.content['subject']!r}")
    console.print(f"  {paths.html}\n  {paths.text}\n  {paths.eml}")
    for line in report.lines():
        console.print(line, markup=False)
    if not report.ok:
        raise typer.Exit(3)


@issues_app.command("list")
def list_() -> None:
    """Issues, newest first, with delivery counts."""
    with session_scope(engine()) as session:
        table = Table("key", "status", "subject", "sent", "owed", "failed", "skipped")
        for row in editions.list_issues(session):
            c = ledger.counts(session, row.id)
            subject = (row.content or {}).get("subject") or row.subject
            table.add_row(
                row.key,
                row.status,
                subject,
                str(c[DeliveryStatus.SENT]),
                str(c[DeliveryStatus.PENDING] + c[DeliveryStatus.DEFERRED]),
                str(c[DeliveryStatus.FAILED]),
                str(c[DeliveryStatus.SKIPPED]),
            )
        console.print(table)


@issues_app.command("edit")
def edit(
    issue: IssueOpt = None,
    subject: Annotated[str | None, typer.Option(help="Subject line (10-78 characters).")] = None,
    preheader: Annotated[str | None, typer.Option(help="Inbox preview text.")] = None,
    intro: Annotated[
        str | None, typer.Option(help="The editors' intro (blank line = new paragraph).")
    ] = None,
) -> None:
    """Set the subject, preheader or intro (before the send starts; rebuild to see it)."""
    s = settings()
    with session_scope(engine()) as session:
        row = editions.edit(
            session,
            issue or editions.current_key(s),
            subject=subject,
            preheader=preheader,
            intro=intro,
        )
        console.print(f"Issue {row.key}: subject={row.subject!r} preheader={row.preheader!r}")
