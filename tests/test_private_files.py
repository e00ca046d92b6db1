"""Files with secrets or personal data are created for their owner only (umask 022 as on
most systems), and existing ones that others can read are reported."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from digest.privatefiles import exposed, sqlite_path
from digest.settings import load_settings

DIGEST = [sys.executable, "-m", "digest"]


def run(cwd: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env["DIGEST_SPAMASSASSIN"] = "off"
    proc = subprocess.run(
        [*DIGEST, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        preexec_fn=lambda: os.umask(0o022),  # the usual umask: new files 0644 unless asked
    )
    assert not ok or proc.returncode == 0, proc.stderr + proc.stdout
    return proc


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_demo_creates_every_private_file_for_its_owner_only(tmp_path: Path) -> None:
    run(tmp_path, "demo")
    assert mode(tmp_path / ".env") == 0o600
    db = tmp_path / "digest.db"
    assert mode(db) == 0o600
    for side in ("digest.db-wal", "digest.db-shm"):
        if (tmp_path / side).exists():  # SQLite gives them the database's mode
            assert mode(tmp_path / side) == 0o600, side
    outbox = tmp_path / "outbox"
    assert {mode(outbox / sub) for sub in ("new", "cur", "tmp")} == {0o700}
    messages = list((outbox / "new").iterdir())
    assert len(messages) == 50 and {mode(m) for m in messages} == {0o600}
    run(tmp_path, "subscribers", "export", "people.csv")
    assert mode(tmp_path / "people.csv") == 0o600
    # Nothing to warn about: the next long-running command starts quietly (this one then
    # finds the next edition empty, which is another matter).
    quiet = run(tmp_path, "send", ok=False)
    assert "nothing picked" in quiet.stderr
    assert "can be read by other users" not in quiet.stderr


def test_files_others_can_read_are_reported(tmp_path: Path) -> None:
    run(tmp_path, "demo")
    (tmp_path / ".env").chmod(0o644)
    (tmp_path / "digest.db").chmod(0o640)
    (tmp_path / "outbox").chmod(0o755)
    send = run(tmp_path, "send", ok=False)  # the next edition is empty: after the warnings
    lines = [line for line in send.stderr.splitlines() if "can be read by other users" in line]
    assert all(line.startswith("digest: warning: ") for line in lines)
    assert "nothing picked" in send.stderr.splitlines()[-1]
    named = {line.rsplit(" ", 1)[-1] for line in lines}
    # -wal and -shm (made by SQLite with the database's mode) when they exist just then.
    assert (
        {".env", "digest.db", "outbox"}
        <= named
        <= {".env", "digest.db", "digest.db-wal", "digest.db-shm", "outbox"}
    ), send.stderr
    run(tmp_path, "picks", "add", "https://example.com/a", "--title", "A story worth reading")
    build = run(tmp_path, "build", "--out", "out")
    assert build.stdout.count("[file-mode]") >= 3


def test_paths_watched_for_a_configuration(workdir) -> None:
    settings = load_settings()
    assert sqlite_path(settings.database_url) == workdir / "digest.db"
    assert sqlite_path("sqlite:///:memory:") is None and sqlite_path("postgresql://x/y") is None
    assert exposed(settings) == []
    (workdir / ".env").write_text("DIGEST_SECRET_KEY=x\n")
    (workdir / ".env").chmod(0o604)
    assert exposed(settings) == [".env can be read by other users on this machine: chmod 600 .env"]
