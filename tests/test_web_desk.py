"""The desk's front page over real HTTP: the next edition per newsletter, its subject and
intro, its send time, and the controls of a send in progress."""

from __future__ import annotations

import re
from datetime import timedelta

import httpx

from digest.clock import utcnow
from digest.delivery import campaign
from digest.delivery.models import Delivery, DeliveryStatus
from digest.editorial import editions, newsletters
from digest.editorial.models import EditionStatus
from digest.store.engine import session_scope
from tests.samples import sample_pick
from tests.sending import add_subscribers, pick_into
from tests.webtools import LiveServer, csrf_of, desk_client


def post(c: httpx.Client, path: str, **data: str) -> httpx.Response:
    return c.post(path, data={"csrf": csrf_of(c.get("/desk/").text), **data})


def seed(srv: LiveServer, n: int, slug: str | None = None) -> list[int]:
    with session_scope(srv.engine) as s:
        rows = []
        for i in range(n):
            pick = {k: v for k, v in sample_pick(i).items() if k not in ("id", "position")}
            rows.append(pick_into(s, srv.settings, pick, slug).id)
    return rows


def open_key(srv: LiveServer, slug: str | None = None) -> str:
    with session_scope(srv.engine) as s:
        nl = newsletters.resolve(s, srv.settings, slug)
        return editions.open_edition(s, srv.settings, nl).key


def test_subject_preheader_and_intro(serve_web) -> None:
    srv = serve_web()
    seed(srv, 2)
    with desk_client(srv) as c:
        key = re.search(r'name="key" value="([^"]+)"', c.get("/desk/").text).group(1)
        assert key == open_key(srv)
        r = post(
            c,
            "/desk/edition",
            newsletter="default",
            key=key,
            subject="The week in Moscow",
            preheader="And beyond",
            intro="First paragraph.\n\nSecond <b>bold</b> paragraph.",
        )
        assert r.status_code == 303 and r.headers["location"].endswith("ok=edition#edition")
        with session_scope(srv.engine) as s:
            row = editions.get(s, newsletters.resolve(s, srv.settings, None), key)
            assert (row.subject, row.preheader) == ("The week in Moscow", "And beyond")
            assert row.intro == "First paragraph.\n\nSecond bold paragraph."
        too_long = post(c, "/desk/edition", key=key, subject="x" * 201, preheader="", intro="")
        assert too_long.status_code == 400 and "subject" in too_long.text
        assert 'value="' + "x" * 201 in too_long.text  # the editor's input is kept
        stale = post(c, "/desk/edition", key="2020-W01", subject="Old", preheader="", intro="")
        assert stale.status_code == 409 and "reload the desk" in stale.text
        old_form = post(c, "/desk/issue", key=key, subject="Still works", preheader="", intro="")
        assert old_form.status_code == 303


def test_after_a_send_starts_the_desk_prepares_the_next_edition(serve_web) -> None:
    srv = serve_web()
    seed(srv, 2)
    add_subscribers(srv.engine, 3, settings=srv.settings)
    started = campaign.prepare_send(srv.engine, srv.settings)
    with desk_client(srv) as c:
        page = c.get("/desk/").text
        key = re.search(r'name="key" value="([^"]+)"', page).group(1)
        assert key != started.key and key > started.key
        assert "Nothing picked yet" in page
        assert "Sending now" in page and f"Edition {started.key}</a>: 0 sent, 3 to go" in page
        # Picks of an edition being sent are history: they cannot change any more.
        with session_scope(srv.engine) as s:
            nl = newsletters.resolve(s, srv.settings, None)
            sent_pick = editions.get(s, nl, started.key).content["picks"][0]["id"]
        assert post(c, f"/desk/picks/{sent_pick}/remove").status_code == 409
        assert post(c, f"/desk/picks/{sent_pick}/move", to="down").status_code == 409

        with session_scope(srv.engine) as s:
            editions.get(s, nl, started.key).status = EditionStatus.SENT
        page = c.get("/desk/").text
        assert "Sending now" not in page
        assert f'href="/desk/issues/{started.key}?newsletter=default"' in page  # past editions


