"""CSV import and export of one newsletter's subscribers.

Import streams the file and upserts in batches inside the caller's transaction:
by default one bad row aborts the whole import (the caller's session_scope rolls
back, so nothing changes); with skip_invalid the bad rows are listed and skipped.
No import ever changes an address that bounced or complained (suppressed for every
newsletter) or one that unsubscribed from this newsletter.

Columns: `email` (also "e-mail", "mail", "email address"), `name` (also "full
name"); a `status` column is honoured only for unsubscribed/bounced/complained
(so an exported suppression list stays suppressed, even for an existing
subscriber; bounced and complained suppress the address for every newsletter),
other values of it are ignored; export-only columns (consent_at,
consent_source, created_at) are ignored; every other column becomes an attribute
(empty cells leave a stored attribute as it is). A file whose first cell holds an
"@" has no header: column 1 is the email, column 2 the name.

Export quotes spreadsheet-formula cells (`=`, `+`, `-`, `@`, tab, CR) with a
leading `'`. Import removes that quote again whenever the rest of the cell starts
with one of those characters (after any further quotes), so export -> import
round-trips exactly; a hand-written cell like `'=SUM(A1)` imports as `=SUM(A1)`.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import String, func, select
from sqlalchemy.orm import Session

from digest.clock import utcnow
from digest.errors import InputError
from digest.privatefiles import open_private
from subscribers import store, subscriptions
from subscribers.addresses import clean_name, normalise_email
from subscribers.csvread import CsvSource, guard_cell, open_csv, unguard_cell
from subscribers.model import BLOCKED, STATUSES, SubscriptionStatus, Suppression

SUPPRESSIONS = tuple(Suppression)
BATCH = 1000
MAX_FIELD = 10_000
MAX_REPORTED = 100
EMAIL_HEADERS = {"email", "e-mail", "mail", "email address", "e-mail address", "emailaddress"}
NAME_HEADERS = {"name", "full name", "fullname"}
EXPORT_COLUMNS = ["email", "name", "status", "consent_at", "consent_source", "created_at"]
#: Export-only columns: consent and dates are recorded by this import, not copied.
IGNORED_HEADERS = {"consent at", "consent source", "created at", "updated at"}
#: Prefix for attribute columns whose key collides with a column name above.
ATTRIBUTE_PREFIX = "attribute:"
_ATTR_JUNK = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass
class ImportReport:
    """What an import did. rows = added + updated + unchanged_blocked + folded + invalid."""

    source: str
    rows: int = 0
    added: int = 0
    updated: int = 0
    unchanged_blocked: int = 0
    folded_duplicates: int = 0
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


@dataclass
class _Columns:
    """Where things are in each record."""

    email: int
    name: int | None
    status: int | None
    attributes: list[tuple[int, str]]
    labels: list[str]
    width: int


def _header_key(cell: str) -> str:
    return " ".join(cell.replace("\ufeff", "").replace("_", " ").split()).lower()


def _columns(source: CsvSource, line: int, cells: list[str]) -> tuple[_Columns, bool]:
    """Map the first record to columns; (columns, whether that record was a header)."""
    first = unguard_cell(cells[0].strip()) if cells else ""
    if "@" in first:  # no header row: email, name, then anonymous columns
        extra = [(i, f"column {i + 1}") for i in range(2, len(cells))]
        labels = ["email", "name"] + [k for _, k in extra]
        return _Columns(0, 1 if len(cells) > 1 else None, None, extra, labels, len(cells)), False
    email = name = status = None
    attributes: list[tuple[int, str]] = []
    labels = []
    for i, cell in enumerate(cells):
        label = cell.replace("\ufeff", "").strip() or f"column {i + 1}"
        key = _header_key(label)
        labels.append(label)
        if key in EMAIL_HEADERS and email is None:
            email = i
        elif key in NAME_HEADERS and name is None:
            name = i
        elif key == "status" and status is None:
            status = i
        elif key not in IGNORED_HEADERS:
            attributes.append((i, label.removeprefix(ATTRIBUTE_PREFIX)))
    if email is None:
        found = ", ".join(labels) or "nothing"
        raise InputError(
            f"no email column in the header (expected one of: email, e-mail, mail, "
            f"email address); found: {found[:200]}",
            source=source.name,
            line=line,
        )
    return _Columns(email, name, status, attributes, labels, len(cells)), True


def _parse(cols: _Columns, cells: list[str]) -> tuple[str, str, str, dict[str, str], str | None]:
    """(email, key, name, attributes, blocked status or None) for one record."""
    if max(map(len, cells)) > MAX_FIELD:
        for i, value in enumerate(cells):
            if len(value) > MAX_FIELD:
                label = cols.labels[i] if i < len(cols.labels) else f"column {i + 1}"
                raise InputError(
                    f"is {len(value):,} characters long; at most {MAX_FIELD:,} are allowed",
                    field=label,
                )
    width = len(cells)
    if width < cols.width:
        cells = cells + [""] * (cols.width - width)
    elif width > cols.width and any(c.strip() for c in cells[cols.width :]):
        raise InputError(f"the row has {width} fields but the header has {cols.width}")

    email, key = normalise_email(unguard_cell(cells[cols.email]))
    name = clean_name(unguard_cell(cells[cols.name])) if cols.name is not None else ""
    status = None
    if cols.status is not None:
        status = cells[cols.status].strip().lower() or None
        if status is not None and status not in STATUSES:
            raise InputError(
                f"must be one of {', '.join(STATUSES)}; got {status!r}", field="status"
            )
    attributes = {}
    for index, label in cols.attributes:
        value = cells[index]
        if value:
            value = _ATTR_JUNK.sub("", unguard_cell(value)).strip()
            if value:
                attributes[label] = value
    return email, key, name, attributes, status if status in BLOCKED else None


class _Importer:
    """Folds a batch of parsed rows, then upserts addresses and subscriptions, and reports."""

    def __init__(
        self,
        session: Session,
        report: ImportReport,
        newsletter_id: int,
        status: SubscriptionStatus,
        source: str,
    ) -> None:
        self.session, self.report, self.source = session, report, source
        self.newsletter_id, self.status = newsletter_id, status
        self.now = utcnow()
        self.batch: dict[str, list[Any]] = {}
        self.blocked_seen: set[str] = set()

    def add(
        self, email: str, key: str, name: str, attrs: dict[str, str], blocked: str | None
    ) -> None:
        held = self.batch.get(key)
        if held is None:
            self.batch[key] = [email, name, attrs, blocked]
            if len(self.batch) >= BATCH:
                self.flush()
            return
        self.report.folded_duplicates += 1
        held[0] = email
        held[1] = name or held[1]
        held[2] = {**held[2], **attrs}
        held[3] = held[3] or blocked

    def _existing(self) -> dict[str, tuple[Any, ...]]:
        """key -> (suppression, attributes, touched by this import, subscription status)."""
        a, s = store.TABLE.c, subscriptions.TABLE.c
        found = self.session.execute(
            select(a.email_key, a.suppression, a.attributes, a.updated_at == self.now, s.status)
            .select_from(store.TABLE)
            .outerjoin(
                subscriptions.TABLE,
                (s.subscriber_id == a.id) & (s.newsletter_id == self.newsletter_id),
            )
            .where(a.email_key.in_(list(self.batch)))
        )
        return {row[0]: tuple(row[1:]) for row in found}

    def flush(self) -> None:
        if not self.batch:
            return
        existing = self._existing()
        addresses, plans = [], []
        report = self.report
        for key, (email, name, attrs, blocked) in self.batch.items():
            old = existing.get(key)
            if old is None:
                report.added += 1
            elif old[0] is not None or old[3] == SubscriptionStatus.UNSUBSCRIBED:
                if key in self.blocked_seen:
                    report.folded_duplicates += 1
                else:
                    self.blocked_seen.add(key)
                    report.unchanged_blocked += 1
                continue
            else:
                if old[2]:  # written earlier in this very import
                    report.folded_duplicates += 1
                else:
                    report.updated += 1
                attrs = {**(old[1] or {}), **attrs}
            if blocked:
                self.blocked_seen.add(key)
            suppression = Suppression(blocked) if blocked in SUPPRESSIONS else None
            addresses.append(store.address_row(email, key, name, attrs, suppression, self.source))
            status = SubscriptionStatus.UNSUBSCRIBED if blocked == "unsubscribed" else self.status
            plans.append((key, status))
        store.upsert_addresses(self.session, addresses, self.now)
        ids = store.ids_for(self.session, [key for key, _ in plans])
        rows = [
            subscriptions.row(self.newsletter_id, ids[key], status, self.source, self.now)
            for key, status in plans
        ]
        subscriptions.upsert(self.session, rows, self.now)
        self.batch.clear()


def import_csv(
    session: Session,
    path: Path,
    newsletter_id: int,
    *,
    confirmed: bool,
    skip_invalid: bool = False,
) -> ImportReport:
    """Import subscribers from a CSV file within the caller's transaction.

    Raises ImportFailed (an InputError naming the first bad row) when any row is
    invalid and `skip_invalid` is false; the caller must then roll back (its
    session_scope does), which leaves the store unchanged.
    """
    path = Path(path)
    with open_csv(path) as source:
        report = ImportReport(source.name, encoding=source.encoding, delimiter=source.delimiter)
        status = SubscriptionStatus.CONFIRMED if confirmed else SubscriptionStatus.PENDING
        importer = _Importer(session, report, newsletter_id, status, f"import:{path.name}")
        cols: _Columns | None = None
        first_error: InputError | None = None
        for line, cells in source.records():
            if not any(c.strip() for c in cells):
                continue
            if cols is None:
                cols, was_header = _columns(source, line, cells)
                if was_header:
                    continue
            report.rows += 1
            try:
                parsed = _parse(cols, cells)
            except InputError as exc:
                error = InputError(
                    bare_message(exc), source=source.name, line=line, field=exc.field
                )
                report.note_invalid(str(error))
                first_error = first_error or error
                continue
            if first_error is None or skip_invalid:
                importer.add(*parsed)
        if cols is None:
            raise InputError("the file is empty", source=source.name)
        if first_error is not None and not skip_invalid:
            raise ImportFailed(first_error, report)
        importer.flush()
    return report


def export_csv(session: Session, path: Path, newsletter_id: int) -> int:
    """Write a newsletter's subscribers to `path` (UTF-8) and return how many were written.

    Streams from the database; writes a temporary file next to `path` and renames
    it, so an interrupted export never leaves half a file behind.
    """
    path = Path(path)
    a, s = store.TABLE.c, subscriptions.TABLE.c
    joined = store.TABLE.join(
        subscriptions.TABLE, (s.subscriber_id == a.id) & (s.newsletter_id == newsletter_id)
    )
    keys: set[str] = set()
    for attrs in session.scalars(
        select(a.attributes).select_from(joined).execution_options(yield_per=5000)
    ):
        keys.update(attrs or {})
    attribute_keys = sorted(keys)
    taken = EMAIL_HEADERS | NAME_HEADERS | IGNORED_HEADERS | {"status"}
    headers = [
        ATTRIBUTE_PREFIX + k if _header_key(k) in taken or k.startswith(ATTRIBUTE_PREFIX) else k
        for k in attribute_keys
    ]
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    written = 0
    query = (
        select(
            a.email,
            a.name,
            func.coalesce(a.suppression, s.status, type_=String()),
            s.consent_at,
            s.consent_source,
            s.created_at,
            a.attributes,
        )
        .select_from(joined)
        .order_by(a.id)
        .execution_options(yield_per=1000)
    )
    try:
        with open_private(tmp, "w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(EXPORT_COLUMNS + headers)
            for (
                email,
                name,
                status,
                consent_at,
                consent_source,
                created_at,
                attrs,
            ) in session.execute(query):
                attrs = attrs or {}
                cells = [email, name, status, _iso(consent_at), consent_source, _iso(created_at)]
                cells += [str(attrs.get(k, "")) for k in attribute_keys]
                writer.writerow([guard_cell(x) for x in cells])
                written += 1
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(
            f"cannot write the file: {exc.strerror or exc}", source=str(path)
        ) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return written


def _iso(value: datetime | None) -> str:
    """ISO 8601 in UTC (the store hands back aware UTC datetimes)."""
    if value is None:
        return ""
    return value.astimezone(UTC).isoformat(timespec="seconds")
