"""Cross-validate a training recipe: stratified K-fold over the labeled tweets (language x label), reporting each
fold and mean ± sd overall, per language and per class (with stance macro-F1: pro/anti/neutral on the
immigration-related tweets), and leave-one-language-out runs (--lolo) that measure transfer to a language absent
from training. Each fold is a full `train` with the recipe options below (its early-stopping dev split carved from
the training folds); OUT keeps every fold's adapter and scores, so an interrupted run continues where it stopped.
Choose recipes by this, not by test.csv."""

from __future__ import annotations

from pathlib import Path

from services.cli.common import add_recipe_options, recipe_of

HELP = "cross-validate a training recipe (K folds and leave-one-language-out)"


def arguments(parser) -> None:
    parser.add_argument("--data", action="append", required=True, type=Path, metavar="CSV",
                        help="labeled tweets (repeatable)")
    parser.add_argument("--pretrain-texts", type=Path, metavar="FILE",
                        help="unlabeled tweets for a causal-LM stage before each fold's task training (see train)")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="run directory (one per recipe)")
    parser.add_argument("--folds", type=int, default=5, metavar="K", help="folds (default 5; 0 = only --lolo)")
    parser.add_argument("--cv-seed", type=int, default=0, help="seed of the fold assignment (default 0)")
    parser.add_argument("--lolo", default="", metavar="LANGS",
                        help="leave each of these languages out in turn, comma-separated, or 'all' (default none)")
    parser.add_argument("--members", type=int, default=1, metavar="K",
                        help="cross-validate an ensemble: K adapters per fold, trained with seeds --seed, --seed+1, "
                             "..., scored by their mean probabilities (needs --train-layers; default 1)")
    add_recipe_options(parser)


def run(args, settings) -> int:
    import sys

    from shared.training.cv import fold_trainer, render, run_cv
    from shared.training.data import read_labeled
    from shared.training.pretrain import read_texts

    config = recipe_of(args)
    examples = read_labeled(args.data)
    lolo = sorted({ex.lang for ex in examples}) if args.lolo == "all" else \
        [code.strip() for code in args.lolo.split(",") if code.strip()]
    pretrain_texts = read_texts(args.pretrain_texts) if args.pretrain_texts else None
    # With --train-layers, the frozen layers run once per tweet for all folds (and members).
    train_fold = fold_trainer(settings, config, sources=[str(p) for p in args.data], frozen_memo={},
                              pretrain_texts=pretrain_texts, members=args.members)
    report = run_cv(examples, args.out, config, train_fold, folds=args.folds, seed=args.cv_seed, lolo=lolo,
                    log=lambda line: print(line, file=sys.stderr), members=args.members)
    table = render(report)
    (args.out / "cv.md").write_text(table)
    print(table)
    print(f"written: {args.out / 'cv.json'}, {args.out / 'cv.md'}")
    return 0
