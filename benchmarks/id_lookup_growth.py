"""The duplicate-id lookup as the tweets table grows: the served query against the same with FINAL (until 2026-12-04).

    .venv/bin/python benchmarks/id_lookup_growth.py --sizes 60000,250000,1000000

A fresh embedded store; tweets inserted 10,000 at a time (2,000-row inserts up to 60,000, closer to the worker's
parts); at each size, 20 lookups of a batch's 40 ids (38 new, 2 stored), each query timed, alternating the two.
The worker waits for this lookup before every model call. Prints the medians and their ratio.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.settings import Settings  # noqa: E402
from shared.store import open_store  # noqa: E402
from shared.store.migrations import migrate  # noqa: E402
from shared.store.sinks import ID_LOOKUP, TWEET_COLUMNS  # noqa: E402

WITH_FINAL = "SELECT id, lower(hex(SHA256(text))) FROM tweets FINAL WHERE id IN {ids:Array(String)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="60000,250000,1000000", help="table sizes (tweets), comma-separated")
    parser.add_argument("--lookups", type=int, default=20)
    args = parser.parse_args()
    store = open_store(Settings(data_dir=Path(tempfile.mkdtemp()), clickhouse_url=None), prefer_gateway=False)
    migrate(store)
    now = datetime.now(timezone.utc)
    text = "A tweet about immigration policy and the border, with a link https://t.co/abc and a few more words."
    stored: list[str] = []
    rows = 0
    print("| tweets in the table | with FINAL (ms) | served (ms) | ratio |\n|---|---|---|---|")
    for size in sorted(int(s) for s in args.sizes.split(",")):
        while rows < size:
            chunk = 2_000 if rows < 60_000 else 10_000
            ids = [uuid.uuid4().hex for _ in range(chunk)]
            stored += ids[:5]
            store.insert("tweets", [(i, text, now, "en", "", "", "", now) for i in ids], TWEET_COLUMNS)
            rows += chunk
        times: dict[str, list[float]] = {"final": [], "served": []}
        for _ in range(args.lookups):
            ids = [uuid.uuid4().hex for _ in range(38)] + random.sample(stored, 2)
            for name, query in (("final", WITH_FINAL), ("served", ID_LOOKUP)):
                started = time.perf_counter()
                found = store.query(query, {"ids": ids}).rows
                times[name].append(time.perf_counter() - started)
                assert len(found) == 2, f"{name}: {len(found)} rows for 2 stored ids"
        final, served = (statistics.median(times[k]) * 1000 for k in ("final", "served"))
        print(f"| {rows:,} | {final:.1f} | {served:.1f} | {final / served:.2f}× |", flush=True)


if __name__ == "__main__":
    main()
