"""Crashes: `digest send` killed with SIGKILL and resumed, and kills during a build.

The big test sends one issue to 20,000 subscribers (5,000 in the PostgreSQL pass)
through the real command line (`python -m digest send`, a subprocess, since it is killed)
into a sink SMTP server that runs in a third process (tests/sink_server.py) and logs every
recipient it accepts before its 250. The send is SIGKILLed at five random points and resumed each
time. After each kill the ledger is held against the sink's log:

- nothing is recorded as sent that the sink did not accept;
- the recipients the sink accepted during that run but the ledger does not show as
  sent are the only ones that can be sent twice. Their number is bounded by the
  sender's design (in_flight_bound below), and in the end the duplicates at the sink
  are exactly the sum of those numbers: no other message is ever repeated;
- nobody is missed, and `digest send --status --recipient` explains a recipient.

Set CRASH_TEST_SEED to replay a particular choice of kill points.
"""

from __future__ import annotations

import csv
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from digest.delivery.models import Delivery, DeliveryStatus
from digest.editorial import editions, newsletters
from digest.editorial.models import OPEN, Edition, EditionStatus, Pick
from digest.editorial.picks import add_pick, validate_pick
from digest.resources import builtin_templates
from digest.settings import load_settings
from digest.store.engine import session_scope
from subscribers import csvio, subscriptions
from tests.clirun import run_cli

REPO = Path(__file__).resolve().parent.parent
#: The whole 20,000 on SQLite (the default store); the PostgreSQL pass runs the same
#: kills on 5,000 to keep CI time in check: the claim and lease code is what differs.
RECIPIENTS = {"sqlite": 20_000, "postgresql": 5_000}
KILLS = 5
CONCURRENCY = 10


def in_flight_bound(batch: int) -> int:
    """How many messages the server may have accepted that the ledger does not yet show
    as sent, at any instant; from digest/sender.py, with `batch` the recording batch
    (DIGEST_WORKER_BATCH_SIZE).

    The sender counts outcomes not yet committed and lets no worker start a message
    while `batch` of them are waiting, so at most `batch - 1` recorded-but-uncommitted
    outcomes plus one message per worker (CONCURRENCY) whose 250 may be unrecorded.
    In practice a kill finds about rate x 0.1 s of them (the recorder's period); the
    test prints what it found.
    """
    return (batch - 1) + CONCURRENCY


WAIT = 180.0  # generous: a loaded CI machine must not fail the test by being slow


class Sink:
    """The sink process and its log of accepted recipients."""

    def __init__(self, directory: Path) -> None:
        self.log = directory / "accepted.log"
        self.log.touch()
        self.live = Path(str(self.log) + ".live")
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.sink_server", str(self.log)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())
        self._fh = self.log.open("rb")
        self._lines: list[str] = []
        self._partial = b""

    def lines(self) -> list[str]:
        """Every recipient accepted so far, in order (read incrementally)."""
        data = self._partial + self._fh.read()
        *complete, self._partial = data.split(b"\n")
        self._lines.extend(x.decode() for x in complete)
        return self._lines

    def settle(self) -> list[str]:
        """Wait until no client connection is open: then the log can no longer grow."""
        deadline = time.monotonic() + WAIT
        while self.live.read_text().strip() != "0":
            assert time.monotonic() < deadline, "the sink still has open connections"
            time.sleep(0.02)
        return self.lines()

    def stop(self) -> None:
        self._fh.close()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def sink(workdir: Path) -> Iterator[Sink]:
    s = Sink(workdir)
    yield s
    s.stop()


def digest(*args: str, env: dict[str, str], cwd: Path, **kw: object) -> subprocess.Popen[bytes]:  # type: ignore[type-arg]
    return subprocess.Popen(
        [sys.executable, "-m", "digest", *args],
        cwd=cwd,
        env=env,
        **kw,  # type: ignore[call-overload]
    )


def seed_big_list(engine, workdir: Path, sections: list[str], n: int) -> list[str]:  # type: ignore[no-untyped-def]
    emails = [f"r{i:05d}@example.com" for i in range(n)]
    path = workdir / "list.csv"
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["email", "name"])
        writer.writerows([e, f"Reader {i}"] for i, e in enumerate(emails))
    with session_scope(engine) as s:
        nl = newsletters.resolve(s, load_settings())
        csvio.import_csv(s, path, nl.id, confirmed=True)
        pick = {"url": "https://news.example.com/a/1", "title": "The story", "summary": "Lead."}
        add_pick(s, open_id(s), validate_pick({**pick, "section": sections[0]}, sections))
    return emails


