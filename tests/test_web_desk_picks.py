"""The desk's pick forms over real HTTP: checked as on the command line, moved within
their section as the email orders them, removed with an Undo."""

from __future__ import annotations

import httpx
import pytest

from digest.editorial import editions, newsletters
from digest.editorial.models import Pick
from digest.editorial.picks import live_picks
from digest.store.engine import session_scope
from tests.samples import sample_pick
from tests.sending import pick_into
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


def seed(srv: LiveServer, sections: list[str]) -> list[int]:
    with session_scope(srv.engine) as s:
        rows = []
        for i, section in enumerate(sections):
            pick = sample_pick(i, section=section)
            pick = {k: v for k, v in pick.items() if k not in ("id", "position")}
            rows.append(pick_into(s, srv.settings, pick).id)
    return rows


def live(srv: LiveServer) -> list[Pick]:
    with session_scope(srv.engine) as s:
        nl = newsletters.resolve(s, srv.settings, None)
        edition = editions.open_edition(s, srv.settings, nl)
        rows = live_picks(s, edition.id, srv.settings.sections)
        s.expunge_all()
        return rows


def order(srv: LiveServer) -> list[int]:
    return [p.id for p in live(srv)]


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
        assert "picked twice" not in page.text
        (row,) = live(srv)
        assert row.image_alt == STORY["title"] and row.tags == ["Siberia", "Education"]
        assert row.read_minutes == 4 and row.section == "Features" and row.byline == "AFP"

        # The same story again is allowed (an update, say) but the desk points it out.
        again = post(c, "/desk/picks", **{**STORY, "url": STORY["url"] + "/"})
        assert again.status_code == 303 and "twice=" in again.headers["location"]
        assert "picked twice in this edition" in c.get(again.headers["location"]).text


def test_edit_move_feature_and_remove(serve_web) -> None:
    srv = serve_web()
    a, b, c_ = seed(srv, ["News", "News", "News"])
    with desk_client(srv) as c:
        edit = c.get(f"/desk/picks/{b}")
        assert edit.status_code == 200 and 'name="url"' in edit.text
        assert 'href="/desk/?newsletter=default#pick-' in edit.text  # Cancel goes back
        r = post(c, f"/desk/picks/{b}", **{**STORY, "section": "News", "title": "A better one"})
        assert r.status_code == 303
        bad = post(c, f"/desk/picks/{b}", **{**STORY, "url": "nope"})
        assert bad.status_code == 400 and "A better one" not in bad.text
        assert c.get("/desk/picks/9999").status_code == 404
        assert c.get("/desk/picks/99999999999999999999999").status_code == 404

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
        assert [p.id for p in live(srv) if p.featured] == [c_]
        assert next(p for p in live(srv) if p.id == b).title == "A better one"
        assert order(srv)[0] == c_  # the lead story comes first, as in the email


def test_moves_stay_within_the_section_as_the_email_shows_it(serve_web) -> None:
    srv = serve_web()
    news1, opinion, news2, feature = seed(srv, ["News", "Opinion", "News", "Features"])
    # The email's order: sections in their configured order, whatever the picking order.
    assert order(srv) == [news1, news2, feature, opinion]
    with desk_client(srv) as c:
        page = c.get("/desk/").text
        heads = [page.index(f'<h3 class="section-head">{s}</h3>') for s in ("News", "Features")]
        assert heads == sorted(heads) and '<h3 class="section-head">Opinion</h3>' in page
        assert post(c, f"/desk/picks/{feature}/move", to="up").status_code == 303
        assert order(srv) == [news1, news2, feature, opinion]  # alone in its section
        assert post(c, f"/desk/picks/{news2}/move", to="down").status_code == 303
        assert order(srv) == [news1, news2, feature, opinion]  # last of News already
        assert post(c, f"/desk/picks/{news2}/move", to="first").status_code == 303
        assert order(srv) == [news2, news1, feature, opinion]


def test_a_removed_pick_comes_back_with_undo(serve_web) -> None:
    srv = serve_web()
    a, b = seed(srv, ["News", "News"])
    with desk_client(srv) as c:
        assert post(c, f"/desk/picks/{a}/feature").status_code == 303
        r = post(c, f"/desk/picks/{a}/remove")
        assert r.status_code == 303 and f"undo={a}" in r.headers["location"]
        assert order(srv) == [b]
        page = c.get(r.headers["location"]).text
        assert "Removed “" in page and f'action="/desk/picks/{a}/restore"' in page
        assert post(c, f"/desk/picks/{a}/remove").status_code == 404
        assert post(c, f"/desk/picks/{b}/feature").status_code == 303  # meanwhile

        assert post(c, f"/desk/picks/{a}/restore").status_code == 303
        assert order(srv) == [b, a]  # back, and no longer the lead: b is now
        assert [p.id for p in live(srv) if p.featured] == [b]
        assert "Removed “" not in c.get(f"/desk/?undo={b}").text  # only removed picks


def test_pick_text_is_escaped_on_the_desk(serve_web) -> None:
    srv = serve_web()
    (pick_id,) = seed(srv, ["News"])
    with session_scope(srv.engine) as s:  # as if it came in before plain-text cleaning
        s.get(Pick, pick_id).title = '<script>alert("x")</script>'
    with desk_client(srv) as c:
        page = c.get("/desk/").text
        assert "<script>alert" not in page and "&lt;script&gt;alert" in page
