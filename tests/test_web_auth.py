"""Signing in to the desk: refusals without a session, throttling, revocable sessions."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from digest.clock import utcnow
from digest.editors import store as editors
from digest.editors.models import EditorSession
from digest.store.engine import session_scope
from tests.webtools import EDITOR, PASSWORD, add_editor, csrf_of, desk_client, login

DESK_GETS = ["/desk/", "/desk/picks/1", "/desk/issues/2026-W48", "/desk/issues/2026-W48/progress"]
DESK_POSTS = [
    "/desk/picks",
    "/desk/picks/1",
    "/desk/picks/1/move",
    "/desk/picks/1/remove",
    "/desk/picks/1/feature",
    "/desk/issue",
    "/desk/issues/2026-W48/test",
    "/desk/logout",
]


def test_the_desk_refuses_requests_without_a_session(serve_web) -> None:
    srv = serve_web()
    with srv.client() as c:
        for path in DESK_GETS:
            r = c.get(path)
            assert r.status_code == 303, path
            assert r.headers["location"].startswith("/desk/login?next=%2Fdesk%2F")
        for path in [*DESK_GETS[1:], "/desk/issues/2026-W48/email.html"]:
            assert c.get(path).status_code == 303
        assert c.get("/desk/issues/2026-W48/progress.json").status_code == 303
        for path in DESK_POSTS:
            r = c.post(path, data={"to": "up"})
            assert r.status_code == 403, path
            assert "sign in" in r.text.lower()


@pytest.mark.db
def test_sign_in_wrong_password_unknown_name_and_safe_redirects(serve_web) -> None:
    srv = serve_web()
    add_editor(srv.engine)
    with srv.client() as c:
        wrong = login(c, password="not the password at all")
        unknown = login(c, name="nobody")
        assert wrong.status_code == unknown.status_code == 400
        assert "do not match" in wrong.text and "do not match" in unknown.text
        assert "digest_session" not in c.cookies
        page = c.get("/desk/login?next=//evil.example/desk/")
        r = c.post(
            "/desk/login",
            data={
                "csrf": csrf_of(page.text),
                "name": EDITOR.upper(),  # names are case-insensitive
                "password": PASSWORD,
                "next": "https://evil.example/",
            },
        )
        assert r.status_code == 303 and r.headers["location"] == "/desk/"
        assert c.get("/desk/").status_code == 200
        assert c.get("/desk/login").headers["location"] == "/desk/"


@pytest.mark.db
def test_failed_sign_ins_are_throttled_per_name_and_client(serve_web) -> None:
    srv = serve_web()
    add_editor(srv.engine)
    add_editor(srv.engine, "boris", "boris@news.example.com")
    with srv.client() as c:
        for _ in range(5):
            assert login(c, password="guess guess guess").status_code == 400
        blocked = login(c)  # even the right password waits now, from this client
        assert blocked.status_code == 429
        assert 0 < int(blocked.headers["retry-after"]) <= 15 * 60
        assert "Too many sign-in attempts for this name" in blocked.text
        assert c.get("/desk/").status_code == 303
        assert login(c, name="boris").status_code == 303  # other editors are not locked out


@pytest.mark.db
def test_sessions_end_on_sign_out_password_change_removal_and_expiry(serve_web) -> None:
    srv = serve_web()
    with desk_client(srv) as c:
        cookie = c.cookies["digest_session"]
        c.post("/desk/logout", data={"csrf": csrf_of(c.get("/desk/").text)})
        with srv.client() as replay:  # the old cookie is dead on the server, not just deleted
            replay.cookies.set("digest_session", cookie)
            assert replay.get("/desk/").status_code == 303

    for revoke in ("password", "remove", "expire"):
        with desk_client(srv) as c:
            assert c.get("/desk/").status_code == 200
            with session_scope(srv.engine) as s:
                if revoke == "password":
                    editors.set_password(s, EDITOR, PASSWORD)
                elif revoke == "remove":
                    editors.remove(s, EDITOR)
                else:
                    s.execute(update(EditorSession).values(expires_at=utcnow() - timedelta(1)))
            assert c.get("/desk/").status_code == 303, revoke
            assert c.post("/desk/picks", data={}).status_code == 403, revoke
