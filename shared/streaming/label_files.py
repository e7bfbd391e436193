"""Label files: CSV (as in the paper's datasets, or a ``label-queue`` CSV with its label column filled in), JSONL
``Label`` objects, or a Label Studio JSON export, read into records for ``tweets.labels``.

Validation happens in one place, ``LabelBatchProcessor``, on the consuming side: an import publishes every row as
it is, and a bad one lands in the dead-letter topic and table with its reason instead of vanishing. Only a CSV
that is not well-formed is refused whole, before anything is sent.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterator

from shared.labeling.label_studio import exported_labels, is_export, is_import_file
from shared.messages import too_large_reason
from shared.streaming.feed_csv import csv_rows
from shared.streaming.feed_files import (
    FeedError, FeedRecord, feed_format, feed_id, guarded, jsonl_records, key_of, open_feed,
)
from shared.streaming.validation import DEFAULT_LIMITS

_CSV_FIELDS = {"id": "tweet_id", "tweet_id": "tweet_id", "text": "text", "lang": "lang", "label": "label",
               "annotator": "annotator", "labeled_at": "labeled_at"}


class LabelFileError(FeedError):
    """A label CSV that is not well-formed: nothing of it is imported."""


def read_label_file(path: str, warn=None, max_message_bytes: int | None = None) -> Iterator[FeedRecord]:
    """Label records of a CSV (columns id, lang, label, text as in the paper's datasets; annotator and
    labeled_at optional), a JSONL file (``Label`` objects) or a ``.json`` file that holds one JSON list (a Label
    Studio JSON export, or ``Label`` objects), plain or .gz, keyed by tweet id, each with its origin
    (``<file id>:<line>``, or ``<file id>:<task number>`` in a JSON list).

    A CSV row with a blank label is not labeled yet (a ``label-queue`` CSV partly filled in): it is skipped, and
    ``warn`` told how many. So is a Label Studio task without an annotation (or with only skipped ones); its
    annotated tasks become labels by their latest annotation (see ``shared.labeling.label_studio``).

    A CSV is checked whole before anything is sent: one malformed record (an unterminated quote, a wrong number of
    fields, invalid UTF-8) raises ``LabelFileError`` naming its line, and nothing is imported — a row never
    vanishes into its neighbour's text. JSONL lines are independent: each is validated by the consumer, and a
    line over ``max_message_bytes`` is a record the importer dead-letters itself.

    A CSV id shared by rows with different texts cannot identify a tweet (spreadsheets turn long ids into
    ``1.59E+18``): such rows are keyed by a hash of their text instead, and ``warn`` is told how many.
    """
    limit = max_message_bytes or DEFAULT_LIMITS.max_message_bytes
    if _holds_json_list(path):
        yield from _json_list_records(path, warn, limit)
        return
    if feed_format(path) == "jsonl":
        with open_feed(path) as handle:
            yield from guarded(path, jsonl_records(path, handle, ("tweet_id", "id"), limit))
        return
    texts_of: dict[str, set[str]] = {}
    for row in _label_rows(path, limit):
        texts_of.setdefault(row.get("id") or "", set()).add(row.get("text") or "")
    ambiguous = {i for i, texts in texts_of.items() if len(texts) > 1}
    rekeyed = unlabeled = 0
    annotator = f"import:{Path(path).name}"
    source = feed_id(path)
    for line, row in _label_rows(path, limit, numbered=True):
        if "label" in row and not (row["label"] or "").strip():
            unlabeled += 1
            continue
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
    if unlabeled and warn is not None:
        warn(f"{path}: {unlabeled} row(s) with a blank label skipped (not labeled yet)")


def _holds_json_list(path: str) -> bool:
    """A ``.json`` file whose first non-blank character opens a list (JSONL lines are objects)."""
    if not path.removesuffix(".gz").endswith(".json"):
        return False
    with open_feed(path) as handle:
        head = next(guarded(path, iter(lambda: handle.read(4096), b"")), b"")
    return head.removeprefix(b"\xef\xbb\xbf").lstrip().startswith(b"[")


def _json_list_records(path: str, warn, limit: int) -> Iterator[FeedRecord]:
    """Records of a JSON list: a Label Studio export's annotated tasks, or ``Label`` objects as they are. A file
    that is not valid JSON raises ``LabelFileError`` and nothing is imported."""
    with open_feed(path) as handle:
        raw = b"".join(guarded(path, iter(lambda: handle.read(1 << 20), b"")))
    try:
        items = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise LabelFileError(f"{path}: not a valid JSON list ({' '.join(str(exc).split())[:200]}); "
                             "nothing imported") from None
    source = feed_id(path)
    if is_import_file(items):
        raise LabelFileError(f"{path}: Label Studio tasks nobody labeled yet (an import file, e.g. from "
                             "label-queue): label them in Label Studio and import the project's JSON export")
    if is_export(items):
        unannotated = 0
        for number, label in exported_labels(items):
            if label is None:
                unannotated += 1
                continue
            yield _record(label, f"{source}:{number}", limit)
        if warn is not None:
            annotated = len(items) - unannotated
            warn(f"{path}: Label Studio export: {annotated} annotated task(s); {unannotated} without an "
                 "annotation skipped")
        return
    for number, item in enumerate(items, 1):
        yield _record(item, f"{source}:{number}", limit)


def _record(value: object, origin: str, limit: int) -> FeedRecord:
    """A record of one JSON value, keyed by its tweet id; one over ``limit`` bytes is dead-lettered by the
    importer, as an oversized JSONL line is."""
    data = json.dumps(value, ensure_ascii=False).encode()
    key = key_of(value.get("tweet_id", value.get("id"))) if isinstance(value, dict) else None
    if len(data) > limit:
        return FeedRecord(None, data, origin, too_large_reason(len(data), limit))
    return FeedRecord(key, data, origin)


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
