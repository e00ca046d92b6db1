"""The REST API against a real server: keys and scopes, the CMS use case, subscribers.

A newsroom's CMS posts 20 picks (with a reorder, an edit and a removal) and the edition
builds; a URL already picked or sent answers 409 naming the edition; sign-ups get the
same confirmation email as the sign-up page; errors are one JSON shape.
"""

from __future__ import annotations

import time

import httpx
import pytest

from digest.api import keys
from digest.delivery import campaign
from digest.editorial import newsletters
from digest.store.engine import session_scope
from tests.clirun import run_cli
from tests.sending import add_subscribers
from tests.webtools import parse, text_part, wait_for

SECTIONS = ["News", "Features", "Analysis", "Opinion"]


def key_for(srv, name: str = "cms", scopes=None, slug: str | None = None) -> str:  # type: ignore[no-untyped-def]
    with session_scope(srv.engine) as s:
        nl = newsletters.get(s, slug) if slug else None
        return keys.create(s, name, scopes, nl.id if nl else None)[1]


def api(srv, key: str) -> httpx.Client:  # type: ignore[no-untyped-def]
    return srv.client(headers={"Authorization": f"Bearer {key}"})


def story(i: int) -> dict[str, object]:
    return {
        "url": f"https://www.themoscowtimes.com/2026/12/0{i % 9 + 1}/story-a{9000 + i}",
        "title": f"Story number {i} from the newsroom",
        "summary": f"<p>The lead of story {i}, <b>with</b> markup the API strips.</p>",
        "section": SECTIONS[i % 4],
        "byline": "By AFP",
        "image_url": f"https://static.example.com/{i}.jpg" if i % 3 == 0 else None,
        "read_minutes": 2 + i % 5,
        "tags": ["Russia", "Economy"],
        "featured": i == 7,
    }


def test_keys_are_shown_once_listed_without_the_key_and_revoked(workdir, capsys) -> None:
    made = run_cli(capsys, "api-keys", "add", "cms", "--scope", "picks")
    assert made.code == 0, made.err
    key = made.out.split()[-1]
    assert key.startswith("dgk_") and len(key) == 47 and made.out.strip().endswith(key)
    listed = run_cli(capsys, "api-keys", "list")
    assert "cms" in listed.out and key[:12] in listed.out and key not in listed.out
    assert "picks" in listed.out and "live" in listed.out
    assert "exists" in run_cli(capsys, "api-keys", "add", "cms").one_line_error()
    assert (
        "unknown scope"
        in run_cli(capsys, "api-keys", "add", "x", "--scope", "all").one_line_error()
    )
    assert run_cli(capsys, "api-keys", "revoke", "cms").code == 0
    assert "no live API key" in run_cli(capsys, "api-keys", "revoke", "cms").one_line_error()
    again = run_cli(capsys, "api-keys", "add", "cms")  # a revoked key's name is free again
    assert again.code == 0 and "picks, subscribers, stats" in again.out


def test_keys_scopes_newsletters_and_the_rate_limit(serve_web) -> None:
    srv = serve_web(DIGEST_API_RATE_LIMIT="6")
    stats_only = key_for(srv, "dashboard", ["stats"])
    with session_scope(srv.engine) as s:
        newsletters.resolve(s, srv.settings)
        newsletters.add(s, "culture", "Culture Weekly")
    culture = key_for(srv, "culture-cms", ["picks"], "culture")
    with srv.client() as anon:
        r = anon.get("/api/v1/picks")
        assert r.status_code == 401 and r.headers["www-authenticate"] == 'Bearer realm="digest"'
        assert r.json() == {"error": "send an API key: Authorization: Bearer KEY", "field": None}
        r = anon.get("/api/v1/picks", headers={"Authorization": "Bearer dgk_" + "x" * 43})
        assert r.status_code == 401 and 'error="invalid_token"' in r.headers["www-authenticate"]
        assert (
            "access-control-allow-origin"
            not in anon.options(
                "/api/v1/picks",
                headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
            ).headers
        )
    with api(srv, stats_only) as c:
        r = c.post("/api/v1/picks", json=story(1))
        assert r.status_code == 403 and 'scope="picks"' in r.headers["www-authenticate"]
        assert c.get("/api/v1/editions").status_code == 200
    with api(srv, culture) as c:
        assert [n["slug"] for n in c.get("/api/v1/newsletters").json()["newsletters"]] == [
            "culture"
        ]
        r = c.post("/api/v1/picks", json=story(1))
        assert r.status_code == 201 and r.json()["edition"]
        r = c.get("/api/v1/picks?newsletter=default")
        assert r.status_code == 403 and r.json()["field"] == "newsletter"
        assert c.get("/api/v1/picks?newsletter=nope").status_code == 403
        statuses = [c.get("/api/v1/picks").status_code for _ in range(3)]  # 4 made before
        assert statuses == [200, 200, 429]
        r = c.get("/api/v1/picks")
        assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 60
    with api(srv, stats_only) as c:  # another key has its own limit
        assert c.get("/api/v1/editions").status_code == 200


