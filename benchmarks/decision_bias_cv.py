"""Nested cross-validation of a decision bias (docs/experiments.md, cv06 and cv07): each fold's held-out
predictions scored as they are and with the bias fitted on the other folds' held-out predictions, judged by the
adoption rule. Two variants: one bias for every tweet ("global"), and one for the large languages (en, es) and
another for the small ones ("by language size").

    .venv/bin/python benchmarks/decision_bias_cv.py --folds-dir benchmarks/results/cv06-decision-bias/baseline
    .venv/bin/python benchmarks/decision_bias_cv.py --folds-dir benchmarks/results/cv07-balanced-prior/balanced \
        --against benchmarks/results/cv06-decision-bias/baseline

Needs folds scored by ``benchmarks/cv_screen.py`` (or ``stancestream cv``) since they keep ``predictions.json``.
Writes FOLDS_DIR/../decision_bias.json: per variant and fold the plain and biased numbers, the biases, the verdict,
and the bias fitted on all folds (what would ship if the rule passes).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from shared.training.cv import LARGE_LANGUAGES, adoption_verdict, scored_folds, small_language_stance
from shared.training.data import read_labeled
from shared.training.decision_bias import bias_as_dict, fit_group_biases, nested_bias_scores, read_fold_predictions

TRAIN = Path("../shared/datasets/immigration-tweets/train.csv")
VARIANTS = {
    "global": lambda ex: "all",
    "by language size": lambda ex: "large" if ex.lang in LARGE_LANGUAGES else "small",
}


def _headline(scores: dict) -> dict:
    return {k: round(scores[k], 4) for k in ("accuracy", "macro_f1", "stance_macro_f1")} | {
        "small_language_stance": round(small_language_stance(scores), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folds-dir", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=TRAIN)
    parser.add_argument("--folds", type=int, default=5, help="how many folds the CV made (and the rule is about)")
    parser.add_argument("--against", type=Path,
                        help="judge the biased folds against this recipe's plain folds (same folds and seed; cv07) "
                             "instead of the same recipe's")
    args = parser.parse_args()
    folds = read_fold_predictions(args.folds_dir, read_labeled([args.data]), args.folds)
    if len(folds) < 2:
        raise SystemExit(f"{args.folds_dir}: {len(folds)} folds have predictions.json, the check needs two or more; "
                         "score folds with cv_screen.py first")
    every = [(ex, p) for exs, ps in folds.values() for ex, p in zip(exs, ps)]
    out = {}
    for variant, group_of in VARIANTS.items():
        plain, biased, biases = nested_bias_scores(folds, group_of)
        against = plain if args.against is None else scored_folds(args.against)
        verdict = adoption_verdict(against, biased, folds=args.folds, max_accuracy_drop=0.02)
        final = {group: bias_as_dict(bias) for group, bias in
                 fit_group_biases(every, group_of, sorted({group_of(ex) for ex, _ in every})).items()}
        print(f"\n{variant}\n")
        print("| fold | bias pro / anti / neutral per group (fitted on the other folds) | small-language stance "
              "plain → biased | macro-F1 plain → biased | accuracy plain → biased | F1 pro / anti / neutral / "
              "unrelated biased |")
        print("|---|---|---|---|---|---|")
        for name in folds:
            p, b = plain[name], biased[name]
            shown = "; ".join(f"{group} {' / '.join(f'{v:+.2f}' for v in bias[:3])}"
                              for group, bias in biases[name].items())
            print(f"| {name} | {shown} | {small_language_stance(p):.3f} → {small_language_stance(b):.3f} | "
                  f"{p['macro_f1']:.3f} → {b['macro_f1']:.3f} | {p['accuracy']:.3f} → {b['accuracy']:.3f} | "
                  f"{' / '.join(f'{v:.3f}' for v in b['per_class_f1'].values())} |")
        print(json.dumps(verdict))
        print("fitted on all folds:", final)
        out[variant] = {"verdict": verdict, "bias_all_folds": final, "per_fold": {
            name: {"bias": {g: bias_as_dict(b) for g, b in biases[name].items()},
                   "plain": _headline(plain[name]), "biased": _headline(biased[name]),
                   "biased_per_class_f1": biased[name]["per_class_f1"]} for name in folds}}
    (args.folds_dir.parent / "decision_bias.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
