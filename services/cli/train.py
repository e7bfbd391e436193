"""Fine-tune the configured base model with LoRA on CSVs with columns id, lang, label, text (translation_en optional).
A dev split stratified by language and label is carved out; training stops early on dev macro-F1; the best adapter
lands in OUT/adapter with its metadata."""

from __future__ import annotations

from pathlib import Path

from services.cli.common import add_recipe_options, recipe_of


HELP = "LoRA fine-tuning on labeled tweets; writes a versioned adapter directory"


def arguments(parser) -> None:
    parser.add_argument("--data", action="append", required=True, type=Path, metavar="CSV",
                        help="labeled tweets (repeatable)")
    parser.add_argument("--pretrain-texts", type=Path, metavar="FILE",
                        help="unlabeled tweets of a language to onboard (CSV with a text column, or one per line): a "
                             "causal-LM LoRA stage on them runs first, merged in, then the task; the adapter "
                             "holds both and serves like any other")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR",
                        help="run directory (checkpoint, best, adapter)")
    parser.add_argument("--version", help="adapter version recorded in its metadata (default: OUT's name)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
    add_recipe_options(parser)


def run(args, settings) -> int:
    from shared.training.data import read_labeled
    from shared.training.loop import train
    from shared.training.pretrain import read_texts

    config = recipe_of(args)
    pretrain_texts = read_texts(args.pretrain_texts) if args.pretrain_texts else None
    result = train(settings, read_labeled(args.data), args.out, config, sources=[str(p) for p in args.data],
                   version=args.version, resume=args.resume, pretrain_texts=pretrain_texts)
    dev = result.dev_metrics
    scores = (f"dev accuracy {dev['accuracy']:.3f}  macro-F1 {dev['macro_f1']:.3f}" if dev
              else "no dev split (--dev-fraction 0): the final weights were kept")
    print(f"adapter: {result.adapter_dir}  steps {result.steps}  {result.seconds / 60:.1f} min  {scores}")
    return 0
