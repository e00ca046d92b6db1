"""`digest send` (with --status, --dry-run, --pause, --resume, --cancel) and `digest test-send`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from digest.cli.app import app
from digest.cli.common import console, engine, real_console, session, settings
from digest.cli.options import EditionOpt, NewsletterOpt

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from digest.delivery.campaign import Launch, Target
    from digest.delivery.sender import SendReport
    from digest.delivery.transports.base import Transport
    from digest.editorial.models import Edition
    from digest.settings import Settings


@app.command("send")
def send(
    newsletter: NewsletterOpt = None,
    edition: EditionOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be sent; change nothing.")
    ] = False,
    status: Annotated[
        bool, typer.Option("--status", help="Show the delivery state instead of sending.")
    ] = False,
    recipient: Annotated[
        str | None, typer.Option("--recipient", help="With --status: explain one address.")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Send even if the preflight reports errors.")
    ] = False,
    pause: Annotated[
        bool, typer.Option("--pause", help="Pause the send in progress (in-flight ones finish).")
    ] = False,
    resume: Annotated[
        bool, typer.Option("--resume", help="Resume a paused send and carry it on here.")
    ] = False,
    cancel: Annotated[
        bool, typer.Option("--cancel", help="Stop the send in progress for good.")
    ] = False,
    reason: Annotated[
        str, typer.Option(help="With --cancel: why (recorded for each skipped delivery).")
    ] = "cancelled by the operator",
) -> None:
    """Deliver the newsletter's next edition to every confirmed subscriber, once each.

    Everything is checked before the edition changes state: the signing key, that
    someone is subscribed, the preflight (exit 3 on errors unless --force) and the SMTP
    server. Resumable: run it again after a crash or Ctrl-C and it continues where it
    stopped, nobody getting it twice. Sending early is fine: the next edition opens at
    once for the next slot of the schedule.
    """
    import asyncio

    from digest.delivery import campaign
    from digest.delivery.transports import make_transport
    from digest.errors import InputError

    if sum((pause, resume, cancel, status, dry_run)) > 1:
        raise InputError(
            "choose one of --status, --dry-run, --pause, --resume, --cancel", field="send"
        )
    s = settings()
    eng = engine()
    if status:
        _status(newsletter, edition, recipient)
        return
    if dry_run:
        _dry_run(newsletter, edition)
        return
    if pause:
        t = campaign.pause(eng, s, newsletter, edition)
        console.print(
            f"Paused the send of {t.newsletter.slug} edition {t.edition.key}: senders take no "
            "new deliveries; those in flight finish. `digest send --resume` carries on."
        )
        return
    if cancel:
        t, skipped = campaign.cancel(eng, s, newsletter, edition, reason=reason)
        console.print(
            f"Cancelled the send of {t.newsletter.slug} edition {t.edition.key}: {skipped} "
            f"deliveries skipped ({reason}); those in flight finish and are recorded."
        )
        return
    if resume:
        t = campaign.resume(eng, s, newsletter, edition)
        console.print(f"Resumed the send of {t.newsletter.slug} edition {t.edition.key}.")
        newsletter, edition = t.newsletter.slug, t.edition.key
    from digest.privatefiles import warn_exposed

    warn_exposed(s)
    launch = campaign.plan_send(eng, s, newsletter, edition, force=force)
    t = launch.target
    if launch.over:
        _already(t)
        return
    if launch.report is not None and not launch.report.ok:  # --force
        for line in launch.report.lines():
            console.print(line, markup=False)
    transport = make_transport(t.settings)
    result = asyncio.run(_open_and_send(eng, s, launch, transport))
    console.print(result.summary())
    if result.halted == "paused":
        console.print("Paused. `digest send --resume` carries on; nobody will get it twice.")
    elif result.halted == "cancelled":
        console.print("Cancelled; what was still owed is skipped.")
    elif result.stopped:
        console.print("Stopped. Run `digest send` again to resume; nobody will get it twice.")
    elif not result.finished:
        raise typer.Exit(4)
    else:
        _next_edition(t)


def _already(t: Target) -> None:
    from digest.delivery import ledger
    from digest.delivery.models import DeliveryStatus

    with session() as db:
        c = ledger.counts(db, t.edition.id)
    console.print(
        f"{t.newsletter.slug} edition {t.edition.key} was already {t.edition.status} "
        f"({c[DeliveryStatus.SENT]} delivered); nothing to do."
    )


def _next_edition(t: Target) -> None:
    from digest.editorial import editions
    from digest.scheduling.trigger import describe

    with session() as db:
        nxt = editions.open_edition(db, settings(), t.newsletter)
        when = describe(nxt.planned_at, t.settings.tz) if nxt.planned_at else "never"
        console.print(f"Next edition of {t.newsletter.slug}: {nxt.key}, planned {when}.")


async def _open_and_send(
    eng: Engine, s: Settings, launch: Launch, transport: Transport
) -> SendReport:
    """Open the transport (an unusable SMTP server fails here, before any state change),
    then start the edition and send it."""
    import asyncio

    from digest.delivery import campaign

    async with transport:
        edition = await asyncio.to_thread(campaign.start_send, eng, s, launch)
        return await _run(eng, launch.target.settings, edition, transport)


async def _run(eng: Engine, own: Settings, row: Edition, transport: Transport) -> SendReport:
    import asyncio

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from digest.delivery import ledger
    from digest.delivery.models import DeliveryStatus as D
    from digest.delivery.sender import Sender, install_signal_handlers
    from digest.store.engine import session_scope

    stop = asyncio.Event()
    install_signal_handlers(stop)
    with session_scope(eng) as db:
        c = ledger.counts(db, row.id)
    total = sum(c.values())
    done0 = total - c[D.PENDING] - c[D.DEFERRED]
    console.print(f"Sending edition {row.key} to {total} subscribers via {transport.describe()}")
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=real_console(console),
        transient=False,
    ) as progress:
        task = progress.add_task(row.key, total=total, completed=done0, detail="")

        def on_progress(rep: SendReport) -> None:
            r = rep.run
            final = r[D.SENT] + r[D.FAILED] + r[D.SKIPPED]
            detail = f"sent {r[D.SENT]} deferred {r[D.DEFERRED]} failed {r[D.FAILED]}"
            if rep.waiting_until is not None:
                detail += f" · retrying deferred at {rep.waiting_until:%H:%M:%S} UTC"
            progress.update(task, completed=done0 + final, detail=detail)

        sender = Sender(eng, own, row, transport, on_progress=on_progress, stop=stop)
        return await sender.run()


def _dry_run(newsletter: str | None, edition: str | None) -> None:
    from digest.delivery import campaign, ledger, preflight
    from digest.delivery.models import DeliveryStatus as D
    from digest.delivery.transports import make_transport
    from digest.editorial import editions
    from subscribers import subscriptions

    s = settings()
    with session() as db:
        t = campaign.target(db, s, newsletter, edition)
        row = editions.resumable(db, t.newsletter) if edition is None else None
        row = row or t.edition
        if row.status in editions.OPEN:
            editions.freeze(db, s, t.newsletter, row)
        c = ledger.counts(db, row.id)
        owed = c[D.PENDING] + c[D.DEFERRED]
        new = (
            subscriptions.mailable_count(db, t.newsletter.id) if row.status in editions.OPEN else 0
        )
        report = preflight.check_issue(row, t.settings)
        key, state, slug = row.key, row.status, t.newsletter.slug  # before the rollback
        db.rollback()  # a dry run changes nothing
    console.print(f"Dry run for {slug} edition {key} ({state}); nothing will be sent.")
    via = make_transport(t.settings).describe()
    console.print(f"  would send to {owed + new} subscribers via {via}")
    console.print(f"  already sent: {c[D.SENT]}, failed: {c[D.FAILED]}, skipped: {c[D.SKIPPED]}")
    for line in report.lines():
        console.print("  " + line, markup=False)


def _status(newsletter: str | None, key: str | None, recipient: str | None) -> None:
    from sqlalchemy import select

    from digest.delivery import ledger, presence
    from digest.delivery.models import DeliveryStatus as D
    from digest.editorial import editions, newsletters
    from digest.editorial.models import Edition, EditionStatus
    from digest.errors import NotFound
    from subscribers import store

    s = settings()
    with session() as db:
        nl = newsletters.resolve(db, s, newsletter)
        row = (
            editions.get(db, nl, key)
            if key
            else db.scalar(
                select(Edition)
                .where(Edition.newsletter_id == nl.id, Edition.status != EditionStatus.DRAFT)
                .where(Edition.status != EditionStatus.SCHEDULED)
                .order_by(Edition.status != EditionStatus.SENDING, Edition.id.desc())
                .limit(1)
            )
        )
        if row is None:
            nxt = editions.open_edition(db, s, nl)
            raise NotFound(f"no edition of {nl.slug} was sent yet (the next is {nxt.key})")
        c = ledger.counts(db, row.id)
        paused = " (paused)" if row.paused_at else ""
        console.print(
            f"newsletter={nl.slug} edition={row.key} status={row.status}{paused} "
            f"sent={c[D.SENT]} pending={c[D.PENDING]} deferred={c[D.DEFERRED]} "
            f"failed={c[D.FAILED]} skipped={c[D.SKIPPED]}"
        )
        console.print(presence.describe(db))
        if recipient:
            _email, email_key = store.normalise_email(recipient)
            info = ledger.explain(db, row, email_key)
            if info is None:
                sub = store.get_by_email(db, recipient)
                from subscribers import subscriptions

                m = subscriptions.member(db, nl.id, sub.id) if sub else None
                why = (
                    f"subscriber status is {m.status or 'not subscribed'}"
                    if m
                    else "not a subscriber"
                )
                console.print(f"{recipient}: not in the ledger for {row.key} ({why})")
            else:
                retry = (
                    f"; next try at {info['next_attempt_at']}" if info["next_attempt_at"] else ""
                )
                console.print(
                    f"{info['email']}: {info['status']} after {info['attempts']} attempt(s); "
                    f"last reply: {info['last_code'] or '-'} {info['last_reply'] or '-'}; "
                    f"subscriber is {info['subscriber_status']}{retry}"
                )


@app.command("test-send")
def test_send(
    emails: Annotated[
        list[str], typer.Argument(metavar="EMAIL...", help="Where to send the test.")
    ],
    newsletter: NewsletterOpt = None,
    edition: EditionOpt = None,
) -> None:
    """Send the next edition with a [TEST] subject to these addresses; no ledger is touched."""
    import asyncio

    from digest.delivery import campaign
    from digest.delivery.transports import make_transport
    from digest.delivery.transports.base import Outcome
    from digest.editorial import editions

    s = settings()
    with session() as db:
        t = campaign.target(db, s, newsletter, edition)
        if t.edition.status in editions.OPEN:
            editions.freeze(db, s, t.newsletter, t.edition)
    transport = make_transport(t.settings, concurrency=1)
    results = asyncio.run(campaign.test_send(t.settings, t.edition, emails, transport))
    bad = 0
    for email, res in results:
        ok = res.outcome is Outcome.SENT
        bad += not ok
        console.print(f"{email}: {res.outcome.value} {res.code or ''} {res.reply}".rstrip())
    if bad:
        raise typer.Exit(1)
