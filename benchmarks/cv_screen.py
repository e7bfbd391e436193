"""Screen training recipes by cross-validation on train.csv, several recipes in one process so the frozen lower
layers run once per tweet for all of them (``train(..., frozen_memo=...)``).

    .venv/bin/python benchmarks/cv_screen.py --out runs/cv-screen [--folds 3] [--recipes baseline,consistency,balanced]
    .venv/bin/python benchmarks/cv_screen.py --setting full --out benchmarks/results/cv01-full --folds 5 --recipes baseline,balanced
    (add --report-only to summarise what is scored so far without training)

Screening cost setting (cheaper than the shipped recipe, so several recipes fit a session on 2 cores): LoRA on the
top 2 decoder layers, 2 epochs, lr 3e-4, EMA 0.98, evaluation every 40 steps. Each recipe is the screening setting
with its own options (RECIPES). The adoption rule is written in docs/experiments.md before the run. Results:
OUT/<recipe>/cv.json and cv.md, and OUT/screen.json (stance macro-F1 over the small languages per fold).

``--setting full`` is the shipped recipe's setting (LoRA on the top 6 layers, 3 epochs, evaluation every 30 steps),
the cost at which a recipe that passed the screen is confirmed. The recipes advance fold by fold in turn (fold 1 of
each, then fold 2, ...), and folds already scored in OUT are kept, so a run stopped part way leaves paired folds and
the next run continues it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from shared.settings import Settings
from shared.training.config import TrainConfig
from shared.training.cv import adoption_verdict, fold_trainer, render, run_cv, scored_folds, small_language_stance
from shared.training.data import read_labeled

TRAIN = Path("../shared/datasets/immigration-tweets/train.csv")
# Pinned to the instruction wording every screen so far ran in, whatever train's default: a resumed run trains its
# remaining folds in the wording of its scored ones.
SETTINGS = {
    "screen": TrainConfig(epochs=2, train_layers=2, learning_rate=3e-4, ema_decay=0.98, eval_every=40,
                          prompt_wording="instruction"),
    "full": TrainConfig(epochs=3, train_layers=6, learning_rate=3e-4, ema_decay=0.98, eval_every=30,  # shipped v1
                        prompt_wording="instruction"),
}
RECIPES = {  # each recipe: the setting's config -> the recipe's
    "baseline": lambda c: c,
    "consistency": lambda c: replace(c, consistency=1.0),
    "balanced": lambda c: replace(c, sampling="balanced"),
    "stance-balanced": lambda c: replace(c, sampling="stance-balanced"),
    # Three times the adapted layers, with more dropout and weight decay against the extra capacity (cv04).
    "deeper": lambda c: replace(c, train_layers=3 * c.train_layers, lora_dropout=0.1, weight_decay=0.1),
    # The baseline trained with three seeds, their probabilities averaged (shared/classifier/ensemble.py serves
    # such an ensemble sharing the frozen layers' pass; cv04).
    "ensemble-3": lambda c: c,
    # Fewer tokens around each tweet (cv05): adopted for its speed if it is no worse (RULES).
    "short-prompt": lambda c: replace(c, prompt_wording="short"),
}
MEMBERS = {"ensemble-3": 3}
# The rule of a recipe judged "no worse" rather than "better" (docs/experiments.md, cv05); the others take
# adoption_verdict's defaults and --max-accuracy-drop.
RULES = {"short-prompt": {"margin": -0.01, "most_folds_better": False, "max_accuracy_drop": 0.01}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--recipes", default=",".join(RECIPES))
    parser.add_argument("--setting", choices=list(SETTINGS), default="screen")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: print the folds already scored in OUT with the rule applied")
    parser.add_argument("--max-accuracy-drop", type=float, default=None,
                        help="the rule's limit on CV accuracy below the baseline's (cv03: 0.02; cv01: none)")
    args = parser.parse_args()
    settings = Settings()
    examples = read_labeled([TRAIN])
    memo: dict = {}
    names = args.recipes.split(",")
    minutes = dict.fromkeys(names, 0.0)
    reports: dict = {}
    for _ in range(1 if args.report_only else args.folds):  # a round trains one fold per recipe; a report needs one
        for name in names:
            config = RECIPES[name](SETTINGS[args.setting])
            started = time.perf_counter()
            members = MEMBERS.get(name, 1)
            train_fold = fold_trainer(settings, config, sources=[str(TRAIN)], frozen_memo=memo, members=members)
            reports[name] = run_cv(examples, args.out / name, config, train_fold, folds=args.folds, seed=0,
                                   train_at_most=0 if args.report_only else 1, members=members,
                                   log=lambda line, name=name: print(f"[{name}] {line}", file=sys.stderr, flush=True))
            minutes[name] += (time.perf_counter() - started) / 60
    screen: dict = {}
    for name, report in reports.items():
        (args.out / name / "cv.md").write_text(render(report))
        if report["cv"] is None:
            continue  # nothing scored yet
        screen[name] = {
            "minutes_this_run": round(minutes[name], 1),
            "macro_f1": report["cv"]["macro_f1"], "stance_macro_f1": report["cv"]["stance_macro_f1"],
            "small_language_stance_per_fold": [round(small_language_stance(fold), 4)
                                               for fold in scored_folds(args.out / name).values()],
        }
        if name != "baseline" and "baseline" in reports:  # the rule written before the run, applied as code
            rule = RULES.get(name, {"max_accuracy_drop": args.max_accuracy_drop})
            screen[name]["rule"] = adoption_verdict(scored_folds(args.out / "baseline"), scored_folds(args.out / name),
                                                    folds=args.folds, **rule)
        print(json.dumps({name: screen[name]}), flush=True)
    if not args.report_only:  # screen.json keeps the minutes of the run that trained, and other runs' recipes
        path = args.out / "screen.json"
        earlier = json.loads(path.read_text()) if path.exists() else {}
        path.write_text(json.dumps(earlier | screen, indent=1) + "\n")


if __name__ == "__main__":
    main()
