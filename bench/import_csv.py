"""Import: a subscriber CSV through `subscribers.csvio.import_csv`, time and memory.

    .venv/bin/python -m bench.import_csv --rows 1000000

A CSV of N rows (email, name and a city attribute; a few addresses in upper case)
is imported into a fresh SQLite store, confirmed, in a child process that reports
its own time and peak RSS; 10,000 rows are imported the same way so memory growth
shows. The floor, in the same run: the same file read with the csv module and
written with sqlite3 executemany into a bare table (no validation, no upsert rules,
no suppression list), which is as fast as Python can put these rows into SQLite.
"""

from __future__ import annotations

import argparse
import csv
import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from bench.common import REPO, Results, bench_settings, peak_rss_mb, rss_mb, workspace

TARGET_SECONDS = 60.0
SMALL = 10_000
CITIES = ["Moscow", "Berlin", "Riga", "Tbilisi", "Yerevan", "Almaty", "Vilnius", "Prague"]


def write_csv(path: Path, rows: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["email", "name", "city"])
        for i in range(rows):
            email = f"Reader{i}@Example.com" if i % 50 == 0 else f"reader{i}@example.com"
            out.writerow([email, f"Reader {i}", CITIES[i % len(CITIES)]])


def child_import(path: str) -> dict[str, float]:
    """In the child: import `path` confirmed into DIGEST_DATABASE_URL."""
    from digest.editorial import newsletters
    from digest.settings import load_settings
    from digest.store.engine import get_engine, session_scope
    from subscribers.csvio import import_csv

    settings = load_settings()
    engine = get_engine(settings.database_url)
    with session_scope(engine) as session:  # the default newsletter, as on a fresh install
        newsletter_id = newsletters.resolve(session, settings).id
    start = rss_mb()
    started, cpu = time.perf_counter(), time.process_time()
    with session_scope(engine) as session:
        report = import_csv(session, Path(path), newsletter_id, confirmed=True)
    return {
        "seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu,
        "added": report.added,
        "rss_start_mb": start,
        "peak_rss_mb": peak_rss_mb(),
    }


def child_floor(path: str, database: str) -> dict[str, float]:
    """In the child: csv + sqlite3 executemany into a bare table, the lower bound."""
    start = rss_mb()
    started, cpu = time.perf_counter(), time.process_time()
    db = sqlite3.connect(database)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE subscribers (email TEXT UNIQUE, name TEXT, city TEXT)")
    with open(path, newline="", encoding="utf-8") as f, db:
        rows = csv.reader(f)
        next(rows)
        db.executemany("INSERT INTO subscribers VALUES (?, ?, ?)", rows)
    added = db.execute("SELECT count(*) FROM subscribers").fetchone()[0]
    db.close()
    return {
        "seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu,
        "added": added,
        "rss_start_mb": start,
        "peak_rss_mb": peak_rss_mb(),
    }


def run_child(*args: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.import_csv", "--child", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"bench.import_csv: child {args[0]} failed:\n{out.stderr.strip()}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rows", "-n", type=int, default=1_000_000)
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, *rest = args.child
        print(json.dumps(child_import(*rest) if kind == "import" else child_floor(*rest)))
        return 0

    results = Results(f"import: {args.rows:,}-row subscriber CSV into SQLite")
    got: dict[int, dict[str, float]] = {}
    with workspace() as work:
        for rows in sorted({SMALL, args.rows}):
            path = work / f"subscribers-{rows}.csv"
            write_csv(path, rows)
            with workspace() as store:
                bench_settings(store)
                got[rows] = run_child("import", str(path))
            if rows == args.rows:
                results.facts["csv_megabytes"] = round(path.stat().st_size / 2**20, 1)
                floor = run_child("floor", str(path), str(work / "floor.db"))
    problems = [f"{n:,} rows: {r['added']:,} added" for n, r in got.items() if r["added"] != n]
    big, small = got[args.rows], got[min(got)]
    results.add(
        f"import_csv, {args.rows:,} rows",
        big["seconds"],
        "s",
        target=f"<= {TARGET_SECONDS:g} s",
        met=big["seconds"] <= TARGET_SECONDS and not problems,
        note=(
            f"{args.rows / big['seconds']:,.0f} rows/s; CPU {big['cpu_seconds']:.1f} s, "
            f"{big['cpu_seconds'] / floor['cpu_seconds']:.1f}x the floor's"
        ),
    )
    results.add(
        "floor: csv + sqlite3 executemany",
        floor["seconds"],
        "s",
        note=(
            f"{args.rows / floor['seconds']:,.0f} rows/s; CPU {floor['cpu_seconds']:.1f} s; "
            "no validation, no upsert rules"
        ),
    )
    results.add(
        f"peak RSS, {args.rows:,} rows",
        big["peak_rss_mb"],
        "MB",
        note=(
            f"{small['peak_rss_mb']:.0f} MB for {min(got):,} rows "
            f"({(big['peak_rss_mb'] / small['peak_rss_mb'] - 1) * 100:+.0f} %); "
            f"{big['rss_start_mb']:.0f} MB after imports"
        ),
    )
    results.show(args.json)
    for p in problems:
        print(f"bench.import_csv: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
