"""`digest schedule`: the weekly scheduler in the foreground."""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from digest.cli.app import app
from digest.cli.common import console, engine, settings

if TYPE_CHECKING:
    from digest.settings import Settings


@app.command("schedule")
def schedule(
    show: Annotated[
        int,
        typer.Option(
            "--show", metavar="N", min=0, max=100, help="Print the next N send times and exit."
        ),
    ] = 0,
) -> None:
    """Send every week's issue on DIGEST_SCHEDULE (default Fridays 09:00), once.

    Runs in the foreground; log lines go to stderr, one per run with key=value fields.
    Sends missed while no scheduler ran are made up on start within DIGEST_MISFIRE_GRACE;
    an interrupted send is resumed. Ctrl-C or SIGTERM finish the messages in flight
    and exit. Several schedulers on one database elect one; the others stand by.
    """
    import asyncio

    from digest.scheduling.scheduler import check
    from digest.scheduling.trigger import describe, describe_duration, next_fire_times

    s = settings()
    if show:
        times = next_fire_times(s, show)
        for when in times:
            console.print(describe(when, s.tz))
        if not times:
            console.print(f"never: DIGEST_SCHEDULE {s.schedule!r} does not fire")
        return
    check(s)
    engine()  # open and migrate the database now: errors belong at start, not on Friday
    from digest.privatefiles import warn_exposed

    warn_exposed(s)
    (upcoming,) = next_fire_times(s, 1)
    console.print(f"next send: {describe(upcoming, s.tz)}")
    console.print(
        f"schedule {s.schedule!r} in {s.timezone}; a send missed while no scheduler runs is "
        f"made up within {describe_duration(s.misfire_grace)}. Ctrl-C stops."
    )
    console.print(
        f"alerts go to {s.alert_email}"
        if s.alert_email
        else "DIGEST_ALERT_EMAIL is not set: missed or blocked sends are only logged"
    )
    sys.stdout.flush()
    logging.getLogger("digest").setLevel(logging.INFO)
    asyncio.run(_main(s))


async def _main(s: Settings) -> None:
    import asyncio

    from digest.delivery.sender import install_signal_handlers
    from digest.scheduling.scheduler import run_scheduler

    stop = asyncio.Event()
    install_signal_handlers(stop)
    await run_scheduler(s, stop)
