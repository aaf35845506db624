"""Importing ticket history from CSV: Zendesk's and Freshdesk's exports, built from their
real header lists in ../shared/testdata/support/csv-headers/, read without a mapping; any
other file with one; BOM, semicolons and Windows-1252; bad rows reported by the line they
start on while the rest are stored; dry runs; re-imports; one commit per batch; the CLI
and the console upload, with its roles and CSRF; and the page in Chromium."""

from __future__ import annotations

import csv
import io
import re
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

import click.testing
import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.orm import Session
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from announcements import ticket_import
from announcements.errors import ValidationFailed
from announcements.models import (
    AuditEvent,
    EndUser,
    Role,
    SupportConnection,
    SupportDesk,
    TeamMember,
    Ticket,
)
from announcements.ticket_import import Report, parse_time, read_csv
from announcements.tickets import check_ticket, email_key, store
from app.console import support_import
from app.extensions import db
from tests.browser import DESKTOP, PHONE, SCREENSHOTS
from tests.conftest import SHARED_TESTDATA, csrf_token
from tests.factories import add_member, make_member, make_product
from tests.test_browser_console import log_in

HEADER_LISTS = SHARED_TESTDATA / "support" / "csv-headers"
SECRET = "test-secret"  # the SECRET_KEY of the test app
NOW = datetime(2026, 4, 1, 12, 0, tzinfo=UTC)


