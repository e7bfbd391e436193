"""Fault tests record what they caused and counted, for docs/reliability.md's table.

Set ``STANCESTREAM_RELIABILITY_LOG=FILE`` when running them; ``benchmarks/reliability_table.py FILE`` prints
the table. Unset, nothing is written.
"""

from __future__ import annotations

import json
import os


def record(fault: str, how: str, lines_in: int, valid: int, invalid: int, counts: dict[str, int],
           happened: str) -> None:
    path = os.environ.get("STANCESTREAM_RELIABILITY_LOG")
    if not path:
        return
    row = {"fault": fault, "how": how, "in": lines_in, "classified": counts.get("classified"),
           "rollup": counts.get("rollup"), "dead_lettered": counts.get("dead_letters"),
           "lost": max(0, valid - counts.get("classified", 0)) + max(0, invalid - counts.get("dead_letters", 0)),
           "double_counted": max(0, counts.get("classified", 0) - valid) + max(0, counts.get("rollup", 0) - valid)
           + max(0, counts.get("dead_letters", 0) - invalid),
           "rows_written": counts.get("rows_written"), "happened": happened}
    with open(path, "a") as handle:
        handle.write(json.dumps(row) + "\n")
