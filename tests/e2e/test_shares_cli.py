"""`calibrate`, `shares` and `monitor`'s corrected column as a user runs them, with the tiny model's adapter."""

from __future__ import annotations

import json
import shutil
import pytest

from commands import cli_env, run_cli
from labeled import write_labeled_csv
from shared.quantification.estimators import DEFAULT

pytestmark = [pytest.mark.clickhouse, pytest.mark.model]


def test_calibrate_then_shares_and_monitor_correct_the_counted_shares(tmp_path, tiny_model_dir, tiny_adapter):
    adapter = tmp_path / "adapter"
    shutil.copytree(tiny_adapter, adapter)
    (adapter / "quantification.json").unlink()  # as an adapter made before calibrations
    env = cli_env(tmp_path, tiny_model_dir) | {"STANCESTREAM_ADAPTER": str(adapter)}
    missing = run_cli("calibrate", env=env)
    assert missing.returncode == 2 and "names no CSV dev split" in missing.stderr  # one line, the way out in it
    labeled = write_labeled_csv(tmp_path / "holdout.csv", n_per_cell=2)
    done = run_cli("calibrate", "--data", str(labeled), env=env)
    assert done.returncode == 0, done.stderr
    calibration = json.loads((adapter / "quantification.json").read_text())
    assert calibration["n"] == sum(1 for _ in open(labeled)) - 1 and str(labeled) in calibration["source"]
    assert calibration["bcts"]["temperature"] > 0 and len(calibration["bcts"]["bias"]) == 4

    # live tweets of today classified by v1 (the registry seeds v1 from the calibrated adapter), and a replay
    assert run_cli("migrate", env=env).returncode == 0
    columns = ("tweet_id, adapter_version, model_id, lang, lang_confidence, topic, stance, label, p_pro, p_anti, "
               "p_neutral, p_unrelated, tweet_created_at, classified_at, latency_ms, replay_run")
    insert = run_cli("sql", "--write", f"INSERT INTO classifications ({columns}) SELECT concat('t', toString(number)), "
                     "'v1', 'tiny@0', 'tr', 0.9, 'immigration', 'anti', 'anti-immigration', 0.2, 0.5, 0.2, 0.1, "
                     "now64(3) - 60, now64(3), 10, if(number < 12, '', 'rp') FROM numbers(17)", env=env)
    assert insert.returncode == 0, insert.stderr

    shares = run_cli("shares", "--by", "day", "--days", "1", "--json", env=env)
    assert shares.returncode == 0, shares.stderr
    rows = {r["label"]: r for r in json.loads(shares.stdout) if r["lang"] == "tr"}
    anti = rows["anti-immigration"]
    assert anti["tweets"] == 12 and anti["counted_share"] == 1.0  # the replay is not the live stream
    assert anti["estimator"] == DEFAULT and anti["corrected_share"] is not None
    assert anti["corrected_low"] <= anti["corrected_share"] <= anti["corrected_high"]
    assert sum(r["corrected_share"] for r in rows.values()) == pytest.approx(1.0, abs=1e-4)
    table = run_cli("shares", env=env)
    assert "anti-immigration share per day" in table.stdout and "tr" in table.stdout

    monitor = json.loads(run_cli("monitor", "--once", "--json", env=env).stdout)
    assert monitor["corrected"]["tr"]["anti-immigration"][0] == pytest.approx(anti["corrected_share"], abs=0.05)

    # the analyst's choice of estimator, by flag or setting, is what the table records
    chosen = run_cli("shares", "--by", "day", "--days", "1", "--estimator", "sld-bcts", "--json", env=env)
    assert {r["estimator"] for r in json.loads(chosen.stdout) if r["lang"] == "tr"} == {"sld-bcts"}
    by_setting = run_cli("shares", "--by", "day", "--days", "1", "--json",
                         env=env | {"STANCESTREAM_SHARE_ESTIMATOR": "pacc"})
    assert {r["estimator"] for r in json.loads(by_setting.stdout) if r["lang"] == "tr"} == {"pacc"}