def real_headers(desk: str) -> list[str]:
    path = HEADER_LISTS / f"{desk}-ticket-csv-export.headers.txt"
    if not path.exists():
        pytest.skip(f"{path} is absent: the real {desk} header list is not in the test data")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def csv_bytes(
    headers: list[str],
    rows: list[dict[str, str]],
    *,
    delimiter: str = ",",
    encoding: str = "utf-8",
) -> bytes:
    """A file with these headers; each row gives some columns, the others are empty."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(headers)
    for row in rows:
        assert set(row) <= set(headers), set(row) - set(headers)
        writer.writerow([row.get(header, "") for header in headers])
    return out.getvalue().encode(encoding)


def run(session: Session, product, data: bytes, **options) -> Report:
    return ticket_import.import_tickets(
        session, product, read_csv(data), secret_key=SECRET, now=NOW, **options
    )


def stored(session: Session, product) -> list[tuple]:
    """What the database holds, read afresh: id, source, time, tags, subject, version, user."""
    session.expire_all()
    tickets = session.scalars(
        select(Ticket).where(Ticket.product_id == product.id).order_by(Ticket.external_id)
    )
    return [
        (
            t.external_id,
            t.source,
            t.created_at,
            t.tags,
            t.subject,
            t.app_version,
            t.end_user_id,
        )
        for t in tickets
    ]


def count(session: Session, model=Ticket) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).select_from(model))


def end_user(session: Session, product, external_id: str, email: str | None = None) -> int:
    user = EndUser(
        product_id=product.id,
        external_id=external_id,
        email_key=email_key(SECRET, email) if email else None,
    )
    session.add(user)
    session.commit()
    return user.id


def imports_audited(session: Session) -> list[str]:
    session.expire_all()
    query = select(AuditEvent.summary).where(AuditEvent.action == "tickets.imported")
    return list(session.scalars(query.order_by(AuditEvent.id)))


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# Known exports ----------------------------------------------------------------------


def test_a_zendesk_export_is_read_without_a_mapping(session) -> None:
    headers = real_headers("zendesk")
    product = make_product(session)
    by_id = end_user(session, product, "u-1")
    by_address = end_user(session, product, "u-2", email="Ann@Example.com")
    end_user(session, product, "5001")  # Zendesk's own requester id, which is not the host's
    data = csv_bytes(
        headers,
        [
            {
                "Id": "101",
                "Requester": "Bob",
                "Requester id": "5001",
                "Requester external id": "u-1",
                "Requester email": "bob@example.com",
                "Tags": "export  Billing",
                "Subject": "Export fails",
                "Status": "open",
                "Created at": "2026-03-01 09:30:00",
                "Updated at": "2026-03-02 10:00:00",
            },
            {
                "Id": "102",
                "Requester id": "5001",
                "Requester email": "ann@example.com",
                "Subject": "Hello",
                "Created at": "2026-03-02T10:00:00+02:00",
            },
            {
                "Id": "103",
                "Requester id": "5001",
                "Requester email": "nobody@example.com",
                "Tags": "login",
                "Created at": "2026-03-03 08:00:00 +0000",
            },
        ],
    )
    report = run(session, product, data)
    assert (report.format, report.source, report.rows) == ("Zendesk ticket export", "zendesk", 3)
    assert (report.created, report.updated, report.unchanged, report.bad) == (3, 0, 0, [])
    assert stored(session, product) == [
        ("101", "zendesk", at("2026-03-01 09:30"), ["export", "billing"], "Export fails", None,
         by_id),
        ("102", "zendesk", at("2026-03-02 08:00"), [], "Hello", None, by_address),
        ("103", "zendesk", at("2026-03-03 08:00"), ["login"], None, None, None),
    ]  # fmt: skip


def test_a_freshdesk_export_is_read_without_a_mapping(session) -> None:
    headers = real_headers("freshdesk")
    product = make_product(session)
    contact = end_user(session, product, "7")  # Freshdesk's Contact ID is not the host's id
    row = {
        "Ticket ID": "7",
        "Subject": "Can't export",
        "Status": "Open",
        "Tags": "export, Billing,two words",
        "Created time": "2026-03-01 09:30:00",
        "Last update time": "2026-03-01 11:00:00",
        "Full name": "Ann",
        "Contact ID": "7",
    }
    report = run(session, product, csv_bytes(headers, [row]))
    assert (report.format, report.source, report.created, report.bad) == (
        "Freshdesk ticket export",
        "freshdesk",
        1,
        [],
    )
    assert stored(session, product) == [
        ("7", "freshdesk", at("2026-03-01 09:30"), ["export", "billing", "two words"],
         "Can't export", None, None),
    ]  # fmt: skip

    # With its contact columns chosen, the export names the requester.
    matched = end_user(session, product, "host-9", email="ann@example.com")
    with_contacts = [*headers, "Email", "Unique external ID"]
    rows = [
        {**row, "Email": "ann@example.com"},
        {**row, "Ticket ID": "8", "Unique external ID": "7"},
    ]
    report = run(session, product, csv_bytes(with_contacts, rows))
    assert (report.created, report.updated) == (1, 1)
    users = {ticket[0]: ticket[6] for ticket in stored(session, product)}
    assert users == {"7": matched, "8": contact}


def test_another_desks_file_imports_with_a_mapping_and_a_source(session) -> None:
    product = make_product(session)
    user = end_user(session, product, "c-1", email="carl@example.com")
    headers = ["Conversation #", "Customer email", "Created", "Labels", "Title", "App build"]
    data = csv_bytes(
        headers,
        [
            {
                "Conversation #": "9001",
                "Customer email": "Carl@Example.com",
                "Created": "2026-02-10T08:15:30.250Z",
                "Labels": "Export, sync",
                "Title": "Sync stalls",
                "App build": "2.4.0",
            }
        ],
    )
    with pytest.raises(ValidationFailed) as unknown:
        run(session, product, data)
    assert "not those of a Zendesk or Freshdesk export" in unknown.value.errors["map"]
    assert "“Conversation #”, “Customer email”, “Created”" in unknown.value.errors["map"]

    mapping = {
        "external_id": "conversation #",  # headers match whatever their case and spacing
        "created_at": "Created",
        "email": "Customer email",
        "tags": "Labels",
        "subject": "Title",
        "app_version": "App build",
    }
    with pytest.raises(ValidationFailed) as no_source:
        run(session, product, data, mapping=mapping)
    assert "Say which desk" in no_source.value.errors["source"]
    with pytest.raises(ValidationFailed) as bad_source:
        run(session, product, data, mapping=mapping, source="help scout!")
    assert "letters, digits" in bad_source.value.errors["source"]
    with pytest.raises(ValidationFailed) as missing:
        run(session, product, data, mapping={**mapping, "subject": "Topic"}, source="helpscout")
    assert missing.value.errors["map"].startswith("The file has no column “Topic”.")
    with pytest.raises(ValidationFailed) as not_a_field:
        run(session, product, data, mapping={"body": "Title"}, source="helpscout")
    assert "“body” is not a Tidings field" in not_a_field.value.errors["map"]
    assert count(session) == 0

    report = run(session, product, data, mapping=mapping, source="HelpScout")
    assert (report.format, report.source, report.created) == ("mapped columns", "helpscout", 1)
    assert stored(session, product) == [
        ("9001", "helpscout", datetime(2026, 2, 10, 8, 15, 30, 250000, tzinfo=UTC),
         ["export", "sync"], "Sync stalls", "2.4.0", user),
    ]  # fmt: skip


def test_a_mapping_overrides_one_column_of_a_known_export(session) -> None:
    headers = real_headers("zendesk")
    product = make_product(session)
    data = csv_bytes(
        [*headers, "App version [text]"],
        [
            {
                "Id": "5",
                "Requester email": "a@example.com",
                "Requester": "Ann",
                "Created at": "2026-03-01 09:30:00",
                "Updated at": "2026-03-05 09:30:00",
                "App version [text]": "3.1.0",
            }
        ],
    )
    report = run(session, product, data, mapping={"created_at": "Updated at", "tags": ""})
    assert report.format == "Zendesk ticket export, with mapped columns"
    [ticket] = stored(session, product)
    assert (ticket[2], ticket[5]) == (at("2026-03-05 09:30"), "3.1.0")


# Encodings and delimiters -----------------------------------------------------------


def test_a_byte_order_mark_semicolons_and_windows_1252_are_read(session) -> None:
    product = make_product(session)
    headers = ["external_id", "created_at", "email", "subject", "tags"]
    rows = [
        {"external_id": "1", "created_at": "2026-03-01 09:00", "email": "a@example.com",
         "subject": "Café – crash, again", "tags": "crash; export"},
    ]  # fmt: skip
    with_bom = b"\xef\xbb\xbf" + csv_bytes(headers, rows, delimiter=";")
    report = run(session, product, with_bom, source="script")
    assert (report.format, report.created) == ("Tidings columns", 1)
    assert read_csv(with_bom).headers[0] == "external_id"  # the mark is not in the header
    assert read_csv(with_bom).delimiter == ";"

    windows = csv_bytes(headers, [{**rows[0], "external_id": "2"}], encoding="cp1252")
    with pytest.raises(UnicodeDecodeError):
        windows.decode("utf-8")
    assert read_csv(windows).encoding == "Windows-1252"
    assert run(session, product, windows, source="script").created == 1
    subjects = {t[0]: (t[4], t[3]) for t in stored(session, product)}
    assert subjects == {
        "1": ("Café – crash, again", ["crash", "export"]),
        "2": ("Café – crash, again", ["crash", "export"]),
    }


# Bad rows -------------------------------------------------------------------------------

BAD_FILE = (
    "external_id,created_at,user_id,subject\r\n"  # 1
    '1,2026-03-01 09:00:00,u1,"A subject\r\n'  # 2
    'over two lines"\r\n'  # 3
    "2,01-03-2026 09:00,u2,a date to guess\r\n"  # 4
    "\r\n"  # 5
    ",2026-03-01 09:00:00,u3,no id\r\n"  # 6
    "3,2026-03-01 09:00:00,u4,fine\r\n"  # 7
    "4,2026-03-01 09:00:00,u5,too,many\r\n"  # 8
    "3,2026-03-02 09:00:00,u4,again\r\n"  # 9
    '5,"2026-03-01 09:00:00"x,u6,a stray quote\r\n'  # 10
    "6,2099-01-01 00:00:00,u7,from the future\r\n"  # 11
    "7,2026-03-01 09:00:00,u8\r\n"  # 12: a short row, its subject left out
    '8,never,u9,"a bad row\r\n'  # 13
    'over two lines"\r\n'  # 14
)


def test_bad_rows_are_reported_by_their_line_and_the_rest_stored(session) -> None:
    product = make_product(session)
    report = run(session, product, BAD_FILE.encode(), source="script")
    assert [line for line, _ in report.bad] == [4, 6, 8, 9, 10, 11, 13]
    reasons = dict(report.bad)
    assert reasons[4].startswith("created_at: “01-03-2026 09:00” is not a time such as")
    assert reasons[6] == "external_id: Send the desk's id of the ticket."
    assert reasons[8] == "5 fields where the header has 4: a field holding a comma needs quotes"
    assert reasons[9] == "ticket 3 is on line 7 too"
    assert reasons[10].startswith("a quote ends a field that goes on")
    assert reasons[11] == "created_at: That time is in the future."
    assert reasons[13].startswith("created_at: “never” is not a time")
    assert (report.rows, report.created, report.bad_rows) == (10, 3, 7)  # the blank line is none
    assert count(session) == 3
    subjects = {t[0]: t[4] for t in stored(session, product)}
    assert subjects == {"1": "A subject over two lines", "3": "fine", "7": None}


def test_a_report_keeps_the_first_bad_rows_and_counts_the_rest(session, monkeypatch) -> None:
    monkeypatch.setattr(ticket_import, "KEPT_BAD_ROWS", 3)
    product = make_product(session)
    data = "external_id,created_at,user_id\n" + "".join(f"{n},never,u\n" for n in range(5))
    report = run(session, product, data.encode(), source="script")
    assert ([line for line, _ in report.bad], report.bad_rows) == ([2, 3, 4], 5)
    assert report.summary == "0 new, 0 updated, 0 unchanged, 5 bad rows"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "The file is empty."),
        (b"\r\n \r\n", "The file is empty."),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "The file is not a text file"),
        (b'external_id,created_at\n1,"2026-03-01\n2,2026-03-02\n', "Line 2: a quoted field"),
        (b"id,\x81\x8d\n", "The file is neither UTF-8 nor Windows-1252"),
    ],
)
def test_a_file_that_cannot_be_read_stores_nothing(session, data: bytes, message: str) -> None:
    product = make_product(session)
    with pytest.raises(ValidationFailed) as refused:
        run(session, product, data, source="script")
    assert refused.value.errors["file"].startswith(message)
    assert count(session) == 0


def test_files_past_the_limits_store_nothing(session, monkeypatch) -> None:
    product = make_product(session)
    data = b"external_id,created_at,email\n" + b"".join(
        b"%d,2026-03-01,a@example.com\n" % n for n in range(4)
    )
    monkeypatch.setattr(ticket_import, "MAX_ROWS", 3)
    with pytest.raises(ValidationFailed, match="more than 3 tickets"):
        run(session, product, data, source="script")
    monkeypatch.setattr(ticket_import, "MAX_ROWS", 4)
    monkeypatch.setattr(ticket_import, "MAX_BYTES", len(data) - 1)
    with pytest.raises(ValidationFailed, match="The file is over"):
        run(session, product, data, source="script")
    assert count(session) == 0
    monkeypatch.setattr(ticket_import, "MAX_BYTES", len(data))
    assert run(session, product, data, source="script").created == 4


@pytest.mark.parametrize(
    ("first_line", "message"),
    [
        (",".join(f"c{n}" for n in range(1001)), "it has 1,001 columns"),
        ("external_id,created_at," + "x" * 201, "a header of 201 characters in column 3"),
        ("x" * 130 * 1024, "The header line cannot be read: a field is longer than 131,072"),
        ("," * 500_000, "it has over 403,000 characters"),
    ],
    ids=["columns", "header", "field-limit", "line"],
)
def test_a_first_line_past_a_header_lines_bounds_stores_nothing(
    session, first_line: str, message: str
) -> None:
    product = make_product(session)
    data = f"{first_line}\n1,2026-03-01\n".encode()
    with pytest.raises(ValidationFailed) as refused:
        run(session, product, data, source="script")
    assert message in refused.value.errors["file"]
    assert count(session) == 0

    widest = ["external_id", "created_at", *(f"{n:03d}".ljust(200, "x") for n in range(998))]
    data = (",".join(widest) + "\n1,2026-03-01\n").encode()
    assert run(session, product, data, source="script").created == 1


def test_a_long_header_is_read_in_time_that_grows_with_its_length(session) -> None:
    """Finding a custom field's "[type]" in a header of 200,000 "[" took 22 s of CPU: each
    "[" started a match that ran to the end. A header that long is now refused (it is not
    a header), and the search takes time in proportion to a header's length anyway."""
    headers = ["Id", "Requester id", "Created at", "[" * 200_000, "App version [Text]"]
    started = time.thread_time()
    assert ticket_import.columns(headers).index["app_version"] == 4
    assert time.thread_time() - started < 1

    product = make_product(session)
    data = (",".join(headers[:3]) + "," + "[" * 120_000 + "\n1,2,2026-03-01,\n").encode()
    started = time.thread_time()
    with pytest.raises(ValidationFailed, match="a header of 120,000 characters in column 4"):
        run(session, product, data)
    assert time.thread_time() - started < 1
    assert count(session) == 0


