"""The ``stancestream`` command: thin wiring of settings to the services and the library in ``shared/``."""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from dataclasses import fields
from pathlib import Path

from shared.settings import Settings
from shared.training.loop import TrainConfig

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
    for option in fields(TrainConfig):
        flag, value = "--" + option.name.replace("_", "-"), option.default
        explained = f"{option.metadata['help']} (default {value})"
        if isinstance(value, bool):
            tr.add_argument(flag, action=argparse.BooleanOptionalAction, default=value, help=explained)
        else:
            tr.add_argument(flag, type=type(value) if value is not None else int, default=value, help=explained)

    ev = sub.add_parser("eval", help="score a labeled CSV: metrics.json, report.md and plots, vs the paper if present",
                        description="Classify every tweet of a labeled CSV (id, lang, label, text; paper_pred "
                                    "optional) and write DIR/metrics.json, DIR/report.md, DIR/confusion.png and "
                                    "DIR/per_language.png.", epilog=_EPILOG)
    ev.add_argument("--data", required=True, type=Path, metavar="CSV")
    ev.add_argument("--adapter", type=Path, metavar="DIR", help="adapter directory (default: STANCESTREAM_ADAPTER)")
    ev.add_argument("--out", required=True, type=Path, metavar="DIR")

    lab = sub.add_parser("labels", help="import human labels and see what is labeled",
                         description="Labels feed the trainer. `import` publishes a CSV (id, lang, label, text, "
                                     "as in the paper's datasets; annotator and labeled_at optional) or JSONL file "
                                     "of Label objects to tweets.labels; the workers store them in the `labels` "
                                     "table, where the latest label per tweet wins. Invalid rows are dead-lettered "
                                     "with their reason.", epilog=_EPILOG)
    lab_sub = lab.add_subparsers(dest="labels_command", required=True, metavar="ACTION")
    imp = lab_sub.add_parser("import", help="publish a label file (.csv or .jsonl, .gz accepted)")
    imp.add_argument("file", metavar="FILE")
    imp.add_argument("--wait", type=float, default=60.0, metavar="S",
                     help="seconds to wait for the workers to store the labels (default 60)")
    st = lab_sub.add_parser("stats", help="labels per language and label, and how many are new since the active adapter")
    st.add_argument("--json", action="store_true", help="machine-readable output")

    trn = sub.add_parser("trainer", help="the adapter-refresh service: train, gate on the holdout, promote or reject",
                         description="On its schedule (STANCESTREAM_TRAINER_INTERVAL_S or STANCESTREAM_TRAINER_CRON), "
                                     "and only if at least STANCESTREAM_TRAINER_MIN_NEW_LABELS labels arrived, train "
                                     "a candidate adapter on all current labels, score it and the active adapter on "
                                     "the frozen holdout, and promote it only if it passes the gate "
                                     "(STANCESTREAM_GATE_*). Every cycle is recorded in `adapter_runs`.",
                         epilog=_EPILOG)
    trn.add_argument("--once", action="store_true", help="run one cycle now, print the decision and exit")
    trn.add_argument("--force", action="store_true", help="with --once: train even if few labels are new")

    ad = sub.add_parser("adapters", help="the adapter registry: list, show, promote, rollback",
                        description="Versioned adapters (v1, v2, …) and their status. `promote` and `rollback` "
                                    "switch every running worker between two batches, without a restart.",
                        epilog=_EPILOG)
    ad_sub = ad.add_subparsers(dest="adapters_command", required=True, metavar="ACTION")
    ls = ad_sub.add_parser("list", help="every version with its status and holdout metrics")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    show = ad_sub.add_parser("show", help="one version's record and metadata")
    show.add_argument("version")
    pro = ad_sub.add_parser("promote", help="make a version active in every running worker")
    pro.add_argument("version")
    pro.add_argument("--reason", default="manual promotion")
    ad_sub.add_parser("rollback", help="re-activate the version the active one replaced")

    rp = sub.add_parser("replay", help="re-classify archived tweets with a chosen adapter, beside the live stream",
                        description="Re-feed archived tweets — from the ClickHouse `tweets` archive or from JSONL/CSV "
                                    "files (.gz accepted, e.g. one per hour) — through the worker's batch code with "
                                    "the chosen adapter (default: the active one). Rows are stored per adapter "
                                    "version and tagged with the run id; the live stream's topic, order and offsets "
                                    "are never touched. `stancestream replay status` lists runs; an interrupted run "
                                    "continues with --resume RUN.", epilog=_EPILOG)
    rp.add_argument("action", nargs="?", choices=("status",), help="list replay runs instead of starting one")
    rp.add_argument("--since", type=_timestamp, metavar="T", help="posted at or after T (ISO 8601, e.g. 2025-01-01)")
    rp.add_argument("--until", type=_timestamp, metavar="T", help="posted before T")
    rp.add_argument("--lang", action="append", default=[], metavar="XX", help="only these detected languages (repeatable)")
    rp.add_argument("--adapter", metavar="vN|DIR", help="registry version or adapter directory (default: the active one)")
    rp.add_argument("--from-file", action="append", default=[], metavar="FILE",
                    help="archive file instead of the ClickHouse archive (repeatable, globs expanded by the shell)")
    rp.add_argument("--rate", type=float, metavar="N", help="at most N tweets per second (default: as fast as possible)")
    rp.add_argument("--resume", metavar="RUN", help="continue an interrupted run with its original parameters")
    rp.add_argument("--json", action="store_true", help="with status: machine-readable output")

    mon = sub.add_parser("monitor", help="live terminal dashboard: rate, latency, label mix per language, DLQ, adapter",
                         description="Live numbers over a sliding window of live tweets, read from ClickHouse (works "
                                     "while `stancestream run` is up, or against a ClickHouse server): ingest rate, "
                                     "latency p50/p95, per-language label mix, dead letters, the active adapter and "
                                     "the last trainer run. Ctrl-C quits.", epilog=_EPILOG)
    mon.add_argument("--window", type=int, default=300, metavar="S", help="sliding window in seconds (default 300)")
    mon.add_argument("--interval", type=float, default=2.0, metavar="S", help="refresh period (default 2 s)")
    mon.add_argument("--once", action="store_true", help="print one snapshot and exit")
    mon.add_argument("--json", action="store_true", help="with --once: machine-readable output")

    db = sub.add_parser("dashboard", help="serve the read-only web dashboard (charts, auto-refresh) on 127.0.0.1",
                        description="A local web page with stance share over time per language, volume per "
                                    "language, the confidence distribution and the adapter versions timeline, "
                                    "refreshed automatically. Read-only: it only runs its own SELECTs.",
                        epilog=_EPILOG)
    db.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    db.add_argument("--port", type=int, default=8050, help="default 8050; 0 picks a free port")
    db.add_argument("--days", type=int, default=14, help="how far back the charts go (default 14 days)")
    db.add_argument("--refresh", type=int, default=10, metavar="S", help="page refresh period (default 10 s)")

    be = sub.add_parser("bench", help="measure throughput, the paper-method baseline, the roofline and end-to-end latency",
                        description="Classifier-only throughput per precision and batch size on the tweets of a "
                                    "labeled CSV; the paper's method (llama.cpp, one tweet per call) on the same "
                                    "tweets and base model; the measured matmul peak and the fraction of it the "
                                    "classifier achieves; latency from produce to queryable row through the "
                                    "embedded stack at fixed offered rates. Writes DIR/bench.json, DIR/e2e.png and "
                                    "the latest-bench section of docs/benchmarks.md.", epilog=_EPILOG)
    be.add_argument("--out", required=True, type=Path, metavar="DIR")
    be.add_argument("--data", type=Path, default=Path("../shared/datasets/immigration-tweets/test.csv"), metavar="CSV",
                    help="tweets to classify (default: the paper's test set beside the checkout)")
    be.add_argument("--n", type=int, default=400, help="tweets for the classifier measurements (default 400)")
    be.add_argument("--precisions", default="fp32,bf16,nf4", help="comma-separated (default fp32,bf16,nf4)")
    be.add_argument("--batch-sizes", default="8,16,32", help="comma-separated (default 8,16,32)")
    be.add_argument("--slow-n", type=int, default=48,
                    help="tweets for a precision that a probe batch shows slower than 3 tweets/s (default 48)")
    be.add_argument("--baseline-n", type=int, default=150, help="tweets for the llama.cpp baseline (default 150)")
    be.add_argument("--rates", default="5,10,20,50,max", help="offered rates for end to end (default 5,10,20,50,max)")
    be.add_argument("--per-rate", type=int, default=150, help="tweets offered per rate (default 150)")
    be.add_argument("--skip-baseline", action="store_true")
    be.add_argument("--skip-e2e", action="store_true")
    be.add_argument("--no-doc", action="store_true", help="do not update docs/benchmarks.md")

    sql = sub.add_parser("sql", help="run a query against the configured ClickHouse and print the result",
                         description="Works while `stancestream run` is running (through its query gateway) "
                                     "and after it stopped (opening the embedded store directly). Read-only "
                                     "unless --write; files, URLs and other servers are never reachable "
                                     "(file(), url(), s3(), remote(), INTO OUTFILE, …).")
    sql.add_argument("query", help='e.g. "SELECT lang, count() FROM classifications FINAL GROUP BY lang"')
    sql.add_argument("--write", action="store_true",
                     help="also allow statements that change the store: INSERT … SELECT, CREATE TABLE/VIEW, ALTER, "
                          "DELETE, UPDATE, DROP, TRUNCATE, RENAME, OPTIMIZE (the running stack's own tables cannot "
                          "be dropped, truncated or renamed)")
    sql.add_argument("--format", choices=("table", "csv", "json"), default="table")
    sql.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                     help="a query parameter, used in the SQL as {NAME:Type} (repeatable; see docs/queries.md)")

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
        for noisy in ("faust", "mode", "transformers", "httpx"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
        # aiokafka logs every failed connection attempt at ERROR; the failure itself reaches the user as one
        # line (see _one_line), so its log adds only noise.
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # one clear line for the expected failures, a traceback only with -v
        if args.verbose or not _expected(exc):
            raise
        print(f"stancestream {args.command}: {_one_line(exc)}", file=sys.stderr)
        return 2


def _expected(exc: BaseException) -> bool:
    """Failures with a message meant for the user: ours, and what the OS or a parser says about input."""
    from shared.errors import StancestreamError

    if isinstance(exc, (StancestreamError, OSError, ValueError, UnicodeError)):
        return True
    # aiokafka's connection failures (an unreachable KAFKA_BOOTSTRAP) are not OSErrors
    return type(exc).__module__.startswith("aiokafka") and "Connection" in type(exc).__name__


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if type(exc).__module__.startswith("aiokafka"):
        text = f"cannot reach the Kafka broker ({text}): check KAFKA_BOOTSTRAP and that the broker is up"
    return text if len(text) <= 500 else text[:497] + "..."



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
        from shared.training.loop import read_labeled, train

        config = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
        result = train(settings, read_labeled(args.data), args.out, config, sources=[str(p) for p in args.data],
                       version=args.version, resume=args.resume)
        dev = result.dev_metrics
        scores = (f"dev accuracy {dev['accuracy']:.3f}  macro-F1 {dev['macro_f1']:.3f}" if dev
                  else "no dev split (--dev-fraction 0): the final weights were kept")
        print(f"adapter: {result.adapter_dir}  steps {result.steps}  {result.seconds / 60:.1f} min  {scores}")
        return 0
    if args.command == "eval":
        from shared.classifier.model import StanceClassifier
        from shared.training.evaluation import evaluate_csv

        metrics = evaluate_csv(StanceClassifier.load(settings, adapter=args.adapter or settings.adapter), args.data,
                               args.out)
        paper = metrics.get("paper")
        print(f"accuracy {metrics['accuracy']:.3f}  macro-F1 {metrics['macro_f1']:.3f}  "
              f"{metrics['tweets_per_s']:.1f} tweets/s"
              + (f"   (paper: {paper['accuracy']:.3f} / {paper['macro_f1']:.3f})" if paper else "")
              + f"\nreport: {args.out / 'report.md'}")
        return 0
    if args.command == "labels":
        return _labels(settings, args)
    if args.command == "trainer":
        from services.trainer.main import main as trainer_main

        return trainer_main(settings, args.once, args.force)
    if args.command == "adapters":
        return _adapters(settings, args)
    if args.command == "monitor":
        return _monitor(settings, args)
    if args.command == "dashboard":
        from services.views.dashboard import serve_dashboard
        from shared.store import open_store

        serve_dashboard(open_store(settings), args.host, args.port, args.days, args.refresh)
        return 0
    if args.command == "replay":
        return _replay(settings, args)
    if args.command == "bench":
        from services.bench.main import run as bench

        bench(settings, args.data, args.out, args.n, args.precisions.split(","),
              [int(b) for b in args.batch_sizes.split(",")], args.rates.split(","), args.per_rate, args.baseline_n,
              args.slow_n, args.skip_baseline, args.skip_e2e, not args.no_doc)
        return 0
    if args.command == "sql":
        from shared.store import open_store
        from shared.store.sqlpolicy import run_adhoc

        params = {}
        for item in args.param:
            name, sep, value = item.partition("=")
            if not sep or not name:
                raise ValueError(f"--param wants NAME=VALUE, got {item!r}")
            params[name] = value
        _print_result(run_adhoc(open_store(settings), args.query, params, write=args.write), args.format)
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


def _labels(settings: Settings, args: argparse.Namespace) -> int:
    from shared.store.queries.labels import label_stats
    from services.labels.importer import import_labels
    from shared.training.registry import AdapterRegistry
    from shared.store import open_store
    from shared.store.migrations import migrate

    if args.labels_command == "import":
        result = import_labels(settings, args.file, wait_s=args.wait,
                               warn=lambda message: print(f"warning: {message}", file=sys.stderr))
        if result.stored is not None:
            print(f"stored {result.stored} label(s), dead-lettered {result.dead_lettered}, in {result.via}")
            return 0
        state = "stored by the workers" if result.ingested else f"not all stored within {args.wait:g} s " \
                                                                   "(is a worker running?)"
        print(f"published {result.sent} label(s) to {result.via}: {state}")
        return 0 if result.ingested else 1
    store = open_store(settings)
    migrate(store)
    active = AdapterRegistry(store, settings.adapters_dir).active()
    stats = label_stats(store, active.version if active else None, active.created_at if active else None)
    if args.json:
        print(json.dumps(stats.as_json(), indent=1))
        return 0
    from rich.console import Console
    from rich.table import Table

    from shared.messages import CATEGORIES

    table = Table("lang", *(c.value for c in CATEGORIES), "total")
    for lang, counts in stats.by_language.items():
        table.add_row(lang, *(str(counts.get(c.value, 0)) for c in CATEGORIES), str(sum(counts.values())))
    Console().print(table)
    print(f"{stats.total} labeled tweet(s); {stats.new_since_active} new since the active adapter "
          f"{stats.active_version or '(none)'}")
    return 0


def _adapters(settings: Settings, args: argparse.Namespace) -> int:
    from services.wiring import announcer
    from shared.messages import AdapterAction, AdapterEvent
    from shared.training.registry import AdapterRegistry
    from shared.store import open_store
    from shared.store.migrations import migrate

    store = open_store(settings)
    migrate(store)
    registry = AdapterRegistry(store, settings.adapters_dir)
    registry.seed(settings.adapter)
    command = args.adapters_command
    if command == "list":
        records = registry.records()
        if args.json:
            print(json.dumps([r.as_json() for r in records], indent=1, ensure_ascii=False))
            return 0
        from rich.console import Console
        from rich.table import Table

        table = Table("version", "status", "parent", "holdout acc", "holdout F1", "dev F1", "updated", "reason")
        for r in records:
            holdout, dev = r.metrics.get("holdout", {}), r.metrics.get("dev", {})
            table.add_row(r.version, r.status.value, r.parent or "", _fmt(holdout.get("accuracy")),
                          _fmt(holdout.get("macro_f1")), _fmt(dev.get("macro_f1")),
                          r.updated_at.strftime("%Y-%m-%d %H:%M:%S") if r.updated_at else "", r.reason)
        Console().print(table)
        return 0
    if command == "show":
        from shared.classifier.adapters import read_adapter_metadata

        record = registry.get(args.version)
        print(json.dumps(record.as_json() | {"metadata": read_adapter_metadata(Path(record.path))}, indent=1,
                         ensure_ascii=False, default=str))
        return 0
    if command == "promote":
        current, previous = registry.promote(args.version, args.reason)
        action = AdapterAction.promote
    else:
        current, previous = registry.rollback()
        action = AdapterAction.rollback
    announcer(settings)(AdapterEvent(version=current.version, path=current.path, action=action,
                                     previous=previous.version if previous else None, reason=current.reason))
    print(f"{current.version} is active (was {previous.version if previous else 'none'}); running workers switch "
          "before their next batch")
    return 0


def _monitor(settings: Settings, args: argparse.Namespace) -> int:
    from rich.console import Console

    from services.views.monitor import render_snapshot, watch
    from shared.store import open_store
    from shared.store.migrations import migrate
    from shared.store.queries.monitoring import MonitorSnapshot

    store = open_store(settings)
    migrate(store)
    if args.once:
        snapshot = MonitorSnapshot.read(store, args.window)
        if args.json:
            print(json.dumps(snapshot.as_json(), default=str, indent=1))
        else:
            Console().print(render_snapshot(snapshot))
        return 0
    watch(store, args.window, args.interval)
    return 0


def _timestamp(text: str):
    from datetime import datetime, timezone

    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r} (e.g. 2025-01-01 or 2025-01-01T12:00Z)")
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def _replay(settings: Settings, args: argparse.Namespace) -> int:
    from shared.classifier.model import StanceClassifier
    from shared.training.registry import AdapterRegistry
    from services.replay.runner import ReplayPlan, resolve_adapter, run_replay
    from shared.store.queries.replays import replay_runs
    from shared.store import open_store
    from shared.store.migrations import migrate

    store = open_store(settings)
    migrate(store)
    if args.action == "status":
        runs = replay_runs(store)
        if args.json:
            print(json.dumps(runs, default=str, indent=1))
            return 0
        from rich.console import Console
        from rich.table import Table

        table = Table("run", "adapter", "source", "window", "langs", "done", "status", "message")
        for r in runs:
            window = f"{r['since'] or '…'} → {r['until'] or '…'}"
            table.add_row(r["run_id"], r["adapter_version"], r["source"], window, ",".join(r["langs"]),
                          f"{r['done']}/{r['total']}", r["status"], r["message"])
        Console().print(table)
        return 0
    registry = AdapterRegistry(store, settings.adapters_dir)
    registry.seed(settings.adapter)
    if args.resume:
        plan = ReplayPlan.load(store, args.resume)
    else:
        for path in args.from_file:
            if not Path(path).exists():
                raise FileNotFoundError(f"archive file not found: {path}")
        version, path = resolve_adapter(registry, args.adapter)
        plan = ReplayPlan.new(version, str(path), args.from_file, args.since, args.until, args.lang)
    classifier = StanceClassifier.load(settings, adapter=Path(plan.adapter_path))
    print(f"replay {plan.run_id}: adapter {plan.adapter_version}, source {plan.source}", file=sys.stderr)
    result = run_replay(store, classifier, plan, batch_size=settings.batch_size, rate=args.rate)
    print(f"{plan.run_id}: {result.done}/{result.total} tweets classified with {plan.adapter_version}; compare "
          f"versions with docs/queries.md Q3 (--param run={plan.run_id})")
    return 0


def _fmt(value) -> str:
    return "" if value is None else f"{value:.3f}"


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
