"""`digest send` and `digest test-send`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from digest.cli.app import app
from digest.cli.build import IssueOpt
from digest.cli.common import console, engine, real_console, session, settings

if TYPE_CHECKING:
    from digest.delivery.sender import SendReport


@app.command("send")
def send(
    issue: IssueOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be sent; change nothing.")
    ] = False,
    status: Annotated[
        bool, typer.Option("--status", help="Show the issue's delivery state instead of sending.")
    ] = False,
    recipient: Annotated[
        str | None, typer.Option("--recipient", help="With --status: explain one address.")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Send even if the preflight reports errors.")
    ] = False,
) -> None:
    """Deliver the issue to every confirmed subscriber, exactly once per person.

    Resumable: run it again after a crash or Ctrl-C and it continues where it stopped,
    without sending anyone the issue twice. Without --issue, an interrupted send is
    resumed first, otherwise this week's issue is built and sent.
    """
    import asyncio

    from digest.delivery import campaign, ledger, preflight
    from digest.delivery.models import DeliveryStatus
    from digest.delivery.transports import make_transport
    from digest.editorial.models import IssueStatus

    s = settings()
    eng = engine()
    if status:
        _status(issue, recipient)
        return
    if dry_run:
        _dry_run(issue)
        return
    from digest.privatefiles import warn_exposed

    warn_exposed(s)
    row = campaign.prepare_send(eng, s, issue)
    if row.status == IssueStatus.SENT:
        with session() as db:
            c = ledger.counts(db, row.id)
        console.print(
            f"Issue {row.key} was already sent ({c[DeliveryStatus.SENT]} delivered); nothing to do."
        )
        return
    report = preflight.check_issue(row, s)
    if not report.ok and not force:
        for line in report.lines():
            console.print(line, markup=False)
        raise typer.Exit(3)
    transport = make_transport(s)
    result = asyncio.run(_run(eng, s, row, transport))
    console.print(result.summary())
    if result.stopped:
        console.print("Stopped. Run `digest send` again to resume; nobody will get it twice.")
    elif not result.finished:
        raise typer.Exit(4)


async def _run(eng, s, row, transport) -> SendReport:  # type: ignore[no-untyped-def]
    import asyncio

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from digest.delivery import ledger
    from digest.delivery.models import DeliveryStatus
    from digest.delivery.sender import Sender, install_signal_handlers
    from digest.store.engine import session_scope

    stop = asyncio.Event()
    install_signal_handlers(stop)
    with session_scope(eng) as db:
        c = ledger.counts(db, row.id)
    total = sum(c.values())
    done0 = total - c[DeliveryStatus.PENDING] - c[DeliveryStatus.DEFERRED]
    console.print(f"Sending issue {row.key} to {total} subscribers via {transport.describe()}")
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
            final = (
                rep.run[DeliveryStatus.SENT]
                + rep.run[DeliveryStatus.FAILED]
                + rep.run[DeliveryStatus.SKIPPED]
            )
            detail = f"sent {rep.run[DeliveryStatus.SENT]} deferred {rep.run[DeliveryStatus.DEFERRED]} failed {rep.run[DeliveryStatus.FAILED]}"
            if rep.waiting_until is not None:
                detail += f" · retrying deferred at {rep.waiting_until:%H:%M:%S} UTC"
            progress.update(task, completed=done0 + final, detail=detail)

        async with transport:
            return await Sender(eng, s, row, transport, on_progress=on_progress, stop=stop).run()


def _dry_run(key: str | None) -> None:
    from digest.delivery import ledger, preflight
    from digest.delivery.models import DeliveryStatus
    from digest.delivery.transports import make_transport
    from digest.editorial import editions
    from digest.editorial.models import IssueStatus
    from subscribers import store
    from subscribers.model import SubscriberStatus

    s = settings()
    with session() as db:
        row = editions.resumable(db) if key is None else None
        key = row.key if row else (key or editions.current_key(s))
        row = editions.find_issue(db, editions.check_key(key))
        if row is None or row.status == IssueStatus.DRAFT or row.status == IssueStatus.FROZEN:
            row = editions.freeze(db, s, key)
        c = ledger.counts(db, row.id)
        owed = c[DeliveryStatus.PENDING] + c[DeliveryStatus.DEFERRED]
        new = (
            store.count(db).get(SubscriberStatus.CONFIRMED, 0) - sum(c.values())
            if row.status != IssueStatus.SENT
            else 0
        )
        report = preflight.check_issue(row, s)
        issue_key, issue_status = row.key, row.status  # read before the rollback expires them
        db.rollback()  # a dry run changes nothing
    console.print(f"Dry run for issue {issue_key} ({issue_status}); nothing will be sent.")
    console.print(
        f"  would send to {owed + max(new, 0)} subscribers via {make_transport(s).describe()}"
    )
    console.print(
        f"  already sent: {c[DeliveryStatus.SENT]}, failed: {c[DeliveryStatus.FAILED]}, skipped: {c[DeliveryStatus.SKIPPED]}"
    )
    for line in report.lines():
        console.print("  " + line, markup=False)


def _status(key: str | None, recipient: str | None) -> None:
    from digest.delivery import ledger, presence
    from digest.delivery.models import DeliveryStatus
    from digest.editorial import editions
    from digest.errors import NotFound
    from subscribers import store

    s = settings()
    with session() as db:
        row = (
            editions.get_issue(db, key)
            if key
            else editions.resumable(db) or next(iter(editions.list_issues(db, 1)), None)
        )
        if row is None:
            raise NotFound("no issue yet (see `digest build`)")
        c = ledger.counts(db, row.id)
        console.print(
            f"issue={row.key} status={row.status} sent={c[DeliveryStatus.SENT]} pending={c[DeliveryStatus.PENDING]} "
            f"deferred={c[DeliveryStatus.DEFERRED]} failed={c[DeliveryStatus.FAILED]} skipped={c[DeliveryStatus.SKIPPED]}"
        )
        console.print(presence.describe(db))
        if recipient:
            _email, email_key = store.normalise_email(recipient)
            info = ledger.explain(db, row.id, email_key)
            if info is None:
                sub = store.get_by_email(db, recipient)
                why = f"subscriber status is {sub.status}" if sub else "not a subscriber"
                console.print(f"{recipient}: not in the ledger for {row.key} ({why})")
            else:
                console.print(
                    f"{info['email']}: {info['status']} after {info['attempts']} attempt(s); "
                    f"last reply: {info['last_code'] or '-'} {info['last_reply'] or '-'}; "
                    f"subscriber is {info['subscriber_status']}"
                    + (
                        f"; next try at {info['next_attempt_at']}"
                        if info["next_attempt_at"]
                        else ""
                    )
                )
    _ = s


@app.command("test-send")
def test_send(
    emails: Annotated[
        list[str], typer.Argument(metavar="EMAIL...", help="Where to send the test.")
    ],
    issue: IssueOpt = None,
) -> None:
    """Send the issue with a [TEST] subject to these addresses; the ledger is untouched."""
    import asyncio

    from digest.delivery import campaign
    from digest.delivery.transports import make_transport
    from digest.delivery.transports.base import Outcome
    from digest.editorial import editions
    from digest.editorial.models import IssueStatus

    s = settings()
    with session() as db:
        row = editions.find_issue(db, editions.check_key(issue or editions.current_key(s)))
        if row is None or row.status == IssueStatus.DRAFT:
            row = editions.freeze(db, s, issue)
    results = asyncio.run(campaign.test_send(s, row, emails, make_transport(s, concurrency=1)))
    bad = 0
    for email, res in results:
        ok = res.outcome is Outcome.SENT
        bad += not ok
        console.print(f"{email}: {res.outcome.value} {res.code or ''} {res.reply}".rstrip())
    if bad:
        raise typer.Exit(1)
