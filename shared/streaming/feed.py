"""Feeding tweets from files into ``tweets.raw``: JSONL or CSV, plain or ``.gz``, or standard input.

JSONL lines are sent exactly as they are, malformed ones included (files are read as bytes: invalid UTF-8 reaches
the worker as it is): validating is the worker's job, and a bad line must show up in the dead-letter topic with
its reason rather than vanish in the feeder. CSV rows (such as the paper's datasets) become JSON objects; a row
without ``created_at`` gets the time it was fed.

No line can stop a feed. Two kinds are dead-lettered by the feeder itself, to ``tweets.dlq``, because they cannot
travel as a tweet message: a line over ``max_message_bytes`` (the broker would refuse it), and a CSV row that is
not a well-formed record of the header's columns (an unterminated quote, a wrong number of fields, invalid UTF-8).
Every record is sent with the Kafka header ``stancestream-origin`` = its origin, ``<feed id>:<line number>``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Iterator

from shared.messages import ORIGIN_HEADER, DeadLetter, too_large_reason, utcnow
from shared.streaming.feed_csv import csv_rejected_record, csv_rows
from shared.streaming.feed_files import FeedRecord, feed_format, feed_id, guarded, jsonl_records, key_of, open_feed
from shared.streaming.pacing import RatePacer
from shared.streaming.topics import Topics
from shared.streaming.validation import DEFAULT_LIMITS

log = logging.getLogger(__name__)

_CSV_FIELDS = ("id", "text", "created_at", "lang", "author_id", "country", "source")


@dataclass
class FeedReport:
    sent: int = 0
    dead_lettered: int = 0  # lines the feeder refused itself (sent to tweets.dlq, not to the topic)
    #: For each partition, the offset after the last message we produced: the worker is done with our
    #: messages once its committed offsets reach these.
    end_offsets: dict[int, int] = field(default_factory=dict)
    done: bool = False


def read_feed(path: str, max_message_bytes: int | None = None) -> Iterator[FeedRecord]:
    """Records of a JSONL or CSV file (``-`` reads JSONL from standard input); a line the feeder must refuse is
    a record with ``rejected`` set. Raises ``FeedError`` for a file that cannot be read."""
    limit = max_message_bytes or DEFAULT_LIMITS.max_message_bytes
    fmt = feed_format(path)
    with open_feed(path) as handle:
        records = jsonl_records(path, handle, ("id",), limit) if fmt == "jsonl" else _csv_feed(path, handle, limit)
        yield from guarded(path, records)


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
        yield FeedRecord(key_of(tweet.get("id")), value, origin)


def dlq_topic_for(topic: str) -> str:
    """The dead-letter topic beside a physical topic name (same prefix)."""
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
        pacer = RatePacer(rate)
        reader = _ReadAhead(records)
        while True:
            record = await reader.next()
            if record is None:
                break
            if record.rejected is None and len(record.value) > limit:
                record = FeedRecord(None, record.value, record.origin, too_large_reason(len(record.value), limit))
            await pacer.wait(report.sent + report.dead_lettered)
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
