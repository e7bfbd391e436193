"""Print docs/reliability.md's table from the log the fault tests write.

    STANCESTREAM_RELIABILITY_LOG=out/reliability.jsonl .venv/bin/python -m pytest tests/e2e/test_faults.py tests/unit/test_poison.py
    .venv/bin/python benchmarks/reliability_table.py out/reliability.jsonl
"""

from __future__ import annotations

import json
import sys


def main(path: str) -> None:
    rows = [json.loads(line) for line in open(path) if line.strip()]
    print("| fault or input | how it was caused | what happened | in | classified | rollup | dead-lettered "
          "| lost | double-counted |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['fault']} | {r['how']} | {r['happened']} | {r['in']} | {r['classified']} | {r['rollup']} "
              f"| {r['dead_lettered']} | {r['lost']} | {r['double_counted']} |")
    print(f"| **total** | | | {sum(r['in'] for r in rows)} | {sum(r['classified'] for r in rows)} "
          f"| {sum(r['rollup'] for r in rows)} | {sum(r['dead_lettered'] for r in rows)} "
          f"| {sum(r['lost'] for r in rows)} | {sum(r['double_counted'] for r in rows)} |")


if __name__ == "__main__":
    main(sys.argv[1])
