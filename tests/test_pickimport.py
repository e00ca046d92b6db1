"""Importing picks from YAML, JSON, RSS and Atom files and URLs, and the demo sample data."""

from __future__ import annotations

import csv
import shutil
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from email_validator import validate_email

from digest.data import SAMPLE_ISSUE, SAMPLE_PICKS, SAMPLE_SUBSCRIBERS, load_sample_issue
from digest.editorial.pickimport import MAX_REDIRECTS, load_picks
from digest.errors import InputError

FIXTURES = Path(__file__).parent / "fixtures" / "pickimport"
SECTIONS = ["News", "Features", "Analysis", "Opinion"]


def fixture(name: str) -> str:
    return str(FIXTURES / name)


def line_of(path: str, needle: str) -> int:
    """1-based line of the first line containing `needle`, so tests follow fixture edits."""
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in {path}")


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


# -- YAML and JSON ------------------------------------------------------------------


def test_yaml_list_with_aliases_is_imported() -> None:
    result = load_picks(fixture("picks.yaml"), SECTIONS)
    assert result.kind == "yaml" and result.rejected == [] and result.warnings == []
    first, second, third = result.picks
    assert first.title == "North Korean Foreign Minister Arrives in Moscow for Talks With Lavrov"
    assert first.summary.startswith("North Korea's Foreign Minister Choe Son Hui")  # lead:
    assert first.image_url == (
        "https://static.themoscowtimes.com/image/article_1360/5c/choe-lavrov.jpg"
    )  # image:
    assert (first.image_alt, first.image_credit) == (
        "Choe Son Hui and Sergei Lavrov.",
        "Alexander Shcherbak / TASS",
    )
    assert (first.byline, first.read_minutes, first.featured) == ("AFP", 3, True)
    assert first.tags == ["North Korea", "Lavrov"]
    assert second.url.endswith("the-last-typesetters-a86802")  # link:
    assert second.section == "Features"  # section names are matched case-insensitively
    assert second.summary.endswith("running.\n\nA second paragraph.")  # description:
    assert (second.read_minutes, second.tags) == (6, ["Moscow", "Culture"])
    assert third.summary == "" and third.section == "Analysis"  # empty `summary:` is allowed


def test_json_picks_object_is_imported() -> None:
    result = load_picks(fixture("picks.json"), SECTIONS)
    assert result.kind == "json"
    first, second = result.picks
    assert first.summary == "Lead with markup"
    assert first.read_minutes == 3
    assert second.title == "1984"  # a number where text belongs is taken as text
    assert second.image_alt == "A picture" and second.section == "Opinion"


def test_yaml_bad_url_names_file_line_and_field() -> None:
    path = fixture("bad_url.yaml")
    with pytest.raises(InputError) as err:
        load_picks(path, SECTIONS)
    line = line_of(path, "- title: Third story")
    assert str(err.value).startswith(f"{path}:{line}: url: must be an http:// or https:// URL")
    assert (err.value.line, err.value.field) == (line, "url")


def test_json_bad_url_names_file_line_and_field() -> None:
    path = fixture("bad_url.json")
    with pytest.raises(InputError) as err:
        load_picks(path, SECTIONS)
    # The record starts at its opening brace, the line before "title": "Third story".
    line = line_of(path, '"title": "Third story"') - 1
    assert str(err.value).startswith(f"{path}:{line}: url: ")
    assert "javascript:" in str(err.value)


@pytest.mark.parametrize("name", ["bad_url.yaml", "bad_url.json"])
def test_skip_invalid_keeps_the_good_and_reports_the_bad(name: str) -> None:
    result = load_picks(fixture(name), SECTIONS, skip_invalid=True)
    assert [p.title for p in result.picks] == ["First story", "Second story", "Fourth story"]
    assert len(result.rejected) == 1
    assert name in result.rejected[0] and ": url: " in result.rejected[0]


