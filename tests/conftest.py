"""Shared fixtures: an isolated working directory, settings, a migrated store, a real SMTP server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from digest.db import dispose_all, get_engine
from digest.settings import Settings, load_settings
from tests.smtpd import SMTPServer

TEST_SECRET = "test-secret-key-0123456789-abcdefghijklmnop"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A clean cwd with no DIGEST_* variables leaking in from the outside."""
    for key in list(os.environ):
        if key.startswith("DIGEST_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DIGEST_DATABASE_URL", f"sqlite:///{tmp_path / 'digest.db'}")
    monkeypatch.setenv("DIGEST_SECRET_KEY", TEST_SECRET)
    monkeypatch.setenv("DIGEST_OUTBOX_DIR", str(tmp_path / "outbox"))
    monkeypatch.setenv("DIGEST_FROM", "The Weekly Digest <digest@news.example.com>")
    monkeypatch.setenv("DIGEST_BASE_URL", "https://news.example.com")
    monkeypatch.setenv("DIGEST_RETRY_BACKOFF", "0.05")
    yield tmp_path
    dispose_all()


@pytest.fixture
def settings(workdir: Path) -> Settings:
    return load_settings()


@pytest.fixture
def engine(settings: Settings):  # type: ignore[no-untyped-def]
    return get_engine(settings.database_url)


@pytest.fixture
def smtp_server(monkeypatch: pytest.MonkeyPatch, workdir: Path) -> Iterator[SMTPServer]:
    """A real aiosmtpd server on loopback; DIGEST_SMTP_* point at it."""
    with SMTPServer() as srv:
        monkeypatch.setenv("DIGEST_SMTP_HOST", "127.0.0.1")
        monkeypatch.setenv("DIGEST_SMTP_PORT", str(srv.port))
        monkeypatch.setenv("DIGEST_SMTP_SECURITY", "none")
        yield srv
