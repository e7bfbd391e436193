"""Re-feed archived tweets — from the ClickHouse `tweets` archive or from JSONL/CSV files (.gz accepted, e.g. one per
hour) — through the worker's batch code with the chosen adapter (default: the active one). Rows are stored per
adapter version and tagged with the run id; the live stream's topic, order and offsets are never touched.
`stancestream replay status` lists runs; an interrupted run continues with --resume RUN."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from services.cli.common import iso_timestamp


HELP = "re-classify archived tweets with a chosen adapter, beside the live stream"


def arguments(parser) -> None:
    parser.add_argument("action", nargs="?", choices=("status",), help="list replay runs instead of starting one")
    parser.add_argument("--since", type=iso_timestamp, metavar="T",
                        help="posted at or after T (ISO 8601, e.g. 2025-01-01)")
    parser.add_argument("--until", type=iso_timestamp, metavar="T", help="posted before T")
    parser.add_argument("--lang", action="append", default=[], metavar="XX",
                        help="only these detected languages (repeatable)")
    parser.add_argument("--adapter", metavar="vN|DIR",
                        help="registry version or adapter directory (default: the active one)")
    parser.add_argument("--from-file", action="append", default=[], metavar="FILE",
                        help="archive file instead of the ClickHouse archive (repeatable, globs expanded by the shell)")
    parser.add_argument("--rate", type=float, metavar="N",
                        help="at most N tweets per second (default: as fast as possible)")
    parser.add_argument("--resume", metavar="RUN", help="continue an interrupted run with its original parameters")
    parser.add_argument("--json", action="store_true", help="with status: machine-readable output")


def run(args, settings) -> int:
    from services.cli.render import print_table
    from services.replay.runner import ReplayPlan, resolve_adapter, run_replay
    from services.wiring import open_migrated_store, open_registry
    from shared.classifier.cache import ProbabilityCache
    from shared.classifier.model import StanceClassifier
    from shared.store.queries.replays import replay_runs

    store = open_migrated_store(settings)
    if args.action == "status":
        runs = replay_runs(store)
        if args.json:
            print(json.dumps(runs, default=str, indent=1))
            return 0
        print_table(("run", "adapter", "source", "window", "langs", "done", "status", "message"),
                    [(r["run_id"], r["adapter_version"], r["source"], f"{r['since'] or '…'} → {r['until'] or '…'}",
                      ",".join(r["langs"]), f"{r['done']}/{r['total']}", r["status"], r["message"]) for r in runs])
        return 0
    registry = open_registry(settings, store)
    if args.resume:
        plan = ReplayPlan.load(store, args.resume)
    else:
        for path in args.from_file:
            if not Path(path).exists():
                raise FileNotFoundError(f"archive file not found: {path}")
        version, path = resolve_adapter(registry, args.adapter)
        plan = ReplayPlan.new(version, str(path), args.from_file, args.since, args.until, args.lang)
    classifier = StanceClassifier.load(settings, adapter=Path(plan.adapter_path))
    print(f"replay {plan.run_id}: adapter {plan.adapter_version}, source {plan.source}", file=sys.stderr)
    result = run_replay(store, classifier, plan, batch_size=settings.max_batch_size, rate=args.rate,
                        cache=ProbabilityCache(settings.cache_entries))
    print(f"{plan.run_id}: {result.done}/{result.total} tweets classified with {plan.adapter_version}; compare "
          f"versions with docs/queries.md Q3 (--param run={plan.run_id})")
    return 0
