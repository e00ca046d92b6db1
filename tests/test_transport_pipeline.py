"""The pipelined fast path (RFC 2920) against real servers that offer PIPELINING.

aiosmtpd does not advertise PIPELINING (though it handles pipelined input), so
`PipeliningHandler` adds it to EHLO; the same fault injection as in
test_transport_smtp then runs through the pipelined path. `RawServer` is a small
hand-written server for what aiosmtpd cannot do: hold replies back until all
three commands are in, answer in odd packets, misbehave after a rejected RCPT.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from digest.delivery.message import MessageTemplate, Recipient
from digest.delivery.transports import make_transport
from digest.delivery.transports.base import Outbound, Outcome, SMTPReady, is_smtp_ready
from digest.delivery.transports.smtp import SMTPTransport
from digest.delivery.transports.smtp_conn import prepare_payload
from digest.editorial.render import render_issue
from digest.settings import Settings, load_settings
from subscribers.tokens import make_token
from tests.samples import sample_content
from tests.smtpd import ScriptedHandler, SMTPServer
from tests.test_transport_smtp import (
    certificate,  # noqa: F401 - a fixture
    make_transport_for,
    outbound,
)


class PipeliningHandler(ScriptedHandler):
    """aiosmtpd's scripted handler, advertising PIPELINING in its EHLO reply."""

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        responses = await super().handle_EHLO(server, session, envelope, hostname, responses)
        if len(responses) > 1:
            responses.insert(1, "250-PIPELINING")
        return responses


@pytest.fixture
def server() -> Iterator[SMTPServer]:
    with SMTPServer(PipeliningHandler()) as srv:
        yield srv


def handler_of(srv: SMTPServer) -> PipeliningHandler:
    assert isinstance(srv.handler, PipeliningHandler)
    return srv.handler


# -- the happy path ----------------------------------------------------------------


async def test_offered_pipelining_is_used_and_messages_arrive_byte_identical(
    server: SMTPServer,
) -> None:
    bodies = [
        outbound(1).data,
        "Subject: 8bit\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\nНовости недели\r\n".encode(),
        b"Subject: long\r\n\r\n" + b"x" * 990 + b"\r\n" + b"y\r\n" * 5000,
    ]
    async with make_transport_for(server.port, pool_size=1) as transport:
        results = [await transport.send(outbound(i, body=b)) for i, b in enumerate(bodies)]
    assert [r.outcome for r in results] == [Outcome.SENT] * 3
    assert (results[0].code, results[0].reply) == (250, "OK queued")
    assert [m.data for m in server.messages] == bodies
    assert transport.pipelined_connections == transport.connections_opened == 1
    assert handler_of(server).connections == 1


async def test_dots_and_bare_line_ends_in_plain_bytes_are_repaired(server: SMTPServer) -> None:
    raw = b"Subject: dots\r\n\r\n.hidden\r\n..two\r\n.\r\nbare\nlf\n"
    async with make_transport_for(server.port) as transport:
        result = await transport.send(outbound(body=raw))
    assert result.outcome is Outcome.SENT
    assert (
        server.messages[0].data == b"Subject: dots\r\n\r\n.hidden\r\n..two\r\n.\r\nbare\r\nlf\r\n"
    )


@pytest.fixture(scope="module")
def template() -> MessageTemplate:
    settings = Settings(
        secret_key="k8Vq2pZ4xR7mN1wT5yB3cF9hJ6dL0sGa", base_url="https://news.example.com"
    )
    return MessageTemplate(
        render_issue(sample_content(20), settings),
        settings=settings,
        issue_key="2026-W48",
        subject="The Weekly Digest",
        date=datetime(2026, 11, 27, 6, 0, tzinfo=UTC),
    )


async def test_a_built_issue_goes_out_as_smtp_ready_bytes_unchanged(
    server: SMTPServer, settings: Settings, template: MessageTemplate
) -> None:
    names = ["Anna", ".dot Leading", "Zoë Ångström", ""]
    sent = []
    async with make_transport_for(server.port, pool_size=2) as transport:
        for i, name in enumerate(names):
            token = make_token(settings.secret(), "unsubscribe", i, settings.effective_list_id)
            data = template.build(Recipient(i, f"reader{i}@example.org", name, token))
            assert type(data) is SMTPReady
            sent.append(data)
            result = await transport.send(
                Outbound("digest@news.example.com", f"reader{i}@example.org", data)
            )
            assert result.outcome is Outcome.SENT
    got = {m.rcpt_tos[0]: m.data for m in server.messages}
    assert [got[f"reader{i}@example.org"] for i in range(len(names))] == sent
    parsed = email.message_from_bytes(sent[1], policy=email.policy.default)
    assert "Hello .dot," in parsed.get_body(("plain",)).get_content()  # type: ignore[union-attr]


