"""An offline spam score from SpamAssassin, for preflight.

Runs `spamassassin -L -t` (local tests only: no DNS blocklists, no network) on a
sample message with Bayes and auto-learning off and a throwaway HOME, so our own
sample is never learned as ham. The score misses the reputation checks receivers
add, which is why preflight reports it as advice rather than blocking the send.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass

TIMEOUT = 60.0
_STATUS = re.compile(r"score=(-?\d+(?:\.\d+)?)\s+required=(-?\d+(?:\.\d+)?)")
_RULE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s+([A-Z0-9_]+)\s+(.*)$")


class SpamCheckError(Exception):
    """SpamAssassin ran but gave no usable answer."""


@dataclass(frozen=True)
class Rule:
    name: str
    points: float
    description: str


@dataclass(frozen=True)
class SpamScore:
    score: float
    required: float
    rules: tuple[Rule, ...]

    @property
    def is_spam(self) -> bool:
        return self.score >= self.required

    def scoring_rules(self) -> list[Rule]:
        """Rules that moved the score, largest first."""
        return sorted((r for r in self.rules if r.points), key=lambda r: -abs(r.points))


def find(command: str) -> str | None:
    """The executable for `command`, or None when it is "off" or not installed."""
    if not command or command.lower() == "off":
        return None
    return shutil.which(command)


def score(message: bytes, executable: str, timeout: float = TIMEOUT) -> SpamScore:
    """Run SpamAssassin's local tests on `message`."""
    with tempfile.TemporaryDirectory(prefix="digest-sa-") as home:
        env = {**os.environ, "HOME": home}
        try:
            proc = subprocess.run(
                [executable, "-L", "-t", "-x", "--cf=use_bayes 0", "--cf=bayes_auto_learn 0"],
                input=message,
                capture_output=True,
                timeout=timeout,
                env=env,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise SpamCheckError(f"SpamAssassin took longer than {timeout:.0f} s") from None
        except OSError as exc:
            raise SpamCheckError(f"cannot run {executable}: {exc.strerror}") from None
    return parse_output(proc.stdout.decode("utf-8", "replace"))


def parse_output(text: str) -> SpamScore:
    """Score from the X-Spam-Status header, rules from the report table."""
    head = text.split("\n\n", 1)[0].replace("\r\n", "\n")
    status = re.search(r"^X-Spam-Status:(.*(?:\n[ \t].*)*)", head, re.MULTILINE)
    m = _STATUS.search(status.group(1)) if status else None
    if m is None:
        raise SpamCheckError("SpamAssassin's output has no X-Spam-Status score")
    return SpamScore(float(m.group(1)), float(m.group(2)), tuple(_rules(text)))


def _rules(text: str) -> list[Rule]:
    rules: list[Rule] = []
    lines = text.replace("\r\n", "\n").split("\n")
    try:
        start = next(i for i, line in enumerate(lines) if line.startswith("---- ----")) + 1
    except StopIteration:
        return rules
    for line in lines[start:]:
        if not line.strip():
            break
        m = _RULE.match(line)
        if m:
            rules.append(Rule(m.group(2), float(m.group(1)), m.group(3).strip()))
        elif rules and line[:1].isspace():
            last = rules[-1]
            rules[-1] = Rule(last.name, last.points, f"{last.description} {line.strip()}")
    return rules
