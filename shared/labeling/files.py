"""The files of a label queue: Label Studio tasks (``.json``), the plain CSV beside them, and the labeling
interface (``<stem>.label_config.xml``)."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Sequence

from shared.errors import StancestreamError
from shared.labeling.label_studio import import_task, label_config
from shared.labeling.queue import CSV_COLUMNS, LanguageQueue, csv_row


class QueueFileError(StancestreamError):
    pass


def queue_paths(out: str | Path) -> tuple[Path | None, Path, Path]:
    """(Label Studio JSON or None, CSV, labeling config) for ``--out``: a ``.json`` gets its CSV beside it, a
    ``.csv`` is the CSV alone."""
    path = Path(out)
    if path.suffix.lower() not in (".json", ".csv"):
        raise QueueFileError(f"--out {out}: name a .json (Label Studio tasks, and a CSV beside it) or a .csv file")
    config = path.with_name(path.stem + ".label_config.xml")
    if path.suffix.lower() == ".json":
        return path, path.with_suffix(".csv"), config
    return None, path, config


def write_queue_files(out: str | Path, queues: Sequence[LanguageQueue], model_version: str) -> list[Path]:
    """Write the queue's files (each atomically: a half-written file is never left behind); return their paths."""
    tasks_path, csv_path, config_path = queue_paths(out)
    if not csv_path.parent.is_dir():
        raise QueueFileError(f"--out {out}: the folder {csv_path.parent} does not exist")
    items = [item for queue in queues for item in queue.queued]
    written = []
    if tasks_path is not None:
        tasks = [import_task(item, model_version) for item in items]
        _write(tasks_path, json.dumps(tasks, ensure_ascii=False, indent=1) + "\n")
        written.append(tasks_path)
    _write_csv(csv_path, [list(CSV_COLUMNS)] + [csv_row(item) for item in items])
    _write(config_path, label_config())
    return written + [csv_path, config_path]


def _write(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def _write_csv(path: Path, rows: list[list[str]]) -> None:
    partial = path.with_name(f".{path.name}.partial")
    with open(partial, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)
    os.replace(partial, path)
