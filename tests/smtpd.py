"""A real SMTP server on loopback for tests: aiosmtpd in its own thread.

It stores everything it accepts, so tests parse what really arrived.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import ssl
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    def parse(self) -> EmailMessage:
        return email.message_from_bytes(self.data, policy=email.policy.default)  # type: ignore[return-value]


@dataclass
class CollectingHandler:
    """Accepts every message and keeps it. Subclass and override to inject faults."""

    messages: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or envelope.content
        if isinstance(data, str):
            data = data.encode()
        with self.lock:
            self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), data))
        return "250 OK queued"

    def recipients(self) -> list[str]:
        with self.lock:
            return [r for m in self.messages for r in m.rcpt_tos]


class SMTPServer:
    """Context manager: `with SMTPServer() as srv: ... srv.port, srv.handler.messages`."""

    def __init__(
        self,
        handler: CollectingHandler | None = None,
        *,
        ssl_context: ssl.SSLContext | None = None,
        **server_kwargs: object,
    ) -> None:
        """`ssl_context` makes it an implicit-TLS server (port 465 style)."""
        self.handler = handler or CollectingHandler()
        self.port = free_port()
        kwargs = {"decode_data": False, "enable_SMTPUTF8": True, **server_kwargs}
        self.controller = Controller(
            self.handler,
            hostname="127.0.0.1",
            port=self.port,
            ssl_context=ssl_context,
            **kwargs,
        )

    def __enter__(self) -> Self:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    @property
    def messages(self) -> list[Received]:
        return self.handler.messages


@dataclass
class ScriptedHandler(CollectingHandler):
    """Injects faults and counts connections, for transport tests.

    `replies["MAIL" | "RCPT" | "DATA"]` is a queue: each command of that kind takes
    the next reply from it (a reply starting with "421" also closes the connection,
    the reply CLOSE closes it without answering); an empty queue means normal
    handling. `stall[command]` sleeps that long before answering, every time.
    `servers` holds one aiosmtpd SMTP object per accepted connection (counted at
    EHLO; a session is renewed by STARTTLS, the SMTP object is not); beyond
    `max_sessions` connections, EHLO is answered 421 and the connection closed.
    """

    CLOSE = "<close without reply>"

    replies: dict[str, list[str]] = field(default_factory=dict)
    stall: dict[str, float] = field(default_factory=dict)
    max_sessions: int | None = None
    servers: list[SMTP] = field(default_factory=list)
    ehlo_count: int = 0
    quits: int = 0

    async def _scripted(self, server: SMTP, command: str) -> str | None:
        delay = self.stall.get(command)
        if delay:
            await asyncio.sleep(delay)
        with self.lock:
            queue = self.replies.get(command)
            reply = queue.pop(0) if queue else None
        if reply == self.CLOSE:
            server.transport.close()
            await asyncio.sleep(30)  # cancelled by aiosmtpd when the connection goes
        if reply is not None and reply.startswith("421"):
            # Close right after aiosmtpd has written the reply.
            asyncio.get_running_loop().call_soon(server.transport.close)
        return reply

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        with self.lock:
            self.ehlo_count += 1
            known = any(s is server for s in self.servers)
            full = self.max_sessions is not None and len(self.servers) >= self.max_sessions
            if not known and full:
                asyncio.get_running_loop().call_soon(server.transport.close)
                return ["421 4.7.0 too many connections"]
            if not known:
                self.servers.append(server)
        return responses

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        reply = await self._scripted(server, "MAIL")
        if reply is not None:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        reply = await self._scripted(server, "RCPT")
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        reply = await self._scripted(server, "DATA")
        if reply is not None:
            return reply
        return await super().handle_DATA(server, session, envelope)

    async def handle_QUIT(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.lock:
            self.quits += 1
        return "221 Bye"

    @property
    def connections(self) -> int:
        """Connections accepted so far (each counted once, even after STARTTLS)."""
        with self.lock:
            return len(self.servers)

    def disconnect_all(self) -> None:
        """Close every client connection from the server side, like an idle timeout."""
        with self.lock:
            servers = list(self.servers)
        for server in servers:
            if server.transport is not None:
                server.loop.call_soon_threadsafe(server.transport.close)
