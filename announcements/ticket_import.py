"""Import a help desk's ticket history from a CSV export, so that Support impact counts
the tickets from before the desk was connected.

The file is read as UTF-8 (with or without a byte-order mark), as UTF-16 when it starts
with one (Excel's "Unicode text"), or, when it is not UTF-8, as Windows-1252, which is
what Excel on Windows saves. Its delimiter, a comma, a semicolon (Excel where the decimal
mark is a comma) or a tab, is told from the header line. A file holds at most
``MAX_BYTES`` and ``MAX_ROWS`` tickets; a larger one is split first. Its header line has
at most ``MAX_COLUMNS`` columns named in at most ``MAX_HEADER`` characters each: a first
line past them is refused as not a header line.

Which column holds what comes from a mapping of Tidings' fields (``FIELDS``) to the
file's headers, or, without one, from the headers of a known export:

- Zendesk's ticket CSV export: ``Id``, ``Created at``, ``Requester external id``,
  ``Requester email``, ``Tags`` (separated by spaces), ``Subject``.
- Freshdesk's ticket export: ``Ticket ID``, ``Created time``, ``Tags`` (separated by
  commas), ``Subject``, and the contact columns ``Email`` and ``Unique external ID`` when
  the export includes them. Its ``Contact ID`` is Freshdesk's own number for the contact,
  not the host's user id, so it is not read.
- A file whose headers are Tidings' own field names (``external_id``, ``created_at``…),
  as the tickets API takes them.

Help Scout's CSV export is not recognised: its column names were not found in any public
source (``../shared/testdata/support/SOURCES.md`` says so), and a guess would read the
wrong column without a word. Its files, and any other desk's, import with a mapping. A
mapping may also override single columns of a recognised export. In a recognised export
a column named "App version" (a custom field, with or without Zendesk's ``[type]``
suffix) is read as the app version.

Times are ISO 8601 (``2026-03-01T09:30:00Z``) or ``YYYY-MM-DD HH:MM[:SS]``, the form both
desks export, with an optional offset (``+01:00``, ``+0100``, `` +0100``, ``Z``, ``UTC``);
a time without one is taken as UTC. ``DD-MM-YYYY`` and ``MM/DD/YYYY`` are not guessed: the
first twelve days of every month read both ways, so a guess would misdate tickets
without a word. A file in such a form names it with ``date_format`` (``strptime`` codes).

Every row goes through ``tickets.check_ticket``, the rule the tickets API applies, and is
stored by ``tickets.store_many`` a batch at a time (the rule ``tickets.store`` applies to
one ticket), so a ticket imported and later delivered by the desk's webhook (or imported
twice) is one row. A row that breaks a rule is reported by its line in the file (the
header is line 1; a quoted field over several lines counts them all), and the other rows
are imported.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from itertools import islice
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from announcements.audit import record
from announcements.errors import ValidationFailed
from announcements.models import Product, SupportConnection, SupportDesk, TeamMember
from announcements.tickets import TicketInput, check_ticket, store_many

MAX_BYTES = 50 * 1024 * 1024
MAX_ROWS = 500_000
# Rows written per transaction. One commit per batch keeps a large file from holding
# SQLite's write lock (or a PostgreSQL transaction) for the whole import, so webhook
# deliveries and the console go on writing while it runs.
BATCH_ROWS = 500
# The bad rows a report keeps with their reasons; past this it only counts them, so a
# file whose every row is wrong in the same way does not fill the memory with reasons.
KEPT_BAD_ROWS = 1000

# Tidings' fields, in the order the console and the CLI's help list them.
FIELDS = ("external_id", "created_at", "user_id", "email", "app_version", "tags", "subject")
REQUIRED = ("external_id", "created_at")
# The header line's bounds. Zendesk's export has 41 columns (more with custom fields) and
# no header over 60 characters; past these the first line is not a header line but data,
# or a file made to be slow to read, and the whole file is refused.
MAX_COLUMNS = 1000
MAX_HEADER = 200  # characters, as many as the console's mapping fields take
# The first line's length past which it cannot be MAX_COLUMNS headers of MAX_HEADER
# characters, even each quoted with its quotes doubled. A longer one is refused unsplit:
# a 50 MB line of commas is 50 million empty cells.
MAX_HEADER_LINE = MAX_COLUMNS * (2 * MAX_HEADER + 3)
# A desk's custom field for the app version, its header folded and any "[type]" cut off.
_APP_VERSION_HEADERS = ("app version", "application version")
# No bracket between the brackets: with [^\]]* the match tried from each "[" of a header
# of brackets ran to its end, time quadratic in its length (21.7 s for a 252 KB header).
_TYPE_SUFFIX = re.compile(r"\s*\[[^\[\]]*\]$")
# The first line that is not blank, from its first character that is not a space: found
# where it is, as text.splitlines() made every line of a 50 MB file (1.2 GB more memory)
# to find it.
_FIRST_LINE = re.compile(r"\S[^\r\n]*")
DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab"}


def fold(header: str) -> str:
    """A header as headers are compared: case and surrounding or repeated spaces aside."""
    return " ".join(header.split()).casefold()


@dataclass(frozen=True)
class Export:
    """A known export: the headers that identify it, which header holds each field, and
    how it separates tags."""

    source: str  # the ticket source a file of this export implies; "" when it implies none
    label: str
    signature: tuple[str, ...]  # folded headers that all appear in this export
    columns: Mapping[str, str]  # field -> folded header
    tag_separator: str | None  # None: commas, semicolons or spaces, as a cell has them (_tags)


EXPORTS = (
    Export(
        source=SupportDesk.ZENDESK.value,
        label="Zendesk ticket export",
        signature=("id", "requester id", "created at"),
        columns={
            "external_id": "id",
            "created_at": "created at",
            "user_id": "requester external id",
            "email": "requester email",
            "tags": "tags",
            "subject": "subject",
        },
        tag_separator=" ",
    ),
    Export(
        source=SupportDesk.FRESHDESK.value,
        label="Freshdesk ticket export",
        signature=("ticket id", "created time"),
        columns={
            "external_id": "ticket id",
            "created_at": "created time",
            "user_id": "unique external id",
            "email": "email",
            "tags": "tags",
            "subject": "subject",
        },
        tag_separator=",",
    ),
    Export(
        source="",
        label="Tidings columns",
        signature=REQUIRED,
        columns={name: name for name in FIELDS},
        tag_separator=None,
    ),
)
MAPPED = "mapped columns"


# Reading the file ---------------------------------------------------------------


@dataclass(frozen=True)
class CsvFile:
    """A CSV file's text, how it was read, and its header row."""

    text: str
    encoding: str
    delimiter: str
    headers: list[str]

    def records(self) -> Iterator[tuple[int, list[str] | str]]:
        """Each record after the header, with the line it starts on: its cells, or why it
        cannot be read."""
        rows = _records(self.text, self.delimiter)
        next(rows)
        return rows

    def count(self) -> int:
        """The records past the header; ValidationFailed past MAX_ROWS or for a quote never
        closed, before anything is written."""
        rows = sum(1 for _ in islice(self.records(), MAX_ROWS + 1))
        if rows > MAX_ROWS:
            raise ValidationFailed(
                {"file": f"The file has more than {MAX_ROWS:,} tickets; split it in parts."}
            )
        return rows


