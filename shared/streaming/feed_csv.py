"""CSV records of a feed or label file, each checked on its own (such as the paper's datasets, whose quoted
tweets span up to 14 lines): a record that is not well-formed is refused on its first line only, so it never
swallows the rows after it.
"""

from __future__ import annotations

import csv
from collections import deque
from dataclasses import dataclass
from typing import IO, Iterator

from shared.messages import too_large_reason
from shared.streaming.feed_files import FeedError, FeedRecord, Oversize, physical_lines

#: A quoted CSV field may span lines (the paper's datasets have tweets of up to 14 lines), but a record longer
#: than this is an unterminated quote: its first line is refused and parsing resumes on the next one.
MAX_CSV_RECORD_LINES = 100


@dataclass(frozen=True)
class CsvRow:
    """One CSV record: its first line number, its fields by header name (None when refused), its bytes."""

    line: int
    fields: dict[str, str] | None
    raw: bytes
    error: str | None = None
    oversize: Oversize | None = None


class _RecordTooLong(Exception):
    pass


class _Lines:
    """Physical lines for ``csv.reader``, one record at a time; the lines of a refused record but its first are
    pushed back and parsed again, so an unterminated quote costs one line, not the rest of the file."""

    def __init__(self, lines: Iterator[tuple[int, bytes | Oversize]], limit: int):
        self._lines = lines
        self._back: deque[tuple[int, bytes | Oversize]] = deque()
        self.limit = limit
        self.taken: list[tuple[int, bytes | Oversize]] = []
        self._size = 0

    def start(self) -> tuple[int, bytes | Oversize] | None:
        """Begin a record: its first line (None at the end)."""
        self.taken, self._size = [], 0
        item = self._back.popleft() if self._back else next(self._lines, None)
        if item is not None:
            self._back.appendleft(item)
        return item

    def push_back_all_but_first(self) -> None:
        self._back.extendleft(reversed(self.taken[1:]))

    def __iter__(self) -> "_Lines":
        return self

    def __next__(self) -> str:
        item = self._back.popleft() if self._back else next(self._lines, None)
        if item is None:
            raise StopIteration
        self.taken.append(item)
        line = item[1]
        if isinstance(line, Oversize) or len(self.taken) > MAX_CSV_RECORD_LINES:
            raise _RecordTooLong
        self._size += len(line)
        if self._size > self.limit:
            raise _RecordTooLong
        return line.decode("utf-8", "surrogateescape")  # invalid bytes survive, to be reported exactly


def csv_rows(path: str, handle: IO[bytes], limit: int) -> Iterator[CsvRow]:
    """The records of a CSV file, each checked on its own: exactly the header's number of fields, strict
    quoting, a quoted field closed within ``MAX_CSV_RECORD_LINES`` lines, valid UTF-8. A refused record is its
    first physical line only; parsing resumes on the next line. A header that cannot be read is a ``FeedError``."""
    lines = _Lines(physical_lines(handle, limit), limit)
    header: list[str] | None = None
    while (first := lines.start()) is not None:
        number, first_line = first
        try:
            record = next(csv.reader(lines, strict=True), None)
            error = None
        except csv.Error as exc:  # past its first line, a record can only have failed on an unclosed quote
            record = None
            error = "unterminated quoted field" if len(lines.taken) > 1 or "end of data" in str(exc) else f"{exc}"
        except _RecordTooLong:
            record, error = None, (f"unterminated quoted field (no closing quote within {MAX_CSV_RECORD_LINES} "
                                   f"lines or {limit} bytes)")
        raw = b"".join(line for _, line in lines.taken[:1 if error else None] if isinstance(line, bytes))
        raw = raw.removesuffix(b"\n").removesuffix(b"\r")
        if isinstance(first_line, Oversize):
            error = too_large_reason(first_line.size, limit)
        elif error is not None and len(first_line.rstrip(b"\r\n")) > limit:
            error = too_large_reason(len(first_line.rstrip(b"\r\n")), limit)
        if error is not None:
            lines.push_back_all_but_first()
        if header is None:
            if error is not None or record is None:
                raise FeedError(f"{path}: line {number}: cannot read the CSV header ({error or 'empty file'})")
            if not record or not any(cell.strip() for cell in record):
                continue  # blank lines before the header
            try:
                header = [cell.encode("utf-8", "surrogateescape").decode("utf-8").removeprefix("\ufeff").strip()
                          for cell in record]
            except UnicodeDecodeError as exc:
                raise FeedError(f"{path}: line {number}: the CSV header is not valid UTF-8 ({exc.reason})") from None
            continue
        if error is None and record is not None and not record:
            continue  # a blank line
        if error is None and record is not None:
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                error = f"not valid UTF-8 at byte {exc.start}"
        if error is None and record is not None and len(record) != len(header):
            error = f"{len(record)} fields where the header has {len(header)}"
        if error is not None:
            oversize = first_line if isinstance(first_line, Oversize) else None
            too_large = error.startswith("message too large")  # worded as the worker words it
            yield CsvRow(number, None, raw, error if too_large else f"malformed CSV at line {number}: {error}",
                         oversize)
        else:
            yield CsvRow(number, dict(zip(header, record)), raw)
    if header is None:
        raise FeedError(f"{path}: no CSV header")


def csv_rejected_record(row: CsvRow, origin: str) -> FeedRecord:
    if row.oversize is not None:
        return FeedRecord(None, row.oversize.prefix, origin, row.error, row.oversize.size, row.oversize.sha256)
    return FeedRecord(None, row.raw, origin, row.error)
