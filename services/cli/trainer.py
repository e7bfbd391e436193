"""On its schedule (STANCESTREAM_TRAINER_INTERVAL_S or STANCESTREAM_TRAINER_CRON), and only if at least
STANCESTREAM_TRAINER_MIN_NEW_LABELS labels arrived, train a candidate adapter on all current labels, score it and
the active adapter on the frozen holdout, and promote it only if it passes the gate (STANCESTREAM_GATE_*). Every
cycle is recorded in `adapter_runs`."""

from __future__ import annotations

HELP = "the adapter-refresh service: train, gate on the holdout, promote or reject"


def arguments(parser) -> None:
    parser.add_argument("--once", action="store_true", help="run one cycle now, print the decision and exit")
    parser.add_argument("--force", action="store_true", help="with --once: train even if few labels are new")


def run(args, settings) -> int:
    from services.trainer.main import main

    return main(settings, args.once, args.force)
