"""Files holding secrets or personal data: created for their owner only, and watched.

What digest writes that others must not read: the SQLite database (password hashes,
subscribers; its -wal and -shm files take the database's mode), `.env` with the
secret key (`digest demo`), DKIM private keys, outbox messages (addresses and
unsubscribe links) and subscriber exports. Files are created 0600 and folders 0700,
whatever the umask. digest writes no log files; its logs go to stderr.

`exposed(settings)` lists existing ones that other users can read (created before, or
by hand); preflight and the start of `digest serve`, `schedule` and `send` warn about
them.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

FILE_MODE = 0o600
DIR_MODE = 0o700


def ensure_file(path: Path) -> None:
    """Create an empty file readable by its owner only, unless it exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return
    os.close(fd)


@contextmanager
def open_private(path: Path, mode: str = "wb", **kwargs: object) -> Iterator[IO[Any]]:
    """`open()` for writing, creating the file 0600 (an existing file keeps its mode)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if "a" in mode else os.O_TRUNC)
    fd = os.open(path, flags, FILE_MODE)
    with os.fdopen(fd, mode, **kwargs) as fh:  # type: ignore[call-overload]
        yield fh


def make_private_dir(path: Path) -> None:
    """mkdir -p, new folders 0700 (existing ones are left as they are)."""
    missing = []
    for parent in (path, *path.parents):
        if parent.exists():
            break
        missing.append(parent)
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=DIR_MODE)
        except FileExistsError:
            pass


def sqlite_path(url: str) -> Path | None:
    """The file of a sqlite:/// URL (None for other databases and in-memory ones)."""
    if not url.startswith("sqlite"):
        return None
    _, sep, rest = url.partition(":///")
    rest = rest.split("?", 1)[0]
    if not sep or not rest or rest == ":memory:":
        return None
    return Path(rest)


def readable_by_others(path: Path) -> bool:
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    if stat.S_ISDIR(mode):
        return bool(mode & (stat.S_IROTH | stat.S_IXOTH | stat.S_IRGRP | stat.S_IXGRP))
    return bool(mode & (stat.S_IROTH | stat.S_IRGRP))


def watched(settings: object) -> list[Path]:
    """The files and folders with secrets or personal data this configuration uses."""
    paths: list[Path] = []
    db = sqlite_path(getattr(settings, "database_url", ""))
    if db is not None:
        paths += [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]
    paths.append(Path(".env"))
    key = getattr(settings, "dkim_key_file", None)
    if key is not None:
        paths.append(Path(key).expanduser())
    if not getattr(settings, "uses_smtp", True):
        paths.append(Path(getattr(settings, "outbox_dir", "outbox")))
    return paths


def exposed(settings: object) -> list[str]:
    """One line per existing file or folder that other users can read."""
    out = []
    for path in watched(settings):
        if readable_by_others(path):
            fix = "chmod 700" if path.is_dir() else "chmod 600"
            out.append(f"{path} can be read by other users on this machine: {fix} {path}")
    return out


def warn_exposed(settings: object) -> None:
    """Print `exposed()` as warnings on stderr (at the start of long-running commands)."""
    for line in exposed(settings):
        print(f"digest: warning: {line}", file=sys.stderr)


__all__ = [
    "ensure_file",
    "exposed",
    "make_private_dir",
    "open_private",
    "readable_by_others",
    "sqlite_path",
    "warn_exposed",
]
