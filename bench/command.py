"""The whole `digest send` command, as the operator runs it, against smtp-source.

    .venv/bin/python -m bench.command --messages 20000 --rounds 3
    .venv/bin/python -m bench.command --messages 20000 --rounds 3 --dkim rsa
    .venv/bin/python -m bench.command --messages 20000 --rounds 3 \\
        --postgres postgresql://postgres@127.0.0.1:5432/postgres

Each round: a fresh store (a SQLite file, or a new database on the PostgreSQL server
given) with N confirmed subscribers and the 20-story sample picks; `digest build`
renders the edition and writes `sample.eml` (DKIM-signed when a key is set) as an
operator does before the send, untimed; then the timed part: a `digest send` process,
from its start to its exit (imports, settings, the preflight, filling the ledger,
sending, the summary), into smtp-sink. smtp-source sends N copies of the same
`sample.eml` with the same number of sessions to the same sink before the first round
and after every round; a round's ratio is N over digest's wall time, over the mean
rate of the smtp-source runs around it. Exit status 1 unless smtp-sink counted every
message and every ledger shows all N sent; timing never decides the exit status.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from bench.common import (
    Results,
    SMTPSink,
    add_sample_picks,
    bench_settings,
    dkim_env,
    pg_database,
    require_postfix_tools,
    seed_subscribers,
    smtp_env,
    smtp_source,
    stopwatch,
    verify_dumped,
    workspace,
)

T = TypeVar("T")
TARGETS = {"off": 0.9, "rsa": 0.6, "ed25519": 0.6}
_RATE = re.compile(
    r"\bsent=(\d+) .*\bduration=([\d.]+)s rate=(\d+)/s ledger: sent=(\d+) owed=(\d+)"
)


@dataclass
class Round:
    """One timed `digest send` and the smtp-source runs around it."""

    seconds: float  # the whole process, start to exit
    sending: float  # the Sender's own rate (its summary line)
    cpu: float  # the process's CPU seconds (user + system)
    before: float  # smtp-source msg/s before this round
    after: float  # and after it
    n: int
    sink_source: float = 0.0  # smtp-sink CPU seconds per message from smtp-source (after)
    sink_digest: float = 0.0  # and per message from digest send
    sink_busy: float = 0.0  # smtp-sink's share of one core while digest was sending

    @property
    def rate(self) -> float:
        return self.n / self.seconds

    @property
    def ratio(self) -> float:
        return self.rate / ((self.before + self.after) / 2)


def digest_exe() -> str:
    exe = Path(sys.executable).with_name("digest")
    if not os.access(exe, os.X_OK):
        raise SystemExit(f"no console script at {exe}: install digest into this venv first")
    return str(exe)


def run(argv: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess[str], float, float]:
    """A command in `cwd` with the current DIGEST_* environment: (result, wall s, CPU s)."""
    before = os.times()
    with stopwatch() as t:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    after = os.times()
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    if done.returncode != 0:
        raise SystemExit(
            f"bench.command: {' '.join(argv[1:])} exited {done.returncode}:\n"
            f"{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
    return done, t[0], cpu


@contextmanager
def store(postgres: str | None) -> Iterator[tuple[Path, dict[str, str]]]:
    with workspace() as work:
        if postgres:
            with pg_database(postgres) as url:
                yield work, {"DIGEST_DATABASE_URL": url}
        else:
            yield work, {}


def source_rate(sink: SMTPSink, message: Path, n: int, conc: int) -> float:
    base = sink.received
    seconds = smtp_source(sink.port, message, n, conc)
    if sink.wait_for(base + n) - base != n:
        raise SystemExit("bench.command: smtp-sink did not count every smtp-source message")
    return n / seconds


def sink_cpu(sink: SMTPSink, fn: Callable[[], T]) -> tuple[T, float]:
    """What `fn` returns, and the CPU seconds smtp-sink used meanwhile."""
    before = sink.cpu_seconds()
    result = fn()
    return result, sink.cpu_seconds() - before


def one_round(args: argparse.Namespace, sink: SMTPSink, keys: Path, first: float | None) -> Round:
    n, conc = args.messages, args.concurrency
    env = smtp_env(sink.port, conc)
    if args.dkim != "off":
        env.update(dkim_env(keys, args.dkim))
    env["DIGEST_SPAMASSASSIN"] = args.spamassassin
    with store(args.postgres) as (work, db):
        settings = bench_settings(work, **env, **db)
        seed_subscribers(settings, n)
        add_sample_picks(settings)
        run([digest_exe(), "build", "--out", str(work / "build")], work)
        sample = (work / "build" / "sample.eml").read_bytes()
        message = work / "sample-lf.eml"  # smtp-source adds CR to each line it reads
        message.write_bytes(sample.replace(b"\r\n", b"\n"))
        before = first if first is not None else source_rate(sink, message, n, conc)
        base = sink.received
        (done, seconds, cpu), by_digest = sink_cpu(sink, lambda: run([digest_exe(), "send"], work))
        arrived = sink.wait_for(base + n) - base
        found = _RATE.search(done.stdout.replace("\n", " "))
        if found is None:
            raise SystemExit(f"bench.command: no summary line in:\n{done.stdout[-2000:]}")
        sent, duration, rate, ledger_sent, owed = (float(x) for x in found.groups())
        if not (sent == ledger_sent == arrived == n and owed == 0):
            raise SystemExit(
                f"bench.command: sent {sent:.0f}, ledger {ledger_sent:.0f} sent and {owed:.0f} "
                f"owed, smtp-sink counted {arrived}; expected {n}"
            )
        after, by_source = sink_cpu(sink, lambda: source_rate(sink, message, n, conc))
        args.sample_bytes = len(sample)
    return Round(
        seconds, rate, cpu, before, after, n, by_source / n, by_digest / n, by_digest / duration
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--messages", "-n", type=int, default=20_000)
    parser.add_argument("--concurrency", "-c", type=int, default=20)
    parser.add_argument("--rounds", "-r", type=int, default=3)
    parser.add_argument("--dkim", choices=["off", "rsa", "ed25519"], default="off")
    parser.add_argument("--postgres", help="a PostgreSQL server URL to create databases on")
    parser.add_argument(
        "--spamassassin", default="spamassassin", help="DIGEST_SPAMASSASSIN for build and send"
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="with --dkim: smtp-sink keeps every message and dkimpy verifies each of digest's",
    )
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.verify and args.dkim == "off":
        parser.error("--verify checks DKIM signatures: give --dkim too")
    if min(args.messages, args.concurrency, args.rounds) < 1:
        parser.error("--messages, --concurrency and --rounds must be at least 1")
    require_postfix_tools()
    keys = Path(tempfile.mkdtemp(prefix="digest-bench-keys-"))
    dump = keys / "received" if args.verify else None
    if dump is not None:
        dump.mkdir()
    rounds: list[Round] = []
    loads = [os.getloadavg()[0]]
    verified = ""
    try:
        with SMTPSink(dump=dump) as sink:
            for r in range(args.rounds):
                rounds.append(one_round(args, sink, keys, rounds[-1].after if rounds else None))
                loads.append(os.getloadavg()[0])
                x = rounds[-1]
                print(
                    f"round {r + 1}: smtp-source {x.before:,.0f} / {x.after:,.0f} msg/s, "
                    f"digest send {x.rate:,.0f} msg/s ({x.sending:,.0f} while sending, "
                    f"{x.seconds:.1f} s, CPU {x.cpu:.1f} s): {x.ratio:.2f}x",
                    flush=True,
                )
        if dump is not None:
            key_file = Path(dkim_env(keys, args.dkim)["DIGEST_DKIM_KEY_FILE"])
            checked, people = verify_dumped(dump, key_file, "reader@example.com")
            if people != args.messages or checked != args.messages * args.rounds:
                raise SystemExit(f"bench.command: {checked} messages to {people} recipients")
            verified = f"; all {checked:,} DKIM signatures verify with dkimpy"
    finally:
        shutil.rmtree(keys, ignore_errors=True)

    database = "PostgreSQL" if args.postgres else "SQLite"
    signed = {"off": "unsigned", "rsa": "DKIM RSA-2048", "ed25519": "DKIM Ed25519"}[args.dkim]
    results = Results(
        f"digest send, whole command: {args.messages:,} recipients, {database}, {signed}, "
        f"{args.concurrency} connections"
    )
    ratio = statistics.median(x.ratio for x in rounds)
    target = TARGETS[args.dkim]
    results.facts.update(
        message_bytes=args.sample_bytes,
        rounds=args.rounds,
        round_ratios=", ".join(f"{x.ratio:.2f}" for x in rounds),
        load_average=f"{min(loads):.1f}-{max(loads):.1f} (1-minute, sampled between rounds)",
        fixed_cost=(
            f"{statistics.median(x.seconds - x.n / x.sending for x in rounds):.2f} s "
            "(whole command minus N over the rate while sending)"
        ),
        cpu_per_message=f"{statistics.median(x.cpu / x.n for x in rounds) * 1e6:.0f} us "
        "(the digest process, all threads)",
        sink_cpu_per_message=(
            f"{statistics.median(x.sink_source for x in rounds) * 1e6:.0f} us from smtp-source, "
            f"{statistics.median(x.sink_digest for x in rounds) * 1e6:.0f} us from digest"
        ),
        sink_busy_while_digest_sends=(
            f"{statistics.median(x.sink_busy for x in rounds) * 100:.0f} % of a core "
            "(its CPU during the command over the Sender's sending time)"
        ),
    )
    sources = [x.before for x in rounds] + [rounds[-1].after]
    results.add(
        "smtp-source", statistics.median(sources), "msg/s", note="median run; the reference"
    )
    results.add(
        "digest send (whole command)",
        statistics.median(x.rate for x in rounds),
        "msg/s",
        target=f">= {target}x",
        met=ratio >= target,
        note=f"{ratio:.2f}x smtp-source (median round)",
    )
    results.add(
        "digest send, while sending",
        statistics.median(x.sending for x in rounds),
        "msg/s",
        note="the Sender's own rate (its summary line)",
    )
    results.show(args.json)
    print(f"all {args.messages * args.rounds:,} messages arrived; ledgers complete{verified}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
