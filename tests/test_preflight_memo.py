"""The preflight is made once per content: `digest build` stores the report with the edition,
`digest send` (and the scheduler, through the same plan) reuse it; SpamAssassin runs again
only when what it scored changed, and through spamd when a daemon answers."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from digest.delivery import dkimkeys, preflight
from digest.editorial.render import render_issue
from digest.settings import Settings, load_settings
from digest.store import memo
from digest.store.engine import get_engine
from tests import sending
from tests.clirun import run_cli
from tests.samples import sample_content
from tests.test_preflight import fake_issue

needs_spamassassin = pytest.mark.skipif(
    shutil.which("spamassassin") is None, reason="SpamAssassin is not installed"
)


# -- the memo primitive, on both backends --------------------------------------------


def test_memo_keeps_one_result_per_key_and_owner(engine) -> None:
    key_a, key_b = memo.digest_of(["a", 1]), memo.digest_of(["a", 2])
    assert key_a != key_b and memo.digest_of(["a", 1]) == key_a
    assert memo.digest_of(["ab", "c"]) != memo.digest_of(["a", "bc"])  # parts stay apart
    assert memo.get(engine, "preflight", key_a) is None
    assert memo.put(engine, "preflight", key_a, {"n": 1}, owner=7)
    assert memo.put(engine, "other", key_a, {"n": 2}, owner=7)
    assert memo.get(engine, "preflight", key_a) == {"n": 1}
    # A new result for the same owner supersedes the old one; other kinds stay.
    assert memo.put(engine, "preflight", key_b, {"n": 3}, owner=7)
    assert memo.get(engine, "preflight", key_a) is None
    assert memo.get(engine, "preflight", key_b) == {"n": 3}
    assert memo.get(engine, "other", key_a) == {"n": 2}
    # Storing the same key again replaces it.
    assert memo.put(engine, "preflight", key_b, {"n": 4}, owner=7)
    assert memo.get(engine, "preflight", key_b) == {"n": 4}


def test_memo_put_gives_up_quickly_when_the_store_is_busy(engine) -> None:
    """Another transaction holding what `put` needs: it gives up instead of waiting 30 s."""
    key = memo.digest_of(["busy"])
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("BEGIN IMMEDIATE")  # the database's write lock
            conn.execute(
                text(
                    "INSERT INTO memos (kind, key, value, created_at) "
                    "VALUES ('preflight', :k, '{}', CURRENT_TIMESTAMP)"
                ),
                {"k": key},
            )
            held.set()
            release.wait(30)
            conn.rollback()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(10)
        started = time.monotonic()
        assert memo.put(engine, "preflight", key, {"n": 1}) is False
        assert time.monotonic() - started < 10  # not the 30 s a busy SQLite would wait
    finally:
        release.set()
        holder.join()
    assert memo.put(engine, "preflight", key, {"n": 2})  # free again: stored
    assert memo.get(engine, "preflight", key) == {"n": 2}


# -- the preflight reused across commands --------------------------------------------


def counting_spamassassin(folder: Path) -> tuple[str, Path]:
    """A `spamassassin` that notes each run in a file, then runs the real one."""
    log = folder / "spamassassin-runs"
    script = folder / "counting-spamassassin"
    real = shutil.which("spamassassin")
    script.write_text(f'#!/bin/sh\necho run >> "{log}"\nexec "{real}" "$@"\n')
    script.chmod(0o755)
    return str(script), log


def runs(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


@needs_spamassassin
def test_build_scores_once_and_send_reuses_the_stored_report(
    workdir: Path, smtp_server, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    command, log = counting_spamassassin(workdir)
    monkeypatch.setenv("DIGEST_SPAMASSASSIN", command)
    settings = load_settings()
    engine = get_engine(settings.database_url)
    sending.add_picks(engine, settings, 3)
    for i in range(5):
        sending.subscribe(engine, settings, f"reader{i}@example.com")

    def cli(*args: str) -> str:
        preflight._RECENT.clear()  # as a new process: only the store remembers
        done = run_cli(capsys, *args)
        assert done.code == 0, done.out + done.err
        return done.out

    def spam_line(out: str) -> str:
        (line,) = [x for x in out.splitlines() if "SpamAssassin (local tests) scores" in x]
        return line.strip()

    first = cli("build", "--out", "out")
    assert runs(log) == 1
    again = cli("build", "--out", "out")
    assert runs(log) == 1 and spam_line(again) == spam_line(first)
    dry = cli("send", "--dry-run")  # inside the dry run's own open transaction
    assert runs(log) == 1 and spam_line(dry) == spam_line(first)

    cli("editions", "edit", "--subject", "Another subject for this week")
    cli("build", "--out", "out")
    assert runs(log) == 2  # the content changed: scored again

    key_file = workdir / "dkim.pem"
    dkimkeys.write_private_key(key_file, dkimkeys.generate_key("ed25519"))
    monkeypatch.setenv("DIGEST_DKIM_KEY_FILE", str(key_file))
    monkeypatch.setenv("DIGEST_DKIM_SELECTOR", "s1")
    signed = cli("build", "--out", "out")
    assert runs(log) == 3 and "DKIM signing is off" not in signed  # the set-up changed
    key_file.chmod(0o644)
    loose = cli("build", "--out", "out")
    assert runs(log) == 3 and "chmod 600" in loose  # file modes: checked afresh, not scored
    key_file.chmod(0o600)
    assert "chmod 600" not in cli("build", "--out", "out") and runs(log) == 3
    dkimkeys.write_private_key(key_file, dkimkeys.generate_key("ed25519"), overwrite=True)
    cli("build", "--out", "out")
    assert runs(log) == 4  # another key: the signed sample changed

    sent = cli("send")
    assert runs(log) == 4  # `digest send` ran no SpamAssassin: it found build's report
    assert "state=complete sent=5" in sent
    assert len(smtp_server.messages) == 5


@needs_spamassassin
def test_a_look_alike_edition_without_a_store_is_remembered_in_process(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    command, log = counting_spamassassin(workdir)
    monkeypatch.setenv("DIGEST_SPAMASSASSIN", command)
    content = sample_content(5)
    s = load_settings()
    issue = fake_issue(content, render_issue(content, s))
    one = preflight.check_issue(issue, s)
    two = preflight.check_issue(issue, s)
    assert runs(log) == 1 and one.lines() == two.lines() and one.spam == two.spam
    assert preflight.check_issue(issue, s, spam=False).spam is None  # no score asked for


# -- spamd ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def spamd(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A real spamd on loopback (local tests, Bayes off), as docs/performance.md says."""
    exe, client = shutil.which("spamd"), shutil.which("spamc")
    if exe is None or client is None:
        pytest.skip("spamd and spamc are not installed (Debian: apt install spamd spamc)")
    port = free_port()
    pidfile, logfile = tmp_path / "spamd.pid", tmp_path / "spamd.log"
    argv = [
        exe,
        "--local",
        "--nouser-config",
        f"--listen=127.0.0.1:{port}",
        "--max-children=1",
        f"--pidfile={pidfile}",
        f"--helper-home-dir={tmp_path}",
        "--cf=use_bayes 0",
        "--cf=bayes_auto_learn 0",
        f"--syslog={logfile}",
        "--daemonize",
    ]
    if os.geteuid() == 0:
        argv.append("--username=nobody")
    subprocess.run(argv, check=True, timeout=60, capture_output=True)
    try:
        deadline = time.monotonic() + 60
        while not preflight.spamscore.daemon_answers([client, "-p", str(port)]):
            assert time.monotonic() < deadline, "spamd did not answer within a minute"
            time.sleep(0.2)
        yield port, logfile
    finally:
        if pidfile.exists():
            os.kill(int(pidfile.read_text().split()[0]), signal.SIGTERM)


