"""Shared fixtures: an isolated working directory, settings, a migrated store, a real SMTP server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from digest.settings import Settings, load_settings
from digest.store.engine import dispose_all, get_engine
from tests import pg
from tests.smtpd import SMTPServer

TEST_SECRET = "test-secret-key-0123456789-abcdefghijklmnop"
BACKENDS = ("sqlite", "postgresql")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "db: touches the store without the `engine` fixture; run on both backends"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests that use the store (the `engine` fixture, or marked `db`) run on both backends.

    Other tests that use `workdir` run on SQLite only; a test may choose its
    backends itself with parametrize("db_backend", [...], indirect=True).
    """
    if "db_backend" not in metafunc.fixturenames:
        return
    for mark in metafunc.definition.iter_markers("parametrize"):
        names = mark.args[0]
        names = names.split(",") if isinstance(names, str) else names
        if "db_backend" in [n.strip() for n in names]:
            return
    if "engine" in metafunc.fixturenames or metafunc.definition.get_closest_marker("db"):
        metafunc.parametrize("db_backend", BACKENDS, indirect=True)


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """One PostgreSQL database for the whole session (created here, dropped at the end)."""
    try:
        name = pg.create_database()
    except Exception as exc:  # psycopg.OperationalError and friends
        pg.unavailable(str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc))
    yield pg.url_for(name)
    dispose_all()
    pg.drop_database(name)


@pytest.fixture
def db_backend(request: pytest.FixtureRequest) -> str:
    """The backend of this test: sqlite (the default) or postgresql."""
    return getattr(request, "param", "sqlite")


@pytest.fixture
def database_url(db_backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """An empty, isolated store for this test on its backend."""
    if db_backend == "postgresql":
        url = request.getfixturevalue("pg_database")
        pg.empty_tables(url)
        return url
    return f"sqlite:///{tmp_path / 'digest.db'}"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str) -> Iterator[Path]:
    """A clean cwd with no DIGEST_* variables leaking in from the outside."""
    for key in list(os.environ):
        if key.startswith("DIGEST_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DIGEST_DATABASE_URL", database_url)
    monkeypatch.setenv("DIGEST_SECRET_KEY", TEST_SECRET)
    monkeypatch.setenv("DIGEST_OUTBOX_DIR", str(tmp_path / "outbox"))
    monkeypatch.setenv("DIGEST_FROM", "The Weekly Digest <digest@news.example.com>")
    monkeypatch.setenv("DIGEST_BASE_URL", "https://news.example.com")
    monkeypatch.setenv("DIGEST_RETRY_BACKOFF", "0.05")
    # SpamAssassin takes ~2 s per preflight; tests/test_preflight.py turns it back on.
    monkeypatch.setenv("DIGEST_SPAMASSASSIN", "off")
    yield tmp_path
    dispose_all()


@pytest.fixture
def fresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty cwd with nothing configured (no DIGEST_* at all), as on a fresh checkout.

    The default store is then `sqlite:///digest.db`, a URL relative to the cwd: engines
    are disposed before and after so none is reused across folders.
    """
    for key in [k for k in os.environ if k.startswith("DIGEST_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    dispose_all()
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


@pytest.fixture
def serve_web(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """Start the web app on a real uvicorn server: `srv = serve_web()`.

    DIGEST_BASE_URL is pointed at the server first, so links in emails lead back to it;
    settings are read when called (after e.g. `smtp_server` has set DIGEST_SMTP_*).
    """
    from tests.smtpd import free_port
    from tests.webtools import LiveServer, fast_password_hashing

    fast_password_hashing(monkeypatch)
    servers: list[LiveServer] = []

    def start(**env: str) -> LiveServer:
        port = free_port()
        monkeypatch.setenv("DIGEST_BASE_URL", f"http://127.0.0.1:{port}")
        monkeypatch.setenv("DIGEST_SPAMASSASSIN", "off")  # a second per preview; tested elsewhere
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        server = LiveServer(load_settings(), port)
        servers.append(server.__enter__())
        return server

    yield start
    for server in reversed(servers):
        server.__exit__(None, None, None)
