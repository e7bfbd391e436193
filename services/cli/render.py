"""How commands print: rich tables on the terminal, and a query result as a table, CSV or JSON."""

from __future__ import annotations

import csv
import json
import sys
from typing import Iterable, Sequence

from rich.console import Console
from rich.table import Table


def print_table(columns: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    table = Table(*columns)
    for row in rows:
        table.add_row(*row)
    Console().print(table)


def print_result(result, fmt: str) -> None:
    """A ``QueryResult`` as ``json``, ``csv`` or a table (its row count on stderr, so stdout stays the table)."""
    if fmt == "json":
        print(json.dumps(result.dicts(), default=str, ensure_ascii=False, indent=1))
    elif fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(result.columns)
        writer.writerows(result.rows)
    else:
        print_table(result.columns, [["NULL" if v is None else str(v) for v in row] for row in result.rows])
        print(f"{len(result.rows)} row(s)", file=sys.stderr)


def fmt3(value: float | None) -> str:
    """A metric with three decimals; blank when there is none."""
    return "" if value is None else f"{value:.3f}"
