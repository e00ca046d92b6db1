"""Options many commands share: which newsletter, which edition.

Typer-only (no digest imports), so `--help` stays light.
"""

from __future__ import annotations

from typing import Annotated

import typer

NewsletterOpt = Annotated[
    str | None,
    typer.Option(
        "--newsletter",
        metavar="SLUG",
        help="Newsletter to work on (default: DIGEST_NEWSLETTER, else the default newsletter).",
    ),
]
EditionOpt = Annotated[
    str | None,
    typer.Option(
        "--edition",
        "--issue",
        metavar="KEY",
        help="Edition key like 2026-W49 (default: the newsletter's next edition).",
    ),
]
