"""The adapter registry's table (one row per status change of a version) and the trainer's runs."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Sequence

from shared.store.base import Store, as_utc_datetime

ADAPTER_COLUMNS = ("version", "parent", "path", "status", "replaced", "metrics", "reason", "created_at", "updated_at")
ADAPTER_RUN_COLUMNS = ("run_id", "started_at", "duration_s", "labels", "train_examples", "holdout_examples",
                       "active_version", "candidate_version", "active_metrics", "candidate_metrics", "decision",
                       "reason")


def adapter_rows(store: Store) -> list[dict[str, Any]]:
    """Each version's latest row (``ADAPTER_COLUMNS``), oldest version first."""
    return store.query(f"SELECT {', '.join(ADAPTER_COLUMNS)} FROM adapters FINAL ORDER BY created_at, version").dicts()


def last_adapter_update(store: Store) -> datetime | None:
    return as_utc_datetime(store.query("SELECT max(updated_at) FROM adapters").scalar())


def insert_adapter_row(store: Store, row: Sequence[Any]) -> None:
    """One status change, its values in ``ADAPTER_COLUMNS`` order."""
    store.insert("adapters", [row], ADAPTER_COLUMNS)


def last_training_started(store: Store) -> datetime | None:
    """When the last trainer cycle that trained (promoted, rejected or failed) began."""
    return as_utc_datetime(store.query(
        "SELECT max(started_at) FROM adapter_runs WHERE decision IN ('promoted', 'rejected', 'failed')"
    ).scalar())


def insert_adapter_run(store: Store, row: Sequence[Any]) -> None:
    """One trainer cycle, its values in ``ADAPTER_RUN_COLUMNS`` order."""
    store.insert("adapter_runs", [row], ADAPTER_RUN_COLUMNS)
