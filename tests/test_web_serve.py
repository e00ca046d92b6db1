"""`digest serve` as an operator runs it: after `digest demo`, as a real process.

The demo and `editors add` run in-process (tests/clirun.py); `digest serve` is a real
process because its start, its refusal of a busy port (which must exit, not hang) and
its graceful exit on SIGTERM are the point.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from digest.store.engine import dispose_all
from tests.clirun import run_cli
from tests.smtpd import free_port
from tests.webtools import csrf_of

DIGEST = [sys.executable, "-m", "digest"]
PASSWORD = "demo editor passphrase"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    return {**env, "DIGEST_SPAMASSASSIN": "off"}  # its score takes seconds; tested elsewhere


def test_serve_after_demo_shows_the_demo_issue_on_the_desk_and_in_the_archive(
    tmp_path: Path, fresh: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DIGEST_SPAMASSASSIN", "off")
    demo = run_cli(capsys, "demo")
    assert demo.code == 0, demo.err
    key = next(w for w in demo.out.split() if w.startswith("20") and "-W" in w).rstrip(":")
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    added = run_cli(capsys, "editors", "add", "editor", "--password-stdin")
    assert added.code == 0, added.err
    dispose_all()  # the server process has the store to itself

    port = free_port()
    server = subprocess.Popen(
        [*DIGEST, "serve", "--port", str(port)],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, server.communicate()
            assert time.monotonic() < deadline, "digest serve did not come up"
            time.sleep(0.1)

        busy = subprocess.run(
            [*DIGEST, "serve", "--port", str(port)],
            cwd=tmp_path,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert busy.returncode == 1
        assert (
            busy.stderr.strip()
            == f"digest: error: cannot listen on 127.0.0.1:{port}: address already in use"
        )

        with httpx.Client(base_url=base, timeout=30) as c:
            archive = c.get("/issues/")
            assert f'href="/issues/{key}"' in archive.text
            assert c.get(f"/issues/{key}").status_code == 200
            page = c.get("/desk/login")
            c.post(
                "/desk/login",
                data={
                    "csrf": csrf_of(page.text),
                    "name": "editor",
                    "password": PASSWORD,
                    "next": "/desk/",
                },
            )
            desk = c.get("/desk/")
            assert (
                desk.status_code == 200
                and f'href="/desk/issues/{key}?newsletter=default"' in desk.text
            )
            issue = c.get(f"/desk/issues/{key}")
            assert issue.status_code == 200 and 'data-count="sent">50<' in issue.text
            assert c.get(f"/desk/issues/{key}/email.html").status_code == 200
    finally:
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=30)
    assert server.returncode == 0, err
    assert "/desk/" in out and "Application startup complete" in err