def test_every_bad_record_is_counted_in_the_error(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "two_bad.yaml",
        "- {url: 'data:text/html,hi', title: One}\n"
        "- {url: 'https://www.themoscowtimes.com/a2', title: Two}\n"
        "- {url: 'https://www.themoscowtimes.com/a3'}\n",
    )
    with pytest.raises(InputError, match=r"two_bad\.yaml:1: url: .*\(and 1 more invalid record"):
        load_picks(path, SECTIONS)
    result = load_picks(path, SECTIONS, skip_invalid=True)
    assert [p.title for p in result.picks] == ["Two"]
    assert result.rejected[1].endswith("two_bad.yaml:3: title: Field required")


def test_unknown_and_doubled_fields_are_errors(tmp_path: Path) -> None:
    path = write(tmp_path, "typo.yaml", "- url: https://www.themoscowtimes.com/a1\n  titel: Typo\n")
    with pytest.raises(
        InputError, match=r"typo\.yaml:1: titel: unknown field \(did you mean 'title'"
    ):
        load_picks(path, SECTIONS)
    path = write(
        tmp_path,
        "twice.yaml",
        "- title: Twice\n  url: https://www.themoscowtimes.com/a1\n"
        "  link: https://www.themoscowtimes.com/a2\n",
    )
    with pytest.raises(
        InputError, match=r"twice\.yaml:1: url: given twice \(as 'url' and 'link'\)"
    ):
        load_picks(path, SECTIONS)


def test_unknown_section_is_an_error(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "section.json",
        '[\n {"url": "https://www.themoscowtimes.com/a1", "title": "T", "section": "Sport"}\n]',
    )
    with pytest.raises(InputError, match=r"section\.json:2: section: unknown section 'Sport'"):
        load_picks(path, SECTIONS)


def test_yaml_text_fields_keep_what_was_written(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "raw.yaml",
        "- url: https://www.themoscowtimes.com/a1\n  title: 1984\n  byline: no\n"
        "  summary: 1.50\n  read_minutes: 4\n",
    )
    (pick,) = load_picks(path, SECTIONS).picks
    assert (pick.title, pick.byline, pick.summary, pick.read_minutes) == ("1984", "no", "1.50", 4)


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("syntax.yaml", "- url: x\n  title: [unclosed\n", r"syntax\.yaml:3: not valid YAML"),
        ("tabs.yaml", "- url: a\n\t- b\n", r"tabs\.yaml:2: not valid YAML"),
        ("syntax.json", '[\n  {"url": "a",}\n]', r"syntax\.json:2: not valid JSON"),
        ("extra.json", '[{"title": "a"}]\n]', r"extra\.json:2: not valid JSON"),
        ("scalar.yaml", "just some words\n", r"scalar\.yaml:1: expected a list of picks"),
        ("empty.yaml", "# nothing yet\n", r"empty\.yaml: contains no picks"),
        ("empty.json", "[]", r"empty\.json: contains no picks"),
        ("other.yaml", "stories:\n  - {}\n", r"other\.yaml:1: unknown top-level key 'stories'"),
        ("other.json", '{"stories": []}', r"other\.json:1: unknown top-level key 'stories'"),
        ("notmap.yaml", "- just a string\n", r"notmap\.yaml:1: each pick must be a mapping"),
        ("latin1.yaml", "- title: Caf\udce9\n", r"latin1\.yaml:1: is not UTF-8 text"),
    ],
)
def test_broken_files_name_the_line(tmp_path: Path, name: str, text: str, expected: str) -> None:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(InputError, match=expected):
        load_picks(str(path), SECTIONS)


def test_yaml_aliases_are_refused_quickly(tmp_path: Path) -> None:
    """The YAML flavour of billion laughs: nine levels of aliases, each ten times wider."""
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    path = write(tmp_path, "laughs.yaml", "\n".join(lines) + "\npicks:\n  - {tags: *a9}\n")
    started = time.monotonic()
    with pytest.raises(InputError, match="anchors and aliases"):
        load_picks(path, SECTIONS)
    assert time.monotonic() - started < 1


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.yaml: no such file"):
        load_picks(str(tmp_path / "nope.yaml"), SECTIONS)
    with pytest.raises(InputError, match="is not a file"):
        load_picks(str(tmp_path), SECTIONS)


