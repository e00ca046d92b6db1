"""The root Typer application; command modules register themselves on it."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="digest",
    help="A hand-picked weekly newsletter: pick stories, build the issue, send it every Friday.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
