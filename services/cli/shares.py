"""Label shares per language and time bucket, counted and corrected for the adapter's measured errors (by
STANCESTREAM_SHARE_ESTIMATOR, default CPCC, with a 95% bootstrap interval; see docs/quantification.md).
Recomputes the `label_shares` table for tweets created in the last --days, then prints the anti-immigration share
per language and bucket. The trainer service refreshes the table on its own schedule too."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

HELP = "label shares per language and hour/day/week, counted and corrected, into the label_shares table"


def arguments(parser) -> None:
    parser.add_argument("--by", choices=("hour", "day", "week"), default="day", help="bucket width (default day)")
    parser.add_argument("--days", type=float, default=7, help="recompute buckets of the last N days (default 7)")
    parser.add_argument("--resamples", type=int, default=200, help="bootstrap resamples per bucket (default 200)")
    parser.add_argument("--estimator", choices=("acc", "pacc", "sld", "pacc-s", "cpcc", "sld-bcts"),
                        help="corrected estimator (default: STANCESTREAM_SHARE_ESTIMATOR, cpcc)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")


def run(args, settings) -> int:
    from rich.console import Console
    from rich.table import Table

    from services.wiring import open_migrated_store, open_registry
    from shared.quantification.live import refresh_label_shares
    from shared.store.queries.shares import read_label_shares

    store = open_migrated_store(settings)
    registry = open_registry(settings, store)
    since = datetime.now(timezone.utc) - timedelta(days=args.days)
    groups = refresh_label_shares(store, registry.calibration, args.by, since, resamples=args.resamples,
                                  estimator=args.estimator or settings.share_estimator)
    rows = read_label_shares(store, args.by, since)
    if args.json:
        print(json.dumps(rows, default=str, indent=1))
        return 0
    table = Table("bucket", "lang", "adapter", "tweets", "anti, counted", "anti, corrected (95%)",
                  title=f"anti-immigration share per {args.by}: {groups} bucket(s) recomputed", title_justify="left")
    for row in rows:
        if row["label"] != "anti-immigration":
            continue
        corrected = ("—" if row["corrected_share"] is None else
                     f"{row['corrected_share']:.0%} [{row['corrected_low']:.0%}, {row['corrected_high']:.0%}]")
        table.add_row(str(row["bucket"]), row["lang"], row["adapter_version"], str(row["tweets"]),
                      f"{row['counted_share']:.0%}", corrected)
    Console().print(table)
    return 0
