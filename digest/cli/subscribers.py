"""`digest subscribers ...`: the list."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from digest.cli.common import console, engine
from digest.store.engine import session_scope
from subscribers import csvio, store
from subscribers.model import STATUSES, SubscriberStatus

subscribers_app = typer.Typer(
    help="Import, export, add, remove and count subscribers.", no_args_is_help=True
)


@subscribers_app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(metavar="FILE.csv", help="CSV with an email column.")],
    confirmed: Annotated[
        bool, typer.Option(help="The list already gave consent: mark new rows confirmed.")
    ] = False,
    skip_invalid: Annotated[
        bool, typer.Option(help="Import the good rows and list the bad ones.")
    ] = False,
) -> None:
    """Import subscribers from CSV (email, name, any other columns become attributes).

    Nobody who unsubscribed, bounced or complained is ever revived by an import.
    Any invalid row stops the import and nothing changes, unless --skip-invalid.
    """
    with session_scope(engine()) as session:
        report = csvio.import_csv(session, file, confirmed=confirmed, skip_invalid=skip_invalid)
    console.print(report.summary())
    for problem in report.invalid:
        console.print(f"skipped: {problem}")


@subscribers_app.command("export")
def export(file: Annotated[Path, typer.Argument(metavar="FILE.csv")]) -> None:
    """Export every subscriber (with status and consent) to CSV."""
    with session_scope(engine()) as session:
        n = csvio.export_csv(session, file)
    console.print(f"Exported {n} subscribers to {file}")


@subscribers_app.command("add")
def add(
    email: Annotated[str, typer.Argument(metavar="EMAIL")],
    name: Annotated[str, typer.Option(help="The subscriber's name.")] = "",
    confirmed: Annotated[
        bool, typer.Option(help="Consent was already given: mark confirmed.")
    ] = False,
) -> None:
    """Add one subscriber (pending unless --confirmed)."""
    with session_scope(engine()) as session:
        row = store.add(
            session,
            email,
            name,
            status=SubscriberStatus.CONFIRMED if confirmed else SubscriberStatus.PENDING,
            source="cli",
        )
        console.print(f"{row.email}: {row.status}")


@subscribers_app.command("remove")
def remove(email: Annotated[str, typer.Argument(metavar="EMAIL")]) -> None:
    """Unsubscribe an address for good (the row stays so no import revives it)."""
    with session_scope(engine()) as session:
        row = store.remove(session, email)
        console.print(f"{row.email}: {row.status}")


@subscribers_app.command("list")
def list_(
    status: Annotated[
        str | None, typer.Option(help=f"Only this status: {', '.join(STATUSES)}.")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = 100,
    offset: Annotated[int, typer.Option(help="Skip this many rows.")] = 0,
) -> None:
    """List subscribers."""
    if status is not None and status not in STATUSES:
        raise typer.BadParameter(f"must be one of {', '.join(STATUSES)}", param_hint="--status")
    with session_scope(engine()) as session:
        rows = store.list_(session, status=status, limit=limit, offset=offset)
        table = Table("id", "email", "name", "status", "since")
        for r in rows:
            table.add_row(str(r.id), r.email, r.name, r.status, f"{r.created_at:%Y-%m-%d}")
        console.print(table)


@subscribers_app.command("count")
def count() -> None:
    """How many subscribers there are, by status."""
    with session_scope(engine()) as session:
        counts = store.count(session)
    total = sum(counts.values())
    parts = " ".join(f"{k}={counts.get(k, 0)}" for k in STATUSES)
    console.print(f"total={total} {parts}")