def test_oversized_file_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "big.yaml", "# padding\n" * 200)
    with pytest.raises(
        InputError, match=r"big\.yaml: too large \(2\.0 kB; the limit is 1\.0 kB\)$"
    ):
        load_picks(path, SECTIONS, max_bytes=1000)
    assert load_picks(fixture("picks.yaml"), SECTIONS, max_bytes=5000).picks


def test_duplicates_and_several_featured_are_warned(tmp_path: Path) -> None:
    url = "https://www.themoscowtimes.com/a1"
    path = write(
        tmp_path,
        "dup.yaml",
        f"- {{url: '{url}', title: A, featured: true}}\n- {{url: '{url}', title: B, featured: true}}\n",
    )
    result = load_picks(path, SECTIONS)
    assert any("2 picks are marked featured" in w for w in result.warnings)
    assert any(url in w and "more than once" in w for w in result.warnings)


def test_other_url_schemes_are_refused() -> None:
    with pytest.raises(InputError, match=r"only http:// and https:// URLs"):
        load_picks("file:///etc/passwd", SECTIONS)


# -- feeds -----------------------------------------------------------------------


def test_rss_feed_is_mapped() -> None:
    result = load_picks(fixture("feed.rss"), SECTIONS)
    assert result.kind == "feed" and result.rejected == []
    first, second, third = result.picks
    # a title split over two lines becomes one line
    assert first.title == "North Korean Foreign Minister Arrives in Moscow for Talks With Lavrov"
    assert first.summary == "North Korea's Foreign Minister Choe Son Hui arrived in Moscow."
    assert first.section == "News"  # from the category "news"
    assert first.tags == ["North Korea", "Lavrov"]
    assert first.byline == "AFP"
    assert first.image_url.endswith("/5c/choe-lavrov.jpg")  # type: ignore[union-attr]
    assert first.image_alt == "Choe Son Hui and Sergei Lavrov."  # media:description
    assert first.image_credit == "Alexander Shcherbak / TASS"
    assert second.section == "Analysis" and second.tags == ["Economy"]
    assert second.image_url.endswith("/18/central-bank.jpg")  # type: ignore[union-attr]
    assert second.image_alt == second.title  # no description: the title serves as alt text
    assert third.section == "News"  # no category: the first section
    assert third.byline == "Irina Sokolova" and third.image_url is None


def test_script_in_a_feed_title_is_neutralised() -> None:
    second = load_picks(fixture("feed.rss"), SECTIONS).picks[1]
    assert second.title == "Why the Central Bank Keeps Raising Rates"
    assert "<" not in second.title and "alert" not in second.title


def test_atom_feed_is_mapped() -> None:
    first, second = load_picks(fixture("feed.atom"), SECTIONS).picks
    assert first.title == "In Tobolsk, Volunteers Race to Save Wooden Houses"
    assert first.url == "https://www.themoscowtimes.com/2024/10/26/tobolsk-a86810"
    assert (first.section, first.tags, first.byline) == (
        "Features",
        ["Siberia"],
        "Yekaterina Morozova",
    )
    assert first.summary == "Carved window frames and a century of winters."
    assert first.image_url.endswith("/3b/tobolsk.jpg")  # type: ignore[union-attr]
    assert second.summary.startswith("In a basement off Myasnitskaya Ulitsa")  # from <content>


def test_feed_is_recognised_by_content(tmp_path: Path) -> None:
    path = tmp_path / "latest.txt"
    shutil.copy(fixture("feed.atom"), path)
    assert load_picks(str(path), SECTIONS).kind == "feed"


def rss(*items: str) -> str:
    body = "".join(f"<item>{i}</item>" for i in items)
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>{body}</channel></rss>'
    )


def test_javascript_link_in_a_feed_is_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "js.xml",
        rss(
            "<title>Fine</title><link>https://www.themoscowtimes.com/a1</link>",
            "<title>Evil</title><link>javascript:alert(document.cookie)</link>",
        ),
    )
    with pytest.raises(InputError) as err:
        load_picks(path, SECTIONS)
    assert str(err.value).startswith(f"{path}: item 2: url: must be an http:// or https:// URL")
    result = load_picks(path, SECTIONS, skip_invalid=True)
    assert [p.title for p in result.picks] == ["Fine"] and len(result.rejected) == 1


