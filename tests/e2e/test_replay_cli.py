"""`stancestream replay` and `replay status` as a user runs them, on archive files, with the tiny model."""

from __future__ import annotations

import gzip
import json
from datetime import datetime, timedelta, timezone

import pytest

from commands import cli_env, run_cli

pytestmark = [pytest.mark.clickhouse, pytest.mark.model]

LAST_YEAR = datetime(2025, 6, 1, tzinfo=timezone.utc)


def test_replay_cli_from_gzipped_hourly_files_with_language_and_time_filters(tmp_path, tiny_model_dir, tiny_adapter):
    env = cli_env(tmp_path, tiny_model_dir) | {"STANCESTREAM_ADAPTER": str(tiny_adapter)}
    hours = []
    for h in range(3):  # one file per hour, as research archives are kept
        start = LAST_YEAR + timedelta(hours=h)
        lines = [json.dumps({"id": f"h{h}-{i}", "text": text, "created_at": (start + timedelta(minutes=i)).isoformat()})
                 for i, text in enumerate(["Refugees are welcome in our city", "Los migrantes llegan a la frontera",
                                           "Close the border now, no more migrants"])]
        path = tmp_path / f"archive-{h:02d}.jsonl.gz"
        with gzip.open(path, "wt") as handle:
            handle.write("\n".join(lines + ["{broken"]) + "\n")
        hours.append(str(path))
    args = ["replay", "--since", "2025-06-01T01:00:00Z", "--lang", "en", "--adapter", "v1"]
    for path in hours:
        args += ["--from-file", path]
    result = run_cli(*args, env=env)
    assert result.returncode == 0, result.stderr
    run_id = result.stdout.split(":")[0]
    # hours 1 and 2, English only: two tweets per hour
    assert f"{run_id}: 4/4 tweets classified with v1" in result.stdout
    status = json.loads(run_cli("replay", "status", "--json", env=env).stdout)
    assert [(s["run_id"], s["status"], s["done"]) for s in status] == [(run_id, "done", 4)]
    assert "3 invalid archive line(s) skipped" in status[0]["message"]
    ids = run_cli("sql", "SELECT tweet_id FROM classifications FINAL WHERE replay_run = {r:String} ORDER BY tweet_id",
                  "--param", f"r={run_id}", "--format", "csv", env=env).stdout.split()[1:]
    assert ids == ["h1-0", "h1-2", "h2-0", "h2-2"]