def _records(text: str, delimiter: str) -> Iterator[tuple[int, list[str] | str]]:
    """Each record that is not blank, with the line it starts on: its cells, or why it
    cannot be read. ValidationFailed for a quote never closed, which leaves every line
    after it in doubt."""
    # strict: a stray quote is an error on its row, not a field that runs on quietly.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    end = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            line, end = end + 1, reader.line_num
            if "end of data" in str(error):
                raise ValidationFailed(
                    {"file": f"Line {line}: a quoted field is never closed."}
                ) from None
            yield line, _unreadable(str(error))
            continue
        line, end = end + 1, reader.line_num
        if any(cell.strip() for cell in row):
            yield line, row


def _unreadable(error: str) -> str:
    """Why the csv module could not read a row, in the words of someone fixing the file."""
    if "expected after" in error:
        return (
            "a quote ends a field that goes on: quote the whole field, and double the quotes "
            "inside it"
        )
    if "field larger than field limit" in error:
        return f"a field is longer than {csv.field_size_limit():,} characters"
    return f"not CSV: {error}"


def read_csv(data: bytes) -> CsvFile:
    """The file's text and header row; ValidationFailed for what is not a CSV text file of
    at most MAX_BYTES."""
    if len(data) > MAX_BYTES:
        raise ValidationFailed(
            {"file": f"The file is over {MAX_BYTES // 1024 // 1024} MB; split it in parts."}
        )
    text, encoding = _decode(data)
    if "\x00" in text:
        raise ValidationFailed({"file": "The file is not a text file; export the tickets as CSV."})
    found = _FIRST_LINE.search(text)
    if found is None:
        raise ValidationFailed({"file": "The file is empty."})
    first_line = found[0]
    if len(first_line) > MAX_HEADER_LINE:
        raise ValidationFailed({"file": _not_a_header(f"over {MAX_HEADER_LINE:,} characters")})
    # The delimiter that splits the header line into the most columns; a comma on a tie.
    delimiter = max(DELIMITERS, key=lambda d: _width(first_line, d))
    _, header = next(_records(text, delimiter))
    if isinstance(header, str):
        raise ValidationFailed({"file": f"The header line cannot be read: {header}."})
    headers = [cell.strip() for cell in header]
    if len(headers) > MAX_COLUMNS:
        raise ValidationFailed({"file": _not_a_header(f"{len(headers):,} columns")})
    for at, name in enumerate(headers, start=1):
        if len(name) > MAX_HEADER:
            found_here = f"a header of {len(name):,} characters in column {at} (“{name[:30]}…”)"
            raise ValidationFailed({"file": _not_a_header(found_here)})
    return CsvFile(text, encoding, delimiter, headers)