def test_finding_the_header_line_does_not_split_the_whole_file() -> None:
    """text.splitlines() made a string of every line to find the first: a 50 MB file of
    short lines took 1.2 GB more memory to read. Reading now takes the text and the csv
    reader's copy of it (four bytes a character)."""
    data = b"\r\n  \nexternal_id,created_at\n" + b"ab\n" * 2_000_000
    tracemalloc.start()
    try:
        headers = read_csv(data).headers
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert headers == ["external_id", "created_at"]
    assert peak < 8 * len(data)


# Times ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("2026-03-01", "2026-03-01 00:00"),
        ("2026-03-01 09:30", "2026-03-01 09:30"),
        ("2026-03-01 09:30:15", "2026-03-01 09:30:15"),
        ("2026-03-01T09:30:15Z", "2026-03-01 09:30:15"),
        ("2026-03-01T09:30:15.5+02:00", "2026-03-01 07:30:15.5"),
        ("2026-03-01 09:30:15 +0100", "2026-03-01 08:30:15"),
        ("2026-03-01 09:30:15 -05", "2026-03-01 14:30:15"),
        ("2026-03-01 09:30:15 UTC", "2026-03-01 09:30:15"),
    ],
)
def test_iso_times_are_read_and_a_time_without_offset_is_utc(written: str, expected: str) -> None:
    assert parse_time(written) == at(expected)


