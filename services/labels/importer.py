"""``stancestream labels import``: a label file into ``tweets.labels``, or straight into the store when no broker runs.

Validation happens in one place, ``LabelBatchProcessor``: with a broker, the workers' ``labels`` agent runs it
(this only publishes each row as it is and waits for the workers to commit); without one there is no consumer
either, and the rows go through the same processor into the embedded store, refused ones to ``dead_letters``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from services.wiring import kafka_bootstrap, open_migrated_store
from shared.messages import DeadLetter
from shared.settings import Settings
from shared.store.sinks import ClickHouseLabelSink
from shared.streaming.feed import FeedReport, feeder_dead_letter, produce_feed
from shared.streaming.feed_files import check_readable
from shared.streaming.label_files import read_label_file
from shared.streaming.processing import InboundMessage, LabelBatchProcessor
from shared.streaming.topics import CommittedOffsets, Topics, caught_up, physical
from shared.streaming.validation import InputLimits

#: Label messages validated and written per store insert when importing without a broker.
CHUNK = 1000


@dataclass(frozen=True)
class ImportResult:
    sent: int
    stored: int | None  # known when written directly
    dead_lettered: int | None
    via: str
    ingested: bool


def import_labels(settings: Settings, path: str, wait_s: float = 60.0, warn=None) -> ImportResult:
    """Publish a label file to ``tweets.labels`` and wait (up to ``wait_s``) for the workers to store it; with no
    broker configured and no stack running, write it into the embedded store directly."""
    check_readable(path)  # fail early on an unknown format, a missing, unreadable or corrupt file
    bootstrap = kafka_bootstrap(settings)
    if bootstrap is not None:
        settings = settings.model_copy(update={"kafka_bootstrap": bootstrap})
        topic = physical(Topics.labels, settings)
        records = read_label_file(path, warn, settings.max_message_bytes)
        report = asyncio.run(produce_feed(bootstrap, topic, records, FeedReport(),
                                          max_message_bytes=settings.max_message_bytes))
        ingested = asyncio.run(_wait_ingested(settings, report.end_offsets, wait_s))
        return ImportResult(report.sent, None, None, f"{topic} on {bootstrap}", ingested)

    store = open_migrated_store(settings)
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
        if len(chunk) == CHUNK:
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


async def _wait_ingested(settings: Settings, end_offsets: dict[int, int], wait_s: float) -> bool:
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
