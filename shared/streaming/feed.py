"""Feeding tweets from files into ``tweets.raw``: JSONL or CSV, plain or ``.gz``, or standard input.

JSONL lines are sent exactly as they are, malformed ones included (files are read as bytes: invalid UTF-8 reaches
the worker as it is): validating is the worker's job, and a bad line must show up in the dead-letter topic with
its reason rather than vanish in the feeder. CSV rows (such as the paper's datasets) become JSON objects; a row
without ``created_at`` gets the time it was fed.

No line can stop a feed. Two kinds are dead-lettered by the feeder itself, to ``tweets.dlq``, because they cannot
travel as a tweet message: a line over ``max_message_bytes`` (the broker would refuse it), and a CSV row that is
not a well-formed record of the header's columns (an unterminated quote, a wrong number of fields, invalid UTF-8),
which is refused on its own line so it never swallows the rows after it. A file that cannot be read at all (a
directory, no permission, a corrupt ``.gz``) raises ``FeedError``: one line, no traceback.

Every record carries the Kafka header ``stancestream-origin`` = ``<feed id>:<line number>`` (feed id: a short hash
of the file's resolved path, or ``stdin``): the durable identity of its dead letter, if it gets one.
"""

from __future__ import annotations

import asyncio
import csv
import gzip
import hashlib
import json
import logging
import sys
import threading
import time
import uuid
import zlib
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Iterator

from shared.errors import StancestreamError
from shared.messages import DEAD_LETTER_PREFIX_BYTES, ORIGIN_HEADER, DeadLetter, too_large_reason, utcnow
from shared.streaming.processing import DEFAULT_LIMITS, json_nesting_exceeds

log = logging.getLogger(__name__)

_CSV_FIELDS = ("id", "text", "created_at", "lang", "author_id", "country", "source")
#: A quoted CSV field may span lines (the paper's datasets have tweets of up to 14 lines), but a record longer
#: than this is an unterminated quote: its first line is refused and parsing resumes on the next one.
MAX_CSV_RECORD_LINES = 100
_KEY_MAX_CHARS = 64  # Tweet.id's limit: a longer id is refused by the worker anyway


class FeedError(StancestreamError, ValueError):
    """A feed (or label) file that cannot be read: one clear line, no traceback."""


class FeedFileNotFound(FeedError, FileNotFoundError):
    pass


@dataclass(frozen=True)
class FeedRecord:
    key: bytes | None
    value: bytes
    origin: str | None = None  # ``<feed id>:<line>``, sent as the ``stancestream-origin`` header
    #: Set when the feeder dead-letters this line itself (``value`` is then the line, or its first bytes).
    rejected: str | None = None
    payload_bytes: int | None = None  # the line's size, when ``value`` holds only its first bytes
    payload_sha256: str | None = None


@dataclass
class FeedReport:
    sent: int = 0
    dead_lettered: int = 0  # lines the feeder refused itself (sent to tweets.dlq, not to the topic)
    #: For each partition, the offset after the last message we produced: the worker is done with our
    #: messages once its committed offsets reach these.
    end_offsets: dict[int, int] = field(default_factory=dict)
    done: bool = False


#: Standard input cannot be resumed, so each process's stdin feed is a feed of its own: two of them must not
#: share dead-letter keys.
_STDIN_ID = f"stdin-{uuid.uuid4().hex[:8]}"


def feed_id(path: str) -> str:
    """A short stable id of a feed: a hash of the file's resolved path, or ``stdin-<random>``."""
    if path == "-":
        return _STDIN_ID
    return hashlib.sha256(str(Path(path).resolve()).encode("utf-8", "surrogateescape")).hexdigest()[:12]


def _open_bytes(path: str) -> IO[bytes]:
    """The file as bytes (``-``: standard input), or a ``FeedError`` that says why not."""
    if path == "-":
        return sys.stdin.buffer
    file = Path(path)
    if not file.exists():
        raise FeedFileNotFound(f"feed file not found: {path}")
    if file.is_dir():
        raise FeedError(f"{path} is a directory, not a feed file")
    try:
        handle = open(file, "rb")
    except OSError as exc:
        raise FeedError(f"cannot read {path}: {exc.strerror or exc}") from None
    if path.endswith(".gz"):
        return gzip.GzipFile(fileobj=handle, mode="rb")  # closes nothing it did not open: see _closing
    return handle


