"""`digest api-keys ...`: keys for the REST API (/api/v1/)."""

from __future__ import annotations

from typing import Annotated

import typer

from digest.cli.app import app
from digest.cli.common import console, session

api_keys_app = typer.Typer(
    help="Create, list and revoke keys for the REST API (/api/v1/, docs/api.md).",
    no_args_is_help=True,
)
app.add_typer(api_keys_app, name="api-keys")

#: Spelled out here so that `--help` need not import the store (digest.api.keys.SCOPES).
SCOPE_NAMES = ("picks", "subscribers", "stats")


@api_keys_app.command("add")
def add(
    name: Annotated[str, typer.Argument(metavar="NAME", help="What uses it, e.g. cms.")],
    scope: Annotated[
        list[str] | None,
        typer.Option(
            help=f"What the key may do: {', '.join(SCOPE_NAMES)}; repeat for more "
            "(default: all three)."
        ),
    ] = None,
    newsletter: Annotated[
        str | None,
        typer.Option(
            "--newsletter", metavar="SLUG", help="Limit the key to one newsletter (default: all)."
        ),
    ] = None,
) -> None:
    """Create a key; it is printed once, as the last word of the last line (store it now)."""
    from digest.api import keys
    from digest.editorial import newsletters

    with session() as db:
        nl = newsletters.get(db, newsletter) if newsletter else None
        row, key = keys.create(db, name, scope, nl.id if nl else None)
        where = f"newsletter {nl.slug} only" if nl else "every newsletter"
        console.print(f"API key {row.name!r} created (scopes: {', '.join(row.scopes)}; {where}).")
    console.print("It is shown only now; send it as `Authorization: Bearer KEY`:")
    console.print(key)


@api_keys_app.command("list")
def list_() -> None:
    """The keys, one per line (never the keys themselves): name, prefix, scopes, last use."""
    from digest.api import keys
    from digest.editorial import newsletters

    with session() as db:
        rows = keys.all_(db)
        if not rows:
            console.print("No API keys yet. Create one with `digest api-keys add NAME`.")
            return
        for row in rows:
            nl = newsletters.get_by_id(db, row.newsletter_id).slug if row.newsletter_id else "all"
            used = f"{row.last_used_at:%Y-%m-%d %H:%M}" if row.last_used_at else "never"
            state = f"revoked {row.revoked_at:%Y-%m-%d %H:%M}" if row.revoked_at else "live"
            console.print(
                f"{row.name}  {row.prefix}…  scopes={','.join(row.scopes)}  newsletters={nl}  "
                f"created={row.created_at:%Y-%m-%d %H:%M}  last used={used}  {state}"
            )


@api_keys_app.command("revoke")
def revoke(name: Annotated[str, typer.Argument(metavar="NAME")]) -> None:
    """Revoke a key at once: requests with it get 401 from now on."""
    from digest.api import keys

    with session() as db:
        row = keys.revoke(db, name)
        console.print(f"API key {row.name!r} ({row.prefix}…) revoked.")
