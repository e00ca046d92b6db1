"""The web app for tests: a real uvicorn server on a free loopback port, in a thread.

`LiveServer` serves `create_app(settings)`; the `serve_web` fixture (conftest.py)
points DIGEST_BASE_URL at it first, so links in emails lead back to this server.
Helpers here sign editors in with plain httpx, as a browser would.
"""

from __future__ import annotations

import email
import email.policy
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from typing import Self

import httpx
import uvicorn
from argon2 import PasswordHasher
from sqlalchemy.engine import Engine

from digest.editors import store as editors
from digest.settings import Settings
from digest.store.engine import session_scope
from digest.web.app import create_app
from digest.web.server import server_config

EDITOR = "anna"
PASSWORD = "correct horse battery staple"
EDITOR_EMAIL = "anna@news.example.com"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class LiveServer:
    """`with LiveServer(settings, port) as srv:` - srv.url is the base URL."""

    def __init__(self, settings: Settings, port: int) -> None:
        self.settings = settings
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.app = create_app(settings)
        config = server_config(self.app, settings, "127.0.0.1", port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the web app did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)

    @property
    def engine(self) -> Engine:
        return self.app.state.engine

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)  # type: ignore[arg-type]


def fast_password_hashing(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """argon2id with minimal cost for web tests (as Django tests swap in a fast hasher);
    tests/test_web_editors.py checks the real parameters."""
    cheap = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
    dummy = cheap.hash("no such editor")
    monkeypatch.setattr(editors, "hasher", lambda: cheap)
    monkeypatch.setattr(editors, "_dummy_hash", lambda: dummy)


def add_editor(engine: Engine, name: str = EDITOR, email_addr: str = EDITOR_EMAIL) -> None:
    with session_scope(engine) as session:
        editors.add(session, name, PASSWORD, email_addr)


def csrf_of(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "no CSRF field in the page"
    return match.group(1)


def login(client: httpx.Client, name: str = EDITOR, password: str = PASSWORD) -> httpx.Response:
    page = client.get("/desk/login")
    return client.post(
        "/desk/login",
        data={"csrf": csrf_of(page.text), "name": name, "password": password, "next": "/desk/"},
    )


@contextmanager
def desk_client(srv: LiveServer) -> Iterator[httpx.Client]:
    """An httpx client signed in as the test editor (who is created if missing)."""
    with session_scope(srv.engine) as session:
        if editors.find(session, EDITOR) is None:
            editors.add(session, EDITOR, PASSWORD, EDITOR_EMAIL)
    with srv.client() as client:
        response = login(client)
        assert response.status_code == 303, response.text
        yield client


def wait_for(predicate, timeout: float = 20.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    """Poll until `predicate()` is truthy (messages arrive asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def parse(data: bytes) -> EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)  # type: ignore[return-value]


def unsubscribe_url(msg: EmailMessage) -> str:
    """The https/http URL of the List-Unsubscribe header."""
    return str(msg["List-Unsubscribe"]).split("<", 1)[1].split(">", 1)[0]


def text_part(msg: EmailMessage) -> str:
    part = msg.get_body(("plain",))
    assert part is not None
    return part.get_content()


def html_part(msg: EmailMessage) -> str:
    part = msg.get_body(("html",))
    assert part is not None
    return part.get_content()