def open_id(session) -> int:  # type: ignore[no-untyped-def]
    """The id of the default newsletter's open edition (where picks go)."""
    settings = load_settings()
    return editions.open_edition(session, settings, newsletters.resolve(session, settings)).id


def ledger_sent(engine) -> set[str]:  # type: ignore[no-untyped-def]
    from subscribers.model import Subscriber

    with session_scope(engine) as s:
        rows = s.execute(
            select(Subscriber.email)
            .join(Delivery, Delivery.subscriber_id == Subscriber.id)
            .where(Delivery.status == DeliveryStatus.SENT)
        )
        return {r[0] for r in rows}


def test_sigkill_at_five_random_points_nobody_missed_only_in_flight_repeated(
    workdir: Path, engine, sink: Sink, db_backend: str, monkeypatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    total = RECIPIENTS[db_backend]
    seed = int(os.environ.get("CRASH_TEST_SEED") or random.randrange(1 << 30))
    rng = random.Random(seed)
    kill_at = sorted(rng.sample(range(total // 40, total - total // 40, total // 200), KILLS))
    why = f"(CRASH_TEST_SEED={seed}, kills at {kill_at})"
    settings = load_settings()
    bound = in_flight_bound(settings.worker_batch_size)
    emails = seed_big_list(engine, workdir, settings.sections, total)
    for key, value in {
        "DIGEST_SMTP_HOST": "127.0.0.1",
        "DIGEST_SMTP_PORT": str(sink.port),
        "DIGEST_SMTP_SECURITY": "none",
        "DIGEST_CONCURRENCY": str(CONCURRENCY),
        "COLUMNS": "120",
    }.items():
        monkeypatch.setenv(key, value)
    env = dict(os.environ)  # for the runs that are killed; the others run in-process
    unrecorded: list[int] = []
    for n, threshold in enumerate(kill_at, 1):
        offset = len(sink.lines())
        out = (workdir / f"run{n}.out").open("wb")
        proc = digest("send", env=env, cwd=workdir, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + WAIT
        while len(sink.lines()) < threshold:
            assert proc.poll() is None, f"run {n} ended before its kill point {why}"
            assert time.monotonic() < deadline, f"run {n} made no progress {why}"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        out.close()
        accepted = sink.settle()
        this_run = accepted[offset:]
        assert len(this_run) == len(set(this_run)), f"a run sent someone twice {why}"
        sent = ledger_sent(engine)
        assert sent <= set(accepted), f"recorded as sent but never accepted {why}"
        lost_acks = set(this_run) - sent
        assert len(lost_acks) <= bound, why
        unrecorded.append(len(lost_acks))
        if n == 1:
            # The ledger explains a recipient mid-send; the sink has not seen the last one.
            assert emails[-1] not in accepted
            status = run_cli(capsys, "send", "--status", "--recipient", emails[-1])
            assert status.code == 0, status.err
            assert f"{emails[-1]}: pending after 0 attempt(s)" in status.out
            # A dry run of the resume names exactly the rows still owed, and changes nothing.
            dry = run_cli(capsys, "send", "--dry-run")
            assert dry.code == 0, dry.err
            assert "(sending); nothing will be sent" in dry.out
            assert f"would send to {total - len(sent)} subscribers" in dry.out
            assert ledger_sent(engine) == sent

    final = run_cli(capsys, "send")  # the resume that finishes, in this process
    assert final.code == 0, final.err
    assert "state=complete" in final.out
    sink.settle()
    got = Counter(sink.lines())
    print(f"accepted but unrecorded at each kill: {unrecorded} (bound {bound}) {why}")
    assert set(got) == set(emails), f"somebody was missed {why}"
    assert sum(got.values()) - total == sum(unrecorded), (
        f"duplicates beyond the messages in flight at the kills {why}"
    )
    assert ledger_sent(engine) == set(emails)
    with session_scope(engine) as s:  # the edition went out; the next one is an empty draft
        sent_status = select(Edition.status).where(Edition.status.not_in(OPEN))
        assert s.scalars(sent_status).one() == EditionStatus.SENT
        following = s.scalars(select(Edition).where(Edition.status.in_(OPEN))).one()
        assert following.frozen_at is None
        assert s.scalar(select(func.count()).where(Pick.edition_id == following.id)) == 0
    twice = next((e for e, c in got.items() if c > 1), None)
    for email in {emails[0], twice} - {None}:
        status = run_cli(capsys, "send", "--status", "--recipient", email)
        assert f"{email}: sent after 1 attempt(s); last reply: 250 " in status.out, status


# -- a kill while an issue is built leaves nothing half-made ----------------------------

#: Runs `digest ARGS`, but pauses for good at the named function: `before` it is
#: called or `after` it returns, having touched a marker file. The test then kills it.
PAUSE = """
import functools, importlib, pathlib, sys, time
module_name, func_name, when, marker = sys.argv[1:5]
module = importlib.import_module(module_name)
real = getattr(module, func_name)

@functools.wraps(real)
def paused(*args, **kwargs):
    if when == "before":
        pathlib.Path(marker).touch()
        time.sleep(600)
    result = real(*args, **kwargs)
    pathlib.Path(marker).touch()
    time.sleep(600)
    return result

setattr(module, func_name, paused)
sys.argv = ["digest", *sys.argv[5:]]
from digest.cli import main
main()
"""


def store_snapshot(engine) -> tuple[int, int, int, list[int | None]]:  # type: ignore[no-untyped-def]
    with session_scope(engine) as s:
        return (
            s.scalar(select(func.count()).select_from(Edition)),
            s.scalar(select(func.count()).select_from(Delivery)),
            s.scalar(select(func.count()).select_from(Pick)),
            list(s.scalars(select(Pick.edition_id).order_by(Pick.id))),
        )


@pytest.mark.parametrize(
    ("command", "target", "when"),
    [
        # Mid-render: the draft row is written, the MJML render is under way.
        (["build"], "digest.editorial.editions:render_issue", "before"),
        # Fully frozen and flushed to the database, not yet committed.
        (["build"], "digest.editorial.editions:freeze", "after"),
        # `digest send`: frozen, marked sending and the ledger filled, not committed.
        (["send"], "digest.delivery.ledger:fill", "after"),
    ],
)
def test_kill_during_build_leaves_no_half_made_issue(
    workdir: Path, engine, command: list[str], target: str, when: str, capsys
) -> None:  # type: ignore[no-untyped-def]
    settings = load_settings()
    with session_scope(engine) as s:
        for i in range(8):
            pick = {
                "url": f"https://news.example.com/a/{i}",
                "title": f"Story number {i} " + "with a long headline " * 5,
                "summary": "A lead paragraph of some length. " * 30,
                "section": settings.sections[i % len(settings.sections)],
            }
            add_pick(s, open_id(s), validate_pick(pick, settings.sections))
        nl = newsletters.resolve(s, settings)
        for i in range(50):
            subscriptions.add(s, nl.id, f"k{i}@example.com", "", status="confirmed")
    before = store_snapshot(engine)
    marker = workdir / "paused"
    module, func_name = target.split(":")
    proc = subprocess.Popen(
        [sys.executable, "-c", PAUSE, module, func_name, when, str(marker), *command],
        cwd=workdir,
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + WAIT
    while not marker.exists():
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if proc.stderr:
        proc.stderr.close()
    assert store_snapshot(engine) == before, "a killed build left something behind"
    # And the next run simply works.
    done = run_cli(capsys, "build", "--out", str(workdir / "out"))
    assert done.code == 0, done.err
    with session_scope(engine) as s:
        assert s.scalar(select(func.count()).select_from(Edition)) == 1


def test_template_error_leaves_no_half_made_issue(
    workdir: Path, engine, monkeypatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    import shutil

    settings = load_settings()
    templates = workdir / "templates"
    shutil.copytree(builtin_templates(), templates)
    digest_mjml = templates / "digest.mjml.j2"
    lines = digest_mjml.read_text().splitlines()
    at = next(i for i, x in enumerate(lines) if x.startswith("{% block masthead_line %}"))
    with session_scope(engine) as s:
        pick = {"url": "https://news.example.com/a", "title": "A story", "summary": "Lead."}
        pick = validate_pick({**pick, "section": settings.sections[0]}, settings.sections)
        add_pick(s, open_id(s), pick)
    before = store_snapshot(engine)
    monkeypatch.setenv("DIGEST_TEMPLATES_DIR", str(templates))
    for broken in (
        "{{ site.list_name + 1 }}",  # fails while rendering (TypeError)
        "{{ site.no_such_thing.x }}",  # undefined
        "{% if %}",  # does not compile
    ):
        lines[at] = "{% block masthead_line %}" + broken + "{% endblock %}"
        digest_mjml.write_text("\n".join(lines) + "\n")
        result = run_cli(capsys, "build")
        assert f"digest.mjml.j2:{at + 1}: " in result.one_line_error(), result.err
        assert store_snapshot(engine) == before
