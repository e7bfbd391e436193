"""The ``stancestream`` command: thin wiring of settings to the services and the library in ``shared/``."""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys

from pathlib import Path

from shared.settings import Settings
from shared.training import TrainConfig

_EPILOG = "Settings come from the environment (see `stancestream settings`); KAFKA_BOOTSTRAP and CLICKHOUSE_URL " \
          "unset means the embedded broker and embedded ClickHouse."


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stancestream",
        description="Streaming language, topic and stance classification of tweets about immigration.",
        epilog=_EPILOG,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="start the embedded stack (broker, ClickHouse, worker), optionally feeding tweets",
                         description="Start whatever is not configured — the Tansu broker on a free loopback port, "
                                     "embedded ClickHouse, the worker — feed tweets and show a live summary. "
                                     "Ctrl-C stops cleanly.", epilog=_EPILOG)
    run.add_argument("--feed", metavar="FILE", help="JSONL or CSV file (.gz accepted) to stream into tweets.raw; - for stdin")
    run.add_argument("--rate", type=float, metavar="N", help="tweets per second to feed (default: as fast as possible)")
    run.add_argument("--exit-when-done", action="store_true",
                     help="exit once every fed tweet is in ClickHouse or the dead-letter topic, and print the summary")

    sub.add_parser("worker", help="run one worker against KAFKA_BOOTSTRAP and ClickHouse (production process)",
                   description="Consume tweets.raw in micro-batches, classify, write to ClickHouse, then commit.",
                   epilog=_EPILOG)

    tr = sub.add_parser("train", help="LoRA fine-tuning on labeled tweets; writes a versioned adapter directory",
                        description="Fine-tune the configured base model with LoRA on CSVs with columns "
                                    "id, lang, label, text (translation_en optional). A dev split stratified by "
                                    "language and label is carved out; training stops early on dev macro-F1; the "
                                    "best adapter lands in OUT/adapter with its metadata.", epilog=_EPILOG)
    tr.add_argument("--data", action="append", required=True, type=Path, metavar="CSV", help="labeled tweets (repeatable)")
    tr.add_argument("--out", required=True, type=Path, metavar="DIR", help="run directory (checkpoint, best, adapter)")
    tr.add_argument("--version", help="adapter version recorded in its metadata (default: OUT's name)")
    tr.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
    defaults = TrainConfig()
    for name, value in vars(defaults).items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            tr.add_argument(flag, action=argparse.BooleanOptionalAction, default=value, help=f"default {value}")
        else:
            kind = type(value) if value is not None else int
            tr.add_argument(flag, type=kind, default=value, help=f"default {value}")

    ev = sub.add_parser("eval", help="score a labeled CSV: metrics.json, report.md and plots, vs the paper if present",
                        description="Classify every tweet of a labeled CSV (id, lang, label, text; paper_pred "
                                    "optional) and write DIR/metrics.json, DIR/report.md, DIR/confusion.png and "
                                    "DIR/per_language.png.", epilog=_EPILOG)
    ev.add_argument("--data", required=True, type=Path, metavar="CSV")
    ev.add_argument("--adapter", type=Path, metavar="DIR", help="adapter directory (default: STANCESTREAM_ADAPTER)")
    ev.add_argument("--out", required=True, type=Path, metavar="DIR")

    sql = sub.add_parser("sql", help="run a query against the configured ClickHouse and print the result",
                         description="Works while `stancestream run` is running (through its query gateway) "
                                     "and after it stopped (opening the embedded store directly).")
    sql.add_argument("query", help='e.g. "SELECT lang, count() FROM classifications FINAL GROUP BY lang"')
    sql.add_argument("--format", choices=("table", "csv", "json"), default="table")

    mig = sub.add_parser("migrate", help="apply (or roll back) the ClickHouse migrations")
    mig.add_argument("--rollback-to", type=int, metavar="N", help="revert migrations numbered above N")

    sch = sub.add_parser("schemas", help="regenerate schemas/*.json from the message models")
    sch.add_argument("--check", action="store_true", help="exit 1 if a schema file is stale instead of writing")

    sub.add_parser("settings", help="list every setting with its environment variable and default")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        for noisy in ("faust", "mode", "aiokafka", "transformers", "httpx"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # one clear line for the expected failures, a traceback only with -v
        from shared.broker import BrokerError
        from shared.classifier import ClassifierError
        from shared.model_source import ModelSourceError
        from shared.stack import StackError
        from shared.store import StoreError

        if isinstance(exc, (BrokerError, ClassifierError, ModelSourceError, StackError, StoreError,
                            FileNotFoundError, ValueError)) and not args.verbose:
            print(f"stancestream {args.command}: {exc}", file=sys.stderr)
            return 2
        raise


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "settings":
        from rich.console import Console
        from rich.table import Table

        from shared.settings import describe_settings

        table = Table("environment variable", "default", "meaning")
        for row in describe_settings():
            table.add_row(*row)
        Console().print(table)
        return 0
    if args.command == "schemas":
        from shared import schemas

        if args.check:
            stale = schemas.stale()
            for name in stale:
                print(f"stale: schemas/{name} (run `stancestream schemas`)", file=sys.stderr)
            return 1 if stale else 0
        print("\n".join(f"wrote schemas/{n}" for n in schemas.write()) or "schemas up to date")
        return 0

    settings = Settings()
    if args.command == "run":
        from services.stack.main import main as run_main

        return run_main(settings, args.feed, args.rate, args.exit_when_done)
    if args.command == "worker":
        from services.worker.main import main as worker_main

        return worker_main(settings)
    if args.command == "train":
        from dataclasses import fields

        from shared.training import train

        config = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
        result = train(settings, args.data, args.out, config, version=args.version, resume=args.resume)
        dev = result.dev_metrics
        print(f"adapter: {result.adapter_dir}  steps {result.steps}  {result.seconds / 60:.1f} min  "
              f"dev accuracy {dev.get('accuracy', 0):.3f}  macro-F1 {dev.get('macro_f1', 0):.3f}")
        return 0
    if args.command == "eval":
        from shared.classifier import StanceClassifier
        from shared.evaluation import evaluate_csv

        metrics = evaluate_csv(StanceClassifier.load(settings, adapter=args.adapter), args.data, args.out)
        paper = metrics.get("paper")
        print(f"accuracy {metrics['accuracy']:.3f}  macro-F1 {metrics['macro_f1']:.3f}  "
              f"{metrics['tweets_per_s']:.1f} tweets/s"
              + (f"   (paper: {paper['accuracy']:.3f} / {paper['macro_f1']:.3f})" if paper else "")
              + f"\nreport: {args.out / 'report.md'}")
        return 0
    if args.command == "sql":
        from shared.store import open_store

        _print_result(open_store(settings).query(args.query), args.format)
        return 0
    if args.command == "migrate":
        from shared.store import open_store
        from shared.store.migrations import migrate, rollback

        store = open_store(settings)
        done = rollback(store, args.rollback_to) if args.rollback_to is not None else migrate(store)
        verb = "reverted" if args.rollback_to is not None else "applied"
        print("\n".join(f"{verb} {m.number:04d}_{m.name}" for m in done) or "nothing to do")
        return 0
    raise AssertionError(args.command)


def _print_result(result, fmt: str) -> None:
    if fmt == "json":
        print(json.dumps(result.dicts(), default=str, ensure_ascii=False, indent=1))
    elif fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(result.columns)
        writer.writerows(result.rows)
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(*result.columns)
        for row in result.rows:
            table.add_row(*("NULL" if v is None else str(v) for v in row))
        Console().print(table)
        print(f"{len(result.rows)} row(s)", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
