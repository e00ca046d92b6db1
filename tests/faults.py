"""A fault-injecting SMTP server for tests: real aiosmtpd on loopback, scripted misbehaviour.

A test describes the faults as a *plan*: a function that is shown every moment
worth misbehaving at (EHLO, MAIL, RCPT, the DATA command, the end of the data)
and returns what to do instead of the normal answer, or None for the normal
answer. What the plan can do:

- `Reply("451 4.7.1 slow down")`: answer this instead; a reply starting with 421
  also closes the connection right after it is written, as real servers do.
- `Reset()`: drop the connection with a TCP RST and no reply. At DATA it happens
  after the 354, while the client is still streaming the message.
- `Stall(seconds, store_first=...)`: say nothing for that long, then carry on. At
  the end of the data, `store_first` keeps the message *before* stalling, so a
  client that gives up waiting has in fact delivered it (the one way SMTP itself
  duplicates mail).

The handler keeps the ground truth to compare the ledger against: `accepted`
counts, per recipient, messages the server took responsibility for, and `events`
is a timestamped log of every moment and what the server did about it.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.certs import self_signed
from tests.smtpd import free_port

STAGES = ("EHLO", "MAIL", "RCPT", "DATA", "END")


@dataclass(frozen=True)
class Reply:
    text: str


@dataclass(frozen=True)
class Reset:
    pass


@dataclass(frozen=True)
class Stall:
    seconds: float
    store_first: bool = False


Action = Reply | Reset | Stall


@dataclass(frozen=True)
class Moment:
    """Where the server is when the plan is asked."""

    stage: str  # one of STAGES
    recipient: str | None  # known from RCPT on
    attempt: int  # how often this recipient (or, before RCPT, anyone) reached this stage
    transaction: int  # MAIL commands seen on this connection, this one included
    connection: int  # 1 for the first connection the server greeted, 2 for the next...
    elapsed: float  # seconds since the server started


Plan = Callable[[Moment], Action | None]


@dataclass(frozen=True)
class Event:
    when: float  # time.monotonic()
    stage: str
    recipient: str | None
    connection: int
    outcome: str  # "ok", "reset", "stall", or the reply given


def no_faults(_moment: Moment) -> None:
    return None


@dataclass
class FaultyHandler:
    """aiosmtpd handler that asks `plan` at every stage and records the ground truth."""

    plan: Plan = no_faults
    #: Advertise PIPELINING (RFC 2920; aiosmtpd handles pipelined commands, but does not
    #: say so), so clients take their pipelined path.
    pipelining: bool = False
    accepted: Counter[str] = field(default_factory=Counter)
    #: The MAIL FROM parameters (SMTPUTF8, SIZE...) and raw data of the last accepted
    #: message of each recipient.
    mail_options: dict[str, list[str]] = field(default_factory=dict)
    data: dict[str, bytes] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    tls_sessions: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    _started: float = field(default_factory=time.monotonic)
    _connections: dict[int, int] = field(default_factory=dict)
    _transactions: Counter[int] = field(default_factory=Counter)
    _attempts: Counter[tuple[str, str | None]] = field(default_factory=Counter)

    # -- bookkeeping ----------------------------------------------------------

    def _moment(self, server: SMTP, stage: str, recipient: str | None) -> Moment:
        with self.lock:
            # Numbered on the server object itself: id() is reused once a closed
            # connection's object is collected, which would merge two connections.
            conn = getattr(server, "_fault_connection", None)
            if conn is None:
                conn = len(self._connections) + 1
                self._connections[conn] = conn
                server._fault_connection = conn  # type: ignore[attr-defined]
            if stage == "MAIL":
                self._transactions[conn] += 1
            self._attempts[(stage, recipient)] += 1
            return Moment(
                stage,
                recipient,
                self._attempts[(stage, recipient)],
                self._transactions[conn],
                conn,
                time.monotonic() - self._started,
            )

    def _log(self, moment: Moment, outcome: str) -> None:
        with self.lock:
            self.events.append(
                Event(time.monotonic(), moment.stage, moment.recipient, moment.connection, outcome)
            )

    def _store(self, envelope: Envelope, server: SMTP) -> None:
        with self.lock:
            self.accepted.update(envelope.rcpt_tos)
            for rcpt in envelope.rcpt_tos:
                self.mail_options[rcpt] = list(envelope.mail_options)
                self.data[rcpt] = bytes(envelope.original_content or b"")
            if server.session is not None and server.session.ssl is not None:
                self.tls_sessions += 1

    async def decide(self, server: SMTP, stage: str, recipient: str | None) -> Action | None:
        """Ask the plan; carry out resets and stalls here. Returns a Reply or None."""
        moment = self._moment(server, stage, recipient)
        action = self.plan(moment)
        if action is None:
            self._log(moment, "ok")
            return None
        if isinstance(action, Reply):
            self._log(moment, action.text)
            if action.text.startswith("421"):
                asyncio.get_running_loop().call_soon(_close, server)
            return action
        if isinstance(action, Reset):
            self._log(moment, "reset")
            reset(server)
            await asyncio.sleep(60)  # cancelled by aiosmtpd once the connection is gone
            return None
        self._log(moment, "stall")
        return action

    # -- aiosmtpd hooks -----------------------------------------------------

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        action = await self.decide(server, "EHLO", None)
        if isinstance(action, Stall):
            await asyncio.sleep(action.seconds)
        elif isinstance(action, Reply):
            return [action.text]
        if self.pipelining:
            return [responses[0], "250-PIPELINING", *responses[1:]]
        return responses

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        action = await self.decide(server, "MAIL", None)
        if isinstance(action, Reply):
            return action.text
        if isinstance(action, Stall):
            await asyncio.sleep(action.seconds)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        action = await self.decide(server, "RCPT", address)
        if isinstance(action, Reply):
            return action.text
        if isinstance(action, Stall):
            await asyncio.sleep(action.seconds)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        recipient = envelope.rcpt_tos[0] if envelope.rcpt_tos else None
        action = await self.decide(server, "END", recipient)
        if isinstance(action, Reply):
            return action.text
        if isinstance(action, Stall):
            if action.store_first:
                self._store(envelope, server)
            await asyncio.sleep(action.seconds)
            if action.store_first:
                return "250 2.0.0 OK (late)"
        self._store(envelope, server)
        return "250 2.0.0 OK queued"

    # -- questions tests ask ----------------------------------------------------

    @property
    def connections(self) -> int:
        with self.lock:
            return len(self._connections)

    def replies(self, prefix: str) -> list[Event]:
        """Events where the server answered with a reply starting with `prefix`."""
        with self.lock:
            return [e for e in self.events if e.outcome.startswith(prefix)]

    def attempts_at(self, stage: str) -> dict[str, list[float]]:
        """Per recipient, when each of its attempts reached `stage` (monotonic seconds)."""
        out: dict[str, list[float]] = defaultdict(list)
        with self.lock:
            for e in self.events:
                if e.stage == stage and e.recipient is not None:
                    out[e.recipient].append(e.when)
        return dict(out)


class FaultySMTP(SMTP):
    """aiosmtpd's SMTP with one more hook: the DATA command itself (before the 354)."""

    async def smtp_DATA(self, arg: str) -> None:
        handler: FaultyHandler = self.event_handler
        if self.envelope is None or not self.envelope.rcpt_tos:
            return await super().smtp_DATA(arg)
        moment = handler._moment(self, "DATA", self.envelope.rcpt_tos[0])
        action = handler.plan(moment)
        if isinstance(action, Reset):
            handler._log(moment, "reset")
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            await self._reader.readuntil(b"\r\n")  # the client has started streaming
            reset(self)
            return None
        if isinstance(action, Reply):
            handler._log(moment, action.text)
            await self.push(action.text)
            if action.text.startswith("421"):
                _close(self)
            return None
        if isinstance(action, Stall):
            handler._log(moment, "stall")
            await asyncio.sleep(action.seconds)
        else:
            handler._log(moment, "ok")
        return await super().smtp_DATA(arg)


