"""SMTPTransport against real aiosmtpd servers on loopback, with injected faults."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from digest.delivery.transports import make_transport
from digest.delivery.transports.base import Outbound, Outcome
from digest.delivery.transports.smtp import SMTPTransport
from digest.delivery.transports.smtp_conn import prepare_payload
from digest.errors import TransportError
from digest.settings import load_settings
from tests.certs import self_signed
from tests.smtpd import ScriptedHandler, SMTPServer, free_port

USER, PASSWORD = "newsroom", "s3cret-Pa55-word"


def make_transport_for(port: int, **kw: object) -> SMTPTransport:
    """Fast settings for tests: short timeout, tiny backoff, no DNS for EHLO."""
    options: dict[str, object] = {
        "security": "none",
        "timeout": 2.0,
        "connect_backoff": 0.01,
        "local_hostname": "client.test",
        "pool_size": 3,
    }
    options.update(kw)
    return SMTPTransport("127.0.0.1", port, **options)  # type: ignore[arg-type]


def outbound(n: int = 0, *, to: str | None = None, body: bytes | None = None) -> Outbound:
    data = (
        body
        or (
            f"From: digest@news.example.com\r\nTo: reader{n}@example.org\r\n"
            f"Subject: Issue {n}\r\nMIME-Version: 1.0\r\n\r\nHello reader {n}.\r\n"
        ).encode()
    )
    return Outbound("digest@news.example.com", to or f"reader{n}@example.org", data)


@pytest.fixture
def server() -> Iterator[SMTPServer]:
    with SMTPServer(ScriptedHandler()) as srv:
        yield srv


def handler_of(srv: SMTPServer) -> ScriptedHandler:
    assert isinstance(srv.handler, ScriptedHandler)
    return srv.handler


# -- payload -----------------------------------------------------------------


def test_ready_payload_is_not_copied() -> None:
    data = b"Subject: x\r\n\r\nline\r\n"
    assert prepare_payload(data) is data


@pytest.mark.parametrize(
    ("raw", "wire"),
    [
        (b".starts\r\nok\r\n", b"..starts\r\nok\r\n"),
        (b"a\r\n.b\r\n..c\r\n", b"a\r\n..b\r\n...c\r\n"),
        (b"bare\nlf\n.dot", b"bare\r\nlf\r\n..dot\r\n"),
        (b"no final newline", b"no final newline\r\n"),
    ],
)
def test_payload_repairs_what_is_not_smtp_ready(raw: bytes, wire: bytes) -> None:
    assert prepare_payload(raw) == wire


# -- delivery ----------------------------------------------------------------


async def test_messages_arrive_byte_identical(server: SMTPServer) -> None:
    bodies = [
        outbound(1).data,
        "Subject: =?utf-8?q?Weekly?=\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\nНовости недели\r\n".encode(),
        b"Subject: long\r\n\r\n" + b"x" * 990 + b"\r\n" + b"y\r\n" * 5000,
    ]
    async with make_transport_for(server.port) as transport:
        results = [await transport.send(outbound(i, body=b)) for i, b in enumerate(bodies)]
    assert [r.outcome for r in results] == [Outcome.SENT] * 3
    assert results[0].code == 250 and results[0].reply == "OK queued"
    assert [m.data for m in server.messages] == bodies
    assert server.messages[0].mail_from == "digest@news.example.com"
    assert server.messages[0].rcpt_tos == ["reader0@example.org"]


async def test_lines_starting_with_a_dot_survive(server: SMTPServer) -> None:
    data = b"Subject: dots\r\n\r\n.hidden\r\n..two\r\n.\r\nend\r\n"
    async with make_transport_for(server.port) as transport:
        result = await transport.send(outbound(body=data))
    assert result.outcome is Outcome.SENT
    assert server.messages[0].data == data


async def test_one_connection_is_reused(server: SMTPServer) -> None:
    async with make_transport_for(server.port, pool_size=1) as transport:
        for i in range(5):
            assert (await transport.send(outbound(i))).outcome is Outcome.SENT
    assert handler_of(server).connections == 1
    assert transport.connections_opened == 1
    assert len(server.messages) == 5
    assert handler_of(server).quits == 1  # close() said goodbye


async def test_concurrent_sends_share_a_pool_of_five(server: SMTPServer) -> None:
    handler_of(server).stall["DATA"] = 0.05
    async with make_transport_for(server.port, pool_size=5) as transport:
        results = await asyncio.gather(*(transport.send(outbound(i)) for i in range(20)))
    assert all(r.outcome is Outcome.SENT for r in results)
    assert sorted(server.handler.recipients()) == sorted(
        f"reader{i}@example.org" for i in range(20)
    )
    assert handler_of(server).connections == 5
    assert transport.connections_opened == 5


async def test_messages_per_connection_limit(server: SMTPServer) -> None:
    async with make_transport_for(server.port, pool_size=1, messages_per_connection=2) as t:
        for i in range(5):
            assert (await t.send(outbound(i))).outcome is Outcome.SENT
    assert handler_of(server).connections == 3
    assert len(server.messages) == 5


# -- replies -----------------------------------------------------------------


@pytest.mark.parametrize(
    "reply", ["450 4.2.0 mailbox busy", "451 4.3.0 try later", "452 4.2.2 full"]
)
async def test_temporary_rcpt_reply_defers_and_connection_stays_clean(
    server: SMTPServer, reply: str
) -> None:
    handler_of(server).replies["RCPT"] = [reply]
    async with make_transport_for(server.port, pool_size=1) as transport:
        first = await transport.send(outbound(1))
        second = await transport.send(outbound(2))
    assert first.outcome is Outcome.DEFERRED
    assert first.code == int(reply[:3]) and first.reply == reply[4:]
    assert not first.recipient_rejected
    assert second.outcome is Outcome.SENT
    assert server.handler.recipients() == ["reader2@example.org"]
    assert handler_of(server).connections == 1  # RSET, not a reconnect


async def test_temporary_mail_reply_defers(server: SMTPServer) -> None:
    handler_of(server).replies["MAIL"] = ["451 4.7.1 greylisted"]
    async with make_transport_for(server.port) as transport:
        result = await transport.send(outbound())
    assert (result.outcome, result.code) == (Outcome.DEFERRED, 451)


async def test_rcpt_rejection_is_a_permanent_recipient_failure(server: SMTPServer) -> None:
    handler_of(server).replies["RCPT"] = ["550 5.1.1 no such user"]
    async with make_transport_for(server.port, pool_size=1) as transport:
        rejected = await transport.send(outbound(1))
        after = await transport.send(outbound(2))
    assert rejected.outcome is Outcome.FAILED
    assert rejected.code == 550 and rejected.reply == "5.1.1 no such user"
    assert rejected.recipient_rejected
    assert after.outcome is Outcome.SENT


@pytest.mark.parametrize(
    ("command", "reply"),
    [("DATA", "552 5.3.4 message too big"), ("DATA", "554 5.7.1 spam"), ("MAIL", "553 bad sender")],
)
async def test_permanent_mail_or_data_reply_fails_without_blaming_the_address(
    server: SMTPServer, command: str, reply: str
) -> None:
    handler_of(server).replies[command] = [reply]
    async with make_transport_for(server.port, pool_size=1) as transport:
        failed = await transport.send(outbound(1))
        after = await transport.send(outbound(2))
    assert failed.outcome is Outcome.FAILED
    assert failed.code == int(reply[:3]) and not failed.recipient_rejected
    assert after.outcome is Outcome.SENT
    assert [m.rcpt_tos for m in server.messages] == [["reader2@example.org"]]


async def test_too_big_message_is_refused_at_mail_before_the_data() -> None:
    with SMTPServer(ScriptedHandler(), data_size_limit=1000) as srv:
        async with make_transport_for(srv.port, pool_size=1) as transport:
            big = await transport.send(outbound(1, body=b"Subject: big\r\n\r\n" + b"x" * 2000))
            small = await transport.send(outbound(2))
    assert (big.outcome, big.code, big.recipient_rejected) == (Outcome.FAILED, 552, False)
    assert "exceeds fixed maximum message size" in big.reply  # MAIL's answer, not DATA's
    assert small.outcome is Outcome.SENT


async def test_421_defers_and_the_next_message_uses_a_fresh_connection(
    server: SMTPServer,
) -> None:
    handler_of(server).replies["RCPT"] = ["421 4.3.2 shutting down"]
    async with make_transport_for(server.port, pool_size=1) as transport:
        first = await transport.send(outbound(1))
        second = await transport.send(outbound(2))
    assert (first.outcome, first.code) == (Outcome.DEFERRED, 421)
    assert second.outcome is Outcome.SENT
    assert handler_of(server).connections == 2


# -- broken connections ------------------------------------------------------


async def test_idle_connection_closed_by_server_is_replaced(server: SMTPServer) -> None:
    async with make_transport_for(server.port, pool_size=1) as transport:
        assert (await transport.send(outbound(1))).outcome is Outcome.SENT
        handler_of(server).disconnect_all()
        await asyncio.sleep(0.1)
        assert (await transport.send(outbound(2))).outcome is Outcome.SENT
    assert handler_of(server).connections == 2
    assert len(server.messages) == 2


async def test_reused_connection_dropped_at_mail_is_retried_once(server: SMTPServer) -> None:
    async with make_transport_for(server.port, pool_size=1) as transport:
        assert (await transport.send(outbound(1))).outcome is Outcome.SENT
        handler_of(server).replies["MAIL"] = [ScriptedHandler.CLOSE]
        result = await transport.send(outbound(2))
    assert result.outcome is Outcome.SENT
    assert server.handler.recipients() == ["reader1@example.org", "reader2@example.org"]


async def test_fresh_connection_dropped_at_rcpt_defers(server: SMTPServer) -> None:
    handler_of(server).replies["RCPT"] = [ScriptedHandler.CLOSE]
    async with make_transport_for(server.port, pool_size=1) as transport:
        result = await transport.send(outbound(1))
        after = await transport.send(outbound(2))
    assert result.outcome is Outcome.DEFERRED and result.code is None
    assert "connection lost at RCPT" in result.reply
    assert after.outcome is Outcome.SENT


async def test_connection_lost_after_final_dot_is_deferred_not_resent(
    server: SMTPServer,
) -> None:
    handler_of(server).replies["DATA"] = [ScriptedHandler.CLOSE]
    async with make_transport_for(server.port, pool_size=1) as transport:
        result = await transport.send(outbound(1))
    assert result.outcome is Outcome.DEFERRED and result.code is None
    assert "may have accepted" in result.reply
    assert handler_of(server).connections == 1  # no silent second attempt


async def test_stalled_server_times_out_quickly(server: SMTPServer) -> None:
    handler_of(server).stall["RCPT"] = 5.0
    async with make_transport_for(server.port, pool_size=1, timeout=0.3) as transport:
        started = time.monotonic()
        result = await transport.send(outbound(1))
        elapsed = time.monotonic() - started
        handler_of(server).stall.clear()
        after = await transport.send(outbound(2))
    assert result.outcome is Outcome.DEFERRED and result.code is None
    assert "timed out" in result.reply
    assert elapsed < 1.5
    assert after.outcome is Outcome.SENT


async def test_stall_after_data_is_deferred_as_unknown(server: SMTPServer) -> None:
    handler_of(server).stall["DATA"] = 5.0
    async with make_transport_for(server.port, timeout=0.3) as transport:
        result = await transport.send(outbound(1))
    assert result.outcome is Outcome.DEFERRED
    assert "timed out" in result.reply and "may have accepted" in result.reply


async def test_cancelled_send_does_not_poison_the_pool(server: SMTPServer) -> None:
    handler_of(server).stall["DATA"] = 5.0
    async with make_transport_for(server.port, pool_size=1) as transport:
        task = asyncio.create_task(transport.send(outbound(1)))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        handler_of(server).stall.clear()
        assert (await transport.send(outbound(2))).outcome is Outcome.SENT
    assert handler_of(server).connections == 2


async def test_pool_shrinks_when_server_limits_connections() -> None:
    handler = ScriptedHandler(max_sessions=2, stall={"DATA": 0.05})
    with SMTPServer(handler) as srv:
        async with make_transport_for(srv.port, pool_size=5) as transport:
            results = await asyncio.gather(*(transport.send(outbound(i)) for i in range(10)))
    assert all(r.outcome is Outcome.SENT for r in results)
    assert len(srv.messages) == 10
    assert handler.connections == 2


# -- envelope ----------------------------------------------------------------


async def test_header_injection_in_address_is_refused_before_sending(
    server: SMTPServer,
) -> None:
    async with make_transport_for(server.port, pool_size=1) as transport:
        bad = await transport.send(outbound(to="a@example.org>\r\nRCPT TO:<evil@example.org"))
        good = await transport.send(outbound(2))
    assert bad.outcome is Outcome.FAILED and bad.recipient_rejected
    assert good.outcome is Outcome.SENT
    assert server.handler.recipients() == ["reader2@example.org"]


async def test_smtputf8_recipient(server: SMTPServer) -> None:
    rcpt = "читатель@пример.рф"
    message = outbound(to=rcpt)
    message.smtputf8 = True
    async with make_transport_for(server.port) as transport:
        result = await transport.send(message)
    assert result.outcome is Outcome.SENT
    assert server.messages[0].rcpt_tos == [rcpt]


async def test_smtputf8_needed_but_not_offered_fails_clearly() -> None:
    with SMTPServer(ScriptedHandler(), enable_SMTPUTF8=False) as srv:
        async with make_transport_for(srv.port, pool_size=1) as transport:
            result = await transport.send(outbound(to="читатель@пример.рф"))
            after = await transport.send(outbound(2))
    assert result.outcome is Outcome.FAILED and result.code is None
    assert result.reply == "server does not support SMTPUTF8"
    assert after.outcome is Outcome.SENT
    assert srv.handler.recipients() == ["reader2@example.org"]


# -- connection-level failures --------------------------------------------------


async def test_connection_refused_raises_transport_error() -> None:
    port = free_port()
    transport = make_transport_for(port)
    started = time.monotonic()
    with pytest.raises(TransportError) as info:
        await transport.open()
    assert f"127.0.0.1:{port}" in str(info.value)
    assert "refused" in str(info.value).lower()
    assert "3 attempts" in str(info.value)
    assert time.monotonic() - started < 2
    with pytest.raises(TransportError):
        await transport.send(outbound())
    await transport.close()


async def test_silent_server_times_out_at_greeting() -> None:
    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    listener = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        transport = make_transport_for(port, timeout=0.2, connect_attempts=2)
        with pytest.raises(TransportError, match="timed out after 0.2s"):
            await transport.open()
    finally:
        listener.close()


def _authenticator(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: object
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        USER.encode(),
        PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535


@pytest.fixture
def auth_server() -> Iterator[SMTPServer]:
    with SMTPServer(
        ScriptedHandler(),
        authenticator=_authenticator,
        auth_require_tls=False,
        auth_required=True,
    ) as srv:
        yield srv


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_auth_success(auth_server: SMTPServer) -> None:
    async with make_transport_for(auth_server.port, username=USER, password=PASSWORD) as t:
        result = await t.send(outbound())
    assert result.outcome is Outcome.SENT
    assert len(auth_server.messages) == 1


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_auth_failure_is_a_transport_error_without_the_password(
    auth_server: SMTPServer,
) -> None:
    wrong = "wrong-Pa55-word"
    transport = make_transport_for(auth_server.port, username=USER, password=wrong)
    with pytest.raises(TransportError) as info:
        await transport.open()
    message = str(info.value)
    assert f"127.0.0.1:{auth_server.port}" in message and "535" in message
    assert wrong not in message and PASSWORD not in message
    assert wrong not in transport.describe() and wrong not in repr(transport.__dict__)
    assert auth_server.messages == []


# -- TLS -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (EC key: fast to make)."""
    return self_signed(tmp_path_factory.mktemp("tls"))


