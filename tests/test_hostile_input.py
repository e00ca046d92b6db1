"""Hostile and broken input through the command line.

Everything goes through `digest.cli.main`, the console entry point, exactly as a user
runs it (in-process; tests/test_wheel.py checks a real process's whole stderr). Each
bad input must be refused with exit code != 0 and one line on stderr naming the file,
line and field, with the store left exactly as it was; or neutralised where refusing
would be wrong (an HTML tag in a title, a line break in a name). An exception escaping
`main` is a traceback for the user, and fails the test.
"""

from __future__ import annotations

import codecs
import csv
import email
import email.policy
import io
import re
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import pytest
from sqlalchemy import select

from digest.delivery.models import Delivery, DeliveryStatus
from digest.editorial import newsletters
from digest.settings import load_settings
from digest.store.base import Base
from digest.store.engine import session_scope
from subscribers import subscriptions
from subscribers.model import Subscriber
from tests.clirun import run_cli
from tests.faults import FaultServer

FIXTURES = Path(__file__).parent / "fixtures" / "pickimport"
#: Most checks here do not depend on the database; the import rollbacks run on both.
SQLITE = pytest.mark.parametrize("db_backend", ["sqlite"], indirect=True)


@pytest.fixture
def cli(workdir: Path, capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    """Run `digest ARGS...` through the console entry point, in this process."""
    return lambda *args: run_cli(capsys, *args)


def snapshot(engine) -> dict[str, list[tuple]]:  # type: ignore[no-untyped-def, type-arg]
    """Every row of every table: "the store is unchanged" means this is equal."""
    with engine.connect() as conn:
        return {
            t.name: sorted(map(tuple, conn.execute(select(t))), key=repr)
            for t in Base.metadata.sorted_tables
        }


@pytest.fixture
def populated(cli, engine) -> dict[str, list[tuple]]:  # type: ignore[no-untyped-def]
    """A store with subscribers (one unsubscribed) and a pick; returns its snapshot."""
    with session_scope(engine) as s:
        nl = newsletters.resolve(s, load_settings())
        subscriptions.add(s, nl.id, "old@example.com", "Old Reader", status="confirmed")
        subscriptions.add(s, nl.id, "gone@example.com", "Gone", status="confirmed")
        subscriptions.unsubscribe(s, nl.id, "gone@example.com")
    assert cli("picks", "add", "https://news.example.com/a/1", "--title", "First").code == 0
    return snapshot(engine)


def write(path: Path, data: bytes | str) -> str:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return str(path)


# -- CSV: refused, naming file, line and field; nothing changes --------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            "email,name\nnew@example.com,New\nlong@example.com," + "x" * 100_000 + "\n",
            r"^list\.csv:3: name: is 100,000 characters long",
        ),
        ("email,name\nnew@example.com,A\nnot-an-address,B\n", r"^list\.csv:3: email: "),
        (
            'email,name\nnew@example.com,"Multi\nline"\n"x@example.com\r\nBcc: e@x.com",B\n',
            r"^list\.csv:4: email: must not contain line breaks",
        ),
        ("email,name\nnew@example.com,A\nb@example.com,B,extra\n", r"^list\.csv:3: the row has 3"),
        ("name,phone\nAnna,123\n", r"^list\.csv:1: no email column in the header"),
        ("", r"^list\.csv: the file is empty"),
        (
            "email,name\n"
            + "".join(f"r{i}@example.com,R\n" for i in range(5000))
            + "bad@example.com,Caf\xe9\n",
            r"^list\.csv:5002: the file is not valid utf-8 text \(byte 0xe9\)",
        ),
    ],
    ids=[
        "100k-field",
        "bad-address",
        "crlf-in-address",
        "extra-field",
        "no-email",
        "empty",
        "bad-byte",
    ],
)
def test_bad_csv_is_refused_and_nothing_changes(
    cli, engine, workdir: Path, populated, content: str, expected: str
) -> None:  # type: ignore[no-untyped-def]
    data = content.encode("latin-1") if "\xe9" in content else content.encode()
    path = write(workdir / "list.csv", data)
    message = cli("subscribers", "import", path, "--confirmed").one_line_error()
    assert re.search(expected, message.replace(str(workdir) + "/", "")), message
    assert snapshot(engine) == populated


