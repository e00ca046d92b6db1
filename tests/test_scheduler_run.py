"""The scheduler's runner in-process, on a real database and a real aiosmtpd server: due
editions, preflight, SMTP outages and recovery, missed sends, two newsletters on their own
schedules, and the web app's in-process scheduler."""

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
from digest.editorial import editions, newsletters
from digest.editorial.models import EditionStatus
from digest.editorial.picks import add_pick, validate_pick
from digest.scheduling.leadership import Leadership
from digest.scheduling.runner import Runner, RunResult
from digest.scheduling.scheduler import run_scheduler, scheduler_in_background
from digest.settings import Settings, load_settings
from digest.store.engine import session_scope
from subscribers import store, subscriptions
from subscribers.model import Suppression
from tests.bouncemail import postfix_dsn, send_issue
from tests.samples import sample_pick
from tests.smtpd import SMTPServer
from tests.test_bounces import maildir_with

OPS = "ops@news.example.com"


@pytest.fixture(autouse=True)
def _alerts_and_quick_retries(monkeypatch: pytest.MonkeyPatch, workdir) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DIGEST_ALERT_EMAIL", OPS)
    monkeypatch.setenv("DIGEST_SCHEDULER_RETRY", "1")
    monkeypatch.setenv("DIGEST_SPAMASSASSIN", "off")  # seconds per edition; not tested here


def seed(  # type: ignore[no-untyped-def]
    engine, settings: Settings, picks: list[dict], subscribers: int = 5, slug: str | None = None
) -> list[str]:
    with session_scope(engine) as s:
        nl = newsletters.resolve(s, settings, slug)
        edition = editions.open_edition(s, settings, nl)
        own = newsletters.settings_for(settings, nl)
        for pick in picks:
            add_pick(s, edition.id, validate_pick(pick, own.sections))
        emails = [f"{nl.slug}{i}@example.com" for i in range(subscribers)]
        for e in emails:
            subscriptions.add(s, nl.id, e, "", status="confirmed")
    return emails


def due(engine, settings: Settings, ago: timedelta = timedelta(seconds=2), slug: str | None = None):  # type: ignore[no-untyped-def]
    """Make the newsletter's next edition due (its time `ago` in the past); its key."""
    with session_scope(engine) as s:
        nl = newsletters.resolve(s, settings, slug)
        edition = editions.open_edition(s, settings, nl)
        edition.planned_at = utcnow() - ago
        return edition.key


def normal_picks(n: int = 3) -> list[dict]:
    return [
        {k: v for k, v in sample_pick(i).items() if k not in ("id", "position")} for i in range(n)
    ]


def run(engine, settings: Settings, action: Callable[[Runner], Awaitable[None]]) -> list[RunResult]:  # type: ignore[no-untyped-def]
    async def go() -> list[RunResult]:
        runner = Runner(engine, settings, asyncio.Event())
        try:
            await action(runner)
        finally:
            runner.halt.set()
            await runner.drain()
        return runner.results

    return asyncio.run(go())


async def check_once(runner: Runner) -> None:
    await runner.check()
    await runner.drain()


