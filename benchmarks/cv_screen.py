"""Screen training recipes by cross-validation on train.csv, several recipes in one process so the frozen lower
layers run once per tweet for all of them (``train(..., frozen_memo=...)``).

    .venv/bin/python benchmarks/cv_screen.py --out runs/cv-screen [--folds 3] [--recipes baseline,consistency,balanced]

Screening cost setting (cheaper than the shipped recipe, so several recipes fit a session on 2 cores): LoRA on the
top 2 decoder layers, 2 epochs, lr 3e-4, EMA 0.98, evaluation every 40 steps. Each recipe is the screening setting
plus its own options (RECIPES). The adoption rule is written in docs/experiments.md before the run. Results:
OUT/<recipe>/cv.json and cv.md, and OUT/screen.json (stance macro-F1 over the small languages per fold).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from shared.settings import Settings
from shared.training.config import TrainConfig
from shared.training.cv import fold_scorer, render, run_cv
from shared.training.data import read_labeled
from shared.training.loop import train

TRAIN = Path("../shared/datasets/immigration-tweets/train.csv")
SCREEN = TrainConfig(epochs=2, train_layers=2, learning_rate=3e-4, ema_decay=0.98, eval_every=40)
RECIPES = {
    "baseline": {},
    "consistency": {"consistency": 1.0},
    "balanced": {"sampling": "balanced"},
}
LARGE = ("en", "es")  # the two languages with hundreds of training tweets; the others have ~75-80


def small_language_stance(fold_dir: Path) -> float:
    """Mean over the small languages of stance macro-F1 on one held-out fold."""
    per_language = json.loads((fold_dir / "scores.json").read_text())["per_language"]
    return float(np.mean([row["stance_macro_f1"] for lang, row in per_language.items() if lang not in LARGE]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--recipes", default=",".join(RECIPES))
    args = parser.parse_args()
    settings = Settings()
    examples = read_labeled([TRAIN])
    memo: dict = {}
    screen: dict = {}
    for name in args.recipes.split(","):
        config = replace(SCREEN, **RECIPES[name])
        started = time.perf_counter()

        def train_fold(train_set, directory: Path, config=config):
            result = train(settings, train_set, directory, config, sources=[str(TRAIN)], version=directory.name,
                           frozen_memo=memo)
            return fold_scorer(settings, config, result.adapter_dir, memo)

        report = run_cv(examples, args.out / name, config, train_fold, folds=args.folds, seed=0,
                        log=lambda line: print(f"[{name}] {line}", file=sys.stderr, flush=True))
        (args.out / name / "cv.md").write_text(render(report))
        screen[name] = {
            "minutes": round((time.perf_counter() - started) / 60, 1),
            "macro_f1": report["cv"]["macro_f1"], "stance_macro_f1": report["cv"]["stance_macro_f1"],
            "small_language_stance_per_fold": [round(small_language_stance(args.out / name / f"fold-{i + 1}"), 4)
                                               for i in range(args.folds)],
        }
        print(json.dumps({name: screen[name]}), flush=True)
    (args.out / "screen.json").write_text(json.dumps(screen, indent=1) + "\n")


if __name__ == "__main__":
    main()
