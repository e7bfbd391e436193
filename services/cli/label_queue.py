"""Active learning: choose the classified tweets most worth a human label, N per language, for Label Studio or a
spreadsheet. From the active adapter's classifications of tweets created in the window (default: the last 7
days), per language the --pool most uncertain ones without a label are ranked by uncertainty (--by margin or
entropy), boosted where the latest candidate adapter in the registry disagrees (it scores them again: --candidate
names another version, or none); copies (retweets, the same text with other links or mentions, or a word-bigram
Jaccard similarity of at least --similarity) of a queued or already labeled tweet are dropped.

--out FILE.json writes Label Studio tasks (with the active adapter's label as a prediction) and FILE.csv beside
them; --out FILE.csv only the CSV. Both come with FILE.label_config.xml, the labeling interface to paste into the
Label Studio project. `stancestream labels import` reads the project's JSON export, or the CSV once its label
column is filled in."""

from __future__ import annotations

import argparse
import re
import sys
from datetime import datetime, timedelta, timezone

from services.cli.common import duration, iso_timestamp

NAME = "label-queue"
HELP = "choose the tweets most worth labeling next (uncertain, adapters disagree, no copies) for Label Studio or CSV"

_LANG = re.compile(r"^[A-Za-z][\w-]{1,15}$")


def languages(text: str) -> list[str]:
    codes = [c.strip() for c in text.split(",") if c.strip()]
    bad = [c for c in codes if not _LANG.match(c)]
    if not codes or bad:
        raise argparse.ArgumentTypeError(f"not a language code: {(bad or [text])[0]!r} (e.g. en or en,de,tr)")
    return codes


def arguments(parser) -> None:
    parser.add_argument("--lang", type=languages, action="append", required=True, metavar="LANG[,LANG]",
                        help="languages to queue, as detected by the worker (comma-separated or repeated)")
    parser.add_argument("--n", type=int, default=50, metavar="N", help="tweets per language (default 50)")
    parser.add_argument("--out", required=True, metavar="FILE",
                        help="FILE.json: Label Studio tasks and FILE.csv beside them; FILE.csv: the CSV only")
    window = parser.add_mutually_exclusive_group()
    window.add_argument("--since", type=iso_timestamp, metavar="T", help="tweets created at or after T (ISO 8601)")
    window.add_argument("--window", type=duration, default=timedelta(days=7), metavar="SPAN",
                        help="tweets created in the last SPAN, e.g. 24h, 7d, 2w (default 7d)")
    parser.add_argument("--by", choices=("margin", "entropy"), default="margin",
                        help="uncertainty: 1 - (top probability - second), or normalised entropy (default margin)")
    parser.add_argument("--candidate", metavar="VERSION|none",
                        help="adapter whose disagreement boosts the ranking (default: the registry's latest "
                             "candidate, if any; none: no boost)")
    parser.add_argument("--pool", type=int, default=500, metavar="M",
                        help="most uncertain unlabeled tweets per language to rank, each scored by the candidate "
                             "(default 500)")
    parser.add_argument("--similarity", type=float, default=0.8, metavar="J",
                        help="word-bigram Jaccard similarity from which two texts are copies (default 0.8)")


def run(args, settings) -> int:
    from services.labels.queue import make_label_queue

    if args.n < 1 or args.pool < 1 or not 0 < args.similarity <= 1:
        raise ValueError("--n and --pool must be at least 1, --similarity in (0, 1]")
    langs = list(dict.fromkeys(code for group in args.lang for code in group))
    since = args.since or datetime.now(timezone.utc) - args.window
    result = make_label_queue(settings, langs, args.n, args.out, since, by=args.by, candidate=args.candidate,
                              pool=max(args.pool, args.n), similarity=args.similarity,
                              note=lambda message: print(f"note: {message}", file=sys.stderr))
    for queue in result.queues:
        print(queue.summary())
    total = sum(len(q.queued) for q in result.queues)
    print(f"{total} tweet(s) queued (predictions of {result.active_version}): "
          + ", ".join(str(p) for p in result.written))
    return 0
