"""`digest worker`: join the sends in progress from this machine (PostgreSQL only)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from digest.cli.app import app
from digest.cli.common import console, engine, settings
from digest.errors import StateError

if TYPE_CHECKING:
    from digest.delivery.sender import SendReport
    from digest.delivery.worker import WorkerReport


@app.command("worker")
def worker(
    once: Annotated[
        bool,
        typer.Option("--once", help="Exit when no send is left instead of waiting for the next."),
    ] = False,
) -> None:
    """Help send every issue that is being sent, alongside `digest send` and other workers.

    Run any number of these, on any number of machines, against one PostgreSQL
    database: each claims batches of pending deliveries, so nobody gets the issue
    twice, and a worker that dies only delays its batch by DIGEST_LEASE_SECONDS.
    Ctrl-C or SIGTERM: messages in flight finish, the rest is left for the others.
    """
    import asyncio

    from digest.delivery.worker import SQLITE_REFUSAL

    s = settings()
    if not s.is_postgres:
        raise StateError(SQLITE_REFUSAL)
    eng = engine()
    report = asyncio.run(_run(eng, s, once))
    console.print(report.summary())


async def _run(eng, s, once: bool) -> WorkerReport:  # type: ignore[no-untyped-def]
    import asyncio

    from digest.delivery.sender import install_signal_handlers
    from digest.delivery.worker import Worker
    from digest.webhooks.dispatcher import in_background as webhooks_in_background

    stop = asyncio.Event()
    install_signal_handlers(stop)
    w = Worker(eng, s, once=once, stop=stop, on_run=_print_run)
    mode = "until no send is left" if once else "until stopped (Ctrl-C)"
    console.print(
        f"Worker {w.presence.id} joining sends in progress {mode}; "
        f"looking for work every {s.worker_poll_seconds:g}s"
    )
    async with webhooks_in_background(s, eng):
        return await w.run()


def _print_run(report: SendReport) -> None:
    console.print(report.summary())
