"""Label files: CSV (as in the paper's datasets) or JSONL ``Label`` objects, read into records for
``tweets.labels``.

Validation happens in one place, ``LabelBatchProcessor``, on the consuming side: an import publishes every row as
it is, and a bad one lands in the dead-letter topic and table with its reason instead of vanishing. Only a CSV
that is not well-formed is refused whole, before anything is sent.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterator

from shared.streaming.feed_csv import csv_rows
from shared.streaming.feed_files import FeedError, FeedRecord, feed_format, feed_id, guarded, jsonl_records, open_feed
from shared.streaming.validation import DEFAULT_LIMITS

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
    if feed_format(path) == "jsonl":
        with open_feed(path) as handle:
            yield from guarded(path, jsonl_records(path, handle, ("tweet_id", "id"), limit))
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
    with open_feed(path) as handle:
        for row in guarded(path, csv_rows(path, handle, limit)):
            if row.fields is None:
                reason = (row.error or "malformed").removeprefix(f"malformed CSV at line {row.line}: ")
                raise LabelFileError(f"{path}: line {row.line}: {reason}; nothing imported")
            yield (row.line, row.fields) if numbered else row.fields


def text_key(text: str) -> str:
    """A stable tweet id for a text without a usable id."""
    return "text-" + hashlib.sha256(" ".join(text.split()).encode()).hexdigest()[:16]
