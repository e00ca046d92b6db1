"""Shared helpers for the benchmarks: a throwaway store, the sample issue, smtp-sink.

Every benchmark runs against real parts in a temporary folder: a SQLite store
seeded through the subscribers store's own upserts, an edition frozen from the
sample picks by `campaign.prepare_send`, and Postfix's `smtp-sink` on loopback
(never the Postfix daemon). Figures are printed as a table and, with --json,
written as one JSON object so BENCHMARKS.md can quote them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python bench/x.py` as well as `python -m bench.x`
    sys.path.insert(0, str(REPO))

from digest.clock import utcnow
from digest.delivery import campaign
from digest.editorial import editions, newsletters
from digest.editorial.models import Edition
from digest.editorial.picks import add_pick, validate_pick
from digest.settings import Settings, load_settings
from digest.store.engine import dispose_all, get_engine, session_scope
from subscribers import store, subscriptions
from subscribers.model import SubscriptionStatus
from tests.samples import sample_content

SMTP_SINK = "/usr/sbin/smtp-sink"
SMTP_SOURCE = "/usr/sbin/smtp-source"
FROM = "The Weekly Digest <digest@news.example.com>"
ENVELOPE_FROM = "digest@news.example.com"
SECRET = "bench-secret-key-0123456789-abcdefghijklmnop"
STORIES = 20


# -- environment and store -------------------------------------------------------


def bench_settings(workdir: Path, **env: str) -> Settings:
    """Settings for a store in `workdir`; DIGEST_* from the caller's shell are ignored."""
    for key in [k for k in os.environ if k.startswith("DIGEST_")]:
        del os.environ[key]
    os.environ.update(
        {
            "DIGEST_DATABASE_URL": f"sqlite:///{workdir / 'digest.db'}",
            "DIGEST_SECRET_KEY": SECRET,
            "DIGEST_FROM": FROM,
            "DIGEST_BASE_URL": "https://news.example.com",
            "DIGEST_OUTBOX_DIR": str(workdir / "outbox"),
            **env,
        }
    )
    return load_settings()


def smtp_env(port: int, concurrency: int) -> dict[str, str]:
    """DIGEST_* for plain SMTP to a local sink."""
    return {
        "DIGEST_SMTP_HOST": "127.0.0.1",
        "DIGEST_SMTP_PORT": str(port),
        "DIGEST_SMTP_SECURITY": "none",
        "DIGEST_CONCURRENCY": str(concurrency),
    }


def dkim_env(folder: Path, kind: str) -> dict[str, str]:
    """DIGEST_DKIM_* for a new key of `kind` ("rsa": RSA-2048, or "ed25519") in `folder`."""
    from digest.delivery import dkimkeys

    path = folder / f"dkim-{kind}.pem"
    if not path.exists():
        dkimkeys.write_private_key(path, dkimkeys.generate_key(kind))  # type: ignore[arg-type]
    return {"DIGEST_DKIM_KEY_FILE": str(path), "DIGEST_DKIM_SELECTOR": "bench"}


def verify_dumped(folder: Path, key_file: Path, skip_rcpt: str) -> tuple[int, int]:
    """DKIM-verify (dkimpy) every message smtp-sink dumped into `folder`, except those to
    `skip_rcpt`; (messages checked, distinct recipients). Fails on the first bad one."""
    import dkim

    from digest.delivery import dkimkeys

    record = dkimkeys.txt_value(dkimkeys.load_key(key_file.read_bytes())).encode()
    recipients: set[bytes] = set()
    checked = 0
    for path in sorted(folder.iterdir()):
        raw = path.read_bytes()
        rcpt = re.search(rb"^X-Rcpt-Args: <([^>]*)>", raw, re.MULTILINE)
        if rcpt is None or rcpt.group(1) == skip_rcpt.encode():
            continue
        message = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        if not dkim.verify(message, dnsfunc=lambda name, timeout=5: record):
            raise SystemExit(f"bench: the message in {path} does not verify with dkimpy")
        recipients.add(rcpt.group(1))
        checked += 1
    return checked, len(recipients)