def _stored(engine) -> dict[str, tuple[str, str]]:  # type: ignore[no-untyped-def]
    with session_scope(engine) as s:
        nl = newsletters.resolve(s, load_settings())
        members = subscriptions.members(s, nl.id, limit=1000)
        return {m.email: (m.subscriber.name, m.status) for m in members}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            codecs.BOM_UTF8 + b"Email,Name\r\nanna@example.com,Anna\r\n",
            {"anna@example.com": "Anna"},
        ),
        (
            "e-mail;name\nivan@example.com;Иван Петров\n".encode("windows-1251"),
            {"ivan@example.com": "Иван Петров"},
        ),
        ("email\tname\nolga@example.com\tОльга\n".encode("utf-16"), {"olga@example.com": "Ольга"}),
        (b"anna@example.com,Anna\nboris@example.com,Boris\n", {"anna@example.com": "Anna"}),
        (
            b'email,name\nmia@example.com,"Mia\r\nBcc: evil@example.com"\n',
            {"mia@example.com": "Mia Bcc: evil@example.com"},
        ),
        (b"email,name\nesc@example.com,\x1b[2JEve\x07\n", {"esc@example.com": "[2JEve"}),
        (
            "email,name\nuser@bücher.example,Jürgen\nиван@пример.рф,Иван\n".encode(),
            {"user@bücher.example": "Jürgen", "иван@пример.рф": "Иван"},
        ),
    ],
    ids=[
        "bom",
        "cp1251-semicolon",
        "utf16-tab",
        "no-header",
        "quoted-crlf",
        "terminal-escapes",
        "idn-smtputf8",
    ],
)
@SQLITE
def test_awkward_but_valid_csv_is_imported(
    cli, engine, workdir: Path, data: bytes, expected: dict[str, str]
) -> None:  # type: ignore[no-untyped-def]
    run = cli("subscribers", "import", write(workdir / "list.csv", data), "--confirmed")
    assert run.code == 0, run.err
    stored = _stored(engine)
    for address, name in expected.items():
        assert stored[address] == (name, "confirmed")