def test_feed_item_problems_name_the_item(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "feed.xml",
        rss(
            "<title>One</title><link>https://www.themoscowtimes.com/a1</link>",
            "<title>No link</title>",
            "<title>Relative</title><link>/news/a3</link>",
            "<link>https://www.themoscowtimes.com/a4</link>",
        ),
    )
    result = load_picks(path, SECTIONS, skip_invalid=True)
    assert [p.title for p in result.picks] == ["One"]
    assert result.rejected == [
        f"{path}: item 2: url: Field required",
        f"{path}: item 3: url: must be an http:// or https:// URL, got '/news/a3'",
        f"{path}: item 4: title: Field required",
    ]


def test_long_feed_descriptions_are_clipped(tmp_path: Path) -> None:
    words = " ".join(["word"] * 1000)
    path = write(
        tmp_path,
        "long.xml",
        rss(
            f"<title>Long</title><link>https://www.themoscowtimes.com/a1</link><description>{words}</description>"
        ),
    )
    (pick,) = load_picks(path, SECTIONS).picks
    assert len(pick.summary) <= 500 and pick.summary.endswith("word…")


def test_malformed_xml_names_the_line() -> None:
    path = fixture("malformed.xml")
    with pytest.raises(InputError) as err:
        load_picks(path, SECTIONS)
    line = line_of(path, "</channel>")
    assert str(err.value) == f"{path}:{line}: not well-formed XML: mismatched tag"


def test_html_page_is_not_a_feed(tmp_path: Path) -> None:
    path = write(tmp_path, "page.xml", "<html><body><p>Hello</p></body></html>")
    with pytest.raises(
        InputError, match=r"page\.xml: is not an RSS or Atom feed \(the document is <html>\)"
    ):
        load_picks(path, SECTIONS)


def test_billion_laughs_is_refused_quickly() -> None:
    started = time.monotonic()
    with pytest.raises(InputError) as err:
        load_picks(fixture("billion_laughs.xml"), SECTIONS)
    assert time.monotonic() - started < 1
    assert str(err.value) == (
        f"{fixture('billion_laughs.xml')}: refused: the feed declares entities "
        "(possible entity-expansion attack)"
    )


def test_external_entity_is_refused() -> None:
    with pytest.raises(InputError) as err:
        load_picks(fixture("xxe.xml"), SECTIONS)
    assert "refused: the feed declares an external entity (possible XXE attack)" in str(err.value)
    assert "root:" not in str(err.value)


def test_feed_without_items(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"empty\.rss: contains no picks"):
        load_picks(write(tmp_path, "empty.rss", rss()), SECTIONS)


