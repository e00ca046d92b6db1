"""`digest bounces process`: apply bounce and complaint reports from the bounce mailbox."""

from __future__ import annotations

from typing import Annotated

import typer

from digest.cli.app import app
from digest.cli.common import engine, settings

bounces_app = typer.Typer(help="Bounces and complaints that arrive by mail.")
app.add_typer(bounces_app, name="bounces")


@bounces_app.command("process")
def process(
    mailbox: Annotated[
        str | None,
        typer.Option(
            help="maildir:/path or imaps://user:pass@host/INBOX (default: DIGEST_BOUNCE_MAILBOX; "
            "prefer the setting, command lines are visible to other users)."
        ),
    ] = None,
) -> None:
    """Read new DSNs (RFC 3464) and abuse reports (ARF) and update the subscribers.

    Hard bounces and complaints stop all further mail to the address; soft bounces
    count toward DIGEST_SOFT_BOUNCE_THRESHOLD. Only reports that return the signed
    reference of a message we sent act on anyone; others are rejected, left flagged
    and counted. Processed messages are marked seen, so running it again (e.g.
    hourly) never counts a report twice.
    """
    from digest import bounces

    report = bounces.process(engine(), settings(), mailbox)
    typer.echo(report.summary())
