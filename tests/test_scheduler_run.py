"""One firing in-process, on a real database and a real aiosmtpd server: preflight,
SMTP outages and recovery, missed sends, and the web app's in-process scheduler."""

from __future__ import annotations

import asyncio
import mailbox
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest

from digest.clock import utcnow
from digest.delivery import campaign
from digest.editorial import editions
from digest.editorial.editions import week_key
from digest.editorial.models import IssueStatus
from digest.editorial.picks import add_pick, validate_pick
from digest.scheduling.leadership import Leadership
from digest.scheduling.runner import Runner, RunResult
from digest.scheduling.scheduler import run_scheduler, scheduler_in_background
from digest.scheduling.trigger import make_trigger
from digest.settings import Settings, load_settings
from digest.store.engine import session_scope
from subscribers import store
from subscribers.model import SubscriberStatus
from tests.bouncemail import postfix_dsn, send_issue
from tests.samples import sample_pick
from tests.smtpd import SMTPServer
from tests.test_bounces import maildir_with

OPS = "ops@news.example.com"


@pytest.fixture(autouse=True)
def _alerts_and_a_fast_clock(monkeypatch: pytest.MonkeyPatch, workdir) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DIGEST_ALERT_EMAIL", OPS)
    monkeypatch.setenv("DIGEST_SCHEDULE", "* * * * *")  # due = the last whole minute
    monkeypatch.setenv("DIGEST_SCHEDULER_RETRY", "1")
    monkeypatch.setenv("DIGEST_SPAMASSASSIN", "off")  # seconds per issue; not tested here


def seed(engine, settings: Settings, picks: list[dict], subscribers: int = 5) -> list[str]:  # type: ignore[no-untyped-def]
    with session_scope(engine) as s:
        for pick in picks:
            add_pick(s, validate_pick(pick, settings.sections))
        emails = [f"reader{i}@example.com" for i in range(subscribers)]
        for e in emails:
            store.add(s, e, "", status=SubscriberStatus.CONFIRMED)
    return emails


def normal_picks(n: int = 3) -> list[dict]:
    return [
        {k: v for k, v in sample_pick(i).items() if k not in ("id", "position")} for i in range(n)
    ]


def run(engine, settings: Settings, action: Callable[[Runner], Awaitable[None]]) -> list[RunResult]:  # type: ignore[no-untyped-def]
    async def go() -> list[RunResult]:
        runner = Runner(engine, settings, make_trigger(settings), asyncio.Event())
        try:
            await action(runner)
        finally:
            runner.halt.set()
            await runner.drain()
        return runner.results

    return asyncio.run(go())


async def until(check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def alert_subjects(server: SMTPServer) -> list[str]:
    return [str(m.parse()["Subject"]) for m in server.messages if m.rcpt_tos == [OPS]]


def test_preflight_errors_block_the_send_and_tell_the_operator(smtp_server, engine) -> None:
    settings = load_settings()
    filler = ("A long paragraph that makes this issue far too heavy for Gmail. " * 40)[:2000]
    big = [
        {"url": f"https://news.example.com/a{i}", "title": f"Story number {i}", "summary": filler}
        for i in range(40)
    ]
    seed(engine, settings, big)

    async def fire(runner: Runner) -> None:
        runner.fire()
        await runner.drain()

    (result,) = run(engine, settings, fire)
    assert result.outcome == "preflight-failed"
    assert "Gmail clips above 102 KB" in result.detail
    assert [m.rcpt_tos for m in smtp_server.messages] == [[OPS]]  # the alert, no digest
    (alert,) = smtp_server.messages
    assert "was not sent: preflight found errors" in str(alert.parse()["Subject"])
    assert "error: HTML is" in alert.parse().get_content()
    with session_scope(engine) as s:  # still FROZEN: editors can fix it and send it
        assert editions.get_issue(s, result.key).status == IssueStatus.FROZEN


@pytest.mark.parametrize("db_backend", ["sqlite"], indirect=True)
def test_smtp_outage_is_retried_until_the_send_completes(
    workdir, engine, monkeypatch, caplog
) -> None:
    server = SMTPServer()  # not listening yet
    monkeypatch.setenv("DIGEST_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("DIGEST_SMTP_PORT", str(server.port))
    monkeypatch.setenv("DIGEST_SMTP_SECURITY", "none")
    settings = load_settings()
    emails = seed(engine, settings, normal_picks())

    async def outage_then_recovery(runner: Runner) -> None:
        runner.fire()
        await until(lambda: "alert not sent" in caplog.text)  # SMTP is down for alerts too
        with server:
            await until(lambda: any(r.outcome == "sent" for r in runner.results))
            await until(lambda: len(alert_subjects(server)) == 1)

    results = run(engine, settings, outage_then_recovery)
    assert results[0].outcome == "error" and "TransportError" in results[0].detail
    assert results[-1].outcome == "sent" and results[-1].trigger == "retry"
    assert Counter(r for r in server.handler.recipients() if r != OPS) == Counter(emails)
    (subject,) = alert_subjects(server)  # the outage alert could not be sent; this one can
    assert f"the send of {results[0].key} has completed" in subject


def test_missed_send_alerts_unless_the_issue_went_out_anyway(smtp_server, engine) -> None:
    settings = load_settings()
    seed(engine, settings, normal_picks())
    due = utcnow() - timedelta(days=1)
    key = week_key(due, settings)

    async def missed(runner: Runner) -> None:
        runner.missed(due)
        await runner.drain()

    (result,) = run(engine, settings, missed)
    assert (result.key, result.outcome) == (key, "missed")
    (subject,) = alert_subjects(smtp_server)
    assert f"issue {key} was NOT sent" in subject
    # Sent by hand meanwhile: a missed firing is then nothing to worry about.
    issue = campaign.prepare_send(engine, settings, key)
    with session_scope(engine) as s:
        editions.get_issue(s, key).status = IssueStatus.SENT
    assert issue.key == key
    assert run(engine, settings, missed) == []
    assert len(alert_subjects(smtp_server)) == 1


def test_web_app_runs_the_scheduler_in_process(workdir, engine) -> None:
    def leader() -> str | None:
        row = Leadership(engine, 60).current()
        return row.holder if row else None

    async def serve() -> None:
        async with scheduler_in_background(load_settings(serve_scheduler=False)) as task:
            assert task is None
        async with scheduler_in_background(load_settings(serve_scheduler=True)) as task:
            assert task is not None
            await until(lambda: leader() is not None)
        assert task.done() and task.exception() is None
        assert leader() is None  # the lease was released on the way out

    asyncio.run(serve())


def test_the_leader_reads_the_bounce_mailbox_on_its_interval(workdir, engine) -> None:
    _, sent = send_issue(engine, load_settings(), "gone@example.com")
    maildir_with(workdir / "bounces", postfix_dsn(sent["gone@example.com"], "5.1.1"))
    settings = load_settings(bounce_mailbox=f"maildir:{workdir / 'bounces'}", bounce_interval=1)

    def status() -> str:
        with session_scope(engine) as s:
            return store.get_by_email(s, "gone@example.com").status

    async def go() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(run_scheduler(settings, stop))
        try:
            await until(lambda: status() == SubscriberStatus.BOUNCED)
        finally:
            stop.set()
            await task

    asyncio.run(go())
    assert status() == SubscriberStatus.BOUNCED
    box = mailbox.Maildir(workdir / "bounces", create=False)
    assert [m.get_subdir() for m in box] == ["cur"]  # processed once, not again next hour