def _width(line: str, delimiter: str) -> int:
    """The columns the header line splits into with this delimiter; 0 when that leaves a
    field past the csv module's limit (a long line without this delimiter)."""
    try:
        return len(next(csv.reader([line], delimiter=delimiter)))
    except csv.Error:
        return 0


def _not_a_header(found: str) -> str:
    return (
        f"The first line is not a header line: it has {found}, where a header line has at "
        f"most {MAX_COLUMNS:,} columns of at most {MAX_HEADER} characters each."
    )


def _decode(data: bytes) -> tuple[str, str]:
    for bom, encoding in ((codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if data.startswith(bom):
            try:
                return data.decode(encoding), "UTF-16"
            except UnicodeDecodeError:
                break
    try:
        return data.decode("utf-8-sig"), "UTF-8"
    except UnicodeDecodeError:
        pass
    try:
        # Windows-1252 leaves five bytes undefined, so a binary file mostly fails here too.
        return data.decode("cp1252"), "Windows-1252"
    except UnicodeDecodeError:
        raise ValidationFailed(
            {"file": "The file is neither UTF-8 nor Windows-1252 text; export it as CSV."}
        ) from None


# Which column holds what ----------------------------------------------------------


@dataclass(frozen=True)
class Columns:
    """Where each field is in this file's rows, and how to read its tags."""

    format: str
    source: str  # the source the format implies, or ""
    index: Mapping[str, int]  # field -> column position
    headers: Sequence[str]
    tag_separator: str | None

    def header(self, name: str) -> str:
        """The file's header for a field, to name it in a row's reason."""
        return self.headers[self.index[name]] if name in self.index else name

    def cells(self, row: Sequence[str]) -> dict[str, str]:
        """The row's cell for each mapped field, spaces trimmed; a short row's missing
        cells are empty, as spreadsheets leave trailing empty cells out."""
        return {name: row[at].strip() if at < len(row) else "" for name, at in self.index.items()}


def columns(headers: Sequence[str], mapping: Mapping[str, str] | None = None) -> Columns:
    """The columns of a file with these headers: a known export's, with ``mapping`` (field
    to header; blank headers ignored) over them. ValidationFailed naming the file's
    headers when a mapped header is not among them, or when nothing says where the
    ticket's id and creation time are."""
    position: dict[str, int] = {}
    for at, header in enumerate(headers):
        position.setdefault(fold(header), at)
    export = next((e for e in EXPORTS if all(h in position for h in e.signature)), None)
    index: dict[str, int] = {}
    if export is not None:
        index = {name: position[h] for name, h in export.columns.items() if h in position}
        if export.source:
            index.update(_app_version(headers))
    mapped = {name: header for name, header in (mapping or {}).items() if header.strip()}
    for name, header in mapped.items():
        if name not in FIELDS:
            raise ValidationFailed(
                {"map": f"“{name}” is not a Tidings field; map any of {', '.join(FIELDS)}."}
            )
        if fold(header) not in position:
            raise ValidationFailed(
                {"map": f"The file has no column “{header}”. {_listing(headers)}"}
            )
        index[name] = position[fold(header)]
    missing = [name for name in REQUIRED if name not in index]
    if missing and export is None and not mapped:
        raise ValidationFailed(
            {
                "map": "The columns are not those of a Zendesk or Freshdesk export: map them, "
                f"at least external_id and created_at. {_listing(headers)}"
            }
        )
    if missing:
        raise ValidationFailed(
            {"map": f"Map {' and '.join(missing)} to a column. {_listing(headers)}"}
        )
    label = export.label if export else MAPPED
    return Columns(
        format=f"{label}, with mapped columns" if export and mapped else label,
        source=export.source if export else "",
        index=index,
        headers=list(headers),
        tag_separator=export.tag_separator if export else None,
    )


def _app_version(headers: Sequence[str]) -> dict[str, int]:
    for at, header in enumerate(headers):
        if _TYPE_SUFFIX.sub("", fold(header)) in _APP_VERSION_HEADERS:
            return {"app_version": at}
    return {}


def _listing(headers: Sequence[str], most: int = 30) -> str:
    shown = ", ".join(f"“{h}”" for h in headers[:most])
    more = f" and {len(headers) - most} more" if len(headers) > most else ""
    return f"The file's columns: {shown}{more}."


# Times -----------------------------------------------------------------------------

_ISO_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,6})\d*)?)?)?"
    r"\s*(Z|UTC|GMT|[+-]\d{2}(?::?\d{2})?)?",
    re.IGNORECASE,
)


