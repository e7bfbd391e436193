"""`stancestream bench` as a user runs it, on the tiny model: the report's shape and every required number."""

from __future__ import annotations

import csv
import json
import statistics

import pytest

from commands import cli_env, run_cli
from labeled import labeled_rows

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.model]


def test_bench_writes_every_required_number(tmp_path, tiny_model_dir):
    data = tmp_path / "tweets.csv"
    rows = labeled_rows(2, ("en", "es"))
    with open(data, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    out = tmp_path / "bench"
    result = run_cli("bench", "--out", str(out), "--data", str(data), "--n", "16", "--precisions", "fp32",
                     "--pass-tokens", "256,2048", "--skip-baseline", "--window-s", "4", "--replay-n", "40", "--no-doc",
                     "--workers-n", "24", "--max-workers", "2",
                     env=cli_env(tmp_path, tiny_model_dir), timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((out / "bench.json").read_text())
    assert report["tweets_per_s"] > 0 and 0 < report["roofline_fraction"] < 1.5
    assert {"cpu", "cores"} <= report["machine"].keys() and "torch" in report["versions"]
    assert [(p["precision"], p["pass_tokens"]) for p in report["precisions"]] == [("fp32", 256), ("fp32", 2048)]
    # the served number is the median of the served setting (fp32, 2048 tokens a pass) timed at the start and, in
    # the end-to-end stack, just before and after the capacity search and after the last window; each sample is
    # paired with the matmul peak measured right after it
    samples = report["classifier"]["samples"]
    assert [s["where"] for s in samples] == ["start", "before capacity", "after capacity", "after the last window"]
    rates = [s["tweets_per_s"] for s in samples]
    assert report["tweets_per_s"] == pytest.approx(statistics.median(rates), abs=1e-3)
    roofline = report["roofline"]
    assert report["roofline_fraction"] == pytest.approx(statistics.median(
        s["tweets_per_s"] * roofline["gflops_per_tweet"] / s["peak_gflops"] for s in samples), abs=2e-3)
    assert report["replay"]["n"] == 40 and report["replay_tweets_per_s"] > 0
    e2e = report["e2e"]
    assert e2e["backlog"]["throughput"] > 0 and report["e2e_capacity_tweets_per_s"] > 0
    # the capacity over the classifier timed around its search, not over a rate from minutes earlier
    assert report["e2e_capacity_fraction"] == pytest.approx(
        report["e2e_capacity_tweets_per_s"] / statistics.mean(rates[1:3]), abs=1e-3)
    assert report["e2e_capacity_tweets_per_s"] <= rates[1] + 1e-3  # the search never climbs past it
    assert any(w["sustained"] and w["offered"] == pytest.approx(report["e2e_capacity_tweets_per_s"], abs=1e-3)
               for w in e2e["windows"])
    assert set(report["e2e_latency"]) == {"0.25", "0.5", "0.75"}
    for latency in report["e2e_latency"].values():
        assert 0 < latency["p50_s"] <= latency["p95_s"] <= latency["p99_s"]
    assert report["cache"]["duplicate_share"] == 0.5 and report["cache"]["speedup"] > 0
    # alternating rounds, the speedup taken between their medians
    copies = e2e["cache"]
    assert copies["rounds"] == len(copies["unique_rounds"]) == len(copies["copies_rounds"]) == 3
    assert report["cache"]["speedup"] == pytest.approx(
        statistics.median(copies["copies_rounds"]) / statistics.median(copies["unique_rounds"]), abs=2e-3)
    assert report["baseline"] == {"skipped": True}
    assert (out / "e2e.png").stat().st_size > 10_000
    # 1 and 2 worker processes, each worker holding partitions when the burst was measured
    rows = report["workers"]["rows"]
    assert [r["workers"] for r in rows] == [1, 2] and rows[0]["speedup"] == 1
    assert all(r["tweets_per_s"] > 0 and len(r["partitions_held"]) == r["workers"] and all(r["partitions_held"])
               for r in rows)
