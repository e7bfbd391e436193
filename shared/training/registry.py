"""The adapter registry: versioned adapter directories (``v1``, ``v2``, …) plus their state in ClickHouse.

The directories live under ``settings.adapters_dir`` (a volume every worker can read); the ``adapters`` table
holds one row per status change of a version — candidate, active, retired or rejected — and the latest
``updated_at`` per version is its current state. Exactly one version is active at a time. Each activation
records the version it ``replaced``, so ``rollback`` walks back the chain of activations.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from pathlib import Path

from shared.classifier.adapters import ADAPTER_METADATA, BASE_VERSION, check_adapter, read_adapter_metadata
from shared.errors import StancestreamError
from shared.messages import utcnow
from shared.quantification.estimators import Calibration, adapter_calibration
from shared.store.base import Store, as_utc_datetime
from shared.store.queries.adapters import adapter_rows, insert_adapter_row, last_adapter_update

_VERSION = re.compile(r"^v(\d+)$")


class RegistryError(StancestreamError):
    """A registry operation that cannot be done (unknown version, nothing to roll back to, …)."""


class AdapterStatus(str, Enum):
    candidate = "candidate"
    active = "active"
    retired = "retired"
    rejected = "rejected"


@dataclass(frozen=True)
class AdapterRecord:
    version: str
    parent: str | None
    path: str
    status: AdapterStatus
    replaced: str | None
    metrics: dict = field(default_factory=dict)
    reason: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def as_json(self) -> dict:
        return {"version": self.version, "parent": self.parent, "path": self.path, "status": self.status.value,
                "replaced": self.replaced, "metrics": self.metrics, "reason": self.reason,
                "created_at": self.created_at.isoformat() if self.created_at else None,
                "updated_at": self.updated_at.isoformat() if self.updated_at else None}


class AdapterRegistry:
    def __init__(self, store: Store, root: Path):
        self.store = store
        self.root = root

    # -- reading ---------------------------------------------------------------------------------------------
    def records(self) -> list[AdapterRecord]:
        return [
            AdapterRecord(r["version"], r["parent"], r["path"], AdapterStatus(r["status"]), r["replaced"],
                          json.loads(r["metrics"] or "{}"), r["reason"], as_utc_datetime(r["created_at"]),
                          as_utc_datetime(r["updated_at"]))
            for r in adapter_rows(self.store)
        ]

    def get(self, version: str) -> AdapterRecord:
        for record in self.records():
            if record.version == version:
                return record
        raise RegistryError(f"no adapter {version!r} in the registry (see `stancestream adapters list`)")

    def servable(self, version: str, announced_path: str | None = None) -> AdapterRecord:
        """The record of ``version`` if a worker may load it: the active version, its directory the registry's
        own ``root/version`` (symlinks resolved, so it cannot point elsewhere) and, when an event announced a
        path, that same directory. RegistryError says why not."""
        record = self.get(version)
        if record.status is not AdapterStatus.active:
            raise RegistryError(f"{version} is {record.status.value} in the registry, not active")
        root = self.root.resolve()
        path = Path(record.path).resolve()
        if path != (root / version).resolve() or root not in path.parents:
            raise RegistryError(f"{version}'s directory {record.path} is not {root / version}")
        if announced_path is not None and Path(announced_path).resolve() != path:
            raise RegistryError(f"the event names {announced_path}, the registry {record.path}")
        return record

    def calibration(self, version: str) -> Calibration | None:
        """The calibration ``version`` was installed with (None: unknown version, or an adapter without one)."""
        try:
            return adapter_calibration(Path(self.get(version).path))
        except RegistryError:
            return None

    def active(self) -> AdapterRecord | None:
        active = [r for r in self.records() if r.status is AdapterStatus.active]
        return max(active, key=lambda r: r.updated_at) if active else None

    def next_version(self) -> str:
        numbers = [int(m.group(1)) for r in self.records() if (m := _VERSION.match(r.version))]
        if self.root.exists():
            numbers += [int(m.group(1)) for p in self.root.iterdir() if (m := _VERSION.match(p.name))]
        return f"v{max(numbers, default=0) + 1}"

    # -- writing ---------------------------------------------------------------------------------------------
    def seed(self, adapter_dir: Path | None) -> AdapterRecord | None:
        """On first use, register the configured adapter (e.g. the shipped ``adapters/default``) as active."""
        if adapter_dir is None or self.records():
            return None
        version = check_adapter(adapter_dir)
        metadata = read_adapter_metadata(adapter_dir)
        target = self._install(adapter_dir, version)
        trained_at = as_utc_datetime(metadata["created_at"].rstrip("Z")) if metadata.get("created_at") else None
        return self._write(version, None, target, AdapterStatus.active, None,
                           {"dev": metadata.get("dev_metrics", {})}, "seeded from the configured adapter",
                           created_at=trained_at)

    def add_candidate(self, adapter_dir: Path, version: str, parent: str | None, metrics: dict) -> AdapterRecord:
        target = self._install(adapter_dir, version)
        return self._write(version, parent, target, AdapterStatus.candidate, None, metrics, "trained")

    def reject(self, version: str, reason: str, metrics: dict | None = None) -> AdapterRecord:
        record = self.get(version)
        return self._write(version, record.parent, Path(record.path), AdapterStatus.rejected, record.replaced,
                           metrics if metrics is not None else record.metrics, reason, record.created_at)

    def promote(self, version: str, reason: str, metrics: dict | None = None
                ) -> tuple[AdapterRecord, AdapterRecord | None]:
        """Make ``version`` active and retire the current active one. Returns (new active, previous active)."""
        record = self.get(version)
        current = self.active()
        if current is not None and current.version == version:
            raise RegistryError(f"{version} is already active")
        check_adapter(Path(record.path))  # never activate a directory that cannot be served
        if current is not None:
            self._write(current.version, current.parent, Path(current.path), AdapterStatus.retired,
                        current.replaced, current.metrics, f"replaced by {version}", current.created_at)
        promoted = self._write(version, record.parent, Path(record.path), AdapterStatus.active,
                               current.version if current else None,
                               metrics if metrics is not None else record.metrics, reason, record.created_at)
        return promoted, current

    def rollback(self) -> tuple[AdapterRecord, AdapterRecord]:
        """Re-activate the version the active one replaced. Returns (restored, rolled back)."""
        current = self.active()
        if current is None:
            raise RegistryError("no active adapter to roll back")
        if not current.replaced or current.replaced == BASE_VERSION:
            raise RegistryError(f"{current.version} replaced no earlier version: nothing to roll back to")
        previous = self.get(current.replaced)
        check_adapter(Path(previous.path))
        self._write(current.version, current.parent, Path(current.path), AdapterStatus.retired, current.replaced,
                    current.metrics, f"rolled back to {previous.version}", current.created_at)
        restored = self._write(previous.version, previous.parent, Path(previous.path), AdapterStatus.active,
                               previous.replaced, previous.metrics, f"rollback from {current.version}",
                               previous.created_at)
        return restored, current

    def _install(self, adapter_dir: Path, version: str) -> Path:
        """Copy the adapter to ``root/version`` (its metadata names that version); return the new directory."""
        target = (self.root / version).resolve()
        if target == adapter_dir.resolve():
            return target
        if target.exists():
            raise RegistryError(f"{target} already exists")
        self.root.mkdir(parents=True, exist_ok=True)
        staging = target.with_name(f".{version}.partial")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(adapter_dir, staging)
        metadata = read_adapter_metadata(staging) | {"version": version}
        (staging / ADAPTER_METADATA).write_text(json.dumps(metadata, indent=2, ensure_ascii=False) + "\n")
        staging.rename(target)  # atomic: a worker never sees a half-copied version
        return target

    def _write(self, version: str, parent: str | None, path: Path, status: AdapterStatus, replaced: str | None,
               metrics: dict, reason: str, created_at: datetime | None = None) -> AdapterRecord:
        now = utcnow()
        # ReplacingMergeTree keeps the row with the greatest updated_at: make every change strictly later.
        latest = last_adapter_update(self.store)
        if latest is not None and now <= latest:
            now = latest + timedelta(milliseconds=1)
        record = AdapterRecord(version, parent, str(path), status, replaced, metrics, reason, created_at or now, now)
        insert_adapter_row(self.store, (version, parent, str(path), status.value, replaced,
                                       json.dumps(metrics, default=str), reason, record.created_at, now))
        return record
