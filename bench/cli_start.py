"""Command start: what a `digest` process costs before it does anything, against typer alone.

    .venv/bin/python -m bench.cli_start [--runs 15] [--json FILE]

Whole processes, as a user starts them: the installed `digest` console script next to
this interpreter, against `python -c "import typer"` (the floor any Typer program
pays) and `python -c pass` (the interpreter alone). The commands take turns, one run
of each per round, so a busy neighbour slows all of them alike. Figures are medians of
wall time; the CPU time of the child (user + system) is shown beside it because on a
shared machine it does not count the time other processes had the core.

- `digest --help`: target within 3x of `import typer`.
- `digest subscribers count` on an empty SQLite store (created and migrated by a
  warm-up run first): a real command, settings + store + one query.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import Results

HELP_TARGET = 3.0


def timed(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """Wall seconds and child CPU seconds of one run; fails on a non-zero exit."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    run = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if run.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {run.returncode}: {run.stderr.strip()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="rounds (one run of each command)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()

    python = sys.executable
    digest = str(Path(python).with_name("digest"))
    if not os.access(digest, os.X_OK):
        raise SystemExit(f"no console script at {digest}: install digest into this venv first")
    with tempfile.TemporaryDirectory(prefix="digest-bench-") as tmp:
        work = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
        env["DIGEST_DATABASE_URL"] = f"sqlite:///{work / 'digest.db'}"
        commands = {
            "python -c pass": [python, "-c", "pass"],
            'python -c "import typer"': [python, "-c", "import typer"],
            "digest --help": [digest, "--help"],
            "digest subscribers count": [digest, "subscribers", "count"],
        }
        for argv in commands.values():  # warm-up: disk cache, and the store is created
            timed(argv, env, work)
        walls: dict[str, list[float]] = {name: [] for name in commands}
        cpus: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, argv in commands.items():
                wall, cpu = timed(argv, env, work)
                walls[name].append(wall)
                cpus[name].append(cpu)

    median = {name: statistics.median(values) for name, values in walls.items()}
    base = median['python -c "import typer"']
    results = Results("command start (whole processes, median wall time)")
    results.facts["runs"] = args.runs
    results.facts["python"] = sys.version.split()[0]
    results.facts["load average"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    for name in commands:
        ratio = median[name] / base
        note = f"{ratio:.2f}x import typer; CPU {statistics.median(cpus[name]) * 1000:.0f} ms"
        kw: dict[str, object] = {}
        if name == "digest --help":
            kw = {"target": f"<= {HELP_TARGET:g}x typer", "met": ratio <= HELP_TARGET}
        results.add(name, median[name] * 1000, "ms", note=note, **kw)
    results.facts["digest --help / import typer"] = round(median["digest --help"] / base, 2)
    results.show(args.json)


if __name__ == "__main__":
    main()
