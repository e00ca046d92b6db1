"""The `digest` command line. Every user error ends as one line on stderr."""

from __future__ import annotations

import logging
import re
import sys

import typer

from digest.cli import bounces as _bounces  # noqa: F401 - registers commands
from digest.cli import build as _build  # noqa: F401 - registers commands
from digest.cli import demo as _demo  # noqa: F401
from digest.cli import dkim as _dkim  # noqa: F401
from digest.cli import editors as _editors  # noqa: F401
from digest.cli import newsletters as _newsletters  # noqa: F401
from digest.cli import schedule as _schedule  # noqa: F401
from digest.cli import send as _send  # noqa: F401
from digest.cli import serve as _serve  # noqa: F401
from digest.cli import worker as _worker  # noqa: F401
from digest.cli.app import app
from digest.cli.picks import picks_app
from digest.cli.subscribers import subscribers_app
from digest.errors import DigestError

app.add_typer(picks_app, name="picks")
app.add_typer(subscribers_app, name="subscribers")


def main() -> None:
    """Console-script entry point."""
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    try:
        app()
    except DigestError as exc:
        print(f"digest: error: {one_line(str(exc))}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("digest: interrupted", file=sys.stderr)
        sys.exit(130)


def one_line(message: str) -> str:
    """Control characters from user input (CR/LF, terminal escapes) shown escaped, so an
    error is always one line and cannot rewrite the operator's terminal."""
    return re.sub(r"[\x00-\x1f\x7f]", lambda m: repr(m.group())[1:-1], message)


__all__ = ["app", "main", "one_line", "typer"]
