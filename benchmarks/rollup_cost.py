"""What the exact hourly rollup costs at query time: the view over ``classifications FINAL`` against the
materialized-view table it replaced (which double-counted), on N synthetic rows in a scratch embedded store.

    .venv/bin/python benchmarks/rollup_cost.py --rows 1000000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from shared.settings import Settings  # noqa: E402
from shared.store import open_store  # noqa: E402
from shared.store.migrations import MIGRATIONS_DIR, discover, migrate  # noqa: E402

Q6 = ("SELECT hour, lang, label, sum(tweets) AS n, sum(sum_confidence) / n FROM {table}"
      " WHERE adapter_version = 'v1' GROUP BY hour, lang, label ORDER BY hour, lang, label")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    store = open_store(Settings(data_dir=Path(tempfile.mkdtemp(prefix="rollup-"))), prefer_gateway=False)
    migrate(store)
    old = next(m for m in discover(MIGRATIONS_DIR) if m.number == 5).statements("down")
    for statement in old:  # the old table + materialized view, beside the view, under other names
        if statement.startswith("DROP VIEW"):
            continue
        store.command(statement.replace("classifications_hourly", "old_hourly"))
    started = time.perf_counter()
    store.command(
        "INSERT INTO classifications SELECT toString(number % {n:UInt64}) AS tweet_id, 'v1', 'm',"
        " ['en','de','fr','es','it','pl','tr','ar','hi','id','pt','hu','nl'][number % 13 + 1],"
        " 0.9, if(number % 3 = 0, 'unrelated', 'immigration'), if(number % 3 = 0, NULL, 'anti'),"
        " if(number % 3 = 0, 'unrelated', 'anti-immigration'), 0.1, 0.6, 0.1, 0.2,"
        " toDateTime64('2026-01-01 00:00:00', 3, 'UTC') + toIntervalSecond(number % 31536000 * 7 % 31536000),"
        " now64(3), 500, '' FROM numbers({rows:UInt64})", {"rows": args.rows, "n": args.rows})
    print(f"inserted {args.rows:,} rows in {time.perf_counter() - started:.1f} s")
    for table in ("classifications_hourly", "old_hourly"):
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            rows = store.query(Q6.format(table=table)).rows
            times.append(time.perf_counter() - t0)
        print(f"{table:>24}: Q6 median {statistics.median(times) * 1000:7.1f} ms over {args.repeat} runs"
              f" ({len(rows):,} result rows)")


if __name__ == "__main__":
    main()
