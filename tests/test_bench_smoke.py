"""The send benchmark's smoke run: it keeps working (correctness only, never timing).

Runs bench.send as CI would a user: the real pipeline into Postfix's smtp-sink,
with smtp-source and the naive script beside it, on 2,000 messages; and bench.command
(the whole `digest send` process) on 300 DKIM-signed messages. The scripts exit
non-zero unless every message arrived and the ledger shows all sent (and, signed,
unless dkimpy verifies every message smtp-sink received).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TOOLS = ("/usr/sbin/smtp-sink", "/usr/sbin/smtp-source")
MESSAGES = 2000


@pytest.mark.skipif(
    not all(os.access(t, os.X_OK) for t in TOOLS),
    reason="Postfix's smtp-sink/smtp-source are not installed (scripts/setup --test installs them)",
)
def bench(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m bench.MODULE ARGS` from the repository; it must exit 0."""
    run = subprocess.run(
        [sys.executable, "-m", f"bench.{module}", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return run


def test_send_benchmark_smoke_run(tmp_path: Path) -> None:
    figures = tmp_path / "send.json"
    run = bench("send", f"--messages={MESSAGES}", "--rounds=1", "--naive=50", f"--json={figures}")
    assert f"all {MESSAGES:,} digest messages arrived; ledgers complete" in run.stdout
    data = json.loads(figures.read_text())
    assert data["facts"]["pipelining"] is True
    assert 40_000 < data["facts"]["message_bytes"] < 102_000  # a 20-story issue, unclipped
    names = [f["name"] for f in data["figures"]]
    assert names == ["smtp-source", "digest (Sender + SMTP pool)", "naive (EmailMessage + smtplib)"]
    assert all(f["value"] > 0 for f in data["figures"])


@pytest.mark.skipif(
    not all(os.access(t, os.X_OK) for t in TOOLS),
    reason="Postfix's smtp-sink/smtp-source are not installed (scripts/setup --test installs them)",
)
def test_whole_command_benchmark_smoke_run_signed(tmp_path: Path) -> None:
    """bench.command: `digest build` and `digest send` as processes, DKIM RSA-2048 on; every
    message arrived, the ledger is complete, and dkimpy verifies every signature."""
    figures = tmp_path / "command.json"
    n = 300
    run = bench(
        "command",
        f"--messages={n}",
        "--rounds=1",
        "--dkim=rsa",
        "--verify",
        "--spamassassin=off",
        f"--json={figures}",
    )
    assert f"all {n:,} messages arrived; ledgers complete" in run.stdout
    assert f"all {n:,} DKIM signatures verify with dkimpy" in run.stdout
    data = json.loads(figures.read_text())
    assert 40_000 < data["facts"]["message_bytes"] < 102_000
    names = [f["name"] for f in data["figures"]]
    assert names == ["smtp-source", "digest send (whole command)", "digest send, while sending"]