@pytest.mark.db
def test_a_cms_posts_twenty_picks_and_the_edition_builds(serve_web) -> None:
    srv = serve_web()
    key = key_for(srv)
    add_subscribers(srv.engine, 3, settings=srv.settings)
    timings = []
    with api(srv, key) as c:
        ids = []
        for i in range(20):
            started = time.perf_counter()
            r = c.post("/api/v1/picks", json=story(i))
            timings.append(time.perf_counter() - started)
            assert r.status_code == 201, r.text
            assert r.headers["location"] == f"/api/v1/picks/{r.json()['id']}"
            ids.append(r.json()["id"])
        assert "<b>" not in c.get(f"/api/v1/picks/{ids[1]}").json()["summary"]
        listed = c.get("/api/v1/picks").json()
        assert len(listed["picks"]) == 20 and listed["picks"][0]["title"] == story(7)["title"]
        assert [p["order"] for p in listed["picks"]] == list(range(1, 21))
        news = [p["id"] for p in listed["picks"] if p["section"] == "News"]
        moved = c.post(f"/api/v1/picks/{news[-1]}/move", json={"position": 2})
        assert moved.status_code == 200 and moved.json()["picks"][1]["id"] == news[-1]
        patched = c.patch(f"/api/v1/picks/{ids[3]}", json={"title": "A corrected headline"})
        assert patched.status_code == 200 and patched.json()["title"] == "A corrected headline"
        assert (
            c.patch(f"/api/v1/picks/{ids[3]}", json={"section": "Sport"}).json()["field"]
            == "section"
        )
        assert c.delete(f"/api/v1/picks/{ids[5]}").status_code == 204
        assert c.get(f"/api/v1/picks/{ids[5]}").status_code == 404
        key_ = listed["edition"]["key"]
    t = campaign.build(srv.engine, srv.settings)
    assert t.edition.key == key_ and t.edition.is_built
    titles = [p["title"] for p in t.edition.content["picks"]]
    assert len(titles) == 19 and "A corrected headline" in titles
    assert story(5)["title"] not in titles and titles[0] == story(7)["title"]
    with api(srv, key) as c:
        detail = c.get(f"/api/v1/editions/{key_}").json()
        assert detail["counts"]["picks"] == 19 and detail["stats"]["clicks"] == 0
        assert [s["title"] for s in detail["stats"]["stories"]] == titles
    timings.sort()
    print(
        f"\nAPI: 20 POST /picks, median {timings[10] * 1000:.1f} ms, max {timings[-1] * 1000:.1f} ms"
    )


def test_a_url_picked_or_sent_before_answers_409_unless_forced(serve_web) -> None:
    srv = serve_web()
    key = key_for(srv)
    add_subscribers(srv.engine, 2, settings=srv.settings)
    with api(srv, key) as c:
        first = c.post("/api/v1/picks", json=story(1)).json()
        twice = c.post("/api/v1/picks", json={**story(1), "url": story(1)["url"] + "/"})
        assert twice.status_code == 409
        assert (
            twice.json()["edition"] == first["edition"] and twice.json()["pick_id"] == first["id"]
        )
        assert twice.json()["field"] == "url"
    launch = campaign.prepare_send(srv.engine, srv.settings)
    sent_key = launch.key
    with api(srv, key) as c:
        again = c.post("/api/v1/picks", json=story(1))
        assert again.status_code == 409 and again.json()["edition"] == sent_key
        assert f"was sent in edition {sent_key}" in again.json()["error"]
        forced = c.post("/api/v1/picks", json={**story(1), "force": True})
        assert forced.status_code == 201 and forced.json()["edition"] != sent_key
        other = c.post("/api/v1/picks", json=story(2))
        assert (
            c.patch(
                f"/api/v1/picks/{other.json()['id']}", json={"url": story(1)["url"]}
            ).status_code
            == 409
        )
        assert c.patch(f"/api/v1/picks/{first['id']}", json={"title": "x"}).status_code == 409