class _closing:
    """Closes a handle opened by ``_open_bytes`` (never standard input), the raw file under a gzip one too."""

    def __init__(self, handle: IO[bytes]):
        self.handle = handle

    def __enter__(self) -> IO[bytes]:
        return self.handle

    def __exit__(self, *exc: object) -> None:
        if self.handle is sys.stdin.buffer:
            return
        inner = getattr(self.handle, "fileobj", None)
        self.handle.close()
        if inner is not None:
            inner.close()


def _format_of(path: str) -> str:
    name = path.removesuffix(".gz")
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".jsonl", ".json", ".ndjson")) or path == "-":
        return "jsonl"
    raise FeedError(f"cannot tell the format of {path}: use .jsonl or .csv (optionally .gz)")


def check_readable(path: str) -> None:
    """Fail early, with a ``FeedError``, on an unknown format, a missing file, a directory, or an unreadable one."""
    _format_of(path)
    if path != "-":
        with _closing(_open_bytes(path)) as handle:
            _guard(path, lambda: handle.read(1))


def _guard(path: str, read):
    """``read()``, with the errors of a broken file (a corrupt or truncated .gz, an I/O error) as ``FeedError``."""
    try:
        return read()
    except FeedError:
        raise
    except (OSError, EOFError, zlib.error) as exc:
        raise FeedError(f"cannot read {path}: {exc}") from None


@dataclass(frozen=True)
class _Oversize:
    """A line over the limit, streamed through rather than held: its first bytes, size and SHA-256."""

    prefix: bytes
    size: int
    sha256: str


def _physical_lines(handle: IO[bytes], limit: int) -> Iterator[tuple[int, bytes | _Oversize]]:
    """(line number, the line with its terminator) — or ``_Oversize`` for a line longer than ``limit`` bytes, which
    is read in bounded chunks, so a gigabyte without a newline never sits in memory."""
    number = 0
    while True:
        chunk = handle.readline(limit + 2)  # + "\r\n"
        if not chunk:
            return
        number += 1
        if chunk.endswith(b"\n") or len(chunk) < limit + 2:
            yield number, chunk
            continue
        digest, size, prefix, held = hashlib.sha256(), 0, chunk[:DEAD_LETTER_PREFIX_BYTES], b""
        while chunk:
            data = held + chunk
            held = data[-2:]  # the terminator, if it comes, is not part of the line
            digest.update(data[:-2])
            size += len(data) - 2
            if chunk.endswith(b"\n"):
                break
            chunk = handle.readline(1 << 20)
        held = held.removesuffix(b"\n").removesuffix(b"\r")
        digest.update(held)
        yield number, _Oversize(prefix, size + len(held), digest.hexdigest())


def _oversize_record(line: _Oversize, origin: str, limit: int) -> FeedRecord:
    return FeedRecord(None, line.prefix, origin, too_large_reason(line.size, limit), line.size, line.sha256)


def jsonl_records(path: str, handle: IO[bytes], key_fields: tuple[str, ...], limit: int) -> Iterator[FeedRecord]:
    """One record per non-blank line, its bytes as they are (surrounding whitespace stripped)."""
    source = feed_id(path)
    for number, line in _physical_lines(handle, limit):
        origin = f"{source}:{number}"
        if isinstance(line, _Oversize):
            yield _oversize_record(line, origin, limit)
            continue
        line = line.strip()
        if not line:
            continue
        if len(line) > limit:
            yield FeedRecord(None, line, origin, too_large_reason(len(line), limit))
            continue
        yield FeedRecord(_key_of_json(line, key_fields), line, origin)


@dataclass(frozen=True)
class CsvRow:
    """One CSV record: its first line number, its fields by header name (None when refused), its bytes."""

    line: int
    fields: dict[str, str] | None
    raw: bytes
    error: str | None = None
    oversize: _Oversize | None = None


class _RecordTooLong(Exception):
    pass