def check_date_format(date_format: str) -> None:
    """ValidationFailed unless ``date_format`` reads back a date it wrote: it has a year,
    a month and a day, and no code ``strptime`` does not know."""
    sample = datetime(2026, 11, 23, 14, 35, 50)
    try:
        back = datetime.strptime(sample.strftime(date_format), date_format)
    except ValueError:
        back = None
    except re.error:  # strptime's pattern names a group per code, so a code given twice
        raise ValidationFailed(
            {
                "date_format": f"“{date_format}” gives a code twice; give each once, such as "
                "%d-%m-%Y %H:%M:%S."
            }
        ) from None
    if back is None or back.date() != sample.date():
        raise ValidationFailed(
            {
                "date_format": f"“{date_format}” is not a date format with a year, month and "
                "day; write one such as %d-%m-%Y %H:%M:%S."
            }
        )


def parse_time(text: str, date_format: str | None = None) -> datetime:
    """A file's time, in UTC; one without an offset is taken as UTC. ValueError saying
    why it cannot be read. ``date_format`` is one that ``check_date_format`` passed."""
    if date_format:
        try:
            parsed = datetime.strptime(text, date_format)
        except ValueError:
            raise ValueError(f"“{text}” is not in the form {date_format}") from None
    else:
        match = _ISO_TIME.fullmatch(text)
        if match is None:
            raise ValueError(
                f"“{text}” is not a time such as 2026-03-01 09:30:00; give the file's form "
                "as the date format (such as %d-%m-%Y %H:%M:%S)"
            )
        year, month, day, hour, minute, second, fraction, offset = match.groups()
        try:
            parsed = datetime(
                int(year),
                int(month),
                int(day),
                int(hour or 0),
                int(minute or 0),
                int(second or 0),
                int((fraction or "0").ljust(6, "0")),
                tzinfo=_offset(offset),
            )
        except ValueError:
            raise ValueError(f"“{text}” is not a date") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 is in the year 0 in UTC
        raise ValueError(f"“{text}” is before the year 1 or after 9999 in UTC") from None


def _offset(text: str | None) -> timezone | None:
    if text is None:
        return None
    if text.upper() in ("Z", "UTC", "GMT"):
        return UTC
    digits = text[1:].replace(":", "")
    size = timedelta(hours=int(digits[:2]), minutes=int(digits[2:] or 0))
    return timezone(-size if text[0] == "-" else size)


# Importing -------------------------------------------------------------------------


@dataclass
class Report:
    """What an import did, or with ``dry_run`` would do, to the product's tickets."""

    format: str
    source: str
    dry_run: bool
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    bad: list[tuple[int, str]] = field(default_factory=list)  # the first KEPT_BAD_ROWS
    bad_rows: int = 0  # all of them

    @property
    def usable(self) -> int:
        """The rows that were, or would be, stored or found unchanged."""
        return self.created + self.updated + self.unchanged

    @property
    def summary(self) -> str:
        """Such as "3 new, 1 updated, 40 unchanged, 2 bad rows"."""
        bad = f"{self.bad_rows:,} bad row{'' if self.bad_rows == 1 else 's'}"
        return (
            f"{self.created:,} new, {self.updated:,} updated, {self.unchanged:,} unchanged, {bad}"
        )

    def add_bad(self, line: int, reason: str) -> None:
        self.bad_rows += 1
        if len(self.bad) < KEPT_BAD_ROWS:
            self.bad.append((line, reason))