@pytest.mark.parametrize("written", ["01-03-2026 09:00", "03/01/2026", "2026-13-01", "soon", ""])
def test_times_that_could_be_misread_are_refused(written: str) -> None:
    with pytest.raises(ValueError, match="is not"):
        parse_time(written)


@pytest.mark.parametrize(
    ("written", "date_format"),
    [
        ("0001-01-01T00:00:00+01:00", None),
        ("9999-12-31 23:59:59-01:00", None),
        ("01.01.0001 00:00 +0100", "%d.%m.%Y %H:%M %z"),
    ],
)
def test_times_outside_the_years_1_to_9999_in_utc_are_refused(
    written: str, date_format: str | None
) -> None:
    with pytest.raises(ValueError, match="is before the year 1 or after 9999 in UTC"):
        parse_time(written, date_format)
    assert parse_time("0001-01-01T01:00:00+01:00") == datetime(1, 1, 1, tzinfo=UTC)


def test_a_time_out_of_range_is_a_bad_row_and_the_next_batches_are_stored(
    session, monkeypatch
) -> None:
    monkeypatch.setattr(ticket_import, "BATCH_ROWS", 2)
    product = make_product(session)
    data = (
        b"external_id,created_at,user_id\n"
        b"1,2026-03-01,u\n2,2026-03-02,u\n"  # the first batch, committed
        b"3,0001-01-01T00:00:00+01:00,u\n4,2026-03-04,u\n"
        b"5,9999-12-31 23:59:59-01:00,u\n6,2026-03-06,u\n"
    )
    report = run(session, product, data, source="script")
    assert [line for line, _ in report.bad] == [4, 6]
    assert report.bad[0][1] == (
        "created_at: “0001-01-01T00:00:00+01:00” is before the year 1 or after 9999 in UTC"
    )
    assert (report.created, report.bad_rows) == (4, 2)
    assert [t[0] for t in stored(session, product)] == ["1", "2", "4", "6"]


def test_a_date_format_giving_a_code_twice_is_refused(session) -> None:
    product = make_product(session)
    data = b"external_id,created_at,user_id\n1,01.03.2026 2026,u\n"
    with pytest.raises(ValidationFailed) as refused:
        run(session, product, data, source="script", date_format="%d.%m.%Y %Y")
    assert refused.value.errors == {
        "date_format": "“%d.%m.%Y %Y” gives a code twice; give each once, such as "
        "%d-%m-%Y %H:%M:%S."
    }
    assert count(session) == 0


def test_a_date_format_reads_day_first_and_month_first_files(session) -> None:
    product = make_product(session)
    data = b"external_id,created_at,user_id\n1,04-03-2026 09:30:00,u\n2,13-03-2026 10:00:00,u\n"
    report = run(session, product, data, source="script")
    assert report.bad_rows == 2 and "%d-%m-%Y %H:%M:%S" in report.bad[0][1]
    report = run(session, product, data, source="script", date_format="%d-%m-%Y %H:%M:%S")
    assert (report.created, report.bad) == (2, [])
    assert [t[2] for t in stored(session, product)] == [
        at("2026-03-04 09:30"),
        at("2026-03-13 10:00"),
    ]

    us = b"external_id,created_at,user_id\n3,03/04/2026,u\n"
    assert run(session, product, us, source="script", date_format="%m/%d/%Y").created == 1
    assert stored(session, product)[-1][2] == at("2026-03-04 00:00")
    for wrong in ("%H:%M", "%Q-%m-%d", "%Y-%m"):
        with pytest.raises(ValidationFailed) as refused:
            run(session, product, us, source="script", date_format=wrong)
        assert "is not a date format" in refused.value.errors["date_format"]


# Dry runs, re-imports, batches ---------------------------------------------------------

THREE = (
    b"external_id,created_at,email,tags\n"
    b"1,2026-03-01 09:00,a@example.com,export\n"
    b"2,2026-03-02 09:00,b@example.com,billing\n"
    b"3,2026-03-03 09:00,c@example.com,\n"
)


