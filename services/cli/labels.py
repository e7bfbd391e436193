"""Labels feed the trainer. `import` publishes a CSV (id, lang, label, text, as in the paper's datasets; annotator and
labeled_at optional; rows with a blank label, as in a `label-queue` CSV not yet filled in, are skipped), a JSONL
file of Label objects, or a Label Studio JSON export (each annotated task's latest annotation; tasks nobody
annotated are skipped and counted) to tweets.labels; the workers store them in the `labels` table, where the
latest label per tweet wins. Invalid rows are dead-lettered with their reason."""

from __future__ import annotations

import json
import sys


HELP = "import human labels and see what is labeled"


def arguments(parser) -> None:
    lab_sub = parser.add_subparsers(dest="labels_command", required=True, metavar="ACTION")
    imp = lab_sub.add_parser("import", help="publish a label file (.csv, .jsonl, or a Label Studio JSON export; "
                                            ".gz accepted)")
    imp.add_argument("file", metavar="FILE")
    imp.add_argument("--wait", type=float, default=60.0, metavar="S",
                     help="seconds to wait for the workers to store the labels (default 60)")
    st = lab_sub.add_parser("stats",
                            help="labels per language and label, and how many are new since the active adapter")
    st.add_argument("--json", action="store_true", help="machine-readable output")


def run(args, settings) -> int:
    return _import(args, settings) if args.labels_command == "import" else _stats(args, settings)


def _import(args, settings) -> int:
    from services.labels.importer import import_labels

    result = import_labels(settings, args.file, wait_s=args.wait,
                           warn=lambda message: print(f"warning: {message}", file=sys.stderr))
    if result.stored is not None:
        print(f"stored {result.stored} label(s), dead-lettered {result.dead_lettered}, in {result.via}")
        return 0
    state = "stored by the workers" if result.ingested else f"not all stored within {args.wait:g} s " \
                                                               "(is a worker running?)"
    print(f"published {result.sent} label(s) to {result.via}: {state}")
    return 0 if result.ingested else 1


def _stats(args, settings) -> int:
    from services.cli.render import print_table
    from services.wiring import open_registry
    from shared.messages import CATEGORIES
    from shared.store.queries.labels import label_stats

    registry = open_registry(settings, seed=False)
    active = registry.active()
    stats = label_stats(registry.store, active.version if active else None, active.created_at if active else None)
    if args.json:
        print(json.dumps(stats.as_json(), indent=1))
        return 0
    print_table(("lang", *(c.value for c in CATEGORIES), "total"),
                [(lang, *(str(counts.get(c.value, 0)) for c in CATEGORIES), str(sum(counts.values())))
                 for lang, counts in stats.by_language.items()])
    print(f"{stats.total} labeled tweet(s); {stats.new_since_active} new since the active adapter "
          f"{stats.active_version or '(none)'}")
    return 0
