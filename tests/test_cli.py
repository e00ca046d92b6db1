"""The `digest` command as a user runs it: a real process, real files, real exit codes."""

from __future__ import annotations

import email
import email.policy
import os
import subprocess
import sys
from pathlib import Path

import pytest

DIGEST = [sys.executable, "-m", "digest"]
REQUIRED = ("From", "To", "Subject", "Date", "Message-ID", "List-Id", "List-Unsubscribe")


def run(cwd: Path, *args: str, env: dict[str, str] | None = None, ok: bool = True):
    base = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    if args[0] != "demo":  # the demo runs as users run it; elsewhere skip the ~2 s spam score
        base["DIGEST_SPAMASSASSIN"] = "off"
    proc = subprocess.run(
        [*DIGEST, *args],
        cwd=cwd,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )
    if ok:
        assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc


@pytest.fixture
def fresh(tmp_path: Path) -> Path:
    """An empty directory with nothing configured, as on a fresh checkout."""
    return tmp_path


def test_demo_on_a_fresh_directory_fills_the_outbox(fresh: Path) -> None:
    out = run(fresh, "demo")
    assert "50 messages delivered" in out.stdout
    files = sorted((fresh / "outbox" / "new").iterdir())
    assert len(files) == 50
    seen = set()
    for f in files:
        msg = email.message_from_bytes(f.read_bytes(), policy=email.policy.default)
        assert msg.get_content_type() == "multipart/alternative"
        for h in REQUIRED:
            assert len(msg.get_all(h)) == 1, h
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        text, html = (p.get_content() for p in msg.get_payload())
        assert "/unsubscribe/" in text and "/unsubscribe/" in html
        seen.add(msg["To"].addresses[0].addr_spec)
    assert len(seen) == 50
    assert (fresh / ".env").read_text().startswith("DIGEST_SECRET_KEY=")
    for name in ("issue.html", "issue.txt", "sample.eml"):
        assert (fresh / "build" / name).stat().st_size > 1000
    # Running it again sends nobody a second copy.
    again = run(fresh, "demo")
    assert "already sent" in again.stdout
    assert len(list((fresh / "outbox" / "new").iterdir())) == 50


@pytest.fixture
def configured(fresh: Path) -> Path:
    (fresh / ".env").write_text(
        "DIGEST_SECRET_KEY=cli-test-secret-0123456789-abcdefghijklmnopq\n"
        "DIGEST_BASE_URL=https://news.example.com\n"
        "DIGEST_FROM=Newsroom <digest@news.example.com>\n"
    )
    (fresh / ".env").chmod(0o600)  # as it should be: else commands warn about it first
    return fresh


