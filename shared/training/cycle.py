"""One trainer cycle: train a candidate adapter on the current labels, gate it against the active adapter on a
frozen holdout, and promote or reject it. Every cycle, whatever it decides, is a row of ``adapter_runs``.

The holdout is drawn once (stratified by language and label) from the labels present at the first cycle and
stored in the ``holdout`` table; later labels only ever join training, so successive candidates are compared on
the same tweets. The candidate is trained with the active adapter's recipe (its recorded hyperparameters).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from dataclasses import KW_ONLY, dataclass, field, fields
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable

from shared.classifier.adapters import BASE_VERSION, read_adapter_metadata
from shared.classifier.model import StanceClassifier
from shared.messages import AdapterAction, AdapterEvent, Label, utcnow
from shared.settings import Settings
from shared.store.base import Store
from shared.store.queries.adapters import insert_adapter_run, last_training_started
from shared.store.queries.labels import count_labels, freeze_holdout, holdout_ids, load_labels
from shared.training.calibration import save_calibration
from shared.training.config import TrainConfig
from shared.training.data import example_of, stratified_split
from shared.training.evaluation import evaluate
from shared.training.loop import train
from shared.training.registry import AdapterRecord, AdapterRegistry

log = logging.getLogger(__name__)

HOLDOUT_SEED = 2024


@dataclass
class CycleReport:
    run_id: str
    started_at: datetime
    decision: str  # promoted | rejected | skipped | failed
    reason: str
    active_version: str
    candidate_version: str | None = None
    labels: int = 0
    train_examples: int = 0
    holdout_examples: int = 0
    active_metrics: dict = field(default_factory=dict)
    candidate_metrics: dict = field(default_factory=dict)
    duration_s: float = 0.0

    def line(self) -> str:
        who = f"{self.candidate_version} " if self.candidate_version else ""
        accuracy = (f"; holdout accuracy {self.candidate_metrics['accuracy']:.3f} vs active "
                    f"{self.active_metrics['accuracy']:.3f}" if self.candidate_metrics else "")
        return f"{who}{self.decision}: {self.reason}{accuracy} ({self.duration_s:.0f} s)"


def gate(candidate: dict, active: dict, settings: Settings) -> tuple[bool, str]:
    """Promote only if macro-F1 does not drop by more than the margin and no well-represented language drops."""
    drop = active["macro_f1"] - candidate["macro_f1"]
    if drop > settings.gate_max_f1_drop:
        return False, (f"holdout macro-F1 {candidate['macro_f1']:.3f} is {drop:.3f} below the active adapter's "
                       f"{active['macro_f1']:.3f} (allowed: {settings.gate_max_f1_drop:.3f})")
    for lang, ours in sorted(candidate["per_language"].items()):
        theirs = active["per_language"].get(lang)
        if theirs is None or ours["n"] < settings.gate_min_lang_n:
            continue
        lang_drop = theirs["accuracy"] - ours["accuracy"]
        if lang_drop > settings.gate_max_lang_drop:
            return False, (f"language {lang} (n={ours['n']}): holdout accuracy {ours['accuracy']:.3f} is "
                           f"{lang_drop:.3f} below the active adapter's {theirs['accuracy']:.3f} "
                           f"(allowed: {settings.gate_max_lang_drop:.3f})")
    gated = sum(1 for m in candidate["per_language"].values() if m["n"] >= settings.gate_min_lang_n)
    return True, (f"holdout macro-F1 {candidate['macro_f1']:.3f} vs {active['macro_f1']:.3f} "
                  f"({candidate['macro_f1'] - active['macro_f1']:+.3f}); none of the {gated} language(s) with "
                  f">= {settings.gate_min_lang_n} holdout tweets dropped more than {settings.gate_max_lang_drop:.2f}")


def recipe_of(active: AdapterRecord | None) -> TrainConfig:
    """The active adapter's recorded hyperparameters (the defaults for what it does not record)."""
    recorded = read_adapter_metadata(Path(active.path)).get("hyperparameters", {}) if active else {}
    known = {f.name for f in fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in recorded.items() if k in known and k != "limit"})


def next_run_at(settings: Settings, after: datetime) -> datetime:
    if settings.trainer_cron:
        from croniter import croniter

        return croniter(settings.trainer_cron, after).get_next(datetime)
    return after + timedelta(seconds=settings.trainer_interval_s)


