"""``stancestream trainer``: the adapter-refresh service (one cycle with ``--once``, else on its schedule)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from services.wiring import announcer, on_stop_signals, open_migrated_store, open_registry
from shared.settings import Settings
from shared.streaming.telemetry import Telemetry
from shared.quantification.drift_check import DriftConfig, adapter_training_languages, watch_drift
from shared.quantification.live import refresh_shares
from shared.training.cycle import Trainer, run_schedule

log = logging.getLogger("stancestream.trainer")


def build_trainer(settings: Settings, progress: bool) -> Trainer:
    registry = open_registry(settings)
    return Trainer(settings, registry.store, registry, announcer(settings), progress=progress)


def once(settings: Settings, force: bool) -> int:
    report = build_trainer(settings, progress=True).run_cycle(force=force)
    print(report.line())
    return 1 if report.decision == "failed" else 0


async def _serve(settings: Settings) -> int:
    trainer = build_trainer(settings, progress=False)
    trainer.telemetry = Telemetry().serve(settings)
    stop = asyncio.Event()
    on_stop_signals(stop.set)
    shares = open_registry(settings, open_migrated_store(settings), seed=False)  # its own connection
    drift = open_registry(settings, open_migrated_store(settings), seed=False)  # and the drift check its own
    schedule = asyncio.gather(run_schedule(trainer),
                              refresh_shares(shares.store, shares.calibration, settings.shares_interval_s,
                                             settings.share_estimator),
                              watch_drift(drift.store, DriftConfig.of(settings),
                                          lambda version: adapter_training_languages(Path(drift.get(version).path)),
                                          settings.drift_interval_s, trainer.telemetry.drift))
    log.warning("trainer running: %s, at least %d new labels per cycle",
                f"cron {settings.trainer_cron}" if settings.trainer_cron else f"every {settings.trainer_interval_s:g} s",
                settings.trainer_min_new_labels)
    await stop.wait()
    schedule.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await schedule
    return 0


def main(settings: Settings, run_once: bool, force: bool) -> int:
    return once(settings, force) if run_once else asyncio.run(_serve(settings))