@SQLITE
def test_duplicates_in_different_case_are_one_subscriber(cli, engine, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    data = "email,name\nAnna@Example.com,Anna\nanna@example.COM,Anna P\nANNA@EXAMPLE.COM,\n"
    run = cli("subscribers", "import", write(workdir / "list.csv", data))
    assert run.code == 0 and "2 duplicates folded" in run.out, run.out
    with session_scope(engine) as s:
        rows = s.scalars(select(Subscriber)).all()
    assert len(rows) == 1 and rows[0].email_key == "anna@example.com"


@SQLITE
def test_export_defuses_spreadsheet_formulas_and_round_trips(cli, engine, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    hostile = ['=HYPERLINK("http://evil.example/")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)"]
    rows = [["email", "name", "note"]] + [
        [f"f{i}@example.com", value, value] for i, value in enumerate(hostile)
    ]
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    assert cli("subscribers", "import", write(workdir / "in.csv", out.getvalue())).code == 0
    assert cli("subscribers", "export", str(workdir / "out.csv")).code == 0
    exported = list(csv.DictReader((workdir / "out.csv").open(encoding="utf-8")))
    for row, value in zip(exported, hostile):
        assert row["name"] == "'" + value and row["note"] == "'" + value
        for cell in row.values():
            assert not cell or cell[0] not in "=+-@\t\r", cell
    before = _stored(engine)
    assert cli("subscribers", "import", str(workdir / "out.csv")).code == 0
    assert _stored(engine) == before  # export -> import gives back exactly what was there


# -- picks and feeds ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("malformed.xml", FIXTURES / "malformed.xml", r"malformed\.xml:8: not well-formed XML"),
        ("bomb.xml", FIXTURES / "billion_laughs.xml", r"bomb\.xml: refused: .*entity-expansion"),
        ("xxe.xml", FIXTURES / "xxe.xml", r"xxe\.xml: refused: .*external entity"),
        (
            "huge.yaml",
            "- url: https://x.example/\n  title: " + "x" * 5_100_000,
            r"huge\.yaml: too large",
        ),
        (
            "js.yaml",
            "- url: https://news.example.com/ok\n  title: ok\n- url: 'javascript:alert(1)'\n  title: x\n",
            r"js\.yaml:3: url: must be an http:// or https:// URL",
        ),
        (
            "data.json",
            '[\n {"url": "https://news.example.com/ok", "title": "t"},\n'
            ' {"url": "https://news.example.com/2", "title": "t", "image": "data:image/png;base64,AA"}\n]',
            r"data\.json:3: image_url: must be an http:// or https:// URL",
        ),
        (
            "feed.rss",
            '<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>\n'
            "<item><title>ok</title><link>https://news.example.com/1</link></item>\n"
            "<item><title>x</title><link>javascript:alert(document.cookie)</link></item>\n"
            "</channel></rss>",
            r"feed\.rss: item 2: url: must be an http:// or https:// URL",
        ),
        (
            "deep.json",
            "[" * 50_000 + "]" * 50_000,
            r"deep\.json: not valid JSON: nested too deeply",
        ),
        (
            "rlo.yaml",  # a right-to-left override makes a link show another address
            "- url: https://news.example.com/\u202egpj.exe\n  title: t\n",
            r"rlo\.yaml:1: url: must not contain spaces, line breaks or invisible characters",
        ),
        (
            "latin1.yaml",
            "- url: https://x.example/\n  title: Caf\xe9\n".encode("latin-1"),
            r"latin1\.yaml:2: is not UTF-8",
        ),
    ],
    ids=[
        "malformed",
        "entity-bomb",
        "xxe",
        "huge",
        "javascript-url",
        "data-url",
        "feed-js-link",
        "deep",
        "rlo",
        "latin1",
    ],
)
@SQLITE
def test_bad_pick_files_are_refused_and_nothing_changes(
    cli, engine, workdir: Path, populated, name: str, content: Path | str | bytes, expected: str
) -> None:  # type: ignore[no-untyped-def]
    data = content.read_bytes() if isinstance(content, Path) else content
    path = write(workdir / name, data)
    message = cli("picks", "import", path).one_line_error()
    assert re.search(expected, message.replace(str(workdir) + "/", "")), message
    assert snapshot(engine) == populated


def _messages(outbox: Path) -> dict[str, email.message.EmailMessage]:
    """The outbox's messages by recipient."""
    out = {}
    for path in (outbox / "new").iterdir():
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        out[msg["To"].addresses[0].addr_spec] = msg
    return out  # type: ignore[return-value]


class _Tags(HTMLParser):
    """Every start tag and its attributes, as a browser would see them."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


@SQLITE
def test_markup_and_header_injection_in_picks_and_names_are_neutralised(
    cli, engine, workdir: Path
) -> None:  # type: ignore[no-untyped-def]
    image = 'https://img.example.com/p.jpg"><script>alert(3)</script>'
    picks = (
        "- url: https://news.example.com/a\n"
        '  title: "Breaking =?utf-8?q?=0D=0ABcc:_evil@example.com?=\\r\\nBcc: evil@example.com'
        '\\r\\n\\r\\n<script>alert(1)</script>"\n'
        '  summary: "<img src=x onerror=alert(2)><b>Bold</b> claim"\n'
        f"  image: '{image}'\n"
        "  image_alt: 'alt\" onload=\"alert(4)'\n"
        "  featured: true\n"
    )
    feed = (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><item>'
        "<title>Feed&#13;&#10;X-Evil: 1</title><link>https://news.example.com/f</link>"
        "<description>&lt;script&gt;alert(5)&lt;/script&gt;Plain &lt;i&gt;words&lt;/i&gt;"
        "</description><author>x@example.com (Ann&#10;Reply-To: evil@example.com)</author>"
        "</item></channel></rss>"
    )
    assert cli("picks", "import", write(workdir / "p.yaml", picks)).code == 0
    assert cli("picks", "import", write(workdir / "f.rss", feed)).code == 0
    name = "Eve\r\nBcc: evil@example.com"
    assert cli("subscribers", "add", "eve@example.com", "--name", name, "--confirmed").code == 0
    encoded = "=?utf-8?q?Admin=0D=0ABcc:_evil@example.com?="  # decodes to a line break
    assert cli("subscribers", "add", "adm@example.com", "--name", encoded, "--confirmed").code == 0
    assert cli("build", "--out", str(workdir / "out")).code == 0
    run = cli("send")
    assert run.code == 0, run.err
    sent = _messages(workdir / "outbox")
    assert set(sent) == {"eve@example.com", "adm@example.com"}
    sample = email.message_from_bytes(
        (workdir / "out" / "sample.eml").read_bytes(), policy=email.policy.default
    )
    for msg in sent.values():
        # The outbox adds what a delivering MDA would; else exactly our headers, once each.
        headers = [h for h in msg.keys() if h not in ("Delivered-To", "Return-Path")]
        assert sorted(headers) == sorted(sample.keys())
        assert len(set(headers)) == len(headers)
        for value in msg.values():
            assert "\n" not in str(value) and "\r" not in str(value)
    msg = sent["eve@example.com"]
    assert str(msg["Subject"]).startswith(
        "The Weekly Digest: Breaking =?utf-8?q?=0D=0ABcc:_evil@example.com?= Bcc: evil"
    )
    assert msg["To"].addresses[0].display_name == "Eve Bcc: evil@example.com"
    assert sent["adm@example.com"]["To"].addresses[0].display_name == encoded
    text, html = (part.get_content() for part in msg.get_payload())
    assert "alert(" not in text and "Bold claim" in text and "Plain words" in text
    tags = _Tags(html).tags
    assert not [t for t, _ in tags if t in ("script", "iframe", "object", "embed")]
    assert not [a for _, attrs in tags for a in attrs if a.startswith("on")], "event handler"
    assert not [t for t, _ in tags if t in ("b", "i")], "editors' markup is text, not HTML"
    # The hostile attribute values are there, whole, as values: nothing broke out.
    assert ("img", image) in {(t, a.get("src")) for t, a in tags}
    assert 'alt" onload="alert(4)' in {a.get("alt") for t, a in tags if t == "img"}


# -- settings ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({"DIGEST_SMTP_PORT": "99999"}, "DIGEST_SMTP_PORT"),
        ({"DIGEST_SMTP_PORT": "smtp"}, "DIGEST_SMTP_PORT"),
        ({"DIGEST_SMTP_SECURITY": "ssl"}, "DIGEST_SMTP_SECURITY"),
        ({"DIGEST_SECRET_KEY": "too-short-secret"}, "DIGEST_SECRET_KEY"),
        ({"DIGEST_BASE_URL": "news.example.com"}, "DIGEST_BASE_URL"),
        ({"DIGEST_BASE_URL": "/relative/path"}, "DIGEST_BASE_URL"),
        ({"DIGEST_BASE_URL": "javascript:alert(1)"}, "DIGEST_BASE_URL"),
        ({"DIGEST_LIST_NAME": "News\r\nBcc: evil@example.com"}, "DIGEST_LIST_NAME"),
        ({"DIGEST_SMTP_TLS_VERIFY": "perhaps"}, "DIGEST_SMTP_TLS_VERIFY"),
        ({"DIGEST_CONCURRENCY": "0"}, "DIGEST_CONCURRENCY"),
    ],
)
def test_bad_setting_is_exit_2_naming_it(
    cli, monkeypatch, env: dict[str, str], setting: str
) -> None:  # type: ignore[no-untyped-def]
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    run = cli("subscribers", "count")
    assert run.code == 2
    assert run.one_line_error().startswith(f"{setting}: ")
    if setting == "DIGEST_SECRET_KEY":
        assert env[setting] not in run.err


def test_missing_secret_key_outside_the_demo(cli, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("DIGEST_SECRET_KEY")
    assert cli("picks", "add", "https://news.example.com/a", "--title", "A").code == 0
    for args in (["build"], ["send"]):
        run = cli(*args)
        assert run.code == 2 and run.one_line_error().startswith("DIGEST_SECRET_KEY: not set")


@pytest.mark.parametrize(
    ("name", "value"), [("DIGEST_SMTP_SECURITY", "tls1.3"), ("DIGEST_BASE_URL", "ftp://x.example")]
)
def test_bad_setting_stops_send_before_any_output(cli, monkeypatch, name: str, value: str) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv(name, value)
    run = cli("send")
    assert run.code == 2 and run.out == ""
    assert run.one_line_error().startswith(f"{name}: ")


def test_error_lines_stay_one_line_whatever_the_input(cli) -> None:  # type: ignore[no-untyped-def]
    assert cli("picks", "add", "https://news.example.com/a", "--title", "A").code == 0
    # An address with CR/LF and a terminal escape sequence, echoed back in the error.
    run = cli("test-send", "a@example.com\r\nRCPT TO:<evil@example.com>\x1b[2J")
    message = run.one_line_error()
    assert "\r" not in run.err and "\x1b" not in run.err, message
    assert "must not contain line breaks" in message
    for option in ("--edition", "--issue"):  # --issue: the old name, still accepted
        run = cli("build", option, "../../etc/passwd")
        assert "edition key must look like 2026-W48" in run.one_line_error()


# -- internationalised addresses on the wire ------------------------------------------

IDN, IDN_WIRE, UTF8_LOCAL = "user@bücher.example", "user@xn--bcher-kva.example", "иван@пример.рф"


@pytest.fixture
def international(cli, workdir: Path, monkeypatch) -> Callable[[bool], FaultServer]:  # type: ignore[no-untyped-def]
    """Subscribers with an IDN domain, a non-ASCII local part and a plain address, a pick,
    and a server with or without SMTPUTF8 that DIGEST_SMTP_* point at."""
    data = f"email,name\n{IDN},Jürgen\n{UTF8_LOCAL},Иван\nplain@example.com,Plain\n"
    assert cli("subscribers", "import", write(workdir / "l.csv", data), "--confirmed").code == 0
    assert cli("picks", "add", "https://news.example.com/a", "--title", "A story").code == 0
    servers: list[FaultServer] = []

    def start(smtputf8: bool) -> FaultServer:
        srv = FaultServer(enable_SMTPUTF8=smtputf8).__enter__()
        servers.append(srv)
        monkeypatch.setenv("DIGEST_SMTP_HOST", "127.0.0.1")
        monkeypatch.setenv("DIGEST_SMTP_PORT", str(srv.port))
        monkeypatch.setenv("DIGEST_SMTP_SECURITY", "none")
        return srv

    yield start
    for srv in servers:
        srv.__exit__(None, None, None)


def _delivery_status(engine) -> dict[str, str]:  # type: ignore[no-untyped-def]
    with session_scope(engine) as s:
        rows = s.execute(
            select(Subscriber.email, Delivery.status).join(
                Delivery, Delivery.subscriber_id == Subscriber.id
            )
        )
        return dict(rows.all())


@pytest.mark.parametrize("smtputf8", [True, False], ids=["smtputf8-server", "ascii-server"])
@SQLITE
def test_non_ascii_local_part_needs_smtputf8(cli, engine, international, smtputf8: bool) -> None:  # type: ignore[no-untyped-def]
    srv = international(smtputf8)
    cli("send")
    status, options = _delivery_status(engine), srv.handler.mail_options
    assert (
        status["plain@example.com"] == DeliveryStatus.SENT
        and "SMTPUTF8" not in options["plain@example.com"]
    )
    if smtputf8:
        assert status[UTF8_LOCAL] == DeliveryStatus.SENT and "SMTPUTF8" in options[UTF8_LOCAL]
    else:  # cannot be delivered without SMTPUTF8: failed, never counted as sent
        assert status[UTF8_LOCAL] == "failed" and UTF8_LOCAL not in srv.accepted


@pytest.mark.parametrize("smtputf8", [True, False], ids=["smtputf8-server", "ascii-server"])
@SQLITE
def test_idn_domain_goes_as_its_a_label(cli, engine, international, smtputf8: bool) -> None:  # type: ignore[no-untyped-def]
    srv = international(smtputf8)
    cli("send")
    assert _delivery_status(engine)[IDN] == DeliveryStatus.SENT
    assert "SMTPUTF8" not in srv.handler.mail_options[IDN_WIRE]
    msg = email.message_from_bytes(srv.handler.data[IDN_WIRE], policy=email.policy.default)
    assert msg["To"].addresses[0].addr_spec == IDN_WIRE


@SQLITE
def test_test_send_to_an_idn_domain_uses_its_a_label(cli, international) -> None:  # type: ignore[no-untyped-def]
    srv = international(False)
    run = cli("test-send", IDN, "plain@example.com")
    assert run.code == 0, run.out + run.err
    assert set(srv.accepted) == {IDN_WIRE, "plain@example.com"}
    assert "SMTPUTF8" not in srv.handler.mail_options[IDN_WIRE]
    msg = email.message_from_bytes(srv.handler.data[IDN_WIRE], policy=email.policy.default)
    assert msg["To"].addresses[0].addr_spec == IDN_WIRE
