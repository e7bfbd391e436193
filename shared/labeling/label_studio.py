"""Label Studio's formats: the labeling interface (``label_studio_config.xml``), the tasks ``label-queue`` writes
for import, and the label records read from a project's JSON export.

Import (a JSON list of tasks): ``{"data": {"text", "tweet_id", "lang"}, "predictions": [{"model_version",
"score", "result": [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]}]}``;
the prediction pre-selects the active adapter's label. Export (Label Studio's "JSON" format): the same tasks, each
with ``annotations``, every one with its ``result`` (the chosen label), ``completed_by``, ``was_cancelled`` and
``created_at``/``updated_at``. Checked against a real instance by ``benchmarks/label_studio_roundtrip.py``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from shared.labeling.queue import QueuedTweet

#: The labeling interface shipped with the project (package data).
CONFIG_FILE = Path(__file__).with_name("label_studio_config.xml")
#: The names in the interface that a result refers to: the Choices control and the Text object.
FROM_NAME, TO_NAME = "label", "text"


def label_config() -> str:
    return CONFIG_FILE.read_text(encoding="utf-8")


def config_choices(config: str) -> list[str]:
    """The values of the interface's ``<Choice>`` tags, in order."""
    return [c.get("value", "") for c in ElementTree.fromstring(config).iter("Choice")]


def import_task(item: QueuedTweet, model_version: str) -> dict:
    """One Label Studio task for a queued tweet, with the active adapter's label as its prediction."""
    tweet = item.tweet
    return {
        "data": {"text": tweet.text, "tweet_id": tweet.tweet_id, "lang": tweet.lang},
        "predictions": [{
            "model_version": model_version,
            "score": round(item.confidence, 4),
            "result": [{"from_name": FROM_NAME, "to_name": TO_NAME, "type": "choices",
                        "value": {"choices": [item.predicted.value]}}],
        }],
    }


def is_export(tasks: object) -> bool:
    """A Label Studio JSON export: a list of objects with ``annotations``."""
    return (isinstance(tasks, list) and bool(tasks) and all(isinstance(t, dict) for t in tasks)
            and any("annotations" in t for t in tasks))


def is_import_file(tasks: object) -> bool:
    """Tasks written for import (``data`` but no ``annotations``): nobody labeled them yet."""
    return (isinstance(tasks, list) and bool(tasks) and all(isinstance(t, dict) for t in tasks)
            and all("data" in t and "annotations" not in t for t in tasks))


def exported_labels(tasks: list) -> Iterator[tuple[int, dict | None]]:
    """(task number from 1, its label record) for every task of an export; None for a task nobody annotated
    (no annotation, or only cancelled ones, i.e. skipped). The record is as the task says it: the consumer
    validates it, so a task without a tweet id or with two labels is dead-lettered with its reason."""
    for number, task in enumerate(tasks, 1):
        annotation = latest_annotation(task.get("annotations"))
        if annotation is None:
            yield number, None
            continue
        data = task.get("data") if isinstance(task.get("data"), dict) else {}
        record = {"tweet_id": data.get("tweet_id", data.get("id")), "text": data.get("text"),
                  "lang": data.get("lang")}
        choices = _choices(annotation.get("result"))
        if choices is not None:
            record["label"] = choices[0] if len(choices) == 1 else choices
        annotator = annotator_of(annotation.get("completed_by"))
        if annotator is not None:
            record["annotator"] = annotator
        when = annotation.get("updated_at") or annotation.get("created_at")
        if when is not None:
            record["labeled_at"] = when
        yield number, {k: v for k, v in record.items() if v is not None}


def latest_annotation(annotations: object) -> dict | None:
    """The most recent annotation that was not cancelled (skipped), or None."""
    if not isinstance(annotations, list):
        return None
    done = [a for a in annotations if isinstance(a, dict) and not a.get("was_cancelled")]
    return max(done, key=lambda a: _time(a.get("updated_at") or a.get("created_at")), default=None)


def _time(value: object) -> datetime:
    """An annotation's ISO 8601 time (Label Studio writes ``2026-12-02T02:46:30.384022Z``); the earliest
    possible one when it has none or an unreadable one."""
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return datetime.min.replace(tzinfo=timezone.utc)
    return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed


def _choices(result: object) -> list | None:
    """The chosen values of the annotation's ``choices`` result (ours, ``label``, if there are several)."""
    if not isinstance(result, list):
        return None
    found = [r for r in result if isinstance(r, dict) and r.get("type") == "choices"]
    ours = [r for r in found if r.get("from_name") == FROM_NAME] or found
    if not ours or not isinstance(ours[0].get("value"), dict):
        return None
    choices = ours[0]["value"].get("choices")
    return choices if isinstance(choices, list) and choices else None


def annotator_of(completed_by: object) -> str | None:
    """Who annotated: ``label-studio:<user id>`` (Label Studio 1.23's JSON export gives ``completed_by`` as the
    user's id), or the email when an export gives the user as an object with one."""
    if isinstance(completed_by, dict):
        if completed_by.get("email"):
            return str(completed_by["email"])
        completed_by = completed_by.get("id")
    if completed_by is None or isinstance(completed_by, bool):
        return None
    return f"label-studio:{completed_by}" if isinstance(completed_by, int) else str(completed_by)
