"""`stancestream bench` on the tiny model: the report's shape, the FLOP count, the baseline's answer parsing."""

from __future__ import annotations

import csv
import json

from labeled import labeled_rows


def test_flops_per_tweet_matches_torch_flop_counter(tiny_classifier):
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from services.bench.roofline import flops_per_tweet

    c = tiny_classifier
    sequences = c.encode(["refugees welcome here and everywhere", "close the border now"])
    counted = 0
    for seq in sequences:  # one at a time: no padding in the count
        ids, mask = c.collate([seq])
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            c.label_logits(ids, mask)
        counted += counter.get_total_flops()
    ours = flops_per_tweet(c.model.config, [len(s) for s in sequences]) * len(sequences)
    # torch counts attention over the full square (no causal saving) and the 4-row head: within 15%.
    assert abs(ours - counted) / counted < 0.15, (ours, counted)


def test_baseline_parses_the_category_number():
    from services.bench.baseline import _parse

    assert _parse(" 2") == "anti-immigration"
    assert _parse("4.") == "unrelated"
    assert _parse(" none") is None


def test_bench_writes_every_required_number(tmp_path, tiny_model_dir):
    from test_cli_stack import _cli, _env

    data = tmp_path / "tweets.csv"
    rows = labeled_rows(2, ("en", "es"))
    with open(data, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    out = tmp_path / "bench"
    result = _cli("bench", "--out", str(out), "--data", str(data), "--n", "16", "--precisions", "fp32",
                  "--batch-sizes", "4,8", "--skip-baseline", "--rates", "20,max", "--per-rate", "12", "--no-doc",
                  env=_env(tmp_path, tiny_model_dir), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((out / "bench.json").read_text())
    assert report["tweets_per_s"] > 0 and 0 < report["roofline_fraction"] < 1.5
    assert {"cpu", "cores"} <= report["machine"].keys() and "torch" in report["versions"]
    assert [(p["precision"], p["batch_size"]) for p in report["precisions"]] == [("fp32", 4), ("fp32", 8)]
    assert [e["offered"] for e in report["e2e"]] == ["20", "max"]
    for e in report["e2e"]:
        assert e["n"] == 12 and e["throughput"] > 0 and 0 < e["p50_s"] <= e["p95_s"] <= e["p99_s"]
    assert report["baseline"] == {"skipped": True}
    assert (out / "e2e.png").stat().st_size > 10_000
