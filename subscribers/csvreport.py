"""What a CSV import did (`ImportReport`), and the error of an import with bad rows."""

from __future__ import annotations

from dataclasses import dataclass, field

from digest.errors import InputError

MAX_REPORTED = 100


@dataclass
class ImportReport:
    """What an import did.
    rows = added + updated + unchanged_blocked + folded + erased + invalid."""

    source: str
    rows: int = 0
    added: int = 0
    updated: int = 0
    unchanged_blocked: int = 0
    folded_duplicates: int = 0
    #: Addresses erased at their owner's request (subscribers.erasures): never imported.
    erased: int = 0
    invalid: list[str] = field(default_factory=list)
    invalid_count: int = 0
    encoding: str = ""
    delimiter: str = ","

    def summary(self) -> str:
        delimiter = {"\t": "tab"}.get(self.delimiter, self.delimiter)
        text = (
            f"{self.source}: {self.rows} rows: {self.added} added, {self.updated} updated, "
            f"{self.unchanged_blocked} left alone (unsubscribed/bounced/complained), "
            f"{self.folded_duplicates} duplicates folded, {self.invalid_count} invalid "
            f"[{self.encoding}, delimiter {delimiter!r}]"
        )
        if self.erased:
            text += (
                f"; {self.erased} skipped: erased at their owner's request, never to be added again"
            )
        return text

    def note_invalid(self, message: str) -> None:
        self.invalid_count += 1
        if len(self.invalid) < MAX_REPORTED:
            self.invalid.append(message)


class ImportFailed(InputError):
    """An import with invalid rows and without skip_invalid; `report` lists them."""

    def __init__(self, first: InputError, report: ImportReport) -> None:
        more = report.invalid_count - 1
        suffix = f" (and {more} more invalid rows)" if more > 0 else ""
        super().__init__(
            f"{bare_message(first)}{suffix}; nothing was imported "
            "(fix the file, or skip bad rows with --skip-invalid)",
            source=first.source,
            line=first.line,
            field=first.field,
        )
        self.report = report


def bare_message(exc: InputError) -> str:
    """The reason alone, without the "file:line: field: " prefix InputError adds."""
    where = ""
    if exc.source:
        where = exc.source + (f":{exc.line}" if exc.line is not None else "") + ": "
    elif exc.line is not None:
        where = f"line {exc.line}: "
    if exc.field:
        where += f"{exc.field}: "
    return exc.message.removeprefix(where)
