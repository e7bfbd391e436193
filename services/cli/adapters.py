"""Versioned adapters (v1, v2, …) and their status. `promote` and `rollback` switch every running worker between two
batches, without a restart."""

from __future__ import annotations

import json
from pathlib import Path


HELP = "the adapter registry: list, show, promote, rollback"


def arguments(parser) -> None:
    ad_sub = parser.add_subparsers(dest="adapters_command", required=True, metavar="ACTION")
    ls = ad_sub.add_parser("list", help="every version with its status and holdout metrics")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    show = ad_sub.add_parser("show", help="one version's record and metadata")
    show.add_argument("version")
    pro = ad_sub.add_parser("promote", help="make a version active in every running worker")
    pro.add_argument("version")
    pro.add_argument("--reason", default="manual promotion")
    ad_sub.add_parser("rollback", help="re-activate the version the active one replaced")


def run(args, settings) -> int:
    from services.cli.render import fmt3, print_table
    from services.wiring import announcer, open_registry
    from shared.classifier.adapters import read_adapter_metadata
    from shared.messages import AdapterAction, AdapterEvent

    registry = open_registry(settings)
    command = args.adapters_command
    if command == "list":
        records = registry.records()
        if args.json:
            print(json.dumps([r.as_json() for r in records], indent=1, ensure_ascii=False))
            return 0
        rows = []
        for r in records:
            holdout, dev = r.metrics.get("holdout", {}), r.metrics.get("dev", {})
            rows.append((r.version, r.status.value, r.parent or "", fmt3(holdout.get("accuracy")),
                         fmt3(holdout.get("macro_f1")), fmt3(dev.get("macro_f1")),
                         r.updated_at.strftime("%Y-%m-%d %H:%M:%S") if r.updated_at else "", r.reason))
        print_table(("version", "status", "parent", "holdout acc", "holdout F1", "dev F1", "updated", "reason"), rows)
        return 0
    if command == "show":
        record = registry.get(args.version)
        print(json.dumps(record.as_json() | {"metadata": read_adapter_metadata(Path(record.path))}, indent=1,
                         ensure_ascii=False, default=str))
        return 0
    if command == "promote":
        current, previous = registry.promote(args.version, args.reason)
        action = AdapterAction.promote
    else:
        current, previous = registry.rollback()
        action = AdapterAction.rollback
    announcer(settings)(AdapterEvent(version=current.version, path=current.path, action=action,
                                     previous=previous.version if previous else None, reason=current.reason))
    print(f"{current.version} is active (was {previous.version if previous else 'none'}); running workers switch "
          "before their next batch")
    return 0
