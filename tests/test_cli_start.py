"""Command start: `digest --help` loads typer and the command modules, nothing heavy.

The import checks need a fresh interpreter (this test process has imported everything
long ago), so they run `python -X importtime -m digest ...` and read which modules it
loaded. Timing itself is bench/cli_start.py's job (see BENCHMARKS.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer

from digest.cli import app
from tests.clirun import run_cli

REPO = Path(__file__).resolve().parent.parent
#: Loaded only by the commands that need them, never for `--help`.
HEAVY = (
    "alembic",
    "apscheduler",
    "argon2",
    "cryptography",
    "dkim",
    "email_validator",
    "feedparser",
    "httpx",
    "jinja2",
    "mrml",
    "psycopg",
    "pydantic",
    "pydantic_settings",
    "sqlalchemy",
    "starlette",
    "uvicorn",
    "yaml",
    "digest.settings",
    "digest.store",
    "digest.delivery",
    "digest.editorial",
    "digest.scheduling",
    "digest.web",
    "digest.editors",
    "subscribers",
)


def imported_by(*args: str, cwd: Path, env: dict[str, str] | None = None) -> set[str]:
    """The modules a fresh `python -m digest ARGS...` imports (it must succeed)."""
    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "digest", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    return {
        line.rsplit("|", 1)[1].strip()
        for line in run.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }


def heavy(modules: set[str], allowed: tuple[str, ...] = ()) -> list[str]:
    names = tuple(h for h in HEAVY if h not in allowed)
    return sorted(m for m in modules if m.split(".")[0] in names or m.startswith(names))


def test_help_imports_nothing_heavy(tmp_path: Path) -> None:
    modules = imported_by("--help", cwd=tmp_path)
    assert "typer" in modules and "digest.cli.send" in modules
    assert heavy(modules) == []


@pytest.mark.parametrize("args", [("send", "--help"), ("subscribers", "list", "--help")])
def test_a_command_help_imports_nothing_heavy(tmp_path: Path, args: tuple[str, ...]) -> None:
    # Typer itself builds a command's parameters with pydantic TypeAdapters.
    assert heavy(imported_by(*args, cwd=tmp_path), allowed=("pydantic",)) == []


def test_a_second_command_on_a_migrated_store_skips_alembic(tmp_path: Path) -> None:
    env = {"DIGEST_DATABASE_URL": f"sqlite:///{tmp_path / 'digest.db'}"}
    first = imported_by("subscribers", "count", cwd=tmp_path, env=env)
    assert "alembic" in first  # a new store is migrated
    second = imported_by("subscribers", "count", cwd=tmp_path, env=env)
    assert "sqlalchemy" in second and "alembic" not in second


def test_head_revisions_read_from_the_files_match_alembic() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from digest.store.engine import MIGRATIONS_DIR, head_revisions

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    assert head_revisions() == frozenset(ScriptDirectory.from_config(cfg).get_heads())


def walk(group: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], str]]:
    """(command path, first help line) for every command under `group`."""
    found = []
    for name, command in group.commands.items():
        help_line = (command.help or "").strip().splitlines()[0]
        found.append(((*path, name), help_line))
        if hasattr(command, "commands"):  # a group (typer vendors its own click)
            found.extend(walk(command, (*path, name)))
    return found


def test_every_command_has_its_help(capsys: pytest.CaptureFixture[str]) -> None:
    commands = walk(typer.main.get_command(app))
    names = {" ".join(path) for path, _ in commands}
    assert {"demo", "picks add", "subscribers count", "send", "serve", "worker"} <= names
    assert len(commands) >= 34
    for path, help_line in commands:
        run = run_cli(capsys, *path, "--help")
        assert run.code == 0, (path, run.err)
        assert " ".join(help_line.split()[:4]) in " ".join(run.out.split()), path


def test_status_names_in_the_help_are_the_model_statuses() -> None:
    from digest.cli.subscribers import STATUS_NAMES
    from subscribers.model import STATUSES

    assert STATUS_NAMES == tuple(str(s) for s in STATUSES)


def test_benchmark_smoke_run(tmp_path: Path) -> None:
    figures = tmp_path / "cli_start.json"
    run = subprocess.run(
        [sys.executable, "-m", "bench.cli_start", "--runs=1", f"--json={figures}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    data = json.loads(figures.read_text())
    names = [f["name"] for f in data["figures"]]
    assert names == [
        "python -c pass",
        'python -c "import typer"',
        "digest --help",
        "digest subscribers count",
    ]
    assert all(f["value"] > 0 for f in data["figures"])
