"""Sign-in throttling against a real uvicorn server with parallel requests.

Clients are told apart by X-Forwarded-For, which the server believes from 127.0.0.1
(DIGEST_FORWARDED_ALLOW_IPS), as it would from a reverse proxy. Password checks are
counted by wrapping the (fast, test-strength) argon2 hasher the server uses.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx
import pytest
from argon2 import PasswordHasher

from digest.editors import store as editors
from digest.web import loginguard
from tests.webtools import EDITOR, PASSWORD, add_editor, csrf_of, login

PAIR_LIMIT = 5  # per name and client in 15 minutes (digest.web.loginguard.PER_PAIR)
MAX_CHECKS = 2  # argon2 checks at once (loginguard.MAX_CHECKS)


class CountingHasher(PasswordHasher):
    """The server's hasher, counting verifications and how many ran at once."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=64, parallelism=1)
        self.lock = threading.Lock()
        self.calls = self.running = self.most = 0

    def verify(self, hash: str, password: str | bytes) -> bool:
        with self.lock:
            self.calls += 1
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            time.sleep(0.05)  # as if argon2 took a while: lets parallel checks overlap
            return super().verify(hash, password)
        finally:
            with self.lock:
                self.running -= 1


@pytest.fixture
def hasher(monkeypatch) -> CountingHasher:  # type: ignore[no-untyped-def]
    counting = CountingHasher()
    dummy = counting.hash("no such editor")
    monkeypatch.setattr(editors, "hasher", lambda: counting)
    monkeypatch.setattr(editors, "_dummy_hash", lambda: dummy)
    return counting


def attempt(client: httpx.Client, csrf: str, password: str, ip: str, name: str = EDITOR) -> int:
    data = {"csrf": csrf, "name": name, "password": password, "next": "/desk/"}
    return client.post("/desk/login", data=data, headers={"x-forwarded-for": ip}).status_code


@pytest.mark.db
def test_parallel_guesses_are_all_counted_and_checks_are_capped(serve_web, hasher) -> None:
    srv = serve_web()
    add_editor(srv.engine)
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    with srv.client(limits=limits) as c:
        csrf = csrf_of(c.get("/desk/login").text)
        with ThreadPoolExecutor(40) as pool:
            codes = list(
                pool.map(
                    lambda i: attempt(c, csrf, f"guess {i:04d} guess", "203.0.113.5"), range(40)
                )
            )
    assert sorted(set(codes)) == [400, 429], codes
    assert codes.count(400) == hasher.calls <= PAIR_LIMIT, (codes.count(400), hasher.calls)
    assert hasher.most <= MAX_CHECKS


@pytest.mark.db
def test_a_stranger_cannot_lock_an_editor_out(serve_web, hasher) -> None:
    srv = serve_web()
    add_editor(srv.engine)
    with srv.client() as stranger:
        csrf = csrf_of(stranger.get("/desk/login").text)
        codes = [attempt(stranger, csrf, f"guess {i} guess", "203.0.113.5") for i in range(20)]
        assert codes.count(400) == PAIR_LIMIT and codes.count(429) == 20 - PAIR_LIMIT
    with srv.client() as editor:  # the editor, elsewhere, with the right password
        csrf = csrf_of(editor.get("/desk/login").text)
        assert attempt(editor, csrf, PASSWORD, "198.51.100.7") == 303
        assert editor.get("/desk/").status_code == 200


@pytest.mark.db
def test_guessing_from_many_addresses_is_paced_but_known_browsers_get_in(
    serve_web, hasher, monkeypatch
) -> None:
    monkeypatch.setattr(loginguard, "NAME_PACE", timedelta(seconds=2))
    srv = serve_web()
    add_editor(srv.engine)
    known = srv.client()  # the editor's own browser, used last week
    assert login(known).status_code == 303
    assert loginguard.DEVICE_COOKIE in known.cookies
    known.post("/desk/logout", data={"csrf": csrf_of(known.get("/desk/").text)})
    assert known.get("/desk/").status_code == 303  # signed out, device cookie kept

    with srv.client() as botnet:
        csrf = csrf_of(botnet.get("/desk/login").text)
        first = [attempt(botnet, csrf, "wrong password!", f"203.0.113.{i}") for i in range(10)]
        assert first == [400] * 10
        # Beyond 10 unknown-browser attempts per name, one per NAME_PACE.
        assert attempt(botnet, csrf, "wrong password!", "203.0.113.99") == 429

        # The editor's own browser skips the pacing...
        csrf_known = csrf_of(known.get("/desk/login").text)
        assert attempt(known, csrf_known, PASSWORD, "192.0.2.50") == 303
        # ...and a new browser with the right password gets in once the pace allows.
        with srv.client() as new:
            csrf_new = csrf_of(new.get("/desk/login").text)
            assert attempt(new, csrf_new, PASSWORD, "192.0.2.51") == 429
            time.sleep(2.1)
            assert attempt(new, csrf_new, PASSWORD, "192.0.2.51") == 303
    # A device cookie is no password: it only changes which limits apply.
    with srv.client() as stolen:
        stolen.cookies.set(loginguard.DEVICE_COOKIE, known.cookies[loginguard.DEVICE_COOKIE])
        # (the device limit is per browser; these 8 come after its one success above)
        csrf = csrf_of(stolen.get("/desk/login").text)
        codes = [attempt(stolen, csrf, f"guess {i} guess", "203.0.113.7") for i in range(8)]
        assert codes == [400] * 5 + [429] * 3  # the device's own limit
    known.close()


@pytest.mark.db
def test_the_device_limit_and_other_names(serve_web, hasher) -> None:
    srv = serve_web()
    add_editor(srv.engine)
    add_editor(srv.engine, "boris", "boris@news.example.com")
    with srv.client() as c:
        csrf = csrf_of(c.get("/desk/login").text)
        for i in range(PAIR_LIMIT):
            assert attempt(c, csrf, f"guess {i} guess", "203.0.113.5") == 400
        assert attempt(c, csrf, PASSWORD, "203.0.113.5") == 429  # this name, this client
        assert attempt(c, csrf, PASSWORD, "203.0.113.5", name="boris") == 303


@pytest.mark.db
def test_ipv6_clients_are_counted_per_64(serve_web, hasher) -> None:
    srv = serve_web()
    add_editor(srv.engine)
    with srv.client() as c:
        csrf = csrf_of(c.get("/desk/login").text)
        codes = [attempt(c, csrf, f"guess {i} guess", f"2001:db8:1:2::{i:x}") for i in range(7)]
        assert codes == [400] * PAIR_LIMIT + [429] * 2  # one /64, however many addresses
        assert attempt(c, csrf, PASSWORD, "2001:db8:1:3::1") == 303  # the next /64