@needs_spamassassin
def test_spamc_to_a_running_spamd_gives_spamassassins_score(
    workdir: Path, spamd, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    port, logfile = spamd
    content = sample_content(20)
    s = Settings(secret_key="k8Vq2pZ4xR7mN1wT5yB3cF9hJ6dL0sGa", base_url="https://news.example.com")
    issue = fake_issue(content, render_issue(content, s))
    monkeypatch.setenv("DIGEST_SPAMASSASSIN", "spamassassin")
    local = preflight.check_issue(issue, load_settings())
    assert "result:" not in logfile.read_text()  # spamd on its own port: not asked
    monkeypatch.setenv("DIGEST_SPAMASSASSIN", f"spamc -p {port}")
    daemon = preflight.check_issue(issue, load_settings())
    assert "result:" in logfile.read_text()  # spamd scored it
    assert local.spam is not None and daemon.spam is not None
    assert daemon.spam.score == local.spam.score and daemon.spam.required == local.spam.required
    assert {r.name for r in daemon.spam.scoring_rules()} == {
        r.name for r in local.spam.scoring_rules()
    }
    # spamd gone: one clear warning, no score, nothing stored.
    monkeypatch.setenv("DIGEST_SPAMASSASSIN", f"spamc -p {free_port()}")
    gone = preflight.check_issue(issue, load_settings())
    assert gone.spam is None
    (line,) = [f for f in gone.findings if f.code == "spam"]
    assert line.level == "warning" and "is spamd running?" in line.message
