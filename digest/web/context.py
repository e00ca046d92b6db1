"""What every handler needs: the settings, the engine, and database work off the event loop."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from digest.settings import Settings
from digest.store.engine import session_scope

T = TypeVar("T")


def settings_of(request: Request) -> Settings:
    return request.app.state.settings


def engine_of(request: Request) -> Engine:
    return request.app.state.engine


def _in_session(engine: Engine, fn: Callable[[Session], T]) -> T:
    with session_scope(engine) as session:
        return fn(session)


async def db(request: Request, fn: Callable[[Session], T]) -> T:
    """Run `fn(session)` in one transaction on a worker thread (SQL and argon2 block)."""
    return await run_in_threadpool(_in_session, engine_of(request), fn)
