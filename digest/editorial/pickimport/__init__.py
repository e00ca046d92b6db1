"""Import picks from a YAML/JSON list or an RSS/Atom feed, given as a file or an http(s) URL.

Nothing is stored here: `load_picks` returns validated `PickIn` objects and the caller
stores them in one transaction, so a file with one bad record changes nothing (unless the
caller asked to skip bad records, and then it learns exactly which ones were skipped).
Every error names the source, the line (or feed item) and the field.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from digest.editorial.pickimport.feeds import check_xml, feed_records
from digest.editorial.pickimport.fetch import (
    FETCH_TIMEOUT,
    MAX_REDIRECTS,
    XML_START,
    decode,
    fetch,
    read_source,
    sniff,
)
from digest.editorial.pickimport.records import (
    ALIASES,
    TEXT_FIELDS,
    Record,
    canonical_name,
    json_records,
    yaml_records,
)
from digest.editorial.picks import PickIn, validate_pick
from digest.errors import InputError

__all__ = [
    "ALIASES",
    "FETCH_TIMEOUT",
    "MAX_REDIRECTS",
    "ImportResult",
    "check_xml",
    "fetch",
    "load_picks",
]

FIELDS = tuple(PickIn.model_fields)


@dataclass
class ImportResult:
    """What an import found: the valid picks, the records skipped and why, and notes."""

    source: str
    kind: str  # "yaml" | "json" | "feed"
    picks: list[PickIn] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def load_picks(
    source: str,
    sections: list[str],
    *,
    skip_invalid: bool = False,
    max_bytes: int = 5_000_000,
) -> ImportResult:
    """Read and validate picks from `source` (a path or an http(s) URL); store nothing.

    Raises InputError on the first bad record unless `skip_invalid`, in which case bad
    records are listed in `ImportResult.rejected` and the good ones are returned.
    """
    if not sections:
        raise InputError("no sections are configured", source=source)
    data, hint, base_url = read_source(source, max_bytes)
    kind = "feed" if XML_START.match(data[:4096]) else hint or sniff(data)
    if kind == "feed":
        records = feed_records(data, source, sections, base_url)
    elif kind == "json":
        records = json_records(decode(data, source), source)
    else:
        records = yaml_records(decode(data, source), source)
    if not records:
        raise InputError("contains no picks", source=source)
    result = ImportResult(source=source, kind=kind)
    errors: list[InputError] = []
    for record in records:
        try:
            result.picks.append(_validate(record, sections))
        except InputError as exc:
            errors.append(exc)
    if errors and not skip_invalid:
        first = errors[0]
        if len(errors) > 1:
            first.message += f" (and {len(errors) - 1} more invalid record(s))"
            first.args = (first.message,)
        raise first
    result.rejected = [str(e) for e in errors]
    result.warnings = _warnings(result.picks)
    return result


def _validate(record: Record, sections: list[str]) -> PickIn:
    data = record.data if record.mapped else _normalise(record)
    return validate_pick(data, sections, source=record.where, line=record.line)


def _normalise(record: Record) -> dict[str, Any]:
    """Map aliases onto field names; refuse unknown and doubled fields with a hint."""
    where, line = record.where, record.line
    if not isinstance(record.data, dict):
        got = type(record.data).__name__ if record.data is not None else "nothing"
        raise InputError(
            f"each pick must be a mapping of field: value, got {got}", source=where, line=line
        )
    out: dict[str, Any] = {}
    given_as: dict[str, str] = {}
    for key, value in record.data.items():
        if not isinstance(key, str):
            raise InputError(f"field names must be text, got {key!r}", source=where, line=line)
        name = canonical_name(key)
        if name not in FIELDS:
            close = difflib.get_close_matches(name, [*FIELDS, *ALIASES], n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"allowed: {', '.join(FIELDS)}"
            raise InputError(f"unknown field ({hint})", source=where, line=line, field=key)
        if name in given_as:
            msg = f"given twice (as {given_as[name]!r} and {key!r})"
            raise InputError(msg, source=where, line=line, field=name)
        given_as[name] = key
        if value is None:
            continue  # an empty `summary:` means "no summary", not an error
        if name in TEXT_FIELDS and isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        out[name] = value
    return out


def _warnings(picks: list[PickIn]) -> list[str]:
    """Things worth telling the editor that are not errors."""
    notes = []
    featured = [p for p in picks if p.featured]
    if len(featured) > 1:
        notes.append(
            f"{len(featured)} picks are marked featured; only the last one "
            f"({featured[-1].title!r}) stays featured"
        )
    seen: set[str] = set()
    for p in picks:
        if p.url in seen:
            notes.append(f"the URL {p.url} is listed more than once")
        seen.add(p.url)
    return notes