# -- URLs ------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    """Serves the fixture feed, redirect chains, a 404 and an endless body."""

    def do_GET(self) -> None:
        path = self.path
        if path == "/feed.rss":
            self._send(200, (FIXTURES / "feed.rss").read_bytes(), "application/rss+xml")
        elif path == "/picks":  # no suffix: the Content-Type decides
            self._send(200, (FIXTURES / "picks.json").read_bytes(), "application/json")
        elif path.startswith("/hop/"):
            left = int(path.rsplit("/", 1)[1])
            target = "/feed.rss" if left == 0 else f"/hop/{left - 1}"
            self.send_response(302)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path == "/to-file":
            self.send_response(302)
            self.send_header("Location", "file:///etc/passwd")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path == "/endless":
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml")
            self.end_headers()  # no Content-Length: the size cap must stop the stream
            try:
                for _ in range(2000):
                    self.wfile.write(b"<!-- padding padding padding padding -->\n" * 100)
            except (BrokenPipeError, ConnectionResetError):
                pass
        elif path == "/declared-big":
            self.send_response(200)
            self.send_header("Content-Length", str(10**9))
            self.end_headers()
        else:
            self._send(404, b"not here", "text/plain")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1; proxies are switched off so nothing leaves the host."""
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_feed_from_a_url(server: str) -> None:
    url = f"{server}/feed.rss"
    result = load_picks(url, SECTIONS)
    assert result.kind == "feed" and len(result.picks) == 3
    assert result.picks[0].byline == "AFP"


def test_content_type_decides_the_format(server: str) -> None:
    result = load_picks(f"{server}/picks", SECTIONS)
    assert result.kind == "json" and [p.title for p in result.picks] == ["First story", "1984"]


def test_redirects_are_followed_up_to_the_limit(server: str) -> None:
    assert len(load_picks(f"{server}/hop/{MAX_REDIRECTS - 1}", SECTIONS).picks) == 3
    with pytest.raises(
        InputError, match=rf"/hop/{MAX_REDIRECTS}: too many redirects \(more than 5\)"
    ):
        load_picks(f"{server}/hop/{MAX_REDIRECTS}", SECTIONS)


def test_http_errors_and_size_caps(server: str) -> None:
    with pytest.raises(InputError, match=r"/missing: the server answered HTTP 404 Not Found"):
        load_picks(f"{server}/missing", SECTIONS)
    with pytest.raises(
        InputError, match=r"/endless: too large \(more than the limit of 100\.0 kB\)$"
    ):
        load_picks(f"{server}/endless", SECTIONS, max_bytes=100_000)
    with pytest.raises(InputError, match=r"/declared-big: too large \(1000\.0 MB"):
        load_picks(f"{server}/declared-big", SECTIONS)


def test_redirect_to_another_scheme_is_refused(server: str) -> None:
    with pytest.raises(InputError, match=r"/to-file: download failed: .*unsupported protocol"):
        load_picks(f"{server}/to-file", SECTIONS)


def test_unreachable_server_is_one_line() -> None:
    with pytest.raises(InputError, match=r"^http://127\.0\.0\.1:9/feed\.xml: cannot connect: "):
        load_picks("http://127.0.0.1:9/feed.xml", SECTIONS)


# -- sample data -------------------------------------------------------------------


def test_sample_picks_load_cleanly() -> None:
    result = load_picks(str(SAMPLE_PICKS), SECTIONS)
    assert result.rejected == [] and result.warnings == []
    assert len(result.picks) == 12
    assert {p.section for p in result.picks} == set(SECTIONS)
    featured = [p for p in result.picks if p.featured]
    assert [p.title for p in featured] == [
        "North Korean Foreign Minister Arrives in Moscow for Talks With Lavrov"
    ]
    assert featured[0].image_credit == "Alexander Shcherbak / TASS"
    for pick in result.picks:
        assert pick.url.startswith("https://www.themoscowtimes.com/")
        assert pick.summary and pick.byline and pick.read_minutes
        if pick.image_url:
            assert pick.image_url.startswith("https://static.themoscowtimes.com/")
            assert pick.image_alt and pick.image_credit


def test_sample_issue_wording() -> None:
    issue = load_sample_issue()
    assert 10 <= len(issue.subject) <= 78
    assert issue.preheader != issue.subject
    assert len(issue.intro.split("\n\n")) == 2 and "the editors" in issue.intro.lower()
    assert SAMPLE_ISSUE.is_file()


def test_sample_issue_checks_its_subject(tmp_path: Path) -> None:
    path = tmp_path / "issue.yaml"
    path.write_text("subject: Short\npreheader: Something else\nintro: Hello\n")
    with pytest.raises(InputError, match="subject: must be one line of 10-78 characters"):
        load_sample_issue(path)


def test_sample_subscribers_are_safe_to_mail() -> None:
    with SAMPLE_SUBSCRIBERS.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 50 and list(rows[0]) == ["email", "name", "city"]
    emails = [r["email"] for r in rows]
    assert len({e.lower() for e in emails}) == 50
    allowed = ("example.com", "example.org", "example.net")
    for row in rows:
        domain = validate_email(row["email"], check_deliverability=False).domain
        assert domain in allowed or domain.endswith(".example"), row["email"]
        assert row["name"].strip() and row["city"].strip()
    assert any(not r["email"].split("@")[1].isascii() for r in rows)  # an IDN domain
    assert any(any("\u0400" <= ch <= "\u04ff" for ch in r["name"]) for r in rows)  # Cyrillic