def test_a_dry_run_reports_and_writes_nothing(session) -> None:
    product = make_product(session)
    report = run(session, product, THREE, source="script", dry_run=True)
    assert (report.dry_run, report.created, report.updated, report.unchanged) == (True, 3, 0, 0)
    assert (count(session), imports_audited(session)) == (0, [])
    run(session, product, THREE, source="script")
    edited = THREE.replace(b"billing", b"billing refund")
    report = run(session, product, edited, source="script", dry_run=True)
    assert (report.created, report.updated, report.unchanged) == (0, 1, 2)
    assert [t[3] for t in stored(session, product)] == [["export"], ["billing"], []]


def test_a_second_import_changes_nothing_and_an_edited_row_updates(session) -> None:
    product = make_product(session)
    first = run(session, product, THREE, source="script")
    assert (first.created, first.updated, first.unchanged) == (3, 0, 0)
    before = stored(session, product)
    again = run(session, product, THREE, source="script")
    assert (again.created, again.updated, again.unchanged) == (0, 0, 3)
    assert stored(session, product) == before
    edited = run(session, product, THREE.replace(b"billing", b"Billing refund"), source="script")
    assert (edited.created, edited.updated, edited.unchanged) == (0, 1, 2)
    assert [t[3] for t in stored(session, product)] == [["export"], ["billing", "refund"], []]
    assert count(session) == 3
    assert imports_audited(session) == [  # not the import that changed nothing
        "Imported tickets from a CSV file (Tidings columns, script): 3 new, 0 updated, "
        "0 unchanged, 0 bad rows",
        "Imported tickets from a CSV file (Tidings columns, script): 0 new, 1 updated, "
        "2 unchanged, 0 bad rows",
    ]


def test_an_imported_ticket_and_the_desks_delivery_of_it_are_one_row(session) -> None:
    product = make_product(session)
    connection = SupportConnection(
        product_id=product.id, desk=SupportDesk.ZENDESK, source="zendesk", token="t", secret="s"
    )
    session.add(connection)
    session.commit()
    delivered = check_ticket(
        {"external_id": "1", "created_at": "2026-03-01T09:00:00Z", "email": "a@example.com",
         "tags": ["export"]},
        source="zendesk",
    )  # fmt: skip
    store(session, product, delivered, secret_key=SECRET, connection=connection, now=NOW)
    session.commit()
    report = run(session, product, THREE, source="zendesk")
    assert (report.created, report.updated, report.unchanged) == (2, 0, 1)
    session.expire_all()
    rows = session.scalars(select(Ticket).order_by(Ticket.external_id)).all()
    assert [(t.external_id, t.connection_id) for t in rows] == [
        ("1", connection.id),
        ("2", connection.id),
        ("3", connection.id),
    ]


def test_each_batch_is_committed_before_progress_is_reported(session, monkeypatch) -> None:
    monkeypatch.setattr(ticket_import, "BATCH_ROWS", 2)
    product = make_product(session)
    data = b"external_id,created_at,email\n" + b"".join(
        b"%d,2026-03-01,a@example.com\n" % n for n in range(5)
    )
    seen: list[tuple[int, int, int]] = []

    def progress(done: int, total: int) -> None:
        # Another connection sees each batch as soon as it is reported: committed.
        with db.engine.connect() as other:
            found = other.scalar(text("SELECT count(*) FROM ticket"))
        seen.append((done, total, found))

    commits: list[int] = []
    event.listen(session(), "after_commit", lambda s: commits.append(1))
    report = run(session, product, data, source="script", progress=progress)
    assert seen == [(2, 5, 2), (4, 5, 4), (5, 5, 5)]
    assert (report.created, len(commits)) == (5, 4)  # three batches and the audit event

    seen.clear()
    report = run(session, product, data, source="script", dry_run=True, progress=progress)
    assert seen == [(2, 5, 5), (4, 5, 5), (5, 5, 5)]
    assert report.unchanged == 5


def test_each_batch_is_stored_in_a_few_statements_not_a_few_a_row(session) -> None:
    """1,200 rows make three batches: each reads the stored rows and the requesters' users
    once, inserts its new rows at once, and updates only the changed ones."""
    product = make_product(session)
    end_user(session, product, "u-1", "kim@example.com")
    lines = [b"external_id,created_at,user_id,email,tags"]
    for number in range(1, 1201):
        requester = b"u-1," if number % 2 else b",kim@example.com"
        lines.append(b"%d,2026-03-01 09:00,%s,export" % (number, requester))
    lines[700] = b"1,2026-03-01 09:00,u-1,,again"  # line 701: ticket 1 again, a batch later
    lines[900] = b"x,yesterday,u-1,,export"  # line 901: a bad row
    data = b"\n".join(lines) + b"\n"
    ran: list[str] = []

    def note(_connection, _cursor, statement, *_args) -> None:
        table = re.search(r"\b(?:FROM|INTO|UPDATE) (ticket|end_user)\b", statement)
        if table:
            ran.append(f"{statement.split(None, 1)[0]} {table[1]}")

    event.listen(db.engine, "before_cursor_execute", note)
    try:
        report = run(session, product, data, source="script")
        new = list(ran)
        ran.clear()
        again = run(
            session, product, data.replace(b",export\n", b",billing\n", 10), source="script"
        )
    finally:
        event.remove(db.engine, "before_cursor_execute", note)
    assert (report.created, report.updated, report.unchanged, report.bad_rows) == (1198, 0, 0, 2)
    assert dict(report.bad)[701] == "ticket 1 is on line 2 too"
    assert dict(report.bad)[901].startswith("created_at: “yesterday” is not a time")
    # Per batch: the stored rows, the users by id and by address, the new rows.
    batch = ["SELECT ticket", "SELECT end_user", "SELECT end_user", "INSERT ticket"]
    assert new == batch * 3
    assert (again.created, again.updated, again.unchanged) == (0, 10, 1188)
    assert ran == ["SELECT ticket", "UPDATE ticket", "SELECT ticket", "SELECT ticket"]
    assert {t[6] for t in stored(session, product)} == {session.scalar(select(EndUser.id))}