def seed_subscribers(settings: Settings, n: int, *, batch: int = 10_000) -> None:
    """`n` confirmed subscribers of the default newsletter, through the stores' own upserts."""
    engine = get_engine(settings.database_url)
    now = utcnow()
    with session_scope(engine) as session:
        newsletter_id = newsletters.resolve(session, settings).id
    for start in range(0, n, batch):
        emails = [f"reader{i}@example.com" for i in range(start, min(n, start + batch))]
        with session_scope(engine) as session:
            rows = [store.address_row(e, e, f"Reader {e[6:-12]}", {}) for e in emails]
            store.upsert_addresses(session, rows, now)
            ids = store.ids_for(session, emails)
            confirmed = SubscriptionStatus.CONFIRMED
            subscriptions.upsert(
                session,
                [subscriptions.row(newsletter_id, ids[e], confirmed, "bench", now) for e in emails],
                now,
            )


def add_sample_picks(settings: Settings, stories: int = STORIES) -> None:
    """The sample picks, subject, preheader and intro in the default newsletter's open edition."""
    engine = get_engine(settings.database_url)
    content = sample_content(stories)
    with session_scope(engine) as session:
        newsletter = newsletters.resolve(session, settings)
        edition = editions.open_edition(session, settings, newsletter)
        sections = newsletters.settings_for(settings, newsletter).sections
        for pick in content["picks"]:
            data = {k: v for k, v in pick.items() if k not in ("id", "position")}
            add_pick(session, edition.id, validate_pick(data, sections))
        editions.edit(
            session,
            edition,
            subject=content["subject"],
            preheader=content["preheader"],
            intro=content["intro"],
        )


def start_issue(settings: Settings, stories: int = STORIES) -> Edition:
    """The sample picks frozen into the open edition, its send started, ledger filled."""
    add_sample_picks(settings, stories)
    return campaign.prepare_send(get_engine(settings.database_url), settings)


