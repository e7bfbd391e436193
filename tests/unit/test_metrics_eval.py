"""The paper's metrics on hand-checked cases, and `eval` end to end with the tiny model."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from shared.training.evaluation import bootstrap_difference, evaluate_csv
from shared.training.metrics import expected_calibration_error, scores
from shared.streaming.processing import BatchResult, DlqLimitExceeded, InvalidRatioGuard


def test_scores_match_a_hand_computed_case():
    # labels: 0 pro, 1 anti, 2 neutral, 3 unrelated
    s = scores(np.array([0, 0, 1, 1, 2, 3]), np.array([0, 1, 1, 1, 3, 3]))
    assert s["accuracy"] == pytest.approx(4 / 6)
    assert s["per_class_f1"] == pytest.approx(
        {"pro-immigration": 2 / 3, "anti-immigration": 0.8, "neutral": 0.0, "unrelated": 2 / 3})
    assert s["macro_f1"] == pytest.approx((2 / 3 + 0.8 + 0 + 2 / 3) / 4)
    assert s["topic_accuracy"] == pytest.approx(5 / 6)  # only the neutral→unrelated error crosses topics
    assert s["stance_accuracy"] == pytest.approx(3 / 5)  # on the five immigration-related tweets


def test_ece_is_zero_when_confidence_matches_accuracy_and_large_when_overconfident():
    probs = np.array([[0.5, 0.5, 0, 0]] * 4)
    assert expected_calibration_error(probs, np.array([0, 1, 0, 1])) == pytest.approx(0.0)
    sure = np.array([[1.0, 0, 0, 0]] * 4)
    assert expected_calibration_error(sure, np.array([1, 1, 1, 1])) == pytest.approx(1.0)


def test_bootstrap_interval_brackets_the_difference():
    a = np.array([1.0] * 80 + [0.0] * 20)
    b = np.array([1.0] * 60 + [0.0] * 40)
    low, high = bootstrap_difference(a, b)
    assert low < 0.2 < high and low > 0


def test_invalid_ratio_guard_stops_only_past_its_limit():
    guard = InvalidRatioGuard(max_ratio=0.5, window=100, min_seen=10)
    mostly_good = BatchResult(tweets=[object()] * 6, dead_letters=[object()] * 4)
    guard.check(mostly_good)
    with pytest.raises(DlqLimitExceeded, match="invalid"):
        guard.check(BatchResult(dead_letters=[object()] * 10))


@pytest.mark.model
def test_eval_writes_metrics_report_and_plots(tmp_path, tiny_classifier):
    data = tmp_path / "labeled.csv"
    labels = ["pro-immigration", "anti-immigration", "neutral", "unrelated"]
    rows = [{"id": str(i), "lang": ["en", "es", "in"][i % 3], "label": labels[i % 4],
             "text": f"refugees welcome in the city {i}", "paper_pred": labels[(i + i // 4) % 4]}
            for i in range(24)]
    with open(data, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    metrics = evaluate_csv(tiny_classifier, data, tmp_path / "out", progress=False)
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    for key in ("n", "accuracy", "macro_f1", "per_class_f1", "topic_accuracy", "stance_accuracy", "ece",
                "tweets_per_s", "per_language", "paper", "accuracy_minus_paper"):
        assert key in saved
    assert saved["n"] == 24 and set(saved["per_language"]) == {"en", "es", "id"}
    assert sum(v["n"] for v in saved["per_language"].values()) == 24
    paper_correct = sum(r["label"] == r["paper_pred"] for r in rows) / 24
    assert saved["paper"]["accuracy"] == pytest.approx(paper_correct)
    assert np.array(saved["confusion"]).sum() == 24
    assert metrics["accuracy"] == pytest.approx(np.trace(np.array(saved["confusion"])) / 24)
    for name in ("report.md", "confusion.png", "per_language.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    assert "| id | 8 |" in (tmp_path / "out" / "report.md").read_text()
    # one row per tweet, its probabilities and its correctness as the metrics counted them
    with open(tmp_path / "out" / "predictions.csv", newline="") as handle:
        predictions = list(csv.DictReader(handle))
    assert [p["id"] for p in predictions] == [r["id"] for r in rows]
    assert all(abs(sum(float(p[f"p_{c}"]) for c in labels) - 1) < 1e-3 for p in predictions)
    assert all(p["predicted"] == max(labels, key=lambda c: float(p[f"p_{c}"])) for p in predictions)
    assert sum(int(p["correct"]) for p in predictions) / 24 == pytest.approx(saved["accuracy"])
    # no calibration given: counted shares only, against the true shares per language
    quant = saved["quantification"]
    assert quant["estimator"] is None and set(quant["per_language"]) == {"en", "es", "id"}
    english = [r for r in rows if r["lang"] == "en"]
    true_pro = sum(r["label"] == "pro-immigration" for r in english) / len(english)
    assert quant["per_language"]["en"]["true"][0] == pytest.approx(true_pro, abs=1e-4)
    counted_pro = sum(p["predicted"] == "pro-immigration" for p in predictions if p["lang"] == "en") / len(english)
    assert quant["per_language"]["en"]["cc"][0] == pytest.approx(counted_pro, abs=1e-4)


@pytest.mark.model
def test_eval_with_a_calibration_reports_corrected_shares_and_the_shift_simulation(tmp_path, tiny_classifier):
    from shared.quantification.estimators import DEFAULT, ESTIMATORS, Calibration

    data = tmp_path / "labeled.csv"
    labels = ["pro-immigration", "anti-immigration", "neutral", "unrelated"]
    with open(data, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "lang", "label", "text"])
        writer.writeheader()
        writer.writerows({"id": str(i), "lang": "en", "label": labels[i % 4], "text": f"border talk number {i}"}
                         for i in range(16))
    calibration = Calibration(np.eye(4), np.eye(4), np.full(4, 0.25), 40, "hand-made")
    metrics = evaluate_csv(tiny_classifier, data, tmp_path / "out", progress=False, calibration=calibration)
    quant = metrics["quantification"]
    assert quant["estimator"] == DEFAULT and quant["calibration"] == "hand-made"
    assert set(quant["mae"]) == set(ESTIMATORS)
    # an identity calibration makes the adjusted counts the plain ones
    assert quant["per_language"]["en"]["acc"] == pytest.approx(quant["per_language"]["en"]["cc"], abs=1e-4)
    assert [row["anti_share"] for row in quant["shift_simulation"]["rows"]] == [0.1, 0.2, 0.35, 0.5]
    assert "Label shares per language" in (tmp_path / "out" / "report.md").read_text()
