"""The ``stancestream`` command: one module per command, thin wiring of settings to the services and the library in
``shared/``. A command module has ``HELP`` (its line in ``stancestream --help``), its docstring (the description
in its own ``--help``), optionally ``NAME`` (default: the module's name), ``arguments(parser)`` and
``READS_SETTINGS = False``, and ``run(args, settings) -> exit code``.

``main`` prints any failure meant for the user — every ``StancestreamError``, and what the OS or a parser says
about input — as one line on stderr with exit code 2; ``-v`` shows the traceback instead. Ctrl-C exits with 130.
"""

from __future__ import annotations

import argparse
import logging
import sys

from services.cli import (
    adapters, bench, calibrate, cv, dashboard, evaluate, label_queue, labels, migrate, monitor, replay, run, schemas,
    settings, shares, sql, train, trainer, worker,
)
from services.cli.common import EPILOG

#: In the order `stancestream --help` lists them.
COMMANDS = (run, worker, train, cv, evaluate, calibrate, labels, label_queue, trainer, adapters, replay, monitor,
            shares, dashboard, bench, sql, migrate, schemas, settings)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stancestream",
        description="Streaming language, topic and stance classification of tweets about immigration.",
        epilog=EPILOG,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        name = getattr(command, "NAME", command.__name__.rpartition(".")[2])
        # The module's docstring is the command's description: one text for `--help` and the reader of the code.
        command_parser = sub.add_parser(name, help=command.HELP, description=command.__doc__, epilog=EPILOG)
        getattr(command, "arguments", lambda _: None)(command_parser)
        command_parser.set_defaults(run=command.run, reads_settings=getattr(command, "READS_SETTINGS", True))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        for noisy in ("faust", "mode", "transformers", "httpx"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
        # aiokafka logs every failed connection attempt at ERROR; the failure itself reaches the user as one
        # line (see _one_line), so its log adds only noise.
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        from shared.settings import Settings

        return args.run(args, Settings() if args.reads_settings else None)
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
