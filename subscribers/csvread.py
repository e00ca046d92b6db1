"""Reading CSV files as people actually produce them.

Excel on Windows writes Windows-1251 or UTF-16, Google Sheets writes UTF-8, some
tools add a BOM, European locales use `;`. We decide the encoding and delimiter
once from the first 64 KB, then stream records with the physical line number
where each one starts, so errors can point at the right line even when quoted
fields contain newlines.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from digest.errors import InputError

SNIFF_BYTES = 64 * 1024
SNIFF_ROWS = 50
DELIMITERS = (",", ";", "\t", "|")
#: The csv module refuses longer fields; ours are capped far lower (see csvio), but a
#: long field must become a clear error for its line rather than a parser failure.
PARSER_FIELD_LIMIT = 1024 * 1024
FALLBACK_ENCODING = "windows-1251"

# Spreadsheet formula guard: a cell starting with one of these characters is
# prefixed with a quote on export; the quote is removed again on import.
FORMULA_START = "=+-@\t\r"
_NEEDS_GUARD = re.compile(r"'*[=+\-@\t\r]")
_GUARDED = re.compile(r"'(?='*[=+\-@\t\r])")


def guard_cell(value: str) -> str:
    """Prefix a quote so spreadsheets show the cell as text, not a formula.

    Values already starting with quotes before such a character get one more, so
    `unguard_cell` restores every value exactly.
    """
    return "'" + value if _NEEDS_GUARD.match(value) else value


def unguard_cell(value: str) -> str:
    """Undo `guard_cell`: drop one leading quote if a formula character follows it."""
    return value[1:] if value[:1] == "'" and _GUARDED.match(value) else value


def detect_encoding(head: bytes) -> str:
    """The codec for a file starting with `head`: BOM first, then UTF-8, then Windows-1251."""
    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return "utf-32"
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if len(head) >= 4 and b"\0" in head:
        # BOM-less UTF-16: mostly ASCII text leaves a NUL in every other byte.
        even, odd = head[0::2].count(0), head[1::2].count(0)
        if odd > len(head) // 4 and even == 0:
            return "utf-16-le"
        if even > len(head) // 4 and odd == 0:
            return "utf-16-be"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return FALLBACK_ENCODING
    return "utf-8"


def sniff_delimiter(sample: str, *, truncated: bool) -> str:
    """The candidate delimiter giving the most consistent number (> 1) of columns."""
    if truncated:
        cut = max(sample.rfind("\n"), sample.rfind("\r"))
        sample = sample[:cut] if cut > 0 else sample
    best, best_score = ",", (0.0, 0)
    for delimiter in DELIMITERS:
        counts: list[int] = []
        try:
            for cells in csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter):
                if any(c.strip() for c in cells):
                    counts.append(len(cells))
                if len(counts) >= SNIFF_ROWS:
                    break
        except csv.Error:
            continue
        if truncated and len(counts) > 1 and len(counts) < SNIFF_ROWS:
            counts.pop()  # the last record may be cut off mid-way
        if not counts:
            continue
        mode, hits = Counter(counts).most_common(1)[0]
        if mode < 2:
            continue
        score = (hits / len(counts), mode)
        if score > best_score:
            best, best_score = delimiter, score
    return best


@dataclass
class CsvSource:
    """An opened CSV file: its decoding, its delimiter and its records."""

    path: Path
    encoding: str
    delimiter: str
    stream: io.TextIOWrapper

    @property
    def name(self) -> str:
        return str(self.path)

    def records(self) -> Iterator[tuple[int, list[str]]]:
        """(line where the record starts, cells) for every record, blank lines included."""
        if csv.field_size_limit() < PARSER_FIELD_LIMIT:
            csv.field_size_limit(PARSER_FIELD_LIMIT)
        reader = csv.reader(self.stream, delimiter=self.delimiter)
        previous = 0
        while True:
            start = previous + 1
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise InputError(_csv_problem(exc), source=self.name, line=start) from None
            except UnicodeDecodeError as exc:
                line, byte = locate_decode_error(self.path, self.encoding)
                if line is None:
                    line, byte = start, exc.object[exc.start]
                raise InputError(
                    f"the file is not valid {self.encoding} text (byte 0x{byte:02x}); "
                    "save it as UTF-8",
                    source=self.name,
                    line=line,
                ) from None
            previous = reader.line_num
            yield start, cells


def locate_decode_error(path: Path, encoding: str) -> tuple[int | None, int]:
    """(line, offending byte) of the first decoding error; only called once one happened.

    The text stream decodes ahead in chunks, so its position cannot tell the line;
    for the ASCII-compatible encodings we guess, re-reading line by line finds it.
    """
    if encoding not in ("utf-8", "utf-8-sig", FALLBACK_ENCODING):
        return None, 0
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, 1):
            try:
                raw.decode(encoding)
            except UnicodeDecodeError as exc:
                return number, raw[exc.start]
    return None, 0


def _csv_problem(exc: csv.Error) -> str:
    text = str(exc)
    if "field larger than field limit" in text:
        return f"a field is longer than {PARSER_FIELD_LIMIT:,} characters (is a quote left open?)"
    return f"cannot read the CSV record: {text}"


@contextmanager
def open_csv(path: Path) -> Iterator[CsvSource]:
    """Open `path` for streaming, with its encoding and delimiter decided up front."""
    try:
        raw = path.open("rb")
    except OSError as exc:
        raise InputError(f"cannot read the file: {exc.strerror or exc}", source=str(path)) from None
    try:
        head = raw.read(SNIFF_BYTES)
        encoding = detect_encoding(head)
        truncated = len(head) == SNIFF_BYTES
        sample = codecs.getincrementaldecoder(encoding)(errors="replace").decode(
            head, final=not truncated
        )
        delimiter = sniff_delimiter(sample, truncated=truncated)
        raw.seek(0)
        stream = io.TextIOWrapper(raw, encoding=encoding, errors="strict", newline="")
        yield CsvSource(path, encoding, delimiter, stream)
    finally:
        raw.close()
