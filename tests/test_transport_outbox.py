"""The Maildir outbox: what a reader (any mail client, `mailbox`) finds in the folder."""

from __future__ import annotations

import asyncio
import mailbox
import shutil
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from digest.delivery.transports import OutboxTransport, make_transport
from digest.delivery.transports.base import Outbound, Outcome
from digest.errors import TransportError
from digest.settings import Settings

DATA = (
    "From: The Weekly Digest <digest@news.example.com>\r\n"
    "To: reader@example.org\r\n"
    "Subject: =?utf-8?b?0J3QvtCy0L7RgdGC0Lg=?=\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: 8bit\r\n"
    "\r\n"
    "Привет, reader.\r\n"
    "..a stuffed line stays as it is\r\n"
).encode()


def outbound(n: int = 0) -> Outbound:
    return Outbound("digest@news.example.com", f"reader{n}@example.org", DATA)


async def test_open_creates_the_maildir(tmp_path: Path) -> None:
    folder = tmp_path / "deep" / "outbox"
    await OutboxTransport(folder).open()
    assert sorted(p.name for p in folder.iterdir()) == ["cur", "new", "tmp"]


async def test_message_lands_in_new_and_parses_back(tmp_path: Path) -> None:
    async with OutboxTransport(tmp_path / "outbox") as transport:
        result = await transport.send(outbound(7))
    assert result.outcome is Outcome.SENT and result.code == 250
    files = list((tmp_path / "outbox" / "new").iterdir())
    assert len(files) == 1 and str(files[0]) in result.reply
    assert list((tmp_path / "outbox" / "tmp").iterdir()) == []

    raw = files[0].read_bytes()
    assert b"\r" not in raw  # CRLF turned into the local LF convention
    assert raw.endswith(DATA.replace(b"\r\n", b"\n"))
    parsed = message_from_bytes(raw, policy=policy.default)
    assert parsed["Return-Path"] == "<digest@news.example.com>"
    assert parsed["Delivered-To"] == "reader7@example.org"
    assert parsed["Subject"] == "Новости"
    assert parsed.get_content() == "Привет, reader.\n..a stuffed line stays as it is\n"

    box = mailbox.Maildir(tmp_path / "outbox", create=False)
    assert [m["To"] for m in box] == ["reader@example.org"]


async def test_concurrent_sends_never_collide(tmp_path: Path) -> None:
    async with OutboxTransport(tmp_path / "outbox") as transport:
        results = await asyncio.gather(*(transport.send(outbound(i)) for i in range(20)))
    assert all(r.outcome is Outcome.SENT for r in results)
    box = mailbox.Maildir(tmp_path / "outbox", create=False)
    assert sorted(m["Delivered-To"] for m in box) == sorted(
        f"reader{i}@example.org" for i in range(20)
    )


async def test_folder_that_cannot_be_created_is_a_transport_error(tmp_path: Path) -> None:
    blocker = tmp_path / "outbox"
    blocker.write_text("a file where the folder should be")
    with pytest.raises(TransportError, match="DIGEST_OUTBOX_DIR: cannot create"):
        await OutboxTransport(blocker).open()


async def test_unwritable_folder_is_a_transport_error(tmp_path: Path) -> None:
    folder = tmp_path / "outbox"
    transport = OutboxTransport(folder)
    await transport.open()
    shutil.rmtree(folder / "tmp")
    (folder / "tmp").write_text("not a directory")
    with pytest.raises(TransportError, match="DIGEST_OUTBOX_DIR: cannot write"):
        await transport.send(outbound())
    assert list((folder / "new").iterdir()) == []


def test_outbox_is_used_without_an_smtp_host(settings: Settings) -> None:
    transport = make_transport(settings)
    assert isinstance(transport, OutboxTransport)
    assert transport.directory == settings.outbox_dir
    assert transport.describe() == f"outbox folder {settings.outbox_dir}"
