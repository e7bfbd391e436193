"""Human labels: files → ``tweets.labels`` → the ClickHouse ``labels`` table, where the latest label per tweet wins.

Validation happens in one place, ``LabelBatchProcessor``, on the consuming side: an import publishes every row
as it is, and a bad one lands in the dead-letter topic and table with its reason instead of vanishing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Protocol, Sequence

from shared.streaming.feed import (
    FeedError, FeedRecord, _closing, _format_of, _guard, _open_bytes, csv_rows, feed_id, feeder_dead_letter,
    jsonl_records,
)
from shared.messages import DeadLetter, Label
from shared.streaming.processing import (
    DEFAULT_LIMITS, InboundMessage, InputLimits, InvalidMessage, parse_message, unexpected_reason,
)

_CSV_FIELDS = {"id": "tweet_id", "tweet_id": "tweet_id", "text": "text", "lang": "lang", "label": "label",
               "annotator": "annotator", "labeled_at": "labeled_at"}


class LabelFileError(FeedError):
    """A label CSV that is not well-formed: nothing of it is imported."""


def read_label_file(path: str, warn=None, max_message_bytes: int | None = None) -> Iterator[FeedRecord]:
    """Label records of a CSV (columns id, lang, label, text as in the paper's datasets; annotator and
    labeled_at optional) or JSONL file (``Label`` objects), plain or .gz, keyed by tweet id, each with its origin
    (``<file id>:<line>``).

    A CSV is checked whole before anything is sent: one malformed record (an unterminated quote, a wrong number of
    fields, invalid UTF-8) raises ``LabelFileError`` naming its line, and nothing is imported — a row never
    vanishes into its neighbour's text. JSONL lines are independent: each is validated by the consumer, and a
    line over ``max_message_bytes`` is a record the importer dead-letters itself.

    A CSV id shared by rows with different texts cannot identify a tweet (spreadsheets turn long ids into
    ``1.59E+18``): such rows are keyed by a hash of their text instead, and ``warn`` is told how many.
    """
    limit = max_message_bytes or DEFAULT_LIMITS.max_message_bytes
    if _format_of(path) == "jsonl":
        with _closing(_open_bytes(path)) as handle:
            records = jsonl_records(path, handle, ("tweet_id", "id"), limit)
            while (record := _guard(path, lambda: next(records, None))) is not None:
                yield record
        return
    texts_of: dict[str, set[str]] = {}
    for row in _label_rows(path, limit):
        texts_of.setdefault(row.get("id") or "", set()).add(row.get("text") or "")
    ambiguous = {i for i, texts in texts_of.items() if len(texts) > 1}
    rekeyed = 0
    annotator = f"import:{Path(path).name}"
    source = feed_id(path)
    for line, row in _label_rows(path, limit, numbered=True):
        label = {_CSV_FIELDS[k]: v for k, v in row.items() if k in _CSV_FIELDS and v not in (None, "")}
        if label.get("tweet_id", "") in ambiguous:
            label["tweet_id"] = text_key(row.get("text") or "")
            rekeyed += 1
        label.setdefault("annotator", annotator)
        yield FeedRecord(str(label.get("tweet_id", "")).strip().encode() or None,
                         json.dumps(label, ensure_ascii=False).encode(), f"{source}:{line}")
    if rekeyed and warn is not None:
        warn(f"{path}: {rekeyed} rows share their id with rows of another text ({len(ambiguous)} such ids, e.g. "
             f"{sorted(ambiguous)[0]!r}); they are keyed by a hash of their text instead")


def _label_rows(path: str, limit: int, numbered: bool = False):
    """The rows of a label CSV; the first malformed one raises ``LabelFileError`` (the caller reads the file
    once whole before sending anything, so nothing is imported then)."""
    with _closing(_open_bytes(path)) as handle:
        rows = csv_rows(path, handle, limit)
        while (row := _guard(path, lambda: next(rows, None))) is not None:
            if row.fields is None:
                reason = (row.error or "malformed").removeprefix(f"malformed CSV at line {row.line}: ")
                raise LabelFileError(f"{path}: line {row.line}: {reason}; nothing imported")
            yield (row.line, row.fields) if numbered else row.fields


def text_key(text: str) -> str:
    """A stable tweet id for a text without a usable id."""
    import hashlib

    return "text-" + hashlib.sha256(" ".join(text.split()).encode()).hexdigest()[:16]


def parse_label(value: bytes | None, limits: InputLimits = DEFAULT_LIMITS) -> Label:
    return parse_message(value, Label, "label", limits)


@dataclass
class LabelBatch:
    labels: list[Label] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)


class LabelBatchProcessor:
    """Validates label messages; a refused one, or one whose parsing raised anything, becomes its dead letter."""

    def __init__(self, limits: InputLimits = DEFAULT_LIMITS):
        self.limits = limits

    def process(self, messages: Sequence[InboundMessage]) -> LabelBatch:
        batch = LabelBatch()
        for message in messages:
            try:
                batch.labels.append(parse_label(message.value, self.limits))
            except InvalidMessage as exc:
                batch.dead_letters.append(DeadLetter.of(message, str(exc)))
            except Exception as exc:
                batch.dead_letters.append(DeadLetter.of(message, unexpected_reason(exc)))
        return batch


class LabelSink(Protocol):
    """Where labels go (``shared.store.sinks.ClickHouseLabelSink``): durable when ``write`` returns, or raise."""

    def write(self, labels: Sequence[Label], dead_letters: Sequence[DeadLetter]) -> None: ...


@dataclass(frozen=True)
class ImportResult:
    sent: int
    stored: int | None  # known when written directly
    dead_lettered: int | None
    via: str
    ingested: bool


def import_labels(settings, path: str, wait_s: float = 60.0, warn=None) -> ImportResult:
    """Publish a label file to ``tweets.labels`` and wait (up to ``wait_s``) for the workers to store it.

    With no broker configured and no stack running there is no consumer either: the rows then go straight into
    the embedded store through the same validation (``LabelBatchProcessor``), refused ones to ``dead_letters``.
    """
    import asyncio

    from shared.streaming.feed import FeedReport, check_readable, produce_feed
    from shared.store import open_store
    from shared.store.gateway_client import advertised_stack
    from shared.store.migrations import migrate
    from shared.store.sinks import ClickHouseLabelSink
    from shared.streaming.topics import Topics, physical

    check_readable(path)  # fail early on an unknown format, a missing, unreadable or corrupt file
    stack = advertised_stack(settings.data_dir) if settings.kafka_bootstrap is None else None
    bootstrap = settings.kafka_bootstrap or (stack or {}).get("kafka_bootstrap")
    if bootstrap is not None:
        settings = settings.model_copy(update={"kafka_bootstrap": bootstrap})
        topic = physical(Topics.labels, settings)
        records = read_label_file(path, warn, settings.max_message_bytes)
        report = asyncio.run(produce_feed(bootstrap, topic, records, FeedReport(),
                                          max_message_bytes=settings.max_message_bytes))
        ingested = asyncio.run(_wait_ingested(settings, report.end_offsets, wait_s))
        return ImportResult(report.sent, None, None, f"{topic} on {bootstrap}", ingested)

    store = open_store(settings)
    migrate(store)
    processor, sink = LabelBatchProcessor(InputLimits.of(settings)), ClickHouseLabelSink(store)
    sent = stored = refused = 0
    source = f"file:{Path(path).name}"
    chunk: list[InboundMessage] = []
    rejected: list[DeadLetter] = []
    records = read_label_file(path, warn, settings.max_message_bytes)
    for offset, record in enumerate(records):
        if record.rejected is not None:  # too large to be a message: refused before parsing, like the feeder does
            rejected.append(feeder_dead_letter(record, source))
            continue
        chunk.append(InboundMessage(record.value, source, 0, offset, origin=record.origin or ""))
        if len(chunk) == 1000:
            batch = processor.process(chunk)
            sink.write(batch.labels, batch.dead_letters)
            sent, stored, refused = sent + len(chunk), stored + len(batch.labels), refused + len(batch.dead_letters)
            chunk = []
    batch = processor.process(chunk)
    batch.dead_letters += rejected
    sink.write(batch.labels, batch.dead_letters)
    sent = sent + len(chunk) + len(rejected)
    stored, refused = stored + len(batch.labels), refused + len(batch.dead_letters)
    return ImportResult(sent, stored, refused, f"{store.description} (no broker running)", True)


async def _wait_ingested(settings, end_offsets: dict[int, int], wait_s: float) -> bool:
    import asyncio

    from shared.streaming.topics import CommittedOffsets, Topics, caught_up

    offsets = CommittedOffsets(settings)
    deadline = asyncio.get_running_loop().time() + wait_s
    try:
        while not caught_up(await offsets.of(Topics.labels, list(end_offsets)), end_offsets):
            if asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(0.5)
        return True
    finally:
        await offsets.close()