def test_pause_resume_and_cancel_a_send_from_the_desk(serve_web) -> None:
    srv = serve_web()
    seed(srv, 1)
    add_subscribers(srv.engine, 4, settings=srv.settings)
    started = campaign.prepare_send(srv.engine, srv.settings)
    action = f"/desk/editions/{started.key}"
    with desk_client(srv) as c:
        r = post(c, f"{action}/pause", newsletter="default")
        assert r.status_code == 303 and "ok=paused" in r.headers["location"]
        page = c.get(r.headers["location"]).text
        assert "Send paused" in page and "<strong>paused</strong>" in page and ">Resume<" in page
        with session_scope(srv.engine) as s:
            assert s.get(type(started), started.id).paused_at is not None

        assert post(c, f"{action}/resume", newsletter="default").status_code == 303
        with session_scope(srv.engine) as s:
            assert s.get(type(started), started.id).paused_at is None

        assert post(c, f"{action}/explode").status_code == 404
        assert post(c, "/desk/editions/2020-W01/pause").status_code in (404, 409)

        r = post(c, f"{action}/cancel", newsletter="default", reason="Wrong <b>lead</b> story")
        assert r.status_code == 303 and "ok=cancelled" in r.headers["location"]
        with session_scope(srv.engine) as s:
            row = s.get(type(started), started.id)
            assert row.status == EditionStatus.CANCELLED
            assert "Wrong <b>lead</b> story" in (row.note or "")
            statuses = {d.status for d in s.query(Delivery).filter_by(edition_id=started.id)}
            assert statuses == {DeliveryStatus.SKIPPED}
        page = c.get("/desk/").text
        assert "Sending now" not in page and "<b>lead" not in page
        again = post(c, f"{action}/cancel", newsletter="default")
        assert again.status_code == 409  # nothing left to cancel: said, not a crash


def test_the_send_time_can_be_chosen_and_given_back_to_the_schedule(serve_web) -> None:
    srv = serve_web(DIGEST_TIMEZONE="Europe/Berlin")
    seed(srv, 1)
    with session_scope(srv.engine) as s:
        nl = newsletters.resolve(s, srv.settings, None)
        slot = editions.open_edition(s, srv.settings, nl).planned_at
    local = (
        (utcnow() + timedelta(days=2))
        .astimezone(srv.settings.tz)
        .replace(hour=7, minute=30, second=0, microsecond=0)
    )
    with desk_client(srv) as c:
        r = post(c, "/desk/edition/schedule", at=local.strftime("%Y-%m-%dT%H:%M"))
        assert r.status_code == 303 and r.headers["location"].endswith("ok=scheduled#when")
        page = c.get(r.headers["location"]).text
        assert "Send time saved." in page and "a time chosen by an editor" in page
        with session_scope(srv.engine) as s:
            row = editions.open_edition(s, srv.settings, newsletters.resolve(s, srv.settings, None))
            assert row.status == EditionStatus.SCHEDULED
            assert row.planned_at == local.astimezone(row.planned_at.tzinfo)

        past = post(c, "/desk/edition/schedule", at="2020-01-01T09:00")
        assert past.status_code == 400 and "that time has passed" in past.text
        junk = post(c, "/desk/edition/schedule", at="next friday")
        assert junk.status_code == 400 and 'aria-invalid="true"' in junk.text

        back = post(c, "/desk/edition/schedule", action="slot")
        assert back.status_code == 303
        with session_scope(srv.engine) as s:
            row = editions.open_edition(s, srv.settings, newsletters.resolve(s, srv.settings, None))
            assert row.status == EditionStatus.DRAFT and row.planned_at == slot


def test_each_newsletter_has_its_own_desk(serve_web) -> None:
    srv = serve_web()
    with session_scope(srv.engine) as s:
        newsletters.resolve(s, srv.settings, None)
        newsletters.add(s, "business", "Business Brief", schedule="0 7 * * 1-5")
    seed(srv, 2)
    (biz,) = seed(srv, 1, "business")
    with desk_client(srv) as c:
        home = c.get("/desk/").text
        assert 'aria-label="Newsletters"' in home and "Business Brief" in home
        assert 'href="/desk/?newsletter=business"' in home
        site = srv.settings.list_name
        assert re.search(r"<title>(.*?)</title>", home).group(1) == f"Desk · {site}"
        page = c.get("/desk/?newsletter=business").text
        title = re.search(r"<title>(.*?)</title>", page).group(1)
        assert title == f"Desk · Business Brief · {site}"  # the newsletter, then the site
        assert "Business Brief: next edition" in page and f'id="pick-{biz}"' in page
        assert 'name="newsletter" value="business"' in page
        assert page.count('<li class="pick') == 1 and "0 7 * * 1-5" in page
        day_key = open_key(srv, "business")
        assert re.fullmatch(r"\d{4}-\d\d-\d\d", day_key) and day_key in page

        # A form for one newsletter never changes another's edition.
        r = post(c, "/desk/edition", newsletter="business", key=day_key, subject="Markets")
        assert r.status_code == 303 and "newsletter=business" in r.headers["location"]
        with session_scope(srv.engine) as s:
            default = editions.open_edition(
                s, srv.settings, newsletters.resolve(s, srv.settings, None)
            )
            assert default.subject in ("", None)
        wrong = post(c, "/desk/edition", newsletter="default", key=day_key, subject="Markets")
        assert wrong.status_code == 409

        unknown = c.get("/desk/?newsletter=nope")
        assert unknown.status_code == 404 and "nope" in unknown.text
