"""Headers, body limit, CSRF and cookie flags, checked on a real server over HTTP."""

from __future__ import annotations

import socket

import httpx

from digest.delivery import campaign
from digest.store.engine import session_scope
from tests.samples import sample_pick
from tests.sending import pick_into
from tests.webtools import LiveServer, csrf_of, desk_client

PAGES = ["/subscribe", "/issues/", "/privacy", "/support", "/desk/login", "/no-such-page"]


def _frame_ancestors(response: httpx.Response) -> str:
    csp = response.headers["content-security-policy"]
    return next(d for d in csp.split(";") if d.strip().startswith("frame-ancestors")).strip()


def test_every_page_carries_the_security_headers(serve_web) -> None:
    srv = serve_web()
    with srv.client() as c:
        for path in PAGES:
            r = c.get(path)
            assert r.status_code in (200, 404), path
            csp = r.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp, path
            assert "object-src 'none'" in csp and "base-uri 'none'" in csp
            assert _frame_ancestors(r) == "frame-ancestors 'none'"
            assert r.headers["x-frame-options"] == "DENY"
            assert r.headers["x-content-type-options"] == "nosniff"
            assert r.headers["referrer-policy"] == "no-referrer"
            assert r.headers["cache-control"] == "no-store"
            assert '<html lang="en">' in r.text and 'name="viewport"' in r.text
            assert "strict-transport-security" not in r.headers  # plain http here
        static = c.get("/static/site.css")
        assert static.status_code == 200 and static.headers["x-content-type-options"] == "nosniff"
        assert "max-age" in static.headers["cache-control"]
        assert "<script>" not in c.get("/subscribe").text  # no inline script anywhere


def test_desk_pages_deny_framing_but_preview_documents_allow_this_origin(serve_web) -> None:
    srv = serve_web()
    with session_scope(srv.engine) as s:
        pick = {k: v for k, v in sample_pick(0).items() if k not in ("id", "position")}
        pick_into(s, srv.settings, pick)
    key = campaign.build(srv.engine, srv.settings).edition.key
    with desk_client(srv) as c:
        desk = c.get("/desk/")
        assert desk.status_code == 200 and _frame_ancestors(desk) == "frame-ancestors 'none'"
        assert "frame-src 'self'" in desk.headers["content-security-policy"]
        doc = c.get(f"/desk/issues/{key}/email.html")
        assert doc.status_code == 200
        assert _frame_ancestors(doc) == "frame-ancestors 'self'"
        assert doc.headers["x-frame-options"] == "SAMEORIGIN"
        assert "script-src" not in doc.headers["content-security-policy"]
        assert "default-src 'none'" in doc.headers["content-security-policy"]


def test_https_sites_get_hsts_and_secure_host_only_cookies(serve_web) -> None:
    # Behind a TLS proxy: the proxy forwards the public Host header.
    srv = serve_web(DIGEST_BASE_URL="https://news.example.com")
    with srv.client(headers={"host": "news.example.com"}) as c:
        r = c.get("/subscribe")
        assert r.headers["strict-transport-security"].startswith("max-age=")
        cookie = r.headers["set-cookie"]
        assert cookie.startswith("__Host-digest_csrf=")
        for flag in ("Secure", "HttpOnly", "SameSite=Lax", "Path=/"):
            assert flag.lower() in cookie.lower()
        assert "domain=" not in cookie.lower()


def test_the_session_cookie_is_http_only_same_site_and_signed(serve_web) -> None:
    srv = serve_web()
    with desk_client(srv) as c:
        jar = {cookie.name: cookie for cookie in c.cookies.jar}
        session = jar["digest_session"]
        assert session.has_nonstandard_attr("HttpOnly")
        assert session.get_nonstandard_attr("SameSite").lower() == "lax"
        assert not session.secure  # http base URL in this test
        token, _, tag = session.value.rpartition(".")
        assert token and tag
        # A cookie whose signature does not match is no session at all.
        with srv.client() as forged:
            forged.cookies.set("digest_session", token + ".AAAAAAAAAAAAAAAAAAAAAAAA")
            assert forged.get("/desk/").status_code == 303


def test_forms_without_a_valid_csrf_token_are_refused(serve_web) -> None:
    srv = serve_web()
    with desk_client(srv) as c:
        good = csrf_of(c.get("/desk/").text)
        data = {"url": "https://example.com/a", "title": "A story", "section": "News"}
        assert c.post("/desk/picks", data=data).status_code == 403  # missing
        assert c.post("/desk/picks", data={**data, "csrf": good[:-2] + "xx"}).status_code == 403
        with srv.client() as anonymous:  # a token from another browser does not fit
            other = csrf_of(anonymous.get("/subscribe").text)
        assert c.post("/desk/picks", data={**data, "csrf": other}).status_code == 403
        assert "A story" not in c.get("/desk/").text
        assert c.post("/desk/picks", data={**data, "csrf": good}).status_code == 303
        assert "A story" in c.get("/desk/").text
    with srv.client() as c:  # the login form is protected as well (login CSRF)
        r = c.post("/desk/login", data={"name": "anna", "password": "x" * 20})
        assert r.status_code == 403


def test_request_bodies_over_one_megabyte_get_413(serve_web) -> None:
    srv = serve_web()
    big = b"email=" + b"a" * (1024 * 1024 + 10)
    with srv.client() as c:
        r = c.post(
            "/subscribe", content=big, headers={"content-type": "application/x-www-form-urlencoded"}
        )
        assert r.status_code == 413
        assert r.headers["x-content-type-options"] == "nosniff"
        r = c.post("/unsubscribe/abc", content=big)
        assert r.status_code == 413
    # Without a Content-Length (chunked), the limit holds while the body streams in.
    assert _chunked_post(srv, "/subscribe", 1024 * 1024 + 4096).startswith(b"HTTP/1.1 413")
    assert _chunked_post(srv, "/subscribe", 2048).split(b" ", 2)[1] != b"413"


def _chunked_post(srv: LiveServer, path: str, size: int) -> bytes:
    with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as sock:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\nConnection: close\r\n\r\n"
        )
        sock.sendall(head.encode())
        chunk = b"a" * 65536
        sent = 0
        try:
            while sent < size:
                piece = chunk[: min(len(chunk), size - sent)]
                sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                sent += len(piece)
            sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server may answer and close before we finish
        return sock.recv(65536)