@dataclass(eq=False)
class Trainer:
    """Runs cycles against one store and registry; ``announce`` tells running workers about a promotion."""

    settings: Settings
    store: Store
    registry: AdapterRegistry
    announce: Callable[[AdapterEvent], None]
    _: KW_ONLY
    recipe: TrainConfig | None = None
    progress: bool = False
    telemetry: Any = None
    # set on shutdown: a running training stops at its next step
    cancelled: threading.Event = field(default_factory=threading.Event, init=False)

    def new_labels(self) -> int:
        """Labels that arrived since the last cycle that trained (all labels if none did)."""
        return count_labels(self.store, since=last_training_started(self.store))

    def run_cycle(self, force: bool = False) -> CycleReport:
        started = time.monotonic()
        active = self.registry.active()
        report = CycleReport(uuid.uuid4().hex[:12], utcnow(), "skipped", "",
                             active.version if active else BASE_VERSION)
        try:
            self._cycle(report, active, force)
        except Exception as exc:
            log.exception("trainer cycle failed")
            report.decision, report.reason = "failed", f"{type(exc).__name__}: {exc}"
            if report.candidate_version and report.candidate_version in {r.version for r in self.registry.records()}:
                self.registry.reject(report.candidate_version, report.reason)
        report.duration_s = time.monotonic() - started
        self._record(report)
        if self.telemetry is not None:
            self.telemetry.training_runs.labels(report.decision).inc()
            self.telemetry.training_seconds.set(report.duration_s)
        return report

    def _cycle(self, report: CycleReport, active: AdapterRecord | None, force: bool) -> None:
        new = self.new_labels()
        if not force and new < self.settings.trainer_min_new_labels:
            report.reason = f"{new} new label(s) since the last training, fewer than {self.settings.trainer_min_new_labels}"
            return
        labels = load_labels(self.store)
        holdout_ids = self._holdout(labels)
        holdout = [example_of(lb) for lb in labels if lb.tweet_id in holdout_ids]
        training = [example_of(lb) for lb in labels if lb.tweet_id not in holdout_ids]
        report.labels, report.train_examples, report.holdout_examples = len(labels), len(training), len(holdout)
        if not holdout or len(training) < 8:
            report.reason = f"too few labels to train and gate ({len(training)} to train, {len(holdout)} held out)"
            return

        version = report.candidate_version = self.registry.next_version()
        run_dir = self.settings.data_dir / "training" / version
        recipe = self.recipe or recipe_of(active)
        log.warning("training candidate %s on %d labels (%d held out)", version, len(training), len(holdout))
        result = train(self.settings, training, run_dir, recipe, sources=["clickhouse:labels"], version=version,
                       progress=self.progress, should_stop=self.cancelled.is_set)

        classifier = StanceClassifier.load(self.settings, adapter=Path(active.path) if active else None)
        report.active_metrics = evaluate(classifier, holdout)[0]
        candidate = self.registry.add_candidate(result.adapter_dir, version, report.active_version,
                                                {"dev": result.dev_metrics})
        classifier.switch_adapter(Path(candidate.path))
        report.candidate_metrics, probs = evaluate(classifier, holdout)
        # The frozen holdout is what the candidate never trained on, and larger than its dev split.
        save_calibration(probs, holdout, Path(candidate.path), "frozen holdout")
        metrics = {"holdout": report.candidate_metrics, "dev": result.dev_metrics}

        passed, report.reason = gate(report.candidate_metrics, report.active_metrics, self.settings)
        if not passed:
            report.decision = "rejected"
            self.registry.reject(version, report.reason, metrics)
            return
        promoted, _ = self.registry.promote(version, report.reason, metrics)
        report.decision = "promoted"
        self.announce(AdapterEvent(version=version, path=promoted.path, action=AdapterAction.promote,
                                   previous=report.active_version, reason=report.reason))

    def _holdout(self, labels: list[Label]) -> set[str]:
        """The frozen holdout's tweet ids; drawn from ``labels`` the first time."""
        ids = holdout_ids(self.store)
        if ids:
            return ids
        _, held = stratified_split([example_of(lb) for lb in labels], self.settings.holdout_fraction, HOLDOUT_SEED)
        freeze_holdout(self.store, [ex.id for ex in held], utcnow())
        return {ex.id for ex in held}

    def _record(self, report: CycleReport) -> None:
        insert_adapter_run(self.store, (
            report.run_id, report.started_at, report.duration_s, report.labels, report.train_examples,
            report.holdout_examples, report.active_version, report.candidate_version,
            json.dumps(report.active_metrics), json.dumps(report.candidate_metrics), report.decision, report.reason,
        ))



async def run_schedule(trainer: Trainer) -> None:
    """Run cycles on the configured interval or cron schedule until cancelled."""
    import asyncio

    try:
        while True:
            due = next_run_at(trainer.settings, utcnow())
            log.info("next trainer cycle at %s", due.isoformat(timespec="seconds"))
            await asyncio.sleep(max(0.0, (due - utcnow()).total_seconds()))
            report = await asyncio.to_thread(trainer.run_cycle)
            log.warning("trainer cycle %s", report.line())
    finally:
        trainer.cancelled.set()