def _server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    return context


@pytest.fixture
def starttls_server(certificate: tuple[Path, Path]) -> Iterator[SMTPServer]:
    """Refuses MAIL until STARTTLS, so a delivered message proves TLS was used."""
    with SMTPServer(
        ScriptedHandler(), tls_context=_server_context(certificate), require_starttls=True
    ) as srv:
        yield srv


async def test_starttls_self_signed_refused_by_default(starttls_server: SMTPServer) -> None:
    transport = make_transport_for(starttls_server.port, security="starttls")
    with pytest.raises(TransportError, match="certificate not trusted"):
        await transport.open()
    assert starttls_server.messages == []


async def test_starttls_accepted_when_verification_is_off(starttls_server: SMTPServer) -> None:
    async with make_transport_for(
        starttls_server.port, security="starttls", tls_verify=False
    ) as transport:
        result = await transport.send(outbound())
    assert result.outcome is Outcome.SENT
    assert len(starttls_server.messages) == 1
    assert handler_of(starttls_server).connections == 1


async def test_starttls_verifies_against_a_trusted_ca(
    starttls_server: SMTPServer, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    async with make_transport_for(starttls_server.port, security="starttls") as transport:
        result = await transport.send(outbound())
    assert result.outcome is Outcome.SENT


async def test_starttls_required_but_not_offered(server: SMTPServer) -> None:
    transport = make_transport_for(server.port, security="starttls")
    with pytest.raises(TransportError, match="does not offer STARTTLS"):
        await transport.open()


async def test_implicit_tls(certificate: tuple[Path, Path]) -> None:
    with SMTPServer(ScriptedHandler(), ssl_context=_server_context(certificate)) as srv:
        with pytest.raises(TransportError, match="certificate not trusted"):
            await make_transport_for(srv.port, security="tls").open()
        async with make_transport_for(srv.port, security="tls", tls_verify=False) as t:
            result = await t.send(outbound())
    assert result.outcome is Outcome.SENT
    assert len(srv.messages) == 1


# -- settings and lifecycle ----------------------------------------------------


async def test_from_settings(smtp_server: SMTPServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_SMTP_USERNAME", USER)
    monkeypatch.setenv("DIGEST_SMTP_PASSWORD", PASSWORD)
    monkeypatch.setenv("DIGEST_SMTP_SECURITY", "starttls")
    monkeypatch.setenv("DIGEST_SMTP_MESSAGES_PER_CONNECTION", "7")
    monkeypatch.setenv("DIGEST_CONCURRENCY", "4")
    settings = load_settings()
    transport = make_transport(settings)
    assert isinstance(transport, SMTPTransport)
    assert transport.describe() == f"smtp://127.0.0.1:{smtp_server.port} (starttls)"
    assert PASSWORD not in transport.describe()
    assert transport.pool_size == 4 and transport.messages_per_connection == 7
    assert SMTPTransport.from_settings(settings, concurrency=9).pool_size == 9


async def test_from_settings_sends(smtp_server: SMTPServer) -> None:
    async with make_transport(load_settings(), concurrency=2) as transport:
        result = await transport.send(outbound())
    assert result.outcome is Outcome.SENT
    assert smtp_server.messages[0].data == outbound().data


async def test_close_never_raises_and_ends_the_transport(server: SMTPServer) -> None:
    transport = make_transport_for(server.port)
    await transport.open()
    handler_of(server).disconnect_all()
    await transport.close()
    await transport.close()
    with pytest.raises(TransportError, match="closed"):
        await transport.send(outbound())
