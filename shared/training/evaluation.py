"""Scoring an adapter on labeled tweets: ``evaluate`` (the dev split while training, the holdout in the trainer's
gate) and ``stancestream eval``, the paper's metrics on a labeled CSV compared with the paper's own predictions.

``eval`` writes ``metrics.json``, ``report.md`` and two plots (confusion matrix; per-language accuracy, ours vs paper).
When the CSV has a ``paper_pred`` column, the paper's model is scored on the same tweets, and a paired bootstrap
gives a 95% interval of our accuracy minus the paper's.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np

from shared.classifier.model import StanceClassifier
from shared.messages import CATEGORIES, Category
from shared.quantification.estimators import Calibration
from shared.quantification.evaluation import share_errors, shift_simulation
from shared.training.data import Example, read_labeled
from shared.training.metrics import confusion, expected_calibration_error, per_language, scores, to_indices


def evaluate(classifier: StanceClassifier, examples: list[Example], probs: np.ndarray | None = None
             ) -> tuple[dict, np.ndarray]:
    if probs is None:
        probs = classifier.predict_proba([ex.text for ex in examples])
    y_true = to_indices([ex.label for ex in examples])
    y_pred = probs.argmax(axis=1)
    metrics = scores(y_true, y_pred) | {"per_language": per_language([ex.lang for ex in examples], y_true, y_pred)}
    return metrics, probs


def bootstrap_difference(correct_a: np.ndarray, correct_b: np.ndarray, resamples: int = 2000,
                         seed: int = 0) -> tuple[float, float]:
    """95% interval of mean(correct_a) - mean(correct_b) over paired resamples of the same tweets."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(correct_a), size=(resamples, len(correct_a)))
    diffs = correct_a[idx].mean(axis=1) - correct_b[idx].mean(axis=1)
    low, high = np.percentile(diffs, [2.5, 97.5])
    return float(low), float(high)


def evaluate_csv(classifier: StanceClassifier, data: Path, out: Path, chunk: int = 64,
                 progress: bool = True, calibration: Calibration | None = None) -> dict:
    """``calibration``: the adapter's (``adapter_calibration``), for the corrected label shares; without it
    only classify-and-count and its probabilistic variant are reported."""
    from tqdm.auto import tqdm

    examples = read_labeled([data])
    with open(data, encoding="utf-8", newline="") as handle:
        paper = [row.get("paper_pred") for row in csv.DictReader(handle) if row["text"].strip()]
    texts = [ex.text for ex in examples]
    probs = np.zeros((len(texts), len(CATEGORIES)), dtype=np.float32)
    started = time.perf_counter()
    with tqdm(total=len(texts), desc="evaluating", unit="tweet", disable=not progress, mininterval=1.0) as bar:
        for start in range(0, len(texts), chunk):
            probs[start : start + chunk] = classifier.predict_proba(texts[start : start + chunk])
            bar.update(len(texts[start : start + chunk]))
    seconds = time.perf_counter() - started

    langs = [ex.lang for ex in examples]
    y_true = to_indices([ex.label for ex in examples])
    y_pred = probs.argmax(axis=1)
    metrics = scores(y_true, y_pred) | {
        "ece": expected_calibration_error(probs, y_true),
        "tweets_per_s": len(texts) / seconds,
        "per_language": per_language(langs, y_true, y_pred),
        "confusion": confusion(y_true, y_pred).tolist(),
        "labels": [label.value for label in CATEGORIES],
        "adapter_version": classifier.adapter_version,
        "model_id": classifier.model_id,
        "data": str(data),
    }
    metrics["quantification"] = share_errors(probs, y_true, langs, calibration)
    if calibration is not None:
        metrics["quantification"]["shift_simulation"] = shift_simulation(probs, y_true, calibration)
    if all(p in {label.value for label in Category} for p in paper):
        y_paper = to_indices(paper)
        metrics["paper"] = scores(y_true, y_paper) | {"per_language": per_language(langs, y_true, y_paper)}
        low, high = bootstrap_difference((y_pred == y_true).astype(float), (y_paper == y_true).astype(float))
        metrics["accuracy_minus_paper"] = {"estimate": metrics["accuracy"] - metrics["paper"]["accuracy"],
                                           "ci95": [low, high]}
    out.mkdir(parents=True, exist_ok=True)
    _write_predictions(out / "predictions.csv", examples, probs)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    _plot_confusion(metrics, out / "confusion.png")
    _plot_languages(metrics, out / "per_language.png")
    (out / "report.md").write_text(render_report(metrics))
    return metrics


def _write_predictions(path: Path, examples: list[Example], probs: np.ndarray) -> None:
    """One row per tweet: its id, language, true and predicted label, the four probabilities, and whether the
    prediction was right, so the errors can be read one by one."""
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "lang", "label", "predicted", *(f"p_{c.value}" for c in CATEGORIES), "correct"])
        for ex, row in zip(examples, probs):
            predicted = CATEGORIES[int(row.argmax())]
            writer.writerow([ex.id, ex.lang, ex.label.value, predicted.value, *(f"{p:.4f}" for p in row),
                             int(predicted is ex.label)])