class _Controller(Controller):
    def factory(self) -> SMTP:
        return FaultySMTP(self.handler, **self.SMTP_kwargs)


class FaultServer:
    """`with FaultServer(plan) as srv:` a real SMTP server on 127.0.0.1:srv.port.

    `tls_context` offers STARTTLS with that certificate; `pipelining` advertises
    PIPELINING; other keyword arguments go to aiosmtpd's SMTP (e.g. data_size_limit).
    """

    def __init__(
        self,
        plan: Plan = no_faults,
        *,
        tls_context: ssl.SSLContext | None = None,
        pipelining: bool = False,
        **smtp_kwargs: Any,
    ) -> None:
        self.handler = FaultyHandler(plan, pipelining=pipelining)
        self.port = free_port()
        kwargs: dict[str, Any] = {
            "decode_data": False,
            "enable_SMTPUTF8": True,
            **smtp_kwargs,
        }
        if tls_context is not None:
            kwargs.update(tls_context=tls_context, require_starttls=False)
        self.controller = _Controller(
            self.handler,
            hostname="127.0.0.1",
            port=self.port,
            server_hostname="faulty.test",
            **kwargs,
        )

    def __enter__(self) -> Self:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    @property
    def accepted(self) -> Counter[str]:
        with self.handler.lock:
            return Counter(self.handler.accepted)


def _close(server: SMTP) -> None:
    if server.transport is not None:
        server.transport.close()


def reset(server: SMTP) -> None:
    """Drop the connection with a TCP RST (SO_LINGER 0), like a crashing server."""
    transport = server.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def self_signed_context(directory: Path, host: str = "127.0.0.1") -> ssl.SSLContext:
    """A server TLS context with a fresh self-signed certificate no client trusts."""
    cert_file, key_file = self_signed(directory, host=host, common_name="faulty.test")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context
