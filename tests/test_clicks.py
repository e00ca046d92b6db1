"""Counted story links (DIGEST_CLICK_STATS) through a real send, a real SMTP server and
the real web app: the same /r/ link in every copy, clicks counted and scanners not,
tampered links 404, per-subscriber links personal and disclosed, `off` direct."""

from __future__ import annotations

import csv
import logging
import re
from email.message import EmailMessage

import httpx
import pytest
from sqlalchemy import select

from digest.delivery import campaign
from digest.delivery.preflight import check_issue
from digest.editorial import editions, newsletters
from digest.editorial.models import Edition, EditionStatus
from digest.settings import load_settings
from digest.stats import filters, links
from digest.stats.models import ReaderClick, StoryClick
from digest.store.engine import session_scope
from subscribers import store
from tests.clirun import run_cli
from tests.test_web_public import add_picks, send_issue, subscribe
from tests.webtools import LiveServer, html_part, parse, text_part, unsubscribe_url

pytestmark = pytest.mark.db

BROWSER = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36"
)
SECRET = b"k" * 40


def reader(ip: str, **extra: str) -> dict[str, str]:
    """A person's browser behind our proxy (uvicorn trusts X-Forwarded-For from loopback)."""
    return {"user-agent": BROWSER, "x-forwarded-for": ip, **extra}


def counted(body: str) -> list[str]:
    return re.findall(r"http://127\.0\.0\.1:\d+/r/[A-Za-z0-9_\-/]+", body)


def sent_edition(srv: LiveServer) -> Edition:
    with session_scope(srv.engine) as s:
        return s.scalars(select(Edition).where(Edition.status == EditionStatus.SENT)).one()


def story_counts(srv: LiveServer) -> dict[int, int]:
    with session_scope(srv.engine) as s:
        return {r.pick_id: r.clicks for r in s.scalars(select(StoryClick))}


def by_recipient(messages: list) -> dict[str, EmailMessage]:  # type: ignore[type-arg]
    return {m.rcpt_tos[0]: parse(m.data) for m in messages}


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_aggregate_links_are_shared_counted_filtered_and_reported(
    smtp_server, serve_web, tmp_path, capsys
) -> None:
    srv = serve_web()
    for address in ("anna@example.com", "boris@example.com"):
        subscribe(srv, address)
    add_picks(srv, 0, 3)
    send_issue(srv, srv.settings)
    mails = by_recipient(smtp_server.messages)
    anna, boris = mails["anna@example.com"], mails["boris@example.com"]
    edition = sent_edition(srv)
    stories = {p["id"]: p["url"] for p in edition.content["picks"]}

    # The same /r/ links in both copies, HTML and text alike: nothing about the reader.
    html_links = counted(html_part(anna))
    assert html_links == counted(html_part(boris))
    assert set(counted(text_part(anna))) == set(html_links) == set(counted(text_part(boris)))
    assert len(set(html_links)) == 3
    assert all(link.startswith(srv.url + "/r/") for link in html_links)
    for url in stories.values():  # the stories are reached through the links only
        assert url not in html_part(anna) and url not in text_part(anna)
    # Unsubscribe, preferences, view-in-browser and privacy links are never rewritten.
    assert unsubscribe_url(anna) in html_part(anna) and unsubscribe_url(anna) in text_part(anna)
    assert f"{srv.url}/preferences/" in html_part(anna)
    assert f"{srv.url}/issues/{edition.key}" in html_part(anna)
    assert f"{srv.url}/privacy" in html_part(anna)

    access = logging.getLogger("uvicorn.access")
    lines, level = Lines(), access.level
    access.addHandler(lines)
    access.setLevel(logging.INFO)
    first, second, third = (link.removeprefix(srv.url) for link in dict.fromkeys(html_links))
    try:
        with srv.client(follow_redirects=False) as c:
            r = c.get(first, headers=reader("203.0.113.1"))
            assert r.status_code == 302 and r.headers["location"] in stories.values()
            assert c.get(first, headers=reader("203.0.113.2")).status_code == 302
            assert c.get(second, headers=reader("203.0.113.3")).status_code == 302
            # Redirected, never counted: HEAD, scanners, libraries, prefetches.
            assert c.head(third, headers=reader("203.0.113.4")).status_code == 302
            scanner = {"user-agent": "Mozilla/5.0 (compatible; Barracuda Sentinel (EE))"}
            assert c.get(third, headers=scanner).status_code == 302
            assert c.get(third, headers={"x-forwarded-for": "203.0.113.5"}).status_code == 302
            prefetch = reader("203.0.113.6", **{"sec-purpose": "prefetch"})
            assert c.get(third, headers=prefetch).status_code == 302
            # One client fetching two stories within seconds of the send: a scanner, and its
            # earlier click is taken back.
            for path in (first, second, third):
                assert c.get(path, headers=reader("198.51.100.7")).status_code == 302
            # Tampered or unknown links: 404, never a redirect.
            token = first.rsplit("/", 1)[1]
            swapped = token[:-1] + ("A" if token[-1] != "A" else "B")
            edition_id = edition.id
            for bad in (
                f"/r/{swapped}",
                f"/r/{token}x",
                f"/r/{token}/AAAAAAAAAAAA",
                f"/r/{links.story_token(srv.settings.secret(), edition_id + 50, 1)}",
                f"/r/{links.story_token(srv.settings.secret(), edition_id, 9999)}",
                "/r/https%3A%2F%2Fevil.example",
            ):
                r = c.get(bad, headers=reader("203.0.113.9"))
                assert r.status_code == 404 and "location" not in r.headers, bad
    finally:
        access.removeHandler(lines)
        access.setLevel(level)

    by_url = {url: pick_id for pick_id, url in stories.items()}
    with srv.client(follow_redirects=False) as c:
        first_id = by_url[c.head(first).headers["location"]]
        second_id = by_url[c.head(second).headers["location"]]
    assert story_counts(srv) == {first_id: 2, second_id: 1}
    # The access log names the story link, never the client (nor any reader).
    clicks_logged = [line for line in lines.lines if "/r/" in line]
    assert clicks_logged and all(line.startswith("- - ") for line in clicks_logged)
    assert not any("203.0.113" in line or "198.51.100" in line for line in lines.lines)

    # `digest stats`: per story and per edition, and both as CSV.
    run = run_cli(capsys, "stats", "--csv", str(tmp_path / "editions.csv"))
    assert run.code == 0, run.err
    assert f"Edition {edition.key} (sent): 3 stories, 3 clicks" in run.out
    assert "2 clicks (66.7%)" in run.out and "1 clicks (33.3%)" in run.out
    rows = list(csv.DictReader((tmp_path / "editions.csv").open(encoding="utf-8")))
    assert [(r["edition"], r["delivered"], r["failed"], r["clicks"]) for r in rows] == [
        (edition.key, "2", "0", "3")
    ]
    assert rows[0]["click_through"] == "1.5000"
    out = tmp_path / "stories.csv"
    run = run_cli(capsys, "stats", "--edition", edition.key, "--csv", str(out))
    assert run.code == 0, run.err
    story_rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert sorted(int(r["clicks"]) for r in story_rows) == [0, 1, 2]
    assert {r["url"] for r in story_rows} == set(stories.values())
    unknown = run_cli(capsys, "stats", "--edition", "2020-W01")
    assert "no edition 2020-W01" in unknown.one_line_error()


