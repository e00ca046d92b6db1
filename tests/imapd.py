"""A real IMAP server on loopback for tests: Dovecot in the foreground, in a temp folder.

Needs root and the dovecot-imapd package (scripts/setup --test installs it); tests skip
otherwise. Any user name logs in with PASSWORD; each user gets a Maildir of its own.
Both IMAPS (TLS from the start) and IMAP with mandatory STARTTLS are served, with a
self-signed certificate for 127.0.0.1 whose file is `cafile`.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Self

from tests.certs import self_signed
from tests.smtpd import free_port

PASSWORD = "imap-test-s3cret"
DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"


def available() -> str | None:
    """Why the server cannot run here, or None when it can."""
    if not os.path.exists(DOVECOT):
        return "Dovecot is not installed (apt-get install dovecot-imapd)"
    if os.geteuid() != 0:
        return "Dovecot needs root to start"
    try:
        pwd.getpwnam("dovecot")
    except KeyError:
        return "the dovecot system user is missing"
    return None


def _self_signed(directory: Path) -> tuple[Path, Path]:
    return self_signed(directory)


class IMAPServer:
    """`with IMAPServer() as srv:` srv.imaps_port, srv.imap_port, srv.cafile."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="digest-imapd-"))
        self.root.chmod(0o755)  # Dovecot's unprivileged processes must reach their sockets
        self.mail = self.root / "mail"
        self.mail.mkdir()
        user = pwd.getpwnam("dovecot")
        os.chown(self.mail, user.pw_uid, user.pw_gid)
        self.cafile, key_file = _self_signed(self.root)
        self.imaps_port, self.imap_port = free_port(), free_port()
        self.config = self.root / "dovecot.conf"
        self.config.write_text(
            f"""
base_dir = {self.root}/run
state_dir = {self.root}/state
log_path = {self.root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <{self.cafile}
ssl_key = <{key_file}
auth_mechanisms = plain
passdb {{
  driver = static
  args = password={PASSWORD}
}}
userdb {{
  driver = static
  args = uid=dovecot gid=dovecot home={self.mail}/%u
}}
mail_location = maildir:~/Maildir
first_valid_uid = {user.pw_uid}
first_valid_gid = {user.pw_gid}
service imap-login {{
  inet_listener imap {{
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    port = {self.imaps_port}
    ssl = yes
  }}
}}
""",
            encoding="utf-8",
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        self.proc = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"dovecot exited: {err.strip()}")
            try:
                with socket.create_connection(("127.0.0.1", self.imaps_port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        self.__exit__()
        raise RuntimeError("dovecot did not start listening within 20 s")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
            if self.proc.stderr:
                self.proc.stderr.close()
            self.proc = None
        shutil.rmtree(self.root, ignore_errors=True)
