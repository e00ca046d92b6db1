"""A fast SMTP sink in its own process, for the crash tests.

Run as `python -m tests.sink_server LOG`: it listens on a free loopback port,
prints that port on the first line of stdout (the "ready" signal), and accepts
every message, appending each accepted recipient as one line to LOG *before*
answering 250. So LOG is exactly what the server took responsibility for, even
when the client is killed between the server's 250 and its own bookkeeping.

LOG.live always holds the number of open client connections. Once a killed
client's connections are all closed it reads 0, and LOG can no longer grow:
aiosmtpd drops a half-received message when the connection goes.

It lives in its own process so that its Python work (aiosmtpd reads DATA line by
line) does not share a GIL with the test or with `digest send`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from aiosmtpd.smtp import SMTP, Envelope, Session


class CountingSMTP(SMTP):
    """aiosmtpd's SMTP that publishes how many connections are open."""

    live = 0
    live_path = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.transport is None:  # not the re-made connection after STARTTLS
            self._publish(+1)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        super().connection_lost(error)
        self._publish(-1)

    @classmethod
    def _publish(cls, change: int) -> None:
        cls.live += change
        tmp = cls.live_path + ".tmp"
        with open(tmp, "w") as fh:
            fh.write(str(cls.live))
        os.replace(tmp, cls.live_path)


class AppendingHandler:
    """Accepts everything; one O_APPEND write per message, before the reply."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        os.write(self.fd, "".join(f"{r}\n" for r in envelope.rcpt_tos).encode())
        return "250 2.0.0 OK queued"


async def serve(log_path: str) -> None:
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    handler = AppendingHandler(fd)
    CountingSMTP.live_path = log_path + ".live"
    CountingSMTP._publish(0)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: CountingSMTP(
            handler, hostname="sink.test", decode_data=False, enable_SMTPUTF8=True
        ),
        "127.0.0.1",
        0,
        backlog=256,
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    port = server.sockets[0].getsockname()[1]
    print(port, flush=True)
    async with server:
        await stop.wait()
    os.close(fd)


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1]))