def test_per_subscriber_links_are_personal_and_disclosed(smtp_server, serve_web, capsys) -> None:
    srv = serve_web(DIGEST_CLICK_STATS="per-subscriber")
    for address in ("anna@example.com", "boris@example.com"):
        subscribe(srv, address)
    add_picks(srv, 0, 2)
    send_issue(srv, srv.settings)
    mails = by_recipient(smtp_server.messages)
    edition = sent_edition(srv)
    parts: dict[str, set[tuple[str, str]]] = {}
    for address, msg in mails.items():
        found = counted(html_part(msg)) + counted(text_part(msg))
        parts[address] = {tuple(link.rsplit("/r/", 1)[1].split("/")) for link in found}  # type: ignore[misc]
        assert len({reader_part for _, reader_part in parts[address]}) == 1  # one per message
        for part in (html_part(msg), text_part(msg)):
            assert "Story links in this email are personal" in " ".join(part.split())
    anna, boris = parts["anna@example.com"], parts["boris@example.com"]
    assert {s for s, _ in anna} == {s for s, _ in boris} and len(anna) == 2
    assert {r for _, r in anna}.isdisjoint({r for _, r in boris})

    story, mine = sorted(anna)[0]
    with session_scope(srv.engine) as s:
        anna_id = store.get_by_email(s, "anna@example.com").id
    secret = srv.settings.secret()
    with srv.client(follow_redirects=False) as c:
        assert c.get(f"/r/{story}/{mine}", headers=reader("203.0.113.1")).status_code == 302
        other_edition = links.reader_token(secret, edition.id + 1, anna_id)
        forged = mine[:-1] + ("A" if mine[-1] != "A" else "B")
        for bad in (other_edition, forged, "0"):
            assert c.get(f"/r/{story}/{bad}", headers=reader("203.0.113.2")).status_code == 404
        privacy = c.get("/privacy").text
    assert "personal" in privacy and "which stories of which edition you opened" in privacy
    with session_scope(srv.engine) as s:
        clicks = [(r.subscriber_id, r.clicks) for r in s.scalars(select(ReaderClick))]
    assert clicks == [(anna_id, 1)]
    run = run_cli(capsys, "stats")
    assert run.code == 0 and "1 clicks (100.0%), 1 readers" in run.out