def test_bad_requests_get_one_json_shape(serve_web) -> None:
    srv = serve_web()
    with api(srv, key_for(srv)) as c:
        r = c.post(
            "/api/v1/picks", content=b"{not json", headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 400 and r.json()["error"].startswith("the body is not valid JSON")
        assert c.post("/api/v1/picks", content=b"url=x").status_code == 415
        assert c.post("/api/v1/picks", json=[1]).status_code == 400
        r = c.post("/api/v1/picks", json={**story(1), "colour": "red"})
        assert r.status_code == 422 and r.json()["field"] == "colour"
        r = c.post("/api/v1/picks", json={**story(1), "url": "javascript:alert(1)"})
        assert r.status_code == 422 and r.json()["field"] == "url"
        r = c.post("/api/v1/picks", json={**story(1), "force": "yes"})
        assert r.status_code == 422 and r.json()["field"] == "force"
        r = c.post("/api/v1/picks/99999/move", json={"position": 0})
        assert r.status_code == 422 and r.json()["field"] == "position"
        assert c.get("/api/v1/picks/99999").status_code == 404
        assert c.get("/api/v1/nothing").json() == {"error": "no such API path", "field": None}
        assert c.put("/api/v1/picks").status_code == 405
        assert c.get("/api/v1/editions/not-a-key").status_code == 404
        assert c.get("/api/v1/editions?limit=0").json()["field"] == "limit"
        huge = c.post("/api/v1/picks", json={**story(1), "summary": "x" * 1_100_000})
        assert huge.status_code == 413 and huge.json()["error"].startswith("The form sent more")


def test_subscribers_double_opt_in_consent_and_lookup(smtp_server, serve_web) -> None:
    srv = serve_web()
    key = key_for(srv, "crm", ["subscribers"])
    with api(srv, key) as c:
        r = c.post("/api/v1/subscribers", json={"email": "Olga@Example.org", "name": "Olga"})
        assert r.status_code == 201, r.text
        assert r.json() == {
            "email": "Olga@example.org",
            "newsletter": "default",
            "status": "pending",
            "confirmation_sent": True,
        }
        msg = parse(wait_for(lambda: smtp_server.messages, what="the confirmation")[0].data)
        assert msg["To"].addresses[0].addr_spec == "Olga@example.org"
        link = next(w for w in text_part(msg).split() if "/confirm/" in w)
        again = c.post("/api/v1/subscribers", json={"email": "olga@example.org"})
        assert again.status_code == 200 and again.json()["status"] == "pending"
        r = c.post("/api/v1/subscribers", json={"email": "ivan@example.org", "confirmed": True})
        assert r.status_code == 422 and r.json()["field"] == "consent_source"
        r = c.post(
            "/api/v1/subscribers",
            json={"email": "ivan@example.org", "confirmed": True, "consent_source": "CMS form"},
        )
        assert r.status_code == 201 and r.json()["status"] == "confirmed"
        assert not r.json()["confirmation_sent"]
        ivan = c.get("/api/v1/subscribers/ivan@example.org").json()
        sub = ivan["subscriptions"][0]
        assert sub["status"] == "confirmed" and sub["consent_source"].startswith("CMS form")
        assert sub["consent_at"].endswith("Z") and sub["source"] == "api:crm"
        assert c.get("/api/v1/subscribers/nobody@example.org").status_code == 404
        one = c.get("/api/v1/subscribers/ivan@example.org?newsletter=default").json()
        assert [x["newsletter"] for x in one["subscriptions"]] == ["default"]
        assert c.get("/api/v1/subscribers/not-an-address").json()["field"] == "email"
        assert c.post("/api/v1/subscribers", json={"email": "bad@"}).json()["field"] == "email"
    with srv.client() as browser:  # the owner confirms with the emailed link
        page = browser.get(link.replace(srv.settings.base_url, ""))
        assert page.status_code == 200
        assert browser.post(link.replace(srv.settings.base_url, "")).status_code == 200
    with api(srv, key) as c:
        olga = c.get("/api/v1/subscribers/olga@example.org").json()
        assert olga["subscriptions"][0]["status"] == "confirmed"


def test_an_editions_stats_carry_its_counted_clicks(serve_web) -> None:
    import re

    from tests.sending import started_send

    srv = serve_web()
    key = key_for(srv, "dashboard", ["stats"])
    edition, _emails = started_send(srv.engine, srv.settings, 3)
    links = re.findall(r'href="(http://[^"]+/r/[^"]+)"', edition.html)
    assert links, "story links are counted by default"
    browser = {"user-agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126"}
    with httpx.Client(headers=browser, timeout=30) as reader:
        r = reader.get(links[0].replace(srv.settings.base_url, srv.url))
        assert r.status_code == 302
    with api(srv, key) as c:
        stats = c.get(f"/api/v1/editions/{edition.key}").json()["stats"]
    assert stats["click_stats"] == "aggregate" and stats["clicks"] == 1
    assert stats["recipients"] == 3 and stats["click_through"] is None  # nothing delivered yet
    (first,) = [s for s in stats["stories"] if s["clicks"]]
    assert first["position"] == 1 and first["share"] == 1.0
    assert first["url"] == edition.content["picks"][0]["url"]
