"""The README documents every setting and every command, and its bench table reads the committed bench files."""

import json
import re
from pathlib import Path

from services.cli import build_parser
from shared.settings import describe_settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_setting_is_in_the_readme_table():
    missing = [env for env, _, _ in describe_settings() if f"| `{env}` |" not in README]
    assert not missing, f"README settings table lacks {missing}"


def test_every_command_is_mentioned_in_the_readme():
    commands = build_parser()._subparsers._group_actions[0].choices
    missing = [name for name in commands if f"stancestream {name}" not in README]
    assert not missing, f"README never shows {missing}"


def test_the_readme_bench_table_reads_what_its_bench_files_hold():
    """Each row of the README's bench table names a committed bench.json; its figures must be that file's."""
    root = Path(__file__).resolve().parents[2]
    rows = [line for line in README.splitlines() if re.search(r"\| `docs/bench-[^`]+\.json` \|$", line)]
    assert rows, "README's bench table has no rows"
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        bench = json.loads((root / cells[-1].strip("`")).read_text())
        shown = [float(re.sub(r"[^0-9.]", "", cell)) for cell in cells[1:7]]
        expected = [bench["tweets_per_s"], bench["ratio"], bench["roofline_fraction"], bench["e2e_capacity_fraction"],
                    bench["e2e_latency"]["0.5"]["p95_s"], bench["cache"]["speedup"]]
        for figure, value in zip(shown, expected, strict=True):
            decimals = len(str(figure).split(".")[1]) if "." in str(figure) else 0
            assert abs(figure - value) <= 0.5 * 10 ** -decimals + 1e-9, (row, figure, value)
