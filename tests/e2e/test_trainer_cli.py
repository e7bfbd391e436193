"""`labels import`, `trainer --once` and `adapters list` as a user runs them, on a fresh embedded store."""

from __future__ import annotations

import json

import pytest

from commands import cli_env, run_cli
from labeled import write_labeled_csv

pytestmark = [pytest.mark.clickhouse, pytest.mark.model]


def test_trainer_once_cli_gates_and_promotes_then_adapters_list(tmp_path, tiny_model_dir, tiny_adapter):
    """`labels import` and `trainer --once` as separate processes on a fresh embedded store (no stack running)."""
    env = cli_env(tmp_path, tiny_model_dir) | {"STANCESTREAM_ADAPTER": str(tiny_adapter),
                                               "STANCESTREAM_TRAINER_MIN_NEW_LABELS": "40",
                                               "STANCESTREAM_GATE_MAX_F1_DROP": "1", "STANCESTREAM_GATE_MAX_LANG_DROP": "1"}
    labels = write_labeled_csv(tmp_path / "labels.csv", n_per_cell=4)
    imported = run_cli("labels", "import", str(labels), env=env)
    assert imported.returncode == 0 and "stored 48 label(s), dead-lettered 0" in imported.stdout, imported.stderr
    once = run_cli("trainer", "--once", env=env, timeout=300)
    assert once.returncode == 0, once.stderr
    assert once.stdout.startswith("v2 promoted: holdout macro-F1"), once.stdout
    listed = json.loads(run_cli("adapters", "list", "--json", env=env).stdout)
    assert [(a["version"], a["status"]) for a in listed] == [("v1", "retired"), ("v2", "active")]
    assert listed[1]["metrics"]["holdout"]["n"] > 0
    again = run_cli("trainer", "--once", env=env)  # no new labels since: skipped, printed
    assert again.returncode == 0 and "skipped: 0 new label(s)" in again.stdout
