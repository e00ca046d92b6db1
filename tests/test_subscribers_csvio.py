"""CSV import/export against a real SQLite store, with files as people really make them."""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from digest.editorial import newsletters
from digest.errors import InputError
from digest.store.engine import get_engine, session_scope
from subscribers import store, subscriptions
from subscribers.csvio import ImportFailed, ImportReport, export_csv, import_csv
from subscribers.model import SubscriberStatus, Suppression


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


@dataclass
class Row:
    """An address as the default newsletter sees it (what the old single list held)."""

    email: str
    email_key: str
    name: str
    status: str
    attributes: dict
    consent_source: str
    consent_at: object


def nl(engine) -> int:  # type: ignore[no-untyped-def]
    with session_scope(engine) as s:
        return newsletters.ensure_default(s).id


def run_import(engine, path: Path, *, confirmed: bool = True, skip_invalid: bool = False):  # type: ignore[no-untyped-def]
    newsletter = nl(engine)
    with session_scope(engine) as s:
        return import_csv(s, path, newsletter, confirmed=confirmed, skip_invalid=skip_invalid)


def rows_of(engine) -> list[Row]:  # type: ignore[no-untyped-def]
    newsletter = nl(engine)
    with session_scope(engine) as s:
        return [
            Row(
                m.subscriber.email,
                m.subscriber.email_key,
                m.subscriber.name,
                m.status,
                m.subscriber.attributes,
                m.subscription.consent_source,
                m.subscription.consent_at,
            )
            for m in subscriptions.members(s, newsletter)
        ]


def snapshot(engine) -> list[tuple]:  # type: ignore[no-untyped-def]
    return [(r.email, r.name, r.status, r.attributes, r.consent_source) for r in rows_of(engine)]


def by_email(engine) -> dict[str, Row]:  # type: ignore[no-untyped-def]
    return {r.email: r for r in rows_of(engine)}


def add(engine, email: str, name: str = "", status: str = "pending", **kw):  # type: ignore[no-untyped-def]
    newsletter = nl(engine)
    with session_scope(engine) as s:
        return subscriptions.add(s, newsletter, email, name, status=status, **kw)


def block(engine, email: str, how: str) -> None:  # type: ignore[no-untyped-def]
    newsletter = nl(engine)
    with session_scope(engine) as s:
        if how == "unsubscribed":
            subscriptions.unsubscribe(s, newsletter, email)
        else:
            store.suppress(s, store.require(s, email).id, Suppression(how), "test")


# -- decoding and dialects -------------------------------------------------------