class _Lines:
    """Physical lines for ``csv.reader``, one record at a time; the lines of a refused record but its first are
    pushed back and parsed again, so an unterminated quote costs one line, not the rest of the file."""

    def __init__(self, lines: Iterator[tuple[int, bytes | _Oversize]], limit: int):
        self._lines = lines
        self._back: deque[tuple[int, bytes | _Oversize]] = deque()
        self.limit = limit
        self.taken: list[tuple[int, bytes | _Oversize]] = []
        self._size = 0

    def start(self) -> tuple[int, bytes | _Oversize] | None:
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
        if isinstance(line, _Oversize) or len(self.taken) > MAX_CSV_RECORD_LINES:
            raise _RecordTooLong
        self._size += len(line)
        if self._size > self.limit:
            raise _RecordTooLong
        return line.decode("utf-8", "surrogateescape")  # invalid bytes survive, to be reported exactly


def csv_rows(path: str, handle: IO[bytes], limit: int) -> Iterator[CsvRow]:
    """The records of a CSV file, each checked on its own: exactly the header's number of fields, strict
    quoting, a quoted field closed within ``MAX_CSV_RECORD_LINES`` lines, valid UTF-8. A refused record is its
    first physical line only; parsing resumes on the next line. A header that cannot be read is a ``FeedError``."""
    lines = _Lines(_physical_lines(handle, limit), limit)
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
        if isinstance(first_line, _Oversize):
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
            oversize = first_line if isinstance(first_line, _Oversize) else None
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


def read_feed(path: str, max_message_bytes: int | None = None) -> Iterator[FeedRecord]:
    """Records of a JSONL or CSV file (``-`` reads JSONL from standard input); a line the feeder must refuse is
    a record with ``rejected`` set. Raises ``FeedError`` for a file that cannot be read."""
    limit = max_message_bytes or DEFAULT_LIMITS.max_message_bytes
    fmt = _format_of(path)
    with _closing(_open_bytes(path)) as handle:
        records = jsonl_records(path, handle, ("id",), limit) if fmt == "jsonl" else _csv_feed(path, handle, limit)
        while (record := _guard(path, lambda: next(records, None))) is not None:
            yield record


def _csv_feed(path: str, handle: IO[bytes], limit: int) -> Iterator[FeedRecord]:
    source, name = feed_id(path), Path(path).name
    for row in csv_rows(path, handle, limit):
        origin = f"{source}:{row.line}"
        if row.fields is None:
            yield csv_rejected_record(row, origin)
            continue
        tweet = {k: row.fields[k] for k in _CSV_FIELDS if row.fields.get(k) not in (None, "")}
        tweet.setdefault("created_at", utcnow().isoformat())
        tweet.setdefault("source", name)
        value = json.dumps(tweet, ensure_ascii=False).encode()
        if len(value) > limit:  # JSON escaping can grow a row past the limit
            yield FeedRecord(None, row.raw, origin, too_large_reason(len(value), limit))
            continue
        yield FeedRecord(_key_of(tweet.get("id")), value, origin)


def _key_of(tweet_id: object) -> bytes | None:
    if isinstance(tweet_id, bool) or not isinstance(tweet_id, (str, int)):
        return None
    text = str(tweet_id).strip()  # as Tweet strips it: one id, one partition
    return text.encode() if 0 < len(text) <= _KEY_MAX_CHARS else None


def _key_of_json(line: bytes | str, fields: tuple[str, ...] = ("id",)) -> bytes | None:
    """The message key: the first of ``fields`` the JSON object has (None for a line that is not an object with
    such a field, is not valid UTF-8, nests too deep, or whatever else: this never raises)."""
    try:
        text = line.decode("utf-8") if isinstance(line, (bytes, bytearray)) else line
        if json_nesting_exceeds(text, DEFAULT_LIMITS.max_json_depth):
            return None
        value = json.loads(text)
        if not isinstance(value, dict):
            return None
        return _key_of(next((value[f] for f in fields if f in value), None))
    except Exception:  # RecursionError and MemoryError included: a key is a nicety, never a reason to stop
        return None


def dlq_topic_for(topic: str) -> str:
    """The dead-letter topic beside a physical topic name (same prefix)."""
    from shared.streaming.topics import Topics

    for logical in Topics:
        if topic.endswith(logical.value):
            return topic[: len(topic) - len(logical.value)] + Topics.dlq.value
    return f"{topic}.dlq"


