"""`digest schedule` as a real subprocess against a real aiosmtpd server and a real store.

No mocked clock: schedules are set a few seconds ahead. Crontab has minute resolution,
so DIGEST_SCHEDULE_SECOND (the second within the minute; a testing knob) places the
firing to the second; everything else is the production path.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from digest.editorial.models import EditionStatus
from digest.scheduling.trigger import describe
from digest.settings import load_settings
from digest.store.engine import session_scope
from tests.clirun import run_cli
from tests.samples import sample_pick
from tests.scheduler_procs import (
    DIGEST,
    MOSCOW,
    GatedHandler,
    Site,
    alerts,
    digests,
    kill_leftovers,  # noqa: F401 - fixture
    launch,
    make_site,
    schedule_at,
    sleep_until,
    week_key,
)
from tests.smtpd import SMTPServer

pytestmark = pytest.mark.usefixtures("kill_leftovers")


@pytest.fixture
def site(smtp_server, workdir: Path, database_url: str) -> Site:
    """The test's own store (SQLite; the lease itself is tested on PostgreSQL too)."""
    return make_site(workdir, database_url)


# -- the tests -------------------------------------------------------------------


def test_fresh_setup_prints_next_friday_nine_in_moscow_and_utc(workdir: Path) -> None:
    now = datetime.now(MOSCOW)
    friday = (now + timedelta(days=(4 - now.weekday()) % 7)).replace(
        hour=9, minute=0, second=0, microsecond=0
    )
    if friday <= now:
        friday += timedelta(days=7)
    proc = make_site(workdir).start()
    (line,) = proc.wait_for("next send:", stream="out")
    assert line == f"next send: {friday:%a %Y-%m-%d} 09:00 MSK (06:00 UTC)"
    proc.wait_for("scheduler: next send")
    assert proc.stop() == 0
    assert proc.lines("scheduler stopped")