# The CLI --------------------------------------------------------------------------------


def test_the_cli_imports_and_reports(runner, session, tmp_path: Path) -> None:
    product = make_product(session, slug="acme")
    path = tmp_path / "tickets.csv"
    path.write_bytes(THREE)
    args = ["import-tickets", "acme", str(path), "--source", "script"]
    dry = runner.invoke(args=[*args, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert dry.stdout.splitlines() == [
        "tickets.csv: read as Tidings columns (UTF-8, comma), source script, 3 rows.",
        "Would import: 3 new, 0 updated, 0 unchanged, 0 bad rows.",
    ]
    assert count(session) == 0
    done = runner.invoke(args=args)
    assert done.exit_code == 0, done.output
    assert done.stdout.splitlines()[-1] == "Imported: 3 new, 0 updated, 0 unchanged, 0 bad rows."
    assert count(session) == 3

    path.write_bytes(b"Ticket,Opened,Who\n9,2026-03-01,u\n")
    mapped = runner.invoke(
        args=[*args, "--map", "external_id=Ticket", "--map", "created_at=Opened", "--map",
              "user_id=Who"]
    )  # fmt: skip
    assert mapped.exit_code == 0, mapped.output
    assert "read as mapped columns" in mapped.stdout
    assert stored(session, product)[-1][:3] == ("9", "script", at("2026-03-01 00:00"))


def test_the_cli_shows_a_progress_bar_on_a_terminal(runner, session, tmp_path, monkeypatch):
    make_product(session, slug="acme")
    monkeypatch.setattr(ticket_import, "BATCH_ROWS", 2)
    path = tmp_path / "tickets.csv"
    path.write_bytes(THREE)
    args = ["import-tickets", "acme", str(path), "--source", "script"]
    piped = runner.invoke(args=args)
    assert (piped.exit_code, piped.stderr) == (0, "")  # no bar in a log or a pipe
    monkeypatch.setattr(click.testing._NamedTextIOWrapper, "isatty", lambda self: True)
    shown = runner.invoke(args=args)
    assert shown.exit_code == 0, shown.output
    frames = shown.stderr.split("\r")
    assert frames[-1].startswith("Importing tickets  [") and "100%" in frames[-1]
    assert "Imported: 0 new, 0 updated, 3 unchanged" in shown.stdout


def test_the_cli_lists_fifty_bad_rows_and_counts_the_rest(runner, session, tmp_path) -> None:
    make_product(session, slug="acme")
    path = tmp_path / "tickets.csv"
    bad = "".join(f"{n},yesterday,u\n" for n in range(60))
    path.write_text("external_id,created_at,user_id\n" + bad + "99,2026-03-01,u\n")
    result = runner.invoke(args=["import-tickets", "acme", str(path), "--source", "script"])
    assert result.exit_code == 0, result.output  # one row was stored
    lines = result.stdout.splitlines()
    assert lines[1].startswith("  line 2: created_at: “yesterday” is not a time")
    assert lines[50].startswith("  line 51: ")
    assert lines[51:] == [
        "  … and 10 more bad rows.",
        "Imported: 1 new, 0 updated, 0 unchanged, 60 bad rows.",
    ]

    path.write_text("external_id,created_at,user_id\n1,yesterday,u\n")
    result = runner.invoke(args=["import-tickets", "acme", str(path), "--source", "script"])
    assert result.exit_code == 1  # nothing could be used
    assert "Imported: 0 new, 0 updated, 0 unchanged, 1 bad row." in result.stdout
    assert count(session) == 1


def test_the_cli_refuses_what_it_cannot_import(runner, session, tmp_path) -> None:
    make_product(session, slug="acme")
    path = tmp_path / "tickets.csv"
    path.write_bytes(THREE)
    no_source = runner.invoke(args=["import-tickets", "acme", str(path)])
    assert no_source.exit_code == 1
    assert "source: Say which desk the file comes from" in no_source.output
    unmapped = runner.invoke(args=["import-tickets", "acme", str(path), "--map", "tags"])
    assert unmapped.exit_code == 2
    assert "“tags” is not FIELD=HEADER" in unmapped.output
    elsewhere = runner.invoke(args=["import-tickets", "nope", str(path), "--source", "s"])
    assert (elsewhere.exit_code, "No product with the slug nope" in elsewhere.output) == (1, True)
    assert count(session) == 0


# Files made to break the import: each stopped it with a traceback, the first half way.
OUT_OF_RANGE = b"external_id,created_at,user_id\n1,2026-03-01,u\n2,0001-01-01T00:00:00+01:00,u\n"
LONG_FIRST_LINE = b"x" * 130 * 1024 + b"\n1\n"


def test_the_cli_answers_crafted_files_without_a_traceback(runner, session, tmp_path) -> None:
    make_product(session, slug="acme")
    path = tmp_path / "tickets.csv"
    args = ["import-tickets", "acme", str(path), "--source", "script"]
    path.write_bytes(OUT_OF_RANGE)
    result = runner.invoke(args=args)
    assert (result.exit_code, result.exception) == (0, None), result.output
    assert "  line 3: created_at: “0001-01-01T00:00:00+01:00” is before the year 1" in (
        result.stdout
    )
    assert "Imported: 1 new, 0 updated, 0 unchanged, 1 bad row." in result.stdout

    path.write_bytes(THREE)
    result = runner.invoke(args=[*args, "--date-format", "%d.%m.%Y %Y"])
    assert (result.exit_code, type(result.exception)) == (1, SystemExit)
    assert "Error: date_format: “%d.%m.%Y %Y” gives a code twice" in result.output

    path.write_bytes(LONG_FIRST_LINE)
    result = runner.invoke(args=args)
    assert (result.exit_code, type(result.exception)) == (1, SystemExit)
    assert "Error: file: The header line cannot be read: a field is longer" in result.output
    assert count(session) == 1


# The console ---------------------------------------------------------------------------

PAGE = "/console/p/acme/support/import"


@pytest.fixture
def team(session) -> dict[Role, TeamMember]:
    owner = make_member(session, "owner@example.com")
    product = make_product(session, owner=owner, slug="acme")
    people = {role: add_member(session, product, role) for role in (Role.VIEWER, Role.EDITOR)}
    return {**people, Role.OWNER: owner}


def upload(client, data: bytes | None, name: str = "tickets.csv", token: str | None = "", **form):
    fields = {**form}
    if token is not None:
        fields["csrf_token"] = token or csrf_token(client)
    if data is not None:
        fields["file"] = (io.BytesIO(data), name)
    return client.post(PAGE, data=fields, content_type="multipart/form-data")


def counts(page: str) -> dict[str, int]:
    found = re.findall(r'data-count="(\w+)">([\d,]+)<', page)
    return {name: int(value.replace(",", "")) for name, value in found}


def test_an_editor_uploads_a_file_and_sees_the_report(client, auth, session, team) -> None:
    auth.login(team[Role.EDITOR].email)
    assert client.get(PAGE).status_code == 200
    response = upload(client, BAD_FILE.encode(), source="script")
    page = response.get_data(as_text=True)
    assert response.status_code == 200, page
    assert counts(page) == {"created": 3, "updated": 0, "unchanged": 0, "bad": 7}
    assert "Import done" in page
    rows = re.findall(r'<tr><td class="nowrap">(\d+)</td>', page)
    assert rows == ["4", "6", "8", "9", "10", "11", "13"]
    assert "ticket 3 is on line 7 too" in page
    assert count(session) == 3
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == "tickets.imported")).one()
    assert (event.actor_id, event.action) == (team[Role.EDITOR].id, "tickets.imported")


