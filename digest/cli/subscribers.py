"""`digest subscribers ...`: a newsletter's list (addresses are shared by newsletters)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from digest.cli.common import console, session, settings
from digest.cli.options import NewsletterOpt

#: The subscriber statuses, spelled out here so that `--help` need not import the model
#: (SQLAlchemy); tests/test_cli_start.py checks them against subscribers.model.STATUSES.
STATUS_NAMES = ("pending", "confirmed", "unsubscribed", "bounced", "complained")

subscribers_app = typer.Typer(
    help="Import, export, add, remove and count a newsletter's subscribers.",
    no_args_is_help=True,
)


def _newsletter_id(db: object, slug: str | None) -> tuple[int, str]:
    from digest.editorial import newsletters

    nl = newsletters.resolve(db, settings(), slug)  # type: ignore[arg-type]
    return nl.id, nl.slug


@subscribers_app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(metavar="FILE.csv", help="CSV with an email column.")],
    confirmed: Annotated[
        bool, typer.Option(help="The list already gave consent: mark new rows confirmed.")
    ] = False,
    skip_invalid: Annotated[
        bool, typer.Option(help="Import the good rows and list the bad ones.")
    ] = False,
    newsletter: NewsletterOpt = None,
) -> None:
    """Import subscribers of a newsletter from CSV (email, name, other columns: attributes).

    Nobody who unsubscribed from it, bounced or complained is ever revived by an import.
    Any invalid row stops the import and nothing changes, unless --skip-invalid.
    """
    from digest.privacy.erase import optional_secret
    from subscribers import csvio

    with session() as db:
        nid, slug = _newsletter_id(db, newsletter)
        report = csvio.import_csv(
            db,
            file,
            nid,
            confirmed=confirmed,
            skip_invalid=skip_invalid,
            secret=optional_secret(settings()),
        )
    console.print(f"{slug}: {report.summary()}")
    for problem in report.invalid:
        console.print(f"skipped: {problem}")


@subscribers_app.command("export")
def export(
    file: Annotated[Path, typer.Argument(metavar="FILE.csv")], newsletter: NewsletterOpt = None
) -> None:
    """Export a newsletter's subscribers (with status and consent) to CSV."""
    from subscribers import csvio

    with session() as db:
        nid, slug = _newsletter_id(db, newsletter)
        n = csvio.export_csv(db, file, nid)
    console.print(f"Exported {n} subscribers of {slug} to {file}")


@subscribers_app.command("add")
def add(
    email: Annotated[str, typer.Argument(metavar="EMAIL")],
    name: Annotated[str, typer.Option(help="The subscriber's name.")] = "",
    confirmed: Annotated[
        bool, typer.Option(help="Consent was already given: mark confirmed.")
    ] = False,
    newsletter: NewsletterOpt = None,
) -> None:
    """Add one subscriber to a newsletter (pending unless --confirmed)."""
    from digest.privacy.erase import optional_secret
    from subscribers import subscriptions

    with session() as db:
        nid, slug = _newsletter_id(db, newsletter)
        status = "confirmed" if confirmed else "pending"
        m = subscriptions.add(
            db, nid, email, name, status=status, source="cli", secret=optional_secret(settings())
        )
        console.print(f"{m.email}: {m.status} ({slug})")


@subscribers_app.command("remove")
def remove(
    email: Annotated[str, typer.Argument(metavar="EMAIL")], newsletter: NewsletterOpt = None
) -> None:
    """Unsubscribe an address from a newsletter for good (no import revives it)."""
    from subscribers import subscriptions

    with session() as db:
        nid, slug = _newsletter_id(db, newsletter)
        m = subscriptions.unsubscribe(db, nid, email, "cli")
        console.print(f"{m.email}: {m.status} ({slug})")


@subscribers_app.command("list")
def list_(
    status: Annotated[
        str | None, typer.Option(help=f"Only this status: {', '.join(STATUS_NAMES)}.")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = 100,
    offset: Annotated[int, typer.Option(help="Skip this many rows.")] = 0,
    newsletter: NewsletterOpt = None,
) -> None:
    """List a newsletter's subscribers."""
    if status is not None and status not in STATUS_NAMES:
        raise typer.BadParameter(f"must be one of {', '.join(STATUS_NAMES)}", param_hint="--status")
    from rich.table import Table

    from subscribers import subscriptions

    with session() as db:
        nid, _slug = _newsletter_id(db, newsletter)
        rows = subscriptions.members(db, nid, status=status, limit=limit, offset=offset)
        table = Table("id", "email", "name", "status", "since")
        for m in rows:
            since = m.subscription.created_at if m.subscription else m.subscriber.created_at
            table.add_row(
                str(m.subscriber.id),
                m.email,
                m.subscriber.name,
                str(m.status),
                f"{since:%Y-%m-%d}",
            )
        console.print(table)


@subscribers_app.command("count")
def count(newsletter: NewsletterOpt = None) -> None:
    """How many subscribers a newsletter has, by status."""
    from subscribers import subscriptions

    with session() as db:
        nid, _slug = _newsletter_id(db, newsletter)
        counts = subscriptions.count(db, nid)
    total = sum(counts.values())
    by_name = {str(k): n for k, n in counts.items()}
    parts = " ".join(f"{k}={by_name.get(k, 0)}" for k in STATUS_NAMES)
    console.print(f"total={total} {parts}")