def test_utf8_bom_file(engine, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    path = write(workdir / "bom.csv", "\ufeffE-Mail,Full Name\r\nanna@example.com,Anna Ä\r\n")
    report = run_import(engine, path)
    assert (report.encoding, report.delimiter, report.added) == ("utf-8-sig", ",", 1)
    assert by_email(engine)["anna@example.com"].name == "Anna Ä"


def test_windows_1251_with_cyrillic_names_and_semicolons(engine, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    text = "email;name;Город\r\nivan@example.ru;Иван Петров;Москва\r\nolga@example.ru;Ольга, Смирнова;\r\n"
    path = write(workdir / "excel.csv", text, "cp1251")
    report = run_import(engine, path)
    assert (report.encoding, report.delimiter, report.added) == ("windows-1251", ";", 2)
    rows = by_email(engine)
    assert rows["ivan@example.ru"].name == "Иван Петров"
    assert rows["ivan@example.ru"].attributes == {"Город": "Москва"}
    assert rows["olga@example.ru"].name == "Ольга, Смирнова"
    assert rows["olga@example.ru"].attributes == {}


def test_utf16_file_with_tabs(engine, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    path = write(workdir / "u16.csv", "Email\tName\nmaria@example.es\tMaría Núñez\n", "utf-16")
    report = run_import(engine, path)
    assert (report.encoding, report.delimiter, report.added) == ("utf-16", "\t", 1)
    assert by_email(engine)["maria@example.es"].name == "María Núñez"


def test_pipe_delimiter_and_no_header_row(engine, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    path = write(workdir / "plain.csv", "a@example.com|Anna|VIP\nb@example.com|Boris|\n")
    report = run_import(engine, path)
    assert (report.delimiter, report.rows, report.added) == ("|", 2, 2)
    rows = by_email(engine)
    assert rows["a@example.com"].name == "Anna"
    assert rows["a@example.com"].attributes == {"column 3": "VIP"}


def test_single_column_without_header(engine, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    path = write(workdir / "one.csv", "a@example.com\n\nB@Example.com\n")
    report = run_import(engine, path, confirmed=False)
    assert (report.rows, report.added) == (2, 2)
    assert {r[0]: r[2] for r in snapshot(engine)} == {
        "a@example.com": SubscriberStatus.PENDING,
        "B@example.com": SubscriberStatus.PENDING,
    }


def test_quoted_newlines_keep_line_numbers_right(engine, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    text = (
        "email,name,note\n"
        'a@example.com,"Anna\nKarenina","line one\nline two"\n'
        "b@example.com,Boris,\n"
        "broken-address,Carl,\n"
    )
    path = write(workdir / "subscribers.csv", text)
    with pytest.raises(ImportFailed) as info:
        run_import(engine, path)
    assert str(info.value).startswith(f"{path}:6: email: ")  # the record on lines 2-4
    report = run_import(engine, path, skip_invalid=True)
    assert report.added == 2 and report.invalid_count == 1
    a = by_email(engine)["a@example.com"]
    assert a.name == "Anna Karenina"  # names are one line (they go into To: headers)
    assert a.attributes == {"note": "line one\nline two"}


def test_huge_field_is_an_error_for_its_line_and_field(engine, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    path = write(
        workdir / "big.csv",
        "email,name\nok@example.com,Ok\nhuge@example.com," + "x" * 100_000 + "\n",
    )
    with pytest.raises(InputError) as info:
        run_import(engine, path)
    message = str(info.value)
    assert message.startswith(f"{path}:3: name: is 100,000 characters long; at most 10,000")
    assert snapshot(engine) == []


def test_unclosed_quote_beyond_parser_limit_is_a_clear_error(engine, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    path = write(workdir / "quote.csv", 'email,name\na@example.com,"open\n' + "y" * 1_100_000)
    with pytest.raises(InputError, match=r"quote\.csv:2: a field is longer than .*quote"):
        run_import(engine, path)
    assert snapshot(engine) == []


# -- validation ---------------------------------------------------------------------


def test_invalid_rows_change_nothing_and_name_first_bad_line(engine, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    add(engine, "existing@example.com", "Old Name")
    before = snapshot(engine)
    lines = ["email,name"] + [f"user{i}@example.com,U{i}" for i in range(1500)]
    lines[17 - 1] = "no-at-sign.example.com,Bad"  # physical line 17
    lines.append("x@@example.com,Worse")
    lines.append("existing@example.com,New Name")
    path = write(workdir / "subscribers.csv", "\n".join(lines) + "\n")
    with pytest.raises(ImportFailed) as info:
        run_import(engine, path)
    err = info.value
    assert str(err).startswith(f"{path}:17: email: An email address must have an @-sign.")
    assert "and 1 more invalid rows" in str(err) and "nothing was imported" in str(err)
    assert (err.line, err.field) == (17, "email")
    assert err.report.invalid_count == 2
    assert err.report.invalid[1].startswith(f"{path}:1502: email: ")
    assert snapshot(engine) == before  # the batch flushed before line 17 was rolled back


def test_skip_invalid_imports_the_rest(engine, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    text = "email,name\ngood@example.com,G\nbad@,B\nalso-good@example.com,A\n"
    path = write(workdir / "s.csv", text)
    report = run_import(engine, path, skip_invalid=True)
    assert (report.rows, report.added, report.invalid_count) == (3, 2, 1)
    assert report.invalid == [f"{path}:3: email: There must be something after the @-sign."]
    assert "1 invalid" in report.summary()


def test_missing_email_column_and_empty_file(engine, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    path = write(workdir / "h.csv", "\n\nname,city\nAnna,Riga\n")
    with pytest.raises(InputError, match=r"h\.csv:3: no email column .*found: name, city"):
        run_import(engine, path)
    with pytest.raises(InputError, match="empty"):
        run_import(engine, write(workdir / "e.csv", "\n\n"))
    with pytest.raises(InputError, match="cannot read"):
        run_import(engine, workdir / "missing.csv")


def test_extra_fields_and_bad_status_are_row_errors(engine, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    text = "email,status\na@example.com,active\nb@example.com,confirmed,extra\nc@example.com,\n"
    path = write(workdir / "x.csv", text)
    report = run_import(engine, path, skip_invalid=True)
    assert report.invalid == [
        (
            f"{path}:2: status: must be one of pending, confirmed, unsubscribed, bounced, "
            "complained; got 'active'"
        ),
        f"{path}:3: the row has 3 fields but the header has 2",
    ]
    assert report.added == 1


def test_idn_domains_accepted(engine, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    path = write(workdir / "idn.csv", "email,name\nиван@пример.рф,Иван\nuser@BÜCHER.de,User\n")
    report = run_import(engine, path)
    assert report.added == 2
    assert set(by_email(engine)) == {"иван@пример.рф", "user@bücher.de"}


# -- folding, blocking, consent -------------------------------------------------------


def test_duplicates_in_different_case_fold_last_wins(engine, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    text = (
        "email,name,city\n"
        "Anna@Example.com,Anna,Riga\n"
        "anna@example.com,Anna K,\n"
        "ANNA@EXAMPLE.COM,,Oslo\n"
        "boris@example.com,Boris,\n"
    )
    report = run_import(engine, write(workdir / "d.csv", text))
    assert (report.rows, report.added, report.folded_duplicates) == (4, 2, 2)
    rows = by_email(engine)
    assert len(rows) == 2
    anna = next(r for r in rows.values() if r.email_key == "anna@example.com")
    assert (anna.name, anna.attributes) == ("Anna K", {"city": "Oslo"})


@pytest.mark.parametrize(
    "blocked",
    [SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED],
)
def test_blocked_addresses_are_never_revived(engine, workdir: Path, blocked: str) -> None:  # type: ignore[no-untyped-def]
    add(engine, "gone@example.com", "Gone", status="confirmed")
    block(engine, "gone@example.com", blocked)
    add(engine, "waiting@example.com", "W")
    text = "email,name\nGONE@example.com,Revived?\nwaiting@example.com,\ngone@example.com,Again\n"
    report = run_import(engine, write(workdir / "members.csv", text), confirmed=True)
    assert (report.unchanged_blocked, report.updated, report.folded_duplicates) == (1, 1, 1)
    rows = by_email(engine)
    assert (rows["gone@example.com"].status, rows["gone@example.com"].name) == (blocked, "Gone")
    waiting = rows["waiting@example.com"]
    assert waiting.status == SubscriberStatus.CONFIRMED and waiting.name == "W"
    assert waiting.consent_source == "import:members.csv" and waiting.consent_at is not None


def test_pending_import_keeps_confirmed_people_confirmed(engine, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    add(engine, "c@example.com", status="confirmed", source="web")
    report = run_import(
        engine, write(workdir / "p.csv", "c@example.com\nn@example.com\n"), confirmed=False
    )
    assert (report.added, report.updated) == (1, 1)
    rows = by_email(engine)
    assert rows["c@example.com"].status == SubscriberStatus.CONFIRMED
    assert rows["c@example.com"].consent_source == "web"
    assert (
        rows["n@example.com"].status == SubscriberStatus.PENDING
        and rows["n@example.com"].consent_at is None
    )


def test_twenty_thousand_rows_with_duplicates_across_batches(engine, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    path = workdir / "many.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["email", "name", "plan"])
        for i in range(20_000):
            w.writerow([f"reader{i}@example.com", f"Reader {i}", "free"])
        for i in range(0, 20_000, 100):  # 200 repeats, far from their first occurrence
            w.writerow([f"READER{i}@example.com", f"Reader {i} again", "paid"])
    start = time.perf_counter()
    report = run_import(engine, path)
    assert time.perf_counter() - start < 20
    assert (report.rows, report.added, report.folded_duplicates) == (20_200, 20_000, 200)
    assert report.rows == (
        report.added
        + report.updated
        + report.unchanged_blocked
        + report.folded_duplicates
        + report.invalid_count
    )
    with session_scope(engine) as s:
        assert subscriptions.count(s, nl(engine))[SubscriberStatus.CONFIRMED] == 20_000
        row = store.get_by_email(s, "reader300@example.com")
        assert (row.name, row.attributes) == ("Reader 300 again", {"plan": "paid"})
    again = run_import(engine, path)
    assert (again.added, again.updated, again.folded_duplicates) == (0, 20_000, 200)


# -- export ---------------------------------------------------------------------------------


def test_export_quotes_formula_cells_and_round_trips(engine, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    add(
        engine,
        "a@example.com",
        '=HYPERLINK("http://evil")',
        status="confirmed",
        attributes={"phone": "+1 555 0100", "note": "@SUM(A1)", "q": "'=x"},
    )
    add(engine, "-dash@example.com", "Тест Тестов", attributes={"phone": "-5", "city": "Москва"})
    add(engine, "gone@example.com", "Gone", status="confirmed")
    block(engine, "gone@example.com", "unsubscribed")
    out = workdir / "export.csv"
    newsletter = nl(engine)
    with session_scope(engine) as s:
        assert export_csv(s, out, newsletter) == 3
    raw = out.read_text(encoding="utf-8")
    rows = list(csv.reader(raw.splitlines()))
    assert rows[0] == [
        "email",
        "name",
        "status",
        "consent_at",
        "consent_source",
        "created_at",
        "city",
        "note",
        "phone",
        "q",
    ]
    first = dict(zip(rows[0], rows[1]))
    assert first["name"] == '\'=HYPERLINK("http://evil")'
    assert (first["phone"], first["note"], first["q"]) == ("'+1 555 0100", "'@SUM(A1)", "''=x")
    assert rows[2][0] == "'-dash@example.com"
    assert not any(cell[:1] in "=+-@\t\r" for row in rows for cell in row if cell)

    other = get_engine(f"sqlite:///{workdir / 'other.db'}")
    report = run_import(other, out)
    assert report.added == 3 and report.invalid_count == 0

    def essentials(eng) -> set:  # type: ignore[no-untyped-def]
        return {
            (e, n, st == SubscriberStatus.UNSUBSCRIBED, tuple(sorted(a.items())))
            for e, n, st, a, _ in snapshot(eng)
        }

    assert essentials(other) == essentials(engine)
    assert (
        by_email(other)["gone@example.com"].status == SubscriberStatus.UNSUBSCRIBED
    )  # suppression carried over


def test_export_failure_leaves_no_file(engine, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    add(engine, "a@example.com")
    newsletter = nl(engine)
    with session_scope(engine) as s:
        with pytest.raises(InputError, match="cannot write"):
            export_csv(s, workdir / "no-such-dir" / "x.csv", newsletter)
    assert not list(workdir.glob("**/*.tmp"))


def test_report_summary_mentions_everything() -> None:
    report = ImportReport(
        "f.csv",
        rows=5,
        added=2,
        updated=1,
        unchanged_blocked=1,
        folded_duplicates=1,
        encoding="utf-8",
        delimiter="\t",
    )
    text = report.summary()
    for part in (
        "f.csv",
        "5 rows",
        "2 added",
        "1 updated",
        "1 left alone",
        "1 duplicates",
        "0 invalid",
        "utf-8",
        "tab",
    ):
        assert part in text


def test_bad_bytes_after_the_sniffed_part_name_their_line(engine, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    good = "".join(f"user{i}@example.com,User {i}\n" for i in range(4000))  # > 64 KB of UTF-8
    assert len(good) > 64 * 1024
    path = workdir / "mixed.csv"
    path.write_bytes(b"email,name\n" + good.encode() + "late@example.com,Пётр\n".encode("cp1251"))
    with pytest.raises(InputError) as info:
        run_import(engine, path)
    assert (
        str(info.value)
        == (
            f"{path}:4002: the file is not valid utf-8 text (byte 0xf2); save it as UTF-8"  # П+ё happen to be valid UTF-8
        )
    )
    assert snapshot(engine) == []
