"""Share estimators on hand-made classifiers whose errors are known, so the right answer is known too."""

import numpy as np
import pytest

from shared.quantification.estimators import (
    Calibration, bootstrap, estimate, project_to_simplex, simplex_least_squares,
)
from shared.quantification.evaluation import share_errors, shift_simulation

# A classifier that calls pro tweets anti (the bias the issue saw), and is right on the rest.
BEHAVIOUR = np.array([
    [0.40, 0.50, 0.05, 0.05],  # true pro: looks a little more anti
    [0.05, 0.85, 0.05, 0.05],  # true anti
    [0.05, 0.10, 0.80, 0.05],  # true neutral
    [0.02, 0.03, 0.05, 0.90],  # true unrelated
])


def _tweets(counts: list[int], rng: np.random.Generator, noise: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities of tweets of each true class: the class's behaviour row, jittered (rows still sum to 1)."""
    y = np.repeat(np.arange(4), counts)
    probs = BEHAVIOUR[y] + rng.uniform(0, noise, size=(len(y), 4))
    return probs / probs.sum(axis=1, keepdims=True), y


def test_pacc_recovers_a_mix_that_counting_gets_wrong():
    rng = np.random.default_rng(1)
    calibration = Calibration.measure(*_tweets([100, 100, 100, 100], rng), source="hand-made")
    probs, y = _tweets([300, 100, 100, 500], rng)  # the group: 30% pro, 10% anti
    true = np.bincount(y, minlength=4) / len(y)
    pacc = estimate("pacc", probs, calibration)
    assert np.abs(pacc - true).max() < 1e-3
    cc = estimate("cc", probs, calibration)
    assert cc[1] > true[1] + 0.1, "counting must overstate anti here, or the test proves nothing"
    assert np.abs(estimate("pcc", probs, calibration) - true).max() > 0.05


def test_acc_and_pacc_track_the_mix_with_noisy_probabilities():
    rng = np.random.default_rng(2)
    calibration = Calibration.measure(*_tweets([400, 400, 400, 400], rng, noise=0.3))
    probs, y = _tweets([100, 500, 300, 100], rng, noise=0.3)
    true = np.bincount(y, minlength=4) / len(y)
    cc_error = np.abs(estimate("cc", probs, calibration) - true).mean()
    for name in ("acc", "pacc"):
        shares = estimate(name, probs, calibration)
        assert shares.min() >= 0 and shares.sum() == pytest.approx(1.0)
        assert np.abs(shares - true).mean() < cc_error / 2, name


def test_sld_recovers_new_priors_from_calibrated_posteriors():
    # One feature per tweet, x ~ N(mean of its class, 1); the posteriors are exact under uniform training priors,
    # which is what SLD assumes (uncalibrated probabilities, like the hand-made ones above, mislead it).
    rng = np.random.default_rng(6)
    means = np.array([0.0, 1.5, 3.0, 4.5])

    def posteriors(counts):
        y = np.repeat(np.arange(4), counts)
        x = rng.normal(means[y], 1.0)
        logits = -((x[:, None] - means[None, :]) ** 2) / 2
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        return p / p.sum(axis=1, keepdims=True), y

    calibration = Calibration.measure(*posteriors([2000, 2000, 2000, 2000]))
    probs, y = posteriors([600, 2400, 600, 400])
    true = np.bincount(y, minlength=4) / len(y)
    sld_error = np.abs(estimate("sld", probs, calibration) - true).mean()
    assert sld_error < 0.02 < np.abs(estimate("cc", probs, calibration) - true).mean()


def test_simplex_least_squares_never_returns_a_negative_share():
    # An observed mix outside what the matrix can produce: the unconstrained solution has a negative share.
    matrix = np.array([[0.9, 0.1], [0.2, 0.8]])
    unconstrained = np.linalg.solve(matrix.T, np.array([0.95, 0.05]))
    assert unconstrained.min() < 0
    p = simplex_least_squares(matrix, np.array([0.95, 0.05]))
    assert p.min() >= 0 and p.sum() == pytest.approx(1.0) and p[0] == pytest.approx(1.0)
    assert project_to_simplex(np.array([0.2, 0.2])) == pytest.approx([0.5, 0.5])


def test_bootstrap_interval_contains_the_estimate_and_narrows_with_more_tweets():
    rng = np.random.default_rng(3)
    calibration = Calibration.measure(*_tweets([200, 200, 200, 200], rng, noise=0.3))
    widths = []
    for scale in (1, 16):
        probs, _ = _tweets([10 * scale, 20 * scale, 10 * scale, 60 * scale], rng, noise=0.3)
        low, high = bootstrap(probs, lambda p: estimate("pacc", p, calibration), resamples=200)
        point = estimate("pacc", probs, calibration)
        assert np.all(low <= point + 1e-9) and np.all(point <= high + 1e-9)
        widths.append((high - low).mean())
    assert widths[1] < widths[0] / 2


def test_calibration_round_trips_through_json(tmp_path):
    rng = np.random.default_rng(4)
    calibration = Calibration.measure(*_tweets([5, 0, 5, 5], rng), source="dev split")
    assert calibration.soft[1, 1] == 1.0, "a class missing from the labels is assumed classified right"
    calibration.save(tmp_path / "q.json")
    loaded = Calibration.load(tmp_path / "q.json")
    assert np.allclose(loaded.soft, calibration.soft, atol=1e-6) and loaded.n == 15 and loaded.source == "dev split"


def test_share_errors_per_language_and_the_shift_simulation():
    rng = np.random.default_rng(5)
    calibration = Calibration.measure(*_tweets([100, 100, 100, 100], rng, noise=0.2))
    p1, y1 = _tweets([30, 5, 10, 55], rng, noise=0.2)
    p2, y2 = _tweets([5, 30, 20, 45], rng, noise=0.2)
    probs, y = np.vstack([p1, p2]), np.concatenate([y1, y2])
    report = share_errors(probs, y, ["it"] * len(y1) + ["tr"] * len(y2), calibration, corrected="pacc")
    assert set(report["per_language"]) == {"it", "tr"}
    assert report["per_language"]["it"]["true"] == pytest.approx([0.3, 0.05, 0.1, 0.55])
    italian = report["per_language"]["it"]  # many pro tweets, which the classifier calls anti
    assert italian["pacc_mae"] < italian["cc_mae"] / 3
    assert report["corrected_mae"] < report["cc_mae"] and report["languages_corrected_better"] >= 1
    without = share_errors(probs, y, ["it"] * len(y), None)
    assert without["estimator"] is None and "corrected_mae" not in without

    sim = shift_simulation(probs, y, calibration, anti_shares=(0.2, 0.5), draws=50)
    low, high = sim["rows"]
    assert high["pacc"]["anti_estimate"] - low["pacc"]["anti_estimate"] == pytest.approx(0.3, abs=0.05)
    assert high["cc"]["mae"] > high["pacc"]["mae"]


def test_a_periodic_side_job_that_fails_is_logged_and_run_again(caplog):
    import asyncio

    from shared.quantification.periodic import periodically

    calls = []

    def step():
        calls.append(len(calls))
        if len(calls) == 1:
            raise RuntimeError("store away")

    async def three_runs():
        job = asyncio.create_task(periodically("label_shares refresh", 0.01, step))
        while len(calls) < 3:
            await asyncio.sleep(0.01)
        job.cancel()

    asyncio.run(three_runs())
    assert len(calls) >= 3
    assert [r.getMessage() for r in caplog.records] == ["label_shares refresh failed: store away"]


def _overconfident_leaning_anti(counts, rng):
    """Exact posteriors (as in the SLD test) made overconfident (×2.5 the log-odds) and leaning to anti (+1.2):
    a fine-tuned classifier's habits, which BCTS must undo."""
    means = np.array([0.0, 1.5, 3.0, 4.5])
    y = np.repeat(np.arange(4), counts)
    x = rng.normal(means[y], 1.0)
    logits = -((x[:, None] - means[None, :]) ** 2) / 2
    exact = np.exp(logits - logits.max(axis=1, keepdims=True))
    exact /= exact.sum(axis=1, keepdims=True)
    skewed = np.exp(2.5 * logits + np.array([0.0, 1.2, 0.0, 0.0]))
    return exact, skewed / skewed.sum(axis=1, keepdims=True), y


def test_bcts_recovers_the_temperature_and_lean_and_survives_a_save():
    rng = np.random.default_rng(7)
    exact, skewed, y = _overconfident_leaning_anti([1500, 1500, 1500, 1500], rng)
    calibration = Calibration.measure(skewed, y)
    assert calibration.temperature == pytest.approx(2.5, rel=0.1)
    assert np.abs(calibration.recalibrate(skewed) - exact).mean() < 0.01 < np.abs(skewed - exact).mean()
    again = Calibration.from_json(calibration.to_json())
    assert again.recalibrate(skewed) == pytest.approx(calibration.recalibrate(skewed), abs=1e-4)
    # a calibration saved before BCTS existed leaves the probabilities as they are
    old = {k: v for k, v in calibration.to_json().items() if k != "bcts"}
    assert np.array_equal(Calibration.from_json(old).recalibrate(skewed), skewed)


def test_calibrated_estimators_undo_the_lean_that_counting_keeps():
    rng = np.random.default_rng(8)
    _, cal_probs, cal_y = _overconfident_leaning_anti([800, 800, 800, 800], rng)
    calibration = Calibration.measure(cal_probs, cal_y)
    _, probs, y = _overconfident_leaning_anti([400, 400, 400, 400], rng)  # the calibration's own mix
    true = np.bincount(y, minlength=4) / len(y)
    cc_error = np.abs(estimate("cc", probs, calibration) - true).mean()
    assert estimate("cc", probs, calibration)[1] > true[1] + 0.05, "the lean must show in counting"
    assert np.abs(estimate("cpcc", probs, calibration) - true).mean() < cc_error / 3
    _, shifted, y2 = _overconfident_leaning_anti([200, 1000, 200, 200], rng)  # a shift: anti 62%
    true2 = np.bincount(y2, minlength=4) / len(y2)
    assert np.abs(estimate("sld-bcts", shifted, calibration) - true2).mean() < 0.02


def test_the_share_estimator_setting_offers_exactly_the_corrected_estimators_and_defaults_to_the_chosen_one():
    from typing import get_args

    from shared.quantification.estimators import DEFAULT, ESTIMATORS
    from shared.settings import Settings

    field = Settings.model_fields["share_estimator"]
    assert set(get_args(field.annotation)) == set(ESTIMATORS) - {"cc", "pcc"}
    assert field.default == DEFAULT
    with pytest.raises(ValueError):
        Settings(share_estimator="cc")
