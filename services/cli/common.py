"""What the command modules share: the epilog every command's help ends with, and argument types."""

from __future__ import annotations

import argparse
from datetime import datetime, timedelta, timezone

EPILOG = "Settings come from the environment (see `stancestream settings`); KAFKA_BOOTSTRAP and CLICKHOUSE_URL " \
         "unset means the embedded broker and embedded ClickHouse."


def iso_timestamp(text: str) -> datetime:
    """An ISO 8601 time; naive means UTC."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r} (e.g. 2025-01-01 or 2025-01-01T12:00Z)")
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def duration(text: str) -> timedelta:
    """A span such as ``90m``, ``24h``, ``7d`` or ``2w``."""
    number, unit = text.strip()[:-1], text.strip()[-1:].lower()
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    if unit not in _UNITS or not 0 < value * _UNITS.get(unit, 0) <= 100 * 365 * 86400:  # NaN and inf too
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 90m, 24h, 7d or 2w)")
    return timedelta(seconds=value * _UNITS[unit])


def add_recipe_options(parser) -> None:
    """Every ``TrainConfig`` field as an option (``train`` and ``cv`` take the same recipe), its help from the field."""
    import argparse
    from dataclasses import fields

    from shared.training.config import TrainConfig

    for option in fields(TrainConfig):
        flag, value = "--" + option.name.replace("_", "-"), option.default
        explained = f"{option.metadata['help']} (default {value})"
        if isinstance(value, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=value, help=explained)
        else:
            parser.add_argument(flag, type=type(value) if value is not None else int, default=value, help=explained)


def recipe_of(args):
    """The ``TrainConfig`` that ``add_recipe_options``' options describe."""
    from dataclasses import fields

    from shared.training.config import TrainConfig

    return TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