@pytest.mark.parametrize(
    ("schedule", "error"),
    [
        ("0 9 1 * 5", "DIGEST_SCHEDULE: restricts both the day of the month and the day of"),
        ("0 9 30 2 *", "DIGEST_SCHEDULE: '0 9 30 2 *' never fires"),
    ],
)
def test_bad_schedule_is_refused_at_start(workdir: Path, schedule: str, error: str) -> None:
    env = make_site(workdir).env | {"DIGEST_SCHEDULE": schedule}
    done = subprocess.run([DIGEST, "schedule"], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert done.stderr.startswith(f"digest: error: {error}")
    assert len(done.stderr.splitlines()) == 1
    assert done.stdout == ""


def test_schedule_a_few_seconds_ahead_sends_once(site: Site, smtp_server) -> None:
    site.seed(subscribers=20)
    (proc,), t = launch([(site, {})])
    (line,) = proc.wait_for("next send:", stream="out")
    assert line == f"next send: {describe(t, MOSCOW)}"
    (run,) = proc.wait_for("outcome=sent")
    key = week_key(t)
    assert f"newsletter=default key={key} trigger=schedule outcome=sent sent=20 " in run
    assert "recipients=20" in run and "owed=0" in run
    assert datetime.now(UTC) >= t
    assert digests(smtp_server) == Counter({e: 1 for e in site.emails})
    assert site.issue(key).status == EditionStatus.SENT
    assert proc.stop() == 0


def test_after_the_send_the_next_edition_is_a_new_draft(site: Site, smtp_server) -> None:
    site.seed(subscribers=10)
    proc = site.start(DIGEST_SCHEDULE="* * * * *", DIGEST_SCHEDULE_SECOND="*")
    proc.wait_for("outcome=sent")
    # Every second is a slot: the next ones find the new, empty edition, not the sent one.
    proc.wait_for("outcome=nothing-picked", count=1)
    assert len(proc.lines("outcome=sent ")) == 1
    assert digests(smtp_server) == Counter({e: 1 for e in site.emails})
    assert proc.stop() == 0
    sent, following = site.editions()
    assert (sent.status, following.status) == (EditionStatus.SENT, EditionStatus.DRAFT)
    assert following.planned_at > sent.planned_at and following.key != sent.key


def test_restart_within_grace_sends_and_beyond_grace_does_not(smtp_server, workdir: Path) -> None:
    on_time = make_site(workdir / "on-time")
    late = make_site(workdir / "late", DIGEST_MISFIRE_GRACE="1")
    on_time.seed(subscribers=5, prefix="ontime")
    late.seed(subscribers=5, prefix="late")
    # The job goes into each database's job store, then the schedulers stop before it fires.
    first, t = launch([(on_time, {}), (late, {})], min_left=1.5)
    for proc in first:
        assert proc.stop() == 0
    sched = schedule_at(t)
    sleep_until(t + timedelta(seconds=1.5))
    again = [on_time.start(**sched), late.start(**sched)]
    (catch_up,) = again[0].wait_for("was missed while no scheduler ran; catching up")
    assert week_key(t) in catch_up
    (run,) = again[0].wait_for("outcome=sent")
    assert "trigger=schedule" in run
    (missed,) = again[1].wait_for("outcome=missed")
    assert "NOT SENT" in missed and "grace=1s" in missed
    deadline = time.monotonic() + 10
    while not alerts(smtp_server) and time.monotonic() < deadline:
        time.sleep(0.05)
    for proc in again:
        assert proc.stop() == 0
    assert digests(smtp_server) == Counter({e: 1 for e in on_time.emails})
    key = week_key(t)
    assert late.issue(key) is None
    (subject,) = alerts(smtp_server)
    assert f"default {key} was NOT sent" in subject
    assert not again[1].lines("outcome=sent")


def test_sigkill_mid_send_then_restart_delivers_to_everyone_once(workdir: Path) -> None:
    handler = GatedHandler(open_for=15)
    with SMTPServer(handler) as server:
        smtp = {
            "DIGEST_SMTP_HOST": "127.0.0.1",
            "DIGEST_SMTP_PORT": str(server.port),
            "DIGEST_SMTP_SECURITY": "none",
            "DIGEST_CONCURRENCY": "4",
        }
        site = make_site(workdir, **smtp)
        site.seed(subscribers=40)
        (proc,), t = launch([(site, {})])
        deadline = time.monotonic() + 30
        # Kill only once the ledger holds every message the server accepted and the next
        # ones are waiting at the server: a kill between a server's "250" and the ledger
        # write is the one documented way to repeat a message.
        while not (handler.held and site.sent_in_ledger() == len(handler.messages) >= 15):
            assert time.monotonic() < deadline, proc.output()
            time.sleep(0.02)
        proc.kill()
        key = week_key(t)
        assert site.issue(key).status == EditionStatus.SENDING
        handler.gate.set()
        again = site.start(**schedule_at(t))
        (run,) = again.wait_for("outcome=sent")
        assert f"key={key} trigger=resume outcome=sent sent=25 " in run
        assert again.stop() == 0
    assert digests(server) == Counter({e: 1 for e in site.emails})


def test_sigterm_mid_send_finishes_in_flight_and_exits_zero(site: Site, smtp_server) -> None:
    site.seed(subscribers=60)
    (proc,), t = launch([(site, {"DIGEST_RATE_LIMIT": "10"})])
    deadline = time.monotonic() + 30
    while len(smtp_server.messages) < 8:
        assert time.monotonic() < deadline, proc.output()
        time.sleep(0.02)
    assert proc.stop(signal.SIGTERM, timeout=15) == 0  # in-flight messages finish first
    (run,) = proc.lines("outcome=stopped")
    got = digests(smtp_server)
    assert set(got.values()) == {1}
    assert site.sent_in_ledger() == len(got) < 60  # everything accepted was recorded
    assert site.issue(week_key(t)).status == EditionStatus.SENDING


def test_two_schedulers_on_one_database_send_once(site: Site, smtp_server) -> None:
    site.seed(subscribers=30)
    env = {"DIGEST_SCHEDULER_LEASE": "4"}  # a standby polls every second
    (a, b), t = launch([(site, env), (site, env)])
    deadline = time.monotonic() + 20
    while not (a.lines("leading as") or b.lines("leading as")):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    leader, standby = (a, b) if a.lines("leading as") else (b, a)
    standby.wait_for("standing by")
    leader.wait_for("outcome=sent")
    time.sleep(1)  # the standby had time to do something wrong
    assert not standby.lines("scheduler run")
    assert digests(smtp_server) == Counter({e: 1 for e in site.emails})
    assert leader.stop() == 0
    standby.wait_for("leading as", timeout=15)  # takes over once the leader is gone
    standby.wait_for("scheduler: next send")
    assert standby.stop() == 0
    assert digests(smtp_server) == Counter({e: 1 for e in site.emails})


def test_nothing_picked_warns_and_later_picks_are_sent(site: Site, smtp_server) -> None:
    site.seed(subscribers=5, picks=0)
    proc = site.start(
        DIGEST_SCHEDULE="* * * * *", DIGEST_SCHEDULE_SECOND="*", DIGEST_SCHEDULER_RETRY="1"
    )
    proc.wait_for("outcome=nothing-picked", count=2)
    assert digests(smtp_server) == Counter()
    settings = load_settings()
    with session_scope(site.engine) as s:
        site.add_pick(s, settings, 3)
    (run,) = proc.wait_for("outcome=sent")
    assert proc.stop() == 0
    assert digests(smtp_server) == Counter({e: 1 for e in site.emails})
    (alert,) = alerts(smtp_server)  # one alert, not one per firing
    assert "nothing picked" in alert
    key = run.split("key=")[1].split()[0]
    titles = [p["title"] for p in site.issue(key).content["picks"]]
    assert titles == [sample_pick(3)["title"]]


def test_manual_send_during_a_scheduled_one_sends_nobody_a_second_copy(
    site: Site, smtp_server, monkeypatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    site.seed(subscribers=40)
    (proc,), t = launch([(site, {"DIGEST_RATE_LIMIT": "30"})])
    deadline = time.monotonic() + 30
    while len(smtp_server.messages) < 5:
        assert time.monotonic() < deadline, proc.output()
        time.sleep(0.02)
    for key, value in site.env.items():  # the manual send runs in this process
        if key.startswith("DIGEST_"):
            monkeypatch.setenv(key, value)
    manual = run_cli(capsys, "send")
    assert manual.code == 0, manual.err
    proc.wait_for("outcome=sent")
    assert proc.stop() == 0
    assert digests(smtp_server) == Counter({e: 1 for e in site.emails})
