"""Regenerate the JSON Schema of every topic under schemas/ from the message models; with --check, only report stale files."""

from __future__ import annotations

import sys


HELP = "regenerate schemas/*.json from the message models"
READS_SETTINGS = False  # works whatever the environment holds


def arguments(parser) -> None:
    parser.add_argument("--check", action="store_true", help="exit 1 if a schema file is stale instead of writing")


def run(args, settings) -> int:
    from shared import schemas

    if args.check:
        stale = schemas.stale()
        for name in stale:
            print(f"stale: schemas/{name} (run `stancestream schemas`)", file=sys.stderr)
        return 1 if stale else 0
    print("\n".join(f"wrote schemas/{n}" for n in schemas.write()) or "schemas up to date")
    return 0
