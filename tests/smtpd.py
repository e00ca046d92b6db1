"""A real SMTP server on loopback for tests: aiosmtpd in its own thread.

It stores everything it accepts, so tests parse what really arrived.
"""

from __future__ import annotations

import email
import email.policy
import socket
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage

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

    def __init__(self, handler: CollectingHandler | None = None, **server_kwargs: object) -> None:
        self.handler = handler or CollectingHandler()
        self.port = free_port()
        kwargs = {"decode_data": False, "enable_SMTPUTF8": True, **server_kwargs}
        self.controller = Controller(
            self.handler, hostname="127.0.0.1", port=self.port, server_kwargs=kwargs
        )

    def __enter__(self) -> "SMTPServer":
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    @property
    def messages(self) -> list[Received]:
        return self.handler.messages
