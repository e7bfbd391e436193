"""Feeding tweets from files into ``tweets.raw``: JSONL or CSV, plain or ``.gz``, or standard input.

JSONL lines are sent exactly as they are, malformed ones included: validating is the worker's job, and a bad
line must show up in the dead-letter topic with its reason rather than vanish in the feeder. CSV rows (such as
the paper's datasets) become JSON objects; a row without ``created_at`` gets the time it was fed.
"""

from __future__ import annotations

import asyncio
import csv
import gzip
import io
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Iterator

from shared.messages import utcnow

_CSV_FIELDS = ("id", "text", "created_at", "lang", "author_id", "country", "source")


@dataclass(frozen=True)
class FeedRecord:
    key: bytes | None
    value: bytes


@dataclass
class FeedReport:
    sent: int = 0
    #: For each partition, the offset after the last message we produced: the worker is done with our
    #: messages once its committed offsets reach these.
    end_offsets: dict[int, int] = field(default_factory=dict)
    done: bool = False


def _open_text(path: str) -> IO[str]:
    if path == "-":
        return sys.stdin
    if not Path(path).exists():
        raise FileNotFoundError(f"feed file not found: {path}")
    if path.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace", newline="")


def _format_of(path: str) -> str:
    name = path.removesuffix(".gz")
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".jsonl", ".json", ".ndjson")) or path == "-":
        return "jsonl"
    raise ValueError(f"cannot tell the format of {path}: use .jsonl or .csv (optionally .gz)")


def read_feed(path: str) -> Iterator[FeedRecord]:
    """Records of a JSONL or CSV file (``-`` reads JSONL from standard input)."""
    fmt = _format_of(path)
    handle = _open_text(path)
    try:
        if fmt == "jsonl":
            for line in handle:
                line = line.strip()
                if line:
                    yield FeedRecord(_key_of_json(line), line.encode())
        else:
            source = Path(path).name
            for row in csv.DictReader(handle):
                tweet = {k: row[k] for k in _CSV_FIELDS if row.get(k) not in (None, "")}
                tweet.setdefault("created_at", utcnow().isoformat())
                tweet.setdefault("source", source)
                yield FeedRecord(tweet.get("id", "").encode() or None, json.dumps(tweet, ensure_ascii=False).encode())
    finally:
        if handle is not sys.stdin:
            handle.close()


def _key_of_json(line: str, fields: tuple[str, ...] = ("id",)) -> bytes | None:
    """The message key: the first of ``fields`` the JSON object has (None for lines that are not objects)."""
    try:
        value = json.loads(line)
    except json.JSONDecodeError:
        return None
    tweet_id = next((value[f] for f in fields if f in value), None) if isinstance(value, dict) else None
    return str(tweet_id).encode() if isinstance(tweet_id, (str, int)) and tweet_id != "" else None


async def produce_feed(bootstrap: str, topic: str, records: Iterator[FeedRecord], report: FeedReport,
                       rate: float | None = None) -> FeedReport:
    """Send records keyed by tweet id (so one tweet's versions stay in order), paced to ``rate`` per second."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    await producer.start()
    try:
        started = time.monotonic()
        pending = []
        while True:
            # Read in a thread: a live pipe on standard input must not block the event loop (and the worker).
            record = await asyncio.to_thread(next, records, None)
            if record is None:
                break
            if rate:
                ahead = started + report.sent / rate - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)
            pending.append(await producer.send(topic, record.value, key=record.key))
            report.sent += 1
            if len(pending) >= 500:
                _note(report, await asyncio.gather(*pending))
                pending.clear()
        _note(report, await asyncio.gather(*pending))
    finally:
        await producer.stop()
    report.done = True
    return report


def _note(report: FeedReport, metadata: list) -> None:
    for meta in metadata:
        report.end_offsets[meta.partition] = max(report.end_offsets.get(meta.partition, 0), meta.offset + 1)
