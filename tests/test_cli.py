"""The `digest` command as a user runs it: real files, real exit codes, one-line errors.

Commands go through the console entry point `digest.cli.main` in this process
(tests/clirun.py); the installed console script in a real process is tests/test_wheel.py's.
"""

from __future__ import annotations

import email
import email.policy
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.clirun import Run, run_cli

REQUIRED = ("From", "To", "Subject", "Date", "Message-ID", "List-Id", "List-Unsubscribe")
Digest = Callable[..., Run]


@pytest.fixture
def digest(fresh: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """`digest(*args, env={...}, ok=True)`: run a command in `fresh` with extra settings."""

    def run(*args: str, env: dict[str, str] | None = None, ok: bool = True) -> Run:
        with monkeypatch.context() as m:
            if args[0] != "demo":  # the demo runs as users run it; elsewhere skip the spam score
                m.setenv("DIGEST_SPAMASSASSIN", "off")
            for key, value in (env or {}).items():
                m.setenv(key, value)
            result = run_cli(capsys, *args)
        if ok:
            assert result.code == 0, result.err + result.out
        return result

    return run


def test_demo_on_a_fresh_directory_fills_the_outbox(fresh: Path, digest: Digest) -> None:
    out = digest("demo")
    assert "50 messages delivered" in out.out
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
    again = digest("demo")
    assert "already sent" in again.out
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


def test_picks_add_list_move_remove_build(configured: Path, digest: Digest) -> None:
    d = configured
    digest(
        "picks",
        "add",
        "https://example.com/a",
        "--title",
        "First story here",
        "--section",
        "news",
    )
    digest(
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
    digest(
        "picks", "add", "https://example.com/c", "--title", "Third story", "--section", "Opinion"
    )
    digest("picks", "add", "https://example.com/d", "--title", "Fourth story", "--section", "News")
    listing = digest("picks", "list").out  # the email's order: featured, then by section
    order = ["Second story", "First story here", "Fourth story", "Third story"]
    assert [listing.index(x) for x in order] == sorted(listing.index(x) for x in order)
    moved = digest("picks", "move", "4", "2")  # Fourth story first among the News
    assert "order is now: 2 4 1 3" in moved.out
    clamped = digest("picks", "move", "3", "1")  # Opinion cannot go before the News
    assert "stays in the Opinion section (positions 4-4)" in clamped.out
    dup = digest("picks", "add", "https://example.com/a/", "--title", "Again", "--section", "News")
    assert "warning: this URL is also pick 1" in dup.out
    digest("picks", "remove", "5")
    digest("picks", "remove", "4")
    digest("picks", "remove", "1")
    assert "First story here" not in digest("picks", "list").out
    digest("picks", "restore", "1")  # undo
    assert "First story here" in digest("picks", "list").out
    digest("picks", "remove", "1")
    digest(
        "issues", "edit", "--subject", "This week: second and third stories", "--intro", "Hello!"
    )
    built = digest("build", "--out", "out")
    assert "preflight:" in built.out
    html = (d / "out" / "issue.html").read_text()
    assert "Second story" in html and "Third story" in html and "Fourth story" not in html
    assert html.index(">Second story<") < html.index(">Third story<")  # featured first
    text = (d / "out" / "issue.txt").read_text()
    assert all(len(line) <= 78 or "://" in line for line in text.splitlines())
    msg = email.message_from_bytes(
        (d / "out" / "sample.eml").read_bytes(), policy=email.policy.default
    )
    assert msg["Subject"] == "This week: second and third stories"
    # Building again is idempotent.
    digest("build", "--out", "out")
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
        (("send", "--issue", "../../etc"), "edition key"),
        (("send", "--status", "--issue", "2020-W01"), "no edition 2020-W01"),
        (("build",), "nothing picked"),
    ],
)
def test_user_errors_are_one_line_with_nonzero_exit(
    configured: Path, digest: Digest, args, needle
) -> None:
    proc = digest(*args, ok=False)
    assert proc.code != 0
    lines = proc.err.strip().splitlines()
    assert len(lines) == 1, proc.err
    assert needle.lower() in lines[0].lower()
    assert "Traceback" not in proc.err


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
def test_bad_settings_exit_2_naming_the_setting(fresh: Path, digest: Digest, env, setting) -> None:
    proc = digest("subscribers", "count", env=env, ok=False)
    assert proc.code == 2
    assert proc.err.strip().count("\n") == 0
    assert setting in proc.err
    if "SECRET" in setting:
        assert "short" not in proc.err


def test_missing_secret_outside_the_demo_is_refused(fresh: Path, digest: Digest) -> None:
    digest("subscribers", "add", "a@example.com", "--confirmed")
    digest("picks", "add", "https://example.com/a", "--title", "A story worth reading")
    proc = digest("send", ok=False)
    assert proc.code == 2
    assert "DIGEST_SECRET_KEY" in proc.err


def test_subscribers_import_export_count(configured: Path, digest: Digest) -> None:
    d = configured
    (d / "list.csv").write_text(
        "email,name,city\nA@Example.com,Anna,Moscow\na@example.com,Anna P,Kazan\nb@example.org,Boris,Omsk\n"
    )
    out = digest("subscribers", "import", "list.csv", "--confirmed").out
    assert "2 added" in out
    digest("subscribers", "remove", "b@example.org")
    digest("subscribers", "import", "list.csv", "--confirmed")
    count = digest("subscribers", "count").out
    assert "confirmed=1" in count and "unsubscribed=1" in count
    digest("subscribers", "export", "out.csv")
    exported = (d / "out.csv").read_text()
    assert "b@example.org" in exported and "unsubscribed" in exported
    (d / "bad.csv").write_text("email\nok@example.com\nnot-an-email\n")
    proc = digest("subscribers", "import", "bad.csv", ok=False)
    assert proc.code != 0 and "bad.csv:3" in proc.err
    assert "ok@example.com" not in digest("subscribers", "list").out


def test_send_dry_run_changes_nothing_then_send_and_status(
    configured: Path, digest: Digest
) -> None:
    d = configured
    digest("subscribers", "add", "reader@example.com", "--name", "Reader", "--confirmed")
    digest("picks", "add", "https://example.com/a", "--title", "A story worth reading")
    dry = digest("send", "--dry-run").out
    assert "would send to 1 subscribers" in dry
    assert not (d / "outbox").exists()
    sent = digest("send").out
    assert "sent=1" in sent
    key = sent.split("edition=")[1].split()[0]
    assert "Next edition of default: " in sent and key not in sent.split("Next edition")[1]
    status = digest("send", "--status", "--recipient", "READER@example.com").out
    assert "reader@example.com: sent after 1 attempt(s)" in status
    assert digest("send", "--edition", key).out.endswith("nothing to do.\n")
    again = digest("send", ok=False)  # the next edition is open, and empty
    assert "nothing picked for edition" in again.one_line_error()
    assert len(list((d / "outbox" / "new").iterdir())) == 1


@pytest.mark.parametrize(
    "value", ["unsub@example.com\r\nBcc: x@example.com", "un sub@example.com", "a@b>c"]
)
def test_unsubscribe_mailto_cannot_break_the_header(
    fresh: Path, digest: Digest, value: str
) -> None:
    proc = digest("subscribers", "count", env={"DIGEST_UNSUBSCRIBE_MAILTO": value}, ok=False)
    assert proc.code == 2 and "DIGEST_UNSUBSCRIBE_MAILTO" in proc.err
