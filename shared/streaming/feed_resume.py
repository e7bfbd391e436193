"""Resuming a feed file: skip the lines the store already holds the outcome of.

The embedded broker keeps messages in memory, so after a crash or an interrupted ``run`` the only record of
what was done is ClickHouse. A line is done when its dead letter is stored (found by the line's origin,
``<feed id>:<line>``), or when its tweet is stored with the same text *and* classified. Everything else is fed
again; the tables absorb any overlap (tweets by id, classifications by tweet and adapter version, dead
letters by origin), so resuming is exact even when it repeats a line that was done a moment before the crash.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import islice
from typing import Iterator, Protocol

from shared.streaming.feed import FeedRecord

CHUNK = 2000  # lines looked up per query


@dataclass
class ResumeReport:
    skipped: int = 0


class FeedOutcomes(Protocol):
    """What the store holds of a feed's lines (``shared.store.queries.feeds.StoredFeedOutcomes``): the text of each
    tweet id stored and classified by the live stream, and which origins (``<feed id>:<line>``) have a dead letter."""

    def live_texts(self, ids: list[str]) -> dict[str, str]: ...

    def dead_letter_origins(self, origins: list[str]) -> set[str]: ...


def undone(records: Iterator[FeedRecord], outcomes: FeedOutcomes, report: ResumeReport) -> Iterator[FeedRecord]:
    """``records`` without those whose outcome is already stored."""
    while chunk := list(islice(records, CHUNK)):
        texts = {}
        for record in chunk:
            tweet = _tweet_of(record.value)
            if tweet is not None:
                texts[record] = tweet
        stored = outcomes.live_texts(sorted({tweet_id for tweet_id, _ in texts.values()}))
        dead = outcomes.dead_letter_origins([r.origin for r in chunk if r.origin])
        for record in chunk:
            tweet = texts.get(record)
            if record.origin in dead or (tweet is not None and stored.get(tweet[0]) == tweet[1]):
                report.skipped += 1
            else:
                yield record


def _tweet_of(value: bytes) -> tuple[str, str] | None:
    """(id, text as the worker stores it) of a well-formed line; None for anything else."""
    try:
        payload = json.loads(value)
    except (ValueError, RecursionError):
        return None
    if not isinstance(payload, dict):
        return None
    tweet_id, text = payload.get("id"), payload.get("text")
    if isinstance(tweet_id, int) and not isinstance(tweet_id, bool):
        tweet_id = str(tweet_id)
    if not isinstance(tweet_id, str) or not isinstance(text, str):
        return None
    return tweet_id.strip(), text.strip()
