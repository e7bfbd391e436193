"""Reading feed and label files: JSONL or CSV, plain or ``.gz``, or standard input, as bytes and line by line.

Lines are read in bounded chunks, so a gigabyte without a newline never sits in memory: a line over the limit
becomes an ``Oversize`` (its first bytes, size and SHA-256). A file that cannot be read at all (a directory, no
permission, a corrupt ``.gz``) raises ``FeedError``: one line, no traceback. Every record carries its origin,
``<feed id>:<line number>`` (feed id: a short hash of the file's resolved path, or ``stdin``), the durable identity
of its dead letter, if it gets one.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import sys
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator, TypeVar

from shared.errors import StancestreamError
from shared.messages import DEAD_LETTER_PREFIX_BYTES, too_large_reason
from shared.streaming.validation import DEFAULT_LIMITS, json_nesting_exceeds

T = TypeVar("T")
_END = object()
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

def open_feed(path: str) -> _closing:
    """``with open_feed(path) as handle``: the file as bytes, gunzipped if it ends in .gz (``-``: standard input,
    left open); ``FeedError`` when it cannot be opened."""
    return _closing(_open_bytes(path))


def feed_format(path: str) -> str:
    name = path.removesuffix(".gz")
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".jsonl", ".json", ".ndjson")) or path == "-":
        return "jsonl"
    raise FeedError(f"cannot tell the format of {path}: use .jsonl or .csv (optionally .gz)")


def check_readable(path: str) -> None:
    """Fail early, with a ``FeedError``, on an unknown format, a missing file, a directory, or an unreadable one."""
    feed_format(path)
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

def guarded(path: str, items: Iterator[T]) -> Iterator[T]:
    """``items`` read from ``path``, with the errors of a broken file (a corrupt or truncated .gz, an I/O error) as
    ``FeedError``."""
    while (item := _guard(path, lambda: next(items, _END))) is not _END:
        yield item


@dataclass(frozen=True)
class Oversize:
    """A line over the limit, streamed through rather than held: its first bytes, size and SHA-256."""

    prefix: bytes
    size: int
    sha256: str


def physical_lines(handle: IO[bytes], limit: int) -> Iterator[tuple[int, bytes | Oversize]]:
    """(line number, the line with its terminator) — or ``Oversize`` for a line longer than ``limit`` bytes, which
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
        yield number, Oversize(prefix, size + len(held), digest.hexdigest())


def _oversize_record(line: Oversize, origin: str, limit: int) -> FeedRecord:
    return FeedRecord(None, line.prefix, origin, too_large_reason(line.size, limit), line.size, line.sha256)


def jsonl_records(path: str, handle: IO[bytes], key_fields: tuple[str, ...], limit: int) -> Iterator[FeedRecord]:
    """One record per non-blank line, its bytes as they are (surrounding whitespace stripped)."""
    source = feed_id(path)
    for number, line in physical_lines(handle, limit):
        origin = f"{source}:{number}"
        if isinstance(line, Oversize):
            yield _oversize_record(line, origin, limit)
            continue
        line = line.strip()
        if not line:
            continue
        if len(line) > limit:
            yield FeedRecord(None, line, origin, too_large_reason(len(line), limit))
            continue
        yield FeedRecord(key_of_json(line, key_fields), line, origin)


def key_of(tweet_id: object) -> bytes | None:
    if isinstance(tweet_id, bool) or not isinstance(tweet_id, (str, int)):
        return None
    text = str(tweet_id).strip()  # as Tweet strips it: one id, one partition
    return text.encode() if 0 < len(text) <= _KEY_MAX_CHARS else None


def key_of_json(line: bytes | str, fields: tuple[str, ...] = ("id",)) -> bytes | None:
    """The message key: the first of ``fields`` the JSON object has (None for a line that is not an object with
    such a field, is not valid UTF-8, nests too deep, or whatever else: this never raises)."""
    try:
        text = line.decode("utf-8") if isinstance(line, (bytes, bytearray)) else line
        if json_nesting_exceeds(text, DEFAULT_LIMITS.max_json_depth):
            return None
        value = json.loads(text)
        if not isinstance(value, dict):
            return None
        return key_of(next((value[f] for f in fields if f in value), None))
    except Exception:  # RecursionError and MemoryError included: a key is a nicety, never a reason to stop
        return None