@pytest.mark.parametrize("db_backend", ["sqlite"], indirect=True)
def test_off_links_go_straight_to_the_stories(smtp_server, serve_web) -> None:
    srv = serve_web(DIGEST_CLICK_STATS="off")
    subscribe(srv, "anna@example.com")
    add_picks(srv, 0, 2)
    send_issue(srv, srv.settings)
    msg = parse(smtp_server.messages[0].data)
    for pick in sent_edition(srv).content["picks"]:
        assert f'href="{pick["url"]}"' in html_part(msg) and pick["url"] in text_part(msg)
    assert "/r/" not in html_part(msg) and "/r/" not in text_part(msg)
    privacy = httpx.get(srv.url + "/privacy", timeout=30).text
    assert "go straight to the stories" in privacy


def test_preflight_checks_counted_links_against_the_edition(engine, settings) -> None:
    add = {"url": "http://news.example.org/plain-http-story", "title": "A story over plain http"}
    with session_scope(engine) as s:
        nl = newsletters.resolve(s, settings)
        edition = editions.open_edition(s, settings, nl)
        from digest.editorial.picks import add_pick, validate_pick

        add_pick(s, edition.id, validate_pick({**add, "section": "News"}, settings.sections))
    t = campaign.build(engine, settings)
    report = check_issue(t.edition, t.settings, spam=False)
    assert not report.errors
    assert any(
        f.code == "insecure-url" and "plain-http-story" in f.message for f in report.findings
    )
    other = load_settings(secret_key="another-secret-0123456789-abcdefghijklmnopq")
    codes = [f.code for f in check_issue(t.edition, other, spam=False).errors]
    assert codes == ["counted-link"]


def test_tokens_are_compact_and_refuse_every_change() -> None:
    token = links.story_token(SECRET, 123, 4567)
    assert len(token) <= 20 and re.fullmatch(r"[A-Za-z0-9_-]+", token)
    assert links.verify(SECRET, token) == links.Click(123, 4567)
    assert links.story_token(SECRET, 123, 4567) == token  # the same in every copy
    for bad in (token[:-1], token + "A", token.swapcase(), "", "!" * 10, "A" * 80):
        with pytest.raises(links.BadLink):
            links.verify(SECRET, bad)
    with pytest.raises(links.BadLink):
        links.verify(b"x" * 40, token)
    mine = links.ReaderSigner(SECRET, 123)(42)
    assert mine == "/" + links.reader_token(SECRET, 123, 42)
    assert links.verify(SECRET, token, mine[1:]) == links.Click(123, 4567, 42)
    with pytest.raises(links.BadLink):  # a reader token of another edition
        links.verify(SECRET, token, links.reader_token(SECRET, 124, 42))
    assert links.ReaderSigner(SECRET, 123)(0) == ""  # test sends: an aggregate link


def test_burst_rule() -> None:
    now = [0.0]
    guard = filters.BurstGuard(clock=lambda: now[0])
    one, two = guard.client_key("203.0.113.1"), guard.client_key("203.0.113.2")
    assert one != two and b"203.0.113" not in one
    assert guard.check(one, 1, 10).count and guard.check(one, 1, 10).count  # re-reading
    now[0] = 3.0
    assert guard.check(one, 1, 11).count  # two stories in 10 s: still a reader
    now[0] = 6.0
    burst = guard.check(one, 1, 12)
    assert not burst.count and sorted(burst.take_back) == [(10, None), (10, None), (11, None)]
    now[0] = 50.0
    assert not guard.check(one, 1, 13).count  # quiet for less than 60 s
    now[0] = 111.0
    assert guard.check(one, 1, 13).count  # 61 s later: counted again
    assert guard.check(two, 1, 10).count
    now[0] = 112.0
    near = guard.check(two, 1, 11, near_send=True)  # around the send, two stories suffice
    assert not near.count and near.take_back == ((10, None),)
    now[0] = 500.0
    guard.check(two, 2, 1)
    assert len(guard) == 1  # quiet clients are forgotten


def test_scanner_agents_and_prefetch() -> None:
    for agent in (
        None,
        "",
        "python-httpx/0.27.0",
        "curl/8.5.0",
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0)",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 HeadlessChrome/120.0 Safari/537.36",
        "facebookexternalhit/1.1",
    ):
        assert filters.scanner_agent(agent), agent
    for agent in (
        BROWSER,
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (Linux; Android 13; CUBOT KINGKONG 9) AppleWebKit/537.36 Chrome/124 Mobile",
    ):
        assert not filters.scanner_agent(agent), agent
    assert filters.prefetch({"purpose": "prefetch"}) and not filters.prefetch({})


def test_docs_list_every_scanner_agent() -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parent.parent / "docs" / "stats.md").read_text()
    listed = set(re.findall(r"`([^`]+)`", doc))
    assert set(filters.SCANNER_AGENTS) <= listed
