"""`digest schedule` as a real subprocess, for tests: start, watch its log, stop, kill.

`Site` is a newsroom with its own store; `launch` starts schedulers on a schedule a
few seconds ahead (DIGEST_SCHEDULE plus DIGEST_SCHEDULE_SECOND, since crontab has
minute resolution) and copes with a busy machine by giving them more room.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import func, select

from digest.delivery.models import Delivery, DeliveryStatus
from digest.editorial import editions, newsletters
from digest.editorial.models import Edition
from digest.editorial.picks import add_pick, validate_pick
from digest.scheduling.trigger import describe
from digest.settings import load_settings
from digest.store.engine import get_engine, session_scope
from subscribers import subscriptions
from tests.samples import sample_pick
from tests.smtpd import CollectingHandler, SMTPServer

DIGEST = str(Path(sys.executable).with_name("digest"))
MOSCOW = ZoneInfo("Europe/Moscow")
OPS = "ops@news.example.com"

_started: list[Scheduler] = []


@pytest.fixture
def kill_leftovers() -> Iterator[None]:
    """A failed test must not leave a scheduler running."""
    yield
    while _started:
        proc = _started.pop().proc
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


class Scheduler:
    """One `digest schedule` process; its output lines are collected as they come."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.cwd = cwd
        self.proc = subprocess.Popen(
            [DIGEST, "schedule"],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        _started.append(self)
        for stream, sink in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=self._read, args=(stream, sink), daemon=True).start()

    @staticmethod
    def _read(stream, sink: list[str]) -> None:  # type: ignore[no-untyped-def]
        for line in stream:
            sink.append(line.rstrip("\n"))

    def lines(self, needle: str, stream: str = "err") -> list[str]:
        return [line for line in list(getattr(self, stream)) if needle in line]

    def wait_for(
        self, needle: str, *, stream: str = "err", count: int = 1, timeout: float = 30
    ) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.lines(needle, stream)
            if len(found) >= count:
                return found
            if self.proc.poll() is not None:
                time.sleep(0.2)  # let the readers catch the last lines
                if len(self.lines(needle, stream)) >= count:
                    return self.lines(needle, stream)
                break
            time.sleep(0.05)
        pytest.fail(f"no {count}x {needle!r} from digest schedule; output:\n{self.output()}")

    def output(self) -> str:
        return "\n".join(["--- stdout", *self.out, "--- stderr", *self.err])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail(f"digest schedule did not exit {timeout}s after a signal:\n{self.output()}")

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


@dataclass
class Site:
    """A newsroom: its own database, subscribers and environment."""

    path: Path
    env: dict[str, str]
    emails: list[str] = field(default_factory=list)

    @property
    def engine(self):  # type: ignore[no-untyped-def]
        return get_engine(self.env["DIGEST_DATABASE_URL"])

    def seed(self, subscribers: int = 20, picks: int = 4, prefix: str = "reader") -> None:
        settings = load_settings()
        with session_scope(self.engine) as s:
            nl = newsletters.resolve(s, settings)
            for i in range(picks):
                self.add_pick(s, settings, i)
            for i in range(subscribers):
                email = f"{prefix}{i}@example.com"
                subscriptions.add(s, nl.id, email, f"Reader {i}", status="confirmed")
                self.emails.append(email)

    @staticmethod
    def add_pick(session, settings, i: int) -> None:  # type: ignore[no-untyped-def]
        """A pick into the default newsletter's next edition."""
        pick = {
            k: v for k, v in sample_pick(i, featured=i == 0).items() if k not in ("id", "position")
        }
        edition = editions.open_edition(session, settings, newsletters.resolve(session, settings))
        add_pick(session, edition.id, validate_pick(pick, settings.sections))

    def start(self, **env: str) -> Scheduler:
        return Scheduler({**self.env, **env}, self.path)

    def sent_in_ledger(self) -> int:
        with session_scope(self.engine) as s:
            return s.scalar(select(func.count()).where(Delivery.status == DeliveryStatus.SENT)) or 0

    def issue(self, key: str) -> Edition | None:
        with session_scope(self.engine) as s:
            return s.scalar(select(Edition).where(Edition.key == key))

    def editions(self) -> list[Edition]:
        with session_scope(self.engine) as s:
            return list(s.scalars(select(Edition).order_by(Edition.id)))


