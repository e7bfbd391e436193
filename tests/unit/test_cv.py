"""Cross-validation machinery: folds stratified and disjoint, stance macro-F1 on a hand-made answer, and
`stancestream cv` on the tiny model (K folds plus a left-out language, resumed without retraining)."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from commands import cli_env, run_cli
from labeled import TINY_RECIPE, labeled_rows, write_labeled_csv
from shared.training.cv import kfold, stance_macro_f1
from shared.training.data import read_labeled
from shared.training.metrics import to_indices


def test_folds_are_disjoint_cover_everything_and_keep_each_stratum_spread(tmp_path):
    examples = read_labeled([write_labeled_csv(tmp_path / "d.csv", n_per_cell=7)])
    folds = kfold(examples, 3, seed=4)
    ids = [ex.id for fold in folds for ex in fold]
    assert sorted(ids) == sorted(ex.id for ex in examples) and len(set(ids)) == len(ids)
    for fold in folds:  # 7 per stratum over 3 folds: 2 or 3 in each fold, never 0 or 7
        assert set(Counter((ex.lang, ex.label) for ex in fold).values()) <= {2, 3}
    assert [[ex.id for ex in f] for f in kfold(examples, 3, seed=4)] == [[ex.id for ex in f] for f in folds]
    assert [[ex.id for ex in f] for f in kfold(examples, 3, seed=5)] != [[ex.id for ex in f] for f in folds]
    with pytest.raises(ValueError, match="at least 2 folds"):
        kfold(examples, 1, seed=0)


def test_stance_macro_f1_ignores_unrelated_tweets_and_counts_unrelated_predictions_as_misses():
    y = to_indices(["pro-immigration", "pro-immigration", "anti-immigration", "neutral", "unrelated", "unrelated"])
    p = to_indices(["pro-immigration", "unrelated", "anti-immigration", "anti-immigration", "pro-immigration",
                    "unrelated"])
    # related tweets only: pro 1/2 recalled (precision 1) -> F1 2/3; anti P=1/2 R=1 -> 2/3; neutral 0
    assert stance_macro_f1(y, p) == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)
    assert stance_macro_f1(y[4:], p[4:]) == 0.0


def test_cv_trains_at_most_the_folds_asked_for_and_continues_where_it_stopped(tmp_path):
    from shared.training.cv import run_cv
    from shared.training.config import TrainConfig

    examples = read_labeled([write_labeled_csv(tmp_path / "d.csv", n_per_cell=6)])
    trained: list[str] = []

    def train_fold(train_set, directory, resume):  # a stand-in trainer: always answers "unrelated"
        trained.append(directory.name)
        return lambda texts: np.tile([0.1, 0.1, 0.1, 0.7], (len(texts), 1))

    def step():
        return run_cv(examples, tmp_path / "cv", TrainConfig(), train_fold, folds=3, log=lambda _: None,
                      train_at_most=1)

    first = step()
    assert trained == ["fold-1"] and set(first["per_fold"]) == {"fold-1"}
    assert first["cv"]["macro_f1"]["sd"] == 0.0
    from shared.training.cv import scored_folds
    assert list(scored_folds(tmp_path / "cv")) == ["fold-1"]  # what the adoption rule reads back
    step()
    step()
    assert trained == ["fold-1", "fold-2", "fold-3"]
    assert set(step()["per_fold"]) == {"fold-1", "fold-2", "fold-3"} and len(trained) == 3
    # Each fold kept its held-out tweets' probabilities, and together they cover every tweet once.
    from shared.training.cv import PREDICTIONS
    kept = [json.loads((tmp_path / "cv" / f"fold-{k}" / PREDICTIONS).read_text()) for k in (1, 2, 3)]
    assert sorted(i for fold in kept for i in fold["ids"]) == sorted(ex.id for ex in examples)
    assert all(row == [0.1, 0.1, 0.1, 0.7] for fold in kept for row in fold["probs"])


def test_a_fold_stopped_part_way_resumes_only_under_the_recipe_and_tweets_it_began_with(tmp_path):
    from dataclasses import replace

    from shared.training.cv import run_cv
    from shared.training.config import TrainConfig

    examples = read_labeled([write_labeled_csv(tmp_path / "d.csv", n_per_cell=6)])
    calls: list[tuple[str, bool]] = []

    def stopped(train_set, directory, resume):  # killed during its first fold's training
        calls.append((directory.name, resume))
        raise KeyboardInterrupt

    def trains(train_set, directory, resume):
        calls.append((directory.name, resume))
        return lambda texts: np.tile([0.1, 0.1, 0.1, 0.7], (len(texts), 1))

    def cv(train_fold, config=TrainConfig(), data=examples):
        return run_cv(data, tmp_path / "cv", config, train_fold, folds=2, log=lambda _: None)

    with pytest.raises(KeyboardInterrupt):
        cv(stopped)
    cv(trains)  # the same recipe and folds: fold-1 continues its checkpoint, fold-2 starts fresh
    assert calls == [("fold-1", False), ("fold-1", True), ("fold-2", False)]

    calls.clear()
    (tmp_path / "cv" / "fold-1" / "scores.json").unlink()  # fold-1 to train again, under another recipe
    cv(trains, replace(TrainConfig(), epochs=TrainConfig().epochs + 1))
    assert calls == [("fold-1", False)]  # a checkpoint of another recipe is never continued

    calls.clear()
    for fold in ("fold-1", "fold-2"):
        (tmp_path / "cv" / fold / "scores.json").unlink()
    cv(trains, replace(TrainConfig(), epochs=TrainConfig().epochs + 1), examples[:-1])  # other training tweets
    assert calls == [("fold-1", False), ("fold-2", False)]

    # A fold begun before an option existed (absent from its record, at its default now) still continues; a record
    # naming an option that no longer exists does not.
    longer = replace(TrainConfig(), epochs=TrainConfig().epochs + 1)
    begun = tmp_path / "cv" / "fold-1" / "fold.json"
    for edit, resumed in ((lambda recipe: recipe.pop("weight_decay"), True),
                          (lambda recipe: recipe.update(retired_option=1), False)):
        record = json.loads(begun.read_text())
        edit(record["recipe"])
        begun.write_text(json.dumps(record))
        (tmp_path / "cv" / "fold-1" / "scores.json").unlink()
        calls.clear()
        cv(trains, longer, examples[:-1])
        assert calls == [("fold-1", resumed)]


@pytest.mark.model
def test_cv_cli_reports_folds_and_a_left_out_language_and_resumes_without_retraining(tmp_path, tiny_model_dir):
    rows = labeled_rows(n_per_cell=6) + labeled_rows(n_per_cell=3, langs=("tr",), prefix="x")
    data = write_labeled_csv(tmp_path / "labels.csv", rows=rows)
    env = cli_env(tmp_path, tiny_model_dir)
    recipe = [f"--{k.replace('_', '-')}={v}" for k, v in TINY_RECIPE.items()]
    args = ("cv", "--data", str(data), "--out", str(tmp_path / "cv"), "--folds", "2", "--lolo", "tr", *recipe)
    first = run_cli(*args, env=env, timeout=600)
    assert first.returncode == 0, first.stderr
    report = json.loads((tmp_path / "cv" / "cv.json").read_text())
    assert set(report["per_fold"]) == {"fold-1", "fold-2"} and report["examples"] == len(rows)
    held_out = [json.loads((tmp_path / "cv" / f"fold-{i}" / "scores.json").read_text())["n"] for i in (1, 2)]
    assert sum(held_out) == len(rows)
    assert report["lolo"]["tr"]["n"] == 12
    lolo_meta = json.loads((tmp_path / "cv" / "lolo-tr" / "adapter" / "stancestream.json").read_text())
    assert lolo_meta["data"]["examples"] == len(rows) - 12  # Turkish never reached training
    folds = [report["per_fold"][f]["macro_f1"] for f in ("fold-1", "fold-2")]
    assert report["cv"]["macro_f1"]["mean"] == pytest.approx(np.mean(folds), abs=1e-4)
    assert set(report["cv"]["per_language"]) == {"en", "es", "id", "tr"}
    assert "Leave one language out" in first.stdout and "mean ± sd" in first.stdout

    adapter = tmp_path / "cv" / "fold-1" / "adapter" / "adapter_model.safetensors"
    before = adapter.stat().st_mtime_ns
    again = run_cli(*args, env=env, timeout=600)
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("already scored, kept") == 3 and adapter.stat().st_mtime_ns == before

    unknown = run_cli("cv", "--data", str(data), "--out", str(tmp_path / "cv2"), "--lolo", "xx", env=env)
    assert unknown.returncode == 2 and "no labeled tweets in that language" in unknown.stderr
    no_layers = run_cli("cv", "--data", str(data), "--out", str(tmp_path / "cv3"), "--members", "3", env=env)
    assert no_layers.returncode == 2 and "--train-layers" in no_layers.stderr


@pytest.mark.model
def test_an_ensemble_fold_trains_one_adapter_per_seed_scores_their_mean_and_reuses_finished_members(
        tmp_path, tiny_settings):
    from shared.classifier.model import StanceClassifier
    from shared.training.config import TrainConfig
    from shared.training.cv import fold_trainer

    examples = read_labeled([write_labeled_csv(tmp_path / "d.csv", n_per_cell=4)])
    config = TrainConfig(**TINY_RECIPE, train_layers=1)
    memo: dict = {}
    train_fold = fold_trainer(tiny_settings, config, sources=["d.csv"], frozen_memo=memo, members=2)
    texts = [ex.text for ex in examples[:10]]
    ensemble = train_fold(examples, tmp_path / "fold-1", False)(texts)

    members = [tmp_path / "fold-1" / f"member-{k}" / "adapter" for k in (1, 2)]
    seeds = [json.loads((m / "stancestream.json").read_text())["hyperparameters"]["seed"] for m in members]
    assert seeds == [config.seed, config.seed + 1]
    each = [StanceClassifier.load(tiny_settings, adapter=m).predict_proba(texts) for m in members]
    assert not np.allclose(each[0], each[1], atol=1e-4)  # two seeds, two adapters
    assert np.allclose(ensemble, (each[0] + each[1]) / 2, atol=1e-4)

    # Resumed after a stop during member 2: member 1 is kept as it was, member 2 trains again.
    (members[1] / "stancestream.json").unlink()
    kept = (members[0] / "adapter_model.safetensors").stat().st_mtime_ns
    train_fold(examples, tmp_path / "fold-1", True)
    assert (members[0] / "adapter_model.safetensors").stat().st_mtime_ns == kept
    assert (members[1] / "stancestream.json").exists()

    with pytest.raises(ValueError, match="--train-layers"):
        fold_trainer(tiny_settings, TrainConfig(**TINY_RECIPE), sources=[], frozen_memo=None, members=2)


@pytest.mark.model
def test_folds_share_the_frozen_layers_output_without_changing_what_is_trained(tmp_path, tiny_settings,
                                                                               tiny_classifier):
    from safetensors.numpy import load_file

    from shared.training.config import TrainConfig
    from shared.training.loop import train

    examples = read_labeled([write_labeled_csv(tmp_path / "d.csv", n_per_cell=5)])
    # Trained in the wording the reference encoder below reads tweets in.
    config = TrainConfig(**TINY_RECIPE, train_layers=1, prompt_wording=tiny_classifier.wording)
    plain = train(tiny_settings, examples[:40], tmp_path / "plain", config, progress=False)
    memo: dict = {}
    first = train(tiny_settings, examples[:40], tmp_path / "first", config, progress=False, frozen_memo=memo)
    (streams,) = memo.values()

    def distinct(part):  # the tiny tokenizer reads several of the fixture's texts alike
        return {tuple(s) for s in tiny_classifier.encode([ex.text for ex in part])}

    assert set(streams) == distinct(examples[:40])
    cached = {key: id(value) for key, value in streams.items()}
    train(tiny_settings, examples[20:], tmp_path / "second", config, progress=False, frozen_memo=memo)
    assert set(streams) == distinct(examples)
    assert all(id(streams[key]) == ident for key, ident in cached.items())  # reused, not computed again
    a, b = (load_file(str(r.adapter_dir / "adapter_model.safetensors")) for r in (plain, first))
    assert a.keys() == b.keys() and all(np.allclose(a[k], b[k]) for k in a)

    # a fold scores its held-out tweets through the memo exactly as a plain forward pass would
    from shared.training.cv import fold_scorer

    texts = [ex.text for ex in examples[:10]] + ["a tweet no fold has seen, about the border"]
    through_memo = fold_scorer(tiny_settings, config, first.adapter_dir, memo)(texts)
    plain_pass = fold_scorer(tiny_settings, config, first.adapter_dir, None)(texts)
    assert np.allclose(through_memo, plain_pass, atol=1e-5)


def _fold(small_stance: float, *, macro_f1: float = 0.5, accuracy: float = 0.6, large_stance: float = 0.9) -> dict:
    """A fold's scores.json as far as the rule reads it: two large languages and two small ones."""
    per_language = {"en": {"stance_macro_f1": large_stance}, "es": {"stance_macro_f1": large_stance},
                    "it": {"stance_macro_f1": small_stance - 0.05}, "tr": {"stance_macro_f1": small_stance + 0.05}}
    return {"macro_f1": macro_f1, "accuracy": accuracy, "per_language": per_language}


