"""What every command needs: settings, the store, consoles, and the error policy."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from functools import cache
from typing import Any, TypeVar

from rich.console import Console
from sqlalchemy.engine import Engine

from digest.settings import Settings, load_settings
from digest.store.engine import get_engine

T = TypeVar("T")
console = Console(highlight=False, soft_wrap=True, markup=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False)


@cache
def settings() -> Settings:
    return load_settings()


def engine() -> Engine:
    s = settings()
    return get_engine(s.database_url, pool_size=s.db_pool_size)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def fail(message: str, code: int = 1) -> None:
    """One line on stderr and a non-zero exit."""
    print(f"digest: error: {message}", file=sys.stderr)
    raise SystemExit(code)
