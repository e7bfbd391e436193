"""``stancestream monitor``: the live numbers of the stream in the terminal, refreshed until Ctrl-C."""

from __future__ import annotations

import time
from typing import Callable

from shared.messages import CATEGORIES
from shared.quantification.drift import describe
from shared.quantification.estimators import DEFAULT, Calibration
from shared.quantification.live import window_shares
from shared.store.base import Store
from shared.store.queries.drift import drift_alarms
from shared.store.queries.monitoring import MonitorSnapshot


def render_snapshot(snapshot: MonitorSnapshot):
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    latency = (f"{snapshot.latency_p50_ms / 1000:.2f} s / {snapshot.latency_p95_ms / 1000:.2f} s"
               if snapshot.latency_p50_ms is not None else "—")
    head = Text.assemble(
        ("ingest ", "bold"), f"{snapshot.ingest_per_s:.1f} tweets/s   ",
        ("latency p50/p95 ", "bold"), f"{latency}   ",
        ("DLQ ", "bold"), (f"{snapshot.dead_letters_in_window}", "red" if snapshot.dead_letters_in_window else ""),
        f" in window, {snapshot.dead_letters_total} total   ",
        ("adapter ", "bold"), snapshot.active_adapter or "(none)")
    labels = [c.value for c in CATEGORIES]
    table = Table("lang", *labels, "tweets", "anti, counted", "anti, corrected (95%)",
                  title=f"last {snapshot.window_s} s, live tweets", title_justify="left")
    for lang, counts in sorted(snapshot.mix.items(), key=lambda kv: -sum(kv[1].values())):
        total = sum(counts.values())
        corrected = snapshot.corrected.get(lang, {}).get("anti-immigration")
        table.add_row(lang, *(str(counts.get(label, 0)) for label in labels), str(total),
                      f"{counts.get('anti-immigration', 0) / total:.0%}",
                      f"{corrected[0]:.0%} [{corrected[1]:.0%}, {corrected[2]:.0%}]" if corrected else "—")
    alarms = "; ".join(describe(a["lang"], a["measure"], a["value"], a["threshold"]) for a in snapshot.drift)
    drift = Text.assemble(("drift: ", "bold"), (alarms, "red") if alarms else "none")
    run = snapshot.last_training
    last = Text.assemble(("last trainer run ", "bold"),
                         f"{run['started_at']}: {run['decision']} {run['candidate_version'] or ''} — {run['reason']}"
                         if run else "none yet")
    return Group(head, table, drift, last)


def read_snapshot(store: Store, window_s: int, calibration_of: Callable[[str], Calibration | None],
                  estimator: str = DEFAULT) -> MonitorSnapshot:
    snapshot = MonitorSnapshot.read(store, window_s)
    snapshot.corrected = window_shares(store, calibration_of, window_s, estimator=estimator)
    snapshot.drift = drift_alarms(store)
    return snapshot


def watch(store: Store, window_s: int, interval_s: float, calibration_of: Callable[[str], Calibration | None],
          estimator: str = DEFAULT) -> None:
    """Redraw the snapshot every ``interval_s`` until interrupted."""
    from rich.live import Live

    with Live(render_snapshot(read_snapshot(store, window_s, calibration_of, estimator)), refresh_per_second=4) as live:
        while True:
            time.sleep(interval_s)
            live.update(render_snapshot(read_snapshot(store, window_s, calibration_of, estimator)))
