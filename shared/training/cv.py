"""Model selection that a 319-tweet dev split cannot give: stratified K-fold cross-validation over the labeled
tweets (language × label), and leave-one-language-out runs that measure transfer to a language absent from
training.

Each fold trains a recipe on the other folds (``train`` carves its own early-stopping dev split out of them) and
scores the held-out fold: overall, per language and per class, plus stance macro-F1 (pro / anti / neutral F1 on
the tweets labeled immigration-related) — the number the small languages need moved. A run directory keeps one
sub-directory per fold with its ``scores.json``, so an interrupted CV continues where it stopped (a fold with
scores is not trained again, a fold stopped part way resumes from its training checkpoint when its recipe and
training tweets are the ones it began with) and a finished one is re-summarised for free.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable

import numpy as np

from shared.classifier.adapters import ADAPTER_METADATA
from shared.messages import CATEGORIES, Category
from shared.training.config import TrainConfig
from shared.training.data import Example, data_digest
from shared.training.metrics import f1_per_class, per_language, scores, to_indices

_STANCE = [i for i, c in enumerate(CATEGORIES) if c is not Category.unrelated]
_UNRELATED = CATEGORIES.index(Category.unrelated)

#: The numbers a fold reports, summarised as mean ± sd over folds.
HEADLINE = ("accuracy", "macro_f1", "stance_macro_f1", "topic_accuracy", "stance_accuracy")


def kfold(examples: list[Example], k: int, seed: int) -> list[list[Example]]:
    """``k`` disjoint folds covering every example, each language × label stratum dealt round-robin after a
    seeded shuffle (the deal starts where the previous stratum's ended, so small strata spread over folds)."""
    if k < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {k}")
    if len(examples) < k:
        raise ValueError(f"{len(examples)} examples cannot fill {k} folds")
    rng = random.Random(seed)
    strata: dict[tuple[str, Category], list[Example]] = {}
    for ex in examples:
        strata.setdefault((ex.lang, ex.label), []).append(ex)
    folds: list[list[Example]] = [[] for _ in range(k)]
    position = 0
    for key in sorted(strata):
        members = strata[key]
        rng.shuffle(members)
        for ex in members:
            folds[position % k].append(ex)
            position += 1
    return folds


def stance_macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean F1 of pro, anti and neutral over the tweets whose true label is immigration-related (a prediction of
    'unrelated' there counts as a miss)."""
    related = y_true != _UNRELATED
    if not related.any():
        return 0.0
    return float(f1_per_class(y_true[related], y_pred[related])[_STANCE].mean())


def fold_scores(examples: list[Example], probs: np.ndarray) -> dict:
    """What one held-out fold (or left-out language) says about the recipe."""
    y_true = to_indices([ex.label for ex in examples])
    y_pred = probs.argmax(axis=1)
    langs = [ex.lang for ex in examples]
    result = scores(y_true, y_pred) | {"stance_macro_f1": stance_macro_f1(y_true, y_pred)}
    result["per_language"] = per_language(langs, y_true, y_pred)
    for lang, row in result["per_language"].items():
        idx = [i for i, code in enumerate(langs) if code == lang]
        row["stance_macro_f1"] = stance_macro_f1(y_true[idx], y_pred[idx])
    return result


def summarise(folds: list[dict]) -> dict:
    """Mean and sd over folds: the headline numbers, per class F1, and per language (with its total n)."""
    def mean_sd(values: list[float]) -> dict:
        return {"mean": round(float(np.mean(values)), 4), "sd": round(float(np.std(values, ddof=1)), 4)
                if len(values) > 1 else 0.0}

    out: dict = {name: mean_sd([f[name] for f in folds]) for name in HEADLINE}
    out["per_class_f1"] = {c.value: mean_sd([f["per_class_f1"][c.value] for f in folds]) for c in CATEGORIES}
    languages = sorted({lang for f in folds for lang in f["per_language"]})
    out["per_language"] = {}
    for lang in languages:
        rows = [f["per_language"][lang] for f in folds if lang in f["per_language"]]
        out["per_language"][lang] = {"n": sum(r["n"] for r in rows)} | {
            name: mean_sd([r[name] for r in rows]) for name in ("accuracy", "macro_f1", "stance_macro_f1")}
    return out


def fold_scorer(settings, config: TrainConfig, adapter_dir: Path, frozen_memo: dict | None
                ) -> Callable[[list[str]], np.ndarray]:
    """How a trained fold scores its held-out tweets: through ``frozen_memo`` when the recipe adapts only the top
    layers (the other folds already ran those tweets through the frozen ones), else a plain forward pass."""
    from shared.classifier.model import StanceClassifier
    from shared.training.loop import predict_with_frozen_memo

    classifier = StanceClassifier.load(settings.model_copy(update={"max_tokens": config.max_tokens}),
                                       adapter=adapter_dir)
    if not config.train_layers or frozen_memo is None:
        return classifier.predict_proba
    start = max(0, classifier.model.config.num_hidden_layers - config.train_layers)
    memo = frozen_memo.setdefault((classifier.model_id, start), {})
    return lambda texts: predict_with_frozen_memo(classifier, texts, start, memo)


TrainFn = Callable[[list[Example], Path, bool], Callable[[list[str]], np.ndarray]]
"""``train_fold(train_set, directory, resume)``: trains on the examples into the directory (continuing its
checkpoint if ``resume``) and returns the trained model's ``predict_proba``."""
#: A scored fold's held-out ids and probabilities (``ids``, ``probs``), beside its ``scores.json``.
PREDICTIONS = "predictions.json"
#: A fold's recipe and training tweets as its training began: its checkpoint is continued only under the same.
BEGUN = "fold.json"


def fold_trainer(settings, config: TrainConfig, *, sources: list[str], frozen_memo: dict | None,
                 pretrain_texts: list[str] | None = None, members: int = 1) -> TrainFn:
    """The real ``train_fold``: ``train`` with the recipe, scored through ``frozen_memo`` where it can. With
    ``members`` > 1 the fold is an ensemble: one adapter per seed (the recipe's seed, + 1, …) in ``member-<k>``
    sub-directories, scored by their mean probabilities (as ``shared.classifier.ensemble`` serves them); a member
    finished before a stop is reused when the fold resumes."""
    from shared.training.loop import train

    if members < 1:
        raise ValueError(f"an ensemble needs at least one member, got {members}")
    if members > 1 and not config.train_layers:
        raise ValueError("ensemble members must adapt the same top layers: give --train-layers")

    def train_fold(train_set: list[Example], directory: Path, resume: bool):
        scorers = []
        for k in range(members):
            member_dir = directory / f"member-{k + 1}" if members > 1 else directory
            member = replace(config, seed=config.seed + k)
            finished = member_dir / "adapter" / ADAPTER_METADATA
            if members > 1 and resume and finished.exists():
                adapter_dir = finished.parent
            else:
                adapter_dir = train(settings, train_set, member_dir, member, sources=sources,
                                    version=directory.name, frozen_memo=frozen_memo, pretrain_texts=pretrain_texts,
                                    resume=resume).adapter_dir
            scorers.append(fold_scorer(settings, member, adapter_dir, None if pretrain_texts else frozen_memo))
        if members == 1:
            return scorers[0]
        return lambda texts: np.mean([score(texts) for score in scorers], axis=0)

    return train_fold


def _began_with(path: Path, config: TrainConfig, train_digest: str) -> bool:
    """Whether the fold recorded in ``path`` began with this recipe and these training tweets. The recipe is
    compared as a TrainConfig, so an option added since (absent from the file, at its default) still matches and
    one removed since does not."""
    try:
        saved = json.loads(path.read_text())
        return saved["train_sha256_16"] == train_digest and TrainConfig(**saved["recipe"]) == config
    except (OSError, ValueError, TypeError, KeyError):
        return False


def run_cv(examples: list[Example], out: Path, config: TrainConfig, train_fold: TrainFn, *, folds: int = 5,
           seed: int = 0, lolo: list[str] = (), log: Callable[[str], None] = print,
           train_at_most: int | None = None, members: int = 1) -> dict:
    """K-fold CV (``folds`` ≥ 2; 0 skips it) and one leave-one-language-out run per language in ``lolo``; writes
    ``out/cv.json`` and returns it. ``train_fold`` does the training (the CLI passes the real one). Folds already
    scored in ``out`` are kept; with ``train_at_most``, at most that many more are trained in this call (several
    recipes can then advance fold by fold), and the report covers the folds scored so far. ``members``: how many
    adapters ``train_fold`` trains per fold (an ensemble, ``fold_trainer``), recorded in the report."""
    out.mkdir(parents=True, exist_ok=True)
    plan: list[tuple[str, list[Example], list[Example]]] = []
    if folds:
        parts = kfold(examples, folds, seed)
        for i, held_out in enumerate(parts):
            plan.append((f"fold-{i + 1}", [ex for j, p in enumerate(parts) if j != i for ex in p], held_out))
    present = {ex.lang for ex in examples}
    for lang in lolo:
        if lang not in present:
            raise ValueError(f"--lolo {lang}: no labeled tweets in that language (the data has "
                             f"{', '.join(sorted(present))})")
        plan.append((f"lolo-{lang}", [ex for ex in examples if ex.lang != lang],
                     [ex for ex in examples if ex.lang == lang]))
    results: dict[str, dict] = {}
    trained = 0
    for name, train_set, held_out in plan:
        directory = out / name
        done = directory / "scores.json"
        expected = data_digest(held_out)
        if done.exists() and json.loads(done.read_text()).get("held_out_sha256_16") == expected:
            results[name] = json.loads(done.read_text())
            log(f"{name}: already scored, kept")
            continue
        if train_at_most is not None and trained >= train_at_most:
            continue
        trained += 1
        begun = {"recipe": asdict(config), "train_sha256_16": data_digest(train_set)}
        resume = _began_with(directory / BEGUN, config, begun["train_sha256_16"])
        directory.mkdir(parents=True, exist_ok=True)
        (directory / BEGUN).write_text(json.dumps(begun, indent=1) + "\n")
        log(f"{name}: {'resuming' if resume else 'training'} on {len(train_set)} tweets, scoring {len(held_out)}")
        predict = train_fold(train_set, directory, resume)
        probs = predict([ex.text for ex in held_out])
        result = fold_scores(held_out, probs)
        result["held_out_sha256_16"] = expected
        result["train_n"] = len(train_set)
        directory.mkdir(parents=True, exist_ok=True)
        # The held-out probabilities themselves, so that what is decided from them (a decision bias) can be
        # cross-validated later without training again.
        (directory / PREDICTIONS).write_text(json.dumps(
            {"ids": [ex.id for ex in held_out], "probs": np.round(probs, 6).tolist()}) + "\n")
        done.write_text(json.dumps(result, indent=1) + "\n")
        results[name] = result
        log(f"{name}: accuracy {result['accuracy']:.3f}  macro-F1 {result['macro_f1']:.3f}  "
            f"stance macro-F1 {result['stance_macro_f1']:.3f}")
    fold_results = [r for name, r in results.items() if name.startswith("fold-")]
    report = {
        "folds": folds, "seed": seed, "examples": len(examples), "data_sha256_16": data_digest(examples),
        "recipe": asdict(config), "members": members,
        "cv": summarise(fold_results) if fold_results else None,
        "per_fold": {name: {k: r[k] for k in HEADLINE} for name, r in results.items() if name.startswith("fold-")},
        "lolo": {name.removeprefix("lolo-"): {k: r[k] for k in (*HEADLINE, "n")} for name, r in results.items()
                 if name.startswith("lolo-")},
    }
    (out / "cv.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


#: The languages with hundreds of training tweets in train.csv; the others have ~75-80 and are "small".
LARGE_LANGUAGES = ("en", "es")


def small_language_stance(fold: dict, large: tuple[str, ...] = LARGE_LANGUAGES) -> float:
    """Mean over the small languages of stance macro-F1 on one held-out fold (a fold's ``scores.json``)."""
    return float(np.mean([row["stance_macro_f1"] for lang, row in fold["per_language"].items()
                          if lang not in large]))


def scored_folds(directory: Path) -> dict[str, dict]:
    """The K-fold folds scored so far in a CV run directory, by name (``fold-1`` …)."""
    return {d.name: json.loads((d / "scores.json").read_text())
            for d in sorted(directory.glob("fold-*")) if (d / "scores.json").exists()}


def adoption_verdict(baseline: dict[str, dict], candidate: dict[str, dict], *, folds: int, margin: float = 0.02,
                     max_macro_f1_drop: float = 0.01, max_accuracy_drop: float | None = None,
                     most_folds_better: bool = True) -> dict:
    """The adoption rule of docs/experiments.md (cv01, cv03) applied to two recipes' scored folds: on the folds
    both have, the candidate's mean small-language stance macro-F1 must be ≥ the baseline's + ``margin``, better
    in most folds (more than half), its mean macro-F1 not more than ``max_macro_f1_drop`` below the baseline's
    and, where the rule says so, its accuracy not more than ``max_accuracy_drop`` below. The rule is about all
    ``folds``: with fewer paired, the verdict is "incomplete" whatever the numbers say so far.

    A recipe adopted for its cost rather than its quality (cv05's shorter prompt) is held to "no worse": a
    negative ``margin`` and ``most_folds_better=False``."""
    paired = sorted(set(baseline) & set(candidate))
    if not paired:
        return {"verdict": "incomplete", "paired_folds": 0, "folds": folds}
    base = [small_language_stance(baseline[name]) for name in paired]
    cand = [small_language_stance(candidate[name]) for name in paired]

    def mean(rows: dict, key: str) -> float:
        return float(np.mean([rows[name][key] for name in paired]))

    result = {
        "paired_folds": len(paired), "folds": folds,
        "small_language_stance": {"baseline": [round(v, 4) for v in base], "candidate": [round(v, 4) for v in cand]},
        "small_language_stance_delta": round(float(np.mean(cand) - np.mean(base)), 4),
        "folds_better": sum(c > b for b, c in zip(base, cand)),
        "macro_f1_delta": round(mean(candidate, "macro_f1") - mean(baseline, "macro_f1"), 4),
        "accuracy_delta": round(mean(candidate, "accuracy") - mean(baseline, "accuracy"), 4),
    }
    failed = []
    if result["small_language_stance_delta"] < margin:
        failed.append(f"small-language stance {result['small_language_stance_delta']:+.3f} < {margin:+}")
    if most_folds_better and result["folds_better"] * 2 <= len(paired):
        failed.append(f"better in {result['folds_better']} of {len(paired)} folds, not most")
    if result["macro_f1_delta"] < -max_macro_f1_drop:
        failed.append(f"macro-F1 {result['macro_f1_delta']:+.3f} below the allowed -{max_macro_f1_drop}")
    if max_accuracy_drop is not None and result["accuracy_delta"] < -max_accuracy_drop:
        failed.append(f"accuracy {result['accuracy_delta']:+.3f} below the allowed -{max_accuracy_drop}")
    result["failed"] = failed
    result["verdict"] = "incomplete" if len(paired) < folds else ("fails" if failed else "passes")
    return result


def render(report: dict) -> str:
    """The CV report as Markdown tables (what `stancestream cv` prints and writes to cv.md)."""
    lines = []
    cv = report.get("cv")
    if cv:
        lines += [f"## {report['folds']}-fold cross-validation ({report['examples']} tweets, seed {report['seed']})",
                  "", "| | " + " | ".join(HEADLINE) + " |", "|---" * (len(HEADLINE) + 1) + "|"]
        for name, row in report["per_fold"].items():
            lines.append(f"| {name} | " + " | ".join(f"{row[k]:.3f}" for k in HEADLINE) + " |")
        lines.append("| **mean ± sd** | " + " | ".join(f"{cv[k]['mean']:.3f} ± {cv[k]['sd']:.3f}" for k in HEADLINE)
                     + " |")
        lines += ["", "| class | F1 mean ± sd |", "|---|---|"]
        lines += [f"| {c} | {v['mean']:.3f} ± {v['sd']:.3f} |" for c, v in cv["per_class_f1"].items()]
        lines += ["", "| language | n | accuracy | macro-F1 | stance macro-F1 |", "|---|---|---|---|---|"]
        lines += [f"| {lang} | {v['n']} | {v['accuracy']['mean']:.3f} ± {v['accuracy']['sd']:.3f} | "
                  f"{v['macro_f1']['mean']:.3f} ± {v['macro_f1']['sd']:.3f} | "
                  f"{v['stance_macro_f1']['mean']:.3f} ± {v['stance_macro_f1']['sd']:.3f} |"
                  for lang, v in cv["per_language"].items()]
    if report.get("lolo"):
        lines += ["", "## Leave one language out (what to expect in a language it never saw)", "",
                  "| left out | n | " + " | ".join(HEADLINE) + " |", "|---" * (len(HEADLINE) + 2) + "|"]
        lines += [f"| {lang} | {row['n']} | " + " | ".join(f"{row[k]:.3f}" for k in HEADLINE) + " |"
                  for lang, row in report["lolo"].items()]
    return "\n".join(lines) + "\n"
