"""DKIM: our signatures verified by dkimpy (an independent implementation) against a
stubbed DNS record, directly, after a real SMTP hop, and after what relays do."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Callable
from datetime import UTC, datetime
from email import message_from_bytes
from email.policy import default
from email.utils import parseaddr
from pathlib import Path

import dkim as dkimpy
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from digest.delivery import campaign, dkimkeys
from digest.delivery.dkim import Signer, aligned, signer_for
from digest.delivery.message import MessageTemplate, Recipient
from digest.delivery.sender import Sender
from digest.delivery.transports import make_transport
from digest.editorial.render import render_issue
from digest.errors import SettingsError
from digest.settings import Settings, load_settings
from digest.store.engine import get_engine
from tests import sending
from tests.clirun import Run, run_cli
from tests.samples import sample_content

DOMAIN = "news.example.com"
SELECTOR = "digest2026"
MUST_SIGN = {
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "list-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "mime-version",
    "content-type",
}


def dns_for(key: dkimkeys.PrivateKey, selector: str = SELECTOR, domain: str = DOMAIN):
    """A stub resolver that knows exactly one DKIM record."""
    record = dkimkeys.txt_value(key).encode()
    name = f"{selector}._domainkey.{domain}.".encode()

    def dnsfunc(qname: bytes, timeout: int = 5) -> bytes | None:
        return record if qname == name else None

    return dnsfunc


def verifies(message: bytes, key: dkimkeys.PrivateKey) -> bool:
    return dkimpy.verify(message, dnsfunc=dns_for(key))


@pytest.fixture(scope="module")
def keys() -> dict[str, dkimkeys.PrivateKey]:
    return {"rsa": dkimkeys.generate_key("rsa"), "ed25519": dkimkeys.generate_key("ed25519")}


@pytest.fixture(scope="module")
def rendered():
    s = Settings(secret_key="k8Vq2pZ4xR7mN1wT5yB3cF9hJ6dL0sGa", base_url="https://news.example.com")
    return render_issue(sample_content(20), s)


def template(settings: Settings, rendered, signer: Signer | None) -> MessageTemplate:
    return MessageTemplate(
        rendered,
        settings=settings,
        issue_key="2026-W48",
        subject="The Weekly Digest: Lavrov hosts Choe Son Hui — and more",
        date=datetime(2026, 11, 27, 6, 0, tzinfo=UTC),
        signer=signer,
    )


def signed_names(message: bytes) -> list[str]:
    head = message.split(b"\r\n\r\n", 1)[0].decode()
    sig = re.search(r"^DKIM-Signature:(.*?)(?=^\S)", head + "\r\nX:", re.M | re.S).group(1)
    h = re.search(r"\bh=([^;]*);", sig).group(1)
    return [n.strip() for n in h.split(":")]


RECIPIENTS = [
    Recipient(1, "anna@example.com", "Anna Petrova", "tok-1"),
    Recipient(2, "jurgen@example.de", "Jürgen Groß  (Berlin)", "tok-2"),
    Recipient(3, "анна@пример.рф", "Анна", "tok-3"),
    Recipient(40000, "no.name@example.org", "", "tok-40000"),
]


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_every_personal_message_verifies(settings, rendered, keys, kind) -> None:
    signer = Signer(DOMAIN, SELECTOR, keys[kind])
    t = template(settings, rendered, signer)
    for r in RECIPIENTS:
        msg = t.build(r)
        assert verifies(msg, keys[kind]), r
        names = signed_names(msg)
        assert MUST_SIGN <= set(names)
        # Oversigned: one more From/List-Unsubscribe than present, so none can be added.
        assert names.count("from") == 2 and names.count("list-unsubscribe-post") == 2
        assert f"a={kind}-sha256" in msg.split(b"\r\n\r\n")[0].decode()
    # The signed message is the unsigned one with one header in front.
    t.signer = None
    unsigned = t.build(RECIPIENTS[-1])
    assert msg.endswith(unsigned)
    first, *folded, last = msg[: -len(unsigned)].split(b"\r\n")
    assert first.startswith(b"DKIM-Signature:") and last == b""
    assert all(line.startswith(b" ") for line in folded)


def test_signed_message_stays_smtp_ready(settings, rendered, keys) -> None:
    msg = template(settings, rendered, Signer(DOMAIN, SELECTOR, keys["rsa"])).build(RECIPIENTS[1])
    assert b"\n" not in msg.replace(b"\r\n", b"")
    lines = msg.split(b"\r\n")
    assert not any(line.startswith(b".") for line in lines)
    head = msg.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    assert head[0].startswith(b"DKIM-Signature: v=1;")
    assert max(len(line) for line in head) <= 78


def test_relay_rewrites_that_relaxed_canonicalisation_tolerates(settings, rendered, keys) -> None:
    key = keys["rsa"]
    msg = template(settings, rendered, Signer(DOMAIN, SELECTOR, key)).build(RECIPIENTS[0])
    head, body = msg.split(b"\r\n\r\n", 1)
    rewrites: dict[str, Callable[[bytes, bytes], bytes]] = {
        "trace headers added on top": lambda h, b: (
            b"Received: from mx.example.org by mx2.example.net; Fri, 27 Nov 2026 06:00:01 +0000\r\n"
            b"Authentication-Results: mx2.example.net; spf=pass\r\n" + h + b"\r\n\r\n" + b
        ),
        "List-Unsubscribe unfolded": lambda h, b: (
            h.replace(b",\r\n <mailto:", b", <mailto:") + b"\r\n\r\n" + b
        ),
        "header re-folded with tabs": lambda h, b: (
            h.replace(b"List-Id: ", b"List-Id:\t\r\n\t ").replace(b"Subject: ", b"SUBJECT:   ")
            + b"\r\n\r\n"
            + b
        ),
        "trailing blanks and empty lines": lambda h, b: (
            h + b"\r\n\r\n" + b.replace(b"\r\n", b"  \r\n", 5) + b"\r\n\r\n"
        ),
    }
    for name, rewrite in rewrites.items():
        changed = rewrite(head, body)
        assert changed != msg, name
        assert verifies(changed, key), name


def test_tampering_breaks_the_signature(settings, rendered, keys) -> None:
    key = keys["ed25519"]
    msg = template(settings, rendered, Signer(DOMAIN, SELECTOR, key)).build(RECIPIENTS[0])
    assert verifies(msg, key)
    head, body = msg.split(b"\r\n\r\n", 1)
    tampered = {
        "body word": head + b"\r\n\r\n" + body.replace(b"Lavrov", b"Lavrow", 1),
        "unsubscribe URL": msg.replace(b"/unsubscribe/tok-1>", b"/unsubscribe/tok-2>", 1),
        "one-click header removed": msg.replace(
            b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n", b""
        ),
        "second From added": b"From: Evil <evil@example.net>\r\n" + msg,
        "Reply-To added": msg.replace(b"\r\n\r\n", b"\r\nReply-To: evil@example.net\r\n\r\n", 1),
    }
    for name, data in tampered.items():
        assert data != msg, name
        assert not verifies(data, key), name


_TEXT = st.lists(st.sampled_from(["a", "b", " ", "\t", "\r\n", "=", "."]), max_size=120).map(
    "".join
)


@hsettings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=_TEXT,
    subject=st.text(alphabet=st.sampled_from(["x", "y", " ", "\t"]), min_size=1, max_size=40),
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=5),
)
def test_canonicalisation_agrees_with_dkimpy(
    keys, body: str, subject: str, cuts: list[int]
) -> None:
    """Any body, any whitespace, cut into pieces anywhere: dkimpy agrees with our hashes."""
    key = keys["ed25519"]
    signer = Signer(DOMAIN, SELECTOR, key, clock=lambda: 1_790_000_000)
    subject = subject.strip() or "x"
    if not body.endswith("\r\n"):  # SMTP ends every message with a line break
        body += "\r\n"
    message = (
        f"From: a@{DOMAIN}\r\nTo: b@example.com\r\nSubject:  {subject} \r\n"
        f"Subject-Note:\tfolded\r\n\tvalue  here\r\n\r\n{body}"
    ).encode()
    points = sorted({min(c, len(message)) for c in cuts})
    pieces = [message[a:b] for a, b in zip([0, *points], [*points, len(message)])]
    signed = signer.sign_pieces(pieces)
    assert signed.endswith(message)
    assert verifies(signed, key)
    assert signer.sign(message).split(b"\r\n b=")[0] == signed.split(b"\r\n b=")[0]


def _write_key(path: Path, key: dkimkeys.PrivateKey) -> Path:
    dkimkeys.write_private_key(path, key)
    return path


def test_signature_survives_a_real_smtp_hop(smtp_server, workdir, keys, monkeypatch) -> None:
    """The Sender signs on its thread pool: every message of a real send verifies."""
    key_file = _write_key(workdir / "dkim.pem", keys["rsa"])
    monkeypatch.setenv("DIGEST_DKIM_KEY_FILE", str(key_file))
    monkeypatch.setenv("DIGEST_DKIM_SELECTOR", SELECTOR)
    settings = load_settings()
    engine = get_engine(settings.database_url)
    sending.add_picks(engine, settings, 4)
    people = [("anna@example.com", "Anna"), ("dot.name@example.com", "Dorothée Dupont")]
    for addr, name in people + [(f"r{i}@example.org", "") for i in range(40)]:
        sending.subscribe(engine, settings, addr, name)
    issue = campaign.prepare_send(engine, settings)

    async def go():
        transport = make_transport(settings)
        async with transport:
            return await Sender(engine, settings, issue, transport).run()

    report = asyncio.run(go())
    assert report.finished
    assert len(smtp_server.messages) == 42
    tokens = set()
    for m in smtp_server.messages:
        assert m.data.startswith(b"DKIM-Signature: ")
        assert verifies(m.data, keys["rsa"])
        relayed = b"Received: from digest by mx.example.org; Fri, 27 Nov 2026 06:00:00 +0000\r\n"
        assert verifies(relayed + m.data, keys["rsa"])
        # each message is its recipient's own (signed in chunks on several threads)
        to = parseaddr(message_from_bytes(m.data, policy=default)["To"])[1]
        assert [to] == m.rcpt_tos
        tokens.add(re.search(rb"/unsubscribe/([\w-]+)>", m.data).group(1))
    assert len(tokens) == 42


def test_signer_for_reads_the_settings(workdir, keys, monkeypatch) -> None:
    def load(**env: str) -> Signer | None:
        for k in ("DIGEST_DKIM_KEY_FILE", "DIGEST_DKIM_SELECTOR", "DIGEST_DKIM_DOMAIN"):
            monkeypatch.delenv(k, raising=False)
        for k, v in env.items():
            monkeypatch.setenv(f"DIGEST_DKIM_{k.upper()}", v)
        return signer_for(load_settings())

    def error(**env: str) -> str:
        with pytest.raises(SettingsError) as info:
            load(**env)
        return str(info.value)

    assert load() is None
    rsa_file = str(_write_key(workdir / "rsa.pem", keys["rsa"]))
    signer = load(key_file=rsa_file, selector="s1")
    assert signer is not None and signer.domain == DOMAIN and signer.algorithm == "rsa-sha256"
    assert load(key_file=rsa_file, selector="s1", domain="Example.COM").domain == "example.com"
    # dkimpy's dknewkey writes Ed25519 keys as a base64 seed; those work too.
    seed = keys["ed25519"].private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    (workdir / "ed.key").write_bytes(base64.b64encode(seed) + b"\n")
    assert load(key_file=str(workdir / "ed.key"), selector="s1").algorithm == "ed25519-sha256"

    assert error(selector="s1").startswith("DIGEST_DKIM_KEY_FILE: not set")
    assert error(key_file=rsa_file).startswith("DIGEST_DKIM_SELECTOR: required")
    assert "No such file" in error(key_file=str(workdir / "missing.pem"), selector="s1")
    assert error(key_file=rsa_file, selector="bad selector").startswith("DIGEST_DKIM_SELECTOR:")
    (workdir / "junk.pem").write_text("hello\n")
    assert "not a PEM private key" in error(key_file=str(workdir / "junk.pem"), selector="s1")
    locked = keys["rsa"].private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    (workdir / "locked.pem").write_bytes(locked)
    assert "encrypted" in error(key_file=str(workdir / "locked.pem"), selector="s1")
    ec_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (workdir / "ec.pem").write_bytes(ec_pem)
    assert "use RSA or Ed25519" in error(key_file=str(workdir / "ec.pem"), selector="s1")


def test_alignment() -> None:
    assert aligned("news.example.com", "example.com")
    assert aligned("example.com", "EXAMPLE.com.")
    assert not aligned("example.com", "news.example.com")
    assert not aligned("badexample.com", "example.com")


@pytest.fixture
def cli(fresh: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    """`cli(*args, env={...})`: `digest ARGS` in an empty folder with only these settings."""

    def run(*args: str, env: dict[str, str] | None = None) -> Run:
        with monkeypatch.context() as m:
            for key, value in (env or {}).items():
                m.setenv(key, value)
            return run_cli(capsys, *args)

    return run


def test_keygen_writes_a_private_key_and_prints_the_record(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    env = {"DIGEST_FROM": f"News <digest@{DOMAIN}>"}
    out = cli("dkim", "keygen", "--selector", "s2026", "--out", "k.pem", env=env)
    assert out.code == 0, out.err
    key_file = tmp_path / "k.pem"
    assert key_file.stat().st_mode & 0o777 == 0o600
    line = next(x for x in out.out.splitlines() if "._domainkey." in x)
    assert line.startswith(f"s2026._domainkey.{DOMAIN}. IN TXT (")
    record = "".join(re.findall(r'"([^"]*)"', line))
    assert all(len(s) <= 255 for s in re.findall(r'"([^"]*)"', line))
    assert "DIGEST_DKIM_SELECTOR=s2026" in out.out
    key = dkimkeys.load_key(key_file.read_bytes())
    message = f"From: digest@{DOMAIN}\r\nTo: a@example.com\r\nSubject: hi\r\n\r\nhello\r\n".encode()
    signed = Signer(DOMAIN, "s2026", key).sign(message)
    assert dkimpy.verify(signed, dnsfunc=lambda name, timeout=5: record.encode())
    # An existing key is never replaced by accident.
    before = key_file.read_bytes()
    again = cli("dkim", "keygen", "--selector", "s2026", "--out", "k.pem", env=env)
    assert again.code == 1 and again.err.count("\n") == 1
    assert "exists" in again.err and key_file.read_bytes() == before
    ed = cli("dkim", "keygen", "--ed25519", "--selector", "e1", "--out", "e.pem", env=env)
    assert ed.code == 0 and "k=ed25519" in ed.out
    assert isinstance(
        dkimkeys.load_key((tmp_path / "e.pem").read_bytes()), ed25519.Ed25519PrivateKey
    )
    nodomain = cli("dkim", "keygen", "--out", "x.pem")  # From is digest@localhost
    assert nodomain.code == 1 and "--domain" in nodomain.err
    assert not (tmp_path / "x.pem").exists()


def test_build_writes_a_signed_sample_that_verifies(tmp_path: Path, keys, cli) -> None:  # type: ignore[no-untyped-def]
    _write_key(tmp_path / "dkim.pem", keys["ed25519"])
    env = {
        "DIGEST_FROM": f"News <digest@{DOMAIN}>",
        "DIGEST_BASE_URL": f"https://{DOMAIN}",
        "DIGEST_SECRET_KEY": "s5Tg2Hk9Wq4Zr7Xm1Pb8Vn3Cd6Fj0LyE",
        "DIGEST_DKIM_KEY_FILE": "dkim.pem",
        "DIGEST_DKIM_SELECTOR": SELECTOR,
        "DIGEST_SPAMASSASSIN": "off",
    }
    url = "https://www.themoscowtimes.com/2026/11/20/a"
    assert cli("picks", "add", url, "--title", "A story worth reading").code == 0
    built = cli("build", "--out", "out", env=env)
    assert "DKIM" not in built.out  # no DKIM warning once a key is configured
    sample = tmp_path / "out" / "sample.eml"
    assert sample.read_bytes().startswith(b"DKIM-Signature:")
    ok = cli("dkim", "verify", "out/sample.eml", env=env)
    assert ok.code == 0, ok.err
    assert f"verifies (d={DOMAIN} s={SELECTOR} a=ed25519-sha256)" in ok.out
    sample.write_bytes(sample.read_bytes().replace(b"A story worth", b"A story wroth"))
    bad = cli("dkim", "verify", "out/sample.eml", env=env)
    assert bad.code == 1 and bad.err.count("\n") == 1
    assert "does not verify: body hash mismatch" in bad.err
