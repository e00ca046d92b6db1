"""`digest schedule`: the weekly scheduler in the foreground."""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from digest.cli.app import app
from digest.cli.common import console, session, settings
from digest.cli.options import NewsletterOpt

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
    newsletter: NewsletterOpt = None,
) -> None:
    """Send every newsletter's editions on their schedules (default Fridays 09:00), once.

    Runs in the foreground; log lines go to stderr, one per run with key=value fields.
    Sends missed while no scheduler ran are made up on start within DIGEST_MISFIRE_GRACE;
    an interrupted send is resumed. Ctrl-C or SIGTERM finish the messages in flight
    and exit. Several schedulers on one database elect one; the others stand by.
    """
    import asyncio

    from digest.editorial import editions, newsletters
    from digest.scheduling.scheduler import check
    from digest.scheduling.trigger import describe, describe_duration, next_fire_times

    s = settings()
    if show:
        with session() as db:
            own = newsletters.settings_for(s, newsletters.resolve(db, s, newsletter))
        times = next_fire_times(own, show)
        for moment in times:
            console.print(describe(moment, own.tz))
        if not times:
            console.print(f"never: the schedule {own.schedule!r} does not fire")
        return
    check(s)
    from digest.privatefiles import warn_exposed

    warn_exposed(s)
    with session() as db:  # open and migrate the store now: errors belong at start
        plan = []
        for nl in newsletters.all_(db) or [newsletters.ensure_default(db)]:
            own = newsletters.settings_for(s, nl)
            check(own)
            nxt = editions.open_edition(db, s, nl)
            label = describe(nxt.planned_at, own.tz) if nxt.planned_at else "never"
            plan.append((nl, own, nxt.key, label))
    for nl, _own, _key, when in plan:
        label = "next send" if nl.is_default else f"next send of {nl.slug}"
        console.print(f"{label}: {when}")
    for nl, own, key, _when in plan:
        console.print(f"  {nl.slug}: edition {key}, schedule {own.schedule!r} in {own.timezone}")
    console.print(
        "a send missed while no scheduler runs is made up within "
        f"{describe_duration(s.misfire_grace)}. Ctrl-C stops."
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