def render_report(m: dict) -> str:
    paper = m.get("paper")
    lines = [f"# Evaluation of adapter `{m['adapter_version']}` on `{Path(m['data']).name}`", "",
             f"Model `{m['model_id']}`, {m['n']} tweets, {m['tweets_per_s']:.1f} tweets/s.", "",
             "| metric | ours |" + (" paper |" if paper else ""), "|---|---|" + ("---|" if paper else "")]
    for key in ("accuracy", "macro_f1", "topic_accuracy", "stance_accuracy"):
        lines.append(f"| {key} | {m[key]:.3f} |" + (f" {paper[key]:.3f} |" if paper else ""))
    for label in m["labels"]:
        lines.append(f"| F1 {label} | {m['per_class_f1'][label]:.3f} |"
                     + (f" {paper['per_class_f1'][label]:.3f} |" if paper else ""))
    lines.append(f"| ECE | {m['ece']:.3f} |" + (" |" if paper else ""))
    if paper:
        ci = m["accuracy_minus_paper"]
        lines += ["", f"Accuracy minus the paper's: {ci['estimate']:+.3f} "
                      f"(95% paired bootstrap interval {ci['ci95'][0]:+.3f} to {ci['ci95'][1]:+.3f})."]
    lines += ["", "| language | n | accuracy | macro-F1 |" + (" paper accuracy | difference |" if paper else ""),
              "|---|---|---|---|" + ("---|---|" if paper else "")]
    for lang, row in m["per_language"].items():
        extra = ""
        if paper:
            p = paper["per_language"][lang]["accuracy"]
            extra = f" {p:.3f} | {row['accuracy'] - p:+.3f} |"
        lines.append(f"| {lang} | {row['n']} | {row['accuracy']:.3f} | {row['macro_f1']:.3f} |{extra}")
    lines += _quantification_lines(m["quantification"])
    lines += ["", "![confusion matrix](confusion.png)", "", "![per-language accuracy](per_language.png)", ""]
    return "\n".join(lines)


def _quantification_lines(q: dict) -> list[str]:
    lines = ["", "## Label shares per language", ""]
    if q["estimator"] is None:
        return lines + [f"Classify-and-count mean absolute share error {q['cc_mae']:.3f}; the adapter has no "
                        "calibration, so no corrected estimate."]
    name = q["estimator"]
    lines += [f"Mean absolute error of the four shares, averaged over languages: classify-and-count "
              f"{q['cc_mae']:.3f}, {name.upper()} {q['corrected_mae']:.3f} (calibration: {q['calibration']}); "
              f"{name.upper()} closer in {q['languages_corrected_better']} of {len(q['per_language'])} languages.",
              "", "| language | n | " + " | ".join(f"{e.upper()} error" for e in q["mae"]) + " |",
              "|---|---|" + "---|" * len(q["mae"])]
    for lang, row in q["per_language"].items():
        lines.append(f"| {lang} | {row['n']} | " + " | ".join(f"{row[f'{e}_mae']:.3f}" for e in q["mae"]) + " |")
    sim = q.get("shift_simulation")
    if sim:
        lines += ["", f"Simulated mixes ({sim['draws']} groups each, drawn from these tweets): estimated anti share",
                  "", "| true anti share | " + " | ".join(e.upper() for e in q["mae"]) + " |",
                  "|---|" + "---|" * len(q["mae"])]
        for row in sim["rows"]:
            lines.append(f"| {row['anti_share']:.2f} | "
                         + " | ".join(f"{row[e]['anti_estimate']:.3f}" for e in q["mae"]) + " |")
    return lines


def _plot_confusion(m: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.array(m["confusion"])
    short = ["pro", "anti", "neutral", "unrelated"]
    fig, ax = plt.subplots(figsize=(5, 4.4))
    ax.imshow(matrix, cmap="Blues")
    for i in range(len(short)):
        for j in range(len(short)):
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center",
                    color="white" if matrix[i, j] > matrix.max() / 2 else "black")
    ax.set_xticks(range(len(short)), short)
    ax.set_yticks(range(len(short)), short)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{m['adapter_version']}: accuracy {m['accuracy']:.3f}, macro-F1 {m['macro_f1']:.3f}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_languages(m: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    langs = list(m["per_language"])
    ours = [m["per_language"][lang]["accuracy"] for lang in langs]
    fig, ax = plt.subplots(figsize=(max(6, len(langs) * 0.6), 3.6))
    x = np.arange(len(langs))
    width = 0.4 if "paper" in m else 0.8
    ax.bar(x - (width / 2 if "paper" in m else 0), ours, width, label=f"ours ({m['adapter_version']})")
    if "paper" in m:
        ax.bar(x + width / 2, [m["paper"]["per_language"][lang]["accuracy"] for lang in langs], width,
               label="paper (LLaMA-3.2-3B)")
    ax.set_xticks(x, [f"{lang}\n{m['per_language'][lang]['n']}" for lang in langs])
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.legend(loc="lower right")
    ax.set_title("accuracy per language (n below)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
