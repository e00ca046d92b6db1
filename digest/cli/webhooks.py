"""`digest webhooks ...`: signed POSTs to other systems when subscribers and editions change."""

from __future__ import annotations

from typing import Annotated

import typer

from digest.cli.app import app
from digest.cli.common import console, session, settings

webhooks_app = typer.Typer(
    help="Add, list and remove webhook endpoints, and see recent attempts (docs/webhooks.md).",
    no_args_is_help=True,
)
app.add_typer(webhooks_app, name="webhooks")

#: Spelled out so `--help` stays light; tests check them against digest.webhooks.models.
EVENT_NAMES = (
    "subscriber.confirmed",
    "subscriber.unsubscribed",
    "subscriber.bounced",
    "subscriber.complained",
    "subscriber.erased",
    "edition.sent",
)


@webhooks_app.command("add")
def add(
    url: Annotated[str, typer.Argument(metavar="URL", help="An https:// URL that takes POSTs.")],
    event: Annotated[
        list[str] | None,
        typer.Option(help=f"An event to send: {', '.join(EVENT_NAMES)}; repeat (default: all)."),
    ] = None,
) -> None:
    """Add an endpoint; its signing secret is printed once, as the last word of the last line."""
    from digest.webhooks import endpoints

    s = settings()
    with session() as db:
        row = endpoints.add(db, url, event, allow_private=s.webhook_allow_private)
        console.print(f"Webhook {row.id} added: {row.url} ({', '.join(row.events)}).")
        secret = row.secret
    console.print("Verify the Digest-Signature header with this signing secret (shown only now):")
    console.print(secret)


@webhooks_app.command("list")
def list_() -> None:
    """The endpoints (one per line, URLs whole), their events, what is still owed to each."""
    from digest.webhooks import endpoints

    with session() as db:
        rows = endpoints.all_(db)
        if not rows:
            console.print("No webhooks yet. Add one with `digest webhooks add URL`.")
            return
        for row in rows:
            console.print(
                f"{row.id}  {row.url}  events={','.join(row.events)} "
                f"owed={endpoints.pending(db, row.id)} added={row.created_at:%Y-%m-%d %H:%M}"
            )


@webhooks_app.command("remove")
def remove(
    endpoint: Annotated[str, typer.Argument(metavar="ID_OR_URL", help="As `webhooks list` shows.")],
) -> None:
    """Remove an endpoint; what was still owed to it is dropped."""
    from digest.webhooks import endpoints

    with session() as db:
        row, owed = endpoints.remove(db, endpoint)
        console.print(f"Webhook {row.id} removed: {row.url} ({owed} undelivered events dropped).")


@webhooks_app.command("log")
def log(
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many attempts.")] = 30,
    failed: Annotated[bool, typer.Option("--failed", help="Only failed attempts.")] = False,
) -> None:
    """Recent delivery attempts, newest first: when, where, what, and what came back."""
    from digest.webhooks import endpoints

    s = settings()
    with session() as db:
        lines = endpoints.log(db, limit, failed_only=failed)
    if not lines:
        console.print("No webhook attempts yet.")
        return
    for line in lines:
        answer = line.error or f"HTTP {line.code}"
        state = line.status
        if line.next_attempt_at is not None:
            state += f", next try {line.next_attempt_at.astimezone(s.tz):%H:%M:%S}"
        console.print(
            f"{line.at.astimezone(s.tz):%Y-%m-%d %H:%M:%S}  {line.event_type} {line.event_uid}"
            f"  try {line.attempt}  {answer}  {line.duration_ms} ms  {state}  {line.endpoint}"
        )
