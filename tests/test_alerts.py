"""Operator alerts arrive as plain text, header-safe, through the configured transport."""

from __future__ import annotations

import asyncio
import email
import email.policy
import mailbox

from digest.scheduling.alerts import send_alert
from digest.settings import load_settings


def test_alert_reaches_the_operator_over_smtp(smtp_server, monkeypatch) -> None:
    monkeypatch.setenv("DIGEST_ALERT_EMAIL", "ops@news.example.com")
    settings = load_settings()
    body = "first line\n.a line that starts with a dot\nÜmlaut and ёлка\n"
    assert asyncio.run(send_alert(settings, "issue 2026-W48\r\nBcc: victim@example.com", body))
    (got,) = smtp_server.messages
    assert got.rcpt_tos == ["ops@news.example.com"]
    assert got.mail_from == "digest@news.example.com"
    msg = got.parse()
    assert msg.get_content_type() == "text/plain"
    assert msg["Subject"] == "[The Weekly Digest] issue 2026-W48 Bcc: victim@example.com"
    assert msg["Bcc"] is None
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["Message-ID"].endswith("@news.example.com>")
    text = msg.get_content()
    assert ".a line that starts with a dot" in text.splitlines()
    assert "Ümlaut and ёлка" in text


def test_alert_without_smtp_goes_to_the_outbox(workdir, monkeypatch) -> None:
    monkeypatch.setenv("DIGEST_ALERT_EMAIL", "ops@news.example.com")
    settings = load_settings()
    assert asyncio.run(send_alert(settings, "missed", "body"))
    box = mailbox.Maildir(str(settings.outbox_dir), create=False)
    (msg,) = [email.message_from_bytes(m.as_bytes(), policy=email.policy.default) for m in box]
    assert msg["To"] == "ops@news.example.com"
    assert msg["Subject"].endswith("missed")


def test_no_alert_address_means_no_alert(smtp_server) -> None:
    assert not asyncio.run(send_alert(load_settings(), "missed", "body"))
    assert smtp_server.messages == []


def test_unreachable_smtp_server_is_logged_not_raised(workdir, monkeypatch, caplog) -> None:
    from tests.smtpd import free_port

    monkeypatch.setenv("DIGEST_ALERT_EMAIL", "ops@news.example.com")
    monkeypatch.setenv("DIGEST_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("DIGEST_SMTP_PORT", str(free_port()))
    monkeypatch.setenv("DIGEST_SMTP_SECURITY", "none")
    assert not asyncio.run(send_alert(load_settings(), "missed", "body"))
    assert "alert not sent to ops@news.example.com" in caplog.text
