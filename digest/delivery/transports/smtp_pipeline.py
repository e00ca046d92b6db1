"""ESMTP PIPELINING (RFC 2920) on a connection aiosmtplib has already set up.

aiosmtplib reads exactly one reply per command it writes, so MAIL, RCPT and DATA
cost three round trips per message. Once the handshake is done (greeting, EHLO,
STARTTLS, AUTH: still aiosmtplib's job) and the server advertises PIPELINING,
`ReplyStream` takes over the connection's transport (`transport.set_protocol`)
and `pipelined_transaction` sends one message as two writes:

    MAIL FROM, RCPT TO, DATA  -> three replies
    the body and "." (only after a 354) -> one reply

The body goes out from `data_received` the moment the third reply accepts it, so
a message costs the sending task one wake-up, not two. Every reply is checked,
in order (RFC 2920 section 3.1): the first negative one decides the outcome. A server that answers DATA with 354 although MAIL or RCPT
failed gets a lone "." (an empty message for no recipient) and never the body.
The outcome mapping is the same as the one-command-at-a-time path in smtp_conn.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

import aiosmtplib
from aiosmtplib.response import SMTPResponse

#: A reply line longer than this, or a reply of more lines, ends the session.
MAX_LINE = 8192
MAX_LINES = 100
STAGES = ("MAIL", "RCPT", "DATA")
END_OF_DATA = b".\r\n"


class ReplyStream(asyncio.Protocol):
    """Reads every reply the server sends, in order, however they are packed.

    Built on the live transport of an aiosmtplib connection; from then on all
    traffic of that connection goes through this object. `lost` is set once the
    connection is gone; replies that arrived before are still readable.
    """

    def __init__(self, transport: asyncio.Transport, previous: asyncio.BaseProtocol) -> None:
        self._transport = transport
        self._previous = previous
        self._loop = asyncio.get_running_loop()
        self._partial = b""  # an incomplete line
        self._lines: list[bytes] = []  # continuation lines of a reply in progress
        self.replies: deque[SMTPResponse] = deque()
        self.lost: aiosmtplib.SMTPException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._wanted = 0
        self._timeout = 0.0
        #: The body waiting for MAIL, RCPT and DATA to be accepted (see `exchange`).
        self._body: bytes | None = None
        #: Whether the body of the current transaction went out.
        self.body_sent = False
        # One timer per connection, re-armed when it fires, instead of one per wait.
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        transport.set_protocol(self)

    # -- asyncio.Protocol ----------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._partial:
            data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()  # b"" when the data ended with a line break
        if len(self._partial) > MAX_LINE:
            self._fail("reply line from the server too long")
            return
        for line in lines:
            code = line[:3]
            if len(line) > MAX_LINE or not code.isdigit():
                self._fail(f"malformed reply from the server: {line[:80]!r}")
                return
            text = line[4:].strip(b" \t\r")
            if line[3:4] == b"-":
                self._lines.append(text)
                if len(self._lines) > MAX_LINES:
                    self._fail("reply from the server too long")
                    return
                continue
            if self._lines:
                self._lines.append(text)
                text = b"\n".join(self._lines)
                self._lines = []
            self.replies.append(SMTPResponse(int(code), text.decode("utf-8", "replace")))
        if self._body is not None and len(self.replies) >= 3:
            self._send_body()
        waiter = self._waiter
        if waiter is not None and len(self.replies) >= self._wanted and not waiter.done():
            waiter.set_result(None)

    def eof_received(self) -> bool:
        self._lose(aiosmtplib.SMTPServerDisconnected("connection lost"))
        return False  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        error = aiosmtplib.SMTPServerDisconnected("connection lost")
        error.__cause__ = exc
        self._lose(error)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        # Let aiosmtplib's own protocol learn of it too, so its SMTP object closes.
        self._previous.connection_lost(exc)

    # -- reading and writing ----------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.lost is not None:
            raise self.lost
        if self._transport.is_closing():
            raise aiosmtplib.SMTPServerDisconnected("connection lost")
        self._transport.write(data)

    async def wait(self, count: int, timeout: float) -> None:
        """Until `count` replies are queued; raises on a lost connection or timeout.

        What arrived before a failure stays in `replies`, so the caller can tell
        how far the server got.
        """
        if len(self.replies) >= count:
            return
        if self.lost is not None:
            raise self.lost
        loop = self._loop
        self._wanted = count
        self._deadline = deadline = loop.time() + timeout
        timer = self._timer
        if timer is not None and timer.when() > deadline:
            timer.cancel()
            timer = None
        if timer is None:
            self._timer = loop.call_at(deadline, self._check_deadline)
        self._waiter = loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    async def exchange(self, envelope: bytes, body: bytes, timeout: float) -> None:
        """One pipelined transaction: `envelope` now, `body` once it may go.

        The body is written from `data_received` the moment MAIL, RCPT and DATA
        are all accepted, without a round through the event loop; then this waits
        for the reply to it too. Returns with 3 replies when one of them refused
        (the body was not sent), with 4 when `body_sent`; raises like `wait`.
        """
        self.replies.clear()
        self.body_sent = False
        self.write(envelope)
        self._body, self._timeout = body, timeout
        try:
            await self.wait(3, timeout)
        finally:
            self._body = None

    async def command(self, line: bytes, timeout: float) -> SMTPResponse:
        """One command, one reply (RSET, QUIT)."""
        self.replies.clear()
        self.write(line)
        await self.wait(1, timeout)
        return self.replies.popleft()

    def close(self) -> None:
        self._transport.close()

    # -- internals ------------------------------------------------------------------

    def _send_body(self) -> None:
        body, self._body = self._body, None
        mail, rcpt, data = self.replies[0], self.replies[1], self.replies[2]
        accepted = mail.code == 250 and rcpt.code in (250, 251) and data.code == 354
        if not accepted or self.lost is not None or self._transport.is_closing():
            return  # the waiting task sees 3 replies and sorts it out
        assert body is not None
        try:
            self._transport.write(body)
        except (OSError, RuntimeError) as exc:
            self._fail(f"cannot write the message: {exc}")
            return
        self.body_sent = True
        self._wanted = 4  # now wait for the reply to the end of the data
        self._deadline = self._loop.time() + self._timeout

    def _check_deadline(self) -> None:
        """The connection's timer: time out a wait past its deadline, or re-arm."""
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._loop.time() >= self._deadline:
            waiter.set_exception(aiosmtplib.SMTPReadTimeoutError("timed out"))
        else:
            self._timer = self._loop.call_at(self._deadline, self._check_deadline)

    def _lose(self, error: aiosmtplib.SMTPException) -> None:
        if self.lost is None:
            self.lost = error
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(self.lost)

    def _fail(self, reason: str) -> None:
        self._partial = b""
        self._lose(aiosmtplib.SMTPException(reason))
        self._transport.close()


