"""What a probe of a running `digest serve` found, and what now holds: the Host header,
slow and half-open clients (raw sockets), out-of-range ids, preview frames."""

from __future__ import annotations

import json
import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser

import pytest

from digest.store.engine import session_scope
from tests.samples import sample_pick
from tests.sending import pick_into
from tests.webtools import desk_client


def raw(srv, data: bytes, *, timeout: float = 10) -> bytes:
    """Send bytes as written; everything the server answers until it closes."""
    with socket.create_connection(("127.0.0.1", srv.port), timeout=timeout) as sock:
        sock.sendall(data)
        return read_all(sock)


def read_all(sock: socket.socket) -> bytes:
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
    return out


def status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


# -- the Host header -----------------------------------------------------------------


def test_unknown_hosts_are_refused_and_redirects_use_the_base_url(serve_web) -> None:
    srv = serve_web(DIGEST_ALLOWED_HOSTS="digest.internal")
    base = srv.url
    for path in ("/issues/2026-W49", "/desk", "/subscribe", "/desk/login"):
        answer = raw(
            srv, f"GET {path} HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n".encode()
        )
        assert status(answer) == 400, path
        assert b"evil.example" not in answer
    # The API answers the refusal in its own JSON error shape.
    api = raw(srv, b"GET /api/v1/picks HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n")
    head, _, body = api.partition(b"\r\n\r\n")
    assert status(api) == 400 and b"application/json" in head.lower()
    assert json.loads(body) == {
        "error": "This server does not answer to that host name.",
        "field": None,
    }
    # Two Host headers: refused too.
    two = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"
    assert status(raw(srv, two)) == 400
    # An allowed alias is served, but every redirect is built from DIGEST_BASE_URL.
    with srv.client(headers={"host": "digest.internal:8080"}) as c:
        desk = c.get("/desk")
        assert desk.status_code in (307, 308)
        assert desk.headers["location"] == f"{base}/desk/"
        login = c.get("/desk/", follow_redirects=False)
        assert login.status_code == 303 and not login.headers["location"].startswith(
            "http://digest"
        )
        assert c.get("/subscribe").status_code == 200
    with srv.client() as c:
        assert c.get("/desk").headers["location"] == f"{base}/desk/"


# -- slow and half-open clients -------------------------------------------------------


@pytest.fixture
def quick_timeouts(serve_web):  # type: ignore[no-untyped-def]
    return serve_web(DIGEST_HEADER_TIMEOUT="1", DIGEST_BODY_TIMEOUT="1.5")


