"""Security: no secret ever shown, TLS verified by default, tokens that cannot be forged.

The secrets check runs real commands (through `digest.cli.main`, in-process) against a
real SMTP server that refuses the login and, badly behaved, repeats the password in its
refusal; then it greps everything the commands printed and logged, and the files they
wrote, for the secret key, the SMTP password (also as an AUTH PLAIN blob) and a database
password.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import logging
import secrets
import ssl
from pathlib import Path

import pytest
from aiosmtpd.smtp import AuthResult

from digest.delivery.transports import make_transport
from digest.settings import load_settings
from subscribers.tokens import CONFIRM, UNSUBSCRIBE, BadToken, make_token, verify_token
from tests.clirun import run_cli
from tests.faults import FaultServer


@pytest.fixture
def cli(workdir: Path, capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    return lambda *args: run_cli(capsys, *args)


# -- secrets -------------------------------------------------------------------------

PASSWORD = "Smtp-Pa55word-Never-Shown"
DB_PASSWORD = "Db-Pa55word-Never-Shown"


def _echoing_authenticator(server, session, envelope, mechanism, auth_data) -> AuthResult:  # type: ignore[no-untyped-def]
    # A badly behaved server that repeats the password it was given in its refusal.
    password = auth_data.password.decode()
    return AuthResult(success=False, handled=False, message=f"535 5.7.8 Bad password {password}")


def test_no_secret_is_ever_printed_or_logged(cli, workdir: Path, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import TEST_SECRET

    caplog.set_level(logging.DEBUG)
    plain = base64.b64encode(f"\0newsroom\0{PASSWORD}".encode()).decode()
    runs = [cli("picks", "add", "https://news.example.com/a", "--title", "A story")]
    runs.append(cli("subscribers", "add", "reader@example.com", "--confirmed"))
    runs.append(cli("build", "--out", str(workdir / "out")))
    server = FaultServer(auth_require_tls=False, authenticator=_echoing_authenticator)
    with server:
        monkeypatch.setenv("DIGEST_SMTP_HOST", "127.0.0.1")
        monkeypatch.setenv("DIGEST_SMTP_PORT", str(server.port))
        monkeypatch.setenv("DIGEST_SMTP_SECURITY", "none")
        monkeypatch.setenv("DIGEST_SMTP_USERNAME", "newsroom")
        monkeypatch.setenv("DIGEST_SMTP_PASSWORD", PASSWORD)
        runs.append(cli("send"))
        runs.append(cli("test-send", "me@example.com"))
        runs.append(cli("send", "--dry-run"))
        runs.append(cli("send", "--status", "--recipient", "reader@example.com"))
        monkeypatch.setenv("DIGEST_SMTP_PORT", "not-a-port")
        runs.append(cli("send"))
    monkeypatch.setenv("DIGEST_DATABASE_URL", f"postgresql://postgres:{DB_PASSWORD}@127.0.0.1:1/x")
    runs.append(cli("subscribers", "count"))
    failed = [r for r in runs if r.code != 0]
    assert len(failed) >= 4  # the AUTH refusals, the bad port, the unreachable database
    assert "login rejected: 535" in failed[0].err and "***" in failed[0].err
    written = b"".join(p.read_bytes() for p in (workdir / "out").iterdir())
    # Every log record of the client side (the test server's own "mail.log" aside).
    logged = "\n".join(
        f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records if r.name != "mail.log"
    )
    everything = "".join(r.out + r.err for r in runs) + logged + written.decode()
    for secret in (TEST_SECRET, PASSWORD, plain, DB_PASSWORD):
        assert secret not in everything


# -- TLS and tokens ------------------------------------------------------------------


def test_tls_certificates_are_verified_by_default(workdir: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DIGEST_SMTP_HOST", "smtp.example.com")
    transport = make_transport(load_settings())
    context = transport._tls_context  # type: ignore[attr-defined]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    asyncio.run(transport.close())


SECRET = b"s" * 40
LIST = "digest.news.example.com"


def _raw(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def _token(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_a_token_is_bound_to_its_subscriber() -> None:
    for sid, other in ((5, 6), (1000, 1), (0, 2)):
        token = make_token(SECRET, UNSUBSCRIBE, sid, LIST)
        mac = _raw(token)[-16:]
        head = _raw(make_token(SECRET, UNSUBSCRIBE, other, LIST))[:-16]
        with pytest.raises(BadToken):  # someone else's id with this MAC
            verify_token(SECRET, UNSUBSCRIBE, _token(head + mac), LIST)


def test_macs_are_compared_in_constant_time(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import subscribers.tokens as tokens

    seen: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(tokens.hmac, "compare_digest", spy)
    token = make_token(SECRET, CONFIRM, 7, LIST)
    assert verify_token(SECRET, CONFIRM, token, LIST) == 7
    forged = _raw(token)[:-1] + bytes([_raw(token)[-1] ^ 1])
    with pytest.raises(BadToken):
        verify_token(SECRET, CONFIRM, _token(forged), LIST)
    assert len(seen) == 2 and all(len(a) == len(b) == 16 for a, b in seen)


def test_tokens_cannot_be_forged_without_the_key() -> None:
    head = _raw(make_token(SECRET, UNSUBSCRIBE, 42, LIST))[:-16]
    for _ in range(2000):
        with pytest.raises(BadToken):
            verify_token(SECRET, UNSUBSCRIBE, _token(head + secrets.token_bytes(16)), LIST)
    for sid in range(50):
        with pytest.raises(BadToken):
            verify_token(SECRET, UNSUBSCRIBE, make_token(b"k" * 40, UNSUBSCRIBE, sid, LIST), LIST)
