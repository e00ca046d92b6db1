"""What every command needs: settings, the store, consoles, and the error policy.

Nothing heavy is imported here or at the top of any digest.cli module: `digest --help`
and every command pay only for typer plus what that one command uses. Settings
(pydantic), the store (SQLAlchemy) and rich are loaded on first use.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING, Any, NoReturn, cast

if TYPE_CHECKING:
    from rich.console import Console
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session

    from digest.settings import Settings


class _LazyConsole:
    """A rich Console built on first use (importing rich costs what `--help` need not pay).

    Attribute access is forwarded; where rich itself needs the Console object (a progress
    bar), pass `real_console(console)`.
    """

    def __init__(self, stderr: bool) -> None:
        self._stderr = stderr
        self._console: Console | None = None

    def real(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(
                stderr=self._stderr, highlight=False, soft_wrap=True, markup=False
            )
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real(), name)


console = cast("Console", _LazyConsole(stderr=False))
err = cast("Console", _LazyConsole(stderr=True))


def real_console(c: Console) -> Console:
    """The rich Console behind `console` or `err`, for rich APIs that take one."""
    return c.real() if isinstance(c, _LazyConsole) else c


@cache
def settings() -> Settings:
    from digest.settings import load_settings

    return load_settings()


def engine() -> Engine:
    from digest.store.engine import get_engine

    s = settings()
    return get_engine(s.database_url, pool_size=s.db_pool_size)


@contextmanager
def session() -> Iterator[Session]:
    """A session on the configured store: commits on success, rolls back on any error."""
    from digest.store.engine import session_scope

    with session_scope(engine()) as s:
        yield s


def fail(message: str, code: int = 1) -> NoReturn:
    """One line on stderr and a non-zero exit."""
    print(f"digest: error: {message}", file=sys.stderr)
    raise SystemExit(code)
