"""Several senders on one send: real `digest worker` / `digest send` processes, real
PostgreSQL, and Postfix's smtp-sink recording every transaction it accepted."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from digest.delivery import claims, ledger
from digest.delivery.models import OWED, Delivery, DeliveryStatus
from digest.delivery.worker import Worker as DigestWorker
from digest.editorial.models import OPEN, Edition, EditionStatus
from digest.errors import StateError
from digest.settings import load_settings
from digest.store import leases
from digest.store.engine import session_scope
from digest.store.leases import Holder, Lease
from subscribers.model import Subscriber
from tests.clirun import run_cli
from tests.sending import add_picks, add_subscribers, started_send
from tests.smtpd import SMTPServer, free_port

DIGEST = [sys.executable, "-m", "digest"]
WAIT = 180.0  # generous: these are waits for an outcome, never timing assertions
postgres_only = pytest.mark.parametrize("db_backend", ["postgresql"], indirect=True)


SMTP_SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"


@dataclass
class Sink:
    port: int
    dump: Path

    def counts(self) -> Counter[str]:
        """Recipients of every transaction the sink completed (answered 250 to the data)."""
        if not self.dump.exists():
            return Counter()
        data = self.dump.read_bytes()
        return Counter(m.decode() for m in re.findall(rb"^X-Rcpt-Args: <([^>]*)>", data, re.M))


@pytest.fixture
def sink() -> Iterator[Sink]:
    """Postfix's smtp-sink: accepts everything and appends each completed transaction,
    envelope included, to a dump file. Written in C, it keeps up with four senders on
    two cores where a Python server would be the bottleneck."""
    if not os.path.exists(SMTP_SINK):
        pytest.fail("Postfix's smtp-sink is missing: run scripts/setup --test", pytrace=False)
    with tempfile.TemporaryDirectory(prefix="digest-sink-") as tmp:
        os.chmod(tmp, 0o777)  # smtp-sink drops root privileges before writing
        dump = Path(tmp) / "dump"
        port = free_port()
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        proc = subprocess.Popen(
            [SMTP_SINK, *user, "-D", str(dump), f"127.0.0.1:{port}", "256"],
            stderr=subprocess.PIPE,
        )
        try:
            wait_for("smtp-sink to listen", lambda: _listening(port, proc), timeout=30)
            yield Sink(port, dump)
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def _listening(port: int, proc: subprocess.Popen) -> bool:
    if proc.poll() is not None:
        raise AssertionError(f"smtp-sink exited: {proc.stderr.read().decode()}")  # type: ignore[union-attr]
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Proc:
    """A `digest` command running in the background, its output in files."""

    def __init__(self, cwd: Path, env: dict[str, str], *args: str, name: str) -> None:
        self.out, self.err = cwd / f"{name}.out", cwd / f"{name}.err"
        with self.out.open("w") as out, self.err.open("w") as err:
            self.popen = subprocess.Popen(
                [*DIGEST, *args], cwd=cwd, env=env, stdout=out, stderr=err
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait(self, timeout: float = WAIT) -> int:
        return self.popen.wait(timeout=timeout)

    def output(self) -> str:
        return self.out.read_text() + self.err.read_text()

    def sent(self) -> int:
        """Messages this process reports it sent (its summary lines)."""
        return sum(int(n) for n in re.findall(r"state=\w+ sent=(\d+)", self.out.read_text()))

    def kill(self, sig: int) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    """Every process a test starts is gone when it ends, whatever happened."""
    started: list[Proc] = []
    yield started
    for p in started:
        p.kill(signal.SIGKILL)
        p.popen.wait(timeout=30)


def env_for(sink: Sink, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env.update(
        DIGEST_SMTP_HOST="127.0.0.1",
        DIGEST_SMTP_PORT=str(sink.port),
        DIGEST_SMTP_SECURITY="none",
        DIGEST_WORKER_POLL_SECONDS="0.2",
        DIGEST_WORKER_BATCH_SIZE="100",
        PYTHONUNBUFFERED="1",
    )
    env.update({f"DIGEST_{k.upper()}": v for k, v in extra.items()})
    return env


def wait_for(what: str, check: Callable[[], object], timeout: float = WAIT) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def ledger_state(engine) -> tuple[int, int, int]:
    """(sent, owed, rows under a claim) over every issue."""
    with session_scope(engine) as s:
        sent = s.scalar(select(func.count()).where(Delivery.status == DeliveryStatus.SENT))
        owed = s.scalar(select(func.count()).where(Delivery.status.in_(OWED)))
        held = s.scalar(select(func.count()).where(Delivery.claimed_by.is_not(None)))
    return sent, owed, held


def worker_id(engine, pid: int) -> str | None:
    with session_scope(engine) as s:
        return s.scalar(select(Lease.holder).where(Lease.pid == pid, Lease.role == "worker"))


def the_issue(engine) -> Edition:
    """The one edition that went out; beside it only the next, empty draft the send opened."""
    with session_scope(engine) as s:
        rows = s.scalars(select(Edition).order_by(Edition.id)).all()
    published = [r for r in rows if r.status not in OPEN]
    following = [r for r in rows if r.status in OPEN]
    assert len(published) == 1, [(r.key, r.status) for r in rows]
    assert len(following) == 1 and following[0].status == EditionStatus.DRAFT
    assert following[0].frozen_at is None and following[0].id > published[0].id
    return published[0]


# -- the refusal ----------------------------------------------------------------------


def test_worker_on_sqlite_refuses_in_one_line(workdir: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    line = run_cli(capsys, "worker").one_line_error()
    assert "SQLite is one process by design" in line and "digest send" in line
    assert not (workdir / "digest.db").exists()  # refused before touching the store


@pytest.mark.parametrize("db_backend", ["sqlite"], indirect=True)
def test_worker_class_refuses_sqlite(engine) -> None:
    with pytest.raises(StateError, match="one process by design"):
        DigestWorker(engine, load_settings())


# -- three workers and a send ---------------------------------------------------------


@postgres_only
def test_three_workers_and_a_send_deliver_each_of_10000_once(
    workdir: Path, engine, sink: Sink, procs: list[Proc], capsys
) -> None:  # type: ignore[no-untyped-def]
    settings = load_settings()
    add_picks(engine, settings, 1)  # a small message: the sink is the slowest part
    emails = add_subscribers(engine, 10_000)
    env = env_for(sink)
    workers = [Proc(workdir, env, "worker", name=f"worker{i}") for i in range(3)]
    procs.extend(workers)
    wait_for("three workers to register", lambda: all(worker_id(engine, w.pid) for w in workers))
    send = Proc(workdir, env, "send", name="send")
    procs.append(send)
    wait_for("the send to be under way", lambda: ledger_state(engine)[0] >= 1500)

    status = run_cli(capsys, "send", "--status")  # in this process, beside the others
    assert status.code == 0, status.err
    assert re.search(r"workers: [34] active", status.out), status.out
    assert status.out.count("(worker, ") == 3

    # One worker is stopped politely mid-send: it finishes what it has in flight,
    # gives the rest back, and exits 0; the others carry on.
    workers[2].kill(signal.SIGTERM)
    assert workers[2].wait() == 0, workers[2].output()
    assert send.wait() == 0, send.output()
    assert "state=complete" in send.out.read_text()
    for w in workers[:2]:
        w.kill(signal.SIGTERM)
        assert w.wait() == 0, w.output()

    got = sink.counts()
    assert sorted(got) == sorted(emails)
    assert set(got.values()) == {1}
    assert sum(p.sent() for p in [*workers, send]) == 10_000
    assert sum(1 for w in workers if w.sent()) >= 2  # the work really was shared
    assert the_issue(engine).status == EditionStatus.SENT
    assert ledger_state(engine) == (10_000, 0, 0)
    with session_scope(engine) as s:
        assert s.scalar(select(func.count()).select_from(Lease)) == 0  # all left cleanly


@postgres_only
def test_a_killed_workers_batch_is_taken_over_after_its_lease(
    workdir: Path, engine, sink: Sink, procs: list[Proc]
) -> None:
    settings = load_settings()
    add_picks(engine, settings, 1)
    emails = add_subscribers(engine, 2000)
    env = env_for(sink, lease_seconds="2")
    # The victim is slow (20 messages a second), so it is surely mid-batch when killed.
    victim = Proc(workdir, {**env, "DIGEST_RATE_LIMIT": "20"}, "worker", name="victim")
    procs.append(victim)
    victim_id = str(wait_for("the victim to register", lambda: worker_id(engine, victim.pid)))
    with session_scope(engine) as s:  # as if it ran on another machine: only its lease counts
        s.execute(update(Lease).where(Lease.holder == victim_id).values(machine="elsewhere|1"))

    def victim_rows() -> set[int]:
        with session_scope(engine) as s:
            return set(
                s.scalars(
                    select(Delivery.subscriber_id).where(
                        Delivery.claimed_by.startswith(victim_id + "/"),
                        Delivery.status.in_(OWED),
                    )
                )
            )

    send = Proc(workdir, env, "send", name="send")
    procs.append(send)
    first = wait_for("the victim to claim a batch", victim_rows)
    others = [Proc(workdir, env, "worker", "--once", name=f"worker{i}") for i in range(2)]
    procs.extend(others)
    wait_for("the victim to record part of it", lambda: 0 < len(victim_rows()) < len(first))
    victim.kill(signal.SIGKILL)
    victim.wait()
    held = victim_rows()  # what it may have sent without recording: the only repeats
    assert held

    for p in [*others, send]:
        assert p.wait() == 0, p.output()
    got = sink.counts()
    assert sorted(got) == sorted(emails)  # nobody lost
    assert max(got.values()) <= 2
    repeated = {e for e, n in got.items() if n > 1}
    with session_scope(engine) as s:
        held_emails = set(s.scalars(select(Subscriber.email).where(Subscriber.id.in_(held))))
    assert repeated <= held_emails
    assert the_issue(engine).status == EditionStatus.SENT
    assert ledger_state(engine) == (2000, 0, 0)


@pytest.mark.parametrize("db_backend", ["sqlite", "postgresql"], indirect=True)
def test_two_sends_fired_together_make_one_issue_and_one_copy_each(
    workdir: Path, engine, sink: Sink, procs: list[Proc]
) -> None:
    settings = load_settings()
    add_picks(engine, settings, 1)  # a small message: the sink is the slowest part
    emails = add_subscribers(engine, 400)
    with session_scope(engine) as s:
        key = s.scalars(select(Edition.key).where(Edition.status.in_(OPEN))).one()
    # Paced (about 2 s of sending) so that the two usually overlap; the key is named so
    # that a second one starting after the first finished finds it sent, not the next draft.
    env = env_for(sink, rate_limit="200")
    sends = [Proc(workdir, env, "send", "--edition", key, name=f"send{i}") for i in range(2)]
    procs.extend(sends)
    for p in sends:
        assert p.wait() == 0, p.output()
    got = sink.counts()
    assert sorted(got) == sorted(emails)
    assert set(got.values()) == {1}
    assert the_issue(engine).status == EditionStatus.SENT
    assert sum(p.sent() for p in sends) == 400


# -- in-process: the lease of a sender on another machine ----------------------------


@postgres_only
def test_worker_takes_over_rows_whose_remote_holder_went_silent(
    engine, sink: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in env_for(sink).items():
        if key.startswith("DIGEST_"):
            monkeypatch.setenv(key, value)
    settings = load_settings()
    issue, emails = started_send(engine, settings, 40)
    with session_scope(engine) as s:  # a sender elsewhere claimed 25 rows, then vanished
        claims.claim(s, issue.id, "far-away:7:abc/1", 25, lease_seconds=0.5)
        far = Holder("far-away:7:abc", "far-away", "far|1", 7)
        leases.acquire(s, "sender/" + far.id, far, 0.5, role="worker")

    async def go():
        return await DigestWorker(engine, settings, once=True).run()

    report = asyncio.run(go())
    got = sink.counts()
    assert sorted(got) == sorted(emails) and set(got.values()) == {1}
    assert report.total(DeliveryStatus.SENT) == 40 and not report.stopped
    assert "sent=40" in report.summary()
    with session_scope(engine) as s:
        assert s.get(Edition, issue.id).status == EditionStatus.SENT
        assert ledger.counts(s, issue.id)[DeliveryStatus.SENT] == 40
        assert s.scalar(select(func.count()).where(Edition.status == EditionStatus.SENDING)) == 0


@postgres_only
def test_a_worker_outlives_an_smtp_outage(engine, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    server = SMTPServer()  # its port is chosen, but nothing listens there yet
    for key, value in {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(server.port)}.items():
        monkeypatch.setenv(f"DIGEST_{key}", value)
    monkeypatch.setenv("DIGEST_SMTP_SECURITY", "none")
    monkeypatch.setenv("DIGEST_WORKER_POLL_SECONDS", "0.1")
    settings = load_settings()
    issue, emails = started_send(engine, settings, 20)
    caplog.set_level(logging.WARNING, logger="digest.worker")

    async def go():
        stop = asyncio.Event()
        worker = DigestWorker(engine, settings, stop=stop)
        task = asyncio.create_task(worker.run())
        while "trying again" not in caplog.text:  # the outage is noticed, the worker waits
            await asyncio.sleep(0.05)
        with server:  # the SMTP server comes back
            while len(server.handler.recipients()) < len(emails):
                await asyncio.sleep(0.05)
            stop.set()
            return await asyncio.wait_for(task, timeout=WAIT)

    report = asyncio.run(go())
    assert sorted(server.handler.recipients()) == sorted(emails)
    assert report.total(DeliveryStatus.SENT) == 20
    with session_scope(engine) as s:
        assert s.get(Edition, issue.id).status == EditionStatus.SENT


@postgres_only
def test_an_idle_worker_closes_a_send_whose_last_sender_died_before_finishing(engine) -> None:
    issue, _ = started_send(engine, load_settings(), 3)
    with session_scope(engine) as s:  # everything was delivered; nobody marked the issue
        s.execute(update(Delivery).values(status=DeliveryStatus.SENT, claimed_by=None))
    report = asyncio.run(DigestWorker(engine, load_settings(), once=True).run())
    assert report.runs == [] and "issues=-" in report.summary()
    with session_scope(engine) as s:
        assert s.get(Edition, issue.id).status == EditionStatus.SENT