@hsettings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.text(max_size=80),
    email=st.sampled_from(["reader@example.org", "иван@пример.рф", "a.b+c@xn--bcher-kva.example"]),
)
def test_what_build_vouches_for_holds_for_any_recipient(
    template: MessageTemplate, name: str, email: str
) -> None:
    """SMTPReady skips the transport's scan, so it must never be wrong."""
    data = template.build(Recipient(7, email, name, "Ab-_" * 6))
    assert type(data) is SMTPReady
    assert is_smtp_ready(data)
    assert prepare_payload(data) is data


async def test_concurrent_sends_share_a_pool(server: SMTPServer) -> None:
    handler_of(server).stall["DATA"] = 0.02
    async with make_transport_for(server.port, pool_size=3) as transport:
        results = await asyncio.gather(*(transport.send(outbound(i)) for i in range(30)))
    assert all(r.outcome is Outcome.SENT for r in results)
    assert sorted(server.handler.recipients()) == sorted(
        f"reader{i}@example.org" for i in range(30)
    )
    assert handler_of(server).connections == 3 == transport.pipelined_connections


async def test_pipelining_can_be_turned_off(
    server: SMTPServer, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("DIGEST_SMTP_PORT", str(server.port))
    monkeypatch.setenv("DIGEST_SMTP_SECURITY", "none")
    monkeypatch.setenv("DIGEST_SMTP_PIPELINING", "false")
    transport = make_transport(load_settings(), concurrency=1)
    assert isinstance(transport, SMTPTransport)
    async with transport:
        result = await transport.send(outbound(1))
    assert result.outcome is Outcome.SENT
    assert transport.connections_opened == 1 and transport.pipelined_connections == 0


async def test_pipelining_after_starttls(certificate: tuple[Path, Path]) -> None:  # noqa: F811
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    with SMTPServer(PipeliningHandler(), tls_context=context, require_starttls=True) as srv:
        async with make_transport_for(srv.port, security="starttls", tls_verify=False) as t:
            results = [await t.send(outbound(i)) for i in range(3)]
    assert [r.outcome for r in results] == [Outcome.SENT] * 3
    assert t.pipelined_connections == 1
    assert [m.data for m in srv.messages] == [outbound(i).data for i in range(3)]


# -- every reply is checked ---------------------------------------------------------


@pytest.mark.parametrize("reply", ["450 4.2.0 mailbox busy", "452 4.2.2 full"])
async def test_temporary_rcpt_reply_defers_and_the_connection_stays_clean(
    server: SMTPServer, reply: str
) -> None:
    handler_of(server).replies["RCPT"] = [reply]
    async with make_transport_for(server.port, pool_size=1) as transport:
        first = await transport.send(outbound(1))
        second = await transport.send(outbound(2))
    assert (first.outcome, first.code, first.reply) == (Outcome.DEFERRED, int(reply[:3]), reply[4:])
    assert not first.recipient_rejected
    assert second.outcome is Outcome.SENT
    assert [m.rcpt_tos for m in server.messages] == [["reader2@example.org"]]
    assert handler_of(server).connections == 1  # RSET, not a reconnect


async def test_rejected_recipient_fails_and_no_data_is_accepted(server: SMTPServer) -> None:
    handler_of(server).replies["RCPT"] = ["550 5.1.1 no such user"]
    async with make_transport_for(server.port, pool_size=1) as transport:
        rejected = await transport.send(outbound(1))
        after = await transport.send(outbound(2))
    assert (rejected.outcome, rejected.code, rejected.reply) == (
        Outcome.FAILED,
        550,
        "5.1.1 no such user",
    )
    assert rejected.recipient_rejected
    assert after.outcome is Outcome.SENT
    assert [m.rcpt_tos for m in server.messages] == [["reader2@example.org"]]


@pytest.mark.parametrize(
    ("command", "reply", "outcome"),
    [
        ("MAIL", "451 4.7.1 greylisted", Outcome.DEFERRED),
        ("MAIL", "553 5.1.8 bad sender", Outcome.FAILED),
        ("DATA", "554 5.7.1 spam", Outcome.FAILED),  # aiosmtpd: the reply to the final "."
        ("DATA", "452 4.3.1 out of storage", Outcome.DEFERRED),
    ],
)
async def test_mail_and_final_replies_do_not_blame_the_address(
    server: SMTPServer, command: str, reply: str, outcome: Outcome
) -> None:
    handler_of(server).replies[command] = [reply]
    async with make_transport_for(server.port, pool_size=1) as transport:
        first = await transport.send(outbound(1))
        after = await transport.send(outbound(2))
    assert (first.outcome, first.code, first.recipient_rejected) == (outcome, int(reply[:3]), False)
    assert after.outcome is Outcome.SENT
    assert [m.rcpt_tos for m in server.messages] == [["reader2@example.org"]]
    assert handler_of(server).connections == 1


async def test_too_big_message_is_refused_at_mail() -> None:
    with SMTPServer(PipeliningHandler(), data_size_limit=1000) as srv:
        async with make_transport_for(srv.port, pool_size=1) as transport:
            big = await transport.send(outbound(1, body=b"Subject: big\r\n\r\n" + b"x" * 2000))
            small = await transport.send(outbound(2))
    assert (big.outcome, big.code, big.recipient_rejected) == (Outcome.FAILED, 552, False)
    assert "exceeds fixed maximum message size" in big.reply
    assert small.outcome is Outcome.SENT
    assert len(srv.messages) == 1


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


# -- broken connections ----------------------------------------------------------------


async def test_reused_connection_dropped_at_mail_is_retried_once(server: SMTPServer) -> None:
    async with make_transport_for(server.port, pool_size=1) as transport:
        assert (await transport.send(outbound(1))).outcome is Outcome.SENT
        handler_of(server).replies["MAIL"] = [ScriptedHandler.CLOSE]
        result = await transport.send(outbound(2))
    assert result.outcome is Outcome.SENT
    assert server.handler.recipients() == ["reader1@example.org", "reader2@example.org"]
    assert transport.pipelined_connections == 2


async def test_fresh_connection_dropped_at_rcpt_defers(server: SMTPServer) -> None:
    handler_of(server).replies["RCPT"] = [ScriptedHandler.CLOSE]
    async with make_transport_for(server.port, pool_size=1) as transport:
        result = await transport.send(outbound(1))
        after = await transport.send(outbound(2))
    assert (result.outcome, result.code) == (Outcome.DEFERRED, None)
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


@pytest.mark.parametrize(("stage", "says"), [("RCPT", "at RCPT"), ("DATA", "may have accepted")])
async def test_stalled_server_times_out(server: SMTPServer, stage: str, says: str) -> None:
    handler_of(server).stall[stage] = 5.0
    async with make_transport_for(server.port, pool_size=1, timeout=0.3) as transport:
        started = time.monotonic()
        result = await transport.send(outbound(1))
        elapsed = time.monotonic() - started
        handler_of(server).stall.clear()
        after = await transport.send(outbound(2))
    assert (result.outcome, result.code) == (Outcome.DEFERRED, None)
    assert "timed out" in result.reply and says in result.reply
    assert elapsed < 2.5
    assert after.outcome is Outcome.SENT


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


# -- a hand-written server ----------------------------------------------------------------

Script = Callable[["RawServer", bytes, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    """Greeting, EHLO (with PIPELINING), RSET and QUIT; `script` runs each transaction.

    `lines` keeps every command line outside transactions, `bodies` what each
    script read after its 354.
    """

    def __init__(self, script: Script) -> None:
        self.script = script
        self.lines: list[bytes] = []
        self.bodies: list[bytes] = []
        self.transactions = 0
        self.port = 0

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 raw ESMTP\r\n")
        try:
            while line := await reader.readline():
                verb = line[:4].upper()
                if verb == b"MAIL":
                    self.transactions += 1
                    await self.script(self, line, reader, writer)
                    continue
                self.lines.append(line)
                if verb == b"EHLO":
                    writer.write(b"250-raw\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
                elif verb == b"QUIT":
                    writer.write(b"221 bye\r\n")
                    break
                elif verb == b"RSET":
                    writer.write(b"250 2.0.0 reset\r\n")
                else:
                    writer.write(b"502 5.5.2 not here\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def raw() -> AsyncIterator[Callable[[Script], RawServer]]:
    servers: list[RawServer] = []

    def make(script: Script) -> RawServer:
        servers.append(RawServer(script))
        return servers[-1]

    yield make
    for srv in servers:
        await srv.__aexit__()


BODY = b"Subject: raw\r\n\r\nNo full stop in here\r\n"


async def test_envelope_goes_out_in_one_group_before_any_reply(raw) -> None:  # type: ignore[no-untyped-def]
    groups: list[tuple[bytes, bytes, bytes]] = []

    async def hold_back(
        srv: RawServer, mail: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter
    ) -> None:
        # Not one reply until RCPT and DATA are in: a client that waits for the
        # MAIL reply first would stall here until its timeout.
        groups.append((mail, await r.readline(), await r.readline()))
        w.write(b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n")
        srv.bodies.append((await r.readuntil(b"\r\n.\r\n"))[:-3])
        w.write(b"250 2.0.0 Ok: queued as 4F2A\r\n")

    async with raw(hold_back) as srv:
        async with make_transport_for(srv.port, pool_size=1, timeout=2.0) as transport:
            results = [await transport.send(outbound(i, body=BODY)) for i in range(2)]
    assert [(r.outcome, r.reply) for r in results] == [
        (Outcome.SENT, "2.0.0 Ok: queued as 4F2A")
    ] * 2
    assert groups[0] == (
        b"MAIL FROM:<digest@news.example.com>\r\n",
        b"RCPT TO:<reader0@example.org>\r\n",
        b"DATA\r\n",
    )
    assert srv.bodies == [BODY, BODY]


async def test_data_accepted_despite_rejected_recipient_gets_a_lone_dot(raw) -> None:  # type: ignore[no-untyped-def]
    async def sloppy(
        srv: RawServer, mail: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter
    ) -> None:
        await r.readline(), await r.readline()
        w.write(b"250 Ok\r\n550 5.1.1 no such user\r\n354 go ahead\r\n")  # 354: wrong, but seen
        srv.bodies.append(await r.readexactly(3))
        w.write(b"554 5.5.1 no valid recipients\r\n")

    async with raw(sloppy) as srv:
        async with make_transport_for(srv.port, pool_size=1) as transport:
            result = await transport.send(outbound(1, body=BODY))
    assert (result.outcome, result.code, result.recipient_rejected) == (Outcome.FAILED, 550, True)
    assert srv.bodies == [b".\r\n"]  # an empty message, never the body
    assert [line.split()[0] for line in srv.lines] == [b"EHLO", b"RSET", b"QUIT"]


async def test_replies_split_across_packets_and_over_several_lines(raw) -> None:  # type: ignore[no-untyped-def]
    async def dribble(
        srv: RawServer, mail: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter
    ) -> None:
        await r.readline(), await r.readline()
        for chunk in (b"25", b"0-Ok\r", b"\n250 still Ok\r\n250 Ok\r\n3", b"54 go\r\n"):
            w.write(chunk)
            await w.drain()
            await asyncio.sleep(0.01)
        srv.bodies.append((await r.readuntil(b"\r\n.\r\n"))[:-3])
        w.write(b"250-2.0.0 queued\r\n250 as 4F2A\r\n")

    async with raw(dribble) as srv:
        async with make_transport_for(srv.port, pool_size=1) as transport:
            result = await transport.send(outbound(1, body=BODY))
    assert (result.outcome, result.code, result.reply) == (
        Outcome.SENT,
        250,
        "2.0.0 queued\nas 4F2A",
    )
    assert srv.bodies == [BODY]


async def test_malformed_reply_drops_the_connection_not_the_sender(raw) -> None:  # type: ignore[no-untyped-def]
    async def garbled_once(
        srv: RawServer, mail: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter
    ) -> None:
        await r.readline(), await r.readline()
        if srv.transactions == 1:
            w.write(b"hello there\r\n")
            return
        w.write(b"250 Ok\r\n250 Ok\r\n354 go\r\n")
        srv.bodies.append((await r.readuntil(b"\r\n.\r\n"))[:-3])
        w.write(b"250 Ok\r\n")

    async with raw(garbled_once) as srv:
        async with make_transport_for(srv.port, pool_size=1) as transport:
            first = await transport.send(outbound(1, body=BODY))
            second = await transport.send(outbound(2, body=BODY))
    assert (first.outcome, first.code) == (Outcome.DEFERRED, None)
    assert "malformed reply" in first.reply and "at MAIL" in first.reply
    assert second.outcome is Outcome.SENT
    assert transport.connections_opened == 2