def test_the_adoption_rule_needs_the_margin_most_folds_every_fold_and_no_large_macro_f1_or_accuracy_loss():
    from shared.training.cv import adoption_verdict

    base = {f"fold-{k}": _fold(0.30) for k in range(1, 6)}
    better = {f"fold-{k}": _fold(v) for k, v in zip(range(1, 6), (0.35, 0.34, 0.33, 0.29, 0.29))}
    verdict = adoption_verdict(base, better, folds=5)
    assert verdict["verdict"] == "passes", verdict  # +0.02 on average, better in 3 of 5
    assert verdict["small_language_stance_delta"] == pytest.approx(0.02)
    assert verdict["folds_better"] == 3
    # The large languages do not count: a fold that gains only there is no better.
    assert adoption_verdict(base, {k: _fold(0.30, large_stance=1.0) for k in base}, folds=5)["verdict"] == "fails"
    # The mean alone is not enough: one fold's big gain, worse in the other four.
    lopsided = {f"fold-{k}": _fold(v) for k, v in zip(range(1, 6), (0.60, 0.29, 0.29, 0.29, 0.29))}
    assert adoption_verdict(base, lopsided, folds=5)["failed"] == ["better in 1 of 5 folds, not most"]
    # Half the folds is not most.
    even = {f"fold-{k}": _fold(v) for k, v in zip(range(1, 5), (0.40, 0.40, 0.29, 0.29))}
    assert adoption_verdict(dict(list(base.items())[:4]), even, folds=4)["verdict"] == "fails"
    # Stance bought with overall macro-F1, or (where the rule limits it) with accuracy.
    costly = {k: _fold(0.40, macro_f1=0.48, accuracy=0.50) for k in base}
    assert adoption_verdict(base, costly, folds=5)["verdict"] == "fails"
    cheap_macro = {k: _fold(0.40, macro_f1=0.495, accuracy=0.50) for k in base}
    assert adoption_verdict(base, cheap_macro, folds=5)["verdict"] == "passes"
    assert adoption_verdict(base, cheap_macro, folds=5, max_accuracy_drop=0.02)["verdict"] == "fails"
    # The rule is about all the folds: four good pairs of five decide nothing yet.
    partial = adoption_verdict(base, {k: v for k, v in better.items() if k != "fold-5"} | {}, folds=5)
    assert partial["verdict"] == "incomplete" and partial["paired_folds"] == 4
    assert adoption_verdict(base, {}, folds=5)["verdict"] == "incomplete"
    # "No worse" (a cheaper recipe): within the margin below, better in any number of folds.
    slightly_worse = {k: _fold(0.295, macro_f1=0.495, accuracy=0.595) for k in base}
    no_worse = dict(margin=-0.01, most_folds_better=False, max_accuracy_drop=0.01)
    assert adoption_verdict(base, slightly_worse, folds=5)["verdict"] == "fails"
    assert adoption_verdict(base, slightly_worse, folds=5, **no_worse)["verdict"] == "passes"
    worse = {k: _fold(0.285) for k in base}
    assert adoption_verdict(base, worse, folds=5, **no_worse)["failed"] == ["small-language stance -0.015 < -0.01"]
    less_accurate = {k: _fold(0.30, accuracy=0.585) for k in base}
    assert adoption_verdict(base, less_accurate, folds=5, **no_worse)["verdict"] == "fails"