def feeder_dead_letter(record: FeedRecord, topic: str) -> DeadLetter:
    """The dead letter of a line the feeder refused: it never entered ``topic`` (partition and offset -1)."""
    return DeadLetter.build(record.rejected or "refused by the feeder", record.value, source_topic=topic,
                            partition=-1, offset=-1, origin=record.origin or "",
                            payload_bytes=record.payload_bytes, payload_sha256=record.payload_sha256)


async def produce_feed(bootstrap: str, topic: str, records: Iterator[FeedRecord], report: FeedReport,
                       rate: float | None = None, *, dlq_topic: str | None = None,
                       max_message_bytes: int | None = None, dead_letter_sink=None) -> FeedReport:
    """Send records keyed by tweet id (so one tweet's versions stay in order), paced to ``rate`` per second, each
    with its ``stancestream-origin`` header. A refused record (or one over ``max_message_bytes``) goes to
    ``dlq_topic`` (default: the DLQ beside ``topic``) as a dead letter instead, and to ``dead_letter_sink`` (a
    callable taking a list of ``DeadLetter``, e.g. a ClickHouse writer) when one is given."""
    from aiokafka import AIOKafkaProducer

    limit = max_message_bytes or DEFAULT_LIMITS.max_message_bytes
    dlq_topic = dlq_topic or dlq_topic_for(topic)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    await producer.start()
    pending: list = []
    try:
        started = time.monotonic()
        reader = _ReadAhead(records)
        while True:
            record = await reader.next()
            if record is None:
                break
            if record.rejected is None and len(record.value) > limit:
                record = FeedRecord(None, record.value, record.origin, too_large_reason(len(record.value), limit))
            if rate:
                ahead = started + (report.sent + report.dead_lettered) / rate - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)
            if record.rejected is not None:
                letter = feeder_dead_letter(record, topic)
                await (await producer.send(dlq_topic, letter.model_dump_json().encode()))
                report.dead_lettered += 1
                if dead_letter_sink is not None:
                    try:
                        await asyncio.to_thread(dead_letter_sink, [letter])
                    except Exception as exc:  # it is in the DLQ topic already: a store outage must not stop a feed
                        log.warning("dead letter of %s is in %s but could not be stored: %s", letter.origin,
                                    dlq_topic, exc)
                continue
            headers = [(ORIGIN_HEADER, record.origin.encode())] if record.origin else None
            pending.append(await producer.send(topic, record.value, key=record.key, headers=headers))
            report.sent += 1
            if len(pending) >= 500:
                _note(report, await asyncio.gather(*pending))
                pending.clear()
        _note(report, await asyncio.gather(*pending))
    except asyncio.CancelledError:
        # Stopped mid-feed (Ctrl-C): what was sent still counts, so that draining waits for it too.
        sent = await asyncio.shield(asyncio.gather(*pending, return_exceptions=True))
        _note(report, [meta for meta in sent if not isinstance(meta, BaseException)])
        raise
    finally:
        await producer.stop()
    report.done = True
    return report


class _ReadAhead:
    """Reads records in a daemon thread, a bounded queue ahead. A read blocked on a live pipe must neither block
    the event loop (and the worker) nor keep the process alive once it is done: asyncio's default executor,
    which ``to_thread`` uses, joins its threads at exit."""

    _END = object()

    def __init__(self, records: Iterator[FeedRecord], ahead: int = 64):
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue = asyncio.Queue(maxsize=ahead)
        threading.Thread(target=self._read, args=(records,), name="feed-reader", daemon=True).start()

    def _read(self, records: Iterator[FeedRecord]) -> None:
        try:
            for record in records:
                self._put(record)
            self._put(self._END)
        except BaseException as exc:  # handed to the feed, which raises it (e.g. a FeedError mid-file)
            self._put(exc)

    def _put(self, item: object) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self._queue.put(item), self._loop).result()
        except RuntimeError:  # the loop is gone: the feed was abandoned
            pass

    async def next(self) -> FeedRecord | None:
        item = await self._queue.get()
        if item is self._END:
            return None
        if isinstance(item, BaseException):
            raise item
        return item  # type: ignore[return-value]


def _note(report: FeedReport, metadata: list) -> None:
    for meta in metadata:
        report.end_offsets[meta.partition] = max(report.end_offsets.get(meta.partition, 0), meta.offset + 1)