# -- measuring -----------------------------------------------------------------


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MB.

    VmHWM, not getrusage's ru_maxrss: Linux carries the parent's peak over into a
    child's ru_maxrss across fork (or vfork) and exec, so a child started by a big
    parent would report the parent's peak as its own.
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def rss_mb() -> float:
    """This process's resident set size now, in MB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@contextmanager
def stopwatch() -> Iterator[list[float]]:
    """`with stopwatch() as t: ...` then t[0] is the elapsed seconds."""
    out = [0.0]
    started = time.perf_counter()
    try:
        yield out
    finally:
        out[0] = time.perf_counter() - started


@dataclass
class Figure:
    """One measured figure, its target, and what it is compared with."""

    name: str
    value: float
    unit: str
    target: str = ""
    met: bool | None = None
    note: str = ""


@dataclass
class Results:
    """Figures of one benchmark run, printed as a table and optionally saved as JSON."""

    title: str
    figures: list[Figure] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    def add(self, name: str, value: float, unit: str, **kw: Any) -> Figure:
        fig = Figure(name, value, unit, **kw)
        self.figures.append(fig)
        return fig

    def show(self, json_path: str | None = None) -> None:
        print(f"\n== {self.title}")
        for key, value in self.facts.items():
            print(f"   {key}: {value}")
        width = max((len(f.name) for f in self.figures), default=10)
        for f in self.figures:
            verdict = {True: "met", False: "MISSED", None: ""}[f.met]
            target = f"target {f.target}" if f.target else ""
            value = f"{f.value:,.2f}" if f.value < 100 else f"{f.value:,.0f}"
            print(
                f"   {f.name:<{width}}  {value:>10} {f.unit:<6} {target:<18} {verdict:<6} {f.note}"
            )
        if json_path:
            data = {
                "title": self.title,
                "facts": self.facts,
                "figures": [vars(f) for f in self.figures],
            }
            Path(json_path).write_text(json.dumps(data, indent=2, default=str) + "\n")


# -- smtp-sink and smtp-source ---------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_postfix_tools() -> None:
    missing = [p for p in (SMTP_SINK, SMTP_SOURCE) if not os.access(p, os.X_OK)]
    if missing:
        sys.exit(f"bench: {', '.join(missing)} not found; install Debian's `postfix` package")


class SMTPSink:
    """Postfix's smtp-sink on loopback, counting the messages it received.

    `-c` makes it print "sess=.. quit=.. mesg=N" after every final "."; that goes
    to a file (not a pipe), so counting costs the measured process nothing, and
    `received` reads the last counter from the file's tail.
    """

    _COUNTER = re.compile(rb"mesg=(\d+)")

    def __init__(self, backlog: int = 1000, dump: Path | None = None) -> None:
        """`dump`: also write each message received to a file of its own in that folder."""
        import tempfile

        self.port = free_port()
        self.backlog = backlog
        self.dump = dump
        self._log = tempfile.NamedTemporaryFile(prefix="smtp-sink-", suffix=".log")
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> SMTPSink:
        cmd = [SMTP_SINK, "-c"]
        if os.geteuid() == 0:  # smtp-sink refuses to keep root privileges
            cmd += ["-u", "root"]
        if self.dump is not None:  # strftime template; smtp-sink adds a random suffix
            cmd += ["-d", f"{self.dump}/%H%M%S."]
        cmd += [f"127.0.0.1:{self.port}", str(self.backlog)]
        self._proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.recv(100)
                    s.sendall(b"QUIT\r\n")
                break
            except OSError:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    err = self._proc.stderr.read().decode() if self._proc.stderr else ""
                    raise RuntimeError(f"smtp-sink did not start: {err.strip()}") from None
                time.sleep(0.05)
        return self

    @property
    def received(self) -> int:
        """Messages received so far (final "." answered)."""
        with open(self._log.name, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 200))
            found = self._COUNTER.findall(f.read())
        return int(found[-1]) if found else 0

    def cpu_seconds(self) -> float:
        """CPU time smtp-sink has used so far (user + system)."""
        assert self._proc is not None
        with open(f"/proc/{self._proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def wait_for(self, count: int, timeout: float = 30.0) -> int:
        """Wait until `count` messages have arrived (or time out); the count seen."""
        deadline = time.monotonic() + timeout
        while (seen := self.received) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return seen

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(10)
        self._log.close()


def smtp_source(port: int, message: Path, count: int, concurrency: int) -> float:
    """Postfix's load generator: `count` copies of `message`; returns seconds taken.

    `-d` keeps each session's connection for the next message, as our pool does.
    It appends CRLF to each line it reads, so `message` should have LF endings.
    """
    cmd = [
        SMTP_SOURCE,
        "-d",
        "-s",
        str(concurrency),
        "-m",
        str(count),
        "-f",
        ENVELOPE_FROM,
        "-t",
        "reader@example.com",
        "-F",
        str(message),
        f"127.0.0.1:{port}",
    ]
    with stopwatch() as t:
        subprocess.run(cmd, check=True, capture_output=True)
    return t[0]


@contextmanager
def pg_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the PostgreSQL server at `server_url`; dropped afterwards."""
    from urllib.parse import urlsplit, urlunsplit

    import psycopg

    name = f"digest_bench_{os.getpid()}_{int(time.time() * 1000) % 10**9}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))
    try:
        yield url
    finally:
        dispose_all()
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def workspace(keep: str | None = None) -> Iterator[Path]:
    """A temporary folder for a store (kept at `keep` when given)."""
    import tempfile

    if keep:
        path = Path(keep)
        path.mkdir(parents=True, exist_ok=True)
        yield path
        dispose_all()
        return
    path = Path(tempfile.mkdtemp(prefix="digest-bench-"))
    try:
        yield path
    finally:
        dispose_all()
        shutil.rmtree(path, ignore_errors=True)