def week_key(moment: datetime) -> str:
    """The ISO week of `moment` in Moscow: a weekly (or yearly) schedule's edition key."""
    year, week, _ = moment.astimezone(MOSCOW).isocalendar()
    return f"{year}-W{week:02d}"


def make_site(path: Path, database_url: str | None = None, **env: str) -> Site:
    """A site in `path`: its own SQLite file unless a database URL is given."""
    path.mkdir(parents=True, exist_ok=True)
    base = dict(os.environ)
    base.update(
        DIGEST_DATABASE_URL=database_url or f"sqlite:///{path / 'digest.db'}",
        DIGEST_OUTBOX_DIR=str(path / "outbox"),
        DIGEST_ALERT_EMAIL=OPS,
        DIGEST_SPAMASSASSIN="off",  # preflight's spam score takes seconds; not tested here
        PYTHONUNBUFFERED="1",
        **env,
    )
    return Site(path, base)


def schedule_at(t: datetime) -> dict[str, str]:
    """Settings for a schedule that fires once a year: at `t`, to the second."""
    t = t.astimezone(MOSCOW)
    return {
        "DIGEST_SCHEDULE": f"{t.minute} {t.hour} {t.day} {t.month} *",
        "DIGEST_SCHEDULE_SECOND": str(t.second),
    }


def at(seconds: float) -> tuple[dict[str, str], datetime]:
    """A schedule that fires `seconds` from now (to the second), in Moscow time."""
    t = (datetime.now(MOSCOW) + timedelta(seconds=seconds)).replace(microsecond=0)
    return schedule_at(t), t


#: How long one scheduler took from start to ready, most recently (the machine may be busy).
_startup = [1.0]


def launch(
    sites: list[tuple[Site, dict[str, str]]], seconds: float = 3, min_left: float = 0.0
) -> tuple[list[Scheduler], datetime]:
    """Start one scheduler per entry, all on a schedule at least `seconds` ahead.

    Ready means each site's leader logged the stored job's next run time, and it is
    the one asked for, with `min_left` seconds to spare. The lead time grows with
    how slowly processes started lately, and a launch that came up too late is set
    up again with more room, so a busy machine makes the test slower, not flaky.
    """
    for attempt in range(3):
        margin = max(seconds, min_left + 1 + 1.5 * _startup[0] * len(sites)) + 4 * attempt
        sched, t = at(margin)
        began = time.monotonic()
        procs = [site.start(**sched, **env) for site, env in sites]
        paths = {site.path for site, _ in sites}
        ready: list[str] = []
        while time.monotonic() < began + margin + 30:
            ready = [line for p in procs for line in p.lines("scheduler: next send")]
            if {p.cwd for p in procs if p.lines("scheduler: next send")} == paths:
                break
            time.sleep(0.05)
        _startup[0] = (time.monotonic() - began) / len(sites)
        left = (t - datetime.now(UTC)).total_seconds()
        if ready and all(describe(t, MOSCOW) in line for line in ready) and left >= min_left:
            return procs, t
        for proc in procs:
            proc.stop()
    pytest.fail("the schedulers never came up before their send time")


def digests(server: SMTPServer) -> Counter[str]:
    """How many copies of the digest each address got (alerts to OPS not counted)."""
    return Counter(r for r in server.handler.recipients() if r != OPS)


def alerts(server: SMTPServer) -> list[str]:
    return [str(m.parse()["Subject"]) for m in server.messages if m.rcpt_tos == [OPS]]


def sleep_until(moment: datetime) -> None:
    time.sleep(max(0.0, (moment - datetime.now(UTC)).total_seconds()))


@dataclass
class GatedHandler(CollectingHandler):
    """Accepts `open_for` messages, then holds every further DATA until `gate` opens."""

    open_for: int = 0
    gate: threading.Event = field(default_factory=threading.Event)
    held: int = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.lock:
            hold = len(self.messages) >= self.open_for
            self.held += hold
        while hold and not self.gate.is_set():
            await asyncio.sleep(0.02)  # cancelled by aiosmtpd if the client goes away
        if server.transport is None:
            return "451 4.3.0 client gone"
        return await super().handle_DATA(server, session, envelope)
