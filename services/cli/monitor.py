"""Live numbers over a sliding window of live tweets, read from ClickHouse (works while `stancestream run` is up, or
against a ClickHouse server): ingest rate, latency p50/p95, per-language label mix with the anti-immigration share
counted and corrected for the adapter's measured errors (STANCESTREAM_SHARE_ESTIMATOR, default CPCC; 95%
bootstrap interval), dead letters, the active adapter and the last trainer run. Ctrl-C quits."""

from __future__ import annotations

import json


HELP = "live terminal dashboard: rate, latency, label mix per language, DLQ, adapter"


def arguments(parser) -> None:
    parser.add_argument("--window", type=int, default=300, metavar="S", help="sliding window in seconds (default 300)")
    parser.add_argument("--interval", type=float, default=2.0, metavar="S", help="refresh period (default 2 s)")
    parser.add_argument("--once", action="store_true", help="print one snapshot and exit")
    parser.add_argument("--json", action="store_true", help="with --once: machine-readable output")


def run(args, settings) -> int:
    from rich.console import Console

    from services.views.monitor import read_snapshot, render_snapshot, watch
    from services.wiring import open_migrated_store, open_registry

    store = open_migrated_store(settings)
    calibration_of = open_registry(settings, store, seed=False).calibration
    if args.once:
        snapshot = read_snapshot(store, args.window, calibration_of, settings.share_estimator)
        if args.json:
            print(json.dumps(snapshot.as_json(), default=str, indent=1))
        else:
            Console().print(render_snapshot(snapshot))
        return 0
    # until Ctrl-C, which main turns into exit code 130
    watch(store, args.window, args.interval, calibration_of, settings.share_estimator)
    return 0