@dataclass(slots=True)
class Exchange:
    """What happened in one pipelined transaction.

    `refused` is the first negative reply and the stage it answered; `final` is
    the reply to the end of the data when the body went out; `error` is set when
    the connection failed, `stage` saying where (MAIL, RCPT, DATA or END).
    """

    refused: tuple[SMTPResponse, str] | None = None
    final: SMTPResponse | None = None
    error: Exception | None = None
    stage: str = "MAIL"
    #: The connection must be dropped (421, or a failure mid-transaction).
    drop: bool = False


async def pipelined_transaction(
    stream: ReplyStream, envelope: bytes, payload: bytes, timeout: float
) -> Exchange:
    """MAIL+RCPT+DATA in one write, then the body only if every reply allows it.

    `envelope` is "MAIL FROM:<..> ...\\r\\nRCPT TO:<..>\\r\\nDATA\\r\\n"; `payload` is
    SMTP-ready and ends with CRLF. Never raises for a server problem: it reports
    it in the Exchange.
    """
    out = Exchange()
    try:
        await stream.exchange(envelope, payload + END_OF_DATA, timeout)
    except (OSError, aiosmtplib.SMTPException) as exc:
        out.error, out.drop = exc, True
        if stream.body_sent:
            out.stage = "END"
        else:
            out.stage = STAGES[min(len(stream.replies), 2)]
            out.refused = _first_refusal(stream)
        return out
    replies = stream.replies
    mail, rcpt, data = replies.popleft(), replies.popleft(), replies.popleft()
    if stream.body_sent:
        out.stage = "END"
        out.final = replies.popleft()
        out.drop = out.final.code == 421
        return out
    if mail.code != 250:
        out.refused = (mail, "MAIL")
    elif rcpt.code not in (250, 251):
        out.refused = (rcpt, "RCPT")
    elif data.code != 354:
        out.refused = (data, "DATA")
    else:  # all accepted, yet the body could not go: the connection is closing
        out.error = aiosmtplib.SMTPServerDisconnected("connection lost")
        out.stage, out.drop = "DATA", True
        return out
    out.drop = any(r.code == 421 for r in (mail, rcpt, data))
    if data.code == 354 and not out.drop:
        # RFC 2920 3.1: DATA accepted although nothing may be delivered: end it
        # at once with an empty message; the body is never sent.
        try:
            replies.clear()
            stream.write(END_OF_DATA)
            await stream.wait(1, timeout)
            out.drop = replies.popleft().code == 421
        except (OSError, aiosmtplib.SMTPException):
            out.drop = True
    return out


def _first_refusal(stream: ReplyStream) -> tuple[SMTPResponse, str] | None:
    """The first negative reply among those that arrived before the connection failed."""
    for reply, stage, ok in zip(stream.replies, STAGES, ((250,), (250, 251), (354,))):
        if reply.code not in ok:
            return reply, stage
    return None
