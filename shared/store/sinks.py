"""The stream's writes to ClickHouse: the tweet archive, the classifications, the labels and the dead letters.

The sinks take message types, so the stream's sink protocols (``shared.streaming.processing``) are met without
the store knowing the stream. Redelivered batches replace rows (ReplacingMergeTree), never duplicate them.
"""

from __future__ import annotations

from typing import Sequence

from shared.messages import Classification, DeadLetter, Label, Tweet, kafka_origin, utcnow
from shared.store.base import Store

TWEET_COLUMNS = ("id", "text", "created_at", "platform_lang", "author_id", "country", "source", "ingested_at")
CLASSIFICATION_COLUMNS = (
    "tweet_id", "adapter_version", "model_id", "lang", "lang_confidence", "topic", "stance", "label",
    "p_pro", "p_anti", "p_neutral", "p_unrelated", "tweet_created_at", "classified_at", "latency_ms", "replay_run",
)
DEAD_LETTER_COLUMNS = ("source_topic", "partition", "offset", "reason", "payload", "failed_at", "origin",
                       "payload_bytes", "payload_sha256")
LABEL_COLUMNS = ("tweet_id", "text", "lang", "label", "annotator", "labeled_at", "ingested_at")
ID_LOOKUP = "SELECT id, lower(hex(SHA256(text))) FROM tweets WHERE id IN {ids:Array(String)} LIMIT 1 BY id"


class ClickHouseSink:
    """Inserts each table's rows in one statement."""

    def __init__(self, store: Store):
        self.store = store

    def write(self, tweets: Sequence[Tweet], classifications: Sequence[Classification],
              dead_letters: Sequence[DeadLetter]) -> None:
        now = utcnow()
        created = {t.id: t.created_at for t in tweets}
        self.store.insert(
            "tweets",
            [(t.id, t.text, t.created_at, t.lang, t.author_id, t.country, t.source, now) for t in tweets],
            TWEET_COLUMNS,
        )
        self.store.insert(
            "classifications",
            [
                (c.tweet_id, c.adapter_version, c.model_id, c.lang, c.lang_confidence, c.topic.value,
                 c.stance.value if c.stance else None, c.label.value, c.probabilities.pro, c.probabilities.anti,
                 c.probabilities.neutral, c.probabilities.unrelated, created[c.tweet_id], c.classified_at,
                 c.latency_ms, c.replay_run)
                for c in classifications
            ],
            CLASSIFICATION_COLUMNS,
        )
        write_dead_letters(self.store, dead_letters)

    def stored_text_digests(self, ids: list[str]) -> dict[str, str]:
        """The duplicate-id check's lookup: tweet id -> SHA-256 (hex) of the text stored under it, for ``ids``.

        Without FINAL: every row of an id holds the same text (the check refuses another one before it is written),
        so any row answers, and FINAL's merge at query time made the lookup, which the model waits for, grow with
        the table: 28.5 ms a batch at a million tweets against 10.3 (`benchmarks/id_lookup_growth.py`)."""
        if not ids:
            return {}
        rows = self.store.query(ID_LOOKUP, {"ids": list(ids)}).rows
        return {tweet_id: digest for tweet_id, digest in rows}


class ClickHouseLabelSink:
    """Writes labels (and refused label messages); the latest ``labeled_at`` per tweet wins in the table."""

    def __init__(self, store: Store):
        self.store = store

    def write(self, labels: Sequence[Label], dead_letters: Sequence[DeadLetter]) -> None:
        now = utcnow()
        self.store.insert("labels", [(lb.tweet_id, lb.text, lb.lang, lb.label.value, lb.annotator, lb.labeled_at, now)
                                     for lb in labels], LABEL_COLUMNS)
        write_dead_letters(self.store, dead_letters)


def write_dead_letters(store: Store, dead_letters: Sequence[DeadLetter]) -> None:
    """Dead letters are keyed on (source_topic, origin): the same message refused again replaces its row."""
    store.insert("dead_letters", [(d.source_topic, d.partition, d.offset, d.reason, d.payload, d.failed_at,
                                   d.origin or kafka_origin(d.source_topic, d.partition, d.offset), d.payload_bytes,
                                   d.payload_sha256) for d in dead_letters], DEAD_LETTER_COLUMNS)