def test_the_console_lists_the_first_hundred_bad_rows(client, auth, session, team) -> None:
    auth.login(team[Role.OWNER].email)
    data = "external_id,created_at,user_id\n" + "".join(f"{n},never,u\n" for n in range(130))
    page = upload(client, data.encode(), source="script").get_data(as_text=True)
    assert len(re.findall(r'<tr><td class="nowrap">', page)) == 100
    assert "… and 30 more bad rows." in page


def test_a_dry_run_upload_stores_nothing(client, auth, session, team) -> None:
    auth.login(team[Role.OWNER].email)
    response = upload(client, THREE, source="script", dry_run="y")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Dry run: nothing was stored" in page
    assert counts(page) == {"created": 3, "updated": 0, "unchanged": 0, "bad": 0}
    assert count(session) == 0


def test_reading_the_headers_offers_them_for_the_mapping(client, auth, session, team) -> None:
    auth.login(team[Role.EDITOR].email)
    data = b"Conversation,Opened,Customer\n1,2026-03-01,a@example.com\n"
    response = upload(client, data, step="headers")
    page = response.get_data(as_text=True)
    assert response.status_code == 422  # the columns must be mapped first
    assert "not those of a Zendesk or Freshdesk export" in page
    assert re.findall(r'<option value="([^"]+)">', page) == ["Conversation", "Opened", "Customer"]

    mapping = {"map_external_id": "Conversation", "map_created_at": "Opened"}
    response = upload(client, data, step="headers", **mapping, map_email="Customer")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Read as mapped columns: external_id from “Conversation”" in page
    assert count(session) == 0
    response = upload(client, data, source="helpscout", **mapping, map_email="Customer")
    assert counts(response.get_data(as_text=True))["created"] == 1
    assert count(session) == 1


@pytest.mark.parametrize(
    ("data", "name", "message"),
    [
        (None, "", "Choose the CSV file to upload."),
        (b"", "empty.csv", "The file is empty."),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "chart.png", "The file is not a text file"),
        (b"a,b\n1,2\n", "t.csv", "not those of a Zendesk or Freshdesk export"),
    ],
)
def test_bad_uploads_are_answered_on_the_form(client, auth, session, team, data, name, message):
    auth.login(team[Role.EDITOR].email)
    response = upload(client, data, name, source="script")
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert count(session) == 0


@pytest.mark.parametrize(
    ("data", "form", "status", "message"),
    [
        (OUT_OF_RANGE, {}, 200, "is before the year 1 or after 9999 in UTC"),
        (THREE, {"date_format": "%d.%m.%Y %Y"}, 422, "“%d.%m.%Y %Y” gives a code twice"),
        (LONG_FIRST_LINE, {}, 422, "The header line cannot be read: a field is longer"),
    ],
    ids=["time-out-of-range", "code-twice", "long-first-line"],
)
def test_crafted_uploads_are_answered_on_the_page(
    client, auth, session, team, data, form, status, message
) -> None:
    auth.login(team[Role.EDITOR].email)
    response = upload(client, data, source="script", **form)
    assert response.status_code == status
    assert message in response.get_data(as_text=True)
    assert count(session) == (1 if status == 200 else 0)


def test_a_file_past_the_limit_is_refused(client, auth, session, team, monkeypatch) -> None:
    auth.login(team[Role.EDITOR].email)
    monkeypatch.setattr(ticket_import, "MAX_BYTES", len(THREE) - 1)
    response = upload(client, THREE, source="script")
    assert response.status_code == 422
    assert "The file is over" in response.get_data(as_text=True)
    monkeypatch.setattr(support_import, "MAX_BODY", len(THREE))  # past it: not even read
    response = upload(client, THREE, source="script")
    assert response.status_code == 413
    assert "import it with flask import-tickets" in response.get_data(as_text=True)
    assert count(session) == 0


