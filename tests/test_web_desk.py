"""The desk's forms over real HTTP: picks are checked as on the command line."""

from __future__ import annotations

import re

import httpx
import pytest

from digest.editorial import editions
from digest.editorial.models import IssueStatus
from digest.editorial.picks import add_pick, unfrozen, validate_pick
from digest.store.engine import session_scope
from tests.samples import sample_pick
from tests.webtools import LiveServer, csrf_of, desk_client

STORY = {
    "url": "https://www.themoscowtimes.com/2026/11/27/story",
    "title": "Siberia's last village school",
    "summary": "Nine pupils and one teacher.",
    "section": "Features",
    "byline": "AFP",
    "read_minutes": "4",
    "tags": "Siberia, Education",
}


def post(c: httpx.Client, path: str, **data: str) -> httpx.Response:
    return c.post(path, data={"csrf": csrf_of(c.get("/desk/").text), **data})


def seed(srv: LiveServer, n: int) -> list[int]:
    with session_scope(srv.engine) as s:
        rows = []
        for i in range(n):
            pick = {k: v for k, v in sample_pick(i).items() if k not in ("id", "position")}
            rows.append(add_pick(s, validate_pick(pick, srv.settings.sections)).id)
    return rows


def order(srv: LiveServer) -> list[int]:
    with session_scope(srv.engine) as s:
        return [p.id for p in unfrozen(s)]


@pytest.mark.db
def test_adding_a_pick_checks_it_like_the_command_line(serve_web) -> None:
    srv = serve_web()
    with desk_client(srv) as c:
        for field, value, words in (
            ("url", "javascript:alert(1)", "url: must be an http"),
            ("url", "not a url", "url: must not contain spaces"),
            ("title", "", "title: String should have at least 1 character"),
            ("section", "Sports", "unknown section 'Sports'"),
            ("read_minutes", "four", "read_minutes: must be a whole number"),
            ("image_url", "ftp://x.example/a.jpg", "image_url: must be an http"),
        ):
            r = post(c, "/desk/picks", **{**STORY, field: value})
            assert r.status_code == 400, field
            assert words in r.text.replace("&#39;", "'"), (field, r.text[:2000])
            assert f'id="f-{field}"' in r.text and 'aria-invalid="true"' in r.text
            assert STORY["summary"] in r.text  # the editor's input is kept
        assert order(srv) == []

        r = post(c, "/desk/picks", **STORY, image_url="https://static.example.com/a.jpg")
        assert r.status_code == 303
        page = c.get(r.headers["location"])
        assert "the headline stands in" in page.text
    with session_scope(srv.engine) as s:
        (row,) = unfrozen(s)
        assert row.image_alt == STORY["title"] and row.tags == ["Siberia", "Education"]
        assert row.read_minutes == 4 and row.section == "Features" and row.byline == "AFP"


def test_edit_move_feature_and_remove(serve_web) -> None:
    srv = serve_web()
    a, b, c_ = seed(srv, 3)
    with desk_client(srv) as c:
        edit = c.get(f"/desk/picks/{b}")
        assert edit.status_code == 200 and 'name="url"' in edit.text
        r = post(c, f"/desk/picks/{b}", **{**STORY, "title": "A better headline"})
        assert r.status_code == 303
        bad = post(c, f"/desk/picks/{b}", **{**STORY, "url": "nope"})
        assert bad.status_code == 400 and "A better headline" not in bad.text
        assert c.get("/desk/picks/9999").status_code == 404

        assert post(c, f"/desk/picks/{c_}/move", to="up").status_code == 303
        assert order(srv) == [a, c_, b]
        assert post(c, f"/desk/picks/{a}/move", to="last").status_code == 303
        assert order(srv) == [c_, b, a]
        assert post(c, f"/desk/picks/{a}/move", to="1").status_code == 303
        assert order(srv) == [a, c_, b]
        assert post(c, f"/desk/picks/{a}/move", to="up").status_code == 303  # already first
        assert order(srv) == [a, c_, b]
        assert post(c, f"/desk/picks/{a}/move", to="sideways").status_code == 400

        assert post(c, f"/desk/picks/{b}/feature").status_code == 303
        assert post(c, f"/desk/picks/{c_}/feature").status_code == 303
        with session_scope(srv.engine) as s:
            assert [p.id for p in unfrozen(s) if p.featured] == [c_]
            assert next(p for p in unfrozen(s) if p.id == b).title == "A better headline"

        assert post(c, f"/desk/picks/{a}/remove").status_code == 303
        assert order(srv) == [c_, b]
        assert post(c, f"/desk/picks/{a}/remove").status_code == 404


def test_subject_preheader_and_intro(serve_web) -> None:
    srv = serve_web()
    seed(srv, 2)
    with desk_client(srv) as c:
        key = re.search(r'name="key" value="([^"]+)"', c.get("/desk/").text).group(1)
        assert key == editions.current_key(srv.settings)
        r = post(
            c,
            "/desk/issue",
            key=key,
            subject="The week in Moscow",
            preheader="And beyond",
            intro="First paragraph.\n\nSecond <b>bold</b> paragraph.",
        )
        assert r.status_code == 303
        with session_scope(srv.engine) as s:
            row = editions.get_issue(s, key)
            assert (row.subject, row.preheader) == ("The week in Moscow", "And beyond")
            assert row.intro == "First paragraph.\n\nSecond bold paragraph."
        too_long = post(c, "/desk/issue", key=key, subject="x" * 201, preheader="", intro="")
        assert too_long.status_code == 400 and "subject" in too_long.text
        stale = post(c, "/desk/issue", key="2020-W01", subject="Old", preheader="", intro="")
        assert stale.status_code == 409


def test_after_this_weeks_send_the_desk_prepares_next_week(serve_web) -> None:
    srv = serve_web()
    seed(srv, 2)
    this_week = editions.current_key(srv.settings)
    with session_scope(srv.engine) as s:
        issue = editions.freeze(s, srv.settings, this_week)
        editions.start_sending(s, issue)
        issue.status = IssueStatus.SENT
    with desk_client(srv) as c:
        page = c.get("/desk/").text
        key = re.search(r'name="key" value="([^"]+)"', page).group(1)
        assert key != this_week and key > this_week
        assert f'href="/desk/issues/{this_week}"' in page  # listed with past issues
        assert "Nothing picked yet" in page
        # Picks of a sent issue are history: they cannot be changed any more.
        with session_scope(srv.engine) as s:
            sent_pick = editions.get_issue(s, this_week).content["picks"][0]["id"]
        assert post(c, f"/desk/picks/{sent_pick}/remove").status_code == 409
        assert post(c, f"/desk/picks/{sent_pick}/move", to="down").status_code == 409


def test_pick_text_is_escaped_on_the_desk(serve_web) -> None:
    srv = serve_web()
    (pick_id,) = seed(srv, 1)
    with session_scope(srv.engine) as s:  # as if it came in before plain-text cleaning
        next(p for p in unfrozen(s) if p.id == pick_id).title = '<script>alert("x")</script>'
    with desk_client(srv) as c:
        page = c.get("/desk/").text
        assert "<script>alert" not in page and "&lt;script&gt;alert" in page
