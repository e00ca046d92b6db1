"""The transport interface: hand over one ready message, get back what happened.

Like Django's mail backends, transports are small and interchangeable: SMTP (a pool
of reused connections) and an outbox folder. `send` may be awaited concurrently by
many tasks; per-message problems come back as a `Result`, never as an exception.
Only a transport that cannot work at all (no connection, bad login, refused TLS)
raises `TransportError`, so an outage never burns through recipients' attempts.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass
from types import TracebackType

from digest.errors import TransportError


class Outcome(enum.Enum):
    SENT = "sent"  # the server answered 250 to the data
    DEFERRED = "deferred"  # 4xx or a broken connection: try again later
    FAILED = "failed"  # 5xx: permanent, stored with the reply


class SMTPReady(bytes):
    """Message bytes whose maker vouches they are SMTP-ready, so nobody scans them.

    SMTP-ready: CRLF line endings only, no line starting with ".", a final CRLF.
    Checking that costs ~0.2 ms per 60 KB message (as much as the rest of a
    send); `MessageTemplate.build` returns this type because it checks its static
    parts once per issue and builds the personal ones safe. Plain bytes are still
    accepted everywhere; the SMTP transport checks (and repairs) those.
    """

    __slots__ = ()


def is_smtp_ready(data: bytes) -> bool:
    """CRLF line endings only, no line starting with ".", a final CRLF."""
    crlf = data.count(b"\r\n")
    return (
        data.endswith(b"\r\n")
        and data.count(b"\n") == crlf
        and data.count(b"\r") == crlf
        and not data.startswith(b".")
        and b"\n." not in data
    )


@dataclass(slots=True)
class Outbound:
    """One message for one recipient.

    `data` should be SMTP-ready: CRLF line endings and no line that starts with
    a dot, so transports send it as it is (an `SMTPReady` is not even checked).
    """

    sender: str
    recipient: str
    data: bytes
    smtputf8: bool = False


@dataclass(slots=True)
class Result:
    outcome: Outcome
    code: int | None = None
    reply: str = ""
    #: A 5xx answer to RCPT TO: the address itself is bad (counts toward bounced).
    recipient_rejected: bool = False

    @classmethod
    def sent(cls, code: int = 250, reply: str = "OK") -> Result:
        return cls(Outcome.SENT, code, reply)


class Transport(ABC):
    """Async context manager; `send` is safe to await from many tasks at once."""

    name = "transport"

    async def open(self) -> None:
        """Prepare (connect, create folders). Raise TransportError if impossible."""

    @abstractmethod
    async def send(self, message: Outbound) -> Result: ...

    async def close(self) -> None:
        """Release connections; never raises."""

    def describe(self) -> str:
        return self.name

    async def __aenter__(self) -> Transport:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


__all__ = [
    "Outbound",
    "Outcome",
    "Result",
    "SMTPReady",
    "Transport",
    "TransportError",
    "is_smtp_ready",
]