def test_a_large_upload_is_read_only_for_a_signed_in_member(client, auth, session, team) -> None:
    """Past the 2 MB every other form may send, only a member's upload is read: a stranger
    is refused by the length the request declares, before a byte of its body is read."""
    file = THREE + b"\r\n" * 1_500_000  # 3 MB: the tickets, then blank lines
    assert ticket_import.MAX_BYTES > len(file) > client.application.config["MAX_CONTENT_LENGTH"]

    def post(token: str) -> tuple[int, str, int]:
        """The answer, and how far into the body the app read."""
        file_field = FileStorage(io.BytesIO(file), "t.csv")
        values = {"csrf_token": token, "step": "headers", "file": file_field}
        boundary, body = encode_multipart(values)
        stream = io.BytesIO(body)
        response = client.post(
            PAGE,
            input_stream=stream,
            content_length=len(body),
            content_type=f"multipart/form-data; boundary={boundary}",
        )
        return response.status_code, response.get_data(as_text=True), stream.tell()

    status, _, read = post(csrf_token(client))
    assert (status, read) == (413, 0)
    auth.login(team[Role.EDITOR].email)
    status, page, read = post(csrf_token(client))
    assert status == 200 and read > len(file)
    assert "Read as Tidings columns" in page
    assert count(session) == 0


def test_only_editors_and_owners_import(client, auth, session, team) -> None:
    auth.login(team[Role.VIEWER].email)
    assert client.get(PAGE).status_code == 403
    assert upload(client, THREE, source="script").status_code == 403
    auth.logout()
    response = upload(client, THREE, source="script")
    assert response.status_code == 302 and "/console/login" in response.headers["Location"]
    assert count(session) == 0


def test_an_upload_without_the_csrf_token_is_refused(client, auth, session, team) -> None:
    auth.login(team[Role.OWNER].email)
    for token in (None, "forged"):
        response = upload(client, THREE, token=token, source="script")
        assert response.status_code == 400
        assert "The form expired" in response.get_data(as_text=True)
    assert count(session) == 0


# In Chromium ---------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_upload_page_in_chromium(page, live_app, live_server, viewport, tmp_path) -> None:
    with live_app.app_context():
        pm = db.session.scalar(select(TeamMember).where(TeamMember.email == "pm@example.com"))
        slug = f"imports-{viewport['width']}"
        make_product(db.session, owner=pm, slug=slug, name="Imports")
    path = tmp_path / "zendesk-tickets.csv"
    path.write_bytes(BAD_FILE.encode())
    log_in(page, live_server, "pm@example.com")
    page.goto(f"{live_server}/console/p/{slug}/support/import")
    page.set_input_files("input[name=file]", str(path))
    # The browser read the header line: the mapping offers the file's columns.
    options = page.locator("#csv-headers option")
    options.first.wait_for(state="attached")
    assert [o.get_attribute("value") for o in options.all()] == [
        "external_id",
        "created_at",
        "user_id",
        "subject",
    ]
    page.fill("input[name=source]", "script")
    # The highest value the upload's bar shows, and a mark a page load would wipe out.
    page.evaluate(
        """() => {
          window.stayed = true;
          window.highest = 0;
          const bar = document.querySelector("form[data-ticket-import] progress");
          const value = Object.getOwnPropertyDescriptor(HTMLProgressElement.prototype, "value");
          Object.defineProperty(bar, "value", {
            set(v) { value.set.call(bar, v); window.highest = Math.max(window.highest, v); },
            get() { return value.get.call(bar); },
          });
        }"""
    )
    page.click("button[value=import]")
    page.locator("#report").wait_for()
    assert page.locator("[data-count=created]").inner_text() == "3"
    assert page.locator("[data-count=bad]").inner_text() == "7"
    assert page.evaluate("[window.stayed, window.highest]") == [True, 100]
    page.evaluate("window.scrollTo(0, 0)")  # the report's heading took the focus
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(
        path=str(SCREENSHOTS / f"support-import-{viewport['width']}.png"), full_page=True
    )
    # The form works again on the page the script put in place.
    page.set_input_files("input[name=file]", str(path))
    page.check("input[name=dry_run]")
    page.click("button[value=import]")
    page.get_by_text("Dry run: nothing was stored").wait_for()
    assert page.locator("[data-count=unchanged]").inner_text() == "3"

    # A file of another desk: its headers read, the mapping opens to be filled in.
    other = tmp_path / "helpscout.csv"
    other.write_bytes(b"Conversation;Opened;Customer\n1;2026-03-01;a@example.com\n")
    page.set_input_files("input[name=file]", str(other))
    page.click("button[value=headers]")
    page.get_by_text("not those of a Zendesk or Freshdesk export").wait_for()
    assert page.locator("details.sample").get_attribute("open") is not None
    page.fill("input[name=map_external_id]", "Conversation")
    page.fill("input[name=map_created_at]", "Opened")
    page.fill("input[name=map_email]", "Customer")
    page.screenshot(
        path=str(SCREENSHOTS / f"support-import-mapping-{viewport['width']}.png"), full_page=True
    )
    page.set_input_files("input[name=file]", str(other))
    page.fill("input[name=source]", "helpscout")  # ticket 1 of "script" is stored already
    page.uncheck("input[name=dry_run]")
    page.click("button[value=import]")
    page.locator("#report").wait_for()
    assert page.locator("[data-count=created]").inner_text() == "1"