def test_silent_and_slow_header_clients_are_cut_off(quick_timeouts) -> None:
    srv = quick_timeouts

    def silent() -> tuple[float, bytes]:
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", srv.port), timeout=20) as sock:
            return time.monotonic() - started, read_all(sock)

    def trickle() -> tuple[float, bytes]:
        """Slowloris: a header line a byte at a time, never finished."""
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", srv.port), timeout=20) as sock:
            sock.sendall(b"GET /subscribe HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            try:
                for byte in b"X-Padding: " + b"a" * 200:
                    sock.sendall(bytes([byte]))
                    time.sleep(0.1)
            except OSError:  # the server closed on us mid-trickle
                pass
            return time.monotonic() - started, read_all(sock)

    with ThreadPoolExecutor(60) as pool:
        results = list(pool.map(lambda i: (silent if i % 2 else trickle)(), range(60)))
    for took, answer in results:
        assert took < 6, took  # cut off after ~1 s (plus a loaded machine's delays)
        assert answer == b"" or status(answer) == 408
    # A prompt request on a fresh connection is still served.
    ok = raw(srv, b"GET /subscribe HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    assert status(ok) == 200


def test_slow_bodies_and_slow_second_requests_are_cut_off(quick_timeouts) -> None:
    srv = quick_timeouts
    started = time.monotonic()
    partial_body = (
        b"POST /subscribe HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
        b"application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nemail=a"
    )
    answer = raw(srv, partial_body)
    assert status(answer) == 408 and time.monotonic() - started < 6
    # Keep-alive: the first request is answered; the half-sent second one is cut off.
    with socket.create_connection(("127.0.0.1", srv.port), timeout=20) as sock:
        sock.sendall(b"GET /subscribe HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        first = sock.recv(65536)
        assert status(first) == 200
        while b"</html>" not in first:
            first += sock.recv(65536)
        sock.sendall(b"GET /subscribe HTTP/1.1\r\nHost: 127.0")
        started = time.monotonic()
        rest = read_all(sock)
        assert status(rest) == 408 and time.monotonic() - started < 6
    # A body sent in pieces within the deadline is fine.
    with socket.create_connection(("127.0.0.1", srv.port), timeout=20) as sock:
        body = b"name=&email=reader%40example.com&consent=yes&csrf=x"
        head = (
            "POST /subscribe HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        sock.sendall(head.encode() + body[:10])
        time.sleep(0.5)
        sock.sendall(body[10:])
        assert status(read_all(sock)) == 403  # answered (no CSRF cookie), not cut off


# -- the desk ----------------------------------------------------------------------


def test_out_of_range_ids_are_404_not_500(serve_web) -> None:
    srv = serve_web()
    with desk_client(srv) as c:
        csrf = re.search(r'name="csrf" value="([^"]+)"', c.get("/desk/").text).group(1)
        for pick_id in ("2147483648", "9" * 40, "0"):
            assert c.get(f"/desk/picks/{pick_id}").status_code == 404, pick_id
            for action in ("", "/move", "/feature", "/remove"):
                r = c.post(f"/desk/picks/{pick_id}{action}", data={"csrf": csrf, "to": "1"})
                assert r.status_code == 404, (pick_id, action)
        huge = c.post("/desk/picks/1/move", data={"csrf": csrf, "to": "9" * 40})
        assert huge.status_code in (404, 400)


class Frames(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.frames: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "iframe":
            self.frames.append(dict(attrs))


def test_every_preview_frame_is_sandboxed(serve_web) -> None:
    srv = serve_web()
    with session_scope(srv.engine) as s:
        pick = {k: v for k, v in sample_pick(0).items() if k not in ("id", "position")}
        pick_into(s, srv.settings, pick)
    with desk_client(srv) as c:
        page = c.get("/desk/")
        key = re.search(r'href="/desk/issues/([0-9W-]+)\?newsletter=default"', page.text).group(1)
        issue = c.get(f"/desk/issues/{key}")
        parser = Frames()
        parser.feed(issue.text)
        assert len(parser.frames) == 3
        for frame in parser.frames:
            tokens = (frame.get("sandbox") or "").split()
            assert "sandbox" in frame, frame
            assert "allow-scripts" not in tokens and "allow-same-origin" not in tokens, frame
            document = c.get(frame["src"])
            csp = document.headers["content-security-policy"]
            assert "; sandbox allow-popups" in csp and "allow-scripts" not in csp
            assert "script-src" not in csp and "frame-ancestors 'self'" in csp


def test_test_sends_are_limited_per_editor(smtp_server, serve_web) -> None:
    srv = serve_web()
    with session_scope(srv.engine) as s:
        pick = {k: v for k, v in sample_pick(0).items() if k not in ("id", "position")}
        pick_into(s, srv.settings, pick)
    with desk_client(srv) as c:
        key = re.search(
            r'href="/desk/issues/([0-9W-]+)\?newsletter=default"', c.get("/desk/").text
        ).group(1)
        csrf = re.search(r'name="csrf" value="([^"]+)"', c.get(f"/desk/issues/{key}").text).group(1)
        codes = []
        for batch in range(6):  # 10 addresses a time: the hour allows 50 per editor
            to = ",".join(f"t{batch}-{i}@example.com" for i in range(10))
            codes.append(
                c.post(f"/desk/issues/{key}/test", data={"csrf": csrf, "to": to}).status_code
            )
        assert codes == [200] * 5 + [429], codes
        refused = c.post(f"/desk/issues/{key}/test", data={"csrf": csrf, "to": "one@example.com"})
        assert refused.status_code == 429 and "At most 50 test recipients an hour" in refused.text
    assert len(smtp_server.messages) == 50
