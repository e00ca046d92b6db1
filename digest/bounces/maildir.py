"""A Maildir as a source of bounce messages.

New messages are those in new/, plus those in cur/ without the Seen flag (a mail
client may have moved them without reading). A processed message is moved to cur/
with the Seen flag ("S"), and messages we could not read also get the Flagged flag
("F") so a person finds them; so running again never reads a message twice.
File names follow the Maildir convention: `unique:2,FLAGS`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from digest.errors import SettingsError


@dataclass(frozen=True)
class MaildirItem:
    """One unprocessed message file."""

    subdir: str  # "new" or "cur"
    name: str

    @property
    def uniq(self) -> str:
        return self.name.partition(":")[0]

    @property
    def flags(self) -> str:
        info = self.name.partition(":")[2]
        return info[2:] if info.startswith("2,") else ""


class MaildirSource:
    """Reads unprocessed messages from a Maildir and marks them processed."""

    def __init__(self, path: Path) -> None:
        self.path = path.expanduser()

    def describe(self) -> str:
        return f"maildir:{self.path}"

    def __enter__(self) -> Self:
        missing = [d for d in ("new", "cur", "tmp") if not (self.path / d).is_dir()]
        if missing:
            raise SettingsError(
                f"DIGEST_BOUNCE_MAILBOX: {self.path} is not a Maildir (no {'/, '.join(missing)}/)"
            )
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def items(self) -> Iterator[tuple[MaildirItem, bytes]]:
        """(item, message bytes) for every message not processed yet, oldest name first."""
        for subdir in ("new", "cur"):
            with os.scandir(self.path / subdir) as entries:
                names = sorted(e.name for e in entries if e.is_file() and e.name[:1] != ".")
            for name in names:
                item = MaildirItem(subdir, name)
                if "S" in item.flags or "T" in item.flags:
                    continue
                try:
                    data = (self.path / subdir / name).read_bytes()
                except FileNotFoundError:  # taken by a mail client meanwhile
                    continue
                yield item, data

    def done(self, item: MaildirItem, *, flag: bool = False) -> None:
        """Move to cur/ with Seen (and Flagged when a person should look at it)."""
        flags = "".join(sorted(set(item.flags) | {"S"} | ({"F"} if flag else set())))
        src = self.path / item.subdir / item.name
        dst = self.path / "cur" / f"{item.uniq}:2,{flags}"
        try:
            os.rename(src, dst)
        except FileNotFoundError:  # someone else moved it; the next run sees it again
            pass
