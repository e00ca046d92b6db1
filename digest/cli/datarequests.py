"""`digest subscribers export-person|erase EMAIL`: data requests about one address."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from digest.cli.common import console, session, settings
from digest.cli.subscribers import subscribers_app


@subscribers_app.command("export-person")
def export_person(
    email: Annotated[str, typer.Argument(metavar="EMAIL")],
    out: Annotated[
        Path | None,
        typer.Option("--out", metavar="FILE", help="Write to FILE (created 0600), not stdout."),
    ] = None,
) -> None:
    """Everything stored about one address, as JSON (GDPR article 15)."""
    import json

    from digest.privacy import export

    with session() as db:
        data = export.person(db, settings(), email)
    text = json.dumps(data, ensure_ascii=False, indent=2) + "\n"
    if out is None:
        print(text, end="")
        return
    from digest.errors import InputError
    from digest.privatefiles import open_private

    try:
        with open_private(out, "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        raise InputError(f"cannot write the file: {exc.strerror or exc}", source=str(out)) from None
    console.print(f"Wrote everything stored about {data['email']} to {out}")


@subscribers_app.command("erase")
def erase(email: Annotated[str, typer.Argument(metavar="EMAIL")]) -> None:
    """Erase an address everywhere (GDPR article 17); a keyed hash keeps it from coming back.

    Its subscriptions, name, attributes, delivery history and webhook data go; the ledger
    keeps anonymous counts. No later import, sign-up or API call can add it again.
    """
    from digest.privacy import erase as erasing
    from subscribers import erasures

    s = settings()
    with session() as db:
        done = erasing.person(db, s, email, "cli")
        stale = erasures.stale(db, s.secret())
    console.print(done.summary())
    if stale:
        console.print(
            f"warning: {stale} older erasures were recorded under another DIGEST_SECRET_KEY "
            "and can no longer be matched (docs/security.md)"
        )
