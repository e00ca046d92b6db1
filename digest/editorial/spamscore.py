"""An offline spam score from SpamAssassin, for preflight.

Runs `spamassassin -L -t` (local tests only: no DNS blocklists, no network) on a
sample message with Bayes and auto-learning off and a throwaway HOME, so our own
sample is never learned as ham. That costs a second or more of Perl start-up per
check, so when a spamd answers, the message goes to it through `spamc -R` instead
(run spamd with `--local` and Bayes off for the same score; docs/performance.md).
DIGEST_SPAMASSASSIN names the command: `spamassassin` (the default; a spamd on
spamc's default address is used when one answers), `spamc` with its options (e.g.
`spamc -p 7830`: always the daemon), another command that behaves like
`spamassassin` (run as it is), or `off`. The score misses the reputation checks
receivers add, which is why preflight reports it as advice rather than blocking the
send.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass

TIMEOUT = 60.0
_STATUS = re.compile(r"score=(-?\d+(?:\.\d+)?)\s+required=(-?\d+(?:\.\d+)?)")
_SPAMC = re.compile(r"^\s*(-?\d+(?:\.\d+)?)/(-?\d+(?:\.\d+)?)\s*$", re.MULTILINE)
_RULE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s+([A-Z0-9_]+)\s+(.*)$")
#: spamc options that make a missing daemon fail at once instead of after retries.
_SPAMC_QUICK = ["-x", "--connect-retries", "1", "-n", "2", "--filter-retries", "1"]


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
    """The executable of `command` (its first word), or None when "off" or not installed."""
    words = shlex.split(command) if command else []
    if not words or words[0].lower() == "off":
        return None
    return shutil.which(words[0])


def score(message: bytes, command: str, timeout: float = TIMEOUT) -> SpamScore:
    """SpamAssassin's local tests on `message`: through spamd when one answers.

    `command` is DIGEST_SPAMASSASSIN (or the path `find` gave for it).
    """
    words = shlex.split(command)
    exe = shutil.which(words[0]) or words[0]
    if os.path.basename(exe) == "spamc":
        return _spamc([exe, *words[1:]], message, timeout)
    spamc = shutil.which("spamc") if os.path.basename(exe) == "spamassassin" else None
    if spamc is not None and daemon_answers([spamc]):
        try:
            return _spamc([spamc], message, timeout)
        except SpamCheckError:
            pass  # the daemon went away: score it here
    return _spamassassin([exe, *words[1:]], message, timeout)


def daemon_answers(spamc: list[str]) -> bool:
    """Whether a spamd answers spamc's ping (a few milliseconds either way)."""
    try:
        done = subprocess.run(
            [*spamc, *_SPAMC_QUICK, "-K"], capture_output=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and done.stdout.startswith(b"SPAMD/")


def _spamc(argv: list[str], message: bytes, timeout: float) -> SpamScore:
    """`spamc -R`: "score/required", then the same report table as `spamassassin -t`."""
    code, out = _run([*argv, *_SPAMC_QUICK, "-t", str(int(timeout)), "-R"], message, timeout, {})
    m = _SPAMC.search(out.split("\n", 1)[0])
    # 0 or 1 (ham or spam); others are spamc's sysexits codes (69: no spamd answered)
    if m is None or code not in (0, 1):
        raise SpamCheckError(f"spamc exited {code} without a score (is spamd running?)")
    return SpamScore(float(m.group(1)), float(m.group(2)), tuple(_rules(out)))


def _spamassassin(argv: list[str], message: bytes, timeout: float) -> SpamScore:
    with tempfile.TemporaryDirectory(prefix="digest-sa-") as home:
        _, out = _run(
            [*argv, "-L", "-t", "-x", "--cf=use_bayes 0", "--cf=bayes_auto_learn 0"],
            message,
            timeout,
            {"HOME": home},
        )
    return parse_output(out)


def _run(argv: list[str], message: bytes, timeout: float, env: dict[str, str]) -> tuple[int, str]:
    try:
        proc = subprocess.run(
            argv,
            input=message,
            capture_output=True,
            timeout=timeout,
            env={**os.environ, **env},
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise SpamCheckError(f"SpamAssassin took longer than {timeout:.0f} s") from None
    except OSError as exc:
        raise SpamCheckError(f"cannot run {argv[0]}: {exc.strerror}") from None
    return proc.returncode, proc.stdout.decode("utf-8", "replace")


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
