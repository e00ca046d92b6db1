"""The outbox: a Maildir folder, used whenever no SMTP host is configured.

Each message is written to tmp/ and renamed into new/, so a reader (any mail
client, or `python -m mailbox`) never sees half a message. Messages hold addresses
and unsubscribe links: the folders are created 0700 and the files 0600.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from itertools import count
from pathlib import Path

from digest.delivery.transports.base import Outbound, Result, Transport
from digest.errors import TransportError
from digest.privatefiles import make_private_dir, open_private

_seq = count()


class OutboxTransport(Transport):
    name = "outbox"

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._host = socket.gethostname().replace("/", "_").replace(":", "_")

    def describe(self) -> str:
        return f"outbox folder {self.directory}"

    async def open(self) -> None:
        try:
            for sub in ("tmp", "new", "cur"):
                make_private_dir(self.directory / sub)
        except OSError as exc:
            raise TransportError(
                f"DIGEST_OUTBOX_DIR: cannot create {self.directory}: {exc.strerror}"
            ) from None

    async def send(self, message: Outbound) -> Result:
        return await asyncio.to_thread(self._write, message)

    def _write(self, message: Outbound) -> Result:
        name = f"{time.time_ns()}.P{os.getpid()}Q{next(_seq)}.{self._host}"
        tmp = self.directory / "tmp" / name
        data = message.data.replace(b"\r\n", b"\n")
        header = f"Return-Path: <{message.sender}>\nDelivered-To: {message.recipient}\n".encode()
        try:
            with open_private(tmp) as fh:
                fh.write(header)
                fh.write(data)
            os.replace(tmp, self.directory / "new" / name)
        except OSError as exc:
            raise TransportError(
                f"DIGEST_OUTBOX_DIR: cannot write to {self.directory}: {exc.strerror}"
            ) from None
        return Result.sent(250, f"written to {self.directory / 'new' / name}")
