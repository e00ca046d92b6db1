"""Memory: peak RSS of a whole send, for a small and a large list, in the same run.

    .venv/bin/python -m bench.memory --counts 10000,1000000
    .venv/bin/python -m bench.memory --counts 10000,1000000 --postgres postgresql://postgres@127.0.0.1:5432/test

For each count, a fresh store (SQLite file, or a new database on the PostgreSQL
server given) gets that many confirmed subscribers and the 20-story issue with its
ledger filled; then a child process does the real send (Sender + SMTP pool into
smtp-sink) and reports its own peak RSS (ru_maxrss), so nothing the setup did is
counted. The baseline, in the same run: the RSS of a process that merely loads the
list into memory, as a script that does `session.execute(...).all()` would.
Exit status 1 unless every send completed with every message arriving.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.common import (
    REPO,
    Results,
    SMTPSink,
    bench_settings,
    peak_rss_mb,
    pg_database,
    require_postfix_tools,
    rss_mb,
    seed_subscribers,
    smtp_env,
    start_issue,
    stopwatch,
    workspace,
)

TARGET_MB = 100.0
TARGET_GROWTH = 0.10


def child_send() -> dict[str, object]:
    """In the child: send the edition prepared in DIGEST_DATABASE_URL; report memory."""
    from digest.delivery.sender import Sender
    from digest.delivery.transports.smtp import SMTPTransport
    from digest.editorial import editions
    from digest.settings import load_settings
    from digest.store.engine import get_engine, session_scope

    settings = load_settings()
    engine = get_engine(settings.database_url)
    with session_scope(engine) as session:
        issue = editions.resumable(session)
    assert issue is not None, "no issue is sending"
    start = rss_mb()

    async def send() -> tuple[int, dict[str, int]]:
        transport = SMTPTransport.from_settings(settings)
        async with transport:
            report = await Sender(engine, settings, issue, transport).run()
        return report.run["sent"], report.totals

    with stopwatch() as t:
        sent, totals = asyncio.run(send())
    return {
        "sent": sent,
        "totals": totals,
        "seconds": t[0],
        "rss_start_mb": start,
        "rss_end_mb": rss_mb(),
        "peak_rss_mb": peak_rss_mb(),
    }


def child_load_list() -> dict[str, object]:
    """In the child: what holding the whole list costs (the baseline)."""
    from sqlalchemy import select

    from digest.settings import load_settings
    from digest.store.engine import get_engine, session_scope
    from subscribers import subscriptions
    from subscribers.model import Subscriber, Subscription

    settings = load_settings()
    engine = get_engine(settings.database_url)
    start = rss_mb()
    with session_scope(engine) as session:
        rows = session.execute(
            select(Subscriber.id, Subscriber.email, Subscriber.name)
            .join(Subscription, Subscription.subscriber_id == Subscriber.id)
            .where(subscriptions.mailable())
        ).all()
        count = len(rows)
    return {"rows": count, "rss_start_mb": start, "peak_rss_mb": peak_rss_mb()}


def run_child(mode: str, sink_port: int | None = None) -> dict[str, object]:
    env = dict(os.environ)
    if sink_port is not None:
        env.update(smtp_env(sink_port, int(env.get("DIGEST_CONCURRENCY", "10"))))
    out = subprocess.run(
        [sys.executable, "-m", "bench.memory", "--child", mode],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"bench.memory: the {mode} child failed:\n{out.stderr.strip()}")
    return json.loads(out.stdout.strip().splitlines()[-1])


@contextmanager
def store(postgres: str | None) -> Iterator[dict[str, str]]:
    """A fresh store: DIGEST_* for a SQLite file, or for a new PostgreSQL database."""
    with workspace() as work:
        if postgres:
            with pg_database(postgres) as url:
                yield {"_work": str(work), "DIGEST_DATABASE_URL": url}
        else:
            yield {"_work": str(work)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--counts", default="10000,1000000")
    parser.add_argument("--concurrency", "-c", type=int, default=10)
    parser.add_argument("--postgres", help="a PostgreSQL server URL to create databases on")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--child", choices=["send", "list"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child_send() if args.child == "send" else child_load_list()))
        return 0
    require_postfix_tools()
    counts = [int(c) for c in args.counts.split(",")]
    database = "PostgreSQL" if args.postgres else "SQLite"
    results = Results(f"memory: peak RSS of a send, {database}")
    peaks: dict[int, float] = {}
    failed = False
    with SMTPSink() as sink:
        for n in counts:
            with store(args.postgres) as env:
                work = Path(env.pop("_work"))
                settings = bench_settings(work, **smtp_env(sink.port, args.concurrency), **env)
                with stopwatch() as t_setup:
                    seed_subscribers(settings, n)
                    start_issue(settings)
                print(f"{n:,}: store ready in {t_setup[0]:.0f}s; sending", flush=True)
                base = sink.received
                started = time.monotonic()
                got = run_child("send", sink.port)
                arrived = sink.wait_for(base + n) - base
                print(f"{n:,}: sent in {time.monotonic() - started:.0f}s", flush=True)
                listed = run_child("list") if n == max(counts) else None
            ok = got["sent"] == n and arrived == n
            failed |= not ok
            peaks[n] = float(got["peak_rss_mb"])  # type: ignore[arg-type]
            rate = n / float(got["seconds"])  # type: ignore[arg-type]
            results.add(
                f"send to {n:,}",
                peaks[n],
                "MB",
                target=f"<= {TARGET_MB:g} MB",
                met=peaks[n] <= TARGET_MB and ok,
                note=(
                    f"RSS {got['rss_start_mb']:.0f} MB after imports, {got['rss_end_mb']:.0f} MB "
                    f"at the end; {rate:,.0f} msg/s; {arrived:,} arrived"
                ),
            )
            if listed is not None:
                results.add(
                    f"baseline: list of {listed['rows']:,} in memory",
                    float(listed["peak_rss_mb"]),  # type: ignore[arg-type]
                    "MB",
                    note="what streaming from the database avoids",
                )
    if len(peaks) > 1:
        small, large = min(peaks), max(peaks)
        growth = peaks[large] / peaks[small] - 1
        results.add(
            f"growth {small:,} -> {large:,}",
            growth * 100,
            "%",
            target=f"< {TARGET_GROWTH * 100:g} %",
            met=growth < TARGET_GROWTH,
        )
    results.show(args.json)
    if failed:
        print("bench.memory: not every message was sent and arrived", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
