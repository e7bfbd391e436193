"""Start whatever is not configured — the Tansu broker on a free loopback port, embedded ClickHouse, the worker — feed
tweets and show a live summary. Ctrl-C stops cleanly."""

from __future__ import annotations

HELP = "start the embedded stack (broker, ClickHouse, worker), optionally feeding tweets"


def arguments(parser) -> None:
    parser.add_argument("--feed", metavar="FILE",
                        help="JSONL or CSV file (.gz accepted) to stream into tweets.raw; - for stdin")
    parser.add_argument("--rate", type=float, metavar="N",
                        help="tweets per second to feed (default: as fast as possible)")
    parser.add_argument(
        "--exit-when-done", action="store_true",
        help="exit once every fed tweet is in ClickHouse or the dead-letter topic, and print the summary")


def run(args, settings) -> int:
    from services.stack.main import main

    return main(settings, args.feed, args.rate, args.exit_when_done)
