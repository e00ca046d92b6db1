"""PostgreSQL against SQLite: the same send on both, in the same run.

    .venv/bin/python -m bench.backends --subscribers 1000000 \\
        --postgres postgresql://postgres@127.0.0.1:5432/postgres

For each backend in turn (SQLite first, or PostgreSQL with --postgres-first; --rounds
repeats the pair):
a fresh store with N confirmed subscribers and the 20-story edition, its ledger
filled (and, on PostgreSQL, analysed) by `campaign.prepare_send`; then a child
process sends it all (Sender + SMTP pool into one smtp-sink, as bench.memory does)
and reports its rate and peak RSS. The figure is PostgreSQL's rate over SQLite's
(target >= 0.9x); peak RSS must stay <= 100 MB on both. Exit status 1 unless every
send completed with every message arriving.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from bench.common import (
    Results,
    SMTPSink,
    bench_settings,
    require_postfix_tools,
    seed_subscribers,
    smtp_env,
    start_issue,
    stopwatch,
)
from bench.memory import TARGET_MB, run_child, store

TARGET_RATIO = 0.9


def one_send(postgres: str | None, sink: SMTPSink, n: int, concurrency: int) -> dict[str, float]:
    """Prepare a store on one backend, send it from a child process; its figures."""
    name = "PostgreSQL" if postgres else "SQLite"
    with store(postgres) as env:
        work = Path(env.pop("_work"))
        settings = bench_settings(work, **smtp_env(sink.port, concurrency), **env)
        with stopwatch() as t_setup:
            seed_subscribers(settings, n)
            start_issue(settings)
        base = sink.received
        got = run_child("send", sink.port)
        arrived = sink.wait_for(base + n) - base
    if got["sent"] != n or arrived != n:
        raise SystemExit(f"bench.backends: {name}: sent {got['sent']}, {arrived} arrived of {n}")
    rate = n / float(got["seconds"])  # type: ignore[arg-type]
    print(
        f"{name}: store ready in {t_setup[0]:.0f} s; sent {n:,} in {got['seconds']:.0f} s "
        f"({rate:,.0f} msg/s), peak RSS {got['peak_rss_mb']:.1f} MB; "
        f"load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    return {"rate": rate, "peak": float(got["peak_rss_mb"]), "setup": t_setup[0]}  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--subscribers", "-n", type=int, default=1_000_000)
    parser.add_argument("--concurrency", "-c", type=int, default=10)
    parser.add_argument("--rounds", "-r", type=int, default=1)
    parser.add_argument("--postgres", required=True, help="a PostgreSQL server URL")
    parser.add_argument(
        "--postgres-first", action="store_true", help="send on PostgreSQL first in each round"
    )
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    require_postfix_tools()
    n = args.subscribers
    runs: dict[str, list[dict[str, float]]] = {"SQLite": [], "PostgreSQL": []}
    loads = [os.getloadavg()[0]]
    started = time.monotonic()
    with SMTPSink() as sink:
        order = [("SQLite", None), ("PostgreSQL", args.postgres)]
        for _ in range(args.rounds):
            for name, url in order[::-1] if args.postgres_first else order:
                runs[name].append(one_send(url, sink, n, args.concurrency))
                loads.append(os.getloadavg()[0])
    rates = {name: statistics.median(r["rate"] for r in rs) for name, rs in runs.items()}
    peaks = {name: max(r["peak"] for r in rs) for name, rs in runs.items()}
    ratio = rates["PostgreSQL"] / rates["SQLite"]
    results = Results(f"PostgreSQL vs SQLite: a send to {n:,} subscribers, same run")
    results.facts.update(
        rounds=args.rounds,
        concurrency=args.concurrency,
        load_average=f"{min(loads):.1f}-{max(loads):.1f} (1-minute, sampled between sends)",
        minutes=round((time.monotonic() - started) / 60, 1),
        setup_seconds=", ".join(
            f"{name} {statistics.median(r['setup'] for r in rs):.0f}" for name, rs in runs.items()
        ),
    )
    results.add("SQLite", rates["SQLite"], "msg/s", note=f"peak RSS {peaks['SQLite']:.1f} MB")
    results.add(
        "PostgreSQL",
        rates["PostgreSQL"],
        "msg/s",
        target=f">= {TARGET_RATIO}x SQLite",
        met=ratio >= TARGET_RATIO,
        note=f"{ratio:.2f}x SQLite; peak RSS {peaks['PostgreSQL']:.1f} MB",
    )
    for name in runs:
        results.add(
            f"peak RSS, {name}",
            peaks[name],
            "MB",
            target=f"<= {TARGET_MB:g} MB",
            met=peaks[name] <= TARGET_MB,
        )
    results.show(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