def import_tickets(
    session: Session,
    product: Product,
    file: CsvFile,
    *,
    secret_key: str,
    now: datetime,
    mapping: Mapping[str, str] | None = None,
    source: str | None = None,
    date_format: str | None = None,
    dry_run: bool = False,
    by: TeamMember | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Report:
    """Store each good row of ``file`` as a ticket of ``product`` and report the others by
    line; with ``dry_run``, only report what would be stored.

    ``source`` defaults to the desk whose export the file is; a file of any other kind
    needs one. The rows are written ``BATCH_ROWS`` at a time, each batch committed
    (rolled back in a dry run) before ``progress(rows done, rows in all)`` is called, so
    an import stopped half way has stored whole batches, and importing the file again
    completes it. ValidationFailed, before anything is written, for a file that cannot be
    read as a whole or a mapping, source or date format that does not fit it.
    """
    found = columns(file.headers, mapping)
    source = (source or "").strip().lower() or found.source
    if not source:
        raise ValidationFailed(
            {
                "source": "Say which desk the file comes from, such as helpscout: a ticket "
                "is one per source and desk ticket id."
            }
        )
    if date_format:
        check_date_format(date_format)
    total = file.count()
    connection = session.scalar(
        select(SupportConnection).where(
            SupportConnection.product_id == product.id, SupportConnection.source == source
        )
    )
    rows = _Rows(found, file.delimiter, source, date_format, now)
    report = Report(found.format, source, dry_run, rows=total)
    first_line: dict[str, int] = {}  # of each ticket id, to report its repeats
    done = 0
    records = file.records()
    while batch := list(islice(records, BATCH_ROWS)):
        good: list[TicketInput] = []
        for line, row in batch:
            ticket = rows.ticket(line, row, report)
            if ticket is None:
                continue
            first = first_line.setdefault(ticket.external_id, line)
            if first != line:
                report.add_bad(line, f"ticket {ticket.external_id} is on line {first} too")
                continue
            good.append(ticket)
        outcomes = store_many(
            session, product, good, secret_key=secret_key, connection=connection, now=now
        )
        for outcome in outcomes:
            setattr(report, outcome, getattr(report, outcome) + 1)
        if dry_run:
            session.rollback()
        else:
            session.commit()
        done += len(batch)
        if progress is not None:
            progress(done, total)
    if not dry_run and (report.created or report.updated):
        summary = f"Imported tickets from a CSV file ({report.format}, {source}): {report.summary}"
        record(session, product, by, "tickets.imported", summary, now=now)
        session.commit()
    return report


@dataclass(frozen=True)
class _Rows:
    """How this import turns a row of the file into a ticket."""

    columns: Columns
    delimiter: str
    source: str
    date_format: str | None
    now: datetime

    def ticket(self, line: int, row: list[str] | str, report: Report) -> TicketInput | None:
        """The row's ticket, or None when the row is reported as bad."""
        if isinstance(row, str):
            report.add_bad(line, row)
            return None
        if len(row) > len(self.columns.headers):
            report.add_bad(
                line,
                f"{len(row)} fields where the header has {len(self.columns.headers)}: a field "
                f"holding a {DELIMITERS[self.delimiter]} needs quotes",
            )
            return None
        raw: dict[str, Any] = {k: v for k, v in self.columns.cells(row).items() if v}
        if "created_at" in raw:
            try:
                raw["created_at"] = parse_time(raw["created_at"], self.date_format)
            except ValueError as error:
                report.add_bad(line, f"{self.columns.header('created_at')}: {error}")
                return None
        if "tags" in raw:
            raw["tags"] = _tags(raw["tags"], self.columns.tag_separator)
        try:
            # A row naming no requester is kept unmatched: it still counts in the tickets
            # before and after a release, and Freshdesk's export has no requester column
            # unless its contact fields are chosen.
            return check_ticket(raw, source=self.source, now=self.now, require_requester=False)
        except ValidationFailed as error:
            if "source" in error.errors:  # every row's, so the import's: refuse it whole
                raise ValidationFailed({"source": error.errors["source"]}) from None
            named = (f"{self.columns.header(k)}: {v}" for k, v in error.errors.items())
            report.add_bad(line, "; ".join(named))
            return None


def _tags(cell: str, separator: str | None) -> list[str]:
    """A cell's tags: split on the export's separator, or, in a file of no known export, on
    commas when the cell holds one, else on semicolons when it holds one, else on spaces."""
    if separator is None:
        separator = next((mark for mark in ",;" if mark in cell), " ")
    parts = cell.split() if separator == " " else cell.split(separator)
    return [tag.strip() for tag in parts if tag.strip()]
