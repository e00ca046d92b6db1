"""Run `digest ...` through its console entry point inside the test process.

In-process is ~20x faster than a subprocess and exercises the same `digest.cli.main`
(the one-line error policy included); an exception escaping `main` would be a
traceback for the user, so it is left to fail the test.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import pytest


@dataclass
class Run:
    code: int
    out: str
    err: str

    def one_line_error(self) -> str:
        """The single stderr line of a refused command (asserts the shape)."""
        assert self.code != 0, self.out
        lines = self.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("digest: error: "), self.err
        assert "Traceback" not in self.err
        return lines[0].removeprefix("digest: error: ")


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> Run:
    """`digest ARGS...` with the environment as it is now; returns code, stdout, stderr."""
    from digest.cli import common, main

    common.settings.cache_clear()  # settings are read once per process; tests change env
    argv, sys.argv = sys.argv, ["digest", *args]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = argv
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err)