def test_picks_add_list_move_remove_build(configured: Path) -> None:
    d = configured
    run(
        d,
        "picks",
        "add",
        "https://example.com/a",
        "--title",
        "First story here",
        "--section",
        "news",
    )
    run(
        d,
        "picks",
        "add",
        "https://example.com/b",
        "--title",
        "Second story",
        "--featured",
        "--image",
        "https://example.com/b.jpg",
        "--image-alt",
        "A picture",
        "--byline",
        "By AFP",
        "--read-minutes",
        "3",
        "--tag",
        "Lavrov",
        "--tag",
        "North Korea",
    )
    run(
        d, "picks", "add", "https://example.com/c", "--title", "Third story", "--section", "Opinion"
    )
    run(d, "picks", "move", "3", "1")
    listing = run(d, "picks", "list").stdout
    assert listing.index("Third story") < listing.index("First story here")
    run(d, "picks", "remove", "1")
    assert "First story here" not in run(d, "picks", "list").stdout
    run(
        d, "issues", "edit", "--subject", "This week: second and third stories", "--intro", "Hello!"
    )
    built = run(d, "build", "--out", "out")
    assert "preflight:" in built.stdout
    html = (d / "out" / "issue.html").read_text()
    assert "Second story" in html and "Third story" in html
    assert html.index(">Second story<") < html.index(">Third story<")  # featured first
    text = (d / "out" / "issue.txt").read_text()
    assert all(len(line) <= 78 or "://" in line for line in text.splitlines())
    msg = email.message_from_bytes(
        (d / "out" / "sample.eml").read_bytes(), policy=email.policy.default
    )
    assert msg["Subject"] == "This week: second and third stories"
    # Building again is idempotent.
    run(d, "build", "--out", "out")
    assert (d / "out" / "issue.html").read_text() == html


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("picks", "add", "javascript:alert(1)", "--title", "x"), "url"),
        (("picks", "add", "https://e.com/x", "--title", "x", "--section", "Sport"), "section"),
        (("picks", "remove", "99"), "no pick with id 99"),
        (("picks", "import", "missing.yaml"), "missing.yaml"),
        (("subscribers", "import", "missing.csv"), "missing.csv"),
        (("subscribers", "add", "not-an-address"), "email"),
        (("send", "--issue", "../../etc"), "issue key"),
        (("send", "--status", "--issue", "2020-W01"), "no issue 2020-W01"),
        (("build",), "nothing picked"),
    ],
)
def test_user_errors_are_one_line_with_nonzero_exit(configured: Path, args, needle) -> None:
    proc = run(configured, *args, ok=False)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert needle.lower() in lines[0].lower()
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({"DIGEST_SMTP_PORT": "99999"}, "DIGEST_SMTP_PORT"),
        ({"DIGEST_SMTP_SECURITY": "ssl3"}, "DIGEST_SMTP_SECURITY"),
        ({"DIGEST_BASE_URL": "news.example.com"}, "DIGEST_BASE_URL"),
        ({"DIGEST_SECRET_KEY": "short"}, "DIGEST_SECRET_KEY"),
        ({"DIGEST_TIMEZONE": "Mars/Olympus"}, "DIGEST_TIMEZONE"),
        ({"DIGEST_SCHEDULE": "every friday"}, "DIGEST_SCHEDULE"),
        ({"DIGEST_CONCURRENCY": "0"}, "DIGEST_CONCURRENCY"),
    ],
)
def test_bad_settings_exit_2_naming_the_setting(fresh: Path, env, setting) -> None:
    proc = run(fresh, "subscribers", "count", env=env, ok=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert setting in proc.stderr
    if "SECRET" in setting:
        assert "short" not in proc.stderr


def test_missing_secret_outside_the_demo_is_refused(fresh: Path) -> None:
    run(fresh, "subscribers", "add", "a@example.com", "--confirmed")
    run(fresh, "picks", "add", "https://example.com/a", "--title", "A story worth reading")
    proc = run(fresh, "send", ok=False)
    assert proc.returncode == 2
    assert "DIGEST_SECRET_KEY" in proc.stderr


def test_subscribers_import_export_count(configured: Path) -> None:
    d = configured
    (d / "list.csv").write_text(
        "email,name,city\nA@Example.com,Anna,Moscow\na@example.com,Anna P,Kazan\nb@example.org,Boris,Omsk\n"
    )
    out = run(d, "subscribers", "import", "list.csv", "--confirmed").stdout
    assert "2 added" in out
    run(d, "subscribers", "remove", "b@example.org")
    run(d, "subscribers", "import", "list.csv", "--confirmed")
    count = run(d, "subscribers", "count").stdout
    assert "confirmed=1" in count and "unsubscribed=1" in count
    run(d, "subscribers", "export", "out.csv")
    exported = (d / "out.csv").read_text()
    assert "b@example.org" in exported and "unsubscribed" in exported
    (d / "bad.csv").write_text("email\nok@example.com\nnot-an-email\n")
    proc = run(d, "subscribers", "import", "bad.csv", ok=False)
    assert proc.returncode != 0 and "bad.csv:3" in proc.stderr
    assert "ok@example.com" not in run(d, "subscribers", "list").stdout


def test_send_dry_run_changes_nothing_then_send_and_status(configured: Path) -> None:
    d = configured
    run(d, "subscribers", "add", "reader@example.com", "--name", "Reader", "--confirmed")
    run(d, "picks", "add", "https://example.com/a", "--title", "A story worth reading")
    dry = run(d, "send", "--dry-run").stdout
    assert "would send to 1 subscribers" in dry
    assert not (d / "outbox").exists()
    sent = run(d, "send").stdout
    assert "sent=1" in sent
    status = run(d, "send", "--status", "--recipient", "READER@example.com").stdout
    assert "reader@example.com: sent after 1 attempt(s)" in status
    again = run(d, "send").stdout
    assert "already sent" in again
    assert len(list((d / "outbox" / "new").iterdir())) == 1


@pytest.mark.parametrize(
    "value", ["unsub@example.com\r\nBcc: x@example.com", "un sub@example.com", "a@b>c"]
)
def test_unsubscribe_mailto_cannot_break_the_header(fresh: Path, value: str) -> None:
    proc = run(fresh, "subscribers", "count", env={"DIGEST_UNSUBSCRIBE_MAILTO": value}, ok=False)
    assert proc.returncode == 2 and "DIGEST_UNSUBSCRIBE_MAILTO" in proc.stderr
