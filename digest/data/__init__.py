"""Sample data for `digest demo`: a week of picks, 50 subscribers and the issue's wording.

Every subscriber address is on example.com/.org/.net or under `.example` (RFC 2606), so
the demo can never mail a real person. The files ship as package data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from digest.errors import InputError

DATA_DIR = Path(__file__).resolve().parent
SAMPLE_PICKS = DATA_DIR / "sample_picks.yaml"
SAMPLE_SUBSCRIBERS = DATA_DIR / "sample_subscribers.csv"
SAMPLE_ISSUE = DATA_DIR / "sample_issue.yaml"

SUBJECT_MIN, SUBJECT_MAX = 10, 78


@dataclass(frozen=True)
class SampleIssue:
    """Suggested wording for the demo issue."""

    subject: str
    preheader: str
    intro: str


def load_sample_issue(path: Path = SAMPLE_ISSUE) -> SampleIssue:
    """Read and check the demo issue's subject, preheader and intro."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"cannot read: {exc}", source=str(path)) from None
    if not isinstance(raw, dict):
        raise InputError("expected subject, preheader and intro", source=str(path))
    values = {}
    for key in ("subject", "preheader", "intro"):
        value = raw.get(key)
        if not isinstance(value, str) or not value.strip():
            raise InputError("is missing or empty", source=str(path), field=key)
        values[key] = value.strip()
    subject = values["subject"]
    if "\n" in subject or not SUBJECT_MIN <= len(subject) <= SUBJECT_MAX:
        msg = f"must be one line of {SUBJECT_MIN}-{SUBJECT_MAX} characters"
        raise InputError(msg, source=str(path), field="subject")
    if "\n" in values["preheader"]:
        raise InputError("must be one line", source=str(path), field="preheader")
    if values["preheader"].casefold() == subject.casefold():
        raise InputError("must differ from the subject", source=str(path), field="preheader")
    return SampleIssue(**values)