async def until(check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def alert_subjects(server: SMTPServer) -> list[str]:
    return [str(m.parse()["Subject"]) for m in server.messages if m.rcpt_tos == [OPS]]


def status_of(engine, key: str, slug: str | None = None) -> EditionStatus:  # type: ignore[no-untyped-def]
    with session_scope(engine) as s:
        nl = newsletters.resolve(s, load_settings(), slug)
        return editions.get(s, nl, key).status


def test_a_due_edition_is_sent_once_and_the_next_draft_opens(smtp_server, engine) -> None:
    settings = load_settings()
    emails = seed(engine, settings, normal_picks())
    key = due(engine, settings)
    (result,) = run(engine, settings, check_once)
    assert (result.key, result.trigger, result.outcome) == (key, "schedule", "sent")
    assert "newsletter=default" in result.line() and "recipients=5" in result.line()
    assert Counter(r for r in smtp_server.handler.recipients()) == Counter(emails)
    assert status_of(engine, key) == EditionStatus.SENT
    assert run(engine, settings, check_once) == []  # nothing due: the next one is a week off
    with session_scope(engine) as s:
        nxt = editions.open_edition(s, settings, newsletters.resolve(s, settings))
        assert nxt.key != key and nxt.planned_at > utcnow()


def test_preflight_errors_block_the_send_and_tell_the_operator(smtp_server, engine) -> None:
    settings = load_settings()
    filler = ("A long paragraph that makes this issue far too heavy for Gmail. " * 40)[:2000]
    big = [
        {"url": f"https://news.example.com/a{i}", "title": f"Story number {i}", "summary": filler}
        for i in range(40)
    ]
    seed(engine, settings, big)
    key = due(engine, settings)
    (result,) = run(engine, settings, check_once)
    assert result.outcome == "preflight-failed"
    assert "Gmail clips above 102 KB" in result.detail
    assert [m.rcpt_tos for m in smtp_server.messages] == [[OPS]]  # the alert, no newsletter
    (alert,) = smtp_server.messages
    assert "was not sent: preflight found errors" in str(alert.parse()["Subject"])
    assert "error: HTML is" in alert.parse().get_content()
    assert status_of(engine, key) == EditionStatus.DRAFT  # editors can fix it; nothing used up


def test_nobody_subscribed_alerts_and_leaves_the_draft(smtp_server, engine) -> None:
    settings = load_settings()
    seed(engine, settings, normal_picks(), subscribers=0)
    key = due(engine, settings)
    (result,) = run(engine, settings, check_once)
    assert result.outcome == "no-subscribers"
    assert status_of(engine, key) == EditionStatus.DRAFT
    (subject,) = alert_subjects(smtp_server)
    assert "nobody is subscribed" in subject


def test_nothing_picked_alerts_once_and_later_picks_are_sent(smtp_server, engine) -> None:
    settings = load_settings()
    emails = seed(engine, settings, [])
    key = due(engine, settings)

    async def twice_then_picked(runner: Runner) -> None:
        await check_once(runner)
        await asyncio.sleep(1.1)  # DIGEST_SCHEDULER_RETRY
        await check_once(runner)
        seed(engine, settings, normal_picks(1), subscribers=0)
        await asyncio.sleep(1.1)
        await check_once(runner)

    results = run(engine, settings, twice_then_picked)
    assert [r.outcome for r in results] == ["nothing-picked", "nothing-picked", "sent"]
    assert all(r.key == key for r in results)
    (subject,) = alert_subjects(smtp_server)  # one alert, not one per try
    assert "nothing picked" in subject
    assert Counter(r for r in smtp_server.handler.recipients() if r != OPS) == Counter(emails)


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
    key = due(engine, settings)

    async def outage_then_recovery(runner: Runner) -> None:
        await check_once(runner)
        await until(lambda: "alert not sent" in caplog.text)  # SMTP is down for alerts too
        assert status_of(engine, key) == EditionStatus.DRAFT  # the outage used nothing up
        with server:
            while not any(r.outcome == "sent" for r in runner.results):
                await asyncio.sleep(0.3)
                await check_once(runner)
            await until(lambda: len(alert_subjects(server)) == 1)

    results = run(engine, settings, outage_then_recovery)
    assert results[0].outcome == "error" and "TransportError" in results[0].detail
    assert results[-1].outcome == "sent" and results[-1].key == key
    assert Counter(r for r in server.handler.recipients() if r != OPS) == Counter(emails)
    (subject,) = alert_subjects(server)  # the outage alert could not be sent; this one can
    assert f"the send of default {key} has completed" in subject


def test_a_send_missed_beyond_the_grace_alerts_and_moves_to_the_next_slot(
    smtp_server, engine
) -> None:
    settings = load_settings()
    seed(engine, settings, normal_picks())
    key = due(engine, settings, ago=timedelta(days=1))  # the grace is 6 hours
    (result,) = run(engine, settings, check_once)
    assert (result.key, result.outcome) == (key, "missed")
    (subject,) = alert_subjects(smtp_server)
    assert f"default {key} was NOT sent" in subject
    assert [r for r in smtp_server.handler.recipients() if r != OPS] == []
    with session_scope(engine) as s:  # the draft moved on with its picks
        draft = editions.open_edition(s, settings, newsletters.resolve(s, settings))
        assert draft.planned_at > utcnow() and len(editions.pick_rows(s, draft)) == 3
    assert run(engine, settings, check_once) == []


def test_an_interrupted_send_is_resumed(smtp_server, engine) -> None:
    settings = load_settings()
    emails = seed(engine, settings, normal_picks())
    edition = campaign.prepare_send(engine, settings)  # started, then "the process died"

    async def lead(runner: Runner) -> None:
        await runner.resume_all()
        await runner.drain()

    (result,) = run(engine, settings, lead)
    assert (result.key, result.trigger, result.outcome) == (edition.key, "resume", "sent")
    assert Counter(r for r in smtp_server.handler.recipients()) == Counter(emails)


def test_two_newsletters_go_out_on_their_own_schedules(smtp_server, engine) -> None:
    settings = load_settings()
    with session_scope(engine) as s:
        newsletters.ensure_default(s)
        newsletters.add(s, "culture", "The Culture Letter", schedule="0 18 * * wed")
    weekly = seed(engine, settings, normal_picks())
    culture = seed(engine, settings, normal_picks(2), subscribers=3, slug="culture")
    with session_scope(engine) as s:  # someone reads both
        subscriptions.add(
            s, newsletters.get(s, "culture").id, "default0@example.com", status="confirmed"
        )
    culture_key = due(engine, settings, slug="culture")
    (first,) = run(engine, settings, check_once)  # only culture is due
    assert (first.newsletter, first.key, first.outcome) == ("culture", culture_key, "sent")
    weekly_key = due(engine, settings)
    (second,) = run(engine, settings, check_once)
    assert (second.newsletter, second.key, second.outcome) == ("default", weekly_key, "sent")
    got = Counter(smtp_server.handler.recipients())
    assert got == Counter(weekly) + Counter(culture) + Counter(["default0@example.com"])
    with session_scope(engine) as s:
        plans = {
            nl.slug: editions.open_edition(s, settings, nl).planned_at.astimezone(settings.tz)
            for nl in newsletters.all_(s)
        }
    assert (plans["default"].weekday(), plans["default"].hour) == (4, 9)
    assert (plans["culture"].weekday(), plans["culture"].hour) == (2, 18)


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

    def suppression() -> Suppression | None:
        with session_scope(engine) as s:
            return store.get_by_email(s, "gone@example.com").suppression

    async def go() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(run_scheduler(settings, stop))
        try:
            await until(lambda: suppression() == Suppression.BOUNCED)
        finally:
            stop.set()
            await task

    asyncio.run(go())
    assert suppression() == Suppression.BOUNCED
    box = mailbox.Maildir(workdir / "bounces", create=False)
    assert [m.get_subdir() for m in box] == ["cur"]  # processed once, not again next hour
